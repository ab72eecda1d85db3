"""Acting in the real env through a world model: `plan_episode` plays an episode with any `Chooser` (a planner,
or a trained agent), and `planner_chooser` picks a family's planner through its capabilities (MCTS for a
`Searchable` family, CEM toward a goal frame for one with a `GoalEmbedding`), for `wm plan` and the Play tab.
The planners themselves live in `mcts` and `cem`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import HELDOUT_SEED_BASE, Episode
from ..data.envs import PixelEnv, make_env
from ..protocol import GoalEmbedding, Searchable, WorldModel
from ..spec import FramePipeline
from .cem import CostFn, PlanResult, cem, cem_goal_chooser, goal_cost
from .mcts import SEARCH_CHOICES, Chooser, MctsChooser, SearchResult, improved_policy, mcts, mcts_chooser

__all__ = [
    "PLANNERS", "SEARCH_CHOICES", "Chooser", "CostFn", "MctsChooser", "PlanResult", "SearchResult", "cem",
    "cem_goal_chooser", "check_planner", "default_goal_frame", "goal_cost", "improved_policy", "load_goal_frame",
    "mcts", "mcts_chooser", "plan_episode", "planner_chooser",
]  # fmt: skip


@torch.no_grad()
def plan_episode(
    model: WorldModel, env: PixelEnv, seed: int, choose: Chooser, max_steps: int | None = None
) -> tuple[Episode, list[float]]:
    """Play one real episode, acting by `choose` on the filtered state each step; returns the episode in
    the store's format (so it can be trained on) and the planning milliseconds of every move."""
    spec, model = model.action_spec, model.eval()
    frame, info = env.reset(seed=seed)
    state, prev = model.initial(1), torch.zeros(1, spec.dim)
    frames, acts, rews, states, ms = [frame], [spec.zeros()], [0.0], [info.get("state")], []
    term = trunc = False
    while not (term or trunc):
        state = model.observe(state, torch.from_numpy(np.array(frame[None])), prev)
        action, took = choose(state)
        ms.append(took)
        frame, r, term, trunc, info = env.step(action)
        frames.append(frame)
        trunc = trunc or (max_steps is not None and len(frames) - 1 >= max_steps)
        acts.append(np.asarray(action, dtype=spec.zeros().dtype))
        rews.append(float(r))
        states.append(info.get("state"))
        prev = spec.encode(np.asarray(action)[None])
    true_state = np.stack(states) if all(x is not None for x in states) else None
    episode = Episode(np.stack(frames), np.stack(acts), np.asarray(rews, np.float32), term, trunc, true_state, seed)
    return episode, ms


# ---- planners by capability: one entry point for `wm plan` and the Play tab -----------------------------
PLANNERS = {"mcts": "MCTS planner", "cem": "CEM planner"}


def default_goal_frame(env_id: str, pipeline: FramePipeline | None = None, seed: int = HELDOUT_SEED_BASE) -> np.ndarray:
    """The first frame of a held-out episode (reset with `seed`, disjoint from training seeds), (H, W, 3)
    uint8: for CartPole an upright pole near the centre, the state the task asks to keep."""
    env = make_env(env_id, pipeline)
    try:
        frame, _ = env.reset(seed=seed)
    finally:
        env.close()
    return np.asarray(frame)


def load_goal_frame(spec: str | None, env_id: str, pipeline: FramePipeline | None = None) -> tuple[np.ndarray, str]:
    """A goal frame and its description from `spec`: None or "heldout" (`default_goal_frame`), "seed:N" (the
    first frame after a reset with seed N), or a path to one frame as .npy or an image (resized to the
    pipeline's frame size)."""
    size = (pipeline or FramePipeline()).size
    if spec in (None, "", "heldout"):
        return default_goal_frame(env_id, pipeline), "the first frame of a held-out episode"
    if spec.startswith("seed:"):
        try:
            seed = int(spec[5:])
        except ValueError:
            raise ValueError(f"goal frame 'seed:N' needs a whole number N, got '{spec}'") from None
        return default_goal_frame(env_id, pipeline, seed), f"the first frame after a reset with seed {seed}"
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"goal frame '{spec}' is neither 'heldout', 'seed:N' nor an existing .npy or image file")
    if path.suffix.lower() == ".npy":
        frame = np.load(path, allow_pickle=False)
    else:
        from PIL import Image

        frame = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BOX))
    if frame.shape != (size, size, 3):
        raise ValueError(f"goal frame {path} has shape {frame.shape}; expected ({size}, {size}, 3)")
    return frame.astype(np.uint8), f"the frame in {path.name}"


def check_planner(model: WorldModel, planner: str | None = None) -> str:
    """The planner `model` acts with: the one named, or its family's (`capabilities.planner`). A family
    without that planner, or MCTS on continuous actions, is a ValueError of one line."""
    from ..registry import FAMILIES

    own, spec = model.capabilities.planner, model.action_spec
    planner = planner or own
    if planner == "mcts" and not spec.discrete:
        raise ValueError(
            f"MCTS plans over discrete actions only; this env's actions are continuous (Box of {spec.n}): "
            "plan with CEM (a jepa run) instead"
        )
    if planner not in PLANNERS or planner != own:
        offered = ", ".join(f"{cls.capabilities.planner} ({name})" for name, cls in FAMILIES.items()
                            if cls.capabilities.planner in PLANNERS)  # fmt: skip
        mine = f"plans with {own}" if own else "has no planner"
        ask = f"the {planner} planner" if planner else "a planner"
        raise ValueError(f"{model.family} {mine}, so it cannot act with {ask}; planners by family: {offered}")
    needs = {"mcts": Searchable, "cem": GoalEmbedding}[planner]
    if not isinstance(model, needs):  # a family that names a planner must implement its interface
        raise ValueError(f"{model.family} does not implement {needs.__name__}, which the {planner} planner needs")
    return planner


def planner_chooser(
    model: WorldModel,
    *,
    planner: str | None = None,
    goal_frame: np.ndarray | None = None,
    goal_label: str = "the goal frame",
    seed: int = 0,
    **options: Any,
) -> tuple[Chooser, str]:
    """The planner of `check_planner` as a greedy `Chooser` plus a label for it: MCTS without root noise, or
    CEM toward `goal_frame`'s embedding; `options` go to `mcts` / `cem`."""
    planner = check_planner(model, planner)
    if planner == "mcts":
        search = {"simulations": 25, "noise_fraction": 0.0, "temperature": 0.0} | options
        label = f"{PLANNERS['mcts']} ({search['simulations']} simulations)"
        return MctsChooser(model, np.random.default_rng(seed), **search), label
    if goal_frame is None:
        raise ValueError("the CEM planner needs a goal frame")
    generator = torch.Generator(device=model.frame_mean.device).manual_seed(seed)
    return cem_goal_chooser(model, goal_frame, generator=generator, **options), f"{PLANNERS['cem']} toward {goal_label}"

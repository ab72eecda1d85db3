"""Compare: up to four world models of one env, driven by one key stream in lockstep beside the real env,
and "dream from here": K sampled futures per model from a frozen real moment next to the real future.
Plain Python (no gradio), so the app's Compare tab is a thin wrapper and tests drive it directly.

The rules, chosen so that every number compares like with like:
- All runs must share the env id and frame pipeline: one real env feeds every panel.
- One random real context (one reset seed, one set of random actions) starts every dream.
- `tick(held)` maps the held keys to one action through the env's keymap and gives that same action to
  every dream and to the real env. With no key held and no idle action in the keymap (CartPole), nothing
  steps: the comparison waits, as in Play.
- A dream that predicts an episode end is flagged `ended` and holds its last frame and divergence while
  the others and the real env go on: it cannot dream past its own end, and restarting it alone would put
  it on another real state than the rest. Reset restarts everything from a new real context.
- When the real episode ends, the whole comparison holds (a divergence needs a real frame) until Reset.
- Divergence is the model card's foreground-masked MSE of a dream frame against the real frame, with the
  mask from that model's dataset mean frame (plain MSE flatters a model that draws only the background).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import read_meta
from ..data.envs import PixelEnv, env_entry, make_env, replay
from ..data.keys import KeyController, Keymap
from ..dream import Dream
from ..evaluation.card import _frame_errors
from ..spec import FramePipeline
from .play import cached_model, real_context

MAX_RUNS = 4


def compare_problem(metas: Sequence[dict[str, Any]]) -> str | None:
    """Why these checkpoints (their `read_meta` dicts) cannot be compared, or None when they can."""
    if not 1 <= len(metas) <= MAX_RUNS:
        return f"Compare takes 1 to {MAX_RUNS} checkpoints, got {len(metas)}: pick between 1 and {MAX_RUNS}"
    first, shown = metas[0], lambda m: f"{Path(m['_dir']).name} ({m['env_id']})"  # noqa: E731
    for key, what in (("env_id", "env"), ("pipeline", "frame pipeline")):
        odd = [m for m in metas if m[key] != first[key]]
        if odd:
            return (
                f"Compare needs checkpoints of one {what}, but {shown(first)} differs from "
                f"{', '.join(shown(m) for m in odd)}: pick checkpoints trained on the same {what}"
            )
    return None


def run_label(meta: dict[str, Any], decoded_by: str = "decoder") -> str:
    """A panel's title: family, step and run directory (and "probe view" for decoder-free families)."""
    probe = " · probe view" if decoded_by == "probe" else ""
    return f"{meta['family']} · step {meta['step']} · {Path(meta['_dir']).name}{probe}"


def frame_divergence(pred: np.ndarray, real: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Foreground-masked MSE of uint8 frames (..., H, W, 3) against `real` (broadcast), mean frame (H, W, 3)
    float in [0, 1] -> array of shape (...)."""
    shape = pred.shape[:-3]
    p = pred.reshape(-1, *pred.shape[-3:]).astype(np.float32) / 255
    r = np.broadcast_to(real, pred.shape).reshape(p.shape).astype(np.float32) / 255
    _, fg = _frame_errors(p, r, mean)
    return fg.reshape(shape)


@dataclass
class Panel:
    """One model at one tick: its dream frame, predictions and divergence from the real frame."""

    frame: np.ndarray
    reward: float = 0.0
    ret: float = 0.0
    done_prob: float = 0.0
    ended: bool = False
    divergence: float = 0.0
    extras: dict[str, str] = field(default_factory=dict)  # short texts the family offers (`Dream.step`'s info)


@dataclass
class CompareFrame:
    """What one Compare tick shows: the real env and one panel per model."""

    real: np.ndarray
    panels: list[Panel]
    step: int = 0
    real_reward: float = 0.0
    real_ret: float = 0.0
    real_ended: bool = False


@dataclass
class Futures:
    """`dream_from_here`'s result: one shared action sequence, the real future and K dreams per model."""

    actions: np.ndarray  # (H, ...) raw actions shared by the real env and every dream
    real: np.ndarray  # (n, S, S, 3) uint8, n <= H: stops at a real episode end
    real_rewards: np.ndarray  # (n,)
    dreams: np.ndarray  # (M, K, H, S, S, 3) uint8
    rewards: np.ndarray  # (M, K, H) predicted rewards
    done_prob: np.ndarray  # (M, K, H) predicted end probabilities
    divergence: np.ndarray  # (M, K, H) fg-MSE vs the real frame of the same step; NaN after the real end
    labels: list[str]
    temperature: float
    seed: int
    filmstrip: np.ndarray  # (rows, cols, 3) uint8: real row, then each model's K sample rows
    columns: list[int]  # the step (1-based) shown in each filmstrip column
    figure: Any = field(repr=False)  # a matplotlib Figure

    @property
    def samples(self) -> int:
        """K, the dreams per model."""
        return int(self.dreams.shape[1])

    @property
    def horizon(self) -> int:
        """H, the steps dreamed."""
        return int(self.dreams.shape[2])


class CompareSession:
    """Up to four dreams and the real env, started from one real context and stepped by one key stream."""

    def __init__(
        self,
        runs: Sequence[Path | str],
        *,
        temperature: float = 1.0,
        context: int = 5,
        seed: int | None = None,
        device: str = "cpu",
    ) -> None:
        problem = compare_problem([read_meta(r) for r in runs])  # before loading any weights
        if problem:
            raise ValueError(problem)
        loaded = [cached_model(r, device) for r in runs]
        self.models = [m for m, _ in loaded]
        self.metas = [meta for _, meta in loaded]
        self.env_id: str = self.metas[0]["env_id"]
        self.pipeline = FramePipeline.from_json(self.metas[0]["pipeline"])
        self.spec = self.models[0].action_spec
        self.keymap: Keymap = env_entry(self.env_id).keymap
        self.keys = KeyController(self.keymap, self.spec)
        # Each dream samples from its own stream, seeded from the session's seed when it has one.
        self.dreams = [
            Dream(m, temperature, seed=None if seed is None else seed + i) for i, m in enumerate(self.models)
        ]
        self.means = [m.frame_mean.permute(1, 2, 0).float().cpu().numpy() for m in self.models]
        self.labels = [run_label(meta, d.decoded_by) for meta, d in zip(self.metas, self.dreams)]
        self.context = context
        self.rng = np.random.default_rng(seed)
        self.env = make_env(self.env_id, self.pipeline)
        self._replay_env: PixelEnv | None = None
        self.real_seed = 0  # the real env's reset seed; with `actions` it replays the real state exactly
        self.actions: list[Any] = []  # every raw action the real env took since that reset (context included)
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=context)  # (real frame, action into it)
        self.context_frames = self.context_actions = np.zeros(0)
        self.frame: CompareFrame | None = None
        self.resets = 0

    @property
    def temperature(self) -> float:
        """Sampling temperature of every dream (read live each step)."""
        return self.dreams[0].temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        for d in self.dreams:
            d.temperature = float(value)

    def set_sampling_steps(self, steps: int | None) -> int:
        """Denoising steps per frame for every dream that has the knob (pixel-space families); returns how many
        dreams took it."""
        takers = [d for d in self.dreams if d.steps_range]
        for d in takers:
            d.set_sampling_steps(steps)
        return len(takers)

    def reset(self) -> CompareFrame:
        """Restart the real env and every dream from one freshly sampled real context."""
        frames, acts, self.real_seed, _, _ = real_context(self.env, self.spec, self.rng, self.context)
        self.context_frames, self.context_actions = frames, acts
        self.actions = list(acts[1:])  # acts[0] is the "none" before the first frame
        self.recent.clear()
        self.recent.extend(zip(frames, acts))
        panels = []
        for dream, mean in zip(self.dreams, self.means):
            view = dream.reset(frames, acts)
            panels.append(Panel(view, divergence=float(frame_divergence(view, frames[-1], mean))))
        self.keys.reset()
        self.resets += 1
        self.frame = CompareFrame(real=frames[-1], panels=panels)
        return self.frame

    def waiting(self, held: Sequence[str]) -> bool:
        """True when nothing steps because no key is held and the keymap has no idle action."""
        return self.keymap.idle_action is None and not held

    def tick(self, held: Sequence[str] = ()) -> CompareFrame:
        """One frame: the held keys' action to every dream and the real env; waits while no key is held
        (no idle action) and holds once the real episode has ended."""
        if self.frame is None:
            return self.reset()
        if self.frame.real_ended:
            return self.frame
        action = self.keys.action(held)
        return self.frame if action is None else self.step(action)

    def step(self, action: Any) -> CompareFrame:
        """Step the real env and every dream that has not predicted an end with one raw action."""
        prev = self.frame if self.frame is not None else self.reset()
        if prev.real_ended:
            return prev
        real, r, term, trunc, _ = self.env.step(action)
        action = np.asarray(action, dtype=self.spec.zeros().dtype)
        self.actions.append(action)
        self.recent.append((real, action))
        panels = []
        for dream, mean, p in zip(self.dreams, self.means, prev.panels):
            if p.ended:  # held at its predicted end (see the module doc)
                panels.append(p)
                continue
            frame, reward, ended, info = dream.step(action)
            div = float(frame_divergence(frame, real, mean))
            panels.append(Panel(frame, reward, p.ret + reward, info["done_prob"], ended, div, info.get("extras", {})))
        self.frame = CompareFrame(
            real=real,
            panels=panels,
            step=prev.step + 1,
            real_reward=float(r),
            real_ret=prev.real_ret + float(r),
            real_ended=bool(term or trunc),
        )
        return self.frame

    # ---- dream from here ------------------------------------------------------------------------
    def replay_real(self) -> PixelEnv:
        """A second env brought to the real env's current state by replaying its reset seed and actions
        (generic for any gymnasium env that is deterministic given its seed); checked frame for frame."""
        if self._replay_env is None:
            self._replay_env = make_env(self.env_id, self.pipeline)
        env = self._replay_env
        frame, _ = replay(env, self.real_seed, self.actions)
        if self.frame is not None and not np.array_equal(frame, self.frame.real):
            raise ValueError(
                f"{self.env_id} did not come back to the same frame when replayed from its seed and actions "
                "(the env is not deterministic), so its real future is unknown"
            )
        return env

    @torch.inference_mode()
    def dream_from_here(self, samples: int = 4, horizon: int = 20, seed: int | None = None) -> Futures:
        """Freeze the real env here; from its last `context` frames and actions, dream `samples` futures per
        model for `horizon` steps and roll a replayed copy of the real env forward, all with one shared
        sequence of random actions drawn from `seed`. The live session is left exactly as it was."""
        if samples < 1 or horizon < 1:
            raise ValueError(f"dream from here needs at least 1 sample and 1 step, got {samples} and {horizon}")
        if self.frame is None:
            self.reset()
        if self.frame.real_ended:
            raise ValueError("the real episode has ended, so there is no real future to compare with: press Reset")
        seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        rng = np.random.default_rng(seed)
        # Random actions (not the player's keys, which are unknown for the future): one sequence shared by the
        # real env and every sample, so samples differ only by the models' sampling at this temperature.
        actions = np.stack([np.asarray(self.spec.sample(rng), dtype=self.spec.zeros().dtype) for _ in range(horizon)])
        env = self.replay_real()
        real, real_rew = [], []
        for a in actions:
            frame, r, term, trunc, _ = env.step(a)
            real.append(frame)
            real_rew.append(float(r))
            if term or trunc:
                break
        frames = np.stack([f for f, _ in self.recent])  # (T, S, S, 3)
        acts = np.stack([a for _, a in self.recent])
        M, S = len(self.models), frames.shape[1]
        dreams = np.zeros((M, samples, horizon, S, S, 3), np.uint8)
        rewards = np.zeros((M, samples, horizon), np.float32)
        done = np.zeros((M, samples, horizon), np.float32)
        for i, model in enumerate(self.models):
            dream = Dream(model, self.temperature, seed=seed)  # its own random stream: the live dreams' stays
            dream.reset(np.repeat(frames[None], samples, 0), np.repeat(acts[None], samples, 0))
            for t, a in enumerate(actions):
                dreams[i, :, t], rewards[i, :, t], _, info = dream.step(np.repeat(a[None], samples, 0))
                done[i, :, t] = info["done_prob"]
        real_arr = np.stack(real)
        n = len(real_arr)
        div = np.full((M, samples, horizon), np.nan, np.float32)
        for i, mean in enumerate(self.means):
            div[i, :, :n] = frame_divergence(dreams[i, :, :n], real_arr, mean)
        strip, columns = filmstrip(real_arr, dreams, ended=done > 0.5)
        return Futures(
            actions=actions,
            real=real_arr,
            real_rewards=np.asarray(real_rew, np.float32),
            dreams=dreams,
            rewards=rewards,
            done_prob=done,
            divergence=div,
            labels=list(self.labels),
            temperature=self.temperature,
            seed=seed,
            filmstrip=strip,
            columns=columns,
            figure=divergence_figure(div, self.labels, self.temperature),
        )


def filmstrip(
    real: np.ndarray, dreams: np.ndarray, *, ended: np.ndarray | None = None, max_columns: int = 15, gap: int = 2
) -> tuple[np.ndarray, list[int]]:
    """One uint8 image: the real future (n, S, S, 3) on top, then each model's K samples (M, K, H, S, S, 3),
    one column per step (every n-th step when H > `max_columns`), thin gaps, a wider gap between models.
    Steps past the real end are dark; dream frames after a sample's first predicted end (`ended`, (M, K, H))
    are dimmed. Returns the image and the 1-based step shown in each column."""
    M, K, H, S = dreams.shape[:4]
    every = math.ceil(H / max_columns)
    cols = list(range(every - 1, H, every))
    rows: list[tuple[int, np.ndarray]] = [(0, np.stack([real[t] if t < len(real) else _blank(S) for t in cols]))]
    over = np.zeros((M, K, H), bool) if ended is None else np.logical_or.accumulate(ended, axis=-1)
    for i in range(M):
        for k in range(K):
            cells = dreams[i, k, cols].astype(np.float32)
            cells[over[i, k, cols]] *= 0.35
            rows.append((3 * gap if k == 0 else gap, cells.astype(np.uint8)))
    width = len(cols) * S + (len(cols) - 1) * gap
    height = sum(pad + S for pad, _ in rows)
    out = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for pad, cells in rows:
        y += pad
        for c, cell in enumerate(cells):
            out[y : y + S, c * (S + gap) : c * (S + gap) + S] = cell
        y += S
    return out, [c + 1 for c in cols]


def _blank(size: int) -> np.ndarray:
    return np.full((size, size, 3), 40, np.uint8)


def divergence_figure(divergence: np.ndarray, labels: Sequence[str], temperature: float) -> Any:
    """Divergence over time (M, K, H): per model the mean over its K samples and a min-max band; the title
    carries the budget (samples, horizon, temperature)."""
    M, K, H = divergence.shape
    valid = ~np.isnan(divergence[0, 0])
    n = int(valid.sum())
    from matplotlib.figure import Figure  # imported here: `import wm_core` stays free of matplotlib

    fig = Figure(figsize=(7.0, 3.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(1, n + 1)
    for i, label in enumerate(labels):
        d = divergence[i, :, :n]
        (line,) = ax.plot(x, d.mean(0), marker="o", markersize=3, label=label)
        ax.fill_between(x, d.min(0), d.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
    end = f" · real episode ended at step {n}" if n < H else ""
    ax.set_title(f"{K} sample{'s' * (K > 1)} per model · horizon {H} · temperature {temperature:g}{end}", fontsize=10)
    ax.set_xlabel("steps after the frozen real frame")
    ax.set_ylabel("foreground MSE vs real")
    ax.set_xlim(0.5, max(n, 1) + 0.5)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig

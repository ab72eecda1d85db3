"""Who can drive a dream while no key is held: the actor-critic trained in the run's dream (`wm agent train`),
else the family's planner (MCTS with few simulations, or CEM toward the env's default goal frame), else no one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..agents.planning import Chooser
from ..protocol import WorldModel
from ..spec import FramePipeline

PLAY_SIMULATIONS = 8  # MCTS simulations per move (~3 ms on one core), unless an MCTS agent's run gives its own
PLAY_CEM = {"horizon": 6, "population": 32, "elites": 4, "iterations": 3}  # CEM when it drives


def load_driver(model: WorldModel, meta: dict[str, Any], pipeline: FramePipeline) -> tuple[Chooser | None, str]:
    """(a `Chooser` on dream states, its label), or (None, "you") when nothing can drive."""
    from ..agents.agent import AGENT_FILE, ActorCritic, load_agent
    from ..agents.planning import PLANNERS, default_goal_frame, planner_chooser

    run = Path(meta["_dir"])
    search: dict[str, Any] = {}  # an MCTS agent's run plays its own search
    if (run / AGENT_FILE).exists():
        try:
            agent, _ = load_agent(run, model)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            msg = f"the agent saved in {run} cannot be loaded ({e}); delete {AGENT_FILE} to play"
            raise ValueError(msg) from None
        if isinstance(agent, ActorCritic):
            return agent.eval().chooser(model, explore=False), "trained agent"
        c = agent.config  # the search the agent was trained and evaluated with
        search = {"greedy": c.greedy_choice, "normalize": c.q_normalization, "simulations": c.simulations}
    planner = model.capabilities.planner
    if planner == "mcts" and model.action_spec.discrete:
        return planner_chooser(model, **{"simulations": PLAY_SIMULATIONS, **search})
    if planner in PLANNERS and planner != "mcts":
        goal = default_goal_frame(meta["env_id"], pipeline)
        return planner_chooser(model, goal_frame=goal, goal_label="a held-out start frame", **PLAY_CEM)
    return None, "you"

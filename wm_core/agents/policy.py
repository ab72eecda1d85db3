"""A trained agent as a data policy: `wm collect --policy RUN` and `wm train --policy RUN` collect episodes with
the agent saved in RUN (`wm agent train RUN`), acting from its world model's filtered state and exploring.

The data layer knows the random and scripted policies by name and takes any other policy as an object
(`wm_core.data.collect`); the command line turns a run directory into this object (`data_policy`), so data
collection never reaches up into the agents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..protocol import State
from .agent import AGENT_FILE, load_agent


class AgentPolicy:
    """The agent in `run` choosing one raw action per env from each env's own filtered state."""

    def __init__(self, run: Path | str, env_id: str | None = None) -> None:
        self.model, meta = load_checkpoint(run)
        if env_id is not None and meta["env_id"] != env_id:
            raise ValueError(f"the agent in {run} plays {meta['env_id']}, not {env_id}")
        agent, _ = load_agent(Path(run), self.model)
        self.choose = agent.chooser(self.model, True)
        self.name = f"agent {Path(run).name}"
        self.states: dict[int, tuple[State, Any]] = {}  # env -> (state, the action that led to its next frame)

    def reset(self, i: int) -> None:
        """Env i starts an episode: forget its state."""
        self.states.pop(i, None)

    def __call__(self, frames: np.ndarray, envs: Sequence[Any]) -> list[Any]:
        """Observe each env's frame with the action that led to it, then let the agent choose."""
        spec, out = self.model.action_spec, []
        with torch.inference_mode():
            for i, frame in enumerate(frames):
                state, prev = self.states.get(i, (self.model.initial(1), None))
                vec = torch.zeros(1, spec.dim) if prev is None else spec.encode(np.asarray(prev)[None])
                state = self.model.observe(state, torch.as_tensor(frame[None]), vec)
                action, _ = self.choose(state)
                self.states[i] = (state, action)
                out.append(action)
        return out


def data_policy(policy: str, env_id: str | None = None) -> str | AgentPolicy:
    """What `collect` and `train_run` take for the `--policy` flag: the agent of a run directory that holds one,
    else the name itself ("random", "scripted"; `collect` refuses any other in one line)."""
    return AgentPolicy(policy, env_id) if (Path(policy) / AGENT_FILE).is_file() else policy

"""A family defined outside the library, in one file: the state is the last frame, a dream step shifts it one
pixel per action index (wrapping) and adds a learned colour offset; reward and end are linear in the action.
Registered in tests/test_protocol.py with one line, it gets every conformance check and plays in `Dream`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wm_core.protocol import Batch, Capabilities, State, TrainConfig, WorldModel


@dataclass
class ShiftConfig(TrainConfig):
    """No model fields: the shift family has nothing to size."""


class ShiftFamily(WorldModel):
    """Copy the last frame, shift it by the action, add a learned offset."""

    family = "shift"
    Config = ShiftConfig
    PRESETS = {"tiny": {"steps": 5, "batch_size": 4, "seq_len": 8}, "small": {}, "large": {}}
    capabilities = Capabilities(decoder=True, probe_decoder=False, stochastic=False,
                                temperature="ignored: the shift is deterministic")  # fmt: skip

    def __init__(self, config: ShiftConfig, action_spec, frame_size: int = 64) -> None:
        super().__init__(config, action_spec, frame_size)
        self.offset = nn.Parameter(torch.zeros(3))
        self.reward_w = nn.Parameter(torch.zeros(action_spec.dim))
        self.done_w = nn.Parameter(torch.zeros(action_spec.dim))

    def _next(self, frame: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        shifts = action.argmax(-1) if self.action_spec.discrete else action[:, 0].round().long()
        rolled = torch.stack([torch.roll(f, int(k), dims=-2) for f, k in zip(frame, shifts)])
        return (rolled + self.offset).clamp(0, 1)

    def initial(self, batch_size: int) -> State:
        S = self.frame_size
        zeros = torch.zeros(batch_size, 1)
        return {"frame": torch.zeros(batch_size, S, S, 3), "rew": zeros, "end": zeros - 5}

    def observe(self, state: State, frame: torch.Tensor, prev_action: torch.Tensor) -> State:
        return self._heads(frame.float() / 255, prev_action.float())

    def imagine(self, state: State, action: torch.Tensor, temperature: float = 1.0, generator=None) -> State:
        return self._heads(self._next(state["frame"], action.float()), action.float())

    def _heads(self, frame: torch.Tensor, action: torch.Tensor) -> State:
        return {"frame": frame, "rew": (action @ self.reward_w)[:, None], "end": (action @ self.done_w)[:, None] - 5}

    def decode(self, state: State) -> torch.Tensor:
        return state["frame"].clamp(0, 1)

    def reward(self, state: State) -> torch.Tensor:
        return state["rew"][:, 0]

    def done(self, state: State) -> torch.Tensor:
        return torch.sigmoid(state["end"][:, 0])

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        obs, act = batch["obs"].float() / 255, batch["act"].float()
        pred = torch.stack([self._next(obs[:, t], act[:, t + 1]) for t in range(obs.shape[1] - 1)], 1)
        frame_loss = (pred - obs[:, 1:]).pow(2).mean()
        rew_loss = (act @ self.reward_w - batch["rew"].float()).pow(2).mean()
        end = nn.functional.binary_cross_entropy_with_logits(act @ self.done_w - 5, batch["is_terminal"].float())
        loss = frame_loss + rew_loss + end
        return loss, {"loss": loss.item(), "frame_mse": frame_loss.item()}

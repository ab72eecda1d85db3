"""`Dream`: any world model as a gymnasium-like environment. The Play tab, the evaluator and
dream-trained controllers all step models through this one adapter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .protocol import Searchable, State, WorldModel


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(..., H, W, 3) float in [0, 1] -> uint8 numpy."""
    return (frames.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


class Dream:
    """reset(context frames, actions) then step(action) -> (frame, reward, terminated, info).

    Inputs may be single (frames (T, H, W, 3), one action) or batched (frames (B, T, H, W, 3), B
    actions); outputs follow the same shape. Actions are raw env actions (int index or float vector).
    """

    def __init__(
        self, model: WorldModel, temperature: float = 1.0, done_threshold: float = 0.5, steps: int | None = None,
        seed: int | None = None,
    ) -> None:  # fmt: skip
        self.model = model.eval()
        self.spec = model.action_spec
        self.temperature = temperature
        # Each dream samples from its own generator (seeded for evaluations, fresh for play), so nothing here
        # reads or reseeds the global random stream that other sessions and threads share.
        self.generator = torch.Generator(device=model.frame_mean.device)
        self.reseed(seed)
        self.steps_range: tuple[int, int] | None = model.capabilities.sampling_steps
        self.sampling_steps: int | None = None  # None: the family's default (families with `sampling_steps` only)
        self.set_sampling_steps(steps)
        self.done_threshold = done_threshold
        self.state: State | None = None
        self.batched = False
        self.steps = 0
        self.device = model.frame_mean.device

    def reseed(self, seed: int | None) -> None:
        """Restart the dream's random stream from `seed` (None: a fresh, unpredictable seed)."""
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def set_sampling_steps(self, steps: int | None) -> None:
        """Denoising steps per frame (None: the family's default); ValueError for a family without the knob or
        a number outside its range."""
        if steps is None:
            self.sampling_steps = None
            return
        if not self.steps_range:
            raise ValueError(f"the {self.model.family} family draws each frame in one pass: it has no sampling steps")
        lo, hi = self.steps_range
        if not lo <= int(steps) <= hi:
            raise ValueError(f"sampling steps must be between {lo} and {hi}, got {steps}")
        self.sampling_steps = int(steps)

    @property
    def decoded_by(self) -> str:
        """'decoder' when the model draws its own frames, 'probe' when a probe decoder does."""
        return "decoder" if self.model.capabilities.decoder else "probe"

    def _actions(self, actions: Any, batch: int) -> torch.Tensor:
        a = np.asarray(actions)
        if not self.batched:
            a = a[None]
        vec = self.spec.encode(a).to(self.device)
        if vec.shape[0] != batch:
            raise ValueError(f"expected {batch} actions, got {vec.shape[0]}")
        return vec

    @torch.inference_mode()
    def reset(self, context_frames: np.ndarray, context_actions: np.ndarray | None = None) -> np.ndarray:
        """Filter through real context frames; returns the model's view of the last one (uint8)."""
        frames = np.asarray(context_frames)
        self.batched = frames.ndim == 5
        if not self.batched:
            frames = frames[None]
            if context_actions is not None:
                context_actions = np.asarray(context_actions)[None]
        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[1] < 1:
            raise ValueError(f"context frames must be (T, H, W, 3) or (B, T, H, W, 3), got {frames.shape}")
        B, T = frames.shape[:2]
        if context_actions is None:  # no actions known: the first frame starts an episode, the rest unknown
            acts = torch.zeros(B, T, self.spec.dim, device=self.device)
            state = self.model.filter(torch.as_tensor(frames, device=self.device), acts)
        else:
            state = self.model.filter(*self.model.context_tensors(frames, np.asarray(context_actions)))
        self.state, self.steps = state, 0
        out = to_uint8(self.model.decode(state))
        return out if self.batched else out[0]

    @torch.inference_mode()
    def step(self, action: Any) -> tuple[np.ndarray, Any, Any, dict[str, Any]]:
        """One dream step -> (frame uint8, predicted reward, predicted end, info)."""
        if self.state is None:
            raise RuntimeError("call reset(context_frames) before step()")
        B = next(iter(self.state.values())).shape[0]
        options = {"steps": self.sampling_steps} if self.steps_range and self.sampling_steps else {}
        action = self._actions(action, B)
        self.state = self.model.imagine(self.state, action, self.temperature, self.generator, **options)
        self.steps += 1
        frame = to_uint8(self.model.decode(self.state))
        reward = self.model.reward(self.state).float().cpu().numpy()
        p_end = self.model.done(self.state).float().cpu().numpy()
        ended = p_end > self.done_threshold
        info = {
            "done_prob": p_end if self.batched else float(p_end[0]),
            "step": self.steps,
            "decoded_by": self.decoded_by,
        }
        if not self.batched and (extras := self.extras()):
            info["extras"] = extras
        if self.batched:
            return frame, reward, ended, info
        return frame[0], float(reward[0]), bool(ended[0]), info

    @torch.inference_mode()
    def extras(self) -> dict[str, str]:
        """Short texts about the current (single) state that a searchable family (`Searchable`) offers, for display
        beside the frame: with "value" and "policy" (MuZero's prediction function) the value and the prior
        over the action spec's named actions, e.g. {"value": "12.3", "policy": "push left 62% · push right 38%"}."""
        out: dict[str, str] = {}
        if self.state is None or not isinstance(self.model, Searchable):
            return out
        policy, value = self.model.policy_value(self.state)
        names = self.spec.names or tuple(f"action {i}" for i in range(self.spec.n))
        out["value"] = f"{float(value[0]):.1f}"
        out["policy"] = " · ".join(f"{name} {p:.0%}" for name, p in zip(names, policy[0].tolist()))
        return out

    def latent(self) -> np.ndarray:
        """The current state's flat latent, (B, D) or (D,)."""
        if self.state is None:
            raise RuntimeError("call reset() first")
        z = self.model.latent(self.state).float().cpu().numpy()
        return z if self.batched else z[0]

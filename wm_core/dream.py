"""`Dream`: any world model as a gymnasium-like environment. The Play tab, the evaluator and
dream-trained controllers all step models through this one adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .models.nn import Generators
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
        self.state = state
        out = to_uint8(self.model.decode(state))
        return out if self.batched else out[0]

    @torch.inference_mode()
    def step(self, action: Any) -> tuple[np.ndarray, Any, Any, dict[str, Any]]:
        """One dream step -> (frame uint8, predicted reward, predicted end, info)."""
        if self.state is None:
            raise RuntimeError("call reset(context_frames) before step()")
        if not self.batched:
            return Dream.step_together([self], [action])[0]
        B = next(iter(self.state.values())).shape[0]
        self.state = self._imagine(self.state, self._actions(action, B), self.generator)
        frame, reward, p_end = self._outputs(self.state)
        return frame, reward, p_end > self.done_threshold, {"done_prob": p_end}

    def _imagine(self, state: State, action: torch.Tensor, generator: Generators) -> State:
        options = {"steps": self.sampling_steps} if self.steps_range and self.sampling_steps else {}
        return self.model.imagine(state, action, self.temperature, generator, **options)

    def _outputs(self, state: State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames uint8, predicted rewards, end probabilities) of a batch of states."""
        frame = to_uint8(self.model.decode(state))
        return frame, self.model.reward(state).float().cpu().numpy(), self.model.done(state).float().cpu().numpy()

    def batch_key(self) -> tuple[int, float, int | None]:
        """Dreams with equal keys can step together: the same model, temperature and sampling steps."""
        return id(self.model), float(self.temperature), self.sampling_steps

    @staticmethod
    @torch.inference_mode()
    def step_together(dreams: Sequence[Dream], actions: Sequence[Any]) -> list[tuple[np.ndarray, float, bool, dict]]:
        """Step several single (unbatched) dreams with equal `batch_key`s in one batched forward pass; each
        returns what its own `step` would, with the family's display texts (`extras`) in its info. Every dream
        keeps drawing from its own generator (one per row), so a player's dream does not depend on who else was
        stepped alongside; the display head runs once for the whole batch too."""
        first = dreams[0]
        if any(d.batched or d.state is None or d.batch_key() != first.batch_key() for d in dreams):
            raise ValueError("step_together takes reset, unbatched dreams of one model and one temperature")
        state = {k: torch.cat([d.state[k] for d in dreams]) for k in first.state}
        action = torch.cat([d._actions(a, 1) for d, a in zip(dreams, actions)])
        generators = first.generator if len(dreams) == 1 else [d.generator for d in dreams]
        state = first._imagine(state, action, generators)
        frames, rewards, p_end = first._outputs(state)
        extras = first.extras(state)
        out = []
        for i, d in enumerate(dreams):
            d.state = {k: v[i : i + 1] for k, v in state.items()}
            info: dict[str, Any] = {"done_prob": float(p_end[i])}
            if extras[i]:
                info["extras"] = extras[i]
            out.append((frames[i], float(rewards[i]), bool(p_end[i] > d.done_threshold), info))
        return out

    @torch.inference_mode()
    def extras(self, state: State) -> list[dict[str, str]]:
        """Per row of a batch of states, the short texts a searchable family (`Searchable`) offers for display
        beside the frame, from one pass of its prediction function: the value and the prior over the action
        spec's named actions, e.g. {"value": "12.3", "policy": "push left 62% · push right 38%"}; {} for others."""
        rows = next(iter(state.values())).shape[0]
        if not isinstance(self.model, Searchable):
            return [{} for _ in range(rows)]
        policy, value = self.model.policy_value(state)
        names = self.spec.names or tuple(f"action {i}" for i in range(self.spec.n))
        return [
            {"value": f"{v:.1f}", "policy": " · ".join(f"{name} {p:.0%}" for name, p in zip(names, prior))}
            for v, prior in zip(value.float().tolist(), policy.float().tolist())
        ]

    def latent(self) -> np.ndarray:
        """The current state's flat latent, (B, D) or (D,)."""
        if self.state is None:
            raise RuntimeError("call reset() first")
        z = self.model.latent(self.state).float().cpu().numpy()
        return z if self.batched else z[0]

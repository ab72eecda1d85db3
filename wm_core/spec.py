"""Plain data that every part of the library agrees on: action specs and frame pipelines.

Both are frozen dataclasses that round-trip through JSON, so a checkpoint can record exactly how its
frames were made and what its actions mean.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch


@dataclass(frozen=True)
class ActionSpec:
    """What an environment's actions are, and how models see them.

    Discrete actions become one-hot vectors of size `n` inside models; Box actions are clipped float
    vectors of size `n`. Either way a model only ever sees a float vector of size `dim`.
    """

    kind: Literal["discrete", "box"]
    n: int
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    names: tuple[str, ...] = ()
    blind: bool = False
    """Encode every action as zeros (a model trained with `blind_actions`: it cannot hear the keys). Not part
    of the env's spec on disk: the model's config carries it."""

    @property
    def dim(self) -> int:
        """Size of the float vector a model receives for one action."""
        return self.n

    @property
    def discrete(self) -> bool:
        """True for Discrete action spaces."""
        return self.kind == "discrete"

    def zeros(self) -> np.ndarray:
        """The raw "no action yet" value stored before the first frame of an episode."""
        if self.discrete:
            return np.zeros((), dtype=np.int64)
        return np.zeros(self.n, dtype=np.float32)

    def encode(self, actions: np.ndarray | torch.Tensor | int | list) -> torch.Tensor:
        """Raw env actions (..., ) int or (..., n) float  ->  model vectors (..., dim) float32."""
        a = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions)
        if self.discrete:
            a = a.long()
            if a.numel() and (a.min() < 0 or a.max() >= self.n):
                raise ValueError(f"discrete action out of range 0..{self.n - 1}: {a.tolist()}")
            vec = torch.nn.functional.one_hot(a, self.n).float()
            return vec.zero_() if self.blind else vec
        low = torch.tensor(self.low, dtype=torch.float32)
        high = torch.tensor(self.high, dtype=torch.float32)
        a = a.float()
        if a.shape[-1:] != (self.n,):
            raise ValueError(f"box action must have last dimension {self.n}, got shape {tuple(a.shape)}")
        vec = torch.maximum(torch.minimum(a, high), low)
        return vec.zero_() if self.blind else vec

    def to_env(self, action: Any) -> int | np.ndarray:
        """A raw action in the form `env.step` accepts (int, or clipped float32 array)."""
        if self.discrete:
            a = int(np.asarray(action).reshape(-1)[0])
            if not 0 <= a < self.n:
                raise ValueError(f"discrete action {a} out of range 0..{self.n - 1}")
            return a
        a = np.asarray(action, dtype=np.float32).reshape(self.n)
        return np.clip(a, np.asarray(self.low, np.float32), np.asarray(self.high, np.float32))

    def sample(self, rng: np.random.Generator) -> int | np.ndarray:
        """One uniformly random raw action."""
        if self.discrete:
            return int(rng.integers(self.n))
        return rng.uniform(self.low, self.high).astype(np.float32)

    def to_json(self) -> dict:
        """JSON-ready dict (the env's spec: without `blind`)."""
        d = dataclasses.asdict(self)
        del d["blind"]
        return d

    @classmethod
    def from_json(cls, d: dict) -> ActionSpec:
        """Inverse of `to_json`."""
        return cls(
            kind=d["kind"],
            n=int(d["n"]),
            low=tuple(float(x) for x in d.get("low", ())),
            high=tuple(float(x) for x in d.get("high", ())),
            names=tuple(str(x) for x in d.get("names", ())),
        )


@dataclass(frozen=True)
class FramePipeline:
    """How a raw env image becomes a model frame: source, crop, thickening, resize.

    Thin objects (the CartPole pole, the Pong ball) vanish under a plain area resize. `thicken`
    grows them first with a `thicken`-pixel min filter (`thicken_mode="dark"`, dark objects on a light
    background) or max filter (`"light"`), so they survive the downscale.
    """

    source: Literal["render", "obs"] = "render"
    crop: tuple[int, int, int, int] | None = None  # (top, bottom, left, right) in source pixels
    thicken: int = 0
    thicken_mode: Literal["dark", "light"] = "dark"
    size: int = 64
    action_repeat: int = 1
    env_kwargs: dict = field(default_factory=dict)
    reset_noops: int = 0  # raw env steps with the "no action" action after each reset (CarRacing's zoom-in)
    max_last_two: bool = False
    """The frame is the pixel-wise max of the last two raw frames of the action repeat: Atari draws some
    objects only on alternate frames, and the max keeps them (Mnih et al. 2015, "Human-level control through
    deep reinforcement learning"; DIAMOND, IRIS and DreamerV3 do the same)."""

    def to_json(self) -> dict:
        """JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["crop"] = list(self.crop) if self.crop is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> FramePipeline:
        """Inverse of `to_json`."""
        d = dict(d)
        if d.get("crop") is not None:
            d["crop"] = tuple(int(x) for x in d["crop"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown frame pipeline fields: {sorted(unknown)}")
        return cls(**d)

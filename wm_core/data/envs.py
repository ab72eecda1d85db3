"""Environments as small RGB frames: the env catalog, frame pipelines, keymaps and a pixel wrapper.

`make_env` returns a `PixelEnv` whose observations are square RGB frames made by a `FramePipeline`.
Catalog pipelines were tuned by looking at the frames, so the pole, the ball and the paddles survive
the downscale to 64x64; any other registered gymnasium id gets a generic entry derived from its spaces.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# pygame (used by the classic-control and box2d renderers) must never try to open a window.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Discrete
from PIL import Image

from ..errors import EnvError
from ..spec import ActionSpec, FramePipeline
from .keys import KeyBinding, Keymap, _combo, _derived_keymap

# pygame's SDL, which renders the classic-control envs, installs its own SIGTERM handler that swallows the
# signal, so `kill` could not stop a training run; leave signals to Python.
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")


@dataclass(frozen=True)
class EnvEntry:
    """A playable env: its frame pipeline, keymap and the optional extra it needs."""

    env_id: str
    description: str  # one line: what the player controls, and what the frame pipeline does
    pipeline: FramePipeline
    keymap: Keymap
    requires: str | None = None  # module to import first, e.g. "ale_py" (registers the ALE ids)
    extra: str | None = None  # pip extra that provides it, named in error messages
    state_names: tuple[str, ...] = ()  # names of the true state's dims (classic control), for state probes
    data_frames: int = 20_000  # frames `wm train` collects by default (scripted policy mixed with random)
    heldout_steps: int = 200  # `wm eval` cuts held-out episodes here: the card needs 5 + 50 frames of each


def _atari(reset_steps: int) -> dict[str, Any]:
    """Deterministic Atari frames: no sticky actions (ALE v5 replaces a quarter of key presses with the previous
    one), our own skip of 4 with the max of the last two frames, and `reset_steps` skipped steps of no-ops."""
    return {
        "env_kwargs": {"frameskip": 1, "repeat_action_probability": 0.0},
        "action_repeat": 4,
        "max_last_two": True,
        "reset_noops": 4 * reset_steps,
    }


B = KeyBinding
# Crops are (top, bottom, left, right) in source pixels. Thickening widths were chosen from PNG strips:
# CartPole's 10-px pole needs 15 to stay >= 2 columns wide after the 9x horizontal squeeze.
CATALOG: dict[str, EnvEntry] = {
    e.env_id: e
    for e in [
        EnvEntry(
            "CartPole-v1",
            "Push the cart left/right to balance the pole; render cropped to the cart band, pole thickened.",
            FramePipeline(crop=(150, 330, 0, 600), thicken=15),
            Keymap((B("ArrowLeft", "push left", 0), B("ArrowRight", "push right", 1))),
            state_names=("cart x", "cart velocity", "pole angle", "pole angular velocity"),
        ),
        EnvEntry(
            "MountainCar-v0",
            "Push the car left/right to reach the flag; full render, hill line and car thickened.",
            FramePipeline(crop=(10, 390, 0, 600), thicken=7),
            Keymap((B("ArrowLeft", "push left", 0), B("ArrowRight", "push right", 2)), idle_action=1),
            state_names=("car x", "car velocity"),
        ),
        EnvEntry(
            "Pendulum-v1",
            "Apply torque left/right to swing the pendulum up; render cropped to the rod's reach.",
            FramePipeline(crop=(115, 385, 115, 385)),
            Keymap((B("ArrowLeft", "torque left", dim=0, sign=-1.0), B("ArrowRight", "torque right", dim=0))),
            state_names=("cos angle", "sin angle", "angular velocity"),
        ),
        EnvEntry(
            "Acrobot-v1",
            "Torque the middle joint left/right to swing the tip up; render cropped to the arm's reach.",
            FramePipeline(crop=(20, 480, 20, 480), thicken=3),
            Keymap((B("ArrowLeft", "torque -1", 0), B("ArrowRight", "torque +1", 2)), idle_action=1),
            state_names=("cos θ1", "sin θ1", "cos θ2", "sin θ2", "θ1 velocity", "θ2 velocity"),
        ),
        EnvEntry(
            "CarRacing-v3",
            "Steer, gas and brake around the track; the 96x96 observation with its dashboard, repeat 2, "
            "starting after the camera's zoom-in.",
            FramePipeline(source="obs", action_repeat=2, reset_noops=50),
            Keymap(
                (B("ArrowLeft", "steer left", dim=0, sign=-1.0), B("ArrowRight", "steer right", dim=0))
                + (B("ArrowUp", "gas", dim=1), B("ArrowDown", "brake", dim=2))
            ),
            requires="Box2D",
            extra="box2d",
            data_frames=16_000,
            heldout_steps=120,
        ),
        EnvEntry(
            "ALE/Pong-v5",
            "Move the right (green) paddle up/down; observation cropped to the field, ball thickened, starting "
            "as the first ball is served; deterministic (no sticky keys), skip 4 with the max of the last two.",
            FramePipeline(source="obs", crop=(34, 194, 0, 160), thicken=4, thicken_mode="light", **_atari(15)),
            Keymap(
                (B("ArrowUp", "up", 2), B("ArrowDown", "down", 3), B(" ", "fire", 1))
                + (B("ArrowUp+ ", "up + fire", 4), B("ArrowDown+ ", "down + fire", 5)),
                idle_action=0,
            ),
            requires="ale_py",
            extra="atari",
            data_frames=40_000,
        ),
        EnvEntry(
            "ALE/Breakout-v5",
            "Move the paddle left/right, Space launches the ball; observation cropped inside the walls; "
            "deterministic (no sticky keys), skip 4 with the max of the last two.",
            FramePipeline(source="obs", crop=(32, 196, 8, 152), thicken=3, thicken_mode="light", **_atari(0)),
            Keymap((B("ArrowLeft", "left", 3), B("ArrowRight", "right", 2), B(" ", "fire", 1)), idle_action=0),
            requires="ale_py",
            extra="atari",
            data_frames=40_000,
        ),
    ]
}
del B


def _require(env_id: str, module: str | None, extra: str | None) -> None:
    if module is None:
        return
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        hint = f"pip install 'world-model-playground[{extra}]'" if extra else f"pip install {module}"
        raise EnvError(f"{env_id} needs the '{extra or module}' extra: {hint}") from e
    if module == "ale_py":  # ALE prints a two-line banner on stderr with its first env; a refusal is one line
        mod.ALEInterface.setLoggerMode(mod.LoggerMode.Error)


def _check_registered(env_id: str) -> None:
    if env_id.startswith("ALE/"):
        _require(env_id, "ale_py", "atari")  # importing ale_py registers the ALE ids
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error as e:
        hint = "see `wm envs` for the catalog, or give any registered gymnasium id"
        raise EnvError(f"unknown environment '{env_id}': {hint}") from e


def _create(env_id: str, env_kwargs: dict) -> gymnasium.Env:
    kwargs = {"render_mode": "rgb_array", **({"obs_type": "rgb"} if env_id.startswith("ALE/") else {})}
    try:
        return gymnasium.make(env_id, **kwargs, **env_kwargs)
    except gymnasium.error.DependencyNotInstalled as e:
        raise EnvError(f"{env_id} needs a missing dependency: {e}") from e
    except (gymnasium.error.Error, TypeError) as e:
        raise EnvError(f"{env_id} cannot be made with render_mode='rgb_array' and {env_kwargs}: {e}") from e


def _is_rgb_image(space: gymnasium.Space) -> bool:
    return isinstance(space, Box) and space.dtype == np.uint8 and space.shape[2:] == (3,)  # (H, W, 3)


def _check_source(env_id: str, env: gymnasium.Env, source: str) -> None:
    if source == "obs" and not _is_rgb_image(env.observation_space):
        raise EnvError(f"{env_id} observations are not RGB images; use a pipeline with source='render'")
    if source == "render" and "rgb_array" not in env.metadata.get("render_modes", []):
        raise EnvError(f"{env_id} cannot render rgb_array frames, so it cannot be shown as pixels")


def _action_names(env: gymnasium.Env, keymap: Keymap | None) -> tuple[str, ...] | None:
    """ALE's action meanings, else the labels of the single keys that select each discrete action."""
    if hasattr(env.unwrapped, "get_action_meanings"):
        return tuple(env.unwrapped.get_action_meanings())
    if keymap is None or not isinstance(env.action_space, Discrete):
        return None
    names = {b.action: b.label for b in keymap.bindings if len(_combo(b.key)) == 1}
    names |= {keymap.idle_action: "idle"} if keymap.idle_action is not None else {}
    return tuple(names.get(i, str(i)) for i in range(int(env.action_space.n)))


def _generic_entry(env_id: str, env: gymnasium.Env) -> EnvEntry:
    source = "obs" if _is_rgb_image(env.observation_space) else "render"
    return EnvEntry(
        env_id,
        f"{env_id} (not in the catalog): {source} frames area-resized, keys derived from its actions.",
        FramePipeline(source=source),
        _derived_keymap(action_spec_of(env.action_space, _action_names(env, None))),
    )


def env_entry(env_id: str) -> EnvEntry:
    """The catalog entry for `env_id`, or a generic entry derived from any registered gymnasium id."""
    if env_id in CATALOG:
        entry = CATALOG[env_id]
        _require(env_id, entry.requires, entry.extra)
        return entry
    env = make_env(env_id)  # the generic entry needs the env's spaces
    env.close()
    return env.entry


def action_spec_of(space: gymnasium.Space, names: Iterable[str] | None = None) -> ActionSpec:
    """ActionSpec of a Discrete or 1-D Box action space; Discrete names default to "0", "1", ..."""
    if isinstance(space, Discrete):
        n = int(space.n)
        return ActionSpec("discrete", n, names=tuple(names) if names else tuple(str(i) for i in range(n)))
    if isinstance(space, Box) and len(space.shape) == 1:
        low, high = (tuple(float(x) for x in v) for v in (space.low, space.high))
        return ActionSpec("box", int(space.shape[0]), low, high, names=tuple(names or ()))
    raise EnvError(f"action space {space} is not supported (Discrete or 1-D Box only)")


def _window(a: np.ndarray, k: int, axis: int, op: np.ufunc) -> np.ndarray:
    """Centered k-wide running min/max along `axis`, by doubling windows: log2(k) numpy ops, not k."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = ((k - 1) // 2, k - 1 - (k - 1) // 2)
    b = np.pad(a, pad, constant_values=255 if op is np.minimum else 0)  # padding never wins

    def shifted(x: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
        head, tail = [slice(None)] * x.ndim, [slice(None)] * x.ndim
        head[axis], tail[axis] = slice(0, x.shape[axis] - s), slice(s, None)
        return x[tuple(head)], x[tuple(tail)]

    w = 1  # invariant: b[i] = op(padded[i : i + w])
    while 2 * w <= k:
        b, w = op(*shifted(b, w)), 2 * w
    return op(*shifted(b, k - w)) if k > w else b


def process_frame(image: np.ndarray, pipeline: FramePipeline) -> np.ndarray:
    """Raw env image (H, W, 3) uint8 -> model frame (size, size, 3) uint8: crop, thicken, area-resize."""
    img = np.asarray(image)[:, :, :3].astype(np.uint8, copy=False)
    if pipeline.crop is not None:
        top, bottom, left, right = pipeline.crop
        img = img[top:bottom, left:right]
        if img.size == 0:
            raise EnvError(f"crop {pipeline.crop} leaves nothing of a {image.shape} image")
    if pipeline.thicken > 1:
        op = np.minimum if pipeline.thicken_mode == "dark" else np.maximum
        img = _window(_window(img, pipeline.thicken, 0, op), pipeline.thicken, 1, op)
    size = pipeline.size
    if img.shape[:2] != (size, size):
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.BOX))
    return img


class PixelEnv(gymnasium.Wrapper):
    """Any gymnasium env as 64x64 RGB uint8 frames (observation), with its action spec and keymap."""

    def __init__(self, env: gymnasium.Env, entry: EnvEntry) -> None:
        super().__init__(env)
        self.entry, self.pipeline = entry, entry.pipeline
        self.action_spec = action_spec_of(env.action_space, _action_names(env, entry.keymap))
        s = self.pipeline.size
        self.observation_space = Box(0, 255, (s, s, 3), np.uint8)
        # A classic-control env's vector observation is its true state, which state probes regress on.
        space, entry_point = env.observation_space, str(getattr(env.spec, "entry_point", ""))
        self._has_state = "classic_control" in entry_point and isinstance(space, Box) and len(space.shape) == 1
        self._obs: object = None
        self._prev_obs: object = None  # the raw frame before `_obs` within one action repeat (max_last_two)

    def _info(self, obs: object, info: dict) -> dict:
        self._obs = obs
        return {**info, "state": np.asarray(obs, np.float32)} if self._has_state else dict(info)

    def frame(self) -> np.ndarray:
        """The current processed frame (no env step)."""
        image = self._obs if self.pipeline.source == "obs" else self.env.render()
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise EnvError(f"{self.entry.env_id} gave no RGB image from its {self.pipeline.source}")
        if self.pipeline.max_last_two and isinstance(self._prev_obs, np.ndarray):
            image = np.maximum(image, self._prev_obs)
        return process_frame(image, self.pipeline)

    def _raw(self, obs: object) -> object:
        """The raw frame a max over the last two needs (None when the pipeline takes no max)."""
        if not self.pipeline.max_last_two:
            return None
        return obs if self.pipeline.source == "obs" else self.env.render()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset the env; returns (frame, info)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._prev_obs = None
        for _ in range(self.pipeline.reset_noops):
            self._prev_obs = self._raw(obs)
            obs, _, terminated, truncated, info = self.env.step(self.action_spec.to_env(self.action_spec.zeros()))
            if terminated or truncated:
                raise EnvError(f"{self.entry.env_id} ended during its {self.pipeline.reset_noops} reset no-ops")
        info = self._info(obs, info)
        return self.frame(), info

    def step(self, action: object) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Repeat `action` `pipeline.action_repeat` times (stopping at episode end), summing rewards."""
        a = self.action_spec.to_env(action)
        total, terminated, truncated = 0.0, False, False
        obs = self._obs
        for _ in range(max(1, self.pipeline.action_repeat)):
            self._prev_obs = self._raw(obs)
            obs, reward, terminated, truncated, info = self.env.step(a)
            total += float(reward)
            if terminated or truncated:
                break
        info = self._info(obs, info)
        return self.frame(), total, bool(terminated), bool(truncated), info


def replay(env: PixelEnv, seed: int, actions: Iterable[Any]) -> tuple[np.ndarray, bool]:
    """Reset `env` with `seed` and step it through `actions` (stopping at an episode end): a deterministic
    env comes back to the same state. Returns (last frame, ended)."""
    frame, _ = env.reset(seed=seed)
    for a in actions:
        frame, _, term, trunc, _ = env.step(a)
        if term or trunc:
            return frame, True
    return frame, False


def make_env(env_id: str, pipeline: FramePipeline | None = None) -> PixelEnv:
    """`env_id` (rendering rgb_array) wrapped as a PixelEnv (optionally with another pipeline)."""
    entry = CATALOG.get(env_id)
    if entry is not None:
        _require(env_id, entry.requires, entry.extra)
    else:
        _check_registered(env_id)
    env = _create(env_id, (pipeline or (entry.pipeline if entry else FramePipeline())).env_kwargs)
    try:
        entry = entry or _generic_entry(env_id, env)
        entry = dataclasses.replace(entry, pipeline=pipeline) if pipeline is not None else entry
        _check_source(env_id, env, entry.pipeline.source)
        return PixelEnv(env, entry)
    except Exception:
        env.close()
        raise

"""Environments as 64x64 RGB frames: the env catalog, frame pipelines, keymaps and a pixel wrapper.

Every env the playground trains on goes through `make_env`, which returns a `PixelEnv`: a gymnasium
wrapper whose observations are small square RGB frames made by the env's `FramePipeline`. Catalog
entries carry hand-tuned pipelines (crops and thickening chosen by looking at the frames, so the
pole, the ball and the paddles survive the downscale) and keymaps for playing in the browser; any
other registered gymnasium id gets a generic entry derived from its spaces.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

# pygame (used by the classic-control and box2d renderers) must never try to open a window.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium
import numpy as np
from PIL import Image

from wm_core.spec import ActionSpec, FramePipeline


class EnvError(ValueError):
    """An environment cannot be used: unknown id, missing extra, or unsupported spaces."""


# ---------------------------------------------------------------------------------------------------
# Keymaps


ARROWS = {"ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓", " ": "Space"}


def _norm_key(key: str) -> str:
    # Browsers report "a" or "A" depending on Shift; old browsers report "Spacebar".
    if key == "Spacebar":
        return " "
    return key.lower() if len(key) == 1 else key


def _combo(key: str) -> tuple[str, ...]:
    # "ArrowUp+ " is a combo; a lone "+" key is not.
    return (key,) if key == "+" else tuple(_norm_key(k) for k in key.split("+"))


@dataclass(frozen=True)
class KeyBinding:
    """One key (or "+"-joined combo) and the discrete action or box dimension it drives."""

    key: str  # browser KeyboardEvent.key name, e.g. "ArrowLeft", " ", "a"; "ArrowUp+ " is a combo
    label: str  # human text, e.g. "push left"
    action: int = 0  # discrete: the action index this key selects
    dim: int = 0  # box: which action dimension the key ramps
    sign: float = 1.0  # box: +1 or -1


@dataclass(frozen=True)
class Keymap:
    """How held keys become actions; `idle_action=None` means "wait until a key is held"."""

    bindings: tuple[KeyBinding, ...]
    idle_action: int | None = None

    def describe(self) -> list[str]:
        """Human lines such as "← push left", one per binding."""
        return ["+".join(ARROWS.get(k, k) for k in b.key.split("+")) + f" {b.label}" for b in self.bindings]

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"bindings": [dataclasses.asdict(b) for b in self.bindings], "idle_action": self.idle_action}

    @classmethod
    def from_json(cls, d: dict) -> Keymap:
        """Inverse of `to_json`."""
        bindings = tuple(
            KeyBinding(str(b["key"]), str(b["label"]), int(b["action"]), int(b["dim"]), float(b["sign"]))
            for b in d["bindings"]
        )
        idle = d.get("idle_action")
        return cls(bindings, None if idle is None else int(idle))


class KeyController:
    """Turns the set of held keys into one raw env action per frame."""

    def __init__(self, keymap: Keymap, action_spec: ActionSpec) -> None:
        self.keymap, self.spec = keymap, action_spec
        self._combos = [_combo(b.key) for b in keymap.bindings]
        if not action_spec.discrete:
            self._low = np.asarray(action_spec.low, np.float64)
            self._high = np.asarray(action_spec.high, np.float64)
            half = (self._high - self._low) / 2
            # Unbounded dimensions have no natural scale; ramp them by 0.1 per frame.
            self._step = 0.1 * np.where(np.isfinite(half), half, 1.0)
        self.reset()

    def reset(self) -> None:
        """Forget held keys and (box) return the action to rest."""
        self._order: list[str] = []  # held keys, oldest press first
        if not self.spec.discrete:
            self._a = np.clip(np.zeros(self.spec.n), self._low, self._high)

    def _held_bindings(self, held: Iterable[str]) -> list[tuple[int, int, KeyBinding]]:
        keys = {_norm_key(k) for k in held}
        self._order = [k for k in self._order if k in keys]
        self._order += sorted(keys - set(self._order))
        rank = {k: i for i, k in enumerate(self._order)}
        # (combo size, recency of its newest key, binding) for every binding whose keys are all held.
        return [
            (len(c), max(rank[k] for k in c), b)
            for c, b in zip(self._combos, self.keymap.bindings, strict=True)
            if all(k in rank for k in c)
        ]

    def action(self, held: Iterable[str]) -> int | np.ndarray | None:
        """The action for this frame; None means "no key held and no idle action: don't advance"."""
        active = self._held_bindings(held)
        if self.spec.discrete:
            if not active:
                return self.keymap.idle_action
            # Combos beat single keys; among equals the most recently pressed wins.
            return int(max(active, key=lambda t: (t[0], t[1]))[2].action)
        pushed = np.zeros(self.spec.n, bool)
        for _, _, b in active:
            self._a[b.dim] += b.sign * self._step[b.dim]
            pushed[b.dim] = True
        self._a[~pushed] *= 0.9
        self._a = np.clip(self._a, self._low, self._high)
        return self._a.astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Catalog


@dataclass(frozen=True)
class EnvEntry:
    """A playable env: its frame pipeline, keymap and the optional extra it needs."""

    env_id: str
    description: str  # one line: what the player controls, and what the frame pipeline does
    pipeline: FramePipeline
    keymap: Keymap
    requires: str | None = None  # module to import first, e.g. "ale_py" (registers the ALE ids)
    extra: str | None = None  # pip extra that provides it, named in error messages
    action_names: tuple[str, ...] = ()  # discrete action names when the env has no get_action_meanings()


K = KeyBinding
LEFT_RIGHT = (K("ArrowLeft", "push left", 0), K("ArrowRight", "push right", 2))

CATALOG: dict[str, EnvEntry] = {
    e.env_id: e
    for e in [
        EnvEntry(
            "CartPole-v1",
            "Push the cart left/right to balance the pole; render cropped to the cart band, pole thickened.",
            FramePipeline(crop=(150, 330, 0, 600), thicken=15),
            Keymap((K("ArrowLeft", "push left", 0), K("ArrowRight", "push right", 1))),
            action_names=("push left", "push right"),
        ),
        EnvEntry(
            "MountainCar-v0",
            "Push the car left/right to swing up the hill; full render, hill line and car thickened.",
            FramePipeline(crop=(10, 390, 0, 600), thicken=7),
            Keymap(LEFT_RIGHT, idle_action=1),
            action_names=("push left", "no push", "push right"),
        ),
        EnvEntry(
            "Pendulum-v1",
            "Apply torque left/right to swing the pendulum up; render cropped to the rod's circle.",
            FramePipeline(crop=(115, 385, 115, 385)),
            Keymap((K("ArrowLeft", "torque left", dim=0, sign=-1.0), K("ArrowRight", "torque right", dim=0))),
        ),
        EnvEntry(
            "Acrobot-v1",
            "Torque the middle joint left/right to swing the tip up; render cropped to the arm's reach.",
            FramePipeline(crop=(20, 480, 20, 480), thicken=3),
            Keymap((K("ArrowLeft", "torque -1", 0), K("ArrowRight", "torque +1", 2)), idle_action=1),
            action_names=("torque -1", "no torque", "torque +1"),
        ),
        EnvEntry(
            "CarRacing-v3",
            "Steer, gas and brake around the track; the 96x96 observation (with dashboard) resized, repeat 2.",
            FramePipeline(source="obs", action_repeat=2),
            Keymap(
                (
                    K("ArrowLeft", "steer left", dim=0, sign=-1.0),
                    K("ArrowRight", "steer right", dim=0),
                    K("ArrowUp", "gas", dim=1),
                    K("ArrowDown", "brake", dim=2),
                )
            ),
            requires="Box2D",
            extra="box2d",
        ),
        EnvEntry(
            "ALE/Pong-v5",
            "Move the right (green) paddle up/down; observation cropped to the field, ball thickened.",
            FramePipeline(source="obs", crop=(34, 194, 0, 160), thicken=3, thicken_mode="light"),
            Keymap(
                (
                    K("ArrowUp", "up", 2),
                    K("ArrowDown", "down", 3),
                    K(" ", "fire", 1),
                    K("ArrowUp+ ", "up + fire", 4),
                    K("ArrowDown+ ", "down + fire", 5),
                ),
                idle_action=0,
            ),
            requires="ale_py",
            extra="atari",
        ),
        EnvEntry(
            "ALE/Breakout-v5",
            "Move the paddle left/right, Space launches the ball; observation cropped inside the walls.",
            FramePipeline(source="obs", crop=(32, 196, 8, 152), thicken=3, thicken_mode="light"),
            Keymap(
                (K("ArrowLeft", "left", 3), K("ArrowRight", "right", 2), K(" ", "fire", 1)), idle_action=0
            ),
            requires="ale_py",
            extra="atari",
        ),
    ]
}
del K


def _require(env_id: str, module: str | None, extra: str | None) -> None:
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError as e:
        hint = f"pip install 'world-model-playground[{extra}]'" if extra else f"pip install {module}"
        raise EnvError(f"{env_id} needs the '{extra or module}' extra: {hint}") from e


def _check_registered(env_id: str) -> None:
    """Import what registers `env_id` and raise EnvError when gymnasium does not know it."""
    if env_id.startswith("ALE/"):
        _require(env_id, "ale_py", "atari")
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error as e:
        raise EnvError(
            f"unknown environment '{env_id}': see `wm envs` for the catalog, or give any registered gymnasium id"
        ) from e


def _create(env_id: str, env_kwargs: dict) -> gymnasium.Env:
    kwargs = {"render_mode": "rgb_array", **({"obs_type": "rgb"} if env_id.startswith("ALE/") else {})}
    try:
        return gymnasium.make(env_id, **{**kwargs, **env_kwargs})
    except gymnasium.error.DependencyNotInstalled as e:
        raise EnvError(f"{env_id} needs a missing dependency: {e}") from e
    except gymnasium.error.Error as e:
        raise EnvError(f"{env_id} cannot be created with render_mode='rgb_array': {e}") from e


def _is_rgb_image(space: gymnasium.Space) -> bool:
    shape = getattr(space, "shape", None)
    return isinstance(space, gymnasium.spaces.Box) and space.dtype == np.uint8 and len(shape) == 3 and shape[2] == 3


def _discrete_binding(i: int, name: str) -> tuple[KeyBinding | None, bool]:
    """Key binding for an action named e.g. "UPRIGHTFIRE"; (None, True) for a NOOP."""
    arrows = {"UP": "ArrowUp", "DOWN": "ArrowDown", "LEFT": "ArrowLeft", "RIGHT": "ArrowRight"}
    rest, keys = name.upper(), []
    if rest == "NOOP":
        return None, True
    while rest:
        word = next((w for w in [*arrows, "FIRE"] if rest.startswith(w)), None)
        if word is None:
            keys = []
            break
        keys.append(arrows.get(word, " "))
        rest = rest[len(word) :]
    # Unnamed or unparsable actions get number keys 1..9, then letters.
    fallback = "123456789abcdefghijklmnopqrstuvwxyz"[i] if i < 35 else None
    key = "+".join(keys) if keys else fallback
    return (KeyBinding(key, name.lower(), i) if key else None), False


def _derived_keymap(spec: ActionSpec) -> Keymap:
    if not spec.discrete:
        pairs = [("ArrowLeft", "ArrowRight"), ("ArrowDown", "ArrowUp")][: spec.n]
        return Keymap(
            tuple(
                KeyBinding(key, f"dim {d} {'-+'[s > 0]}", dim=d, sign=s)
                for d, (neg, pos) in enumerate(pairs)
                for key, s in ((neg, -1.0), (pos, 1.0))
            )
        )
    bindings, idle = [], None
    for i, name in enumerate(spec.names):
        b, is_noop = _discrete_binding(i, name)
        idle = i if is_noop and idle is None else idle
        bindings += [b] if b else []
    return Keymap(tuple(bindings), idle_action=idle)


def _action_names(env: gymnasium.Env, entry: EnvEntry | None) -> tuple[str, ...] | None:
    meanings = getattr(env.unwrapped, "get_action_meanings", None)
    if meanings is not None:
        return tuple(meanings())
    return entry.action_names if entry and entry.action_names else None


def _generic_entry(env_id: str, env: gymnasium.Env) -> EnvEntry:
    spec = action_spec_of(env.action_space, _action_names(env, None))
    source = "obs" if _is_rgb_image(env.observation_space) else "render"
    return EnvEntry(
        env_id,
        f"{env_id} (not in the catalog): {source} frames area-resized, keys derived from its actions.",
        FramePipeline(source=source),
        _derived_keymap(spec),
    )


def env_entry(env_id: str) -> EnvEntry:
    """The catalog entry for `env_id`, or a generic entry derived from any registered gymnasium id."""
    if env_id in CATALOG:
        entry = CATALOG[env_id]
        _require(env_id, entry.requires, entry.extra)
        return entry
    _check_registered(env_id)
    env = _create(env_id, {})
    try:
        return _generic_entry(env_id, env)
    finally:
        env.close()


def action_spec_of(space: gymnasium.Space, names: Iterable[str] | None = None) -> ActionSpec:
    """ActionSpec for a Discrete or 1-D Box action space; `names` default to "0", "1", ... for Discrete."""
    if isinstance(space, gymnasium.spaces.Discrete):
        n = int(space.n)
        names = tuple(names) if names is not None else tuple(str(i) for i in range(n))
        return ActionSpec("discrete", n, names=names)
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
        low, high = (tuple(float(x) for x in v) for v in (space.low, space.high))
        return ActionSpec("box", int(space.shape[0]), low, high, names=tuple(names or ()))
    raise EnvError(f"action space {space} is not supported (Discrete or 1-D Box only)")


# ---------------------------------------------------------------------------------------------------
# Frames


def _window(a: np.ndarray, k: int, axis: int, op: np.ufunc) -> np.ndarray:
    """Centered k-wide running min/max along `axis`, by doubling windows (log2(k) numpy ops)."""
    lo = (k - 1) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (lo, k - 1 - lo)
    neutral = 255 if op is np.minimum else 0  # padding must never win, so edges don't spread
    b = np.pad(a, pad, constant_values=neutral)

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
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3].astype(np.uint8, copy=False)
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
        self.action_spec = action_spec_of(env.action_space, _action_names(env, entry))
        s = self.pipeline.size
        self.observation_space = gymnasium.spaces.Box(0, 255, (s, s, 3), np.uint8)
        # The raw vector observation is the true state for classic-control envs (used by state probes).
        entry_point = str(getattr(env.spec, "entry_point", ""))
        raw_space = env.observation_space
        self._has_state = "classic_control" in entry_point and isinstance(raw_space, gymnasium.spaces.Box)
        self._has_state = self._has_state and len(raw_space.shape) == 1
        self._obs: object = None

    def _info(self, obs: object, info: dict) -> dict:
        self._obs = obs
        return {**info, "state": np.asarray(obs, np.float32)} if self._has_state else dict(info)

    def frame(self) -> np.ndarray:
        """The current processed frame (no env step)."""
        image = self._obs if self.pipeline.source == "obs" else self.env.render()
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            raise EnvError(f"{self.entry.env_id} gave no RGB image from its {self.pipeline.source}")
        return process_frame(image, self.pipeline)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset the env; returns (frame, info)."""
        obs, info = self.env.reset(seed=seed, options=options)
        info = self._info(obs, info)
        return self.frame(), info

    def step(self, action: object) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Repeat `action` `pipeline.action_repeat` times (stopping at episode end), summing rewards."""
        a = self.action_spec.to_env(action)
        total, terminated, truncated, info = 0.0, False, False, {}
        for _ in range(self.pipeline.action_repeat):
            obs, reward, terminated, truncated, info = self.env.step(a)
            total += float(reward)
            if terminated or truncated:
                break
        info = self._info(obs, info)
        return self.frame(), total, bool(terminated), bool(truncated), info


def make_env(env_id: str, pipeline: FramePipeline | None = None) -> PixelEnv:
    """Create `env_id` rendering to rgb_array and wrap it as a PixelEnv (optionally with another pipeline)."""
    entry = CATALOG.get(env_id)
    if entry is not None:
        _require(env_id, entry.requires, entry.extra)
    else:
        _check_registered(env_id)
    env = _create(env_id, (pipeline or (entry.pipeline if entry else FramePipeline())).env_kwargs)
    try:
        entry = entry or _generic_entry(env_id, env)
        if pipeline is not None:
            entry = dataclasses.replace(entry, pipeline=pipeline)
        if entry.pipeline.source == "obs" and not _is_rgb_image(env.observation_space):
            raise EnvError(f"{env_id} observations are not RGB images; use a pipeline with source='render'")
        return PixelEnv(env, entry)
    except Exception:
        env.close()
        raise

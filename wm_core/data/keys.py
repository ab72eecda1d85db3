"""Keys: how held browser keys become env actions. A `Keymap` names each key's action (discrete) or the action
dimension it ramps (continuous: +0.1 of the half range per frame while held, x0.9 decay after release, as in
Ha & Schmidhuber's car demo); `KeyController` turns the set of held keys into one action per frame."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..spec import ActionSpec

ARROWS = {"ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓", " ": "Space"}
# ALE action-name words -> browser keys
ARROW_OF = {"UP": "ArrowUp", "DOWN": "ArrowDown", "LEFT": "ArrowLeft", "RIGHT": "ArrowRight", "FIRE": " "}


def _norm_key(key: str) -> str:
    # Browsers report "a" or "A" depending on Shift; old browsers report "Spacebar".
    return " " if key == "Spacebar" else key.lower() if len(key) == 1 else key


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
        return ["+".join(ARROWS.get(k, k) for k in _combo(b.key)) + f" {b.label}" for b in self.bindings]

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
            self._low, self._high = np.asarray(action_spec.low), np.asarray(action_spec.high)
            half = (self._high - self._low) / 2
            # Unbounded dimensions have no natural scale; ramp them by 0.1 per frame.
            self._step = 0.1 * np.where(np.isfinite(half), half, 1.0)
        self.reset()

    def reset(self) -> None:
        """Forget held keys and (box) return the action to rest."""
        self._order: list[str] = []  # held keys, oldest press first
        if not self.spec.discrete:
            self._a = np.clip(np.zeros(self.spec.n), self._low, self._high)

    def _active(self, held: Iterable[str]) -> list[tuple[int, int, KeyBinding]]:
        """(combo size, press rank of its newest key, binding) for each binding whose keys are all held."""
        keys = {_norm_key(k) for k in held}
        self._order = [k for k in self._order if k in keys]
        self._order += sorted(keys - set(self._order))  # keys new this frame are the newest
        rank = {k: i for i, k in enumerate(self._order)}
        return [
            (len(c), max(rank[k] for k in c), b)
            for c, b in zip(self._combos, self.keymap.bindings, strict=True)
            if all(k in rank for k in c)
        ]

    def waits(self, held: Iterable[str]) -> bool:
        """The one waiting rule: True when `action(held)` is None, so nothing steps. Only a discrete keymap
        without an idle action waits, while no bound key (or combo) is held; a Box env never waits, because
        released keys decay its action toward rest and the dream moves on."""
        if not self.spec.discrete or self.keymap.idle_action is not None:
            return False
        keys = {_norm_key(k) for k in held}
        return not any(all(k in keys for k in combo) for combo in self._combos)

    def action(self, held: Iterable[str]) -> int | np.ndarray | None:
        """The action for this frame; None when the keys wait (see `waits`): don't advance."""
        if self.waits(held):
            return None
        active = self._active(held)
        if self.spec.discrete:
            # Combos beat single keys; among equals the most recently pressed wins.
            return int(max(active, key=lambda t: t[:2])[2].action) if active else self.keymap.idle_action
        pushed = np.zeros(self.spec.n, bool)
        for _, _, b in active:
            self._a[b.dim] += b.sign * self._step[b.dim]
            pushed[b.dim] = True
        self._a[~pushed] *= 0.9  # released dimensions decay toward 0 (CarRacing's gas/brake rest at 0)
        self._a = np.clip(self._a, self._low, self._high)
        return self._a.astype(np.float32)


def _derived_keymap(spec: ActionSpec) -> Keymap:
    """Keys for an env outside the catalog: arrows (Space = FIRE) where names allow, else 1..9, a..z."""
    if not spec.discrete:
        pairs = [("ArrowLeft", "ArrowRight"), ("ArrowDown", "ArrowUp")][: spec.n]
        return Keymap(
            tuple(
                KeyBinding(key, f"dim {d} {'-' if s < 0 else '+'}", dim=d, sign=s)
                for d, pair in enumerate(pairs)
                for key, s in zip(pair, (-1.0, 1.0), strict=True)
            )
        )
    bindings, idle, spare = [], None, iter("123456789abcdefghijklmnopqrstuvwxyz")
    for i, name in enumerate(spec.names):
        # ALE names: NOOP, FIRE, UP, RIGHT, UPLEFT, DOWNFIRE, UPRIGHTFIRE, ...
        m = re.fullmatch(r"(UP|DOWN)?(RIGHT|LEFT)?(FIRE)?", name.upper())
        if name.upper() == "NOOP" and idle is None:
            idle = i
        elif m and name:
            keys = [ARROW_OF[g] for g in m.groups() if g]
            bindings.append(KeyBinding("+".join(keys), name.lower(), i))
        elif (key := next(spare, None)) is not None:
            bindings.append(KeyBinding(key, f"action {name}" if name.isdigit() else name.lower(), i))
    return Keymap(tuple(bindings), idle_action=idle)

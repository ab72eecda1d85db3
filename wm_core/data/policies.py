"""Data policies: who acts while episodes are collected.

A random policy covers every action but not the states that play reaches: random CarRacing driving never
follows the road, a random Pong paddle rarely returns the ball, a random CartPole falls within 20 steps. So
every catalog env has a *scripted* policy that visits those states (follow the track, track the ball, pump
energy, balance), mixed with random actions (each step with probability `eps`, and spells of 5-30 random
steps) so that every action is still seen in every kind of state. Scripted controllers may read the env's
internals (track geometry, the true state, the raw Atari screen): they only choose actions; the data is
still frames.

A policy is called once per vector-env step with the current frames and the envs themselves and returns one
raw action per env; `reset(i)` is called when env i starts an episode; `name` is recorded with every episode.
A trained agent is a policy too (`wm_core.agents.policy.AgentPolicy`); it comes to `collect` as an object.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..spec import ActionSpec

Controller = Callable[[Any, np.random.Generator], Any]  # (PixelEnv, rng) -> raw action


class RandomPolicy:
    """Uniform actions for Discrete; for Box a clipped Brownian walk per env, so the data covers motion."""

    name = "random"

    def __init__(self, spec: ActionSpec, num_envs: int, rng: np.random.Generator) -> None:
        self.spec, self.rng = spec, rng
        self.low, self.high = np.asarray(spec.low, np.float32), np.asarray(spec.high, np.float32)
        self.prev = np.zeros((num_envs, spec.n), np.float32)
        for i in range(num_envs):
            self.reset(i)

    def reset(self, i: int) -> None:
        """Restart env i's walk at a uniform random point (at each episode start)."""
        if not self.spec.discrete:
            self.prev[i] = self.spec.sample(self.rng)

    def __call__(self, frames: np.ndarray, envs: Sequence[Any] = ()) -> np.ndarray:
        """One raw action per env."""
        if self.spec.discrete:
            return self.rng.integers(self.spec.n, size=len(frames))
        # i.i.d. uniform Box actions average out to jitter in place; a random walk keeps a direction.
        noise = self.rng.normal(0.0, 0.3 * (self.high - self.low) / 2, size=self.prev.shape)
        self.prev = np.clip(self.prev + noise, self.low, self.high).astype(np.float32)
        return self.prev.copy()


# ---- scripted controllers ----------------------------------------------------------------------------
def _cartpole(env: Any, rng: np.random.Generator) -> int:
    """Balance: push toward where the pole falls, with a weak pull back to the centre."""
    x, x_dot, theta, theta_dot = env.unwrapped.state
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.05 * x_dot > 0)


def _mountain_car(env: Any, rng: np.random.Generator) -> int:
    """Pump energy: push the way the car already moves (0 left, 2 right)."""
    _, velocity = env.unwrapped.state
    return 2 if velocity >= 0 else 0


def _pendulum(env: Any, rng: np.random.Generator) -> np.ndarray:
    """Swing up by pumping energy, then balance near the top with a PD law."""
    theta, theta_dot = env.unwrapped.state
    angle = (theta + math.pi) % (2 * math.pi) - math.pi  # 0 is upright
    if abs(angle) < 0.6:
        torque = -10.0 * angle - 1.5 * theta_dot
    else:
        energy = 0.5 * theta_dot**2 + 10.0 * (math.cos(angle) - 1.0)  # 0 at rest upright
        torque = -2.0 * np.sign(theta_dot * energy) if theta_dot else 1.0
    return np.array([np.clip(torque, -2.0, 2.0)], np.float32)


def _acrobot(env: Any, rng: np.random.Generator) -> int:
    """Pump energy: torque the middle joint the way it swings (0 is -1, 2 is +1); reaches the line in ~100 steps."""
    _, _, _, dtheta2 = env.unwrapped.state
    return 2 if dtheta2 >= 0 else 0


class _CarRacingDriver:
    """Pure pursuit along the track's centre line with a wandering look-ahead and speed target."""

    def __call__(self, env: Any, rng: np.random.Generator) -> np.ndarray:
        u = env.unwrapped
        if u.car is None or not u.track:
            return np.zeros(3, np.float32)
        track = np.array([(t[2], t[3]) for t in u.track])
        hull = u.car.hull
        pos, angle = np.array(hull.position), hull.angle
        nearest = int(np.linalg.norm(track - pos, axis=1).argmin())
        target = track[(nearest + int(rng.integers(4, 9))) % len(track)] - pos
        forward = np.array([-math.sin(angle), math.cos(angle)])
        left = np.array([-math.cos(angle), -math.sin(angle)])
        heading_error = math.atan2(target @ left, target @ forward)  # > 0: the track bends left
        speed = float(np.linalg.norm(hull.linearVelocity))
        steer = float(np.clip(-2.0 * heading_error, -1.0, 1.0))
        want = 20.0 + 15.0 * rng.random()
        gas = 0.3 if speed < want else 0.0
        brake = 0.4 if speed > want + 15.0 else 0.0
        return np.array([steer, gas, brake], np.float32)


def _atari_screen(env: Any) -> np.ndarray:
    """The raw RGB Atari screen (210, 160, 3) behind the processed frame."""
    return np.asarray(env.get_wrapper_attr("_obs"))


def _pong(env: Any, rng: np.random.Generator) -> int:
    """Move the right (green) paddle toward the ball's height (2 is up, 3 is down, 0 stays)."""
    field = _atari_screen(env)[34:194]
    ball = np.nonzero((field == (236, 236, 236)).all(-1))
    paddle = np.nonzero((field[:, 140:144] == (92, 186, 92)).all(-1))
    if not len(paddle[0]):
        return 0
    target = ball[0].mean() if len(ball[0]) else 80.0
    offset = target - paddle[0].mean()
    return 3 if offset > 4 else 2 if offset < -4 else 0


def _breakout(env: Any, rng: np.random.Generator) -> int:
    """Keep the paddle under the ball (2 right, 3 left); FIRE (1) when no ball is in play."""
    screen = _atari_screen(env)
    red = (screen == (200, 72, 72)).all(-1)
    ball = np.nonzero(red[93:188])
    paddle = np.nonzero(red[189:194, 8:152])
    if not len(ball[1]) or not len(paddle[1]):
        return 1
    offset = ball[1].mean() - (paddle[1].mean() + 8)
    return 2 if offset > 3 else 3 if offset < -3 else 0


# Random mixing per env where the default (eps 0.1, spells starting with probability 0.01) leaves the action
# predictable from the frames: Breakout's tracker moves the paddle toward the ball almost every step, and both
# families trained on such data learned "the paddle follows the ball" and ignored the keys (action-blind cards).
MIXING: dict[str, tuple[float, float]] = {"ALE/Breakout-v5": (0.3, 0.03)}

SCRIPTED: dict[str, Controller] = {
    "CartPole-v1": _cartpole,
    "MountainCar-v0": _mountain_car,
    "Pendulum-v1": _pendulum,
    "Acrobot-v1": _acrobot,
    "CarRacing-v3": _CarRacingDriver(),
    "ALE/Pong-v5": _pong,
    "ALE/Breakout-v5": _breakout,
}


class ScriptedPolicy:
    """The env's scripted controller, with random actions mixed in: each step with probability `eps`, and
    random spells (5-30 steps) starting with probability `spell` per step (defaults 0.1 and 0.01, or the env's
    `MIXING`). Box envs' random actions come from the random walk, so a spell drives somewhere instead of
    jittering."""

    name = "scripted"

    def __init__(
        self, env_id: str, spec: ActionSpec, num_envs: int, rng: np.random.Generator,
        eps: float | None = None, spell: float | None = None,
    ) -> None:  # fmt: skip
        if env_id not in SCRIPTED:
            raise ValueError(f"no scripted policy for {env_id}: use --policy random (scripted: {', '.join(SCRIPTED)})")
        self.controller, self.rng = SCRIPTED[env_id], rng
        self.random = RandomPolicy(spec, num_envs, rng)
        default_eps, default_spell = MIXING.get(env_id, (0.1, 0.01))
        self.eps = default_eps if eps is None else eps
        self.spell = default_spell if spell is None else spell
        self.spell_left = np.zeros(num_envs, np.int64)

    def reset(self, i: int) -> None:
        """A new episode in env i ends any random spell there."""
        self.random.reset(i)
        self.spell_left[i] = 0

    def __call__(self, frames: np.ndarray, envs: Sequence[Any]) -> list[Any]:
        """One raw action per env."""
        random = self.random(frames)
        actions = []
        for i, env in enumerate(envs):
            if self.spell_left[i] == 0 and self.rng.random() < self.spell:
                self.spell_left[i] = int(self.rng.integers(5, 31))
            if self.spell_left[i] > 0:
                self.spell_left[i] -= 1
                actions.append(random[i])
            elif self.rng.random() < self.eps:
                actions.append(random[i])
            else:
                actions.append(self.controller(env, self.rng))
        return actions


def make_policy(policy: str, env_id: str, spec: ActionSpec, num_envs: int, rng: np.random.Generator) -> Any:
    """The policy object `collect` steps for a policy named 'random' or 'scripted' (falls back to random for
    envs without a script). A trained agent comes as an object (`wm_core.agents.policy`), never by name here."""
    if policy == "random":
        return RandomPolicy(spec, num_envs, rng)
    if policy == "scripted":
        return ScriptedPolicy(env_id, spec, num_envs, rng) if env_id in SCRIPTED else RandomPolicy(spec, num_envs, rng)
    raise ValueError(f"unknown policy {policy!r}: use random, scripted, or a run directory with a trained agent")

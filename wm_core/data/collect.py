"""Collecting episodes from gymnasium envs into a store, with a data policy (`wm_core.data.policies`): by
episodes, or by a frame budget (the episodes still running when it is reached are kept as truncated); and the
few real frames of random play that a dream starts from (`real_context`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import DataError
from ..spec import ActionSpec, FramePipeline
from .store import HELDOUT_SEED_BASE, TRAIN_SEED_BASE, EpisodeStore, Step, _episode

if TYPE_CHECKING:
    import gymnasium

    from .envs import PixelEnv

Policy = Callable[[np.ndarray], np.ndarray]  # (num_envs, H, W, 3) uint8 frames -> raw actions


def _info_state(info: dict[str, Any], i: int) -> np.ndarray | None:
    """Env i's true low-dim state from a vector env's batched info, if it reported one."""
    state, mask = info.get("state"), info.get("_state")
    return None if state is None or (mask is not None and not mask[i]) else np.asarray(state[i], np.float32)


def _first_seed(store: EpisodeStore, seed: int | None, num_envs: int) -> int:
    """Worker 0's reset seed (worker i uses seed+i), never reusing a seed the store already holds."""
    used = set(store.seeds)
    if seed is None:
        base = TRAIN_SEED_BASE if store.split == "train" else HELDOUT_SEED_BASE
        return max(used | {base - 1}) + 1  # appending continues past the used seeds: new data, not repeats
    if clash := used & set(range(seed, seed + num_envs)):
        raise DataError(f"seeds {sorted(clash)} were already used in {store.root}; they would repeat episodes")
    return seed


def collect(
    env_id: str,
    episodes: int | None,
    out: Path | str,
    *,
    frames: int | None = None,
    split: str = "train",
    seed: int | None = None,
    policy: str | Policy | Any = "random",
    num_envs: int = 2,
    pipeline: FramePipeline | None = None,
    max_steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    store: EpisodeStore | None = None,
) -> EpisodeStore:
    """Roll out `episodes` episodes of `env_id` (or, with `frames`, until that many frames are stored) into a
    store at `out` (or append to `store`; its split wins).

    `policy` is 'random', 'scripted' (see `wm_core.data.policies`), a policy object (a trained agent's:
    `wm_core.agents.policy`), or a callable from frames to raw actions. Env i is reset once with seed+i, then
    auto-resets; `seed` defaults to the split's base, or to just past the seeds the store already holds.
    `max_steps` truncates long episodes. With a frame budget, the episodes still running when it is reached
    are stored as truncated, so the store holds the budget. `progress(frames seen, episodes stored)` is
    called every step; `should_stop()` ends early, keeping the episodes already stored.
    """
    import gymnasium

    from .envs import make_env  # imported here so the store and sampler work without the env catalog
    from .policies import make_policy

    if (episodes is None) == (frames is None):
        raise ValueError("give exactly one of episodes and frames")
    budget = episodes if episodes is not None else frames
    if budget < 1 or num_envs < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need episodes or frames, num_envs, max_steps >= 1; got {budget}, {num_envs}, {max_steps}")

    pipeline = pipeline or (store.pipeline if store is not None else None)  # a store grows with its own frames

    def make_one() -> gymnasium.Env:
        env = make_env(env_id, pipeline)
        return gymnasium.wrappers.TimeLimit(env, max_steps) if max_steps else env

    envs = gymnasium.vector.SyncVectorEnv([make_one for _ in range(num_envs)])
    try:
        spec, env_pipeline = (envs.envs[0].get_wrapper_attr(a) for a in ("action_spec", "pipeline"))
        if store is None:
            store = EpisodeStore.create(out, env_id, env_pipeline, spec, split)
        store.check_compatible(env_id, env_pipeline, spec)
        first = _first_seed(store, seed, num_envs)
        rng = np.random.default_rng(first)
        if isinstance(policy, str):
            act = make_policy(policy, env_id, spec, num_envs, rng)
        elif hasattr(policy, "reset"):
            act = policy
        else:
            act = _CallablePolicy(policy)
        target = (episodes, None) if episodes is not None else (None, frames)
        _rollout(envs, store, target, first, act, progress, should_stop)
    finally:
        envs.close()
    return store


class _CallablePolicy:
    """A plain function of the frames as a policy object."""

    name = "custom"

    def __init__(self, fn: Policy) -> None:
        self.fn = fn

    def reset(self, i: int) -> None:
        """Nothing to forget."""

    def __call__(self, frames: np.ndarray, envs: Sequence[Any]) -> np.ndarray:
        return self.fn(frames)


def _rollout(
    envs: gymnasium.vector.SyncVectorEnv,
    store: EpisodeStore,
    target: tuple[int | None, int | None],
    seed: int,
    policy: Any,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Step the vector env until `target` = (episodes, None) or (None, frames) is stored (or `should_stop()`)."""
    spec, n = store.action_spec, envs.num_envs
    want_episodes, want_frames = target
    seeds = [seed + i for i in range(n)]
    obs, info = envs.reset(seed=seeds)
    steps: list[list[Step]] = [[(obs[i], spec.zeros(), 0.0, _info_state(info, i))] for i in range(n)]
    ordinals, restarting = [0] * n, np.zeros(n, bool)
    frames, stored, stored_frames = n, 0, 0

    def add(i: int, terminated: bool, truncated: bool) -> None:
        nonlocal stored, stored_frames
        store.add(_episode(steps[i], terminated, truncated, seeds[i], ordinals[i]), policy=policy.name)
        stored, stored_frames = stored + 1, stored_frames + len(steps[i])

    def done() -> bool:
        return stored >= want_episodes if want_episodes is not None else stored_frames >= want_frames

    while not done() and not (should_stop and should_stop()):
        actions = np.stack([np.asarray(spec.to_env(a)) for a in list(policy(obs, envs.envs))[:n]])
        obs, rew, terminated, truncated, info = envs.step(actions)
        frames += n
        for i in range(n):
            if restarting[i]:
                # NEXT_STEP autoreset: the step after an episode ends ignores the action and returns the
                # first frame of the next episode, which starts a new list (it is no transition).
                ordinals[i] += 1
                steps[i] = [(obs[i], spec.zeros(), 0.0, _info_state(info, i))]
                policy.reset(i)
                continue
            steps[i].append((obs[i], actions[i], float(rew[i]), _info_state(info, i)))
            # Envs still mid-episode when an episode target is reached are dropped (a mild bias to short
            # episodes); under a frame budget they are kept as truncated episodes (below).
            if (terminated[i] or truncated[i]) and not done():
                add(i, bool(terminated[i]), bool(truncated[i]))
        if want_frames is not None and not done():
            running = [i for i in range(n) if not (restarting[i] or terminated[i] or truncated[i])]
            if stored_frames + sum(len(steps[i]) for i in running) >= want_frames:
                for i in running:
                    if len(steps[i]) > 1 and not done():
                        add(i, False, True)
        restarting = terminated | truncated
        if progress:
            progress(frames, stored)


class RealContext(NamedTuple):
    """The first frames of a real episode: frames (T, H, W, 3), raw actions (T, ...) with "none" before the
    first frame, rewards on arrival (T,), true states (T, k) or None, and the env's reset seed."""

    frames: np.ndarray
    acts: np.ndarray
    seed: int
    rewards: np.ndarray
    states: np.ndarray | None


def real_context(env: PixelEnv, spec: ActionSpec, rng: np.random.Generator, context: int) -> RealContext:
    """Reset `env` with a seed drawn from `rng` and take random actions until it has shown `context` frames;
    retry if the episode ends early (so the real state can be replayed from the seed and actions)."""
    for _ in range(20):
        seed = int(rng.integers(2**31))
        frame, info = env.reset(seed=seed)
        frames, acts, rewards, states, ended = [frame], [spec.zeros()], [0.0], [info.get("state")], False
        while len(frames) < context and not ended:
            a = spec.sample(rng)
            frame, r, term, trunc, info = env.step(a)
            frames.append(frame)
            acts.append(np.asarray(a, dtype=spec.zeros().dtype))
            rewards.append(float(r))
            states.append(info.get("state"))
            ended = term or trunc
        if not ended:
            known = all(x is not None for x in states)
            return RealContext(np.stack(frames), np.stack(acts), seed, np.asarray(rewards, np.float32),
                               np.stack(states) if known else None)  # fmt: skip
    raise RuntimeError(f"{env.entry.env_id} keeps ending within {context} random steps")

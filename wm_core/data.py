"""Episodes on disk, collecting them from gymnasium envs, and training sequences drawn from them.

Time convention (the whole project relies on it): an episode of T env steps has T+1 frames; `act[t]` is
the action that led to `obs[t]` (`act[0]` is `action_spec.zeros()`) and `rew[t]` the reward received on
arriving at `obs[t]` (`rew[0] = 0`). `terminated`: the last frame is a true terminal state; `truncated`:
a time limit cut the episode there. A store is a folder of `ep_000000.npz` files plus `index.json`; every
write goes to a temp file moved into place with `os.replace`, so nothing is ever half-written.

Episodes collected by a search (MuZero's MCTS) also keep what the search saw at each frame t, the paper's
training targets: `search_policy[t]` the root visit distribution over actions (the search chose `act[t+1]`
from it) and `search_value[t]` the root value. Frames without a search (the last one, random-policy data)
hold a zero row and NaN. Stores written before these fields existed load unchanged.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .errors import DataError
from .files import atomic_write, sha256_file
from .spec import ActionSpec, FramePipeline

if TYPE_CHECKING:  # only the sampler needs torch, so collecting never imports it from here
    import gymnasium
    import torch

FORMAT_VERSION = 1
TRAIN_SEED_BASE = 0
HELDOUT_SEED_BASE = 1_000_000  # held-out evaluation sets use seeds from here: disjoint from training
INDEX_FILE = "index.json"
MEAN_FRAME_FILE = "mean_frame.npy"
Policy = Callable[[np.ndarray], np.ndarray]  # (num_envs, H, W, 3) uint8 frames -> raw actions


@dataclass
class Episode:
    """One episode: T+1 frames, the actions that led to them and the rewards received on arrival.

    `seed` is the seed its collecting env was reset with and `ordinal` the number of episodes that env
    had already played since (envs auto-reset without a new seed), so (seed, ordinal) identifies it.
    """

    obs: np.ndarray  # (T+1, H, W, 3) uint8
    act: np.ndarray  # (T+1,) int64 for discrete, (T+1, n) float32 for box; act[0] = zeros
    rew: np.ndarray  # (T+1,) float32, rew[0] = 0
    terminated: bool
    truncated: bool
    state: np.ndarray | None = None  # (T+1, k) float32 true env state when available
    seed: int | None = None
    ordinal: int = 0
    search_policy: np.ndarray | None = None  # (T+1, A) float32 root visit distribution; zero row: no search
    search_value: np.ndarray | None = None  # (T+1,) float32 root value of the search; NaN: no search

    def __len__(self) -> int:
        """Number of frames (env steps + 1)."""
        return len(self.obs)


def _write_npz(f: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    """What `np.savez_compressed` writes, but with fixed member timestamps (savez stamps "now").

    So identical episodes are identical bytes, and collecting the same seeds twice gives the same hash.
    """
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)


def _canon(x: Any) -> Any:
    """Specs as plain JSON values (tuples in memory come back from disk as lists)."""
    return json.loads(json.dumps(x.to_json() if hasattr(x, "to_json") else x))


class EpisodeStore:
    """Episodes on disk: one compressed .npz per episode plus index.json."""

    def __init__(self, root: Path, index: dict[str, Any]) -> None:
        """Use `EpisodeStore.create` or `EpisodeStore.open`."""
        self.root, self._index = root, index
        self.env_id: str = index["env_id"]
        self.split: str = index["split"]
        self.pipeline = FramePipeline.from_json(index["pipeline"])
        self.action_spec = ActionSpec.from_json(index["action_spec"])

    @classmethod
    def create(
        cls,
        root: Path | str,
        env_id: str,
        pipeline: FramePipeline,
        action_spec: ActionSpec,
        split: str = "train",
    ) -> EpisodeStore:
        """A new empty store at `root`, or the one already there if it holds the same env and split."""
        root = Path(root)
        if (root / INDEX_FILE).exists():
            store = cls.open(root)
            store.check_compatible(env_id, pipeline, action_spec, split)
            return store
        root.mkdir(parents=True, exist_ok=True)
        index = {"format": FORMAT_VERSION, "env_id": env_id, "split": split, "pipeline": pipeline.to_json()}
        index |= {"action_spec": action_spec.to_json(), "seeds": [], "episodes": [], "mean_frame": None}
        store = cls(root, index)
        store._write_index()
        return store

    @classmethod
    def open(cls, root: Path | str) -> EpisodeStore:
        """The store at `root`; DataError if there is none or its index is unreadable."""
        path = Path(root) / INDEX_FILE
        if not path.is_file():
            raise DataError(
                f"no episode store at {root} (no {INDEX_FILE}): collect one with `wm collect --env ENV --out {root}`"
            )
        try:
            index = json.loads(path.read_text())
            if index.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {index.get('format')!r}, this version reads format {FORMAT_VERSION}")
            return cls(Path(root), index)
        except (OSError, KeyError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
            raise DataError(f"unreadable episode index {path}: {e}") from e

    def check_compatible(
        self, env_id: str, pipeline: FramePipeline, action_spec: ActionSpec, split: str | None = None
    ) -> None:
        """DataError unless episodes of this env, pipeline, action spec (and split) may join this store."""
        ours = [self.env_id, self.pipeline, self.action_spec, self.split]
        theirs = [env_id, pipeline, action_spec, split or self.split]
        names = ["env", "frame pipeline", "action spec", "split"]
        diff = [n for n, a, b in zip(names, ours, theirs, strict=True) if _canon(a) != _canon(b)]
        if diff:
            raise DataError(
                f"the store at {self.root} holds {self.env_id} ({self.split}) episodes; these differ in "
                f"{', '.join(diff)} ({env_id}, {split}): use another output directory"
            )

    def _write_index(self) -> None:
        entries = self._index["episodes"]
        self._index["content_hash"] = hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()
        self._index["seeds"] = sorted({e["seed"] for e in entries if e["seed"] is not None})
        text = json.dumps(self._index, indent=1).encode()
        atomic_write(self.root / INDEX_FILE, lambda f: f.write(text))

    def add(self, ep: Episode, policy: str = "unknown") -> None:
        """Append one episode (`policy` names who played it: random, scripted, human, agent ...): an atomic
        file write, then an atomic index rewrite."""
        spec, n, size = self.action_spec, len(ep), self.pipeline.size
        want = [(n, size, size, 3), (n,) if spec.discrete else (n, spec.n), (n,), n, (n, spec.n), (n,)]
        got = [ep.obs.shape, ep.act.shape, ep.rew.shape, n if ep.state is None else len(ep.state)]
        got += [want[4] if ep.search_policy is None else ep.search_policy.shape]
        got += [want[5] if ep.search_value is None else ep.search_value.shape]
        if n < 1 or got != want or ep.obs.dtype != np.uint8 or np.any(ep.act[:1]) or np.any(ep.rew[:1]):
            raise DataError(
                f"malformed episode: obs/act/rew/state/search shapes {got}, expected {want}, obs {ep.obs.dtype} "
                "(want uint8); act[0] and rew[0] must be zero"
            )
        arrays = {
            "obs": ep.obs,
            "act": ep.act.astype(np.int64 if spec.discrete else np.float32),
            "rew": ep.rew.astype(np.float32),
            "terminated": np.array(ep.terminated),
            "truncated": np.array(ep.truncated),
        } | ({} if ep.state is None else {"state": ep.state.astype(np.float32)})
        for key in ("search_policy", "search_value"):
            if getattr(ep, key) is not None:
                arrays[key] = getattr(ep, key).astype(np.float32)
        name = f"ep_{len(self):06d}.npz"
        atomic_write(self.root / name, lambda f: _write_npz(f, arrays))
        entry = {"file": name, "frames": n, "return": float(ep.rew.sum()), "terminated": bool(ep.terminated)}
        entry |= {"truncated": bool(ep.truncated), "seed": ep.seed, "ordinal": ep.ordinal, "policy": policy}
        self._index["episodes"].append(entry | {"sha256": sha256_file(self.root / name)})
        self._write_index()

    def __len__(self) -> int:
        """Number of episodes."""
        return len(self._index["episodes"])

    def load(self, i: int, frames: bool = True) -> Episode:
        """Episode `i`, checked against the sha256 recorded in the index. `frames=False` skips decompressing
        the frames (then `obs` is an empty (T+1, 0, 0, 3) array): for statistics over actions and states."""
        entry = self._index["episodes"][range(len(self))[i]]  # range() gives negative i and IndexError
        path = self.root / entry["file"]
        if not path.is_file():
            raise DataError(f"episode file {path} listed in {INDEX_FILE} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise DataError(f"episode file {path} does not match its sha256 in {INDEX_FILE}: it was modified")
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files if frames or k != "obs"}
            if not frames:
                a["obs"] = np.zeros((entry["frames"], 0, 0, 3), np.uint8)
            terminated, truncated = bool(a["terminated"]), bool(a["truncated"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read episode file {path}: {e}") from e
        return Episode(
            a["obs"],
            a["act"],
            a["rew"],
            terminated,
            truncated,
            a.get("state"),
            entry["seed"],
            entry["ordinal"],
            a.get("search_policy"),
            a.get("search_value"),
        )

    def episodes(self) -> list[Episode]:
        """All episodes, loaded into memory."""
        return [self.load(i) for i in range(len(self))]

    @property
    def seeds(self) -> list[int]:
        """Sorted env reset seeds the stored episodes came from."""
        return list(self._index["seeds"])

    @property
    def num_frames(self) -> int:
        """Total frames over all episodes."""
        return sum(e["frames"] for e in self._index["episodes"])

    @property
    def content_hash(self) -> str:
        """sha256 over the per-episode file hashes in order: names exactly this data."""
        return self._index["content_hash"]

    def mean_frame(self) -> np.ndarray:
        """The dataset's mean frame, (H, W, 3) float32 in [0, 1]; cached next to the index."""
        path, cached = self.root / MEAN_FRAME_FILE, self._index.get("mean_frame")
        if cached and cached["content_hash"] == self.content_hash and path.is_file():
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                pass  # a damaged cache is simply recomputed
        if not len(self):
            raise DataError(f"the store at {self.root} has no episodes, so no mean frame")
        total = sum(self.load(i).obs.sum(axis=0, dtype=np.float64) for i in range(len(self)))
        mean = (total / (255.0 * self.num_frames)).astype(np.float32)
        try:
            atomic_write(path, lambda f: np.save(f, mean, allow_pickle=False))
            self._index["mean_frame"] = {"file": MEAN_FRAME_FILE, "content_hash": self.content_hash}
            self._write_index()
        except OSError:
            pass  # a read-only store still works; it recomputes the mean each time
        return mean

    def summary(self) -> dict[str, Any]:
        """Counts and statistics for display; lengths are in env steps (frames - 1)."""
        entries = self._index["episodes"]
        steps, returns = [e["frames"] - 1 for e in entries] or [0], [e["return"] for e in entries] or [0.0]
        return {
            "env_id": self.env_id,
            "split": self.split,
            "episodes": len(entries),
            "frames": self.num_frames,
            "mean_length": float(np.mean(steps)),
            "min_length": min(steps),
            "max_length": max(steps),
            "mean_return": float(np.mean(returns)),
            "terminated": sum(e["terminated"] for e in entries),
            "content_hash": self.content_hash,
            "policies": self.policies(),
        }

    def policies(self) -> dict[str, int]:
        """Frames per data policy (stores written before policies were recorded count as "unrecorded")."""
        out: dict[str, int] = {}
        for e in self._index["episodes"]:
            name = str(e.get("policy", "unrecorded"))
            out[name] = out.get(name, 0) + int(e["frames"])
        return out


Step = tuple[np.ndarray, Any, float, "np.ndarray | None"]  # (frame, raw action, reward, true state)


def _episode(steps: list[Step], terminated: bool, truncated: bool, seed: int | None, ordinal: int) -> Episode:
    obs, act, rew, state = zip(*steps, strict=True)
    has_state = all(s is not None for s in state)
    return Episode(
        np.stack(obs), np.stack(act), np.asarray(rew, np.float32), bool(terminated), bool(truncated),
        np.stack(state) if has_state else None, seed, ordinal,
    )  # fmt: skip


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

    `policy` is 'random', 'scripted', a run directory with a trained agent (see `wm_core.policies`), a
    policy object, or a callable from frames to raw actions. Env i is reset once with seed+i, then
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


class EpisodeRecorder:
    """Builds episodes step by step as someone plays a real env (the Play tab's real-env mode) and adds each
    finished one to `store` under `policy` ("human"): a person's play becomes training data that `wm train
    --data` accepts. An episode in progress is stored as truncated when recording stops or the env resets."""

    def __init__(self, store: EpisodeStore, policy: str = "human") -> None:
        self.store, self.policy = store, policy
        self.steps: list[Step] = []
        self.seed: int | None = None
        self.saved = 0

    def start(self, frame: np.ndarray, seed: int | None = None, state: np.ndarray | None = None) -> None:
        """Begin an episode at its first frame (storing any episode still in progress); `state` is the env's
        true low-dimensional state where it reports one (classic control)."""
        self.finish()
        self.steps, self.seed = [(frame, self.store.action_spec.zeros(), 0.0, state)], seed

    def step(
        self, frame: np.ndarray, action: Any, reward: float, terminated: bool, truncated: bool,
        state: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        """One real step; an episode end stores the episode."""
        if not self.steps:
            return
        raw = np.asarray(action, dtype=self.store.action_spec.zeros().dtype)
        self.steps.append((frame, raw, float(reward), state))
        if terminated or truncated:
            self.finish(bool(terminated), bool(truncated))

    def finish(self, terminated: bool = False, truncated: bool = True) -> None:
        """Store the episode in progress (if it has a transition) and start none."""
        if len(self.steps) > 1:
            self.store.add(_episode(self.steps, terminated, truncated, self.seed, 0), policy=self.policy)
            self.saved += 1
        self.steps = []

    @property
    def frames(self) -> int:
        """Frames of the episode in progress."""
        return len(self.steps)


class SequenceSampler:
    """Draws (batch, time) training sequences across episode boundaries, Dreamer-style.

    Episodes lie end to end in one flat buffer and windows start anywhere, so a window may run into the
    next episode, where `is_first` marks the boundary. The first step of every window has `is_first=True`
    (with zero act and rew) even mid-episode: the model has not seen the earlier frames, so it starts from
    a fresh state there.

    Given an `EpisodeStore` larger than `cache_frames`, the buffer is a ring of `cache_frames` frames (a
    replay buffer, as Dreamer keeps one): it starts with random episodes (chosen in proportion to their
    length) and, as batches are drawn, keeps loading more from disk over the oldest frames, `refresh` new
    frames per sampled frame. Windows never cross the newest write, so they never join unrelated frames;
    memory stays at the cache's size whatever the store holds. A store that fits is loaded whole.
    """

    def __init__(
        self,
        episodes: Sequence[Episode] | EpisodeStore,
        action_spec: ActionSpec,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        cache_frames: int | None = None,
        refresh: float = 0.25,
    ) -> None:
        """Flatten `episodes` (or a store's) into one buffer; `seed` fixes the sequence of batches."""
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
        store = episodes if isinstance(episodes, EpisodeStore) else None
        total = store.num_frames if store is not None else sum(len(ep) for ep in episodes)
        count = len(store) if store is not None else len(episodes)
        if total < seq_len:
            raise DataError(
                f"{count} episodes hold {total} frames, fewer than one sequence of {seq_len}: "
                "collect more episodes or use a shorter sequence length"
            )
        self.seq_len, self.batch_size, self.spec = seq_len, batch_size, action_spec
        self._rng = np.random.default_rng(seed)
        self._store: EpisodeStore | None = None
        if store is None:
            self._load_all(episodes)
        elif cache_frames is not None and total > cache_frames:
            self._start_ring(store, max(int(cache_frames), 2 * seq_len), refresh)
        else:  # the whole store, one episode at a time into buffers of its size (no second copy)
            self._allocate(store.load(0), total)
            for i in range(len(store)):
                self._put(store.load(i))

    def _load_all(self, episodes: Sequence[Episode]) -> None:
        if len(shapes := {ep.obs.shape[1:] for ep in episodes}) > 1:
            raise DataError(f"episodes have different frame shapes: {sorted(shapes)}")
        total = sum(len(ep) for ep in episodes)
        lengths = np.array([len(ep) for ep in episodes])
        firsts = np.cumsum(lengths) - lengths
        self.obs = np.concatenate([ep.obs for ep in episodes])  # (N, H, W, 3) uint8
        self.act = self.spec.encode(np.concatenate([ep.act for ep in episodes])).numpy()  # (N, dim)
        self.rew = np.concatenate([ep.rew for ep in episodes]).astype(np.float32)  # (N,)
        self.is_first = np.zeros(total, bool)
        self.is_first[firsts] = True
        self.is_terminal = np.zeros(total, bool)
        self.is_terminal[(firsts + lengths - 1)[[ep.terminated for ep in episodes]]] = True
        self.act[self.is_first] = 0.0  # the raw zero action of a Discrete env would encode as one-hot 0
        has_state = all(ep.state is not None for ep in episodes)
        self.state = np.concatenate([ep.state for ep in episodes]).astype(np.float32) if has_state else None
        # Search targets, when any episode has them; the others count as "no search" (zero row, NaN).
        self.search: dict[str, np.ndarray] | None = None
        if any(ep.search_policy is not None for ep in episodes):
            A = self.spec.n
            pol = [np.zeros((len(ep), A)) if ep.search_policy is None else ep.search_policy for ep in episodes]
            val = [np.full(len(ep), np.nan) if ep.search_value is None else ep.search_value for ep in episodes]
            self.search = {"search_policy": np.concatenate(pol).astype(np.float32)}
            self.search["search_value"] = np.concatenate(val).astype(np.float32)
        self._write, self._filled = 0, total

    # ---- the ring (a store larger than the cache) ---------------------------------------------------
    def _start_ring(self, store: EpisodeStore, capacity: int, refresh: float) -> None:
        self._store, self._refresh, self._credit = store, refresh, 0.0
        lengths = np.array([e["frames"] for e in store._index["episodes"]], np.float64)
        self._weights = lengths / lengths.sum()
        first = store.load(int(self._rng.choice(len(store), p=self._weights)))
        self._allocate(first, capacity)
        self._put(first)
        while self._filled < capacity:
            self._put(store.load(int(self._rng.choice(len(store), p=self._weights))))

    def _allocate(self, first: Episode, capacity: int) -> None:
        """Empty buffers of `capacity` frames shaped like `first`'s (true states if it has them)."""
        S = first.obs.shape[1:]
        self.obs = np.zeros((capacity, *S), np.uint8)
        self.act = np.zeros((capacity, self.spec.dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.is_first = np.zeros(capacity, bool)
        self.is_terminal = np.zeros(capacity, bool)
        self.state = None if first.state is None else np.zeros((capacity, first.state.shape[1]), np.float32)
        self.search = None  # allocated by `_put` when an episode with search targets arrives
        self._write, self._filled = 0, 0

    def _put(self, ep: Episode) -> None:
        """Write an episode at the ring's write position (wrapping), over the oldest frames."""
        C = len(self.obs)
        n = min(len(ep), C)
        if ep.obs.shape[1:] != self.obs.shape[1:]:
            raise DataError(f"episodes have different frame shapes: {ep.obs.shape[1:]} and {self.obs.shape[1:]}")
        at = (self._write + np.arange(n)) % C
        self.obs[at] = ep.obs[:n]
        act = self.spec.encode(ep.act[:n]).numpy()
        act[0] = 0.0
        self.act[at], self.rew[at] = act, ep.rew[:n]
        self.is_first[at] = np.arange(n) == 0
        self.is_terminal[at] = (np.arange(n) == len(ep) - 1) & ep.terminated
        # As for a list of episodes: true states only when every episode has them, search targets when any
        # does (the others count as "no search": a zero row and NaN).
        if ep.state is None:
            self.state = None
        elif self.state is not None:
            self.state[at] = ep.state[:n]
        if ep.search_policy is not None and self.search is None:
            self.search = {"search_policy": np.zeros((C, self.spec.n), np.float32),
                           "search_value": np.full(C, np.nan, np.float32)}  # fmt: skip
        if self.search is not None:
            self.search["search_policy"][at] = 0.0 if ep.search_policy is None else ep.search_policy[:n]
            self.search["search_value"][at] = np.nan if ep.search_value is None else ep.search_value[:n]
        self._write, self._filled = (self._write + n) % C, min(C, self._filled + n)

    def _refill(self) -> None:
        """Load new episodes over the oldest frames: `refresh` frames per frame sampled."""
        self._credit += self._refresh * self.batch_size * self.seq_len
        while self._credit > 0:
            ep = self._store.load(int(self._rng.choice(len(self._store), p=self._weights)))
            self._put(ep)
            self._credit -= len(ep)

    @property
    def num_frames(self) -> int:
        """Frames in the buffer (all of them, or the ring's)."""
        return self._filled

    def sample(self) -> dict[str, torch.Tensor]:
        """obs (B,T,H,W,3) uint8, act (B,T,dim), rew (B,T), is_first, is_terminal (B,T) [, state (B,T,k)]
        [, search_policy (B,T,A), search_value (B,T)]."""
        import torch

        if self._store is not None:
            self._refill()
        starts = self._rng.integers(0, self.num_frames - self.seq_len + 1, size=self.batch_size)
        # In a ring, offsets count from the oldest frame, so no window crosses the newest write.
        starts = (starts + self._write - self._filled) % len(self.obs) if self._store is not None else starts
        idx = (starts[:, None] + np.arange(self.seq_len)) % len(self.obs)  # (B, T) indices into the buffer
        is_first, act, rew = self.is_first[idx], self.act[idx], self.rew[idx]
        is_first[:, 0] = True
        act[is_first] = 0.0
        rew[:, 0] = 0.0  # the protocol has act and rew zero wherever is_first holds
        batch = {"obs": self.obs[idx], "act": act, "rew": rew, "is_first": is_first}
        batch["is_terminal"] = self.is_terminal[idx]
        if self.state is not None:
            batch["state"] = self.state[idx]
        if self.search is not None:
            batch |= {k: v[idx] for k, v in self.search.items()}
        return {k: torch.from_numpy(v) for k, v in batch.items()}


def windows(episodes: Sequence[Episode], length: int, stride: int | None = None) -> list[tuple[int, int]]:
    """(episode, start) of each `length`-frame window inside one episode, `stride` (default length) apart."""
    step = stride or length
    return [(i, s) for i, ep in enumerate(episodes) for s in range(0, len(ep) - length + 1, step)]

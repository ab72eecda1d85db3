"""Episodes on disk: one compressed `.npz` per episode plus `index.json`, and a recorder that builds them as
someone plays.

Time convention (the whole project relies on it): an episode of T env steps has T+1 frames; `act[t]` is
the action that led to `obs[t]` (`act[0]` is `action_spec.zeros()`) and `rew[t]` the reward received on
arriving at `obs[t]` (`rew[0] = 0`). `terminated`: the last frame is a true terminal state; `truncated`:
a time limit cut the episode there. Every write goes through `wm_core.files`, so nothing is half-written.

Episodes collected by a search (MuZero's MCTS) also keep what the search saw at each frame t, the paper's
training targets: `search_policy[t]` the root visit distribution over actions (the search chose `act[t+1]`
from it) and `search_value[t]` the root value. Frames without a search (the last one, random-policy data)
hold a zero row and NaN. Stores written before these fields existed load unchanged.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError
from ..files import atomic_write, read_json_file, sha256_file
from ..spec import ActionSpec, FramePipeline

FORMAT_VERSION = 1
TRAIN_SEED_BASE = 0
HELDOUT_SEED_BASE = 1_000_000  # held-out evaluation sets use seeds from here: disjoint from training
INDEX_FILE = "index.json"
MEAN_FRAME_FILE = "mean_frame.npy"


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
            index = read_json_file(path)
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

"""Training sequences drawn from episodes: all of them in memory, or a bounded replay buffer over a store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..spec import ActionSpec
from .store import Episode, EpisodeStore

if TYPE_CHECKING:
    import torch


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

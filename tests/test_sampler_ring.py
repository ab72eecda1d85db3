"""The sampler as a replay buffer: an EpisodeStore larger than `cache_frames` becomes a ring that keeps loading
episodes from disk over its oldest frames. Synthetic stores whose frames carry their global index in pixel
values let every sampled window be traced back to the store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from wm_core.data import Episode, EpisodeStore, SequenceSampler
from wm_core.spec import ActionSpec, FramePipeline

SPEC = ActionSpec("discrete", 3)
SIZE = 8  # tiny frames: only pixel (0, 0) matters
SEQ, BATCH, CACHE = 12, 32, 200


def numbered_store(root: Path, lengths: list[int], terminated: list[bool]) -> EpisodeStore:
    """Episodes whose frames carry their global index g in pixel (0, 0) (red: g % 256, green: g // 256), with
    act g % 3, rew g % 7 and state (g, episode) after the first frame, so every field can be traced."""
    store = EpisodeStore.create(root, "Numbered-v0", FramePipeline(size=SIZE), SPEC)
    start = 0
    for i, (n, term) in enumerate(zip(lengths, terminated, strict=True)):
        g = np.arange(start, start + n)
        obs = np.zeros((n, SIZE, SIZE, 3), np.uint8)
        obs[:, 0, 0, 0], obs[:, 0, 0, 1] = g % 256, g // 256
        act, rew = g % 3, (g % 7).astype(np.float32)
        act[0], rew[0] = 0, 0.0
        state = np.stack([g, np.full(n, i)], 1).astype(np.float32)
        store.add(Episode(obs, act, rew, term, not term, state=state, seed=i), policy="synthetic")
        start += n
    return store


def frame_ids(batch: dict) -> np.ndarray:
    """The global index of every sampled frame, (B, T)."""
    obs = batch["obs"].numpy().astype(np.int64)
    return obs[:, :, 0, 0, 0] + 256 * obs[:, :, 0, 0, 1]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """40 episodes of 15-40 frames (about 1,100 frames), every third one terminated: 5x the ring's cache."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(15, 41, size=40).tolist()
    return numbered_store(tmp_path_factory.mktemp("numbered"), lengths, [i % 3 == 0 for i in range(40)])


def layout(store: EpisodeStore) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per global index: its episode, whether it is an episode's first frame, its last, a terminal one."""
    lengths = [e["frames"] for e in store._index["episodes"]]
    episode = np.repeat(np.arange(len(lengths)), lengths)
    first = np.r_[True, episode[1:] != episode[:-1]]
    last = np.r_[episode[1:] != episode[:-1], True]
    terminal = last & np.array([e["terminated"] for e in store._index["episodes"]])[episode]
    return episode, first, last, terminal


def test_ring_windows_never_join_unrelated_frames(big_store: EpisodeStore) -> None:
    assert big_store.num_frames > 5 * CACHE
    sampler = SequenceSampler(big_store, SPEC, SEQ, BATCH, seed=0, cache_frames=CACHE)
    episode, first, last, terminal = layout(big_store)
    crossings = 0
    for _ in range(150):
        batch = sampler.sample()
        g = frame_ids(batch)
        is_first = batch["is_first"].numpy()
        cont = ~is_first[:, 1:]  # a step inside the window that continues the frame before it
        # Continuing steps are the next frame of the same episode ...
        assert np.all((g[:, 1:] == g[:, :-1] + 1)[cont]) and np.all((episode[g[:, 1:]] == episode[g[:, :-1]])[cont])
        # ... and a marked boundary inside a window is a whole episode's last frame followed by another's first.
        assert np.all(first[g[:, 1:]][~cont]) and np.all(last[g[:, :-1]][~cont])
        assert np.all(is_first[:, 0]) and np.all(is_first[:, 1:] == first[g[:, 1:]])
        crossings += int((~cont).sum())
        np.testing.assert_array_equal(batch["is_terminal"].numpy(), terminal[g])
        act, rew, state = batch["act"].numpy(), batch["rew"].numpy(), batch["state"].numpy()
        assert not act[is_first].any() and not rew[is_first].any()
        np.testing.assert_array_equal(act[~is_first].argmax(-1), (g % 3)[~is_first])
        np.testing.assert_array_equal(rew[~is_first], (g % 7)[~is_first])
        np.testing.assert_array_equal(state[..., 0], g)  # the true state travels with its frame
        # The buffer is the cache, never more: every array holds CACHE frames.
        assert sampler.num_frames == CACHE and len(sampler.obs) == CACHE
        assert all(len(a) == CACHE for a in (sampler.act, sampler.rew, sampler.is_first, sampler.state))
    assert crossings > 100  # windows do run across episode boundaries (Dreamer-style)


def test_ring_reaches_every_episode_and_keeps_changing(big_store: EpisodeStore) -> None:
    sampler = SequenceSampler(big_store, SPEC, SEQ, BATCH, seed=1, cache_frames=CACHE)
    episode = layout(big_store)[0]
    seen, buffers = set(), []
    for i in range(400):  # 0.25 x 384 sampled frames = 96 new frames per batch: the store ~35 times over
        seen |= set(episode[frame_ids(sampler.sample())].ravel().tolist())
        if i % 50 == 0:
            buffers.append(set(episode[sampler.obs[:, 0, 0, 0] + 256 * sampler.obs[:, 0, 0, 1].astype(int)]))
    assert seen == set(range(len(big_store)))
    assert len({frozenset(b) for b in buffers}) == len(buffers)  # the ring's content moved on between looks
    # Without refresh the ring is a fixed random subset of the store: far from every episode.
    frozen = SequenceSampler(big_store, SPEC, SEQ, BATCH, seed=1, cache_frames=CACHE, refresh=0.0)
    seen_frozen = set()
    for _ in range(50):
        seen_frozen |= set(episode[frame_ids(frozen.sample())].ravel().tolist())
    assert len(seen_frozen) < len(big_store) // 2


@pytest.mark.parametrize("cache_frames", [None, 10_000])
def test_a_store_that_fits_gives_the_episode_lists_batches(
    big_store: EpisodeStore, cartpole_store: EpisodeStore, cache_frames: int | None
) -> None:
    for store, seq in ((big_store, SEQ), (cartpole_store, 8)):
        assert store.num_frames <= 10_000
        whole = SequenceSampler(store, store.action_spec, seq, 16, seed=5, cache_frames=cache_frames)
        listed = SequenceSampler(store.episodes(), store.action_spec, seq, 16, seed=5)
        assert whole.num_frames == listed.num_frames == store.num_frames
        for _ in range(4):
            a, b = whole.sample(), listed.sample()
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].dtype == b[k].dtype and a[k].equal(b[k]), k


def _mixed_store(root: Path, kind: str) -> EpisodeStore:
    """Three episodes where only some carry the optional fields: search targets only in the last one (random
    episodes first, then MCTS ones appended), or a true state only in the first one (a classic-control store
    collected by `wm collect`, then a human's play recorded into it: the recorder stores no state)."""
    store = EpisodeStore.create(root, "Mixed-v0", FramePipeline(size=SIZE), SPEC)
    for i, n in enumerate([10, 12, 9]):
        obs = np.full((n, SIZE, SIZE, 3), 10 * i, np.uint8)
        obs[:, 0, 0, 0] = np.arange(n)
        act = np.arange(n) % 3
        act[0] = 0
        ep = Episode(obs, act, np.zeros(n, np.float32), i == 1, i != 1)
        if kind == "search" and i == 2:
            ep.search_policy = np.full((n, 3), 1 / 3, np.float32)
            ep.search_value = np.linspace(0, 1, n).astype(np.float32)
        if kind == "state" and i == 0:
            ep.state = np.ones((n, 2), np.float32)
        store.add(ep)
    return store


@pytest.mark.parametrize("kind", ["search", "state"])
def test_a_mixed_store_that_fits_gives_the_episode_lists_batches(tmp_path: Path, kind: str) -> None:
    """The optional fields must not depend on which path loaded the store: the episode list keeps search
    targets when any episode has them and drops the state unless every episode has one."""
    store = _mixed_store(tmp_path / kind, kind)
    whole = SequenceSampler(store, SPEC, 4, 8, seed=0).sample()
    listed = SequenceSampler(store.episodes(), SPEC, 4, 8, seed=0).sample()
    assert sorted(whole) == sorted(listed)
    for k in listed:  # exact equality, with NaN ("no search") equal to NaN
        torch.testing.assert_close(whole[k], listed[k], rtol=0, atol=0, equal_nan=True, msg=k)


# ---- peak memory -------------------------------------------------------------------------------------
MEM_EPISODES, MEM_LENGTH = 64, 256  # 16,384 frames of 64x64x3: 192 MiB of raw frames
MEM_CACHE = 2000  # frames: 23.4 MiB
FRAME_BYTES = 64 * 64 * 3

MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from wm_core.data import EpisodeStore, SequenceSampler

    def peak_mib():
        # The kernel's high-water mark of this process's resident memory (VmHWM). Not getrusage's ru_maxrss:
        # that one starts at the parent's size, because a fork keeps the parent's peak through exec, so under
        # a big pytest process it reads its RSS instead of ours.
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

    store = EpisodeStore.open(sys.argv[1])
    # Warm-ups whose one-time costs (library code paged in, allocator arenas) belong to the baseline: a first
    # decompression, and the torch ops a batch goes through, on a few numbers.
    store.load(0)
    torch.from_numpy(store.action_spec.encode(np.arange(3)).numpy()[np.arange(2)])
    base = peak_mib()
    ring = SequenceSampler(store, store.action_spec, 16, 16, seed=0, cache_frames=int(sys.argv[2]))
    for _ in range(300):  # 300 x 16 x 16 x 0.25 = 19,200 frames loaded: more than the whole store
        batch = ring.sample()
    ring_peak = peak_mib()
    del ring, batch
    whole = SequenceSampler(store, store.action_spec, 16, 16, seed=0)  # the control: everything in memory
    whole.sample()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base": base, "ring": ring_peak, "whole": peak_mib(), "ru_maxrss": maxrss}))
    """
)


@pytest.fixture(scope="module")
def frames_store(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """64 episodes of 256 64x64 frames. Each frame is filled (every byte non-zero, so no page stays an
    untouched zero page) but compresses well: writing 192 MiB of noise would take ~6 s, this ~1 s, and what
    the sampler holds in memory is the decompressed frames either way."""
    store = EpisodeStore.create(tmp_path_factory.mktemp("frames"), "Frames-v0", FramePipeline(), SPEC)
    ramp = np.broadcast_to(np.arange(1, 65, dtype=np.uint8)[:, None, None], (64, 64, 3))
    for i in range(MEM_EPISODES):
        obs = np.repeat(ramp[None] + np.uint8(i), MEM_LENGTH, axis=0)
        obs[:, 0, 0, 0] = np.arange(MEM_LENGTH) % 256
        act = np.arange(MEM_LENGTH) % 3
        act[0] = 0
        store.add(Episode(obs, act, np.zeros(MEM_LENGTH, np.float32), False, True))
    return store


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak RSS (VmHWM) from Linux's /proc")
def test_ring_peak_memory_stays_at_the_cache(frames_store: EpisodeStore) -> None:
    raw_mib = frames_store.num_frames * FRAME_BYTES / 2**20
    cache_mib = MEM_CACHE * FRAME_BYTES / 2**20
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(frames_store.root), str(MEM_CACHE)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    ring, whole = rss["ring"] - rss["base"], rss["whole"] - rss["base"]
    # The control shows the meter sees frames: loading the store whole grows the peak by its raw size.
    assert whole > 0.95 * raw_mib, rss
    # The ring grows by its cache plus transients, measured at 7 MiB over the 23.4 MiB cache (30.2 MiB in
    # all): the episode being loaded (3 MiB decompressed, plus its file read for the sha256 check), a batch of
    # 16 x 16 frames (3 MiB) with its one-hot actions, and malloc's slack. A 20 MiB margin is about three
    # times that, and still far below the 192 MiB a whole load takes.
    assert ring < cache_mib + 20, rss
    assert ring < raw_mib / 4, rss

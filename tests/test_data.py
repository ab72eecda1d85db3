"""Episode store, collection from real envs (CartPole, Pendulum) and the sequence sampler."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from wm_core.data import (
    HELDOUT_SEED_BASE,
    DataError,
    Episode,
    EpisodeStore,
    SequenceSampler,
    collect,
    windows,
)
from wm_core.spec import ActionSpec

CARTPOLE_DT = 0.02  # CartPole's Euler step: x[t+1] = x[t] + dt * x_dot[t]


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    return collect("CartPole-v1", 6, tmp_path_factory.mktemp("cartpole"), num_envs=2)


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    return collect("Pendulum-v1", 2, tmp_path_factory.mktemp("pendulum"), num_envs=2, max_steps=40)


def test_round_trip(cartpole: EpisodeStore, tmp_path: Path) -> None:
    store = EpisodeStore.open(cartpole.root)
    index = json.loads((store.root / "index.json").read_text())
    assert len(store) == 6 and store.env_id == "CartPole-v1" and store.split == "train"
    assert index["content_hash"] == store.content_hash and len(store.content_hash) == 64
    assert index["pipeline"] == cartpole.pipeline.to_json() and store.action_spec == cartpole.action_spec
    for ep, entry in zip(store.episodes(), index["episodes"], strict=True):
        assert ep.obs.dtype == np.uint8 and ep.obs.shape[1:] == (64, 64, 3)
        assert ep.act.dtype == np.int64 and ep.act.shape == (len(ep),) and ep.act[0] == 0
        assert ep.rew.dtype == np.float32 and ep.rew[0] == 0
        assert ep.state is not None and ep.state.shape == (len(ep), 4) and ep.state.dtype == np.float32
        assert entry["frames"] == len(ep) and entry["return"] == ep.rew.sum()
        assert ep.terminated == (len(ep) - 1 < 500) and ep.truncated == (not ep.terminated)
    assert store.num_frames == sum(len(ep) for ep in store.episodes())
    summary = store.summary()
    assert summary["episodes"] == 6 and summary["frames"] == store.num_frames
    assert summary["mean_return"] == pytest.approx(summary["mean_length"])  # CartPole: reward 1 per step

    # add() then load() gives back exactly what was written
    copy = EpisodeStore.create(tmp_path / "copy", store.env_id, store.pipeline, store.action_spec)
    ep = store.load(-1)
    copy.add(ep)
    back = EpisodeStore.open(tmp_path / "copy").load(0)
    for f in ("obs", "act", "rew", "state"):
        np.testing.assert_array_equal(getattr(back, f), getattr(ep, f))
    assert (back.terminated, back.truncated, back.seed, back.ordinal) == (
        ep.terminated,
        ep.truncated,
        ep.seed,
        ep.ordinal,
    )


def test_episodes_are_consecutive_under_next_step_autoreset(cartpole: EpisodeStore) -> None:
    """No episode gains the next episode's first frame, or loses or repeats one: the true state follows
    CartPole's dynamics at every step, starts in the reset range (a lost first frame would have a pushed
    velocity) and ends out of bounds (an appended reset frame would be back in the middle)."""
    by_worker: dict[int, list[int]] = {}
    for ep in cartpole.episodes():
        x, x_dot, theta, theta_dot = ep.state.T
        np.testing.assert_allclose(x[1:], x[:-1] + CARTPOLE_DT * x_dot[:-1], atol=1e-5)
        np.testing.assert_allclose(theta[1:], theta[:-1] + CARTPOLE_DT * theta_dot[:-1], atol=1e-5)
        assert np.all(np.abs(ep.state[0]) <= 0.05)  # a fresh reset state
        assert abs(x[-1]) > 2.4 or abs(theta[-1]) > 0.2095  # the terminal state, not a reset one
        assert ep.rew.sum() == len(ep) - 1
        by_worker.setdefault(ep.seed, []).append(ep.ordinal)
    assert set(by_worker) <= {0, 1}
    for ordinals in by_worker.values():
        assert sorted(ordinals) == list(range(len(ordinals)))


def test_corruption_and_mismatch_raise_data_error(cartpole: EpisodeStore, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(cartpole.root, root)
    store = EpisodeStore.open(root)
    path = root / "ep_000001.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256"):
        store.load(1)
    (root / "ep_000002.npz").unlink()
    with pytest.raises(DataError, match="missing"):
        store.load(2)
    store.load(0)  # the others are untouched
    with pytest.raises(DataError, match="wm collect"):
        EpisodeStore.open(tmp_path / "nothing")
    with pytest.raises(DataError, match="env"):
        EpisodeStore.create(root, "Pendulum-v1", store.pipeline, store.action_spec)
    (root / "index.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        EpisodeStore.open(root)


def test_seeds_reproducible_and_heldout_disjoint(cartpole: EpisodeStore, tmp_path: Path) -> None:
    again = collect("CartPole-v1", 6, tmp_path / "again", num_envs=2)
    assert again.content_hash == cartpole.content_hash  # same seeds, same bytes
    heldout = collect("CartPole-v1", 2, tmp_path / "heldout", split="heldout", num_envs=2)
    assert min(heldout.seeds) >= HELDOUT_SEED_BASE and not set(heldout.seeds) & set(cartpole.seeds)
    assert heldout.content_hash != cartpole.content_hash
    # appending continues past the used seeds instead of repeating episodes; a reused seed is refused
    more = collect("CartPole-v1", 1, again.root, num_envs=1, store=again)
    assert len(more) == 7 and more.load(6).seed == max(cartpole.seeds) + 1
    with pytest.raises(DataError, match="already used"):
        collect("CartPole-v1", 1, again.root, seed=0, store=again)
    with pytest.raises(DataError, match="env"):
        collect("Pendulum-v1", 1, again.root, store=again)


def test_box_random_policy_is_a_correlated_walk(pendulum: EpisodeStore) -> None:
    for ep in pendulum.episodes():
        assert len(ep) == 41 and ep.truncated and not ep.terminated  # max_steps caps the episode
        assert ep.act.shape == (41, 1) and ep.act.dtype == np.float32 and not ep.act[0].any()
        a = ep.act[1:, 0]
        assert np.all(np.abs(a) <= 2.0)
        assert np.corrcoef(a[:-1], a[1:])[0, 1] > 0.5  # uniform i.i.d. actions would give ~0
    assert pendulum.load(0).state.shape == (41, 3)


def test_should_stop_keeps_complete_episodes(tmp_path: Path) -> None:
    calls, seen = [0], []

    def stop() -> bool:
        calls[0] += 1
        return calls[0] > 60

    store = collect(
        "CartPole-v1", 100, tmp_path, num_envs=2, should_stop=stop, progress=lambda f, e: seen.append((f, e))
    )
    assert 0 < len(store) < 100 and len(seen) == 60
    assert seen[-1][1] == len(store) and [f for f, _ in seen] == sorted({f for f, _ in seen})
    for ep in store.episodes():
        assert ep.terminated and ep.rew.sum() == len(ep) - 1
    assert len(EpisodeStore.open(tmp_path)) == len(store)


def test_mean_frame_is_cached(cartpole: EpisodeStore, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(cartpole.root, root)
    store = EpisodeStore.open(root)
    mean = store.mean_frame()
    expected = np.concatenate([ep.obs for ep in store.episodes()]).mean(axis=0) / 255
    assert mean.shape == (64, 64, 3) and mean.dtype == np.float32
    assert 0 <= mean.min() and mean.max() <= 1
    np.testing.assert_allclose(mean, expected, atol=1e-6)
    # the cache is what a reopened store returns (prove it by planting a different value) ...
    np.save(root / "mean_frame.npy", np.zeros_like(mean))
    assert not EpisodeStore.open(root).mean_frame().any()
    # ... until the data changes
    store.add(store.load(0))
    assert store.mean_frame().any()


def _numbered_episodes(lengths: list[int], terminated: list[bool]) -> list[Episode]:
    """Episodes whose frames carry their flat buffer index in pixel (0, 0), so windows can be traced."""
    eps, start = [], 0
    for n, term in zip(lengths, terminated, strict=True):
        obs = np.zeros((n, 4, 4, 3), np.uint8)
        obs[:, 0, 0, 0] = np.arange(start, start + n)
        act = np.arange(n) % 3
        act[0] = 0
        rew = np.arange(n, dtype=np.float32)
        eps.append(Episode(obs, act, rew, term, not term, state=np.ones((n, 2), np.float32)))
        start += n
    return eps


def test_sampler_marks_boundaries() -> None:
    spec = ActionSpec("discrete", 3)
    eps = _numbered_episodes([7, 5, 9, 6], [True, False, True, False])
    sampler = SequenceSampler(eps, spec, seq_len=8, batch_size=64, seed=3)
    batch = sampler.sample()
    assert batch["obs"].shape == (64, 8, 4, 4, 3) and batch["obs"].dtype == torch.uint8
    assert batch["act"].shape == (64, 8, 3) and batch["act"].dtype == torch.float32
    assert batch["state"].shape == (64, 8, 2)
    for k in ("rew", "is_first", "is_terminal"):
        assert batch[k].shape == (64, 8)
    assert batch["is_first"].dtype == torch.bool and batch["is_terminal"].dtype == torch.bool

    starts = {0, 7, 12, 21}
    terminal_ends = {6, 20}
    idx = batch["obs"][:, :, 0, 0, 0].numpy()  # flat buffer index of every sampled frame
    assert np.all(np.diff(idx, axis=1) == 1)
    assert batch["is_first"][:, 0].all()
    expected_first = np.isin(idx, list(starts))
    expected_first[:, 0] = True
    np.testing.assert_array_equal(batch["is_first"].numpy(), expected_first)
    np.testing.assert_array_equal(batch["is_terminal"].numpy(), np.isin(idx, list(terminal_ends)))
    act = batch["act"].numpy()
    assert not act[expected_first].any() and not batch["rew"].numpy()[expected_first].any()
    assert np.all(act[~expected_first].sum(-1) == 1)  # one-hot everywhere else
    assert len({int(s) for s in idx[:, 0]}) > 10  # windows start all over the buffer, crossing episodes


def test_sampler_determinism_and_errors(cartpole: EpisodeStore) -> None:
    eps = cartpole.episodes()
    a = SequenceSampler(eps, cartpole.action_spec, 16, 4, seed=1)
    b = SequenceSampler(eps, cartpole.action_spec, 16, 4, seed=1)
    c = SequenceSampler(eps, cartpole.action_spec, 16, 4, seed=2)
    for _ in range(2):
        ba, bb, bc = a.sample(), b.sample(), c.sample()
        assert all(torch.equal(ba[k], bb[k]) for k in ba)
        assert not torch.equal(ba["obs"], bc["obs"])
    assert ba["state"].dtype == torch.float32
    no_state = [dataclasses.replace(ep, state=None) for ep in eps]
    assert "state" not in SequenceSampler(no_state, cartpole.action_spec, 16, 4).sample()
    with pytest.raises(DataError, match=r"\d+ frames.*sequence of 100000.*shorter"):
        SequenceSampler(eps, cartpole.action_spec, 100_000, 4)


def test_windows_stay_inside_episodes() -> None:
    eps = _numbered_episodes([7, 3, 10], [True, True, False])
    assert windows(eps, 4) == [(0, 0), (2, 0), (2, 4)]
    assert windows(eps, 3, stride=2) == [(0, 0), (0, 2), (0, 4), (1, 0), (2, 0), (2, 2), (2, 4), (2, 6)]

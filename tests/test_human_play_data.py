"""A person's play as training data: a Session with the real env on records the real CartPole env's episodes into an
EpisodeStore (policy "human"), and `train_run` trains on that store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wm_core.data import EpisodeStore
from wm_core.data.envs import make_env
from wm_core.interactive.session import Session
from wm_core.train import train_run


def pushes(i: int) -> int:
    """Mostly push right (1), every fourth step left: the pole falls within a few dozen steps."""
    return 0 if i % 4 == 0 else 1


@pytest.fixture(scope="module")
def recorded(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Play until a real episode ends, then a few steps of a second one, recording all of it; returns the
    store and what the session showed as real frames, with the actions taken."""
    run = tmp_path_factory.mktemp("play") / "run"
    shutil.copytree(trained_run, run)
    session = Session(run, real=True, seed=0)
    store_dir = run.parent / "human"
    started = session.record_data(store_dir)
    assert started is not None and started.root == store_dir and len(started) == 0
    first = {"shown": [session.frame.real], "actions": [], "seed": session.real_seed}
    for i in range(200):
        f = session.step(pushes(i))
        first["shown"].append(f.real)
        first["actions"].append(pushes(i))
        if f.real_ended:
            break
    assert f.real_ended, "the real episode did not end within 200 pushes"
    session.step(0)  # after the real end the real frame holds: nothing more is recorded
    session.reset()  # a second real episode, stopped after three steps
    second = {"shown": [session.frame.real], "actions": [1, 0, 1], "seed": session.real_seed}
    second["shown"] += [session.step(a).real for a in second["actions"]]
    stopped = session.record_data(None)
    session.step(0)  # recording is off: this step writes nothing
    return {"store": stopped, "dir": store_dir, "episodes": [first, second], "context": session.context}


def test_recorded_episodes_are_what_the_session_showed(recorded: dict) -> None:
    store = EpisodeStore.open(recorded["dir"])
    assert recorded["store"].root == store.root and len(store) == 2
    C = recorded["context"]
    for i, shown in enumerate(recorded["episodes"]):
        ep = store.load(i)
        # The first C frames are the real context (random actions) the dream started from; its last frame
        # is the real frame shown at the reset, and every later frame is one the session showed.
        assert len(ep) == C - 1 + len(shown["shown"])
        np.testing.assert_array_equal(ep.obs[C - 1 :], np.stack(shown["shown"]))
        np.testing.assert_array_equal(ep.act[C:], shown["actions"])
        assert ep.seed == shown["seed"] and ep.seed is not None
    first, second = store.load(0), store.load(1)
    assert first.terminated and not first.truncated  # the pole fell
    assert second.truncated and not second.terminated  # stopped mid-episode
    assert store.policies() == {"human": store.num_frames}
    assert store.summary()["policies"] == {"human": store.num_frames}


def test_recorded_episodes_replay_in_the_real_env(recorded: dict) -> None:
    """Each stored episode is a real one: its reset seed and actions reproduce its frames and rewards
    (CartPole pays +1 for every step, the random context steps included)."""
    store = EpisodeStore.open(recorded["dir"])
    env = make_env(store.env_id)
    try:
        for i in range(len(store)):
            ep = store.load(i)
            frame, _ = env.reset(seed=ep.seed)
            frames, rewards = [frame], [0.0]
            for a in ep.act[1:]:
                frame, r, *_ = env.step(a)
                frames.append(frame)
                rewards.append(r)
            np.testing.assert_array_equal(ep.obs, np.stack(frames))
            np.testing.assert_array_equal(ep.rew, np.array(rewards, np.float32), err_msg=f"episode {i} rewards")
    finally:
        env.close()


def test_training_on_recorded_play_records_its_policy(recorded: dict, tmp_path: Path) -> None:
    store = EpisodeStore.open(recorded["dir"])
    run, report = train_run(
        "ha", "CartPole-v1", preset="tiny", overrides={"steps": 3}, data=recorded["dir"], out=tmp_path / "run",
        device="cpu", checkpoint_every=0,
    )  # fmt: skip
    assert report.step == 3 and np.isfinite(report.metrics["loss"])
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["data"]["policies"] == {"human": store.num_frames}
    assert meta["data"]["frames"] == store.num_frames and meta["data"]["episodes"] == 2


def test_recording_needs_the_real_env(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    session = Session(run, real=False, seed=0)
    with pytest.raises(ValueError, match="only real play becomes training data"):
        session.record_data(tmp_path / "human")
    assert not (tmp_path / "human").exists()
    assert session.record_data(None) is None  # stopping when nothing records is harmless

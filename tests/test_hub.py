"""The app's controller layer without a browser: SessionHub sessions (the Play tab's) and controls, recording, the
checkpoint list, and TrainJob threads, all on a real tiny trained run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import wm_core
from playground.context import AppContext, keymap_markdown
from playground.hub import SessionHub, friendly, list_checkpoints, scan_checkpoints, tick_server_function
from playground.jobs import TrainJob

FRAME_BYTES = 64 * 64 * 3
# The tiny preset's 30 steps leave the done head near 0.5 (the dream's end threshold), so dreams would end
# and restart at random; 150 steps bring it to ~0.05 and keep these tests deterministic in what they see.
TINY_STEPS = 150


def train_tiny(out: Path) -> Path:
    """A tiny `ha` CartPole run (collects its own data); shared with the browser tests."""
    run, report = wm_core.train_run(
        "ha",
        "CartPole-v1",
        preset="tiny",
        overrides={"steps": TINY_STEPS},
        out=out,
        device="cpu",
        command="wm train (test fixture)",
        checkpoint_every=0,
    )
    assert report.step == TINY_STEPS
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: copy it before changing anything."""
    return train_tiny(tmp_path_factory.mktemp("hub") / "ha-cartpole")


@pytest.fixture
def hub(tiny_run: Path) -> SessionHub:
    """A hub where client "c" has started the tiny run."""
    h = SessionHub()
    h.start("c", str(tiny_run))
    return h


def frame_of(b64: str | None) -> np.ndarray:
    """A tick's base64 frame -> (64, 64, 3) uint8."""
    assert b64 is not None
    raw = base64.b64decode(b64)
    assert len(raw) == FRAME_BYTES
    return np.frombuffer(raw, np.uint8).reshape(64, 64, 3)


def test_tick_before_start_says_what_to_do() -> None:
    r = SessionHub().tick("nobody", ["ArrowRight"])
    assert r["ok"] is False and "Start" in r["message"]
    assert SessionHub().control("nobody", "pause") == "Start a checkpoint first."
    assert SessionHub().record("nobody", "unused") == ("Start a checkpoint first.", [])


def test_held_key_advances_and_returns_frames(hub: SessionHub) -> None:
    steps, frames = [], []
    for _ in range(5):
        r = hub.tick("c", ["ArrowRight"])
        assert r["ok"] and r["size"] == 64 and r["real"] is None and not r["panels"][0]["ended"]
        assert r["waiting"] is False
        steps.append(r["step"])
        frames.append(frame_of(r["panels"][0]["frame"]))
    assert steps == [1, 2, 3, 4, 5]
    assert any(not np.array_equal(frames[0], f) for f in frames[1:]), "the dream frame never changed"
    assert frames[-1].std() > 0, "a flat frame: nothing was decoded"


def test_no_key_on_cartpole_waits(hub: SessionHub) -> None:
    before = hub.tick("c", ["ArrowLeft"])
    for _ in range(3):
        r = hub.tick("c", [])
        assert r["step"] == before["step"] and r["waiting"] is True
        assert r["panels"][0]["frame"] == before["panels"][0]["frame"], "the dream moved with no key held"


def test_pause_and_step(hub: SessionHub) -> None:
    start = hub.tick("c", ["ArrowRight"])["step"]
    assert hub.control("c", "pause") == "paused"
    r = hub.tick("c", ["ArrowRight"])
    assert r["paused"] and r["step"] == start and not r["waiting"]
    # Step: exactly one frame per press, even with no key held (CartPole has no idle action).
    assert "stepped" in hub.control("c", "step")
    assert hub.tick("c", [])["step"] == start + 1
    assert hub.tick("c", ["ArrowRight"])["step"] == start + 1, "Step must advance only once"
    assert hub.control("c", "pause") == "playing"
    assert hub.tick("c", ["ArrowRight"])["step"] == start + 2


def test_reset_starts_a_new_context(hub: SessionHub) -> None:
    for _ in range(3):
        hub.tick("c", ["ArrowRight"])
    resets = hub.get("c").session.resets
    assert hub.control("c", "reset") == "new real context"
    r = hub.tick("c", [])
    assert r["step"] == 0 and r["panels"][0]["ret"] == 0.0 and hub.get("c").session.resets == resets + 1


def test_temperature_is_live(hub: SessionHub) -> None:
    assert hub.control("c", "temperature", 0.25) == "temperature 0.25"
    hub.tick("c", ["ArrowLeft"])
    assert hub.get("c").session.temperature == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown control"):
        hub.control("c", "warp")


def test_autopilot_without_an_agent_says_how_to_get_one(hub: SessionHub) -> None:
    assert "wm agent train" in hub.control("c", "autopilot", True)
    r = hub.tick("c", [])
    assert r["driver"] == "you" and hub.get("c").session.agent is None and r["waiting"] is True


def test_lockstep_returns_the_real_frame(hub: SessionHub) -> None:
    assert hub.control("c", "real", True) == "real env beside the dream"
    first = hub.tick("c", [])
    assert first["step"] == 0 and frame_of(first["real"]).std() > 0
    r = first
    for _ in range(3):
        r = hub.tick("c", ["ArrowRight"])
    real = frame_of(r["real"])
    assert not np.array_equal(real, frame_of(first["real"])), "the real env did not move"
    assert r["real_ret"] == pytest.approx(3.0) and not r["real_ended"]  # CartPole pays 1 per step
    assert hub.control("c", "real", False) == "dream only"
    assert hub.tick("c", ["ArrowRight"])["real"] is None


def test_record_writes_gif_and_json(hub: SessionHub, tmp_path: Path) -> None:
    text, paths = hub.record("c", tmp_path)
    assert "recording" in text and paths == []
    assert hub.tick("c", ["ArrowRight"])["recording"] is True
    for _ in range(3):
        hub.tick("c", ["ArrowLeft"])
    text, paths = hub.record("c", tmp_path)
    assert text.startswith("saved")
    gif, log = (Path(p) for p in paths)
    assert gif.suffix == ".gif" and log.suffix == ".json"
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 5 and frames.shape[1:3] == (256, 256)  # start frame + 4 steps, upscaled 4x
    steps = json.loads(log.read_text())["steps"]
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4]
    assert steps[0]["action"] is None and steps[1]["action"] == 1 and steps[2]["action"] == 0
    assert hub.tick("c", [])["recording"] is False


def test_sessions_are_per_client_and_evicted(tiny_run: Path) -> None:
    hub = SessionHub(max_sessions=2)
    for cid in ("a", "b"):
        hub.start(cid, str(tiny_run))
    assert hub.tick("b", [])["step"] == 0
    assert hub.tick("a", ["ArrowRight"])["step"] == 1  # "a" is now the most recently used
    hub.start("c", str(tiny_run))  # a full hub evicts the least recently used: "b"
    assert hub.tick("b", [])["ok"] is False and hub.tick("a", [])["ok"] and hub.tick("c", [])["ok"]


def test_broken_checkpoint_fails_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("data")))
    weights = next(run.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(wm_core.CheckpointError) as info:
        SessionHub().start("c", str(run))
    msg = friendly(info.value)
    assert "corrupt" in msg and "\n" not in msg and "Traceback" not in msg


def test_list_checkpoints_shipped_first_skips_corrupt(tiny_run: Path, tmp_path: Path) -> None:
    shipped, runs = tmp_path / "shipped", tmp_path / "runs"
    copy = lambda dst: shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("data"))  # noqa: E731
    copy(shipped / "ha-cartpole")
    copy(runs / "older")
    copy(runs / "newer")
    now = time.time()
    for name, age in (("older", 100), ("newer", 0)):
        meta = runs / name / "checkpoint.json"
        os.utime(meta, (now - age, now - age))
    (runs / "corrupt").mkdir()
    (runs / "corrupt" / "checkpoint.json").write_text('{"format": "wm-checkpoint/1", "family": ')
    (runs / "empty").mkdir()

    found, skipped = scan_checkpoints(shipped, runs)
    assert found == list_checkpoints(shipped, runs)
    assert [Path(c.path).name for c in found] == ["ha-cartpole", "newer", "older"]
    assert len(skipped) == 1 and skipped[0].startswith("corrupt: ") and "\n" not in skipped[0], skipped
    assert "Not listed (cannot be read):** corrupt: " in AppContext(shipped, runs).unreadable()
    assert AppContext(shipped, tmp_path / "no-runs").unreadable() == ""
    assert [c.shipped for c in found] == [True, False, False]
    assert found[0].label.endswith("(shipped)") and found[1].label.endswith("(trained here)")
    assert found[0].family == "ha" and found[0].env_id == "CartPole-v1" and found[0].step == TINY_STEPS
    assert list_checkpoints(tmp_path / "missing", tmp_path / "missing-too") == []


def test_train_job_rejects_unknown_env_before_a_thread(tmp_path: Path) -> None:
    job = TrainJob("ha", "NoSuchEnv-v0", "tiny", {}, "cpu", tmp_path)
    with pytest.raises(wm_core.EnvError, match="unknown environment 'NoSuchEnv-v0'"):
        job.start()
    assert job.thread is None and not job.alive
    with pytest.raises(ValueError, match="unknown family .nope."):
        TrainJob("nope", "CartPole-v1", "tiny", {}, "cpu", tmp_path).start()


def wait_for(job: TrainJob, timeout: float = 120.0) -> TrainJob:
    """Block until the job's thread ends (or fail after `timeout` seconds)."""
    assert job.thread is not None
    job.thread.join(timeout)
    assert not job.alive, f"training still running after {timeout}s (phase {job.phase})"
    return job


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory: pytest.TempPathFactory) -> TrainJob:
    """One tiny TrainJob run to completion in its thread."""
    return wait_for(TrainJob("ha", "CartPole-v1", "tiny", {}, "cpu", tmp_path_factory.mktemp("jobs")).start())


def test_train_job_tiny_runs_to_done_and_is_listed(finished_job: TrainJob, tmp_path: Path) -> None:
    job = finished_job
    assert job.phase == "done" and job.error is None, job.error
    assert job.step == job.total_steps == wm_core.get_family("ha").preset("tiny").steps
    assert job.collect_target == (6, "episodes")  # the tiny preset collects episodes, not a frame budget
    assert job.collected == 6 and job.history and "loss" in job.history[-1]
    assert job.message.startswith("saved")
    listed = list_checkpoints(tmp_path / "no-shipped", job.runs_dir)
    assert [c.path for c in listed] == [job.run] and not listed[0].shipped
    assert "trained here" in listed[0].label
    assert wm_core.read_meta(job.run)["command"].startswith("wm train --family ha --env CartPole-v1 --preset tiny")


def test_train_job_tiny_has_a_preview(finished_job: TrainJob) -> None:
    assert finished_job.preview is not None


def test_train_job_stop_saves(tmp_path: Path) -> None:
    job = TrainJob("ha", "CartPole-v1", "tiny", {"steps": 100000}, "cpu", tmp_path).start()
    deadline = time.monotonic() + 60
    while job.phase != "training" and job.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    job.stop()
    wait_for(job)
    assert job.phase == "stopped" and 0 < job.step < 100000
    assert wm_core.read_meta(job.run)["step"] == job.step


@pytest.fixture(scope="module")
def pendulum_run(pendulum_store: wm_core.EpisodeStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-step `ha` Pendulum run: a Box(1) action in [-2, 2] whose keymap has no idle action."""
    run, _ = wm_core.train_run(
        "ha", "Pendulum-v1", preset="tiny", overrides={"steps": 2}, data=pendulum_store.root,
        out=tmp_path_factory.mktemp("pend") / "pend", device="cpu", command="wm train (test)", checkpoint_every=0,
    )  # fmt: skip
    return run


def test_step_button_ramps_a_continuous_action_once(pendulum_run: Path) -> None:
    """Step (one frame while paused) on a Box env moves the held key's ramp by one increment, as a played frame
    does: the hub once asked the keys for the action before ticking, and the tick asked again (two ramps)."""
    hub = SessionHub()
    s = hub.start("c", str(pendulum_run))
    assert hub.control("c", "step") == "paused: stepped one frame"
    hub.tick("c", ["ArrowRight"])
    # Pendulum's torque is in [-2, 2]: a held key adds 0.1 of the half range (0.2) per frame.
    np.testing.assert_allclose(s.keys._a, [0.2], atol=1e-6)


def test_no_key_on_a_box_env_moves_the_dream_and_does_not_say_wait(pendulum_run: Path) -> None:
    """A Box env's released keys decay the action toward rest and the dream moves on, so the page must not
    say "Hold a key to drive the dream" (the hub once read a rule that waited whenever no key was held)."""
    hub = SessionHub()
    hub.start("c", str(pendulum_run))
    before, resets = hub.tick("c", []), hub.get("c").session.resets
    for _ in range(3):
        r = hub.tick("c", [])
        assert r["waiting"] is False and before["waiting"] is False, "the page asks for a key while the dream moves"
        # the dream moved on: a step, or (a two-step model's end head is near 0.5) a restart after a dreamed end
        moved = r["step"] == before["step"] + 1 or hub.get("c").session.resets > resets
        assert moved, (before["step"], r["step"])
        before, resets = r, hub.get("c").session.resets
    assert "waits" not in keymap_markdown(wm_core.read_meta(pendulum_run)), "the keys line says it waits"


def test_the_keys_line_says_cartpole_waits(tiny_run: Path) -> None:
    assert "the dream waits while no key is held" in keymap_markdown(wm_core.read_meta(tiny_run))


def test_release_drops_only_that_client(tiny_run: Path) -> None:
    hub = SessionHub()
    hub.start("a", str(tiny_run))
    hub.start("b", str(tiny_run))
    assert hub.tick("a", [])["ok"]
    assert hub.release("a") is True and hub.release("a") is False
    assert hub.tick("a", []) == {"ok": False, "message": "Pick a checkpoint above and press Start."}
    assert hub.tick("b", ["ArrowRight"])["ok"], "another client's session was touched"


def test_a_session_whose_page_went_quiet_is_released(tiny_run: Path) -> None:
    """The browser loop ticks while the player is visible and sends a heartbeat every few seconds while it is
    hidden; a session that hears neither (its page closed) is released at the next request to the hub."""
    hub = SessionHub(idle_seconds=0.5)
    tick = tick_server_function(hub)
    hub.start("gone", str(tiny_run))
    hub.start("hidden", str(tiny_run))
    for _ in range(4):
        time.sleep(0.2)
        assert tick({"client": "hidden", "heartbeat": True}) == {"ok": True, "heartbeat": True}
    assert hub.get("gone") is None, "a quiet session was kept"
    assert hub.tick("hidden", ["ArrowRight"])["ok"], "a session kept alive by heartbeats was dropped"
    assert tick({"client": "gone", "heartbeat": True}) == {"ok": False, "heartbeat": True}


def test_a_room_that_left_is_released_without_anyone_calling(tiny_run: Path) -> None:
    """Everyone closed their page: nobody ticks, yet the sessions (and their real envs) are released on their own."""
    hub = SessionHub(idle_seconds=0.4)
    for c in ("a", "b", "c"):
        hub.start(c, str(tiny_run))
    time.sleep(1.5)  # no call to the hub at all
    with hub.lock:
        assert hub.players == {}, "sessions of closed pages are still held"

"""`wm train` killed with SIGKILL while collecting, while training and while saving: the run directory is left
either resumable by re-running the same command, or the re-run refuses with one line that prints the next
command, and that command finishes the run. Nothing half-written survives the next save.

Kills while collecting and while training come from outside (`kill -9` when the store or the first checkpoint
appears on disk). A save takes milliseconds, too short to hit from outside reliably, so that kill comes from
inside the real `wm` process: SIGKILL the moment before `checkpoint.json` would be replaced, the state a power
cut at that instant leaves."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wm_core

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TRAIN = ["train", "--family", "ha", "--env", "CartPole-v1", "--preset", "tiny", "--quiet", "--threads", "1"]

# Runs `wm` as usual, except that the process SIGKILLs itself instead of replacing checkpoint.json for the
# WM_KILL_AT_SAVE-th time: the weight files and the new checkpoint.json's temp file are on disk, the old
# checkpoint.json (if any) still in place.
KILL_AT_SAVE = """
import os, signal, sys
real, seen = os.replace, [0]
def replace(src, dst):
    if str(dst).endswith("checkpoint.json"):
        seen[0] += 1
        if seen[0] == int(os.environ["WM_KILL_AT_SAVE"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
from wm_core.cli import main
sys.argv = ["wm", *sys.argv[1:]]
sys.exit(main())
"""


def wm(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *(["-c", KILL_AT_SAVE] if extra_env else ["-m", "wm_core.cli"]), *args]
    return subprocess.run(cmd, cwd=cwd, env={**ENV, **(extra_env or {})}, capture_output=True, text=True, timeout=300)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wm_core.cli", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL `proc` as soon as `ready()` holds; fails if it ended first."""
    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "the moment to kill never came"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def stored_episodes(data: Path) -> int:
    try:
        return len(json.loads((data / "index.json").read_text())["episodes"])
    except (OSError, ValueError, KeyError):
        return 0


def leftovers(run: Path) -> list[str]:
    """Temp files and weight files that checkpoint.json does not name."""
    meta = json.loads((run / "checkpoint.json").read_text())
    named = {meta["weights"]["file"], (meta.get("optimizer") or {}).get("file")}
    weights = [p.name for p in run.glob("*.safetensors") if p.name not in named]
    return sorted(weights + [p.name for p in run.glob(".*.tmp")])


def next_command(stderr: str) -> list[str]:
    """The command a one-line refusal prints between backticks, as argv for `wm`."""
    lines = [line for line in stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    found = re.search(r"`(wm [^`]+)`", lines[0])
    assert found, f"no next command in: {lines[0]}"
    return shlex.split(found.group(1))[1:]


def test_killed_while_collecting_the_same_command_reuses_the_data(tmp_path: Path) -> None:
    args = [*TRAIN, "--policy", "random", "--episodes", "300", "--steps", "3", "--out", "run"]
    proc = start(*args, cwd=tmp_path)
    kill_when(proc, lambda: stored_episodes(tmp_path / "run" / "data") >= 5)
    kept = stored_episodes(tmp_path / "run" / "data")
    assert 5 <= kept < 300 and not (tmp_path / "run" / "checkpoint.json").exists()

    again = wm(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"({kept} already here)" in again.stdout + again.stderr  # collection went on, not over
    store = wm_core.EpisodeStore.open(tmp_path / "run" / "data")
    assert len(store) == 300 and len(set(store.seeds)) == len(store.seeds), "episodes repeated after the kill"
    model, meta = wm_core.load_checkpoint(tmp_path / "run")
    assert meta["step"] == 3 and leftovers(tmp_path / "run") == []


def test_killed_while_training_the_rerun_prints_the_resume_command(tmp_path: Path) -> None:
    args = [*TRAIN, "--episodes", "6", "--steps", "400", "--save-every", "10", "--out", "run"]
    run = tmp_path / "run"
    proc = start(*args, cwd=tmp_path)
    kill_when(proc, lambda: (run / "checkpoint.json").exists())
    saved = wm_core.read_meta(run)["step"]
    assert 10 <= saved < 400

    again = wm(*args, cwd=tmp_path)  # a fresh run here would throw away the saved steps: refused
    assert again.returncode == 2
    assert wm_core.read_meta(run)["step"] == saved, "the refused re-run changed the checkpoint"
    follow = next_command(again.stderr)
    assert follow[:2] == ["train", "--resume"]
    done = wm(*follow, "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    model, meta = wm_core.load_checkpoint(run)
    assert meta["step"] == 400 and meta["budget"]["grad_steps"] == 400 and leftovers(run) == []


@pytest.mark.parametrize("save", [1, 2], ids=["first-save", "a-later-save"])
def test_killed_while_saving_nothing_is_lost_and_the_next_save_cleans_up(tmp_path: Path, save: int) -> None:
    args = [*TRAIN, "--episodes", "6", "--steps", "30", "--save-every", "10", "--out", "run"]
    run = tmp_path / "run"
    killed = wm(*args, cwd=tmp_path, extra_env={"WM_KILL_AT_SAVE": str(save)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    temps = list(run.glob(".checkpoint.json.*.tmp"))
    assert len(temps) == 1, "the kill did not land inside the save"

    if save == 1:  # no checkpoint yet: the same command starts over on the data already collected
        assert not (run / "checkpoint.json").exists()
        again = wm(*args, cwd=tmp_path)
        assert again.returncode == 0 and "collecting" not in again.stdout + again.stderr, again.stderr
    else:  # the previous checkpoint is intact, and re-running prints how to continue it
        assert wm_core.load_checkpoint(run)[1]["step"] == 10
        refused = wm(*args, cwd=tmp_path)
        assert refused.returncode == 2
        again = wm(*next_command(refused.stderr), "--quiet", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
    assert wm_core.load_checkpoint(run)[1]["step"] == 30
    assert leftovers(run) == [], "an interrupted save's files outlived the next save"

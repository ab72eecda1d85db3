"""Benchmarks take checkpoint paths relative to where they are run (a newcomer types `checkpoints/X`)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_from_root(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_workshop_load_plays_a_relative_checkpoint() -> None:
    out = run_from_root(
        "benchmarks/workshop_load.py", "--checkpoints", "checkpoints/ha-cartpole",
        "--participants", "1", "--seconds", "1", "--warmup", "0", "--leave-seconds", "0",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "failed to start" not in out.stdout


def test_sessions_bench_loads_a_relative_run() -> None:
    out = run_from_root(
        "benchmarks/sessions.py", "--run", "checkpoints/dreamer-cartpole", "--sessions", "1", "--steps", "1",
        "--rounds", "1",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert str(ROOT / "checkpoints" / "dreamer-cartpole") in out.stdout

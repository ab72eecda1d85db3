"""Past one process: data-parallel training under torchrun (gloo on CPU, two processes) gives one valid checkpoint,
the two ranks hold the same weights after every step, and the run resumes in a single process; `wm agent train`
refuses torchrun; the GPU script refuses in one line where there is no GPU, and its dry run on the CPU passes."""

from __future__ import annotations

import os
import resource
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wm_core

TRAIN = ["train", "--family", "ha", "--env", "CartPole-v1", "--preset", "tiny", "--quiet", "--threads", "1"]


def test_two_ranks_train_one_model(tmp_path: Path) -> None:
    sums = tmp_path / "checksums"
    sums.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WM_DDP_CHECKSUMS": str(sums)}
    launch = ["--standalone", "--nproc_per_node=2", "-m", "wm_core.cli", *TRAIN, "--steps", "12", "--out", "run"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", *launch], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    launcher_and_ranks = sum(getattr(after, f) - getattr(children, f) for f in ("ru_utime", "ru_stime"))
    assert proc.stdout.count("done: run step 12") == 1, "rank 0 alone reports the run"

    ranks = [(sums / f"rank-{r}.txt").read_text().split("\n") for r in (0, 1)]
    assert len([line for line in ranks[0] if line]) == 12
    assert ranks[0] == ranks[1], "the ranks' weights parted after some step"
    first, last = float(ranks[0][0].split()[1]), float(ranks[0][11].split()[1])
    assert first != last, "the weights did not move"

    model, meta = wm_core.load_checkpoint(tmp_path / "run")
    assert meta["step"] == 12 and meta["budget"]["grad_steps"] == 12
    # The run records how it ran: the launch that re-runs it, two processes, and both ranks' CPU-seconds (rank 0's
    # alone were about 40% of what the launcher and the two ranks spent, the sum about 75%: the launcher waits).
    assert meta["command"] == shlex.join(["torchrun", *launch]) and meta["budget"]["world_size"] == 2
    assert 0.55 * launcher_and_ranks < meta["budget"]["cpu_seconds"] <= launcher_and_ranks, launcher_and_ranks
    assert sorted(p.name for p in (tmp_path / "run").glob("*.safetensors")) == sorted(
        [meta["weights"]["file"], meta["optimizer"]["file"]]
    ), "more than one rank wrote weights"

    single = subprocess.run([sys.executable, "-m", "wm_core.cli", "train", "--resume", "run", "--steps", "16",
                             "--quiet", "--threads", "1"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    resumed = wm_core.read_meta(tmp_path / "run")
    assert resumed["step"] == 16 and resumed["budget"]["world_size"] == 1
    assert resumed["budget"]["cpu_seconds"] > meta["budget"]["cpu_seconds"]  # the run's CPU so far, both sessions'
    assert resumed["command"].startswith("wm train --resume run")


def test_agent_train_refuses_torchrun(tmp_path: Path) -> None:
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}  # what torchrun sets
    proc = subprocess.run([sys.executable, "-m", "wm_core.cli", "agent", "train", "run", "--env", "CartPole-v1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "torchrun is for wm train" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_bench_refuses_without_a_gpu() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_bench.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "no CUDA GPU" in proc.stderr


def test_gpu_bench_runs_dry_on_the_cpu() -> None:
    """The script a GPU machine runs, run here on the CPU and small: the table row and every device path say ok."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_bench.py"
    args = ["--device", "cpu", "--family", "ha", "--preset", "small", "--checkpoint", "ha-cartpole", "--steps", "2",
            "--seconds", "1", "--agent-minutes", "0.05"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ha | small |")]
    assert len(rows) == 1 and rows[0].count("|") == 10
    for path in ("ha-cartpole: dream on cpu ok", "wm agent train --device cpu ok", "wm agent eval --device cpu ok"):
        assert path in proc.stdout, path
    assert "FAILED" not in proc.stdout

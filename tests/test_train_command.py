"""The command a Train-tab run records (and Play shows as "Made by") is the shell command that makes the same run:
`shlex.split` of it gives back the arguments, even with a space or a quote in a path."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import wm_core
from playground.jobs import TrainJob
from wm_core.cli import build_parser


def test_the_recorded_command_round_trips_through_the_shell(cartpole_store: wm_core.EpisodeStore, tmp_path: Path):
    data = tmp_path / "it's my data" / "cart pole"
    shutil.copytree(cartpole_store.root, data)
    job = TrainJob("ha", "CartPole-v1", "tiny", {"steps": 2, "lr": 0.002}, "cpu", tmp_path / 'runs "here"',
                   data=str(data))  # fmt: skip
    job.start()
    job.thread.join(timeout=600)
    assert job.phase == "done", job.error
    recorded = wm_core.read_meta(job.run)["command"]
    argv = shlex.split(recorded)
    assert argv == job.argv and argv[:2] == ["wm", "train"], recorded
    args = build_parser("ha").parse_args(argv[1:])  # what `wm train` would run
    want = ("ha", "CartPole-v1", "tiny", str(data), job.run)
    assert (args.family, args.env, args.preset, args.data, args.out) == want
    assert (args.cfg_steps, args.cfg_lr, args.device) == (2, 0.002, "cpu")

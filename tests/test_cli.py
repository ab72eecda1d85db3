"""End to end: every `wm` command in a real subprocess, and every bad argument ends in one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from wm_core.data import EpisodeStore
from wm_core.registry import BUILT_IN, FAMILIES

# One torch thread per subprocess: the test machine has 2 shared cores (see conftest.py).
ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "OMP_NUM_THREADS": "1"}
TRAIN_TINY = ("train", "--family", "ha", "--env", "CartPole-v1", "--preset", "tiny")


def wm(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run `wm ARGS` as `python -m wm_core.cli` in `cwd`."""
    cmd = [sys.executable, "-m", "wm_core.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding D (`wm collect`, 3 episodes) and R (`wm train --data D`, 5 steps)."""
    cwd = tmp_path_factory.mktemp("cli")
    ok(wm("collect", "--env", "CartPole-v1", "--episodes", "3", "--out", "D", cwd=cwd))
    ok(wm(*TRAIN_TINY, "--steps", "5", "--data", "D", "--out", "R", "--quiet", cwd=cwd))
    return cwd


# ---- help --------------------------------------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = ok(wm("--help", cwd=tmp_path))
    for command in ("envs", "collect", "train", "eval", "dream"):
        assert command in out


def _option_help(help_text: str, flag: str) -> str:
    """The help of one option: from `flag` up to the next option in the (whitespace-flattened) text."""
    m = re.search(rf"(?:^| ){re.escape(flag)} [A-Z]+ (.*?)(?= --[a-z]|$)", help_text)
    assert m, f"{flag} is not in the help"
    return m.group(1)


@pytest.mark.parametrize("family", sorted(BUILT_IN))  # `wm` runs in a subprocess: the package's own
def test_train_help_shows_every_config_field(family: str, tmp_path: Path) -> None:
    from wm_core.protocol import field_doc

    text = _flat(ok(wm("train", "--family", family, "--help", cwd=tmp_path)))
    cls = FAMILIES[family]
    for f in fields(cls.Config):
        doc = field_doc(cls.Config, f.name)
        assert doc, f"{family}: config field {f.name} has no docstring"
        assert doc in _option_help(text, "--" + f.name.replace("_", "-"))
    if family == "ha":
        assert "--z-dim" in text


def test_agent_train_help_shows_every_agent_field(tmp_path: Path) -> None:
    from wm_core.agents.agent import AgentConfig
    from wm_core.protocol import field_doc

    text = _flat(ok(wm("agent", "train", "--help", cwd=tmp_path)))  # docstrings hold a literal "%"
    for f in fields(AgentConfig):
        assert field_doc(AgentConfig, f.name) in _option_help(text, "--" + f.name.replace("_", "-"))


@pytest.mark.parametrize("family", sorted(BUILT_IN))  # `wm` runs in a subprocess: the package's own
def test_train_help_states_the_small_preset_values(family: str, tmp_path: Path) -> None:
    """Each flag says "(preset default; small: X)": X must be what `--preset small` really uses."""
    text = _flat(ok(wm("train", "--family", family, "--help", cwd=tmp_path)))
    small = FAMILIES[family].preset("small")
    wrong = {}
    for f in fields(small):
        shown = re.search(r"small: ([^)\s]+)\)", _option_help(text, "--" + f.name.replace("_", "-")))
        if shown is None or shown.group(1) != str(getattr(small, f.name)):
            wrong[f.name] = (shown and shown.group(1), getattr(small, f.name))
    assert not wrong, f"help shows (value, but small preset uses): {wrong}"


# ---- the commands --------------------------------------------------------------------------------------


def test_envs_lists_the_catalog(tmp_path: Path) -> None:
    out = ok(wm("envs", cwd=tmp_path))
    assert "CartPole-v1" in out and "ALE/Pong-v5" in out and "keys:" in out


def test_collect_writes_a_store(work: Path) -> None:
    index = json.loads((work / "D" / "index.json").read_text())
    assert index["env_id"] == "CartPole-v1" and len(index["episodes"]) == 3
    assert len(EpisodeStore.open(work / "D")) == 3


def test_train_with_data_writes_a_checkpoint(work: Path) -> None:
    meta = json.loads((work / "R" / "checkpoint.json").read_text())
    assert meta["family"] == "ha" and meta["env_id"] == "CartPole-v1" and meta["step"] == 5
    assert "wm train" in meta["command"] and "--data D" in meta["command"]
    assert meta["data"]["dir"] == str((work / "D").resolve()) and meta["data"]["episodes"] == 3
    assert not (work / "R" / "data").exists()  # the given store was used, nothing collected


def test_train_collects_when_no_data_is_given(tmp_path: Path) -> None:
    out = ok(wm(*TRAIN_TINY, "--steps", "5", "--out", "R", "--quiet", cwd=tmp_path))
    meta = json.loads((tmp_path / "R" / "checkpoint.json").read_text())
    assert meta["step"] == 5 and "wm train" in meta["command"]
    store = EpisodeStore.open(tmp_path / "R" / "data")
    assert len(store) == FAMILIES["ha"].preset("tiny").episodes
    assert "step 5" in out


def test_train_config_flags_reach_the_checkpoint(work: Path, tmp_path: Path) -> None:
    ok(
        wm(
            *TRAIN_TINY,
            "--steps",
            "2",
            "--z-dim",
            "6",
            "--data",
            work / "D",
            "--out",
            "Rz",
            "--quiet",
            cwd=tmp_path,
        )
    )
    meta = json.loads((tmp_path / "Rz" / "checkpoint.json").read_text())
    assert meta["config"]["z_dim"] == 6 and meta["config"]["steps"] == 2
    assert meta["config"]["hidden"] == FAMILIES["ha"].preset("tiny").hidden  # the rest from the preset


def test_train_accepts_family_equals_form(work: Path, tmp_path: Path) -> None:
    """`--family=ha` is ordinary argparse syntax; it must unlock the family's config flags too."""
    args = (
        "train",
        "--family=ha",
        "--env",
        "CartPole-v1",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--z-dim",
        "6",
    )
    ok(wm(*args, "--data", work / "D", "--out", "Rz", "--quiet", cwd=tmp_path))
    assert json.loads((tmp_path / "Rz" / "checkpoint.json").read_text())["config"]["z_dim"] == 6


def test_train_resume_without_family(work: Path, tmp_path: Path) -> None:
    """A run knows its family: `wm train --resume RUN --steps N` continues it (help: 'or --resume RUN')."""
    run = Path(shutil.copytree(work / "R", tmp_path / "R"))
    ok(wm("train", "--resume", run, "--steps", "7", "--quiet", cwd=tmp_path))
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["step"] == 7 and "--resume" in meta["command"]


def test_train_resume_with_family(work: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(work / "R", tmp_path / "R"))
    ok(wm("train", "--family", "ha", "--resume", run, "--steps", "7", "--quiet", cwd=tmp_path))
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["step"] == 7 and "--resume" in meta["command"] and meta["budget"]["grad_steps"] == 7


def test_train_resume_refuses_config_it_would_ignore(work: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(work / "R", tmp_path / "R"))
    before = (run / "checkpoint.json").read_text()
    proc = wm("train", "--resume", run, "--steps", "7", "--lr", "0.5", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--lr" in proc.stderr and "--resume" in proc.stderr and "new run" in proc.stderr
    assert (run / "checkpoint.json").read_text() == before  # the run is untouched


def test_eval_prints_the_model_card(work: Path) -> None:
    out = ok(wm("eval", "R", "--episodes", "4", cwd=work))
    assert "copy-last" in out and "mean-frame" in out and "fg-MSE" in out
    assert "held-out: 4 episodes" in out and "ha on CartPole-v1 at step 5" in out
    assert re.search(r"^\s+1\s+4 \|", out, re.M), "no k=1 row over the 4 held-out episodes"


def test_eval_json(work: Path) -> None:
    card = json.loads(ok(wm("eval", "R", "--episodes", "4", "--json", "--device", "cpu", cwd=work)))
    assert card["family"] == "ha" and card["env_id"] == "CartPole-v1" and card["step"] == 5
    assert card["heldout"]["episodes"] == 4 and card["heldout"]["split"] == "heldout"
    rows = card["open_loop"]
    assert [r["k"] for r in rows] == [1, 5, 15, 50]
    assert rows[0]["episodes"] == 4
    for row in rows:
        if row["episodes"]:
            for who in ("model", "copy_last", "mean_frame"):
                assert all(isinstance(row[who][m], float) for m in ("mse", "psnr", "fg_mse"))
    # Copying the last real frame is near-perfect one step ahead in CartPole; a 5-step model is not.
    assert rows[0]["copy_last"]["mse"] < rows[0]["mean_frame"]["mse"]


def test_eval_with_a_train_store_reports_its_seeds(work: Path) -> None:
    """`--data` replaces the held-out set; the card must then describe that data, not the default seeds."""
    card = json.loads(ok(wm("eval", "R", "--data", "D", "--json", cwd=work)))
    store = EpisodeStore.open(work / "D")
    assert card["heldout"]["split"] == store.split == "train"
    assert card["heldout"]["content_hash"] == store.content_hash
    assert card["heldout"]["seed"] in store.seeds, (
        f"card says seeds from {card['heldout']['seed']}, the data's seeds are {store.seeds}"
    )


def _gif(path: Path) -> np.ndarray:
    frames = iio.imread(path, index=None)
    return frames[..., :3]


def test_dream_writes_a_gif(work: Path) -> None:
    out = ok(wm("dream", "R", "--steps", "12", "--out", "x.gif", cwd=work))
    resets = int(re.search(r"(\d+) dream resets", out).group(1))
    frames = _gif(work / "x.gif")
    # the reset frame, 12 steps, and one first frame per dream reset; upscaled 4x
    assert frames.shape == (13 + resets, 256, 256, 3) and frames.dtype == np.uint8
    assert len({f.tobytes() for f in frames}) > 1, "every frame of the dream is the same"
    log = json.loads((work / "x.json").read_text())
    assert len(log["steps"]) == len(frames) and log["family"] == "ha"


def test_dream_with_scripted_keys(work: Path) -> None:
    out = ok(wm("dream", "R", "--steps", "12", "--out", "keys.gif", "--actions", "keys", "--device", "cpu", cwd=work))
    assert "wrote keys.gif" in out
    log = json.loads((work / "keys.json").read_text())
    actions = [s["action"] for s in log["steps"] if s["action"] is not None]
    assert len(actions) == 12 and set(actions) <= {0, 1}
    assert len(_gif(work / "keys.gif")) == len(log["steps"])


# ---- bad arguments: exit 2 and exactly one line on stderr naming the problem -------------------------

TRAIN = (*TRAIN_TINY, "--quiet", "--out", "Rbad")
COLLECT = ("collect", "--env", "CartPole-v1", "--out", "Dbad")
BAD = {
    "unknown-family": (("train", "--family", "nope", "--env", "CartPole-v1"), ["--family", "nope"]),
    "train-unknown-env": (
        ("train", "--family", "ha", "--env", "Nope-v0", "--preset", "tiny", "--out", "Rbad"),
        ["unknown environment", "Nope-v0"],
    ),
    "collect-unknown-env": (
        ("collect", "--env", "Nope-v0", "--episodes", "1", "--out", "Dbad"),
        ["unknown environment", "Nope-v0"],
    ),
    "negative-steps": ((*TRAIN, "--steps", "-5"), ["--steps", "-5", ">= 1"]),
    "flag-not-a-boolean": ((*TRAIN, "--blind-actions", "maybe"), ["--blind-actions", "maybe", "true or false"]),
    "steps-not-a-number": ((*TRAIN, "--steps", "abc"), ["--steps", "abc"]),
    "zero-episodes": ((*COLLECT, "--episodes", "0"), ["--episodes", "0"]),
    "missing-data-dir": ((*TRAIN, "--data", "/nonexistent"), ["/nonexistent", "no episode store"]),
    "train-without-env": (("train", "--family", "ha", "--preset", "tiny"), ["--env"]),
    "eval-missing-run": (("eval", "no-such-run"), ["no-such-run", "does not exist"]),
    "eval-corrupt-run": (("eval", "corrupt"), ["corrupt", "not valid JSON"]),
    "dream-bad-suffix": (("dream", "corrupt", "--out", "x.txt"), ["--out", "x.txt", ".gif"]),
    "dream-zero-steps": (("dream", "corrupt", "--steps", "0", "--out", "x.gif"), ["--steps", "0"]),
    "eval-negative-temperature": (("eval", "corrupt", "--temperature", "-1"), ["--temperature", "-1"]),
    "cuda-without-gpu": ((*TRAIN, "--device", "cuda"), ["cuda", "no CUDA"]),
    "eval-cuda-without-gpu": (("eval", "corrupt", "--device", "cuda"), ["cuda", "no CUDA"]),
    "dream-cuda-without-gpu": (("dream", "corrupt", "--device", "cuda", "--out", "x.gif"), ["cuda", "no CUDA"]),
    "agent-train-cuda-without-gpu": (
        ("agent", "train", "new", "--env", "CartPole-v1", "--device", "cuda"),
        ["cuda", "no CUDA"],
    ),  # fmt: skip
    "agent-eval-cuda-without-gpu": (("agent", "eval", "corrupt", "--device", "cuda"), ["cuda", "no CUDA"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_argument_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    args, words = BAD[name]
    if name.endswith("cuda-without-gpu") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.json").write_text('{"format": "wm-checkpoint/1", "family": ')
    proc = wm(*args, cwd=tmp_path)
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"stderr is not one line:\n{proc.stderr}"
    for word in words:
        assert word in lines[0], f"{word!r} not named in: {lines[0]}"
    assert "Traceback" not in proc.stdout + proc.stderr
    # A refused command leaves nothing behind.
    assert not any((tmp_path / name).exists() for name in ("Rbad", "Dbad", "x.txt", "x.gif"))


def test_import_and_help_stay_light() -> None:
    """`import wm_core` loads its names on first use, so it pulls in neither matplotlib nor gradio (nor torch);
    `wm --help` answers without importing torch either."""
    code = (
        "import sys, contextlib, io\n"
        "import wm_core\n"
        "light = [m for m in ('matplotlib', 'gradio', 'torch') if m in sys.modules]\n"
        "from wm_core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(light, 'torch' in sys.modules, wm_core.EpisodeStore.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False", "EpisodeStore"], out

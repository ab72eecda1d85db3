"""A corpus of mutated checkpoints made from one tiny real run: truncated and flipped weight files (with the
hash in the JSON left alone or brought up to date), safetensors header edits, NaN, infinite and finite-but-wrong
weights (they must pass one probe dream step), every kind of JSON field edit (wrong types, out-of-range numbers,
unknown fields, missing fields, unbounded pipeline fields), weight paths that leave the run or are links, missing
and extra files, a checkpoint.json that is no file. Each must be refused with a one-line `CheckpointError`, or,
where the mutation is harmless, load and dream finite frames. A sample goes through `wm eval`, and a relabelled
env through every command that takes a checkpoint: one line on stderr, exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model

from wm_core.checkpoint import META_FILE, load_checkpoint, read_record, save_checkpoint
from wm_core.dream import Dream
from wm_core.errors import CheckpointError
from wm_core.files import read_json_file
from wm_core.registry import BUILT_IN

Mutation = Callable[[Path], None]


def meta_of(run: Path) -> dict:
    return json.loads((run / META_FILE).read_text())


def write_meta(run: Path, meta: dict) -> None:
    (run / META_FILE).write_text(json.dumps(meta))


def weights_of(run: Path) -> Path:
    return run / meta_of(run)["weights"]["file"]


def rehash(run: Path) -> None:
    """Bring the JSON's hash up to date with the (mutated) weight file, so the loader reads the bytes."""
    meta = meta_of(run)
    meta["weights"]["sha256"] = hashlib.sha256(weights_of(run).read_bytes()).hexdigest()
    write_meta(run, meta)


def edit(path: tuple, value: object, delete: bool = False) -> Mutation:
    def mutate(run: Path) -> None:
        meta = meta_of(run)
        node = meta
        for key in path[:-1]:
            node = node[key]
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
        write_meta(run, meta)

    return mutate


def truncate(n: int, fix_hash: bool) -> Mutation:
    def mutate(run: Path) -> None:
        w = weights_of(run)
        w.write_bytes(w.read_bytes()[:n])
        if fix_hash:
            rehash(run)

    return mutate


def flip(frac: float, fix_hash: bool) -> Mutation:
    def mutate(run: Path) -> None:
        w = weights_of(run)
        data = bytearray(w.read_bytes())
        i = min(len(data) - 1, int(frac * len(data)))
        data[i] ^= 0xFF
        w.write_bytes(bytes(data))
        if fix_hash:
            rehash(run)

    return mutate


def header_length(value: int) -> Mutation:
    def mutate(run: Path) -> None:
        w = weights_of(run)
        data = w.read_bytes()
        w.write_bytes(struct.pack("<Q", value) + data[8:])
        rehash(run)

    return mutate


def header_text(old: bytes, new: bytes) -> Mutation:
    """Replace text inside the safetensors JSON header (same length keeps offsets)."""

    def mutate(run: Path) -> None:
        w = weights_of(run)
        data = w.read_bytes()
        n = struct.unpack("<Q", data[:8])[0]
        head = data[8 : 8 + n].replace(old, new, 1)
        w.write_bytes(struct.pack("<Q", len(head)) + head + data[8 + n :])
        rehash(run)

    return mutate


def poison(value: float) -> Mutation:
    def mutate(run: Path) -> None:
        from safetensors.torch import load_file, save_file

        w = weights_of(run)
        tensors = load_file(str(w))
        name = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = value
        save_file(tensors, str(w))
        rehash(run)

    return mutate


def scale(factor: float) -> Mutation:
    """Every floating-point weight times `factor` (finite, so the file passes the finite-weights check)."""

    def mutate(run: Path) -> None:
        from safetensors.torch import load_file, save_file

        w = weights_of(run)
        save_file({k: t * factor if t.is_floating_point() else t for k, t in load_file(str(w)).items()}, str(w))
        rehash(run)

    return mutate


def flip_exponents(frac: float, count: int = 64) -> Mutation:
    """Flip an exponent bit of `count` float32 weights from `frac` into the data (finite, x or / 2^128); rehash."""

    def mutate(run: Path) -> None:
        w = weights_of(run)
        data = bytearray(w.read_bytes())
        start = 8 + struct.unpack("<Q", data[:8])[0]
        first = start + 4 * int(frac * (len(data) - start) / 4)
        for i in range(first + 3, min(len(data), first + 4 * count), 4):
            data[i] ^= 0x40
        w.write_bytes(bytes(data))
        rehash(run)

    return mutate


def meta_not_a_file(kind: str) -> Mutation:
    def mutate(run: Path) -> None:
        (run / META_FILE).unlink()
        os.mkfifo(run / META_FILE) if kind == "fifo" else (run / META_FILE).mkdir()

    return mutate


def outside_link(run: Path) -> None:
    outside = run.parent / "elsewhere.safetensors"
    shutil.copy(weights_of(run), outside)
    w = weights_of(run)
    w.unlink()
    w.symlink_to(outside)


def outside_path(name: str) -> Mutation:
    def mutate(run: Path) -> None:
        shutil.copy(weights_of(run), run.parent / "elsewhere.safetensors")
        edit(("weights", "file"), name)(run)

    return mutate


def extra_file(run: Path) -> None:
    (run / "notes.txt").write_text("a file the checkpoint does not name")


def fuzz_finds() -> dict[str, tuple[Mutation, bool]]:
    """What a fuzz run found: pipeline fields without bounds (a frame size of 1e6 asked for 2.7 TiB), weights that
    load but dream NaN (scaled by 1e30; exponent bits flipped and rehashed), checkpoint.json as a directory."""
    finds: dict[str, tuple[Mutation, bool]] = {"meta-directory": (meta_not_a_file("directory"), False)}
    for name, value in (("size", 10**6), ("size", 32), ("thicken", 10**6), ("action_repeat", 0),
                        ("action_repeat", 10**6), ("reset_noops", 10**6), ("max_last_two", 1)):  # fmt: skip
        finds[f"pipeline-{name}-{value}"] = (edit(("pipeline", name), value), False)
    bad_kwargs = {"nested": {"a": {"b": 1}}, "list": {"a": [1]}, "huge": {"max_episode_steps": 10**12},
                  "nan": {"a": float("nan")}, "long": {"a": "x" * 1000}, "key": {"not a name": 1},
                  "render_mode": {"render_mode": "human"}, "many": {f"k{i}": i for i in range(100)}}  # fmt: skip
    for label, kwargs in bad_kwargs.items():
        finds[f"pipeline-env_kwargs-value-{label}"] = (edit(("pipeline", "env_kwargs"), kwargs), False)
    finds["pipeline-env_kwargs-plain"] = (edit(("pipeline", "env_kwargs"), {"max_episode_steps": 500}), True)
    finds["weights-scaled-1e30"] = (scale(1e30), False)
    finds["weights-exponents-flipped-rehashed"] = (flip_exponents(0.5), False)
    return finds


def build_corpus(meta: dict) -> dict[str, tuple[Mutation, bool]]:
    """name -> (mutation, benign): a benign mutation must load and dream; every other must be refused."""
    corpus: dict[str, tuple[Mutation, bool]] = {}
    for n in (0, 1, 7, 8, 9, 16, 64, 200, 1000, 5000, 20000):
        corpus[f"truncate-{n}"] = (truncate(n, False), False)
        corpus[f"truncate-{n}-rehashed"] = (truncate(n, True), False)
    for frac in (0.0, 0.001, 0.003, 0.01, 0.02, 0.5, 0.99):
        corpus[f"flip-{frac}"] = (flip(frac, False), False)
    for frac in (0.0, 0.002, 0.004, 0.006):  # inside the length or the header: the bytes cannot be read
        corpus[f"flip-{frac}-rehashed"] = (flip(frac, True), False)
    for value in (0, 1, 2**40, 2**63):
        corpus[f"header-length-{value}"] = (header_length(value), False)
    corpus["header-dtype"] = (header_text(b'"F32"', b'"I64"'), False)
    corpus["header-shape"] = (header_text(b'"shape":[', b'"shape":[9,'), False)
    corpus["header-offsets"] = (header_text(b'"data_offsets":[0,', b'"data_offsets":[9,'), False)
    for value in (float("nan"), float("inf"), float("-inf")):
        corpus[f"weights-{value}"] = (poison(value), False)
    corpus["weights-1e3"] = (poison(1e3), True)  # a large but finite weight: loads, and its dream must be finite
    # the JSON: every required field missing, and wrong values of every kind
    for key in ("format", "family", "config", "env_id", "pipeline", "action_spec", "frame_size", "step", "weights"):
        corpus[f"missing-{key}"] = (edit((key,), None, delete=True), False)
    bad_values = {"str": "x", "list": [1], "dict": {"a": 1}, "null": None, "neg": -3, "huge": 10**12, "float": 0.5,
                  "bool": True, "nan": float("nan")}  # fmt: skip
    for key in ("format", "family", "env_id", "frame_size", "step"):
        for label, value in bad_values.items():
            # an unknown env id is a name: the model loads, and a real env is refused when one is made (EnvError)
            corpus[f"{key}-{label}"] = (edit((key,), value), key == "env_id" and label == "str")
    for name, default in meta["config"].items():
        for label, value in bad_values.items():
            if isinstance(default, bool) and label == "bool":
                continue
            if isinstance(default, float) and label in ("float", "neg"):
                continue  # other finite numbers are legal for a float field
            corpus[f"config-{name}-{label}"] = (edit(("config", name), value), False)
    corpus["config-unknown-field"] = (edit(("config", "surprise"), 1), False)
    corpus["config-not-object"] = (edit(("config",), [1, 2]), False)
    for name in meta["pipeline"]:
        for label in ("str", "list", "neg", "huge"):
            corpus[f"pipeline-{name}-{label}"] = (edit(("pipeline", name), bad_values[label]), False)
    corpus["pipeline-unknown-field"] = (edit(("pipeline", "surprise"), 1), False)
    corpus["pipeline-crop-empty"] = (edit(("pipeline", "crop"), [10, 10, 0, 5]), False)
    for label, value in (("kind", "weird"), ("n-0", 0), ("n-huge", 10**6), ("n-str", "2"), ("low-str", "x")):
        key = "kind" if label == "kind" else label.split("-")[0]
        corpus[f"action-spec-{label}"] = (edit(("action_spec", key), value), False)
    corpus["action-spec-n-3"] = (edit(("action_spec", "n"), 3), False)  # fits no weights of a 2-action model
    # weight files
    corpus["weights-missing-file"] = (lambda run: weights_of(run).unlink(), False)
    corpus["weights-no-hash"] = (edit(("weights", "sha256"), None, delete=True), False)
    corpus["weights-bad-hash"] = (edit(("weights", "sha256"), "0" * 64), False)
    corpus["weights-hash-not-hex"] = (edit(("weights", "sha256"), "z" * 64), False)
    corpus["weights-file-not-str"] = (edit(("weights", "file"), 5), False)
    for name in ("../elsewhere.safetensors", "/etc/hostname", "sub/model.safetensors", "", ".", ".."):
        corpus[f"weights-path-{name!r}"] = (outside_path(name), False)
    corpus["weights-symlink-outside"] = (outside_link, False)
    corpus["meta-not-json"] = (lambda run: (run / META_FILE).write_text("{not json"), False)
    corpus["meta-array"] = (lambda run: (run / META_FILE).write_text("[1, 2]"), False)
    corpus["meta-empty"] = (lambda run: (run / META_FILE).write_bytes(b""), False)
    corpus["meta-binary"] = (lambda run: (run / META_FILE).write_bytes(b"\xff\xfe\x00"), False)
    corpus["meta-missing"] = (lambda run: (run / META_FILE).unlink(), False)
    corpus.update(fuzz_finds())
    # benign edits
    corpus["extra-file"] = (extra_file, True)
    corpus["command-edited"] = (edit(("command",), "anything at all"), True)
    corpus["metrics-dropped"] = (edit(("metrics",), None, delete=True), True)
    corpus["unknown-top-level-key"] = (edit(("note",), "kept for humans"), True)
    return corpus


@pytest.fixture(scope="module")
def base(trained_run: Path) -> Path:
    return trained_run


@pytest.fixture(scope="module")
def corpus(base: Path) -> dict[str, tuple[Mutation, bool]]:
    return build_corpus(meta_of(base))


def mutated(base: Path, tmp: Path, mutation: Mutation) -> Path:
    run = tmp / "run"
    shutil.copytree(base, run, ignore=shutil.ignore_patterns("data"))
    mutation(run)
    return run


def test_every_mutation_is_refused_in_one_line_or_loads_finite(base: Path, corpus: dict, tmp_path: Path) -> None:
    assert len(corpus) >= 200, len(corpus)
    ep_frames = np.zeros((5, 64, 64, 3), np.uint8)
    outcomes = {}
    for i, (name, (mutation, benign)) in enumerate(corpus.items()):
        run = mutated(base, tmp_path / f"m{i}", mutation)
        try:
            model, _ = load_checkpoint(run)
        except CheckpointError as e:
            msg = str(e)
            assert msg and "\n" not in msg, f"{name}: not one line: {msg!r}"
            assert not benign, f"{name}: a harmless mutation was refused: {msg}"
            outcomes[name] = "refused"
            continue
        assert benign, f"{name}: loaded, but it should have been refused"
        dream = Dream(model, temperature=1.0, seed=0)
        frames = [dream.reset(ep_frames)] + [dream.step(0)[0] for _ in range(3)]
        rewards = [dream.step(1)[1] for _ in range(2)]
        assert all(f.dtype == np.uint8 for f in frames) and np.isfinite(rewards).all(), name
        outcomes[name] = "loaded"
    assert sum(v == "refused" for v in outcomes.values()) >= 190


def test_no_file_outside_the_run_is_read(base: Path, tmp_path: Path, corpus: dict) -> None:
    """A path out of the run, or a link out of it, is refused before the file is opened: an outside file with a
    matching hash would otherwise load."""
    for name in ("weights-path-'../elsewhere.safetensors'", "weights-symlink-outside"):
        run = mutated(base, tmp_path / name.replace("'", ""), corpus[name][0])
        with pytest.raises(CheckpointError, match="not a file name inside|symbolic link"):
            load_checkpoint(run)


def test_a_config_too_big_to_allocate_is_refused_before_allocating(base: Path, tmp_path: Path) -> None:
    run = mutated(base, tmp_path, edit(("config", "hidden"), 200_000))
    with pytest.raises(CheckpointError, match="parameters \\(cap"):
        load_checkpoint(run)


def test_every_family_refuses_a_huge_frame_and_weights_that_dream_non_finite(cartpole_store, tmp_path: Path) -> None:
    """The pipeline bounds and the probe dream step go through the protocol, never a family's name."""
    for family in BUILT_IN:  # a test's own family (tests/shift_family.py: zero weights) may dream any weights
        run = tmp_path / family
        save_checkpoint(run, make_model(family, cartpole_store), env_id="CartPole-v1", pipeline=cartpole_store.pipeline,
                        step=0)  # fmt: skip
        load_checkpoint(run)  # a sound model passes the probe
        edit(("pipeline", "size"), 10**6)(run)
        with pytest.raises(CheckpointError, match="pipeline size"):
            load_checkpoint(run)
        edit(("pipeline", "size"), cartpole_store.pipeline.size)(run)
        scale(1e30)(run)
        with pytest.raises(CheckpointError, match="probe"):
            load_checkpoint(run)


def test_json_records_that_are_not_files_are_refused_in_one_line(tmp_path: Path) -> None:
    """A directory or a FIFO where a checkpoint's, an agent's or any JSON record should be: one line, no hang."""
    (tmp_path / "directory.json").mkdir()
    os.mkfifo(tmp_path / "fifo.json")
    for name in ("directory.json", "fifo.json"):
        with pytest.raises(ValueError, match="not a regular file"):
            read_json_file(tmp_path / name)
        with pytest.raises(CheckpointError, match="the agent is corrupt") as e:
            read_record(tmp_path / name, "agent", "no agent")
        assert "\n" not in str(e.value)


SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"
PONG = edit(("env_id",), "ALE/Pong-v5")  # a model of CartPole's 2 actions relabelled as a 6-action game
CLI_ONLY = {"meta-fifo": meta_not_a_file("fifo"), "env-relabelled-pong": PONG}  # would hang, or load


def wm(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "wm_core.cli", *args], capture_output=True, text=True, env=env,
                          timeout=180)  # fmt: skip


def assert_refused(proc: subprocess.CompletedProcess) -> None:  # exit 2, one line on stderr (as a bad argument)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("name", ["truncate-64-rehashed", "config-hidden-str", "weights-nan", "weights-symlink-outside",
                                  "meta-not-json", "action-spec-kind", "pipeline-size-1000000", "weights-scaled-1e30",
                                  "weights-exponents-flipped-rehashed", "meta-directory", *CLI_ONLY])  # fmt: skip
def test_wm_eval_refuses_in_one_line(base: Path, corpus: dict, tmp_path: Path, name: str) -> None:
    mutation = CLI_ONLY[name] if name in CLI_ONLY else corpus[name][0]
    assert_refused(wm("eval", str(mutated(base, tmp_path, mutation)), "--episodes", "2", "--no-report"))


# Every command that takes a checkpoint, on a shipped run relabelled to Pong (with its agent; muzero plans).
AGENT = "dreamer-cartpole-agent"
COMMANDS = {
    "dream": (AGENT, "dream {run} --out {tmp}/dream.gif --steps 3"),
    "controller": (AGENT, "controller {run} --out {tmp}/c --generations 1 --population 2 --episodes 1 --horizon 5"),
    "agent train": (AGENT, "agent train {run} --minutes 0.05"),
    "agent eval": (AGENT, "agent eval {run} --episodes 1"),
    "plan": ("muzero-cartpole", "plan {run} --episodes 1 --max-steps 5"),
    "train --resume": (AGENT, "train --resume {run} --steps 5000"),
    "collect --policy": (AGENT, "collect --env ALE/Pong-v5 --policy {run} --episodes 1 --out {tmp}/d"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_a_relabelled_checkpoint_with_exit_2(tmp_path: Path, command: str) -> None:
    shipped, line = COMMANDS[command]
    run = tmp_path / "run"
    ignore = shutil.ignore_patterns("data", "agent-data", "controllers", "report*")
    shutil.copytree(SHIPPED / shipped, run, ignore=ignore)
    PONG(run)
    assert_refused(wm(*line.format(run=run, tmp=tmp_path).split()))

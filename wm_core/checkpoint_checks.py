"""What a checkpoint must be before anything is built from it: every field of its JSON checked against the
dataclass it fills (type and range), caps on sizes, weight files named inside the run directory (no path
parts, no symlinks) with their hashes, and finite weights. Each refusal is a `CheckpointError` of one line
saying which field or file is wrong. `wm_core.checkpoint` calls these, so the CLI and the app refuse the same
things with the same words."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

MAX_INT = 10_000_000  # any integer config field (widths, steps, batch sizes)
MAX_PARAMS = 200_000_000  # parameters a checkpoint may ask us to allocate
MAX_WEIGHT_BYTES = 2 * 2**30
MAX_ACTIONS = 1024
FRAME_SIZES = range(16, 257)
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _bad(where: str, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {where} {why}; the checkpoint is corrupt or from another version")


def value_problem(value: Any, default: Any) -> str | None:
    """What is wrong with a value for a dataclass field with this default (None: nothing): bool, int
    (0..MAX_INT), float (finite, |x| <= 1e9), short str; None defaults and containers are left to their readers."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and abs(value) <= 1e9
    elif isinstance(default, str):
        ok = isinstance(value, str) and len(value) <= 200
    else:
        return None
    want = {bool: "true or false", int: f"a whole number 0..{MAX_INT:,}", float: "a finite number",
            str: "a short text"}[type(default)]  # fmt: skip
    return None if ok else f"is {value!r}, not {want}"


def check_value(where: str, value: Any, default: Any) -> None:
    """A JSON value against the type of a dataclass field's default (see `value_problem`)."""
    problem = value_problem(value, default)
    if problem:
        raise _bad(where, problem)


def check_fields(where: str, values: Any, cls: type) -> None:
    """A JSON object against a dataclass: no unknown keys, every value of its field's type."""
    if not isinstance(values, dict):
        raise _bad(where, "is not a JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise _bad(where, f"has fields this version does not know: {unknown}")
    for name, value in values.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        check_value(f"{where} field {name}", value, default)


def check_spec(spec: Any) -> None:
    """The action spec: discrete or box, 1..MAX_ACTIONS actions, finite bounds of the right length."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("discrete", "box"):
        raise _bad("action_spec", "is not a discrete or box action spec")
    n = spec.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ACTIONS:
        raise _bad("action_spec n", f"is {n!r}, not 1..{MAX_ACTIONS}")
    for key in ("low", "high", "names"):
        if not isinstance(spec.get(key, []), list):
            raise _bad(f"action_spec {key}", "is not a list")
    if spec["kind"] == "box":
        for key in ("low", "high"):
            vals = spec.get(key, [])
            if len(vals) != n or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
                raise _bad(f"action_spec {key}", f"is not {n} finite numbers")


def check_pipeline(pipeline: Any) -> None:
    """The frame pipeline: known fields, a crop of four ordered non-negative pixels, a sane size."""
    from .spec import FramePipeline

    check_fields("pipeline", pipeline, FramePipeline)
    crop = pipeline.get("crop")
    if crop is not None:
        if not isinstance(crop, list) or len(crop) != 4 or not all(isinstance(c, int) and 0 <= c <= 4096 for c in crop):
            raise _bad("pipeline crop", f"is {crop!r}, not [top, bottom, left, right] pixels")
        if crop[0] >= crop[1] or crop[2] >= crop[3]:
            raise _bad("pipeline crop", f"is {crop!r}: an empty window")
    if pipeline.get("source", "render") not in ("render", "obs"):
        raise _bad("pipeline source", f"is {pipeline.get('source')!r}, not render or obs")
    if pipeline.get("thicken_mode", "dark") not in ("dark", "light"):
        raise _bad("pipeline thicken_mode", f"is {pipeline.get('thicken_mode')!r}, not dark or light")
    if not isinstance(pipeline.get("env_kwargs", {}), dict):
        raise _bad("pipeline env_kwargs", "is not a JSON object")


def check_meta(meta: dict[str, Any]) -> None:
    """Every field of a checkpoint's JSON that building a model reads (the config against its family)."""
    for key in ("family", "env_id"):
        if not isinstance(meta[key], str) or not meta[key]:
            raise _bad(key, f"is {meta[key]!r}, not a name")
    step, size = meta["step"], meta["frame_size"]
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= 10**9:
        raise _bad("step", f"is {step!r}, not a whole number of steps")
    if not isinstance(size, int) or isinstance(size, bool) or size not in FRAME_SIZES or size % 8:
        raise _bad("frame_size", f"is {size!r}, not a multiple of 8 between 16 and 256")
    check_spec(meta["action_spec"])
    check_pipeline(meta["pipeline"])
    for key in ("weights", "optimizer"):
        entry = meta.get(key)
        if entry is None and key == "optimizer":
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise _bad(key, "does not name its file")
        if not isinstance(entry.get("sha256"), str) or not HEX64.match(entry["sha256"]):
            raise _bad(f"{key} sha256", "is missing or not a SHA-256 hex digest")


def weight_path(run: Path, entry: dict[str, Any], what: str) -> Path:
    """The weight file an entry names: a plain file name inside the run directory, not a link, not too big."""
    name = entry["file"]
    path = run / name
    if Path(name).name != name or name in ("", ".", ".."):
        raise CheckpointError(f"{what} file {name!r} is not a file name inside {run}; the checkpoint is corrupt")
    if path.is_symlink():
        raise CheckpointError(f"{what} file {path} is a symbolic link; a checkpoint keeps its own files")
    if not path.is_file():
        raise CheckpointError(f"{what} file {path} is missing; the checkpoint is incomplete")
    if path.stat().st_size > MAX_WEIGHT_BYTES:
        raise CheckpointError(f"{what} file {path} is over {MAX_WEIGHT_BYTES >> 30} GiB; refusing to read it")
    return path


def parameter_count(cls: type, config: Any, spec: Any, frame_size: int) -> int:
    """Parameters and buffers of the model a config builds, counted on the meta device (no memory)."""
    with torch.device("meta"):
        model = cls(config, spec, frame_size)
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def check_size(cls: type, config: Any, spec: Any, frame_size: int) -> None:
    """Refuse a checkpoint whose model would hold more than MAX_PARAMS parameters, before allocating it."""
    count = parameter_count(cls, config, spec, frame_size)
    if count > MAX_PARAMS:
        raise CheckpointError(f"checkpoint config asks for {count:,} parameters (cap {MAX_PARAMS:,}); refusing")


def check_finite(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Every floating-point weight finite."""
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"weights in {path} hold NaN or infinite values ({name}); the checkpoint is corrupt")

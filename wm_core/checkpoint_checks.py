"""What a checkpoint must be before anything is built from it: every field of its JSON checked against the
dataclass it fills (type and range, and bounds on each frame-pipeline field), caps on sizes, weight files named
inside the run directory (no path parts, no symlinks) with their hashes, finite weights, and one probe dream step
that gives finite frames, rewards and end probabilities. Each refusal is a `CheckpointError` of one line saying
which field or file is wrong. `wm_core.checkpoint` calls these, so the CLI and the app refuse the same things with
the same words."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import CheckpointError

if TYPE_CHECKING:
    from .protocol import WorldModel

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


# Bounds on each integer field of a frame pipeline: the catalog's largest values are thicken 15, action repeat 4
# and 60 reset no-ops, so these leave room for new envs and refuse what would stall or exhaust a machine (a frame
# size of 1e6 asked for 2.7 TiB).
PIPELINE_INTS = {"size": (FRAME_SIZES.start, FRAME_SIZES.stop - 1), "thicken": (0, 64), "action_repeat": (1, 64),
                 "reset_noops": (0, 10_000)}  # fmt: skip
MAX_ENV_KWARGS = 16
RESERVED_ENV_KWARGS = ("render_mode", "obs_type")  # set by the env maker itself
MAX_ENV_KWARG = 1e6


def _env_kwarg_problem(key: Any, value: Any) -> str | None:
    """What is wrong with one env kwarg (None: nothing): a Python name the env maker leaves to the env, and a
    plain bounded value (bool, number with |x| <= 1e6, short text or null), never a container."""
    if not isinstance(key, str) or not key.isidentifier() or len(key) > 64:
        return f"has a key {key!r} that is not an argument name"
    if key in RESERVED_ENV_KWARGS:
        return f"sets {key}, which the env maker sets itself"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        ok = math.isfinite(value) and abs(value) <= MAX_ENV_KWARG
        return None if ok else f"{key} is {value!r}, not a finite number within ±{MAX_ENV_KWARG:g}"
    if isinstance(value, str):
        return None if len(value) <= 200 else f"{key} is a text of {len(value)} characters (at most 200)"
    return f"{key} is {type(value).__name__}, not a plain value (true/false, a number, a short text or null)"


def check_pipeline(pipeline: Any, frame_size: int | None = None) -> None:
    """The frame pipeline: known fields of the right types, each integer within its bounds, a crop of four ordered
    pixels, the model's frame size (when given), and env kwargs that are a few plain values."""
    from .spec import FramePipeline

    check_fields("pipeline", pipeline, FramePipeline)
    for name, (low, high) in PIPELINE_INTS.items():
        value = pipeline.get(name)
        if value is not None and not low <= value <= high:
            raise _bad(f"pipeline {name}", f"is {value!r}, not {low}..{high}")
    size = pipeline.get("size", 64)
    if frame_size is not None and size != frame_size:
        raise _bad("pipeline size", f"is {size!r}, not the model's frame size {frame_size}")
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
    kwargs = pipeline.get("env_kwargs", {})
    if not isinstance(kwargs, dict) or len(kwargs) > MAX_ENV_KWARGS:
        raise _bad("pipeline env_kwargs", f"is not a JSON object of at most {MAX_ENV_KWARGS} values")
    problem = next(filter(None, (_env_kwarg_problem(k, v) for k, v in kwargs.items())), None)
    if problem:
        raise _bad("pipeline env_kwargs", problem)


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
    check_pipeline(meta["pipeline"], size)
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


def check_dream_step(model: WorldModel, where: Path) -> None:
    """One probe step through the protocol at batch 1 (observe the model's mean frame, imagine one step, decode,
    reward, done) must give finite numbers: weights that are finite but wrong (scaled up, bits flipped and
    rehashed) otherwise load and dream NaN frames, or fail inside sampling mid-game. Costs one dream step."""
    device = model.frame_mean.device
    frame = (model.frame_mean.movedim(0, -1) * 255).round().clamp(0, 255).to(torch.uint8)[None]  # (1, H, W, 3)
    action = model.action_spec.encode(model.action_spec.zeros()[None]).to(device)  # (1, A)
    generator = torch.Generator(device=device).manual_seed(0)
    try:  # forked: a family that samples in `observe` draws from the global stream, which loading must not move
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            state = model.imagine(model.observe(model.initial(1), frame, action), action, 1.0, generator)
            outputs = {"frame": model.decode(state), "reward": model.reward(state)}
            outputs["end probability"] = model.done(state)
    except (RuntimeError, ValueError, IndexError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        message = f"weights in {where} fail a probe dream step ({why}); the checkpoint is corrupt"
        raise CheckpointError(message) from None
    bad = [name for name, t in outputs.items() if not torch.isfinite(t.float()).all()]
    if bad:
        raise CheckpointError(
            f"weights in {where} dream non-finite values ({', '.join(bad)}) in a probe step; the checkpoint is corrupt"
        )

"""Checkpoints: safetensors weights plus one JSON file that says everything else. Never pickle.

A run directory holds `checkpoint.json` and the weight files it names. A save writes new weight files
under fresh names first and replaces `checkpoint.json` last (temp file + rename), so a crash at any
moment leaves either the old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .checkpoint_checks import check_dream_step, check_fields, check_finite, check_meta, check_size, weight_path
from .errors import CheckpointError
from .files import atomic_write_bytes, atomic_write_json, clean_temp_files, read_json_file, sha256_file
from .protocol import WorldModel
from .registry import get_family
from .spec import ActionSpec, FramePipeline

FORMAT = "wm-checkpoint/1"
META_FILE = "checkpoint.json"
REQUIRED = (
    "format",
    "family",
    "config",
    "env_id",
    "pipeline",
    "action_spec",
    "frame_size",
    "step",
    "weights",
)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, str]:
    atomic_write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))
    return {"file": path.name, "sha256": sha256_file(path)}


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors and a JSON-ready remainder."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{idx}.{key}"] = val
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    run_dir: Path | str,
    model: WorldModel,
    *,
    env_id: str,
    pipeline: FramePipeline,
    step: int,
    metrics: dict[str, float] | None = None,
    command: str = "",
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save model (and optimizer, for resuming) into `run_dir`; returns the path of checkpoint.json."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    clean_temp_files(run)  # what an interrupted save left behind
    stamp = f"{step:08d}-{time.time_ns() % 10**9:09d}"
    meta: dict[str, Any] = {
        "format": FORMAT,
        "family": model.family,
        "config": dataclasses.asdict(model.config),
        "env_id": env_id,
        "pipeline": pipeline.to_json(),
        "action_spec": model.action_spec.to_json(),
        "frame_size": model.frame_size,
        "step": int(step),
        "metrics": metrics or {},
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "weights": _save_tensors(model.state_dict(), run / f"model-{stamp}.safetensors"),
        **(extra or {}),
    }
    if optimizer is not None:
        tensors, rest = _optimizer_tensors(optimizer)
        meta["optimizer"] = {**_save_tensors(tensors, run / f"optimizer-{stamp}.safetensors"), **rest}
    path = run / META_FILE
    atomic_write_json(path, meta)
    # Only now that the new checkpoint.json is in place may other weight files go: the previous save's, and
    # any that a save killed before its checkpoint.json was written left behind.
    keep = {meta["weights"]["file"], meta.get("optimizer", {}).get("file")}
    for stale in [*run.glob("model-*.safetensors"), *run.glob("optimizer-*.safetensors")]:
        if stale.name not in keep and stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)
    return path


def read_record(path: Path, what: str, missing: str) -> dict[str, Any]:
    """The JSON object in `path` (a checkpoint's, an agent's): CheckpointError `missing` when there is no file,
    and one line naming `what` is corrupt for a link, an oversized file, bad JSON or not an object."""
    try:
        record = read_json_file(path)
    except FileNotFoundError:
        raise CheckpointError(missing) from None
    except ValueError as e:
        raise CheckpointError(f"{e}; the {what} is corrupt") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path} does not hold a {what} description (expected a JSON object)")
    return record


def _read_meta(path: Path) -> dict[str, Any]:
    return read_record(path, "checkpoint", f"no checkpoint at {path.parent}: {path.name} is missing")


def read_meta(path: Path | str) -> dict[str, Any]:
    """Read and check a checkpoint's JSON (a run directory or its checkpoint.json) without the weights."""
    p = Path(path)
    if p.suffix != ".json" or (p.is_dir() and p.name != META_FILE):  # a checkpoint.json directory is refused below
        p = p / META_FILE
    if not p.parent.exists():
        raise CheckpointError(f"no checkpoint at {p.parent}: the directory does not exist")
    meta = _read_meta(p)
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{p} lacks {', '.join(missing)}; it is not a complete checkpoint")
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{p} has format {meta['format']!r}; this version reads {FORMAT!r}")
    check_meta(meta)
    meta["_dir"] = str(p.parent)
    return meta


def _load_tensors(run: Path, entry: dict[str, str], what: str) -> dict[str, torch.Tensor]:
    path = weight_path(run, entry, what)
    if sha256_file(path) != entry["sha256"]:
        raise CheckpointError(f"{what} file {path} does not match the hash in {META_FILE}; it is corrupt")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{what} file {path} cannot be read as safetensors ({why})") from None
    check_finite(tensors, path)
    return tensors


def data_record(data_dir: Path | str, run: Path | str) -> str:
    """How a checkpoint records the directory of the episodes it trained on: relative to the run when the
    data lies inside it (a copied, moved or cloned run still finds its own data), else the absolute path."""
    data, home = Path(data_dir).resolve(), Path(run).resolve()
    return str(data.relative_to(home)) if data.is_relative_to(home) else str(data)


def recorded_data_dir(meta: dict[str, Any]) -> Path | None:
    """The training-data directory a loaded checkpoint records, if it still holds an episode store.

    A relative record is read against the run's directory. None when nothing is recorded or the directory
    is gone (a `--slim` run shipped without its data, or an absolute path from the machine that trained it):
    callers then fall back to the run's own `data/`, and never write to a path another machine recorded."""
    recorded = meta.get("data", {}).get("dir")
    if not recorded:
        return None
    d = Path(recorded)
    if not d.is_absolute():
        d = Path(meta["_dir"]) / d
    return d if (d / "index.json").exists() else None


def build_model(meta: dict[str, Any]) -> WorldModel:
    """A freshly initialised model of the family, config and action spec a checkpoint describes."""
    try:
        cls = get_family(meta["family"])
    except ValueError as e:
        raise CheckpointError(f"checkpoint family: {e}") from None
    check_fields(f"config ({cls.family})", meta["config"], cls.Config)
    size = int(meta["frame_size"])
    try:
        config = cls.Config(**meta["config"])
        action_spec = ActionSpec.from_json(meta["action_spec"])
        check_size(cls, config, action_spec, size)
        return cls(config, action_spec, size)
    except CheckpointError:
        raise
    except (TypeError, KeyError, ValueError, RuntimeError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint config does not build a '{cls.family}' model ({why})") from None


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """Load a run directory (or its checkpoint.json) -> (model in eval mode, meta), after one probe dream step
    (`check_dream_step`) shows that its weights dream finite numbers."""
    meta = read_meta(path)
    run = Path(meta["_dir"])
    model = build_model(meta)
    tensors = _load_tensors(run, meta["weights"], "weights")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {run} do not fit a '{meta['family']}' model with this config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    bad = [k for k, v in tensors.items() if v.shape != expected[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"weights in {run} do not fit the config: {k} is {tuple(tensors[k].shape)}, "
            f"the model wants {tuple(expected[k].shape)}"
        )
    model.load_state_dict(tensors)
    model = model.to(device).eval()
    check_dream_step(model, run)
    return model, meta


def load_optimizer_state(meta: dict[str, Any], optimizer: torch.optim.Optimizer) -> bool:
    """Restore the optimizer saved with a checkpoint; False when it has none."""
    entry = meta.get("optimizer")
    if not entry:
        return False
    tensors = _load_tensors(Path(meta["_dir"]), entry, "optimizer")
    state: dict[int, dict[str, Any]] = {}
    for key, val in list(tensors.items()) + list(entry.get("scalars", {}).items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    try:
        optimizer.load_state_dict({"state": state, "param_groups": entry["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"optimizer state in {meta['_dir']} does not fit this model ({e})") from None
    return True


def check_env(meta: dict[str, Any], spec: ActionSpec, pipeline: FramePipeline) -> None:
    """CheckpointError unless the env a checkpoint names takes the actions its model was built for and draws frames
    the size it was trained on (a checkpoint whose env_id was edited would otherwise dream on the wrong env)."""
    mine = ActionSpec.from_json(meta["action_spec"])
    if (mine.kind, mine.n) != (spec.kind, spec.n):
        raise CheckpointError(
            f"{meta.get('_dir', 'the checkpoint')} models {mine.kind} actions ({mine.n}), but {meta['env_id']} takes "
            f"{spec.kind} actions ({spec.n}): its env_id does not match its model"
        )
    size = FramePipeline.from_json(meta["pipeline"]).size
    if size != pipeline.size or int(meta["frame_size"]) != pipeline.size:
        raise CheckpointError(
            f"{meta.get('_dir', 'the checkpoint')} was trained on {size}-pixel frames, but {meta['env_id']} draws "
            f"{pipeline.size}-pixel ones: its env_id does not match its model"
        )


def check_real_env(meta: dict[str, Any], env_id: str | None = None) -> None:
    """CheckpointError unless the real env a checkpoint names (or `env_id`) fits its model (`check_env`): the env is
    made with the checkpoint's pipeline and closed again. Every command that takes a checkpoint runs this first, so
    a relabelled checkpoint is refused in one line before any work, whatever the command."""
    from .data.envs import make_env

    env = make_env(env_id or meta["env_id"], FramePipeline.from_json(meta["pipeline"]))
    try:
        check_env({**meta, "env_id": env_id or meta["env_id"]}, env.action_spec, env.pipeline)
    finally:
        env.close()

"""Checks a training run passes before it collects or allocates anything: a config that builds a model under
the parameter cap, resume flags that would not be ignored, and a run directory that holds no checkpoint a new
run would replace. Each failure is a ValueError of one line that says what to do instead."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from .checkpoint import read_meta
from .checkpoint_checks import MAX_PARAMS, parameter_count, value_problem
from .data.envs import env_entry
from .errors import CheckpointError
from .registry import get_family
from .spec import ActionSpec


def check_train_config(family: str, config: Any, env_id: str) -> None:
    """ValueError (one line) for a training config no run should start with: a field of the wrong type or out
    of range, a model that cannot be built, or one over the parameter cap. Built on the meta device, so this
    allocates nothing; run before any data is collected."""
    cls = get_family(family)
    for f in dataclasses.fields(config):
        problem = value_problem(getattr(config, f.name), f.default)
        if problem:
            raise ValueError(f"{family} config {f.name} {problem}")
    entry = env_entry(env_id)
    spec = ActionSpec("discrete", 2, names=("a", "b"))  # the size barely depends on the env's actions
    try:
        count = parameter_count(cls, config, spec, entry.pipeline.size)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"this {family} config does not build a model ({why}); check its sizes") from None
    if count > MAX_PARAMS:
        raise ValueError(f"this {family} config asks for {count:,} parameters (cap {MAX_PARAMS:,}): use smaller sizes")


def check_resume(overrides: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """ValueError naming the config flags a resumed run would have ignored."""
    fixed = sorted(k for k, v in overrides.items() if v is not None and k not in allowed)
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        raise ValueError(
            f"--resume continues a run with its own config; {flags} cannot change it (only "
            f"{' and '.join('--' + k for k in allowed)} can): start a new run with --out to train "
            "with other settings"
        )


def refuse_overwrite(run: Path) -> None:
    """ValueError with the next command when `run` already holds a checkpoint: a new run there would replace
    it (after a kill, re-running the same command must not throw away the steps already saved)."""
    if not (run / "checkpoint.json").exists():
        return
    try:
        meta = read_meta(run)
        done, total = int(meta["step"]), int(meta["config"].get("steps", 0))
        what = f"a {meta['family']} checkpoint of {meta['env_id']} at step {done}"
    except (CheckpointError, AttributeError, KeyError, TypeError, ValueError):  # still someone's work: refuse
        done, total, what = 0, 0, "a checkpoint"
    more = f" --steps {max(total, done) * 2}" if total and done >= total else ""
    raise ValueError(
        f"{run} already holds {what}: continue it with `wm train --resume {shlex.quote(str(run))}{more}`, or "
        "choose another --out to start a new run"
    )

"""World Model Playground core library: envs, data, the world-model protocol, families, training,
checkpoints, dreams and evaluation. The app talks to the library only through the names below.

The names load on first use (PEP 562), so `import wm_core` is quick and pulls in neither matplotlib nor
gradio; `from wm_core import X` imports only what X needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ActionSpec": "spec",
    "CATALOG": "envs",
    "CheckpointError": "checkpoint",
    "CompareFrame": "compare",
    "CompareSession": "compare",
    "DataError": "data",
    "Dream": "dream",
    "EnvError": "envs",
    "Episode": "data",
    "EpisodeStore": "data",
    "FAMILIES": "registry",
    "FramePipeline": "spec",
    "Futures": "compare",
    "HELDOUT_SEED_BASE": "data",
    "KeyController": "envs",
    "Keymap": "envs",
    "PlaySession": "play",
    "Report": "report",
    "SequenceSampler": "data",
    "TrainConfig": "protocol",
    "TrainReport": "train",
    "Trainer": "train",
    "WorldModel": "protocol",
    "cached_model": "play",
    "collect": "data",
    "compare_problem": "compare",
    "data_budget": "train",
    "env_entry": "envs",
    "evaluate_checkpoint": "report",
    "field_doc": "protocol",
    "format_card": "evaluate",
    "get_family": "registry",
    "heldout_store": "evaluate",
    "load_checkpoint": "checkpoint",
    "make_env": "envs",
    "open_loop": "evaluate",
    "open_loop_grid": "evaluate",
    "read_meta": "checkpoint",
    "record_dream": "play",
    "resolve_device": "train",
    "save_checkpoint": "checkpoint",
    "train_run": "train",
    "write_report": "report",
    "write_video": "play",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Import the public name from its module on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module 'wm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from .checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint  # noqa: F401
    from .compare import CompareFrame, CompareSession, Futures, compare_problem  # noqa: F401
    from .data import HELDOUT_SEED_BASE, DataError, Episode, EpisodeStore, SequenceSampler, collect  # noqa: F401
    from .dream import Dream  # noqa: F401
    from .envs import CATALOG, EnvError, KeyController, Keymap, env_entry, make_env  # noqa: F401
    from .evaluate import format_card, heldout_store, open_loop, open_loop_grid  # noqa: F401
    from .play import PlaySession, cached_model, record_dream, write_video  # noqa: F401
    from .protocol import TrainConfig, WorldModel, field_doc  # noqa: F401
    from .registry import FAMILIES, get_family  # noqa: F401
    from .report import Report, evaluate_checkpoint, write_report  # noqa: F401
    from .spec import ActionSpec, FramePipeline  # noqa: F401
    from .train import Trainer, TrainReport, data_budget, resolve_device, train_run  # noqa: F401

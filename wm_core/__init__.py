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
    "CATALOG": "data.envs",
    "CheckpointError": "checkpoint",
    "DataError": "data",
    "Dream": "dream",
    "EnvError": "data.envs",
    "Episode": "data",
    "EpisodeStore": "data",
    "FAMILIES": "registry",
    "PRESET_NAMES": "registry",
    "FramePipeline": "spec",
    "Futures": "interactive.futures",
    "HELDOUT_SEED_BASE": "data",
    "KeyController": "data.keys",
    "LatentExplorer": "evaluation.explorer",
    "ModelCard": "evaluation.model_card",
    "Keymap": "data.keys",
    "Report": "evaluation.report",
    "SequenceSampler": "data",
    "Searchable": "protocol",
    "Session": "interactive.session",
    "StepBatcher": "interactive.batcher",
    "SessionFrame": "interactive.session",
    "Panel": "interactive.session",
    "TrainConfig": "protocol",
    "TrainEvent": "train",
    "TrainReport": "train",
    "Trainer": "train",
    "WorldModel": "protocol",
    "cached_model": "model_cache",
    "card_figures": "evaluation.figures",
    "check_train_config": "run_checks",
    "collect": "data",
    "compare_problem": "interactive.futures",
    "counterfactuals": "evaluation.counterfactual",
    "controller_episode": "agents.dream_controller",
    "load_controller": "agents.dream_controller",
    "data_budget": "run_data",
    "env_entry": "data.envs",
    "evaluate_checkpoint": "evaluation.report",
    "field_doc": "protocol",
    "format_card": "evaluation.card",
    "get_family": "registry",
    "heldout_store": "evaluation.card",
    "load_checkpoint": "checkpoint",
    "make_env": "data.envs",
    "open_loop": "evaluation.card",
    "open_loop_grid": "evaluation.card",
    "read_meta": "checkpoint",
    "record_dream": "interactive.recording",
    "resolve_device": "train",
    "return_freed_memory": "memory",
    "save_checkpoint": "checkpoint",
    "train_run": "train",
    "write_report": "evaluation.report",
    "write_video": "interactive.video",
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
    from .agents.dream_controller import controller_episode, load_controller  # noqa: F401
    from .checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint  # noqa: F401
    from .data import HELDOUT_SEED_BASE, DataError, Episode, EpisodeStore, SequenceSampler, collect  # noqa: F401
    from .data.envs import CATALOG, EnvError, env_entry, make_env  # noqa: F401
    from .data.keys import KeyController, Keymap  # noqa: F401
    from .dream import Dream  # noqa: F401
    from .evaluation.card import format_card, heldout_store, open_loop, open_loop_grid  # noqa: F401
    from .evaluation.counterfactual import counterfactuals  # noqa: F401
    from .evaluation.explorer import LatentExplorer  # noqa: F401
    from .evaluation.figures import card_figures  # noqa: F401
    from .evaluation.model_card import ModelCard  # noqa: F401
    from .evaluation.report import Report, evaluate_checkpoint, write_report  # noqa: F401
    from .interactive.batcher import StepBatcher  # noqa: F401
    from .interactive.futures import Futures, compare_problem  # noqa: F401
    from .interactive.recording import record_dream  # noqa: F401
    from .interactive.session import Panel, Session, SessionFrame  # noqa: F401
    from .interactive.video import write_video  # noqa: F401
    from .memory import return_freed_memory  # noqa: F401
    from .model_cache import cached_model  # noqa: F401
    from .protocol import Searchable, TrainConfig, WorldModel, field_doc  # noqa: F401
    from .registry import FAMILIES, PRESET_NAMES, get_family  # noqa: F401
    from .run_checks import check_train_config  # noqa: F401
    from .run_data import data_budget  # noqa: F401
    from .spec import ActionSpec, FramePipeline  # noqa: F401
    from .train import (  # noqa: F401
        Trainer,
        TrainEvent,
        TrainReport,
        resolve_device,
        train_run,
    )

"""World Model Playground core library: envs, data, the world-model protocol, families, training,
checkpoints, dreams and evaluation. The app talks to the library only through the names below.
"""

from .checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from .compare import CompareFrame, CompareSession, Futures, compare_problem
from .data import HELDOUT_SEED_BASE, DataError, Episode, EpisodeStore, SequenceSampler, collect
from .dream import Dream
from .envs import CATALOG, EnvError, KeyController, Keymap, env_entry, make_env
from .evaluate import format_card, heldout_store, open_loop, open_loop_grid
from .play import PlaySession, cached_model, record_dream, write_video
from .protocol import TrainConfig, WorldModel, field_doc
from .registry import FAMILIES, get_family
from .report import Report, evaluate_checkpoint, write_report
from .spec import ActionSpec, FramePipeline
from .train import Trainer, TrainReport, data_budget, resolve_device, train_run

__all__ = [
    "ActionSpec",
    "CATALOG",
    "CheckpointError",
    "CompareFrame",
    "CompareSession",
    "DataError",
    "Dream",
    "EnvError",
    "Episode",
    "EpisodeStore",
    "FAMILIES",
    "FramePipeline",
    "Futures",
    "HELDOUT_SEED_BASE",
    "KeyController",
    "Keymap",
    "PlaySession",
    "Report",
    "SequenceSampler",
    "TrainConfig",
    "TrainReport",
    "Trainer",
    "WorldModel",
    "cached_model",
    "collect",
    "compare_problem",
    "data_budget",
    "env_entry",
    "evaluate_checkpoint",
    "field_doc",
    "format_card",
    "get_family",
    "heldout_store",
    "load_checkpoint",
    "make_env",
    "open_loop",
    "open_loop_grid",
    "read_meta",
    "record_dream",
    "resolve_device",
    "save_checkpoint",
    "train_run",
    "write_report",
    "write_video",
]

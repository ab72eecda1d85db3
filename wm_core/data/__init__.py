"""Data and envs: episodes on disk, collecting them with data policies, training sequences, the env catalog
and the training data's action coverage. The names most code needs are importable from here."""

from ..errors import DataError
from .collect import Policy, collect
from .sampler import SequenceSampler, windows
from .store import (
    FORMAT_VERSION,
    HELDOUT_SEED_BASE,
    INDEX_FILE,
    MEAN_FRAME_FILE,
    TRAIN_SEED_BASE,
    Episode,
    EpisodeRecorder,
    EpisodeStore,
)

__all__ = [
    "FORMAT_VERSION",
    "HELDOUT_SEED_BASE",
    "INDEX_FILE",
    "MEAN_FRAME_FILE",
    "TRAIN_SEED_BASE",
    "DataError",
    "Episode",
    "EpisodeRecorder",
    "EpisodeStore",
    "Policy",
    "SequenceSampler",
    "collect",
    "windows",
]

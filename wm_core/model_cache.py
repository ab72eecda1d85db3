"""Checkpoints loaded once per file version and shared read-only: every session playing a run, its dream
controllers and the app's inspectors use the same model object (dreams never change a model's weights)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint, read_meta
from .protocol import WorldModel

_MODELS: OrderedDict[str, tuple[WorldModel, dict[str, Any]]] = OrderedDict()
_MODELS_LOCK = threading.Lock()
KEPT = 8  # models held at once; the least recently used goes first


def cached_model(run: Path | str, device: str = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """Load a checkpoint once per (path, file version, device); callers share the read-only model."""
    meta = read_meta(run)
    key = f"{meta['_dir']}|{meta['weights']['sha256']}|{device}"
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_checkpoint(run, device)
            while len(_MODELS) > KEPT:
                _MODELS.popitem(last=False)
        _MODELS.move_to_end(key)
        return _MODELS[key]

"""The family registry: family name -> its model class, as "module:Class" so a family's code (and torch) is
imported only when that family is used.

A family is one module in `wm_core.models`; registering it here (one line) is all the trainer, the checkpoint
loader, the dream adapter, the CLI and the app need to pick it up. `register` adds one from elsewhere (a
test's own family, say).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import WorldModel

PRESET_NAMES = ("tiny", "small", "large")  # every family has these; tiny for tests, small the CPU default

_PATHS: dict[str, str] = {
    "ha": "wm_core.models.ha:VaeMdnRnn",
    "muzero": "wm_core.models.muzero:MuZero",
    "jepa": "wm_core.models.jepa:Jepa",
    "dreamer": "wm_core.models.dreamer:Rssm",
    "diffusion": "wm_core.models.diffusion:PixelDiffusion",
}


BUILT_IN = tuple(_PATHS)  # the families of this package (`register` adds others to the running process only)


class _Families(Mapping):
    """A read-only dict name -> model class that imports each family on first access."""

    def __init__(self) -> None:
        self._loaded: dict[str, type[WorldModel]] = {}

    def __getitem__(self, name: str) -> type[WorldModel]:
        if name not in self._loaded:
            module, cls = _PATHS[name].split(":")
            self._loaded[name] = getattr(importlib.import_module(module), cls)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_PATHS)

    def __len__(self) -> int:
        return len(_PATHS)


FAMILIES: Mapping[str, type[WorldModel]] = _Families()


def register(name: str, cls: type[WorldModel]) -> None:
    """Add a family defined outside `wm_core.models` (its class is already imported)."""
    _PATHS[name] = f"{cls.__module__}:{cls.__qualname__}"
    FAMILIES._loaded[name] = cls  # type: ignore[attr-defined]


def get_family(name: str) -> type[WorldModel]:
    """The model class registered as `name`; ValueError naming the known families otherwise."""
    if name not in _PATHS:
        raise ValueError(f"unknown family '{name}': choose one of {', '.join(sorted(_PATHS))}")
    return FAMILIES[name]

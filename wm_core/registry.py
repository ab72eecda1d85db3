"""The family registry: a plain dict from family name to model class.

A family is one module in `wm_core.models`; registering it here is all the trainer, the checkpoint
loader, the dream adapter, the CLI and the app need to pick it up.
"""

from __future__ import annotations

from .models.diffusion import PixelDiffusion
from .models.dreamer import Rssm
from .models.ha import VaeMdnRnn
from .models.jepa import Jepa
from .models.muzero import MuZero
from .protocol import WorldModel

FAMILIES: dict[str, type[WorldModel]] = {
    "ha": VaeMdnRnn,
    "muzero": MuZero,
    "jepa": Jepa,
    "dreamer": Rssm,
    "diffusion": PixelDiffusion,
}


def get_family(name: str) -> type[WorldModel]:
    """The model class registered as `name`; ValueError naming the known families otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family '{name}': choose one of {', '.join(sorted(FAMILIES))}") from None

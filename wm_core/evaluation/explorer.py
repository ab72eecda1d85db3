"""The latent explorer: freeze a model's state, move along the top principal directions of its latent, and
watch the decoded frame change (the interactive VAE demo of Ha & Schmidhuber 2018, "World Models").

The directions are the principal components of the filtered latents over held-out episodes, so slider
value 1 moves one standard deviation of what real frames produce along that direction. Works for every
family through `latent` / `set_latent` / `decode` (a probe decoder for latent-only families).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data import Episode
from ..dream import to_uint8
from ..protocol import State, WorldModel
from .probes import filtered_latents


class LatentExplorer:
    """Principal directions of a model's latent over `episodes`, and frames decoded along them."""

    def __init__(self, model: WorldModel, episodes: Sequence[Episode], components: int = 6) -> None:
        self.model = model.eval()
        self.episodes = list(episodes)
        z = np.concatenate(filtered_latents(model, self.episodes)).astype(np.float64)  # (N, D)
        self.mean = z.mean(0)
        _, s, vt = np.linalg.svd(z - self.mean, full_matrices=False)
        k = min(components, len(s))
        self.directions = vt[:k]  # (k, D), unit rows
        self.std = s[:k] / np.sqrt(max(len(z) - 1, 1))  # spread of real latents along each direction
        total = (s**2).sum()
        self.explained = (s[:k] ** 2 / total if total > 0 else np.zeros(k)).tolist()
        self._cache: dict[tuple[int, int], State] = {}

    @torch.inference_mode()
    def state_at(self, episode: int, t: int) -> State:
        """The filtered state after observing frames 0..t of held-out episode `episode` (cached)."""
        e = self.episodes[episode]
        t = int(np.clip(t, 0, len(e) - 1))
        key = (episode, t)
        if key not in self._cache:
            state = self.model.filter(*self.model.context_tensors(e.obs[None, : t + 1], e.act[None, : t + 1]))
            self._cache = {key: state}  # one frozen state at a time is all the UI needs
        return self._cache[key]

    def coordinates(self, episode: int, t: int) -> np.ndarray:
        """Where that state sits along each direction, in standard deviations."""
        z = self.model.latent(self.state_at(episode, t))[0].double().cpu().numpy()
        return (self.directions @ (z - self.mean)) / np.maximum(self.std, 1e-12)

    @torch.inference_mode()
    def frame(self, episode: int, t: int, offsets: Sequence[float]) -> np.ndarray:
        """The decoded frame (S, S, 3) uint8 of that state moved by `offsets` standard deviations."""
        state = self.state_at(episode, t)
        z = self.model.latent(state)
        k = min(len(offsets), len(self.std))
        shift = (np.asarray(offsets[:k], np.float64) * self.std[:k]) @ self.directions[:k]
        moved = z + torch.as_tensor(shift, dtype=z.dtype, device=z.device)[None]
        return to_uint8(self.model.decode(self.model.set_latent(state, moved)))[0]

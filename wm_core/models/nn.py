"""Layers shared by the families: the conv encoder/decoder pair and a small MLP."""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.Module:
    # GroupNorm keeps batch-1 dream steps identical to batched training (BatchNorm would not).
    return nn.GroupNorm(1, channels)


class ConvEncoder(nn.Module):
    """(N, 3, S, S) pixels in [0, 1] -> (N, out_dim) features; four stride-2 convs, widths c, 2c, 4c, 8c."""

    def __init__(self, channels: int, out_dim: int, frame_size: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(4):
            c_out = channels * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), _norm(c_out), nn.SiLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.flat_dim = c_in * (frame_size // 16) ** 2
        self.head = nn.Linear(self.flat_dim, out_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (N, 3, S, S) in [0, 1] -> (N, out_dim)."""
        return self.head(self.convs(pixels - 0.5).flatten(1))


class ConvDecoder(nn.Module):
    """(N, in_dim) -> (N, 3, S, S) residual image; the caller adds the dataset mean frame.

    The output layer is linear (no sigmoid): a sigmoid output collapsed to an all-white frame in one
    trial at lr 1e-3, a linear output clamped at display time did not.
    """

    def __init__(self, in_dim: int, channels: int, frame_size: int = 64) -> None:
        super().__init__()
        self.base = frame_size // 16
        self.c0 = channels * 8
        self.head = nn.Linear(in_dim, self.c0 * self.base**2)
        layers: list[nn.Module] = []
        c_in = self.c0
        for i in range(3):
            c_out = channels * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), _norm(c_out), nn.SiLU()]
            c_in = c_out
        layers.append(nn.ConvTranspose2d(c_in, 3, 4, stride=2, padding=1))
        self.deconvs = nn.Sequential(*layers)
        # Start from "draw the mean frame": the residual output begins at zero.
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, 3, S, S)."""
        h = self.head(features).view(-1, self.c0, self.base, self.base)
        return self.deconvs(h)


class Mlp(nn.Sequential):
    """Linear -> SiLU stacks ending in a plain linear layer."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> None:
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.SiLU()]
            d = hidden
        mods.append(nn.Linear(d, out_dim))
        super().__init__(*mods)


def weighted_pixel_loss(
    pred: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, fg_weight: float
) -> torch.Tensor:
    """Squared error summed over pixels, with foreground pixels weighted `1 + fg_weight`; mean over N."""
    w = 1.0 + fg_weight * fg_mask
    return ((pred - target) ** 2 * w).flatten(1).sum(1).mean()

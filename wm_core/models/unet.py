"""The pixel-space family's layers: a small U-Net on 2x2 pixel blocks with FiLM conditioning, the noise-level
embedding, and the Karras et al. (2022) noise schedule ("Elucidating the Design Space of Diffusion-Based
Generative Models")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .steady import Linear


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """The noise levels of `steps` denoiser calls, then 0: the first `steps` of the Karras et al. (2022) schedule
    of steps + 1 levels from sigma_max to sigma_min. Its last level (sigma_min) is left out, because a step from
    sigma_min to 0 changes almost nothing: 2 steps are [5, 0.28, 0], DIAMOND's three-level schedule."""
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(hi + i / steps * (lo - hi)) ** rho for i in range(steps)] + [0.0]


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> 3x3 conv, twice, with the second norm's scale and shift set by the conditioning."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate")
        self.film = Linear(cond_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out, affine=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="replicate")
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: a deep net trains from step one
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (N, c_in, h, w), cond (N, cond_dim) -> (N, c_out, h, w)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class UNet(nn.Module):
    """Three levels (32, 16, 8 pixels on 2x2 blocks of a 64x64 frame), one block each way, skip connections."""

    def __init__(self, in_planes: int, channels: int, cond_dim: int) -> None:
        super().__init__()
        c1, c2 = channels, 2 * channels
        self.unshuffle, self.shuffle = nn.PixelUnshuffle(2), nn.PixelShuffle(2)
        # Replicated borders: zero padding drew a dark line along the frame's edges.
        self.conv_in = nn.Conv2d(4 * in_planes, c1, 3, padding=1, padding_mode="replicate")
        self.down = nn.ModuleList([ResBlock(c1, c1, cond_dim), ResBlock(c1, c2, cond_dim), ResBlock(c2, c2, cond_dim)])
        self.pool = nn.ModuleList(
            [nn.Conv2d(c1, c1, 3, stride=2, padding=1), nn.Conv2d(c2, c2, 3, stride=2, padding=1)]
        )
        self.mid = ResBlock(c2, c2, cond_dim)
        self.up = nn.ModuleList(
            [ResBlock(2 * c2, c2, cond_dim), ResBlock(2 * c2, c1, cond_dim), ResBlock(2 * c1, c1, cond_dim)]
        )
        self.norm_out = nn.GroupNorm(min(8, c1), c1)
        self.conv_out = nn.Conv2d(c1, 4 * 3, 3, padding=1, padding_mode="replicate")
        # A linear path from the input planes to the output: the group norms take out each feature map's mean, so
        # without it a flat background's exact colour had to be rebuilt and came out a few levels off (Pong's
        # brown by -7/+1/-3 of 255 in every dreamed frame, most of the dream's error).
        self.skip_out = nn.Conv2d(4 * in_planes, 4 * 3, 1)
        for layer in (self.conv_out, self.skip_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (N, in_planes, 64, 64), cond (N, cond_dim) -> (N, 3, 64, 64)."""
        x = self.unshuffle(x)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, cond)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, cond)
        for i, block in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), cond)
        return self.shuffle(self.conv_out(F.silu(self.norm_out(h))) + self.skip_out(x))


class FourierFeatures(nn.Module):
    """A scalar -> fixed random sinusoids (the noise-level embedding of EDM / DIAMOND)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * 4.0)  # saved, so a loaded model embeds alike

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) -> (N, dim)."""
        angles = 2 * math.pi * x[:, None] * self.freqs[None]
        return torch.cat([angles.cos(), angles.sin()], dim=-1)

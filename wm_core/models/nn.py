"""Layers shared by the families: the conv encoder/decoder pair and a small MLP."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .steady import Conv2d, ConvTranspose2d, Linear, steady_rows


def _norm(channels: int) -> nn.Module:
    # GroupNorm keeps batch-1 dream steps identical to batched training (BatchNorm would not).
    return nn.GroupNorm(1, channels)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): squashes large magnitudes, near-identity around 0 (DreamerV3, Hafner et al. 2023)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Build modules with a reproducible initialisation (`torch.manual_seed(seed)` inside) without moving the
    global random stream that other threads draw from: the stream is saved and restored around the block, and
    seeded builds run one at a time. (Modules initialise from the global generator; dreams and evaluations
    sample from their own generators.)"""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


Generators = torch.Generator | Sequence[torch.Generator] | None
"""Where a dream step draws its randomness: one generator for the whole batch, or one per row of the batch (the
dreams of several players stepped together, each from its own stream), or the global one (None)."""


def randn_like(x: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """Standard normal noise shaped like `x`, from `generator`; with one generator per row, row i is drawn from
    generator i alone, so it equals what that generator draws for a batch of one."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    _check_rows(x, generator)
    return torch.cat([torch.randn((1, *x.shape[1:]), dtype=x.dtype, device=x.device, generator=g) for g in generator])


def multinomial(probs: torch.Tensor, generator: Generators = None, replacement: bool = True) -> torch.Tensor:
    """One index per distribution of `probs` (B, ..., K) -> (B, ...), drawn with replacement; with one generator
    per row of B, row i's indices come from generator i alone (as for a batch of one). (`replacement` picks
    torch's sampling algorithm, which decides the draws; one index per distribution either way.)"""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs.flatten(0, -2), 1, replacement, generator=generator).view(probs.shape[:-1])
    _check_rows(probs, generator)
    rows = [
        torch.multinomial(p.reshape(-1, p.shape[-1]), 1, replacement, generator=g) for p, g in zip(probs, generator)
    ]
    return torch.stack(rows).view(probs.shape[:-1])


def _check_rows(x: torch.Tensor, generators: Sequence[torch.Generator]) -> None:
    if len(generators) != x.shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {x.shape[0]}")


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by `scale` on the way back (0 detaches, 1 passes it)."""
    return x * scale + x.detach() * (1 - scale)


class ConvEncoder(nn.Module):
    """(N, in_channels, S, S) pixels in [0, 1] -> (N, out_dim) features; four stride-2 convs, widths c, 2c,
    4c, 8c. `in_channels` counts the input planes: 3 per RGB frame, 1 per luma frame, stacked."""

    def __init__(self, channels: int, out_dim: int, frame_size: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(4):
            c_out = channels * 2**i
            layers += [Conv2d(c_in, c_out, 4, stride=2, padding=1), _norm(c_out), nn.SiLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.flat_dim = c_in * (frame_size // 16) ** 2
        self.head = Linear(self.flat_dim, out_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (N, in_channels, S, S) in [0, 1] -> (N, out_dim)."""
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
        self.head = Linear(in_dim, self.c0 * self.base**2)
        layers: list[nn.Module] = []
        c_in = self.c0
        for i in range(3):
            c_out = channels * 2 ** (2 - i)
            layers += [ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), _norm(c_out), nn.SiLU()]
            c_in = c_out
        layers.append(ConvTranspose2d(c_in, 3, 4, stride=2, padding=1))
        self.deconvs = nn.Sequential(*layers)
        # Start from "draw the mean frame": the residual output begins at zero.
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, 3, S, S)."""
        h = self.head(features).view(-1, self.c0, self.base, self.base)
        return self.deconvs(h)


class Mlp(nn.Sequential):
    """Linear -> LayerNorm -> SiLU stacks ending in a plain linear layer. Rows are padded once, at the input, to
    the `row_multiple` that `Linear` pads to, so the activations between the layers have as many rows for one
    player as for a batch: SiLU's vectorised loop and its left-over elements round differently, and a narrow
    layer's row (16 wide) would otherwise land in one alone and in the other batched (measured on jepa tiny)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> None:
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [Linear(d, hidden), nn.LayerNorm(hidden), nn.SiLU()]
            d = hidden
        mods.append(Linear(d, out_dim))
        super().__init__(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return steady_rows(super().forward, x)


def pixel_weights(mask: torch.Tensor, fg_weight: float, share: float = 0.0, cap: float = 500.0) -> torch.Tensor:
    """Loss weights of a batch of masks (N, 1, H, W): `1 + fg_weight` on masked pixels, or, with `share` > 0,
    weights under which each frame's masked pixels carry `share` of its loss (at most `cap` times a still
    pixel's weight), averaging about 1 per pixel. A 2-pixel ball weighted 1 + 4 still carries 0.25% of a 64x64
    frame's loss; balanced, it carries half (SimPLe's loss cut-off and Delta-IRIS's worst-pixel term aim at the
    same imbalance)."""
    m = mask.float()
    if share <= 0:
        return 1.0 + fg_weight * m
    n = m[0].numel()
    k = m.flatten(1).sum(1).view(-1, *([1] * (m.ndim - 1)))  # masked pixels per frame
    still = (1 - share) * n / (n - k).clamp(min=1)
    moving = torch.minimum(share * n / k.clamp(min=1), cap * still)
    return torch.where(m > 0, moving, still)


def weighted_pixel_loss(
    pred: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, fg_weight: float, share: float = 0.0
) -> torch.Tensor:
    """Squared error summed over pixels, weighted by `pixel_weights`; mean over N."""
    return ((pred - target) ** 2 * pixel_weights(fg_mask, fg_weight, share)).flatten(1).sum(1).mean()


@dataclass
class ProbeConfig:
    """Config fields of a probe decoder, shared by the decoder-free families."""

    probe_channels: int = 16
    """Width of the probe decoder (trained on detached latents, draws what the latent knows)."""
    probe_fraction: float = 0.125
    """Probe decodes per step, as a share of the batch's frames (sampled over all predicted steps)."""
    fg_weight: float = 20.0
    """Extra probe reconstruction weight on pixels that differ from the dataset mean frame."""


class ProbeDecoder(nn.Module):
    """A pixel decoder that reads *detached* latents: it shows what a latent knows without shaping it.

    Decoder-free families (MuZero, JEPA) train one beside the model so the UI can draw their states. The
    latent is detached on the way in, so the probe's loss never sends a gradient into the world model;
    like `ConvDecoder` it predicts the residual from the dataset mean frame and weights foreground pixels,
    which is what lets thin moving objects (the CartPole pole) appear within CPU-minutes.

    Each latent unit is standardised with running statistics of the latents the probe has trained on
    (BatchNorm's eval mode, always on, so a batch-1 dream step decodes exactly like a batch): a latent
    that varies by 0.01 across frames (MuZero's min-max states early in training) reaches the decoder at
    unit scale, and a probe cannot get that scale from the gradient it is not allowed to send back.
    """

    def __init__(self, in_dim: int, channels: int, frame_size: int = 64, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.decoder = ConvDecoder(in_dim, channels, frame_size)
        self.register_buffer("latent_mean", torch.zeros(in_dim))
        self.register_buffer("latent_var", torch.ones(in_dim))
        self.register_buffer("updates", torch.zeros(()))

    def forward(self, latent: torch.Tensor, frame_mean: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) latent -> (N, 3, S, S) frame, unclamped (mean frame + predicted residual)."""
        x = (latent.detach() - self.latent_mean) * torch.rsqrt(self.latent_var + 1e-6)
        return self.decoder(x) + frame_mean

    @torch.no_grad()
    def _track(self, latent: torch.Tensor) -> None:
        # A plain average over the first 1/momentum batches, then an exponential moving average.
        rate = max(self.momentum, 1.0 / float(self.updates + 1))
        self.latent_mean.lerp_(latent.mean(0), rate)
        self.latent_var.lerp_(latent.var(0, unbiased=False) if len(latent) > 1 else self.latent_var, rate)
        self.updates += 1

    def loss(
        self,
        latent: torch.Tensor,
        pixels: torch.Tensor,
        frame_mean: torch.Tensor,
        fg_mask: torch.Tensor,
        fg_weight: float,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-pixel weighted reconstruction loss of frames (N, 3, S, S) from latents (N, in_dim), and the
        probe's plain and foreground-masked MSE as metrics. Updates the running latent statistics in
        training mode."""
        if self.training:
            self._track(latent.detach().float())
        recon = self(latent, frame_mean)
        loss = weighted_pixel_loss(recon, pixels, fg_mask, fg_weight) / pixels[0].numel()
        with torch.no_grad():
            sq = (recon.clamp(0, 1) - pixels).pow(2).mean(1, keepdim=True)  # (N, 1, S, S)
            fg_mse = (sq * fg_mask).sum() / fg_mask.sum().clamp(min=1.0)
        return loss, {"probe_mse": sq.mean().item(), "probe_fg_mse": fg_mse.item()}


def previous_in_episode(x: torch.Tensor, is_first: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) -> x at t-1, or x at t itself where `is_first[:, t]` (nothing came before).

    Used for multi-frame inputs: a single CartPole frame shows positions but not velocities, so the
    decoder-free families read earlier frames too (MuZero's Atari networks stack 32 frames).
    """
    prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    keep = is_first.view(*is_first.shape, *([1] * (x.dim() - 2)))
    return torch.where(keep, x, prev)


def unroll_mask(is_first: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool -> (B, T, steps + 1) bool: True where t + k is inside the window and in t's episode.

    Rollouts start at every t and run k = 0..steps; one that reaches the window's end or the start of
    another episode stops counting there.
    """
    B, T = is_first.shape
    pad = torch.ones(B, steps, dtype=torch.bool, device=is_first.device)
    firsts = torch.cat([is_first, pad], dim=1)  # (B, T + steps): past the window counts as a boundary
    ok = [torch.ones(B, T, dtype=torch.bool, device=is_first.device)]
    for k in range(1, steps + 1):
        ok.append(ok[-1] & ~firsts[:, k : k + T])
    return torch.stack(ok, dim=-1)


def shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, T, ...) -> x[:, t + k] at position t, zero-padded past the window's end."""
    if k == 0:
        return x
    pad = torch.zeros_like(x[:, :k])
    return torch.cat([x[:, k:], pad], dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the entries where mask holds (0 when none does)."""
    mask = mask.float()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def vicreg_terms(z: torch.Tensor, std_target: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's variance hinge and covariance penalty (Bardes et al. 2022) on embeddings (N, D)."""
    z = z - z.mean(0)
    std = (z.var(0) + 1e-4).sqrt()
    variance = F.relu(std_target - std).mean()
    cov = (z.T @ z) / max(z.shape[0] - 1, 1)  # (D, D)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return variance, off_diagonal.pow(2).sum() / z.shape[1]


# ---- value targets (MuZero) ------------------------------------------------------------------------
EPS = 1e-3  # epsilon of the value transform (Pohlen et al. 2018)


def value_transform(x: torch.Tensor) -> torch.Tensor:
    """h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x: squashes large returns (MuZero Appendix F)."""
    return x.sign() * ((x.abs() + 1).sqrt() - 1) + EPS * x


def inverse_value_transform(y: torch.Tensor) -> torch.Tensor:
    """The exact inverse of `value_transform` (Pohlen et al. 2018, Proposition A.2)."""
    a = y.abs() + 1 + EPS
    inner = 2 * a / ((1 + 4 * EPS * a).sqrt() + 1)  # = (sqrt(1 + 4 eps a) - 1) / (2 eps), without cancellation
    return y.sign() * (inner.pow(2) - 1)


def n_step_returns(
    rew: torch.Tensor, value: torch.Tensor, first: torch.Tensor, term: torch.Tensor, n: int, discount: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """n-step value targets (B, T) inside a window, and where they exist (B, T) bool.

    z_t = sum_{i=1..m} discount^(i-1) rew[t+i] + discount^m value[t+m], with m <= n cut where t's episode
    ends inside the window: at a terminal the bootstrap is 0, at the window's end it is the last value.
    A non-terminal t with no step after it in the window has no target.
    """
    nxt_first = F.pad(first, (0, n), value=True)  # past the window counts as another episode
    nxt_term, nxt_rew, nxt_val = F.pad(term, (0, n)), F.pad(rew, (0, n)), F.pad(value, (0, n))
    T = rew.shape[1]
    ret = torch.zeros_like(rew)
    gain = torch.ones_like(rew)
    boot = torch.where(term, torch.zeros_like(value), value)
    alive, steps = ~term, torch.zeros_like(rew)
    for i in range(1, n + 1):
        ok = alive & ~nxt_first[:, i : i + T]
        ret = ret + ok * gain * nxt_rew[:, i : i + T]
        gain = torch.where(ok, gain * discount, gain)
        ended = nxt_term[:, i : i + T]
        boot = torch.where(ok, torch.where(ended, torch.zeros_like(boot), nxt_val[:, i : i + T]), boot)
        steps = steps + ok
        alive = ok & ~ended
    return ret + gain * boot, (steps > 0) | term

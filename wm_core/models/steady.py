"""Layers whose result for one row (or one image) of a batch does not depend on the rest of the batch, bit for
bit: a player's dream stepped alone then gives exactly what it gives stepped together with other players'
(`Dream.step_together`). Each has the same parameters as its torch original, so checkpoints load unchanged."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

_ROWS: dict[tuple[str, int], int] = {}
ROW_STEPS = (1, 2, 4, 8, 16)  # the row multiples `row_multiple` tries


def row_multiple(device: torch.device) -> int:
    """The row count whose multiples make each row of a matrix product on `device` come out bit for bit the same
    whatever the other rows and their number. Matrix libraries run a block of rows at a time and handle the
    rows left over in another kernel (a matrix-vector product for one row) that adds up in another order, so a
    player's dream stepped alone would differ in the last bits from the same dream stepped in a batch. On this
    project's CPU it is 4 (with one thread or two). Measured once per device type and thread count on a few
    layer shapes, single outputs (reward heads) included; 1 where no multiple up to 16 does it (then batched
    and lone steps may differ in the last bits)."""
    key = (device.type, torch.get_num_threads())
    if key not in _ROWS:
        g, found = torch.Generator().manual_seed(0), []
        for k, n in ((35, 256), (256, 512), (1024, 64), (256, 1), (512, 3)):
            w, b, x = (torch.randn(*shape, generator=g).to(device) for shape in ((n, k), (n,), (96, k)))
            found.append(_steady_multiple(lambda rows, w=w, b=b: F.linear(rows, w, b), x, ROW_STEPS))
        # a multiple of a shape's steady count is steady for it too (the counts double): the largest serves all
        _ROWS[key] = 1 if None in found else max(found)
    return _ROWS[key]


def _steady_multiple(
    run: Callable[[torch.Tensor], torch.Tensor], probe: torch.Tensor, steps: tuple[int, ...]
) -> int | None:
    """The first of `steps` whose every multiple, up to half of `probe`'s rows, gives slices of `probe` exactly
    the rows `run` gives them inside the whole probe; None where none does."""
    with torch.no_grad():
        full = run(probe)
        half = probe.shape[0] // 2
        for q in steps:
            if all(torch.equal(run(probe[m : 2 * m]), full[m : 2 * m]) for m in range(q, half + 1, q)):
                return q
    return None


def padded_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """`x` (M, ...) with zero rows appended up to the next multiple of `rows`."""
    extra = -x.shape[0] % rows
    return torch.cat([x, x.new_zeros(extra, *x.shape[1:])]) if extra else x


def steady_rows(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`forward` over the rows of `x` (..., in), padded with zero rows to a multiple of `row_multiple` first, so
    each row's result does not depend on how many others share the batch."""
    lead = x.shape[:-1]
    m, rows = lead.numel(), row_multiple(x.device)
    if m % rows == 0:
        return forward(x)
    return forward(padded_rows(x.reshape(m, x.shape[-1]), rows))[:m].reshape(*lead, -1)


class Linear(nn.Linear):
    """`nn.Linear` whose every output row is what it would be in any other batch: the rows are padded with zero
    rows to a multiple of `row_multiple` first. A player's batch-1 dream step then gives exactly the frame the
    same player gets stepped together with others. Same parameters as `nn.Linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return steady_rows(super().forward, x)


class GRUCell(nn.GRUCell):
    """`nn.GRUCell` with `Linear`'s row padding (batched inputs (B, in) only)."""

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        m, rows = x.shape[0], row_multiple(x.device)
        if x.dim() != 2 or m % rows == 0:
            return super().forward(x, hx)
        hx = hx if hx is not None else x.new_zeros(m, self.hidden_size)
        return super().forward(padded_rows(x, rows), padded_rows(hx, rows))[:m]


class LSTMCell(nn.LSTMCell):
    """`nn.LSTMCell` with `Linear`'s row padding (batched inputs (B, in) only)."""

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m, rows = x.shape[0], row_multiple(x.device)
        if x.dim() != 2 or m % rows == 0:
            return super().forward(x, hx)
        h, c = hx if hx is not None else (x.new_zeros(m, self.hidden_size),) * 2
        h, c = super().forward(padded_rows(x, rows), (padded_rows(h, rows), padded_rows(c, rows)))
        return h[:m], c[:m]


_CONV_BATCH: dict[tuple, int] = {}
CONV_STEPS = (1, 2, 4, 8)  # the batch multiples `_SteadyConv` tries


class _SteadyConv:
    """For convolutions: each image's output the same whatever else is in the batch. Convolution libraries pick
    their algorithm by batch size and split a batch between threads, so an image's output could differ in the
    last bits between a batch of one and a batch of five (measured: 3x3 convolutions on 8x8 and 16x16 maps for a
    batch of one; transposed convolutions for odd batches with two threads). Once per layer shape, input shape
    and layout, thread count and autocast state, the layer runs a probe batch of 24 and slices of it of every
    multiple of 1, 2, 4 or 8 images up to 12; the smallest multiple whose slices all match the probe is then used
    to pad every batch (with zero images) from there on. Where none does, batches run as given."""

    def _multiple(self, x: torch.Tensor) -> int:
        # The libraries choose kernels by memory layout too (pixels from `to_pixels` arrive channels-last).
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        key = (type(self), tuple(self.weight.shape), self.stride, self.padding, self.dilation, self.groups,
               self.padding_mode, tuple(x.shape[1:]), x.dtype, x.device.type, torch.get_num_threads(),
               torch.is_autocast_enabled(x.device.type), layout,
               self.weight.is_contiguous(memory_format=torch.channels_last))  # fmt: skip
        if key not in _CONV_BATCH:
            g = torch.Generator().manual_seed(0)
            probe = torch.randn(24, *x.shape[1:], generator=g).to(x.device, x.dtype).contiguous(memory_format=layout)
            _CONV_BATCH[key] = _steady_multiple(super().forward, probe, CONV_STEPS) or 1  # type: ignore[misc]
        return _CONV_BATCH[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        q = self._multiple(x) if x.dim() == 4 else 1
        if n % q == 0:
            return super().forward(x)  # type: ignore[misc]
        return super().forward(padded_rows(x, q))[:n]  # type: ignore[misc]


class Conv2d(_SteadyConv, nn.Conv2d):
    """`nn.Conv2d` whose every image's output is what it would be in any other batch (see `_SteadyConv`). Same
    parameters."""


class ConvTranspose2d(_SteadyConv, nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` whose every image's output is what it would be in any other batch (see `_SteadyConv`).
    Same parameters."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None:
            return nn.ConvTranspose2d.forward(self, x, output_size)
        return _SteadyConv.forward(self, x)

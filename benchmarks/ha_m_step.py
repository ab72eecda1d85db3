"""The `ha` family's M step alone: forward and backward of the MDN-RNN's LSTM over a training batch, stepping the
LSTMCell frame by frame (the reference) against the fused sequence the family trains with.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/ha_m_step.py [--repeats 30]

Prints milliseconds (median of the repeats) per preset, with one episode start inside each window row (as sampled
CartPole data holds) and with none (long episodes: Pong, CarRacing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wm_core.memory import keep_freed_memory  # noqa: E402
from wm_core.models.ha import VaeMdnRnn  # noqa: E402
from wm_core.spec import ActionSpec  # noqa: E402


def median_ms(fn, model: VaeMdnRnn, zs: torch.Tensor, act: torch.Tensor, first: torch.Tensor, repeats: int) -> float:
    """Median wall milliseconds of forward + backward (three warm-up calls not counted)."""
    times = []
    for i in range(repeats + 3):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        fn(model, zs, act, first).square().mean().backward()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    keep_freed_memory()  # as `wm train` does: freed activations are reused, not page-faulted in again
    torch.manual_seed(0)
    spec = ActionSpec("discrete", 2, names=("left", "right"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    print("| preset | batch | hidden | episode starts inside windows | stepwise ms | fused ms | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for preset in ("small", "large"):
        model = VaeMdnRnn(VaeMdnRnn.preset(preset), spec).train()
        c = model.config
        B, T = c.batch_size, c.seq_len
        zs = torch.randn(B, T, c.z_dim)
        act = spec.encode(torch.randint(0, 2, (B, T)).numpy()).float()
        for label in ("one per row", "none"):
            first = torch.zeros(B, T, dtype=torch.bool)
            first[:, 0] = True
            if label == "one per row":
                first[torch.arange(B), torch.randint(1, T, (B,))] = True
            ref = median_ms(VaeMdnRnn._m_stepwise, model, zs, act, first, args.repeats)
            fused = median_ms(VaeMdnRnn._m_sequence, model, zs, act, first, args.repeats)
            print(f"| {preset} | {B}x{T} | {c.hidden} | {label} | {ref:.1f} | {fused:.1f} | {ref / fused:.2f}x |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

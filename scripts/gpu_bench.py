"""The GPU check: every family's small and large preset on this machine's GPU, in one table, in a few minutes.

    python scripts/gpu_bench.py            # prints a markdown table for docs/results/scale.md

For each family and preset: training steps/s and frames/s in fp32 and under bf16 autocast (a few dozen steps on
random batches of the preset's size), peak GPU memory, and batch-1 dream steps per second (imagine + decode +
the frame's bytes, as the Play tab does). Refuses with one line where torch sees no CUDA GPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu_bench: torch sees no CUDA GPU here; run it on a machine with one", file=sys.stderr)
        return 2
    from wm_core.bench import _dream_latency, _train_step_seconds
    from wm_core.registry import FAMILIES, get_family
    from wm_core.spec import ActionSpec

    dev, spec, t0 = torch.device("cuda"), ActionSpec("discrete", 2, names=("left", "right")), time.perf_counter()
    print(f"{torch.cuda.get_device_name(0)} · torch {torch.__version__}\n")
    print("| family | preset | batch | fp32 steps/s | bf16 steps/s | bf16 frames/s | peak GPU MiB | dream steps/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in sorted(FAMILIES):
        for preset in ("small", "large"):
            cls = get_family(name)
            cfg = cls.preset(preset)
            torch.cuda.reset_peak_memory_stats()
            rates = []
            for bf16 in (False, True):
                model = cls(cfg, spec).to(dev).to(memory_format=torch.channels_last)
                rates.append(1 / _train_step_seconds(model, spec, 30, dev, bf16))
            peak = torch.cuda.max_memory_allocated() / 2**20
            p50, _ = _dream_latency(model.eval(), 100, dev)
            frames = cfg.batch_size * cfg.seq_len * rates[1]
            print(
                f"| {name} | {preset} | {cfg.batch_size}x{cfg.seq_len} | {rates[0]:.1f} | {rates[1]:.1f} | "
                f"{frames:,.0f} | {peak:,.0f} | {1000 / p50:,.0f} |",
                flush=True,
            )
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

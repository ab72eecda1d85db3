"""The GPU check: every family's small and large preset on this machine's GPU, in one table, in a few minutes.

    python scripts/gpu_bench.py                 # prints markdown for docs/results/scale.md
    python scripts/gpu_bench.py --steps 300     # more steps per measurement (each still capped at --seconds)

For each family and preset: training steps/s and frames/s in fp32 and under bf16 autocast (up to `--steps` steps,
at most `--seconds` each, on random batches of the preset's size, weights channels-last), peak GPU memory, and
batch-1 dream steps per second (imagine + decode + the frame's bytes, as the Play tab does). Then the device paths
on the shipped CartPole checkpoints: `wm dream --device cuda` and `wm eval --device cuda` (4 held-out episodes),
then `wm agent train` (half a minute from scratch) and `wm agent eval` on cuda, each a line that says ok with its
numbers, or the error. Refuses with one line where torch sees no CUDA GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHIPPED = ("ha-cartpole", "dreamer-cartpole", "jepa-cartpole", "muzero-cartpole")


def training_table(steps: int, seconds: float) -> None:
    """One markdown row per family and preset, printed as each is measured."""
    import torch

    from wm_core.bench import _dream_latency, _train_step_seconds
    from wm_core.registry import FAMILIES, get_family
    from wm_core.spec import ActionSpec

    dev, spec = torch.device("cuda"), ActionSpec("discrete", 2, names=("left", "right"))
    head = ("family", "preset", "params", "batch", "fp32 steps/s", "bf16 steps/s", "bf16 frames/s", "peak GPU MiB",
            "dream steps/s")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sorted(FAMILIES):
        for preset in ("small", "large"):
            cls = get_family(name)
            cfg = cls.preset(preset)
            torch.cuda.reset_peak_memory_stats()
            rates = []
            for bf16 in (False, True):
                model = cls(cfg, spec).to(dev).to(memory_format=torch.channels_last)
                rates.append(1 / _train_step_seconds(model, spec, steps, dev, bf16, seconds))
            peak = torch.cuda.max_memory_allocated() / 2**20
            p50, _ = _dream_latency(model.eval(), 100, dev)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            frames = cfg.batch_size * cfg.seq_len * rates[1]
            print(
                f"| {name} | {preset} | {params:.1f}M | {cfg.batch_size}x{cfg.seq_len} | {rates[0]:.1f} | "
                f"{rates[1]:.1f} | {frames:,.0f} | {peak:,.0f} | {1000 / p50:,.0f} |",
                flush=True,
            )
            del model
            torch.cuda.empty_cache()


def agent_paths() -> None:
    """`wm agent train` (a short run from scratch) and `wm agent eval` (the shipped agent) with `--device cuda`."""
    import subprocess

    wm = [sys.executable, "-m", "wm_core.cli", "agent"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "agent train": [*wm, "train", f"{tmp}/run", "--env", "CartPole-v1", "--device", "cuda", "--minutes",
                            "0.5", "--eval-episodes", "2"],
            "agent eval": [*wm, "eval", str(ROOT / "checkpoints" / "dreamer-cartpole-agent"), "--device", "cuda",
                           "--episodes", "3"],
        }  # fmt: skip
        for name, cmd in runs.items():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
            last = (proc.stdout.strip().splitlines() or [""])[-1]
            if proc.returncode == 0:
                print(f"- wm {name} --device cuda ok ({time.perf_counter() - t0:.0f} s): {last}", flush=True)
            else:
                print(f"- wm {name} --device cuda FAILED: {proc.stderr.strip()[-600:]}", flush=True)


def device_paths() -> None:
    """`wm dream` and `wm eval` on the GPU with the shipped CartPole checkpoints: one line each."""
    from wm_core.evaluation.report import evaluate_checkpoint
    from wm_core.interactive.recording import record_dream

    print()
    for name in SHIPPED:
        run = ROOT / "checkpoints" / name
        if not (run / "checkpoint.json").exists():
            print(f"- {name}: not shipped here")
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                dream = record_dream(run, Path(tmp) / "dream.gif", steps=60, device="cuda")
            card = evaluate_checkpoint(run, episodes=4, device="cuda").card
            k5 = next(r for r in card["open_loop"] if r["k"] == 5)
            print(f"- {name}: dream on cuda ok ({dream['ms_per_step']:.1f} ms per step); eval on cuda ok "
                  f"(k=5 PSNR {k5['model']['psnr']:.1f} dB over {k5['episodes']} episodes)", flush=True)  # fmt: skip
        except Exception as e:  # noqa: BLE001 -- report every path, do not stop at the first failure
            print(f"- {name}: FAILED on cuda: {type(e).__name__}: {e}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, refuse without a GPU, print the table and the device-path lines."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200, help="training steps per measurement (default 200)")
    p.add_argument("--seconds", type=float, default=6.0, help="cap on each measurement's seconds (default 6)")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_bench: torch sees no CUDA GPU here; run it on a machine with one", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    print(f"{torch.cuda.get_device_name(0)} · torch {torch.__version__} · up to {args.steps} steps / "
          f"{args.seconds:g} s per measurement\n")  # fmt: skip
    training_table(args.steps, args.seconds)
    device_paths()
    agent_paths()
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU check: every family's small and large preset on this machine's GPU, in one table, in a few minutes.

    python scripts/gpu_bench.py                 # prints markdown for docs/results/scale.md
    python scripts/gpu_bench.py --steps 300     # more steps per measurement (each still capped at --seconds)

For each family and preset: parameters, training steps/s and frames/s in fp32 and under bf16 autocast (up to
`--steps` steps, at most `--seconds` each, on random batches of the preset's size, weights channels-last), peak
GPU memory, and batch-1 dream steps per second (imagine + decode + the frame's bytes, as the Play tab does). Then
the device paths on the shipped CartPole checkpoints: `wm dream` and `wm eval` (4 held-out episodes) on the GPU,
then `wm agent train` (half a minute from scratch) and `wm agent eval`, each a line that says ok with its numbers,
or the error; the exit code is 1 when any path failed. Refuses with one line where torch sees no CUDA GPU.

`--device cpu` with `--family`, `--preset` and `--checkpoint` runs the same code on the CPU, small, as a dry run
(the tests do, so the script a GPU machine runs has run before).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHIPPED = ("ha-cartpole", "dreamer-cartpole", "jepa-cartpole", "muzero-cartpole")


def training_table(device: str, families: list[str], presets: list[str], steps: int, seconds: float) -> None:
    """One markdown row per family and preset, printed as each is measured."""
    import torch

    from wm_core.bench import _dream_latency, _train_step_seconds
    from wm_core.registry import get_family
    from wm_core.spec import ActionSpec

    dev, spec = torch.device(device), ActionSpec("discrete", 2, names=("left", "right"))
    cuda = dev.type == "cuda"
    head = ("family", "preset", "params", "batch", "fp32 steps/s", "bf16 steps/s", "bf16 frames/s", "peak GPU MiB",
            "dream steps/s")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in families:
        for preset in presets:
            cls = get_family(name)
            cfg = cls.preset(preset)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            rates = []
            for bf16 in (False, True):
                model = cls(cfg, spec).to(dev).to(memory_format=torch.channels_last)
                rates.append(1 / _train_step_seconds(model, spec, steps, dev, bf16, seconds))
            peak = f"{torch.cuda.max_memory_allocated() / 2**20:,.0f}" if cuda else "-"
            p50, _ = _dream_latency(model.eval(), 100, dev)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            frames = cfg.batch_size * cfg.seq_len * rates[1]
            print(
                f"| {name} | {preset} | {params:.1f}M | {cfg.batch_size}x{cfg.seq_len} | {rates[0]:.1f} | "
                f"{rates[1]:.1f} | {frames:,.0f} | {peak} | {1000 / p50:,.0f} |",
                flush=True,
            )
            del model
            if cuda:
                torch.cuda.empty_cache()


def device_paths(device: str, checkpoints: list[str]) -> int:
    """`wm dream` and `wm eval` on `device` with shipped checkpoints: one line each; returns the failures."""
    from wm_core.evaluation.report import evaluate_checkpoint
    from wm_core.interactive.recording import record_dream

    print()
    failed = 0
    for name in checkpoints:
        run = ROOT / "checkpoints" / name
        if not (run / "checkpoint.json").exists():
            print(f"- {name}: not shipped here")
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                dream = record_dream(run, Path(tmp) / "dream.gif", steps=60, device=device)
            card = evaluate_checkpoint(run, episodes=4, device=device).card
            k5 = card.row(5)
            psnr = "n/a" if k5 is None else f"{k5.model.psnr:.1f} dB over {k5.episodes} episodes"
            print(f"- {name}: dream on {device} ok ({dream['ms_per_step']:.1f} ms per step); eval on {device} ok "
                  f"(k=5 PSNR {psnr})", flush=True)  # fmt: skip
        except Exception as e:  # noqa: BLE001 -- report every path, do not stop at the first failure
            print(f"- {name}: FAILED on {device}: {type(e).__name__}: {e}", flush=True)
            failed += 1
    return failed


def agent_paths(device: str, minutes: float) -> int:
    """`wm agent train` (a short run from scratch) and `wm agent eval` (the shipped agent) with `--device`;
    returns the failures."""
    wm, failed = [sys.executable, "-m", "wm_core.cli", "agent"], 0
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "agent train": [*wm, "train", f"{tmp}/run", "--env", "CartPole-v1", "--device", device, "--minutes",
                            str(minutes), "--eval-episodes", "2"],
            "agent eval": [*wm, "eval", str(ROOT / "checkpoints" / "dreamer-cartpole-agent"), "--device", device,
                           "--episodes", "3"],
        }  # fmt: skip
        for name, cmd in runs.items():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
            last = (proc.stdout.strip().splitlines() or [""])[-1]
            if proc.returncode == 0:
                print(f"- wm {name} --device {device} ok ({time.perf_counter() - t0:.0f} s): {last}", flush=True)
            else:
                print(f"- wm {name} --device {device} FAILED: {proc.stderr.strip()[-600:]}", flush=True)
                failed += 1
    return failed


def main(argv: list[str] | None = None) -> int:
    """Parse flags, refuse without a GPU, print the table and the device-path lines."""
    from wm_core.registry import FAMILIES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200, help="training steps per measurement (default 200)")
    p.add_argument("--seconds", type=float, default=6.0, help="cap on each measurement's seconds (default 6)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the same code")
    p.add_argument("--family", action="append", choices=sorted(FAMILIES), help="repeat for several (default: all)")
    p.add_argument("--preset", action="append", choices=["small", "large"], help="default: small and large")
    p.add_argument("--checkpoint", action="append", choices=SHIPPED, help="shipped runs for the device paths")
    p.add_argument("--agent-minutes", type=float, default=0.5, help="budget of the `wm agent train` check")
    args = p.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: torch sees no CUDA GPU here; run it on a machine with one", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (dry run)"
    print(f"{where} · torch {torch.__version__} · up to {args.steps} steps / {args.seconds:g} s per measurement\n")
    training_table(args.device, args.family or sorted(FAMILIES), args.preset or ["small", "large"], args.steps,
                   args.seconds)  # fmt: skip
    failed = device_paths(args.device, args.checkpoint or list(SHIPPED))
    failed += agent_paths(args.device, args.agent_minutes)
    print(f"\n({time.perf_counter() - t0:.0f} s{f', {failed} path(s) FAILED' if failed else ''})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""How far a laptop goes: the object card and PSNR of checkpoints saved along one run, against CPU-minutes.

    python benchmarks/object_curve.py runs/pong-steps            # every RUN-steps/step-N kept by
                                                                 # scripts/keep_checkpoints.py, as a markdown table
    python benchmarks/object_curve.py runs/a runs/b --episodes 8 # or any runs

For each checkpoint: the CPU-minutes its budget records (training; collection is not in a resumable save's
budget), the object card's ball (or moving-object) recall per window of dream steps, the ball error over steps
1-5, the share of held-key steps the paddle follows, and the PSNR of the same held-key dreams against reality at
dream steps 1-5 and 6-15 (the object card's rollouts: 24 held-out seeds by default, temperature 1, one thread;
the card's 8 dreams are noisy there: dreamer-pong's 6-15 recall read 0.79 with 8 and 0.45 with 24).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wm_core import FramePipeline, load_checkpoint  # noqa: E402
from wm_core.evaluation.object_card import measure, object_rollouts  # noqa: E402


def psnr(real: np.ndarray, dream: np.ndarray, valid: np.ndarray, lo: int, hi: int) -> float:
    """Mean PSNR (dB) of the dreamed frames against the real ones over dream steps lo..hi."""
    r, d = real[:, lo - 1 : hi].astype(np.float32) / 255, dream[:, lo - 1 : hi].astype(np.float32) / 255
    mse = ((r - d) ** 2).mean(axis=(2, 3, 4))[valid[:, lo - 1 : hi]]
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def row(run: Path, episodes: int) -> dict:
    """One checkpoint's point on the curve."""
    model, meta = load_checkpoint(run)
    pipeline = FramePipeline.from_json(meta["pipeline"])
    r = object_rollouts(model, meta["env_id"], pipeline, episodes, 50)
    card = measure(r, meta["env_id"], pipeline)
    recall = card.ball_recall if card.ball_recall is not None else card.moving_recall
    return {
        "run": str(run),
        "step": meta["step"],
        "cpu_min": (meta.get("budget") or {}).get("cpu_seconds", float("nan")) / 60,
        "what": "ball" if card.ball_recall is not None else "moving objects",
        "recall": recall,
        "ball_error": card.ball_error[0] if card.ball_error else None,
        "paddle_follows": card.paddle_follows,
        "psnr": [psnr(r.real, r.dream, r.valid, lo, hi) for lo, hi in ((1, 5), (6, 15))],
    }


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="runs, or folders of step-N runs (RUN-steps)")
    p.add_argument("--episodes", type=int, default=24, help="held-key dreams per checkpoint (8 read +-0.15 apart)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for path in args.runs:
        kept = sorted(path.glob("step-*/checkpoint.json"), key=lambda f: int(f.parent.name.split("-")[1]))
        runs += [f.parent for f in kept] or [path]
    rows = [row(run, args.episodes) for run in runs]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        "| checkpoint | step | CPU-min | recall 1-5 / 6-15 / 16-30 / 31-50 | ball error px 1-5 | paddle follows "
        "| PSNR 1-5 / 6-15 (dB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['step']} | {r['cpu_min']:.1f} | {r['what']} "
              f"{' / '.join(fmt(x) for x in r['recall'])} | {fmt(r['ball_error'], '.1f')} "
              f"| {fmt(r['paddle_follows'])} | {' / '.join(fmt(x, '.1f') for x in r['psnr'])} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real beside dream, frame by frame: a strip per world for looking at before believing the object card.

    python scripts/object_strips.py checkpoints/diffusion-pong [more runs] [--out docs/screenshots/worlds]
        [--steps 1 5 15 30 60 90] [--episodes 2] [--card]

For each run: held keys drive the real env and the dream from the same five real frames (the object card's
rollouts, held-out seeds); the strip shows reality on top and the dream below at the chosen dream steps, one
pair of rows per episode, 4x enlarged (STRIP-RUN.png). `--card` also prints the object card of those dreams.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wm_core import FramePipeline, load_checkpoint  # noqa: E402
from wm_core.evaluation.object_card import format_objects, measure, object_rollouts  # noqa: E402

SCALE, GAP, LABEL = 4, 4, 14


def strip(real: np.ndarray, dream: np.ndarray, steps: list[int]) -> Image.Image:
    """Rows real/dream per episode (E, T, H, W, 3) at the given dream steps (1-based), labelled."""
    E, _, H, W, _ = real.shape
    cell_w, cell_h = W * SCALE + GAP, H * SCALE + GAP
    img = Image.new("RGB", (48 + len(steps) * cell_w, LABEL + 2 * E * cell_h), "white")
    draw = ImageDraw.Draw(img)
    for j, k in enumerate(steps):
        draw.text((48 + j * cell_w, 1), f"step {k}", fill="black")
    for e in range(E):
        for i, (name, frames) in enumerate((("real", real), ("dream", dream))):
            y = LABEL + (2 * e + i) * cell_h
            draw.text((2, y + cell_h // 2 - 6), name, fill="black")
            for j, k in enumerate(steps):
                big = np.kron(frames[e, k - 1], np.ones((SCALE, SCALE, 1), np.uint8))
                img.paste(Image.fromarray(big), (48 + j * cell_w, y))
    return img


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="docs/screenshots/worlds")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 5, 15, 30, 60, 90])
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--card", action="store_true", help="print the object card of these dreams")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        model, meta = load_checkpoint(run)
        pipeline = FramePipeline.from_json(meta["pipeline"])
        r = object_rollouts(model, meta["env_id"], pipeline, args.episodes, max(args.steps))
        path = out / f"strip-{Path(run).resolve().name}.png"
        strip(r.real, r.dream, args.steps).save(path)
        print(f"{run}: {path}")
        if args.card:
            print("\n".join(format_objects(measure(r, meta["env_id"], pipeline))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

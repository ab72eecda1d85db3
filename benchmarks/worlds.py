"""The shipped world models in one table: what each cost to make, how fast it dreams, and its card's headline.

    python benchmarks/worlds.py                          # every checkpoint under ./checkpoints
    python benchmarks/worlds.py --checkpoint-dir runs    # any directory of runs (DIR/*/checkpoint.json)
    python benchmarks/worlds.py --threads 1 --steps 200  # dream speed with one torch thread, longer timing

Columns: CPU-minutes and peak RSS of the command that made the checkpoint (recorded in its budget); dream
frames/s at batch 1 with the family's default play settings (a real context, then `--steps` dream steps with
random actions, timed after 10 warm-up steps, in this process); and from the `report.json` that `wm eval`
wrote beside it: plain PSNR of model / copy-last-frame / mean-frame at k = 5 and 15, foreground MSE at k = 5
against copy-last, ΔtPSNR ± its standard error, and the inverse-dynamics score on dreamed vs real frames.
Numbers are only comparable on the same idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def dream_fps(run: Path, steps: int) -> float:
    """Dream steps per second at batch 1 from a real context, random actions."""
    import numpy as np

    from wm_core import Dream, load_checkpoint, make_env
    from wm_core.data.collect import real_context
    from wm_core.spec import FramePipeline

    model, meta = load_checkpoint(run)
    env = make_env(meta["env_id"], FramePipeline.from_json(meta["pipeline"]))
    rng = np.random.default_rng(0)
    frames, acts, *_ = real_context(env, model.action_spec, rng, 5)
    env.close()
    dream = Dream(model)
    dream.reset(frames, acts)
    for _ in range(10):
        dream.step(model.action_spec.sample(rng))
    t0 = time.perf_counter()
    for _ in range(steps):
        dream.step(model.action_spec.sample(rng))
    return steps / (time.perf_counter() - t0)


def headline(card: dict) -> dict:
    """The card's numbers at k = 5 and 15 and its controllability."""
    rows = {r["k"]: r for r in card.get("open_loop", []) if r.get("episodes")}
    out = {}
    for k in (5, 15):
        r = rows.get(k)
        out[f"psnr{k}"] = None if r is None else tuple(r[n]["psnr"] for n in ("model", "copy_last", "mean_frame"))
    r5 = rows.get(5)
    out["fg5"] = None if r5 is None else (r5["model"]["fg_mse"], r5["copy_last"]["fg_mse"])
    ctrl = card.get("controllability") or {}
    d, idm = ctrl.get("delta", {}), ctrl.get("inverse_dynamics", {})
    out["delta"] = (d.get("delta_psnr"), d.get("stderr"))
    out["idm"] = (idm.get("dream"), idm.get("real"))
    out["idm_ratio"] = idm.get("ratio")
    out["blind"] = ctrl.get("action_blind")
    from wm_core import ModelCard
    from wm_core.evaluation.card import verdict

    checks = verdict(ModelCard.from_json(card)) if card.get("open_loop") else []
    out["failed"] = [c["check"] for c in checks if c["passed"] is False]
    out["bar"] = None if not checks else sum(c["passed"] is True for c in checks)
    out["checks"] = len(checks)
    out["objects"] = objects_cell(card.get("objects"))
    return out


def objects_cell(objects: dict | None) -> str:
    """The object card in one cell: ball recall per window of dream steps, or the car's presence; n/a without."""
    if not objects:
        return "n/a"
    if objects.get("ball_recall"):
        return "ball " + " / ".join(fmt(x, ".2f") for x in objects["ball_recall"])
    if objects.get("car_present") is not None:
        return f"car in every frame {objects['car_present']:.0%}"
    return "moving " + " / ".join(fmt(x, ".2f") for x in objects.get("moving_recall", []))


def fmt(x, spec: str = ".1f") -> str:
    """A number, or n/a."""
    return "n/a" if x is None else format(x, spec)


def main() -> None:
    """Print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint-dir", default=str(ROOT / "checkpoints"))
    p.add_argument("--steps", type=int, default=100, help="timed dream steps per model")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="a markdown table with the card's bar, for docs/results")
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for meta_path in sorted(Path(args.checkpoint_dir).glob("*/checkpoint.json")):
        run = meta_path.parent
        meta = json.loads(meta_path.read_text())
        report = run / "report.json"
        card = json.loads(report.read_text()) if report.exists() else {}
        b = meta.get("budget", {})
        rows.append(
            {
                "run": run.name,
                "family": meta["family"],
                "env": meta["env_id"],
                "cpu_min": b.get("cpu_seconds", 0) / 60 if b.get("cpu_seconds") else None,
                "rss_gb": b.get("peak_rss_mb", 0) / 1024 if b.get("peak_rss_mb") else None,
                "fps": dream_fps(run, args.steps),
                **headline(card),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if args.markdown:
        print(markdown(rows))
        return
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    head = (
        f"{'checkpoint':<26} {'CPU-min':>7} {'RSS GB':>6} {'dream fps':>9} | {'PSNR k=5 model/copy/mean':>25} "
        f"{'PSNR k=15 model/copy/mean':>26} | {'fg-MSE k=5 model/copy':>22} | {'ΔtPSNR':>13} | {'IDM dream/real':>14}"
    )
    print(head)
    for r in rows:
        c = cells(r, "/")
        print(
            f"{r['run']:<26} {fmt(r['cpu_min']):>7} {fmt(r['rss_gb'], '.2f'):>6} {r['fps']:>9.1f} | {c['p5']:>25} "
            f"{c['p15']:>26} | {c['fg']:>22} | {c['delta']:>13} | {c['idm']:>14}"
        )


def cells(r: dict, sep: str) -> dict[str, str]:
    """A row's card numbers as text: PSNR triples, foreground MSE pair, ΔtPSNR ± error, reader dream / real."""
    joined = lambda xs, spec=".1f": sep.join(fmt(x, spec) for x in xs) if xs else "n/a"  # noqa: E731
    d, se = r["delta"]
    return {
        "p5": joined(r["psnr5"]),
        "p15": joined(r["psnr15"]),
        "fg": joined(r["fg5"], ".4f"),
        "delta": "n/a" if d is None else f"{d:+.2f} ± {fmt(se, '.2f')}",
        "idm": joined(r["idm"], ".2f") + (" (n/a)" if r["idm_ratio"] is None else ""),
    }


def markdown(rows: list[dict]) -> str:
    """The table as markdown, with the object card's headline and how many of the playable-world bar's checks pass
    and which fail."""
    lines = [
        "| checkpoint | CPU-min | peak RSS GB | dream fps | PSNR k=5 model / copy / mean "
        "| PSNR k=15 model / copy / mean | fg-MSE k=5 model / copy | ΔtPSNR (dB) | inverse dynamics dream / real "
        "| objects (recall, steps 1-5 / 6-15 / 16-30 / 31-50) | bar | fails |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = cells(r, " / ")
        bar = "n/a" if r["bar"] is None else f"{r['bar']}/{r['checks']}" + (" ACTION-BLIND" if r["blind"] else "")
        lines.append(
            f"| {r['run']} | {fmt(r['cpu_min'])} | {fmt(r['rss_gb'], '.2f')} | {r['fps']:.0f} | {c['p5']} | {c['p15']} "
            f"| {c['fg']} | {c['delta']} | {c['idm']} | {r['objects']} | {bar} | {'; '.join(r['failed']) or '–'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

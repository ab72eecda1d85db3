"""Screenshots of each shipped world after about 50 key-driven dream steps, taken in headless Chromium.

    python scripts/world_shots.py [--checkpoint-dir checkpoints] [--out docs/screenshots/worlds]

For every env with a shipped checkpoint outside CartPole: the Play tab with its pixel-space (`diffusion`)
checkpoint and the real env in lockstep, driven by a fixed key pattern for about 50 dream steps
(PLAY-ENV.png); and the Compare tab with the env's checkpoints beside the real env on one key stream
(COMPARE-ENV.png). Each run is served alone (a temporary directory of links), so it is the first in the lists.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.play_latency import LOCKSTEP_LABEL, launch_app, open_page, quietly, start_first_checkpoint  # noqa: E402

# Keys held in turn for the given frames (at ~30 frames/s): each world gets what drives it visibly.
PATTERNS = {
    "CarRacing-v3": [("ArrowUp", 20), ("ArrowLeft", 8), ("ArrowUp", 10), ("ArrowRight", 8), ("ArrowUp", 6)],
    "ALE/Pong-v5": [("ArrowUp", 12), ("ArrowDown", 20), ("ArrowUp", 10), ("ArrowDown", 10)],
    "ALE/Breakout-v5": [(" ", 4), ("ArrowLeft", 14), ("ArrowRight", 20), ("ArrowLeft", 14)],
}


def drive(page, env_id: str, canvas: str, step_selector: str) -> int:
    """Hold the env's key pattern on `canvas`; returns the step number shown at the end."""
    page.click(canvas)
    for key, frames in PATTERNS[env_id]:
        page.keyboard.down(key)
        page.wait_for_timeout(int(frames * 1000 / 30))
        page.keyboard.up(key)
    page.wait_for_timeout(200)
    return int(page.locator(step_selector).first.inner_text() or 0)


def worlds(checkpoint_dir: Path) -> dict[str, list[Path]]:
    """Runs by env id, pixel-space first, CartPole left out."""
    by_env: dict[str, list[Path]] = {}
    for meta_path in sorted(checkpoint_dir.glob("*/checkpoint.json")):
        meta = json.loads(meta_path.read_text())
        if meta["env_id"] in PATTERNS:
            by_env.setdefault(meta["env_id"], []).append(meta_path.parent)
    for runs in by_env.values():
        runs.sort(key=lambda r: json.loads((r / "checkpoint.json").read_text())["family"] != "diffusion")
    return by_env


def shoot(env_id: str, runs: list[Path], out: Path) -> list[Path]:
    """Serve `runs` alone and take the Play and Compare screenshots of one world."""
    from playwright.sync_api import sync_playwright

    name = env_id.split("/")[-1].split("-")[0].lower()
    with tempfile.TemporaryDirectory(prefix="wm-shots-") as tmp:
        shipped = Path(tmp) / "checkpoints"
        shipped.mkdir()
        for i, run in enumerate(runs):
            (shipped / f"{i}-{run.name}").symlink_to(run.resolve())
        demo, url = launch_app(shipped, Path(tmp) / "runs")
        paths = []
        try:
            with sync_playwright() as p:
                browser, page = open_page(p, url)
                start_first_checkpoint(page)
                page.get_by_label(LOCKSTEP_LABEL).check()
                page.locator("#wm-player canvas.wm-real").wait_for(state="visible", timeout=30_000)
                steps = drive(page, env_id, "#wm-player canvas.wm-dream", "#wm-player .wm-step")
                paths.append(out / f"play-{name}.png")
                page.locator("#wm-player").screenshot(path=str(paths[-1]))
                print(f"{env_id}: Play after {steps} dream steps -> {paths[-1]}", file=sys.stderr)
                if len(runs) > 1:
                    page.get_by_role("tab", name="Compare").click()
                    page.click("#wm-cmp-start")
                    page.wait_for_function(
                        "document.querySelectorAll('#wm-compare .wm-dream-panel').length > 1", timeout=60_000
                    )
                    steps = drive(page, env_id, "#wm-compare canvas.wm-real", "#wm-compare .wm-step")
                    paths.append(out / f"compare-{name}.png")
                    page.locator("#wm-compare").screenshot(path=str(paths[-1]))
                    print(f"{env_id}: Compare after {steps} steps -> {paths[-1]}", file=sys.stderr)
                browser.close()
        finally:
            with quietly():
                demo.close()
    return paths


def main() -> None:
    """Shoot every world found."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint-dir", default=str(ROOT / "checkpoints"))
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots" / "worlds"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for env_id, runs in worlds(Path(args.checkpoint_dir)).items():
        shoot(env_id, runs, out)


if __name__ == "__main__":
    main()

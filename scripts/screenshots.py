"""Screenshots of the app for the docs, taken in headless Chromium at 1280x800.

    python scripts/screenshots.py [--checkpoint-dir checkpoints] [--out docs/screenshots]

play.png: the first checkpoint started with the real env in lockstep, while a key is held.
compare.png: the Compare tab with two shipped CartPole checkpoints beside the real env, keys tapped,
    then "Dream from here" (filmstrip and divergence plot below the live panels).
inspect.png: the Inspect tab after evaluating the first checkpoint on 20 held-out episodes (card, files,
    open-loop grid); inspect-deeper.png: its counterfactual and state-probe figures.
train.png: the Train tab after a tiny training run has finished (progress, curves, preview).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.play_latency import (  # noqa: E402
    LOCKSTEP_LABEL,
    held_keys,
    launch_app,
    open_page,
    quietly,
    start_first_checkpoint,
)


def shoot_play(page, out: Path) -> Path:
    """Start the first checkpoint, lockstep on, hold its last key for a second, and shoot while it is held."""
    env_id = start_first_checkpoint(page)
    page.get_by_label(LOCKSTEP_LABEL).check()
    page.locator("#wm-player canvas.wm-real").wait_for(state="visible", timeout=30_000)
    page.click("#wm-player canvas.wm-dream")
    key = held_keys(env_id)[-1]
    page.keyboard.down(key)
    page.wait_for_timeout(1000)
    path = out / "play.png"
    page.screenshot(path=str(path))
    page.keyboard.up(key)
    return path


def scroll_to(page, selector: str) -> None:
    """Scroll so that `selector` heads the window."""
    page.locator(selector).evaluate("e => window.scrollTo(0, e.getBoundingClientRect().top + scrollY - 16)")


COMPARED = ("dreamer-cartpole", "ha-cartpole")


def shoot_compare(page, out: Path) -> Path:
    """Start Compare on two shipped CartPole checkpoints, tap keys for a while, dream from here, shoot."""
    page.get_by_role("tab", name="Compare").click()
    page.locator("#wm-cmp-runs .remove-all").click()  # the default picks are the first env's; take two CartPoles
    for run in COMPARED:
        page.get_by_label("Runs to compare (up to 4, one env)").click()
        page.get_by_role("option", name=f"{run} (shipped)").click()
    page.click("#wm-cmp-start")
    page.locator("#wm-compare .wm-status").filter(has_text="Hold a key").wait_for(timeout=30_000)
    for _ in range(5):  # a random start can leave the pole too little room for the taps: then reset, retry
        page.click("#wm-compare canvas.wm-real")
        for key in ("ArrowRight", "ArrowLeft", "ArrowLeft", "ArrowRight"):  # short taps: the pole mostly stays up
            page.keyboard.down(key)
            page.wait_for_timeout(120)
            page.keyboard.up(key)
        page.wait_for_timeout(300)
        if "episode ended" not in page.locator("#wm-compare .wm-status").inner_text():
            break
        page.click("#wm-cmp-reset")
        page.locator("#wm-compare .wm-status").filter(has_text="Hold a key").wait_for(timeout=30_000)
    page.click("#wm-cmp-pause")  # freeze the real env where it is, then dream from there
    page.click("#wm-cmp-dream")
    page.locator("#wm-cmp-filmstrip img").wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1500)
    scroll_to(page, "#wm-cmp-info")
    path = out / "compare.png"
    page.screenshot(path=str(path))
    return path


def shoot_inspect(page, out: Path) -> list[Path]:
    """Evaluate the first checkpoint on 20 held-out episodes; shoot the card and the deeper figures."""
    page.get_by_role("tab", name="Inspect").click()
    page.locator("#wm-inspect-episodes input").fill("20")
    page.click("#wm-inspect-run")
    page.locator("#wm-inspect-status").filter(has_text="Evaluated").wait_for(timeout=300_000)
    paths = []
    for selector, name in (("#wm-inspect-status", "inspect.png"), ("#wm-fig-counterfactual", "inspect-deeper.png")):
        scroll_to(page, selector)
        page.wait_for_timeout(1500)  # figures load lazily once scrolled to
        page.screenshot(path=str(out / name))
        paths.append(out / name)
    return paths


def shoot_train(page, out: Path, timeout_s: float) -> Path:
    """Train the default family and env with preset tiny; shoot the tab once the run is done."""
    page.get_by_role("tab", name="Train").click()
    page.locator("#wm-preset label:has-text('tiny')").click()
    # Steps and frames stay blank: the preset's steps, the env's default frames.
    page.click("#wm-train-start")
    message = page.locator("#wm-train-message")
    message.filter(has_text="done").or_(message.filter(has_text="failed")).wait_for(timeout=1000 * timeout_s)
    page.wait_for_timeout(1000)  # the last curves and preview render after the final message
    # Scroll so the Start button heads the window: progress, message, curves and preview fit below it.
    page.locator("#wm-train-start").evaluate("e => window.scrollTo(0, e.getBoundingClientRect().top + scrollY - 16)")
    path = out / "train.png"
    page.screenshot(path=str(path))
    return path


def main() -> None:
    """Parse flags, launch the app, take the screenshots."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint-dir", default=str(ROOT / "checkpoints"), help="runs listed in the Play tab")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where the PNGs go")
    p.add_argument("--train-timeout", type=float, default=300.0, help="seconds to wait for the tiny run")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    demo, url = launch_app(args.checkpoint_dir, tempfile.mkdtemp(prefix="wm-shots-runs-"))
    try:
        with sync_playwright() as pw:
            browser, page = open_page(pw, url)
            try:
                shots = [shoot_play(page, out), shoot_compare(page, out), *shoot_inspect(page, out)]
                shots.append(shoot_train(page, out, args.train_timeout))
            finally:
                browser.close()
    finally:
        with quietly():
            demo.close()
    for s in shots:
        print(s)


if __name__ == "__main__":
    main()

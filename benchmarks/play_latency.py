"""Keypress -> painted-frame latency and frames/s of the Play and Compare tabs, measured in headless Chromium.

    python benchmarks/play_latency.py                        # the app on ./checkpoints, in this process
    python benchmarks/play_latency.py --checkpoint-dir D     # another directory of runs
    python benchmarks/play_latency.py --url http://host:7860/ --json

Starts the first checkpoint in the list, then holds the env's keys one after another (each for --hold
seconds, never a gap, so a key is always held) for --seconds, first with the dream alone, then with the
real env in lockstep. Then, when the list holds a second checkpoint of the same env, the Compare tab
with its default pick (those two dreams + the real env) for --seconds more, switching keys every
--compare-hold seconds (alternating pushes keep CartPole's real pole up longer) and pressing Reset when
the real episode ends; the time from that end to the reset's first frame is left out of frames/s.
Latency comes from the page's own `window.__wmStats.latencies` (common.js: time from a keydown to the
first painted frame whose request was sent after that keydown); frames/s counts the new steps painted
per second while keys are held.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 800}
LOCKSTEP_LABEL = "Real env beside the dream (same keys)"


def quietly():
    """Send Gradio's chatter on stdout (e.g. "Closing server ...") to stderr, keeping stdout for results."""
    return contextlib.redirect_stdout(sys.stderr)


def launch_app(checkpoint_dir: Path | str, runs_dir: Path | str):
    """Build the app and serve it from this process on a free local port; returns (demo, url)."""
    from playground import build_demo, launch

    checkpoint_dir = Path(checkpoint_dir).resolve()  # the app lists (and accepts) the runs by absolute path
    if not any(Path(checkpoint_dir).glob("*/checkpoint.json")):
        sys.exit(f"no checkpoints in {checkpoint_dir}: pass --checkpoint-dir DIR (runs in DIR/*/) or --url")
    demo = build_demo(checkpoint_dir, runs_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with quietly():
        launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def open_page(playwright, url: str):
    """Headless Debian chromium on `url` at 1280x800, once the app has rendered; returns (browser, page)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.wait_for_selector("#wm-start")
    return browser, page


def start_first_checkpoint(page) -> str:
    """Press Start on the dropdown's default (the first checkpoint); returns its env id."""
    page.click("#wm-start")
    # The frame loop's first answer replaces the player's "Pick a checkpoint ..." line.
    page.wait_for_function("!document.querySelector('#wm-player .wm-status').innerText.startsWith('Pick a checkpoint')",
                           timeout=60_000)  # fmt: skip
    info = page.locator("#wm-play-info").inner_text()
    m = re.search(r" on (\S+), step", info)
    if m is None or "Could not start" in info:
        raise SystemExit(f"could not start the first checkpoint: {info!r}")
    return m.group(1)


def held_keys(env_id: str) -> list[str]:
    """The env's single-key bindings, in keymap order (combos are skipped)."""
    import wm_core

    keys = [b.key for b in wm_core.env_entry(env_id).keymap.bindings if "+" not in b.key or b.key == "+"]
    if not keys:
        raise SystemExit(f"{env_id} has no single-key bindings to hold")
    return keys


@dataclass
class Result:
    """One scenario's numbers."""

    scenario: str
    seconds: float
    frames_per_s: float
    latency_median_ms: float | None
    latency_p95_ms: float | None
    latency_samples: int


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def restart_if_ended(page) -> float:
    """Compare holds everything once the real episode ends: press Reset and wait for its first frame;
    returns the seconds spent (0 while the real episode runs)."""
    if page.locator("#wm-compare .wm-real-state").inner_text() != "ended":
        return 0.0
    t0 = time.perf_counter()
    page.click("#wm-cmp-reset")
    page.wait_for_function("document.querySelector('#wm-compare .wm-real-state').innerText !== 'ended'", timeout=30_000)
    page.click("#wm-compare canvas.wm-real")
    return time.perf_counter() - t0


PLAY_CANVAS = "#wm-player canvas.wm-dream"


def measure(page, keys: list[str], seconds: float, hold: float, scenario: str, focus: str = PLAY_CANVAS,
            between=lambda page: 0.0) -> Result:  # fmt: skip
    """Hold `keys` in turn for `seconds` (after a 1 s warm-up) and read the page's stats; `between(page)` runs
    after each key and returns seconds to leave out (e.g. a reset)."""
    page.click(focus)
    page.keyboard.down(keys[0])
    page.wait_for_timeout(1000)  # warm-up: first requests, caches, the JIT
    page.keyboard.up(keys[0])
    between(page)
    page.evaluate("window.__wmStats.latencies.length = 0")
    frames0, t0, i, skipped = page.evaluate("window.__wmStats.frames"), time.perf_counter(), 1, 0.0
    while time.perf_counter() - t0 - skipped < seconds:
        key = keys[i % len(keys)]
        page.keyboard.down(key)
        page.wait_for_timeout(1000 * hold)
        page.keyboard.up(key)
        skipped += between(page)
        i += 1
    elapsed = time.perf_counter() - t0 - skipped
    stats = page.evaluate("({frames: window.__wmStats.frames, latencies: window.__wmStats.latencies.slice()})")
    lat = stats["latencies"]
    return Result(scenario, round(elapsed, 2), round((stats["frames"] - frames0) / elapsed, 1),
                  round(statistics.median(lat), 1) if lat else None,
                  round(percentile(lat, 95), 1) if lat else None, len(lat))  # fmt: skip


def start_compare(page) -> int:
    """Open the Compare tab and press Start on its default pick; returns how many dreams it shows (0 when
    the list has no second checkpoint of the first one's env)."""
    page.get_by_role("tab", name="Compare").click()
    info = page.locator("#wm-cmp-info")
    info.wait_for(timeout=30_000)
    if "press Start" not in info.inner_text():
        return 0
    page.click("#wm-cmp-start")
    page.wait_for_function("document.querySelectorAll('#wm-compare .wm-dream-panel').length > 0", timeout=60_000)
    return page.locator("#wm-compare .wm-dream-panel").count()


def run(url: str, seconds: float, hold: float, compare_hold: float) -> tuple[str, list[Result]]:
    """The Play scenarios, then Compare when it has two dreams, on one page; returns (env id, results)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p, url)
        try:
            env_id = start_first_checkpoint(page)
            keys = held_keys(env_id)
            results = [measure(page, keys, seconds, hold, "dream only")]
            page.get_by_label(LOCKSTEP_LABEL).check()
            page.locator("#wm-player canvas.wm-real").wait_for(state="visible", timeout=30_000)
            results.append(measure(page, keys, seconds, hold, "dream + real env (lockstep)"))
            dreams = start_compare(page)
            if dreams >= 2:
                results.append(measure(page, keys, seconds, compare_hold, f"compare: {dreams} dreams + real env",
                                       focus="#wm-compare canvas.wm-real", between=restart_if_ended))  # fmt: skip
            else:
                print("compare scenario skipped: the list has no second checkpoint of the same env", file=sys.stderr)
        finally:
            browser.close()
    return env_id, results


def table(results: list[Result]) -> str:
    """A small fixed-width table."""
    ms = lambda v: "–" if v is None else f"{v:.0f} ms"  # noqa: E731
    lines = [f"{'scenario':34} {'frames/s held':>13} {'key→frame p50':>14} {'p95':>7} {'samples':>8}"]
    for r in results:
        lines.append(f"{r.scenario:34} {r.frames_per_s:>13.1f} {ms(r.latency_median_ms):>14} "
                     f"{ms(r.latency_p95_ms):>7} {r.latency_samples:>8}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    """Parse flags, run both scenarios, print a table or JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint-dir", default=str(ROOT / "checkpoints"),
                   help="runs to serve (DIR/*/checkpoint.json); the first one listed is played")  # fmt: skip
    p.add_argument("--url", default=None, help="measure an app that is already running instead of starting one")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of held keys per scenario (default 10)")
    p.add_argument("--hold", type=float, default=0.5, help="seconds each key is held before the next (default 0.5)")
    p.add_argument("--compare-hold", type=float, default=0.15,
                   help="seconds each key is held in the Compare scenario (default 0.15)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args()
    if min(args.seconds, args.hold, args.compare_hold) <= 0:
        p.error("--seconds, --hold and --compare-hold must be positive")

    demo = None
    url = args.url
    load_start = round(os.getloadavg()[0], 2)
    if url is None:
        demo, url = launch_app(args.checkpoint_dir, tempfile.mkdtemp(prefix="wm-bench-runs-"))
    try:
        env_id, results = run(url, args.seconds, args.hold, args.compare_hold)
    finally:
        if demo is not None:
            with quietly():
                demo.close()
    machine = {"cpus": os.cpu_count(), "load_avg_1m_start": load_start, "load_avg_1m": round(os.getloadavg()[0], 2)}
    if demo is not None:
        import torch

        machine["server_torch_threads"] = torch.get_num_threads()
    if args.json:
        print(json.dumps({"url": url if args.url else "in-process", "env_id": env_id, "machine": machine,
                          "results": [asdict(r) for r in results]}, indent=2))  # fmt: skip
    else:
        where = args.url or f"in-process app on {args.checkpoint_dir}"
        print(f"{where} · {env_id} · {machine}")
        print(table(results))


if __name__ == "__main__":
    main()

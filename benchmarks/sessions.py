"""Memory of a room full of players: start N play sessions in one process (one SessionHub, as the app holds
them), step each, drop them all, and print the process's RSS at each stage.

    python benchmarks/sessions.py                                   # 50 sessions of checkpoints/dreamer-cartpole
    python benchmarks/sessions.py --run checkpoints/diffusion-pong --sessions 20 --steps 30

A session holds its dream state, a real env (with the real env beside the dream) and its recent frames; the
model's weights are shared (loaded once). "after drop" is measured after the hub lets go of every session and
the hub trims the heap (as the app does when pages close): it should come back near "models loaded".
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), in MiB."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--run", type=lambda run: str(Path(run).resolve()), default=str(ROOT / "checkpoints" / "dreamer-cartpole")
    )
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--steps", type=int, default=20, help="dream steps per session")
    p.add_argument("--rounds", type=int, default=2, help="start-and-drop rounds (memory should not grow)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    import wm_core
    from playground.hub import SessionHub

    start = rss_mb()
    wm_core.cached_model(args.run)
    loaded = rss_mb()
    print(f"start {start:.0f} MiB · model loaded {loaded:.0f} MiB ({args.run})")
    hub = SessionHub(max_sessions=args.sessions + 1)
    for r in range(args.rounds):
        t0 = time.perf_counter()
        clients = [hub.new_client() for _ in range(args.sessions)]
        for c in clients:
            hub.start(c, args.run, real=True)
            for _ in range(args.steps):
                hub.tick(c, ["ArrowRight"])
        full = rss_mb()
        for c in clients:
            hub.release(c)  # as when each page closes (the hub trims the heap after each release)
        after = rss_mb()
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        collected = rss_mb()
        print(
            f"round {r + 1}: {args.sessions} sessions x {args.steps} steps in {time.perf_counter() - t0:.1f} s · "
            f"with them {full:.0f} MiB (+{full - loaded:.0f}) · after release {after:.0f} MiB (+{after - loaded:.0f})"
            f" · after a full gc {collected:.0f} MiB (+{collected - loaded:.0f})"
        )


if __name__ == "__main__":
    main()

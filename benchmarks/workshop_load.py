"""A room of players over HTTP: start the app in its own process, let N simulated participants press Start on a
shipped checkpoint and drive their dream the way the page does, and print what each gets.

    python benchmarks/workshop_load.py                                  # 1 4 8 16 32 players, 30 s each
    python benchmarks/workshop_load.py --participants 16 --seconds 60 --compare-batching --markdown
    python benchmarks/workshop_load.py --workshop                       # the same, signed in as p01, p02, ...

Each participant makes the page's calls: Start (the Play tab's event, through Gradio's queue) once, then the
player's frame loop: `POST gradio_api/component_server` calling the `tick` server function with the held keys,
one request in flight, paced to 32 per second. Keys are held for 0.2-1.5 s and let go for 0-0.5 s (seeded per
participant). Half the participants play `ha-cartpole`, half `dreamer-pong` (change with --checkpoints).

Printed per room size: frames/s per participant (mean and the slowest), key→frame latency (the round trip of
the first tick that carries a changed key state, p50/p95), errors, ticks, and the server's resident memory
after each room played; at the end, after everyone left (sessions are released a minute after their page stops
calling), the memory again beside what it was before anyone joined. Numbers are
printed, never asserted; time them on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"CartPole": ["ArrowLeft", "ArrowRight"], "Pong": ["ArrowUp", "ArrowDown"]}
TARGET_S = 1 / 32  # the page's frame pacing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` (Linux /proc), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS:")).split()[1]) / 1024


class Server:
    """`python app.py` in its own process on a free port (workshop mode with a fresh token when asked)."""

    def __init__(self, batch_ms: float, workshop: bool, threads: str | None) -> None:
        self.port, self.token = free_port(), ("load-test-" + os.urandom(6).hex()) if workshop else None
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [sys.executable, "app.py", "--port", str(self.port), "--batch-ms", str(batch_ms),
               "--runs-dir", tempfile.mkdtemp(prefix="wm-load-")]  # fmt: skip
        if workshop:
            cmd += ["--workshop", "--host", "127.0.0.1", "--token", self.token, "--participants", "40"]
        env = {**os.environ, **({"WM_THREADS": threads} if threads else {})}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                if requests.get(self.url, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("the app did not start within two minutes")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Participant(threading.Thread):
    """One browser page: sign in (workshop), Start, then the paced tick loop until `stop` is set."""

    def __init__(self, server: Server, index: int, run: str, stop: threading.Event, measure: threading.Event) -> None:
        super().__init__(daemon=True)
        self.server, self.index, self.checkpoint, self.stop, self.measure = server, index, run, stop, measure
        self.rng = random.Random(index)
        self.keys = KEYS["Pong" if "pong" in Path(run).name else "CartPole"]
        self.ticks, self.errors, self.latencies, self.seconds = 0, 0, [], 0.0
        self.http = requests.Session()
        self.ready = threading.Event()
        self.failure: str | None = None

    def login(self) -> tuple[str, str] | None:
        if self.server.token is None:
            return None
        from playground.workshop import participant_token

        name = f"p{self.index + 1:02d}"
        auth = (name, participant_token(self.server.token, name))
        r = self.http.post(self.server.url + "login", data={"username": auth[0], "password": auth[1]}, timeout=30)
        r.raise_for_status()
        return auth

    def start_session(self, auth: tuple[str, str] | None) -> tuple[str, int]:
        """Press Start through Gradio's queue; returns (client id, the player component's id)."""
        from gradio_client import Client

        client = Client(self.server.url, auth=auth, verbose=False, download_files=False)
        out = client.predict(self.checkpoint, 1.0, 2, False, False, api_name="/on_start")
        cid = out[0]
        config = self.http.get(self.server.url + "config", timeout=30).json()
        player = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "wm-player")
        self.session_hash = client.session_hash
        return cid, player

    def tick(self, cid: str, player: int, keys: list[str]) -> bool:
        body = {"session_hash": self.session_hash, "component_id": player, "fn_name": "tick",
                "data": {"client": cid, "keys": keys}}  # fmt: skip
        r = self.http.post(self.server.url + "gradio_api/component_server", json=body, timeout=30)
        return r.status_code == 200 and bool(r.json().get("ok"))

    def run(self) -> None:  # noqa: D102  (threading.Thread.run)
        try:
            cid, player = self.start_session(self.login())
        except Exception as e:  # reported in the table, not a traceback
            self.failure, self.errors = f"{type(e).__name__}: {e}", self.errors + 1
            self.ready.set()
            return
        self.ready.set()
        held: list[str] = []
        switch_at, measuring = time.perf_counter(), False
        while not self.stop.is_set():
            now = time.perf_counter()
            changed = now >= switch_at
            if changed:  # hold a key for 0.2-1.5 s, then let go for 0-0.5 s
                held = [] if held else [self.rng.choice(self.keys)]
                switch_at = now + (self.rng.uniform(0.2, 1.5) if held else self.rng.uniform(0.0, 0.5))
            t0 = time.perf_counter()
            try:
                ok = self.tick(cid, player, held)
            except requests.RequestException:
                ok = False
            took = time.perf_counter() - t0
            if measuring:
                self.ticks += 1
                self.errors += not ok
                self.seconds += max(took, TARGET_S)
                if changed:
                    self.latencies.append(took * 1000)
            measuring = measuring or self.measure.is_set()
            time.sleep(max(0.0, TARGET_S - took))


def room(server: Server, n: int, runs: list[str], warmup: float, seconds: float) -> dict:
    stop, measure = threading.Event(), threading.Event()
    people = [Participant(server, i, runs[i % len(runs)], stop, measure) for i in range(n)]
    for p in people:
        p.start()
    for p in people:
        p.ready.wait(timeout=300)
    time.sleep(warmup)
    measure.set()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    wall = time.perf_counter() - t0
    for p in people:
        p.join(timeout=60)
    played = rss_mib(server.proc.pid)
    fps = [p.ticks / wall for p in people]
    lat = [x for p in people for x in p.latencies]
    failures = sorted({p.failure for p in people if p.failure})
    return {
        "n": n, "fps_mean": float(np.mean(fps)), "fps_min": float(np.min(fps)),
        "p50": float(np.percentile(lat, 50)) if lat else float("nan"),
        "p95": float(np.percentile(lat, 95)) if lat else float("nan"),
        "errors": sum(p.errors for p in people), "ticks": sum(p.ticks for p in people), "rss_played": played,
        "failures": failures,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--participants", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per room size")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument(
        "--checkpoints",
        nargs="+",
        type=lambda run: str(Path(run).resolve()),  # the app lists absolute paths
        default=[str(ROOT / "checkpoints" / n) for n in ("ha-cartpole", "dreamer-pong")],
    )
    p.add_argument("--batch-ms", type=float, default=3.0, help="the app's --batch-ms (0: every dream steps alone)")
    p.add_argument("--compare-batching", action="store_true", help="each room size with --batch-ms 0, then batched")
    p.add_argument("--workshop", action="store_true", help="workshop mode: participants sign in as p01, p02, ...")
    p.add_argument("--server-threads", default=None, help="WM_THREADS for the app (default: its own choice)")
    p.add_argument("--leave-seconds", type=float, default=75.0, help="wait after the last room, then read RSS")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    print("$ python " + shlex.join(sys.argv) + f"   ({os.cpu_count()} cores)")
    head = (
        "| players | batch ms | frames/s mean | slowest | key→frame p50 ms | p95 ms | errors | ticks | server RSS MiB |"
    )
    print(head if args.markdown else head.replace("|", " ").strip())
    failed = False
    if args.markdown:
        print("|" + "---|" * 9)
    for batch in [0.0, args.batch_ms] if args.compare_batching else [args.batch_ms]:
        server = Server(batch, args.workshop, args.server_threads)
        try:
            start = rss_mib(server.proc.pid)
            for n in args.participants:
                r = room(server, n, args.checkpoints, args.warmup, args.seconds)
                row = (f"| {n} | {batch:g} | {r['fps_mean']:.1f} | {r['fps_min']:.1f} | {r['p50']:.0f} | "
                       f"{r['p95']:.0f} | {r['errors']} | {r['ticks']} | {r['rss_played']:.0f} |")  # fmt: skip
                print(row if args.markdown else row.replace("|", " ").strip(), flush=True)
                for f in r["failures"]:
                    print(f"   failed to start: {f}")
                failed = failed or bool(r["failures"])
            if args.leave_seconds:
                time.sleep(args.leave_seconds)  # everyone left: their sessions go silent and are released
                print(
                    f"server RSS: {start:.0f} MiB before anyone joined, {rss_mib(server.proc.pid):.0f} MiB "
                    f"{args.leave_seconds:g} s after the last room left (batch {batch:g} ms)"
                )
        finally:
            server.close()
    if failed:
        sys.exit("some participants failed to start (see above)")


if __name__ == "__main__":
    main()

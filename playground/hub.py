"""The app's controller layer, free of gradio: each tab's sessions keyed by browser client (`SessionHub`, over
`wm_core.Session`), the one wire format the browser player paints, and the checkpoint and data lists.
Handlers in the tabs are thin wrappers around these, so this logic is testable without a browser.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import wm_core

ROOT = Path(__file__).resolve().parent.parent
IDLE_SECONDS = 60.0  # a session whose page has neither ticked nor sent a heartbeat for this long is released


def b64_frame(frame: np.ndarray | None) -> str | None:
    """(H, W, 3) uint8 -> base64 of the raw RGB bytes (what the browser canvas paints)."""
    return None if frame is None else base64.b64encode(np.ascontiguousarray(frame, np.uint8).tobytes()).decode()


def friendly(e: BaseException) -> str:
    """One readable line for an exception a user caused (never a traceback)."""
    if isinstance(e, (wm_core.EnvError, wm_core.DataError, wm_core.CheckpointError, ValueError)):
        return str(e)
    if "out of memory" in str(e).lower():
        return "out of memory: choose a smaller preset, fewer steps, or the cpu device"
    if isinstance(e, ImportError):
        return f"a dependency is missing ({e}); install it with the README's first command"
    return f"{type(e).__name__}: {e}"


def whole_number(value: Any, name: str, low: int, high: int, blank: int | None = None) -> int | None:
    """A form field's number as an int in [low, high]; `blank` when it is empty. ValueError (one line, naming
    the field and its range) for a fraction, a value out of range or one that is not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return blank
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, not '{value}'") from None
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}, not {value}")
    if not low <= number <= high:
        raise ValueError(f"{name} must be from {low:,} to {high:,}, not {int(number):,}")
    return int(number)


@dataclass
class CheckpointInfo:
    """One playable checkpoint as the app lists it."""

    path: str
    family: str
    env_id: str
    step: int
    shipped: bool
    command: str = ""

    @property
    def label(self) -> str:
        """Dropdown text."""
        where = "shipped" if self.shipped else "trained here"
        return f"{self.family} · {self.env_id} · step {self.step} · {Path(self.path).name} ({where})"


RunsDirs = Path | str | list[Path] | list[str]


def scan_checkpoints(shipped_dir: Path | str, runs_dir: RunsDirs) -> tuple[list[CheckpointInfo], list[str]]:
    """(playable checkpoints: shipped first, then runs trained here, newest first; one line per folder whose
    checkpoint.json cannot be read, naming it and why)."""
    found: list[CheckpointInfo] = []
    skipped: list[str] = []
    runs = [runs_dir] if isinstance(runs_dir, (str, Path)) else runs_dir
    for base, shipped in ((Path(shipped_dir), True), *((Path(r), False) for r in runs)):
        metas = []
        for p in sorted(base.glob("*/checkpoint.json")) if base.is_dir() else []:
            try:
                metas.append((p.stat().st_mtime, wm_core.read_meta(p)))
            except wm_core.CheckpointError as e:
                skipped.append(f"{p.parent.name}: {e}")
        if not shipped:
            metas.sort(key=lambda m: -m[0])
        for _, m in metas:
            found.append(
                CheckpointInfo(m["_dir"], m["family"], m["env_id"], int(m["step"]), shipped, m.get("command", ""))
            )
    return found, skipped


def list_checkpoints(shipped_dir: Path | str, runs_dir: RunsDirs) -> list[CheckpointInfo]:
    """The playable checkpoints of `scan_checkpoints`; unreadable ones are left out of the lists."""
    return scan_checkpoints(shipped_dir, runs_dir)[0]


def list_stores(runs_dir: Path | str) -> list[tuple[str, str]]:
    """(label, path) of the episode stores under `runs_dir` that training can use: recorded play
    (`runs_dir/play-data/ENV`) and the data directories of runs trained here."""
    base = Path(runs_dir)
    found = []
    for index in sorted(base.glob("play-data/*/index.json")) + sorted(base.glob("*/data/index.json")):
        try:
            s = wm_core.EpisodeStore.open(index.parent).summary()
        except wm_core.DataError:
            continue
        who = ", ".join(f"{k} {v}" for k, v in s["policies"].items())
        found.append((f"{s['env_id']} · {s['frames']} frames ({who}) · {index.parent}", str(index.parent)))
    return found


@dataclass
class Seat:
    """One browser client's session with its lock, pause flag, pending single steps and last use."""

    session: wm_core.Session
    data_dir: Path  # where this client's recorded real-env play goes (one store per env)
    lock: threading.Lock = field(default_factory=threading.Lock)
    paused: bool = False
    pending_steps: int = 0
    last_used: float = field(default_factory=time.monotonic)


def wire(seat: Seat, f: wm_core.SessionFrame, keys: list[str]) -> dict[str, Any]:
    """The one wire format of a tick: what the browser player paints (see static/player.js)."""
    s = seat.session
    waiting = not seat.paused and not f.real_ended and s.waiting(keys)
    driver = "you" if waiting else f.driver  # a frame the agent made before the autopilot went off
    return {
        "ok": True,
        "size": int(f.panels[0].frame.shape[0]),
        "step": f.step,
        "real": b64_frame(f.real),
        "real_reward": f.real_reward,
        "real_ret": f.real_ret,
        "real_ended": f.real_ended,
        "hold": s.hold,
        "paused": seat.paused,
        "waiting": waiting,
        "recording": s.recording,
        "recording_data": s.data is not None,
        "driver": driver,
        "driver_label": s.driver_label if driver == "agent" else "you",
        "panels": [
            {
                "label": label,
                "frame": b64_frame(p.frame),
                "reward": p.reward,
                "ret": p.ret,
                "done_prob": p.done_prob,
                "ended": p.ended,
                "divergence": p.divergence,
                "extras": p.extras,
            }
            for label, p in zip(s.labels, f.panels)
        ],  # fmt: skip
    }


class SessionHub:
    """One tab's sessions, keyed by browser client id and created on demand; sessions whose page went quiet for
    `idle_seconds` (no tick, no heartbeat: the page closed) and the least recently used beyond `max_sessions`
    are released. `hold` is the session's end rule (Compare holds, Play restarts).
    Real-env play recorded as training data goes to `data_dir/ENV` (one store per env, shared by the players the
    hub's `data_dir` serves; `start` can give a client its own)."""

    def __init__(
        self, *, hold: bool = False, data_dir: Path | str = Path("runs") / "play-data", max_sessions: int = 32,
        idle_seconds: float = IDLE_SECONDS, batcher: Any = None, device: str = "cpu",
    ) -> None:  # fmt: skip
        self.hold, self.data_dir, self.device = hold, Path(data_dir), device
        self.batcher = batcher  # a shared wm_core StepBatcher: players' dream steps run batched per model
        self.not_started = "Start a comparison first." if hold else "Start a checkpoint first."
        self.players: dict[str, Seat] = {}
        self.lock = threading.Lock()
        self.max_sessions, self.idle_seconds = max_sessions, idle_seconds
        self.reaper: threading.Thread | None = None  # started with the first session

    def _reap(self) -> None:
        """Release silent sessions every quarter of `idle_seconds`, so a room that left frees its memory even when
        no other page calls in."""
        while True:
            time.sleep(max(0.05, self.idle_seconds / 4))
            with self.lock:
                self._drop_idle()

    @staticmethod
    def new_client() -> str:
        """A fresh client id for a browser page."""
        return uuid.uuid4().hex

    def _drop_idle(self) -> None:
        """Release the sessions no page has ticked or kept alive for `idle_seconds` (their page closed)."""
        now = time.monotonic()
        gone = [c for c, p in self.players.items() if now - p.last_used > self.idle_seconds]
        for cid in gone:
            self.players.pop(cid).session.close()
        if gone:
            wm_core.return_freed_memory()

    def _evict(self) -> None:
        self._drop_idle()
        while len(self.players) >= self.max_sessions:
            self.players.pop(min(self.players, key=lambda c: self.players[c].last_used)).session.close()

    def release(self, client: str) -> bool:
        """Drop the client's session and close its real env; False when it had none."""
        with self.lock:
            seat = self.players.pop(client, None)
        if seat is None:
            return False
        with seat.lock:
            seat.session.close()
        del seat
        wm_core.return_freed_memory()  # what the session held goes back to the system, not to the heap
        return True

    def get(self, client: str) -> Seat | None:
        """The client's seat, if it has started one (every call also releases the sessions gone idle)."""
        with self.lock:
            self._drop_idle()
            p = self.players.get(client)
        if p is not None:
            p.last_used = time.monotonic()
        return p

    def start(
        self, client: str, runs: str | list[str], *, temperature: float = 1.0, real: bool = False,
        data_dir: Path | None = None,
    ) -> wm_core.Session:  # fmt: skip
        """Open `runs` (one, or 1-4 of one env) for `client`, started from one real context; a restart replaces
        the client's own session, no one else's. Its recorded real-env play goes to `data_dir` (default: the
        hub's; a workshop participant's own folder)."""
        stepper = self.batcher.step if self.batcher is not None else None
        session = wm_core.Session(
            runs, temperature=temperature, real=real or self.hold, hold=self.hold, stepper=stepper, device=self.device
        )
        session.reset()
        with self.lock:
            old = self.players.pop(client, None)
            self._evict()
            self.players[client] = Seat(session, Path(data_dir) if data_dir is not None else self.data_dir)
            if self.reaper is None:
                self.reaper = threading.Thread(target=self._reap, daemon=True, name="session-reaper")
                self.reaper.start()
        if old is not None:
            old.session.close()
        return session

    def tick(self, client: str, keys: list[str]) -> dict[str, Any]:
        """One frame for the browser loop: step with the held keys unless paused (or once, after Step)."""
        p = self.get(client)
        if p is None:
            return {"ok": False, "message": "Pick a checkpoint above and press Start."}
        with p.lock:
            if p.pending_steps:
                p.pending_steps -= 1
                f = p.session.tick(keys, once=True)
            else:
                f = p.session.frame if p.paused else p.session.tick(keys)
            return wire(p, f, keys)

    def control(self, client: str, action: str, value: Any = None) -> str:
        """pause / step / reset / temperature / steps / real / record_data / autopilot; returns a status line."""
        p = self.get(client)
        if p is None:
            return self.not_started
        with p.lock:
            return _control(self, p, action, value)

    def record(self, client: str, out_dir: Path | str) -> tuple[str, list[str]]:
        """Toggle recording; on stop returns the written GIF and JSON paths."""
        p = self.get(client)
        if p is None:
            return self.not_started, []
        with p.lock:
            s = p.session
            if not s.recording:
                s.start_recording()
                return "recording… press Record again to save", []
            video, log = s.stop_recording(out_dir)
            return f"saved {video.name} and {log.name}", [str(video), str(log)]

    def dream_from_here(
        self, client: str, samples: int, horizon: int, seed: int | None = None
    ) -> tuple[str, wm_core.Futures | None]:
        """Pause the client's session and dream `samples` futures per model from the frozen real state; returns a
        status line and the futures (None before Start)."""
        p = self.get(client)
        if p is None:
            return self.not_started, None
        with p.lock:
            futures = p.session.dream_from_here(samples=int(samples), horizon=int(horizon), seed=seed)
            p.paused = True
        n, H = len(futures.real), futures.horizon
        ended = f"; the real episode ends after {n} of them" if n < H else ""
        return (
            f"paused: {futures.samples} dreams per model for {H} steps of random actions (seed {futures.seed}) "
            f"from the frozen real frame{ended}. Press Pause to play on.",
            futures,
        )


def _control(hub: SessionHub, p: Seat, action: str, value: Any) -> str:
    s = p.session
    if action == "pause":
        p.paused = not p.paused
        return "paused" if p.paused else "playing"
    if action == "step":
        p.paused, p.pending_steps = True, p.pending_steps + 1
        return "paused: stepped one frame"
    if action == "reset":
        s.reset()
        return "new real context" + (" for every model" if len(s.models) > 1 else "")
    if action == "temperature":
        s.temperature = float(value)
        return f"temperature {s.temperature:.2f}"
    if action == "steps":
        n = s.set_sampling_steps(int(value))
        if not n:
            return f"{s.meta['family']} draws each frame in one pass: it has no sampling steps"
        return f"{int(value)} sampling steps per frame"
    if action == "real":
        stopped = not value and s.data is not None
        s.set_real(bool(value))
        if s.real:
            return "real env beside the dream"
        return "dream only" + (" (recording of real play stopped)" if stopped else "")
    if action == "record_data":
        if not value:
            store = s.record_data(None)
            return f"stopped: {len(store) if store else 0} episodes of real play in {store.root if store else '-'}"
        store = s.record_data(p.data_dir / s.env_id.replace("/", "-"))
        return (
            f"recording your real-env play into {store.root} ({len(store)} episodes there): train on it "
            "with the Train tab's Data list or `wm train --data`"
        )
    if action == "autopilot":
        if value and s.agent is None:
            return "This checkpoint has no trained agent and its family no planner: `wm agent train RUN` trains one."
        s.autopilot = bool(value)
        return f"the {s.driver_label} drives until you press a key" if s.autopilot else "you drive"
    raise ValueError(f"unknown control '{action}'")


def control_handler(hub: SessionHub, action: str) -> Callable[..., str]:
    """A Gradio handler (client id, optional value) -> status line for `hub.control(client, action, value)`."""

    def handler(cid: str, value: Any = None) -> str:
        try:
            return hub.control(cid, action, value)
        except Exception as e:
            return f"**{friendly(e)}**"

    return handler


def tick_server_function(hub: SessionHub) -> Callable[[dict], dict]:
    """The server function the player's browser loop calls ~30 times a second with {"client": id, "keys": [...]};
    errors come back as one line, so a broken checkpoint or env never stops the loop."""

    def tick(request: dict) -> dict:
        try:
            if request.get("heartbeat"):
                return {"ok": hub.get(str(request.get("client", ""))) is not None, "heartbeat": True}
            return hub.tick(str(request.get("client", "")), [str(k) for k in request.get("keys") or []])
        except Exception as e:
            return {"ok": False, "message": friendly(e)}

    return tick

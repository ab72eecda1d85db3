"""The app's controller layer, free of gradio: play sessions keyed by browser client, training jobs in
threads, and the checkpoint list. Handlers in the tabs are thin wrappers around these, so this logic
is testable without a browser.
"""

from __future__ import annotations

import base64
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

import wm_core

ROOT = Path(__file__).resolve().parent.parent


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


def list_checkpoints(shipped_dir: Path | str, runs_dir: Path | str) -> list[CheckpointInfo]:
    """Shipped checkpoints first, then runs trained here (newest first); unreadable ones are skipped."""
    found: list[CheckpointInfo] = []
    for base, shipped in ((Path(shipped_dir), True), (Path(runs_dir), False)):
        metas = []
        for p in sorted(base.glob("*/checkpoint.json")) if base.is_dir() else []:
            try:
                metas.append((p.stat().st_mtime, wm_core.read_meta(p)))
            except wm_core.CheckpointError:
                continue
        if not shipped:
            metas.sort(key=lambda m: -m[0])
        for _, m in metas:
            found.append(
                CheckpointInfo(m["_dir"], m["family"], m["env_id"], int(m["step"]), shipped, m.get("command", ""))
            )
    return found


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


S = TypeVar("S")


@dataclass
class Seat(Generic[S]):
    """One browser client's session with its lock, pause flag and last use."""

    session: S
    lock: threading.Lock = field(default_factory=threading.Lock)
    paused: bool = False
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class _Player(Seat[wm_core.PlaySession]):
    pending_steps: int = 0


P = TypeVar("P", bound=Seat)


class ClientHub(Generic[P]):
    """Sessions keyed by browser client id, created on demand; idle ones and the least recently used beyond
    `max_sessions` are dropped. PlayHub and CompareHub add what their tabs do."""

    def __init__(self, max_sessions: int = 32, idle_seconds: float = 1800.0) -> None:
        self.players: dict[str, P] = {}
        self.lock = threading.Lock()
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds

    @staticmethod
    def new_client() -> str:
        """A fresh client id for a browser page."""
        return uuid.uuid4().hex

    def _evict(self) -> None:
        now = time.monotonic()
        for cid in [c for c, p in self.players.items() if now - p.last_used > self.idle_seconds]:
            del self.players[cid]
        while len(self.players) >= self.max_sessions:
            del self.players[min(self.players, key=lambda c: self.players[c].last_used)]

    def _seat(self, client: str, seat: P) -> None:
        """Give `client` a new seat; a restart replaces the client's own session, no one else's."""
        with self.lock:
            self.players.pop(client, None)
            self._evict()
            self.players[client] = seat

    def get(self, client: str) -> P | None:
        """The client's seat, if it has started one."""
        with self.lock:
            p = self.players.get(client)
        if p is not None:
            p.last_used = time.monotonic()
        return p


def control_handler(hub: Any, action: str) -> Callable[..., str]:
    """A Gradio handler (client id, optional value) -> status line for `hub.control(client, action, value)`."""

    def handler(cid: str, value: Any = None) -> str:
        try:
            return hub.control(cid, action, value)
        except Exception as e:
            return f"**{friendly(e)}**"

    return handler


def tick_server_function(hub: Any) -> Callable[[dict], dict]:
    """The server function a tab's browser loop calls ~30 times a second with {"client": id, "keys": [...]};
    `hub` is a PlayHub or CompareHub. Errors come back as one line, so a broken checkpoint or env never
    stops the loop."""

    def tick(request: dict) -> dict:
        try:
            return hub.tick(str(request.get("client", "")), [str(k) for k in request.get("keys") or []])
        except Exception as e:
            return {"ok": False, "message": friendly(e)}

    return tick


class PlayHub(ClientHub[_Player]):
    """Every browser client's play session, created on demand and dropped when idle. Real-env play recorded as
    training data goes to `data_dir/ENV` (one store per env, shared by every player of this app)."""

    def __init__(self, data_dir: Path | str = Path("runs") / "play-data", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)

    def start(self, client: str, run: str, *, temperature: float = 1.0, lockstep: bool = False) -> wm_core.PlaySession:
        """Open `run` for `client` and reset it from a real context."""
        session = wm_core.PlaySession(run, temperature=temperature, lockstep=lockstep)
        session.reset()
        self._seat(client, _Player(session))
        return session

    def tick(self, client: str, keys: list[str]) -> dict[str, Any]:
        """One frame for the browser loop: step with held keys unless paused, and report."""
        p = self.get(client)
        if p is None:
            return {"ok": False, "message": "Pick a checkpoint above and press Start to play."}
        with p.lock:
            s = p.session
            if p.pending_steps:  # one frame with the held keys (or the first binding's): tick asks the keys once
                p.pending_steps -= 1
                f = s.tick(list(keys) or [s.keymap.bindings[0].key])
            elif p.paused:
                f = s.frame
            else:
                f = s.tick(keys)
            waiting = (
                not p.paused
                and s.keymap.idle_action is None
                and not keys
                and not f.ended
                and not (s.autopilot and s.agent is not None)
            )
            driver = "you" if waiting else f.driver  # a frame the agent made before the autopilot went off
            return {
                "ok": True,
                "frame": b64_frame(f.dream),
                "size": int(f.dream.shape[0]),
                "real": b64_frame(f.real) if s.lockstep else None,
                "reward": f.reward,
                "ret": f.ret,
                "done_prob": f.done_prob,
                "ended": f.ended,
                "step": f.step,
                "real_reward": f.real_reward,
                "real_ret": f.real_ret,
                "real_ended": f.real_ended,
                "paused": p.paused,
                "waiting": waiting,
                "resets": s.resets,
                "recording": s.recording is not None,
                "recording_data": s.data is not None,
                "temperature": s.temperature,
                "driver": driver,
                "driver_label": s.driver_label if driver == "agent" else "you",
                "has_agent": s.agent is not None,
                "extras": f.extras,
            }

    def control(self, client: str, action: str, value: Any = None) -> str:
        """Pause / step / reset / temperature / steps / lockstep / record_data / autopilot; returns a status line."""
        p = self.get(client)
        if p is None:
            return "Start a checkpoint first."
        with p.lock:
            s = p.session
            if action == "pause":
                p.paused = not p.paused
                return "paused" if p.paused else "playing"
            if action == "step":
                p.paused, p.pending_steps = True, p.pending_steps + 1
                return "paused: stepped one frame"
            if action == "reset":
                s.reset()
                return "new real context"
            if action == "temperature":
                s.temperature = float(value)
                return f"temperature {s.temperature:.2f}"
            if action == "steps":
                s.sampling_steps = int(value)
                return f"{s.sampling_steps} sampling steps per frame"
            if action == "autopilot":
                if value and s.agent is None:
                    return (
                        "This checkpoint has no trained agent and its family no planner: `wm agent train RUN` "
                        "trains one in its dream."
                    )
                s.autopilot = bool(value)
                return f"the {s.driver_label} drives until you press a key" if s.autopilot else "you drive"
            if action == "lockstep":
                stopped = not value and s.data is not None
                if stopped:
                    s.record_data(None)
                s.lockstep = bool(value)
                s.reset()
                if s.lockstep:
                    return "real env beside the dream"
                return "dream only" + (" (recording of real play stopped)" if stopped else "")
            if action == "record_data":
                if not value:
                    store = s.record_data(None)
                    return (
                        f"stopped: {len(store) if store else 0} episodes of real play in {store.root if store else '-'}"
                    )
                store = s.record_data(self.data_dir / s.env_id.replace("/", "-"))
                return (
                    f"recording your real-env play into {store.root} ({len(store)} episodes there): train on it "
                    "with the Train tab's Data list or `wm train --data`"
                )
        raise ValueError(f"unknown control '{action}'")

    def record(self, client: str, out_dir: Path | str) -> tuple[str, list[str]]:
        """Toggle recording; on stop returns the written GIF and JSON paths."""
        p = self.get(client)
        if p is None:
            return "Start a checkpoint first.", []
        with p.lock:
            s = p.session
            if s.recording is None:
                s.start_recording()
                return "recording… press Record again to save", []
            video, log = s.stop_recording(out_dir)
            return f"saved {video.name} and {log.name}", [str(video), str(log)]


@dataclass
class TrainJob:
    """One training run in a background thread, with everything the Train tab shows."""

    family: str
    env_id: str
    preset: str
    overrides: dict[str, Any]
    device: str
    runs_dir: Path
    data: str | None = None  # an episode store to train on; None: collect with `policy`
    policy: str = "scripted"
    phase: str = "starting"
    message: str = ""
    collected: int = 0  # frames (or episodes, when the job asks for episodes) collected so far
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    preview: np.ndarray | None = None
    run: str | None = None
    error: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def total_steps(self) -> int:
        """Gradient steps this job will take."""
        cls = wm_core.get_family(self.family)
        return int(self.overrides.get("steps") or cls.preset(self.preset).steps)

    @property
    def collect_target(self) -> tuple[int, str]:
        """(how many, "frames" or "episodes") it collects when it has no data."""
        config = wm_core.get_family(self.family).preset(self.preset, **self.overrides)
        episodes, frames = wm_core.data_budget(self.env_id, config)
        return (episodes, "episodes") if episodes else (frames, "frames")

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> TrainJob:
        """Validate the inputs, then train in a daemon thread."""
        wm_core.get_family(self.family)
        wm_core.env_entry(self.env_id)  # unknown id or missing extra fails here, before any thread
        wm_core.resolve_device(self.device)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run = str(self.runs_dir / f"{self.family}-{self.env_id.replace('/', '-')}-{stamp}")
        self.thread = threading.Thread(target=self._work, daemon=True, name=f"train-{self.family}")
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the loop to stop; it saves a resumable checkpoint."""
        self.stop_event.set()

    def _work(self) -> None:
        unit = self.collect_target[1]

        def on_event(e: wm_core.TrainEvent) -> None:
            if e.kind == "collect":
                self.phase, self.collected = "collecting", e.frames if unit == "frames" else e.episodes
            elif e.kind == "metrics":
                self.phase, self.step = "training", e.step
                self.history.append(dict(e.metrics))
            elif e.kind == "preview":
                long_eps = [ep for ep in e.preview_episodes if len(ep) > 15] or e.preview_episodes
                self.preview = wm_core.open_loop_grid(e.model, long_eps[0], context=5, horizon=10)
            else:
                self.message = e.message

        args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.overrides.items())
        source = f"--data {self.data}" if self.data else f"--policy {self.policy}"
        command = (
            f"wm train --family {self.family} --env {self.env_id} --preset {self.preset} {args} {source} "
            f"--device {self.device} --out {self.run}"
        )
        try:
            self.phase = "collecting"
            _, report = wm_core.train_run(
                self.family,
                self.env_id,
                preset=self.preset,
                overrides=self.overrides,
                data=self.data,
                policy=self.policy,
                out=self.run,
                device=self.device,
                command=" ".join(command.split()),
                on_event=on_event,
                preview_every=min(50, max(1, self.total_steps // 3)),
                should_stop=self.stop_event.is_set,
            )
            self.step = report.step
            self.phase = "stopped" if report.stopped else "done"
        except Exception as e:  # shown to the user as one line; the traceback goes to the server log
            traceback.print_exc()
            self.error, self.phase = friendly(e), "error"

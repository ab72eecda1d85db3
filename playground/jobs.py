"""Training runs started from the Train tab: each in its own thread, with everything the tab shows."""

from __future__ import annotations

import shlex
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import wm_core

from .hub import friendly


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
    queue: JobQueue | None = None  # None: trains at once
    owner: str | None = None  # the login that started it (workshop mode)
    rate: float = 0.0  # gradient steps per second, once known

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

    @property
    def argv(self) -> list[str]:
        """The `wm train` arguments that make this run (its overrides as config flags)."""
        args = ["wm", "train", "--family", self.family, "--env", self.env_id, "--preset", self.preset]
        for key, value in self.overrides.items():
            args += [f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
        args += ["--data", self.data] if self.data else ["--policy", self.policy]
        return args + ["--device", self.device, "--out", str(self.run)]

    @property
    def command(self) -> str:
        """`argv` as one shell command (quoted, so a path with a space or a quote round-trips): what the run
        records in its checkpoint and Play shows as "Made by"."""
        return shlex.join(self.argv)

    def start(self, queue: JobQueue | None = None, jid: str = "") -> TrainJob:
        """Validate the inputs, claim a fresh run directory, then train in a daemon thread (after waiting for a
        slot in `queue`, when given, under id `jid`)."""
        wm_core.get_family(self.family)
        wm_core.env_entry(self.env_id)  # unknown id or missing extra fails here, before any thread
        wm_core.resolve_device(self.device)
        config = wm_core.get_family(self.family).preset(self.preset, **self.overrides)
        wm_core.check_train_config(self.family, config, self.env_id)  # refused now, not after collecting
        base = self.runs_dir / f"{self.family}-{self.env_id.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):  # two runs started in one second get their own folders
            run = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                run.mkdir()
                break
            except FileExistsError:
                continue
        self.run = str(run)
        if queue is not None:
            queue.add(jid or uuid.uuid4().hex, self)
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
                self.rate = float(e.metrics.get("steps_per_s", 0.0))
            elif e.kind == "preview":
                long_eps = [ep for ep in e.preview_episodes if len(ep) > 15] or e.preview_episodes
                self.preview = wm_core.open_loop_grid(e.model, long_eps[0], context=5, horizon=10)
            else:
                self.message = e.message

        if self.queue is not None and not self.queue.wait_for_slot(self):
            self.phase, self.message = "stopped", "cancelled while waiting in the queue; nothing was saved"
            Path(self.run).rmdir()  # the folder it claimed, still empty
            return
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
                command=self.command,
                on_event=on_event,
                preview_every=min(50, max(1, self.total_steps // 3)),
                should_stop=self.stop_event.is_set,
            )
            self.step = report.step
            self.phase = "stopped" if report.stopped else "done"
        except Exception as e:  # shown to the user as one line; the traceback goes to the server log
            if isinstance(e, wm_core.DataError) and self.stop_event.is_set():
                self.phase, self.message = "stopped", f"stopped before training began ({e}); nothing was saved"
                return
            traceback.print_exc()
            self.error, self.phase = friendly(e), "error"
            data = Path(self.run) / "data" if self.run else None
            if data is not None and not self.data and (data / "index.json").exists():
                self.error += f" (the data it collected stays in {data}: pick it under Data to train on it)"
        finally:
            if self.queue is not None:
                self.queue.done(self)


class JobQueue:
    """At most `slots` training runs at once (one per core that play does not need, or one per GPU); the others
    wait in the order they were started. A waiting job that is stopped leaves the queue without training."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, int(slots))
        self.lock = threading.Condition()
        self.waiting: list[TrainJob] = []
        self.running: list[TrainJob] = []
        self.jobs: dict[str, TrainJob] = {}  # every job started, by id (the instructor's list)
        self.peak = 0  # the most jobs that ever trained at once

    def add(self, jid: str, job: TrainJob) -> None:
        """Queue `job` under id `jid`; its thread calls `wait_for_slot` before training."""
        with self.lock:
            job.queue, job.phase = self, "queued"
            self.waiting.append(job)
            self.jobs[jid] = job

    def wait_for_slot(self, job: TrainJob) -> bool:
        """Block until `job` is first in line and a slot is free (True), or it was stopped meanwhile (False)."""
        with self.lock:
            while not job.stop_event.is_set():
                if self.waiting and self.waiting[0] is job and len(self.running) < self.slots:
                    self.waiting.pop(0)
                    self.running.append(job)
                    self.peak = max(self.peak, len(self.running))
                    return True
                self.lock.wait(timeout=0.5)
            self.waiting.remove(job)
            self.lock.notify_all()
            return False

    def done(self, job: TrainJob) -> None:
        """`job` finished (or failed): free its slot."""
        with self.lock:
            if job in self.running:
                self.running.remove(job)
            self.lock.notify_all()

    def place(self, job: TrainJob) -> int | None:
        """1 for the next job to train, 2 after it, ...; None once it trains."""
        with self.lock:
            return self.waiting.index(job) + 1 if job in self.waiting else None

    def estimate_seconds(self, job: TrainJob) -> float | None:
        """About how long until `job` starts: the steps left of the runs ahead of it at the speed runs have trained
        here, shared over the slots; None until one run has reported its speed."""
        with self.lock:
            rates = [j.rate for j in self.jobs.values() if j.rate > 0]
            if not rates or job not in self.waiting:
                return None
            rate = sum(rates) / len(rates)
            ahead = self.running + self.waiting[: self.waiting.index(job)]
            return sum(max(0, j.total_steps - j.step) for j in ahead) / rate / self.slots

    def cancel(self, jid: str) -> str:
        """Stop job `jid` (a waiting job leaves the queue; a training one saves a resumable checkpoint)."""
        job = self.jobs.get(jid)
        if job is None or job.phase in ("done", "stopped", "error"):
            return "That job is not running."
        job.stop()
        with self.lock:
            self.lock.notify_all()
        return f"Stopping {job.family} on {job.env_id} ({job.owner or 'this machine'})."

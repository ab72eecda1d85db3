"""Training runs started from the Train tab: each in its own thread, with everything the tab shows."""

from __future__ import annotations

import threading
import time
import traceback
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
        config = wm_core.get_family(self.family).preset(self.preset, **self.overrides)
        wm_core.check_train_config(self.family, config, self.env_id)  # refused now, not after collecting
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
            data = Path(self.run) / "data" if self.run else None
            if data is not None and not self.data and (data / "index.json").exists():
                self.error += f" (the data it collected stays in {data}: pick it under Data to train on it)"

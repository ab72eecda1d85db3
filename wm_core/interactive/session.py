"""One interactive session for the Play and Compare tabs (and lessons): 1-4 world models of one env, started
from one real context and stepped by one key stream, with the real env beside them, a driver for the first
model (its trained agent or its family's planner), a GIF/JSON recording, and a person's real play recorded as
training data. Plain Python (no gradio), so the app is a thin wrapper and tests drive it directly.

The rules, chosen so that every number compares like with like:
- All runs share the env id and frame pipeline: one real env feeds every dream its context.
- `tick(held)` maps the held keys to one action through the env's keymap and gives that action to every
  dream (and, with `real` on, to the real env). With no key held and no idle action in the keymap
  (CartPole), nothing steps: the session waits. `tick(held, once=True)` is Step: one frame with the held keys,
  or the first binding's when none is held.
- With `hold` off (Play), a predicted episode end restarts everything from a new real context on the next
  tick, and when the real episode ends its last frame stays (flagged) while the dream goes on: the game goes
  on. With `hold` on (Compare), a dream that predicts an end holds its last frame (flagged) while the others go
  on, since restarting it alone would put it on another real state; when the real episode ends everything
  holds until `reset`.
- Each panel's divergence is the model card's foreground-masked MSE of its frame against the real frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import check_env, read_meta
from ..data import EpisodeRecorder, EpisodeStore
from ..data.collect import real_context
from ..data.envs import env_entry, make_env
from ..data.keys import KeyController, Keymap
from ..dream import Dream
from ..model_cache import cached_model
from ..protocol import WorldModel
from ..spec import FramePipeline
from .driver import load_driver
from .futures import compare_problem, frame_divergence, run_label
from .video import Recorder


@dataclass
class Panel:
    """One model at one tick: its dream frame, predictions, and divergence from the real frame."""

    frame: np.ndarray
    reward: float = 0.0
    ret: float = 0.0
    done_prob: float = 0.0
    ended: bool = False
    divergence: float | None = None
    extras: dict[str, str] = field(default_factory=dict)  # short texts the family offers (`Dream.step`'s info)


@dataclass
class SessionFrame:
    """What one tick shows: a panel per model and, with the real env on, the real frame."""

    panels: list[Panel]
    step: int = 0
    real: np.ndarray | None = None
    real_reward: float = 0.0
    real_ret: float = 0.0
    real_ended: bool = False
    driver: str = "you"  # "agent" when the first model's agent or planner chose this frame's action

    @property
    def ended(self) -> bool:
        """True when every dream has predicted an end."""
        return all(p.ended for p in self.panels)


class Session:
    """See the module docstring. `runs`: one run directory or 1-4 of one env."""

    def __init__(
        self, runs: Sequence[Path | str] | Path | str, *, temperature: float = 1.0, context: int = 5,
        seed: int | None = None, real: bool = False, hold: bool = False, device: str = "cpu",
        stepper: Callable[[Dream, Any], tuple] | None = None,
    ) -> None:  # fmt: skip
        runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
        problem = compare_problem([read_meta(r) for r in runs])  # before loading any weights
        if problem:
            raise ValueError(problem)
        loaded = [cached_model(r, device) for r in runs]
        self.models, self.metas = [m for m, _ in loaded], [meta for _, meta in loaded]
        self.env_id: str = self.metas[0]["env_id"]
        self.pipeline = FramePipeline.from_json(self.metas[0]["pipeline"])
        self.spec = self.models[0].action_spec
        self.keymap: Keymap = env_entry(self.env_id).keymap
        self.keys = KeyController(self.keymap, self.spec)
        seeds = [None if seed is None else seed + i for i in range(len(self.models))]  # a stream per dream
        self.dreams = [Dream(m, temperature, seed=s) for m, s in zip(self.models, seeds)]
        self.means = [m.frame_mean.permute(1, 2, 0).float().cpu().numpy() for m in self.models]
        self.labels = [run_label(meta, d.decoded_by) for meta, d in zip(self.metas, self.dreams)]
        self.context, self.real, self.hold = context, real, hold
        self.rng = np.random.default_rng(seed)
        self.env = make_env(self.env_id, self.pipeline)
        for meta in self.metas:  # before anything steps: the env must be the one the models were trained on
            check_env(meta, self.env.get_wrapper_attr("action_spec"), self.env.get_wrapper_attr("pipeline"))
        self.real_seed = 0  # the real env's reset seed; with `actions` it replays the real state exactly
        self.actions: list[Any] = []  # every raw action the real env took since that reset (context included)
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=context)  # (real frame, action into it)
        self.context_frames = self.context_actions = np.zeros(0)  # the real context the dreams started from
        self.frame: SessionFrame | None = None
        self.resets = 0
        self.recorder = Recorder()
        self.data: EpisodeRecorder | None = None  # the real env's episodes, recorded as training data
        self.agent, self.driver_label = load_driver(self.models[0], self.metas[0], self.pipeline)
        self.autopilot = False  # the agent (or planner) drives while no key is held
        # How a dream steps: alone, or through a shared `StepBatcher` that steps many players' dreams together.
        self.stepper = stepper or Dream.step

    # ---- settings ----------------------------------------------------------------------------------
    @property
    def model(self) -> WorldModel:
        """The first model (the one the driver drives)."""
        return self.models[0]

    @property
    def meta(self) -> dict[str, Any]:
        """The first model's checkpoint description."""
        return self.metas[0]

    @property
    def temperature(self) -> float:
        """Sampling temperature of every dream (read live each step)."""
        return self.dreams[0].temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        for d in self.dreams:
            d.temperature = float(value)

    def set_sampling_steps(self, steps: int | None) -> int:
        """Denoising steps per frame for every dream that has the knob (pixel-space families); returns how many
        dreams took it."""
        takers = [d for d in self.dreams if d.steps_range]
        for d in takers:
            d.set_sampling_steps(steps)
        return len(takers)

    def set_real(self, on: bool) -> None:
        """Turn the real env beside the dreams on or off (stops recording real play when off); restarts."""
        if not on and self.data is not None:
            self.record_data(None)
        self.real = bool(on)
        self.reset()

    # ---- playing -----------------------------------------------------------------------------------
    def reset(self) -> SessionFrame:
        """Restart the real env and every dream from one freshly sampled real context."""
        ctx = real_context(self.env, self.spec, self.rng, self.context)
        self.real_seed, self.actions = ctx.seed, list(ctx.acts[1:])  # acts[0] is the "none" before the first
        self.context_frames, self.context_actions = ctx.frames, ctx.acts
        self.recent.clear()
        self.recent.extend(zip(ctx.frames, ctx.acts))
        if self.data is not None and self.real:
            self.data.start(ctx.frames[0], ctx.seed, None if ctx.states is None else ctx.states[0])
            for t in range(1, len(ctx.frames)):
                state = None if ctx.states is None else ctx.states[t]
                self.data.step(ctx.frames[t], ctx.acts[t], float(ctx.rewards[t]), False, False, state)
        panels = []
        for dream, mean in zip(self.dreams, self.means):
            view = dream.reset(ctx.frames, ctx.acts)
            panels.append(Panel(view, divergence=float(frame_divergence(view, ctx.frames[-1], mean))))
        self.keys.reset()
        self.resets += 1
        self.frame = SessionFrame(panels, real=ctx.frames[-1] if self.real else None)
        self.recorder.add(self.frame, None)
        return self.frame

    def waiting(self, held: Sequence[str]) -> bool:
        """True when nothing steps: the keys wait (`KeyController.waits`) and no agent drives."""
        driven = self.autopilot and self.agent is not None
        return not driven and self.keys.waits(held)

    def tick(self, held: Sequence[str] = (), once: bool = False) -> SessionFrame:
        """One frame with the held keys (see the module docstring for waiting, Step and the end rules)."""
        f = self.frame
        if f is None or (not self.hold and f.ended):
            return self.reset()
        if self.hold and f.real_ended:
            return f
        if once:
            held = list(held) or [self.keymap.bindings[0].key]
        action = self.keys.action(held)
        if self.autopilot and self.agent is not None and not held:  # any key takes over from the agent
            with torch.inference_mode():
                action, ms = self.agent(self.dreams[0].state)
            self.keys.reset()
            f = self.step(action)
            f.driver = "agent"
            f.panels[0].extras["time per move"] = f"{ms:.1f} ms"  # the driver row already names who drives
            return f
        return f if action is None else self.step(action)

    def step(self, action: Any) -> SessionFrame:
        """Step every dream that has not ended (and the real env, when on) with one raw action."""
        prev = self.frame if self.frame is not None else self.reset()
        real, r, real_ended = prev.real, 0.0, prev.real_ended
        action = np.asarray(action, dtype=self.spec.zeros().dtype)
        if self.real and not prev.real_ended:
            real, r, term, trunc, info = self.env.step(self.spec.to_env(action))
            real_ended = bool(term or trunc)
            self.actions.append(action)
            self.recent.append((real, action))
            if self.data is not None:
                self.data.step(real, action, float(r), bool(term), bool(trunc), info.get("state"))
        panels = []
        for dream, mean, p in zip(self.dreams, self.means, prev.panels):
            if p.ended:  # held at its predicted end (the hold rule; without it the next tick restarts)
                panels.append(p)
                continue
            frame, reward, ended, info = self.stepper(dream, action)
            div = None if real is None else float(frame_divergence(frame, real, mean))
            panels.append(Panel(frame, reward, p.ret + reward, info["done_prob"], ended, div, info.get("extras", {})))
        self.frame = SessionFrame(panels, prev.step + 1, real if self.real else None, float(r), prev.real_ret + r,
                                  real_ended)  # fmt: skip
        self.recorder.add(self.frame, action)
        return self.frame

    def close(self) -> None:
        """Let go of the real env (its renderer and emulator); the session cannot step afterwards."""
        self.env.close()

    # ---- real play as training data -----------------------------------------------------------------
    def record_data(self, store_dir: Path | str | None) -> EpisodeStore | None:
        """Start (a directory) or stop (None) recording the real env's episodes as training data (policy
        "human"). The episodes start at the real env's reset; the few context frames before the keys took over
        were random actions. Returns the store written to."""
        if store_dir is None:
            store = self.data.store if self.data is not None else None
            if self.data is not None:
                self.data.finish()
            self.data = None
            return store
        if not self.real:
            raise ValueError("turn on the real env beside the dream first: only real play becomes training data")
        store = EpisodeStore.create(store_dir, self.env_id, self.pipeline, self.spec)
        self.data = EpisodeRecorder(store)
        self.reset()  # a recorded episode starts at the real env's reset
        return store

    # ---- recording and futures -------------------------------------------------------------------------
    def start_recording(self) -> None:
        """Begin keeping frames, actions, rewards and ends (`stop_recording` writes them)."""
        self.recorder.start(self.frame)

    @property
    def recording(self) -> bool:
        """True while a recording runs."""
        return self.recorder.active

    def stop_recording(self, out_dir: Path | str, fmt: str = "gif") -> tuple[Path, Path]:
        """Write the recording as GIF/MP4 plus a JSON of actions, rewards and ends; returns both paths."""
        return self.recorder.stop(out_dir, fmt, self.meta, self.env_id, self.temperature)

    def dream_from_here(self, samples: int = 4, horizon: int = 20, seed: int | None = None) -> Any:
        """K sampled futures per model from the frozen real moment beside the real future (`futures`)."""
        from .futures import dream_from_here

        return dream_from_here(self, samples, horizon, seed)

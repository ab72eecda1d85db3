"""Playing inside a dream: one user's session (dream + optional real env in lockstep), driven by held
keys through the env's keymap, with recording. Plain Python, so the app and the CLI share it and tests
can drive it without a browser.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..agents.planning import Chooser
from ..checkpoint import load_checkpoint
from ..data import EpisodeRecorder, EpisodeStore
from ..data.envs import PixelEnv, env_entry, make_env
from ..data.keys import KeyController, Keymap
from ..dream import Dream
from ..files import atomic_write_json
from ..protocol import WorldModel
from ..spec import ActionSpec, FramePipeline

PLAY_SIMULATIONS = 8  # MCTS simulations per move (~3 ms on one core), unless an MCTS agent's run gives its own
PLAY_CEM = {"horizon": 6, "population": 32, "elites": 4, "iterations": 3}  # CEM when it drives
_MODELS: OrderedDict[str, tuple[WorldModel, dict[str, Any]]] = OrderedDict()
_MODELS_LOCK = threading.Lock()


def cached_model(run: Path | str, device: str = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """Load a checkpoint once per (path, file version); sessions share the read-only model."""
    from ..checkpoint import read_meta

    meta = read_meta(run)
    key = f"{meta['_dir']}|{meta['weights']['sha256']}|{device}"
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_checkpoint(run, device)
            while len(_MODELS) > 8:
                _MODELS.popitem(last=False)
        _MODELS.move_to_end(key)
        return _MODELS[key]


class RealContext(NamedTuple):
    """The first frames of a real episode: frames (T, H, W, 3), raw actions (T, ...) with "none" before the
    first frame, rewards on arrival (T,), true states (T, k) or None, and the env's reset seed."""

    frames: np.ndarray
    acts: np.ndarray
    seed: int
    rewards: np.ndarray
    states: np.ndarray | None


def real_context(env: PixelEnv, spec: ActionSpec, rng: np.random.Generator, context: int) -> RealContext:
    """Reset `env` with a seed drawn from `rng` and take random actions until it has shown `context` frames;
    retry if the episode ends early (so the real state can be replayed from the seed and actions)."""
    for _ in range(20):
        seed = int(rng.integers(2**31))
        frame, info = env.reset(seed=seed)
        frames, acts, rewards, states, ended = [frame], [spec.zeros()], [0.0], [info.get("state")], False
        while len(frames) < context and not ended:
            a = spec.sample(rng)
            frame, r, term, trunc, info = env.step(a)
            frames.append(frame)
            acts.append(np.asarray(a, dtype=spec.zeros().dtype))
            rewards.append(float(r))
            states.append(info.get("state"))
            ended = term or trunc
        if not ended:
            known = all(x is not None for x in states)
            return RealContext(np.stack(frames), np.stack(acts), seed, np.asarray(rewards, np.float32),
                               np.stack(states) if known else None)  # fmt: skip
    raise RuntimeError(f"{env.entry.env_id} keeps ending within {context} random steps")


@dataclass
class Frame:
    """What one tick shows: the dream frame and, in lockstep, the real one."""

    dream: np.ndarray
    reward: float = 0.0
    ret: float = 0.0
    done_prob: float = 0.0
    ended: bool = False
    step: int = 0
    real: np.ndarray | None = None
    real_reward: float = 0.0
    real_ret: float = 0.0
    real_ended: bool = False
    driver: str = "you"
    extras: dict[str, str] = field(default_factory=dict)  # short texts beside the frame (`Dream.extras`)


class PlaySession:
    """A dream started from real frames of the env, stepped by held keys; optional real env beside it."""

    def __init__(
        self,
        run: Path | str,
        *,
        temperature: float = 1.0,
        context: int = 5,
        seed: int | None = None,
        lockstep: bool = False,
        device: str = "cpu",
    ) -> None:
        self.model, self.meta = cached_model(run, device)
        self.env_id: str = self.meta["env_id"]
        self.pipeline = FramePipeline.from_json(self.meta["pipeline"])
        self.keymap: Keymap = env_entry(self.env_id).keymap
        self.keys = KeyController(self.keymap, self.model.action_spec)
        self.dream = Dream(self.model, temperature, seed=seed)
        self.context = context
        self.rng = np.random.default_rng(seed)
        self.lockstep = lockstep
        self.env = make_env(self.env_id, self.pipeline)
        self.frame: Frame | None = None
        self.recording: list[dict[str, Any]] | None = None
        self.rec_frames: list[np.ndarray] = []
        self.resets = 0
        self.real_seed: int | None = None
        self.data: EpisodeRecorder | None = None  # the real env's episodes, recorded as training data
        self.agent, self.driver_label = self._load_driver()
        self.autopilot = False  # the agent (or planner) drives while no key is held

    def _load_driver(self) -> tuple[Chooser | None, str]:
        """Who can drive the dream, as a `Chooser` on dream states and a label: the actor-critic trained in
        this run's dream (`wm agent train`), else the family's planner (its capabilities: MCTS with few
        simulations, or CEM toward the env's default goal frame), else no one."""
        from ..agents.agent import AGENT_FILE, ActorCritic, load_agent
        from ..agents.planning import PLANNERS, default_goal_frame, planner_chooser

        run = Path(self.meta["_dir"])
        search: dict[str, Any] = {}  # an MCTS agent's run plays its own search
        if (run / AGENT_FILE).exists():
            try:
                agent, _ = load_agent(run, self.model)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                msg = f"the agent saved in {run} cannot be loaded ({e}); delete {AGENT_FILE} to play"
                raise ValueError(msg) from None
            if isinstance(agent, ActorCritic):
                return agent.eval().chooser(self.model, explore=False), "trained agent"
            c = agent.config  # the search the agent was trained and evaluated with
            search = {"greedy": c.greedy_choice, "normalize": c.q_normalization, "simulations": c.simulations}
        planner = self.model.capabilities.planner
        if planner == "mcts" and self.model.action_spec.discrete:
            return planner_chooser(self.model, **{"simulations": PLAY_SIMULATIONS, **search})
        if planner in PLANNERS and planner != "mcts":
            goal = default_goal_frame(self.env_id, self.pipeline)
            return planner_chooser(self.model, goal_frame=goal, goal_label="a held-out start frame", **PLAY_CEM)
        return None, "you"

    @torch.inference_mode()
    def _agent_action(self) -> tuple[Any, float]:
        return self.agent(self.dream.state)

    @property
    def temperature(self) -> float:
        """Sampling temperature of dream steps (read live each step)."""
        return self.dream.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.dream.temperature = float(value)

    @property
    def sampling_steps(self) -> int | None:
        """Denoising steps per dream frame of a pixel-space family (None: the family's default, or no such knob)."""
        return self.dream.sampling_steps

    @sampling_steps.setter
    def sampling_steps(self, value: int | None) -> None:
        self.dream.set_sampling_steps(value)

    def _real_context(self) -> tuple[np.ndarray, np.ndarray]:
        """Run the real env with random actions for `context` frames (see `real_context`)."""
        ctx = real_context(self.env, self.model.action_spec, self.rng, self.context)
        self.real_seed = ctx.seed
        if self.data is not None and self.lockstep:
            states = ctx.states if ctx.states is not None else [None] * len(ctx.frames)
            self.data.start(ctx.frames[0], ctx.seed, states[0])
            for f, a, r, st in zip(ctx.frames[1:], ctx.acts[1:], ctx.rewards[1:], states[1:]):
                self.data.step(f, a, float(r), False, False, st)
        return ctx.frames, ctx.acts

    def reset(self) -> Frame:
        """Start a new dream (and real env) from a freshly sampled real context."""
        frames, acts = self._real_context()
        dream = self.dream.reset(frames, acts)
        self.keys.reset()
        self.resets += 1
        self.frame = Frame(dream=dream, real=frames[-1] if self.lockstep else None)
        self._record(None)
        return self.frame

    def tick(self, held: list[str] | tuple[str, ...] = ()) -> Frame:
        """One frame of play: map held keys to an action and step; waits (no step) when the keymap has no
        idle action and no key is held. A predicted episode end resets on the next tick."""
        if self.frame is None or self.frame.ended:
            return self.reset()
        action = self.keys.action(held)
        if self.autopilot and self.agent is not None and not held:  # any key takes over from the agent
            action, ms = self._agent_action()
            self.keys.reset()
            f = self.step(action)
            f.driver = "agent"
            f.extras["time per move"] = f"{ms:.1f} ms"  # the driver row already names who drives
            return f
        if action is None:
            return self.frame
        return self.step(action)

    def step(self, action: Any) -> Frame:
        """Step the dream (and the real env in lockstep) with one raw action."""
        if self.frame is None:
            self.reset()
        prev = self.frame
        frame, reward, ended, info = self.dream.step(action)
        f = Frame(
            dream=frame,
            reward=reward,
            ret=prev.ret + reward,
            done_prob=info["done_prob"],
            ended=ended,
            step=prev.step + 1,
            extras=dict(info.get("extras", {})),
        )
        if self.lockstep and prev.real is not None:
            if prev.real_ended:
                f.real, f.real_ret, f.real_ended = prev.real, prev.real_ret, True
            else:
                real, r, term, trunc, info = self.env.step(self.model.action_spec.to_env(action))
                f.real, f.real_reward, f.real_ret, f.real_ended = (
                    real,
                    float(r),
                    prev.real_ret + float(r),
                    term or trunc,
                )
                if self.data is not None:
                    self.data.step(real, action, float(r), bool(term), bool(trunc), info.get("state"))
        self.frame = f
        self._record(action)
        return f

    # ---- play as training data ---------------------------------------------------------------------
    def record_data(self, store_dir: Path | str | None) -> EpisodeStore | None:
        """Start (a directory) or stop (None) recording the real env's episodes as training data. The episodes
        start at the real env's reset; the few context frames before the keys took over were random actions.
        Returns the store written to."""
        if store_dir is None:
            store = self.data.store if self.data is not None else None
            if self.data is not None:
                self.data.finish()
            self.data = None
            return store
        if not self.lockstep:
            raise ValueError("turn on the real env beside the dream first: only real play becomes training data")
        store = EpisodeStore.create(store_dir, self.env_id, self.pipeline, self.model.action_spec)
        self.data = EpisodeRecorder(store)
        self.reset()  # a recorded episode starts at the real env's reset
        return store

    # ---- recording -------------------------------------------------------------------------------
    def start_recording(self) -> None:
        """Begin keeping frames, actions, rewards and ends."""
        self.recording, self.rec_frames = [], []
        if self.frame is not None:
            self._record(None)

    def _record(self, action: Any) -> None:
        if self.recording is None or self.frame is None:
            return
        f = self.frame
        self.rec_frames.append(f.dream if f.real is None else np.concatenate([f.dream, f.real], axis=1))
        self.recording.append(
            {
                "step": f.step,
                "action": None if action is None else np.asarray(action).tolist(),
                "reward": f.reward,
                "return": f.ret,
                "done_prob": f.done_prob,
                "ended": f.ended,
                **({"real_reward": f.real_reward, "real_ended": f.real_ended} if f.real is not None else {}),
            }
        )

    def stop_recording(self, out_dir: Path | str, fmt: str = "gif") -> tuple[Path, Path]:
        """Write the recording as GIF/MP4 plus a JSON of actions, rewards and ends; returns both paths."""
        if not self.recording:
            raise ValueError("nothing recorded yet: press record, play a few frames, then stop")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"dream-{self.meta['family']}-{self.env_id.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        video = write_video(out / f"{stem}.{fmt}", self.rec_frames)
        log = out / f"{stem}.json"
        atomic_write_json(
            log,
            {
                "run": self.meta["_dir"],
                "family": self.meta["family"],
                "env_id": self.env_id,
                "temperature": self.temperature,
                "steps": self.recording,
            },
        )
        self.recording = None
        return video, log


def write_video(path: Path | str, frames: list[np.ndarray], scale: int = 4, fps: int = 15) -> Path:
    """Frames (H, W, 3) uint8 -> GIF or MP4, upscaled without blur."""
    import imageio.v3 as iio

    path = Path(path)
    big = [np.repeat(np.repeat(f, scale, 0), scale, 1) for f in frames]
    if path.suffix.lower() == ".mp4":
        try:
            iio.imwrite(path, np.stack(big), fps=fps, codec="libx264", macro_block_size=1)
        except Exception as e:  # imageio raises several types when no ffmpeg plugin is installed
            raise ValueError(f"cannot write MP4 ({e}); install 'world-model-playground[video]' or use .gif") from None
    else:
        iio.imwrite(path, np.stack(big), duration=1000 / fps, loop=0)
    return path


def scripted_keys(keymap: Keymap, steps: int, hold: int = 15, gap: int = 3) -> list[list[str]]:
    """A demo key pattern: each binding held for `hold` frames, then `gap` frames of no key, cycling."""
    pattern: list[list[str]] = []
    for b in keymap.bindings:
        pattern += [b.key.split("+")] * hold + [[]] * gap
    return [pattern[i % len(pattern)] for i in range(steps)] if pattern else [[] for _ in range(steps)]


def record_dream(
    run: Path | str,
    out: Path | str,
    *,
    steps: int = 100,
    temperature: float = 1.0,
    actions: str = "random",
    seed: int = 0,
    real: bool = False,
) -> dict[str, Any]:
    """Drive a dream for `steps` frames with random actions or a scripted key pattern and write a video."""
    session = PlaySession(run, temperature=temperature, seed=seed, lockstep=real)
    rng = np.random.default_rng(seed)
    keys = scripted_keys(session.keymap, steps)
    session.reset()
    session.start_recording()
    t_step, ret, last = 0.0, 0.0, None
    for i in range(steps):
        t0 = time.perf_counter()
        if actions == "random":
            f = session.step(session.model.action_spec.sample(rng))
        else:
            a = session.keys.action(keys[i])
            if a is None:  # no key and no "do nothing" action (CartPole): keep the last action
                a = last if last is not None else session.keys.action([session.keymap.bindings[0].key])
            last = a
            f = session.step(a)
        t_step += time.perf_counter() - t0
        ret += f.reward
        if f.ended:
            session.reset()
    video, log = session.stop_recording(Path(out).parent, Path(out).suffix.lstrip(".").lower())
    video.replace(out)
    log.replace(Path(out).with_suffix(".json"))
    return {
        "frames": steps,
        "return": ret,
        "resets": session.resets - 1,
        "ms_per_step": 1000 * t_step / steps,
    }

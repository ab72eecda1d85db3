"""Recording play: a session's frames, actions, rewards and ends as GIF/MP4 plus JSON (`Recorder`), and `wm
dream`'s scripted recordings (`record_dream`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..data.keys import Keymap
from ..files import atomic_write_json


class Recorder:
    """Keeps each shown frame (the dreams side by side, then the real frame) and a JSON row per step."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] | None = None
        self.frames: list[np.ndarray] = []

    @property
    def active(self) -> bool:
        """True while recording."""
        return self.rows is not None

    def start(self, frame: Any) -> None:
        """Begin with the frame shown now (a `SessionFrame`, or None)."""
        self.rows, self.frames = [], []
        if frame is not None:
            self.add(frame, None)

    def add(self, f: Any, action: Any) -> None:
        """One shown frame and the action that led to it (None at a start)."""
        if self.rows is None:
            return
        views = [p.frame for p in f.panels] + ([] if f.real is None else [f.real])
        self.frames.append(np.concatenate(views, axis=1))
        first = f.panels[0]
        row = {"step": f.step, "action": None if action is None else np.asarray(action).tolist()}
        row |= {"reward": first.reward, "return": first.ret, "done_prob": first.done_prob, "ended": first.ended}
        if len(f.panels) > 1:
            row["models"] = [{"reward": p.reward, "return": p.ret, "done_prob": p.done_prob, "ended": p.ended}
                             for p in f.panels]  # fmt: skip
        if f.real is not None:
            row |= {"real_reward": f.real_reward, "real_ended": f.real_ended}
        self.rows.append(row)

    def stop(self, out_dir: Path | str, fmt: str, meta: dict[str, Any], env_id: str, temperature: float):
        """Write the video and the JSON log; returns their paths."""
        if not self.rows:
            raise ValueError("nothing recorded yet: press record, play a few frames, then stop")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"dream-{meta['family']}-{env_id.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        video = write_video(out / f"{stem}.{fmt}", self.frames)
        log = out / f"{stem}.json"
        atomic_write_json(log, {"run": meta["_dir"], "family": meta["family"], "env_id": env_id,
                                "temperature": temperature, "steps": self.rows})  # fmt: skip
        self.rows = None
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
    device: str = "cpu",
) -> dict[str, Any]:
    """Drive a dream for `steps` frames with random actions or a scripted key pattern and write a video; the
    model runs on `device`."""
    from .session import Session

    session = Session(run, temperature=temperature, seed=seed, real=real, device=device)
    rng = np.random.default_rng(seed)
    keys = scripted_keys(session.keymap, steps)
    session.reset()
    session.start_recording()
    t_step, ret, last = 0.0, 0.0, None
    for i in range(steps):
        t0 = time.perf_counter()
        if actions == "random":
            f = session.step(session.spec.sample(rng))
        else:
            a = session.keys.action(keys[i])
            if a is None:  # no key and no "do nothing" action (CartPole): keep the last action
                a = last if last is not None else session.keys.action([session.keymap.bindings[0].key])
            last = a
            f = session.step(a)
        t_step += time.perf_counter() - t0
        ret += f.panels[0].reward
        if f.ended or f.real_ended:
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

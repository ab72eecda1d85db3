"""Play as video: a session's `Recorder` (each shown frame and a JSON row per step, written as GIF/MP4 plus JSON)
and `write_video`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

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

"""`wm dream`'s scripted recordings: a session driven by random actions or a key pattern, written as a video and a
JSON log (`record_dream`); the writing itself is `video.Recorder`'s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..data.keys import Keymap
from .session import Session


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

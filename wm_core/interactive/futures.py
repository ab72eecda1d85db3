"""Comparing models on one key stream: which checkpoints can be compared, panel labels, the live divergence,
and "dream from here": K sampled futures per model from a frozen real moment next to the real future, as a
filmstrip and a divergence-over-time plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.envs import make_env, replay
from ..dream import Dream
from ..evaluation.card import _frame_errors

MAX_RUNS = 4


def compare_problem(metas: Sequence[dict[str, Any]]) -> str | None:
    """Why these checkpoints (their `read_meta` dicts) cannot be compared, or None when they can."""
    if not 1 <= len(metas) <= MAX_RUNS:
        return f"Compare takes 1 to {MAX_RUNS} checkpoints, got {len(metas)}: pick between 1 and {MAX_RUNS}"
    first, shown = metas[0], lambda m: f"{Path(m['_dir']).name} ({m['env_id']})"  # noqa: E731
    for key, what in (("env_id", "env"), ("pipeline", "frame pipeline")):
        odd = [m for m in metas if m[key] != first[key]]
        if odd:
            return (
                f"Compare needs checkpoints of one {what}, but {shown(first)} differs from "
                f"{', '.join(shown(m) for m in odd)}: pick checkpoints trained on the same {what}"
            )
    return None


def run_label(meta: dict[str, Any], decoded_by: str = "decoder") -> str:
    """A panel's title: family, step and run directory (and "probe view" for decoder-free families)."""
    probe = " · probe view" if decoded_by == "probe" else ""
    return f"{meta['family']} · step {meta['step']} · {Path(meta['_dir']).name}{probe}"


def frame_divergence(pred: np.ndarray, real: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Foreground-masked MSE of uint8 frames (..., H, W, 3) against `real` (broadcast), mean frame (H, W, 3)
    float in [0, 1] -> array of shape (...)."""
    shape = pred.shape[:-3]
    p = pred.reshape(-1, *pred.shape[-3:]).astype(np.float32) / 255
    r = np.broadcast_to(real, pred.shape).reshape(p.shape).astype(np.float32) / 255
    _, fg = _frame_errors(p, r, mean)
    return fg.reshape(shape)


@dataclass
class Futures:
    """`dream_from_here`'s result: one shared action sequence, the real future and K dreams per model."""

    actions: np.ndarray  # (H, ...) raw actions shared by the real env and every dream
    real: np.ndarray  # (n, S, S, 3) uint8, n <= H: stops at a real episode end
    real_rewards: np.ndarray  # (n,)
    dreams: np.ndarray  # (M, K, H, S, S, 3) uint8
    rewards: np.ndarray  # (M, K, H) predicted rewards
    done_prob: np.ndarray  # (M, K, H) predicted end probabilities
    divergence: np.ndarray  # (M, K, H) fg-MSE vs the real frame of the same step; NaN after the real end
    labels: list[str]
    temperature: float
    seed: int
    filmstrip: np.ndarray  # (rows, cols, 3) uint8: real row, then each model's K sample rows
    columns: list[int]  # the step (1-based) shown in each filmstrip column
    figure: Any = field(repr=False)  # a matplotlib Figure

    @property
    def samples(self) -> int:
        """K, the dreams per model."""
        return int(self.dreams.shape[1])

    @property
    def horizon(self) -> int:
        """H, the steps dreamed."""
        return int(self.dreams.shape[2])


def real_future(session: Any, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames (n, S, S, 3), rewards (n,)) of the real env's future under `actions`, n <= len(actions) (it stops
    at an episode end), from a second env brought to the real env's current state by replaying its reset seed
    and actions (generic for any gymnasium env that is deterministic given its seed; checked frame for frame).
    That env is closed before this returns: it holds a renderer or an emulator."""
    env = make_env(session.env_id, session.pipeline)
    try:
        frame, _ = replay(env, session.real_seed, session.actions)
        if session.frame is not None and not np.array_equal(frame, session.frame.real):
            raise ValueError(
                f"{session.env_id} did not come back to the same frame when replayed from its seed and actions "
                "(the env is not deterministic), so its real future is unknown"
            )
        real, rewards = [], []
        for a in actions:
            frame, r, term, trunc, _ = env.step(a)
            real.append(frame)
            rewards.append(float(r))
            if term or trunc:
                break
    finally:
        env.close()
    return np.stack(real), np.asarray(rewards, np.float32)


@torch.inference_mode()
def dream_from_here(session: Any, samples: int = 4, horizon: int = 20, seed: int | None = None) -> Futures:
    """Freeze the real env here; from its last `context` frames and actions, dream `samples` futures per
    model for `horizon` steps and roll a replayed copy of the real env forward, all with one shared
    sequence of random actions drawn from `seed`. The live session is left exactly as it was."""
    if samples < 1 or horizon < 1:
        raise ValueError(f"dream from here needs at least 1 sample and 1 step, got {samples} and {horizon}")
    if not session.real:
        raise ValueError("dream from here compares with the real future: turn on the real env beside the dreams")
    if session.frame is None:
        session.reset()
    if session.frame.real_ended:
        raise ValueError("the real episode has ended, so there is no real future to compare with: press Reset")
    seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    # Random actions (not the player's keys, which are unknown for the future): one sequence shared by the
    # real env and every sample, so samples differ only by the models' sampling at this temperature.
    actions = np.stack([np.asarray(session.spec.sample(rng), dtype=session.spec.zeros().dtype) for _ in range(horizon)])
    real_arr, real_rew = real_future(session, actions)
    frames = np.stack([f for f, _ in session.recent])  # (T, S, S, 3)
    acts = np.stack([a for _, a in session.recent])
    M, S = len(session.models), frames.shape[1]
    dreams = np.zeros((M, samples, horizon, S, S, 3), np.uint8)
    rewards = np.zeros((M, samples, horizon), np.float32)
    done = np.zeros((M, samples, horizon), np.float32)
    for i, model in enumerate(session.models):
        dream = Dream(model, session.temperature, seed=seed)  # its own random stream: the live dreams' stays
        dream.reset(np.repeat(frames[None], samples, 0), np.repeat(acts[None], samples, 0))
        for t, a in enumerate(actions):
            dreams[i, :, t], rewards[i, :, t], _, info = dream.step(np.repeat(a[None], samples, 0))
            done[i, :, t] = info["done_prob"]
    n = len(real_arr)
    div = np.full((M, samples, horizon), np.nan, np.float32)
    for i, mean in enumerate(session.means):
        div[i, :, :n] = frame_divergence(dreams[i, :, :n], real_arr, mean)
    strip, columns = filmstrip(real_arr, dreams, ended=done > 0.5)
    return Futures(
        actions=actions,
        real=real_arr,
        real_rewards=real_rew,
        dreams=dreams,
        rewards=rewards,
        done_prob=done,
        divergence=div,
        labels=list(session.labels),
        temperature=session.temperature,
        seed=seed,
        filmstrip=strip,
        columns=columns,
        figure=divergence_figure(div, session.labels, session.temperature),
    )


def filmstrip(
    real: np.ndarray, dreams: np.ndarray, *, ended: np.ndarray | None = None, max_columns: int = 15, gap: int = 2
) -> tuple[np.ndarray, list[int]]:
    """One uint8 image: the real future (n, S, S, 3) on top, then each model's K samples (M, K, H, S, S, 3),
    one column per step (every n-th step when H > `max_columns`), thin gaps, a wider gap between models.
    Steps past the real end are dark; dream frames after a sample's first predicted end (`ended`, (M, K, H))
    are dimmed. Returns the image and the 1-based step shown in each column."""
    M, K, H, S = dreams.shape[:4]
    every = math.ceil(H / max_columns)
    cols = list(range(every - 1, H, every))
    rows: list[tuple[int, np.ndarray]] = [(0, np.stack([real[t] if t < len(real) else _blank(S) for t in cols]))]
    over = np.zeros((M, K, H), bool) if ended is None else np.logical_or.accumulate(ended, axis=-1)
    for i in range(M):
        for k in range(K):
            cells = dreams[i, k, cols].astype(np.float32)
            cells[over[i, k, cols]] *= 0.35
            rows.append((3 * gap if k == 0 else gap, cells.astype(np.uint8)))
    width = len(cols) * S + (len(cols) - 1) * gap
    height = sum(pad + S for pad, _ in rows)
    out = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for pad, cells in rows:
        y += pad
        for c, cell in enumerate(cells):
            out[y : y + S, c * (S + gap) : c * (S + gap) + S] = cell
        y += S
    return out, [c + 1 for c in cols]


def _blank(size: int) -> np.ndarray:
    return np.full((size, size, 3), 40, np.uint8)


def divergence_figure(divergence: np.ndarray, labels: Sequence[str], temperature: float) -> Any:
    """Divergence over time (M, K, H): per model the mean over its K samples and a min-max band; the title
    carries the budget (samples, horizon, temperature)."""
    M, K, H = divergence.shape
    valid = ~np.isnan(divergence[0, 0])
    n = int(valid.sum())
    from matplotlib.figure import Figure  # imported here: `import wm_core` stays free of matplotlib

    fig = Figure(figsize=(7.0, 3.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(1, n + 1)
    for i, label in enumerate(labels):
        d = divergence[i, :, :n]
        (line,) = ax.plot(x, d.mean(0), marker="o", markersize=3, label=label)
        ax.fill_between(x, d.min(0), d.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
    end = f" · real episode ended at step {n}" if n < H else ""
    ax.set_title(f"{K} sample{'s' * (K > 1)} per model · horizon {H} · temperature {temperature:g}{end}", fontsize=10)
    ax.set_xlabel("steps after the frozen real frame")
    ax.set_ylabel("foreground MSE vs real")
    ax.set_xlim(0.5, max(n, 1) + 0.5)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig

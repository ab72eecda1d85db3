"""Counterfactual actions: one real context, 3-4 action sequences dreamed side by side and replayed in the
real env from the same seed; "spread" is the mean pairwise foreground MSE between the futures, so a dream
whose spread is far below the real one ignores its actions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data import Episode
from ..data.envs import make_env, replay
from ..dream import Dream
from ..protocol import WorldModel
from ..spec import ActionSpec, FramePipeline
from .card import _frame_errors


# ---- counterfactual actions ------------------------------------------------------------------------
def action_sequences(spec: ActionSpec, horizon: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """3-4 contrasting sequences: each constant action (up to 3), and one seeded random sequence."""
    rng = np.random.default_rng(seed)
    if spec.discrete:
        names = spec.names or tuple(map(str, range(spec.n)))
        seqs = [(f"always {names[i]}", np.full(horizon, i, np.int64)) for i in range(min(spec.n, 3))]
    else:
        low, high = np.asarray(spec.low, np.float32), np.asarray(spec.high, np.float32)
        plans = (("low", low), ("middle", (low + high) / 2), ("high", high))
        seqs = [(f"always {n}", np.tile(v, (horizon, 1))) for n, v in plans]
    seqs.append(("random", np.stack([np.asarray(spec.sample(rng)) for _ in range(horizon)])))
    return seqs


def replay_env(env_id: str, pipeline: FramePipeline, seed: int, actions: Sequence[Any]):
    """A fresh env reset with `seed` and stepped through `actions`; returns (env, last frame, ended)."""
    env = make_env(env_id, pipeline)
    frame, ended = replay(env, seed, actions)
    return env, frame, ended


def counterfactuals(
    model: WorldModel,
    episode: Episode,
    env_id: str,
    pipeline: FramePipeline,
    *,
    context: int = 5,
    horizon: int = 15,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Dream and (when the episode can be replayed) real futures of one context under several action plans."""
    seqs = action_sequences(model.action_spec, horizon, seed)
    n = len(seqs)
    dream = Dream(model, temperature, seed=seed)
    dream.reset(np.repeat(episode.obs[None, :context], n, 0), np.repeat(episode.act[None, :context], n, 0))
    pred = np.stack([dream.step(np.stack([s[k] for _, s in seqs]))[0] for k in range(horizon)], 1)  # (n, H, S, S, 3)
    real = np.zeros_like(pred)
    valid = np.zeros((n, horizon), bool)
    replayable = False
    if episode.seed is not None and episode.ordinal == 0:
        env, frame, _ = replay_env(env_id, pipeline, episode.seed, list(episode.act[1:context]))
        env.close()
        replayable = bool(np.array_equal(frame, episode.obs[context - 1]))
    if replayable:
        for i, (_, s) in enumerate(seqs):
            env, _, _ = replay_env(env_id, pipeline, episode.seed, list(episode.act[1:context]))
            for k in range(horizon):
                real[i, k], _, term, trunc, _ = env.step(s[k])
                valid[i, k] = True
                if term or trunc:
                    break
            env.close()
    mean = model.frame_mean.permute(1, 2, 0).cpu().numpy()
    f32 = lambda x: x.astype(np.float32) / 255  # noqa: E731

    def spread(frames: np.ndarray, upto: int) -> float | None:
        """Mean pairwise foreground MSE between the sequences' futures over steps 1..upto."""
        if upto == 0:
            return None
        vals = [
            _frame_errors(f32(frames[i, :upto]), f32(frames[j, :upto]), mean)[1].mean()
            for i in range(n)
            for j in range(i + 1, n)
        ]
        return round(float(np.mean(vals)), 6)

    common = int(valid.all(0).sum()) if replayable else 0  # steps where every real future is still running
    rows = []
    for i, (name, _) in enumerate(seqs):
        m = int(valid[i].sum())
        err = _frame_errors(f32(pred[i, :m]), f32(real[i, :m]), mean)[1].mean() if m else None
        rows.append({"name": name, "real_steps": m, "fg_mse_vs_real": None if err is None else round(float(err), 6)})
    card = {
        "episode_seed": episode.seed,
        "context": context,
        "horizon": horizon,
        "temperature": temperature,
        "real_replayed": replayable,
        "common_steps": common,
        "sequences": rows,
        "dream_spread": spread(pred, common if replayable else horizon),
        "real_spread": spread(real, common) if replayable else None,
    }
    return card, {"pred": pred, "real": real, "valid": valid, "names": np.array([s[0] for s in seqs])}

"""The model card's deeper sections and its figures: what a latent holds, how a model answers actions, and
which actions its training data covered. `evaluate_checkpoint` is the one entry point behind `wm eval` and
the Inspect tab, so the command line and the app always show the same numbers.

- latent error: after the real context, the model imagines with the logged actions; at each horizon k its
  latent is compared with a reference encoding of the true frame k: the target encoder's embedding for
  families that have one (`goal_embedding`, e.g. JEPA's EMA encoder, as in V-JEPA 2-AC's energy), else the
  model's own filtered latent after observing the real frames. Cosine similarity and the L2 error relative
  to the reference norm, beside a copy-last-latent baseline.
- counterfactuals: one real context, 3-4 action sequences dreamed side by side and replayed in the real
  env from the same seed; "spread" is the mean pairwise foreground MSE between the futures, so a dream
  whose spread is far below the real one ignores its actions.
- state probe: ridge regression from the filtered latent to the env's true state (classic control), scored
  by R^2 in 5-fold cross-validation over whole held-out episodes, beside the same probe on five randomly
  initialised models of the same family and size: what training added beyond a random projection; and the
  same probe on the top principal components of the raw frame pairs: what the pixels hold linearly.
- coverage: how often each action occurred in the training data, overall and per bin of each true-state
  dim, so a user sees which actions a dream never saw in which situations.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_checkpoint, recorded_data_dir
from .controllability import controllability
from .data import HELDOUT_SEED_BASE, Episode, EpisodeStore
from .dream import Dream
from .envs import env_entry, make_env, replay
from .evaluate import HORIZONS, _frame_errors, card_from_rollout, card_windows, heldout_store, open_loop
from .files import atomic_write_bytes, atomic_write_json
from .models.nn import seeded_init
from .protocol import GoalEmbedding, WorldModel
from .spec import ActionSpec, FramePipeline

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"


# ---- coverage ------------------------------------------------------------------------------------
def action_coverage(episodes: Sequence[Episode], spec: ActionSpec, state_names: Sequence[str] = (), bins: int = 8):
    """Action counts in `episodes`, overall and per bin of each true-state dim (action taken in that state)."""
    acts = [e.act[1:] for e in episodes if len(e) > 1]
    if not acts:
        return None
    a = np.concatenate(acts)
    out: dict[str, Any] = {"kind": spec.kind, "steps": int(len(a))}
    if spec.discrete:
        labels = a.astype(np.int64)
        names = list(spec.names or map(str, range(spec.n)))
        out |= {"names": names, "counts": np.bincount(labels, minlength=spec.n).tolist()}
    else:
        # Box: each dim split into thirds of its range (low / middle / high), counted like discrete choices.
        low, high = np.asarray(spec.low), np.asarray(spec.high)
        third = np.clip(((a - low) / np.maximum(high - low, 1e-8) * 3).astype(int), 0, 2)  # (N, n)
        labels = third[:, 0]
        dim0 = spec.names[0] if spec.names else "action dim 0"
        out |= {"names": [f"{dim0} {t}" for t in ("low", "mid", "high")], "counts": np.bincount(labels, minlength=3)}
        out["counts"] = out["counts"].tolist()
        dim_names = [spec.names[d] if d < len(spec.names) else f"dim {d}" for d in range(spec.n)]
        out["dims"] = [
            {"name": name, "thirds": np.bincount(third[:, d], minlength=3).tolist()} for d, name in enumerate(dim_names)
        ]
    states = [e.state[:-1] for e in episodes if len(e) > 1 and e.state is not None]
    if len(states) == len(acts):
        s = np.concatenate(states)  # the state in which each action was taken
        names = list(state_names) if len(state_names) == s.shape[1] else [f"state {i}" for i in range(s.shape[1])]
        dims = []
        for d in range(s.shape[1]):
            edges = np.linspace(s[:, d].min(), s[:, d].max() + 1e-6, bins + 1)
            idx = np.clip(np.digitize(s[:, d], edges) - 1, 0, bins - 1)
            grid = np.zeros((len(out["names"]), bins), np.int64)
            np.add.at(grid, (labels, idx), 1)
            dims.append({"name": names[d], "edges": [round(float(x), 4) for x in edges], "counts": grid.tolist()})
        out["state"] = dims
    return out


def coverage_of_run(meta: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The training data's coverage: recorded at training time, else recomputed from the data directory."""
    data = meta.get("data", {})
    if data.get("coverage"):
        return data["coverage"], "recorded when the model was trained"
    d = recorded_data_dir(meta) or Path(meta["_dir"]) / "data"
    if (d / "index.json").exists():
        store = EpisodeStore.open(d)
        entry = env_entry(meta["env_id"])
        return action_coverage(store.episodes(), store.action_spec, entry.state_names), "from the run's data directory"
    saved = Path(meta["_dir"]) / REPORT_JSON  # written by `wm eval` while the training data was still there
    if saved.exists():
        try:
            card = json.loads(saved.read_text())
        except (OSError, ValueError):
            card = {}
        if card.get("coverage") and card.get("step") == meta["step"]:
            return card["coverage"], "from the run's data directory, as the saved report.json recorded it"
    return None, "the training data is not here and the checkpoint predates recorded coverage"


# ---- latent error --------------------------------------------------------------------------------
@torch.inference_mode()
def latent_error(model: WorldModel, episodes: Sequence[Episode], context: int = 5, horizon: int = 15):
    """Cosine similarity and relative L2 error of imagined latents vs a reference encoding of the true future."""
    eps = [e for e in episodes if len(e) > context]
    H = min(horizon, max(len(e) for e in eps) - context)
    goals = isinstance(model, GoalEmbedding)
    target = model.goal_embedding if goals else None
    embed = model.embedding if goals else model.latent
    sums = {k: np.zeros(H) for k in ("cos", "rel_l2", "copy_cos", "copy_rel_l2", "n")}
    # Episodes differ in length, so they go in one batch, each padded with its last frame.
    T = context + H
    frames = np.stack([np.concatenate([e.obs[:T], np.repeat(e.obs[-1:], max(0, T - len(e)), 0)]) for e in eps])
    acts = np.stack([np.concatenate([e.act[:T], np.repeat(e.act[-1:], max(0, T - len(e)), 0)]) for e in eps])
    valid = np.array([[context + k < len(e) for k in range(H)] for e in eps])
    f, a = model.context_tensors(frames, acts)
    state = model.filter(f[:, :context], a[:, :context])
    filt, start = state, embed(state)
    for k in range(H):
        t = context + k
        state = model.imagine(state, a[:, t], 0.0)
        filt = model.observe(filt, f[:, t], a[:, t])
        ref = target(f[:, t]) if target is not None else model.latent(filt)
        for name, z in (("", embed(state)), ("copy_", start)):
            cos = torch.nn.functional.cosine_similarity(z, ref, dim=-1).cpu().numpy()
            rel = ((z - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-8)).cpu().numpy()
            sums[name + "cos"][k] += cos[valid[:, k]].sum()
            sums[name + "rel_l2"][k] += rel[valid[:, k]].sum()
        sums["n"][k] += valid[:, k].sum()
    n = np.maximum(sums["n"], 1)
    ref_name = "the target encoder's embedding" if target is not None else "the filtered latent (real frames observed)"
    return {
        "reference": ref_name,
        "temperature": 0.0,
        "k": list(range(1, H + 1)),
        "episodes": sums["n"].astype(int).tolist(),
        **{key: (sums[key] / n).round(5).tolist() for key in ("cos", "rel_l2", "copy_cos", "copy_rel_l2")},
    }


# ---- state probe ---------------------------------------------------------------------------------
@torch.inference_mode()
def filtered_latents(model: WorldModel, episodes: Sequence[Episode]) -> list[np.ndarray]:
    """Per episode, the (T+1, D) latents after observing each real frame."""
    out = []
    for e in episodes:
        steps = model.filter_steps(*model.context_tensors(e.obs[None], e.act[None]))
        out.append(np.stack([model.latent(state)[0].float().cpu().numpy() for state in steps]))
    return out


def _ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression on centred features scaled by one overall std (per-dim scaling would blow up
    near-constant latent dims on unseen episodes); returns (mean, scale, weights with a bias row)."""
    mu, sd = x.mean(0), x.std() + 1e-8
    X = np.c_[(x - mu) / sd, np.ones(len(x))]
    return mu, sd, np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ y)


RIDGES = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
FOLDS = 5


def _ridge_r2(zs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    """Cross-validated R^2 per target dim of a ridge probe: episodes split into 5 folds, each predicted by a
    probe fitted on the other four, R^2 pooled over all predictions. Folds are whole episodes, because
    neighbouring frames of one episode nearly repeat each other. The ridge strength is the best of
    `RIDGES` per dim (the same search for the model and its random twins)."""
    cat = lambda a: np.concatenate(a).astype(np.float64)  # noqa: E731
    y = cat(ys)
    fold = np.concatenate([np.full(len(z), i % FOLDS) for i, z in enumerate(zs)])
    x = cat(zs)
    scores = []
    for lam in RIDGES:
        pred = np.zeros_like(y)
        for f in range(FOLDS):
            mu, sd, W = _ridge_fit(x[fold != f], y[fold != f], lam)
            pred[fold == f] = np.c_[(x[fold == f] - mu) / sd, np.ones((fold == f).sum())] @ W
        scores.append(1.0 - ((y - pred) ** 2).sum(0) / np.maximum(((y - y.mean(0)) ** 2).sum(0), 1e-12))
    scores = np.stack(scores)  # (ridges, dims)
    best = scores.argmax(0)
    return scores[best, np.arange(y.shape[1])], [RIDGES[i] for i in best]


TWINS = 5
PIXEL_COMPONENTS = 64
PIXEL_BASIS_FRAMES = 2048
SCORE_BLOCK = 256  # pairs scored at once: bounds the float64 copy at 256 x 2 x 64 x 64 x 3 values (50 MB)


def frame_pair_components(
    episodes: Sequence[Episode], components: int = PIXEL_COMPONENTS, basis_frames: int = PIXEL_BASIS_FRAMES
) -> list[np.ndarray]:
    """Per episode, each frame joined to the one before it (an episode's first frame stands for its past too,
    as in the families' states) and projected on the top `components` principal directions of such pairs:
    what a linear read of two raw frames holds, the reference a latent is measured against. The directions
    come from the frames alone (no state labels), from at most `basis_frames` pairs evenly spaced over all
    the episodes, so the cost stays bounded on long held-out sets."""
    pairs = []
    for e in episodes:
        x = e.obs.reshape(len(e), -1).astype(np.float32) / 255.0  # (T, H*W*3)
        pairs.append(np.concatenate([x, np.concatenate([x[:1], x[:-1]])], axis=1))
    allx = np.concatenate(pairs)
    mu = allx.mean(0)
    basis = allx[np.linspace(0, len(allx) - 1, min(basis_frames, len(allx))).astype(int)] - mu  # (M, D)
    # Eigenvectors of the (M, M) Gram matrix give the principal directions without a (D, D) covariance: the
    # frames are far fewer than the 2 * 64 * 64 * 3 pixels of a pair.
    vals, vecs = np.linalg.eigh((basis @ basis.T).astype(np.float64))
    top = np.argsort(vals)[::-1][: min(components, len(basis))]
    sv = np.sqrt(np.maximum(vals[top], 1e-12))
    directions = (basis.T @ vecs[:, top].astype(np.float32)) / sv.astype(np.float32)  # (D, k), unit columns
    directions = directions.astype(np.float64)
    # Centred scores in float64, a block of pairs at a time: the uncentred product minus mu's cancels most
    # of its digits in float32, and then the card's last digit depended on BLAS's thread count.
    scores = np.concatenate(
        [(allx[i : i + SCORE_BLOCK] - mu).astype(np.float64) @ directions for i in range(0, len(allx), SCORE_BLOCK)]
    )  # (N, k)
    return np.split(scores, np.cumsum([len(p) for p in pairs])[:-1])


def state_probe(
    model: WorldModel, episodes: Sequence[Episode], state_names: Sequence[str] = (), seed: int = 0, twins: int = TWINS
):
    """Linear probe R^2 from latent to true state, for the model and for `twins` randomly initialised models
    of the same config (seeds `seed`, `seed` + 1, ...). One random twin is a noisy baseline: on 200 held-out
    CartPole episodes, four seeds of a random jepa read pole angle with R^2 from 0.82 to 0.95, so the card
    gives their mean, spread and best. `r2_pixels` is the same probe on the raw frame pairs' principal
    components (`frame_pair_components`): on these CartPole frames it reads pole angle with R^2 0.98, so a
    random conv net's 0.92 is a loss against the pixels, not a floor set by them."""
    eps = [e for e in episodes if e.state is not None and len(e) > 1]
    if len(eps) < 2 * FOLDS:
        return None
    ys = [e.state for e in eps]
    r2, ridge = _ridge_r2(filtered_latents(model.eval(), eps), ys)
    runs, ridges = [], []
    for i in range(twins):
        with seeded_init(seed + i):
            twin = type(model)(model.config, model.action_spec, model.frame_size).to(model.frame_mean.device)
        twin.frame_mean.copy_(model.frame_mean)
        r2_twin, ridge_twin = _ridge_r2(filtered_latents(twin.eval(), eps), ys)
        runs.append(r2_twin)
        ridges.append(ridge_twin)
    r2_pixels, _ = _ridge_r2(frame_pair_components(eps), ys)
    runs_arr = np.stack(runs)  # (twins, dims)
    k = ys[0].shape[1]
    names = list(state_names) if len(state_names) == k else [f"state {i}" for i in range(k)]
    return {
        "names": names,
        "r2_model": np.round(r2, 4).tolist(),
        "r2_random": np.round(runs_arr.mean(0), 4).tolist(),
        "r2_random_sd": np.round(runs_arr.std(0), 4).tolist(),
        "r2_random_max": np.round(runs_arr.max(0), 4).tolist(),
        "r2_random_runs": np.round(runs_arr, 4).tolist(),
        "twins": twins,
        "r2_pixels": np.round(r2_pixels, 4).tolist(),
        "pixel_components": PIXEL_COMPONENTS,
        "frames": int(sum(len(e) for e in eps)),
        "folds": FOLDS,
        "ridge": {"model": ridge, "random": ridges},
    }


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


# ---- the whole card --------------------------------------------------------------------------------
@dataclass
class Report:
    """The full model card (JSON-ready) plus the arrays its figures are drawn from."""

    card: dict[str, Any]
    roll: dict[str, np.ndarray]
    cf: dict[str, np.ndarray]
    episodes: list[Episode] = field(default_factory=list)


def heldout_policy(meta: dict[str, Any]) -> str:
    """The policy held-out episodes are played with: scripted when the run trained on anything but random
    play (so the card tests the states the model learned), random otherwise and for runs that predate
    recorded policies."""
    policies = meta.get("data", {}).get("policies") or {}
    return "scripted" if any(name not in ("random", "unrecorded") for name in policies) else "random"


def heldout_episodes(
    env_id: str, episodes: int, seed_base: int = HELDOUT_SEED_BASE, data: str | None = None, policy: str = "random"
):
    """(episodes, description) from a given store or freshly collected with seeds from `seed_base` by `policy`,
    cut at the env's `heldout_steps`."""
    with tempfile.TemporaryDirectory(prefix="wm-heldout-") as tmp:
        if data:
            store = EpisodeStore.open(data)
            if store.env_id != env_id:
                raise ValueError(f"the held-out store holds {store.env_id} episodes but the run models {env_id}")
        else:
            cap = env_entry(env_id).heldout_steps
            store = heldout_store(env_id, episodes, out=tmp, seed=seed_base, max_steps=cap, policy=policy)
        s = store.summary()
        info = {
            "episodes": s["episodes"],
            "frames": s["frames"],
            "content_hash": s["content_hash"],
            "seed": min(store.seeds) if store.seeds else None,
            "split": store.split,
            "policies": s["policies"],
        }
        return store.episodes(), info


def evaluate_checkpoint(
    run: Path | str,
    *,
    episodes: int = 50,
    seed_base: int = HELDOUT_SEED_BASE,
    data: str | None = None,
    context: int = 5,
    temperature: float = 1.0,
    seed: int = 0,
    counterfactual_horizon: int = 15,
    model: WorldModel | None = None,
    meta: dict[str, Any] | None = None,
) -> Report:
    """Every section of the model card for the run at `run`, on held-out episodes (see module docstring)."""
    if model is None or meta is None:
        model, meta = load_checkpoint(run)
    eps, heldout = heldout_episodes(meta["env_id"], episodes, seed_base, data, heldout_policy(meta))
    windows = card_windows(eps, context, max(HORIZONS), seed)
    heldout["windows"] = "one per episode, from a seeded random frame where context and 50 steps fit"
    roll = open_loop(model, windows, context, max(HORIZONS), temperature, seed)
    card = card_from_rollout(model, meta, roll, context=context, horizons=HORIZONS, temperature=temperature,
                             seed=seed, heldout=heldout)  # fmt: skip
    card["controllability"] = controllability(model, eps, roll, temperature, seed)
    entry = env_entry(meta["env_id"])
    pipeline = FramePipeline.from_json(meta["pipeline"])
    if model.capabilities.latent:
        card["latent"] = latent_error(model, eps, context, counterfactual_horizon)
        card["state_probe"] = state_probe(model, eps, entry.state_names, seed)
    else:
        card["latent"], card["state_probe"] = None, None
        card["notes"]["latent"] = "n/a: a pixel-space model has no latent (its state is its last frames)"
    replayable = [e for e in eps if e.seed is not None and e.ordinal == 0 and len(e) > context] or [
        e for e in eps if len(e) > context
    ]
    cf_card, cf = counterfactuals(
        model,
        max(replayable, key=len),
        meta["env_id"],
        pipeline,
        context=context,
        horizon=counterfactual_horizon,
        temperature=temperature,
        seed=seed,
    )
    card["counterfactual"] = cf_card
    card["coverage"], card["coverage_source"] = coverage_of_run(meta)
    return Report(card, roll, cf, eps)


def write_report(report: Report, out_dir: Path | str) -> tuple[Path, Path]:
    """report.json and report.png beside the checkpoint (atomic writes)."""
    from .figures import report_image

    out = Path(out_dir)
    js = out / REPORT_JSON
    atomic_write_json(js, report.card)
    png = out / REPORT_PNG
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, report_image(report), extension=".png")
    atomic_write_bytes(png, buf.getvalue())
    return js, png


def card_equal(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-6) -> bool:
    """True when two cards hold the same numbers (floats within `tol`, relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(card_equal(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(card_equal(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return bool(np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True))
    return a == b


__all__ = [
    "Report",
    "action_coverage",
    "counterfactuals",
    "coverage_of_run",
    "evaluate_checkpoint",
    "latent_error",
    "state_probe",
    "write_report",
    "card_equal",
]

"""What a latent holds: the latent error of imagined states against a reference encoding of the true future,
and a linear state probe beside random twins and the raw frames.

- latent error: after the real context, the model imagines with the logged actions; at each horizon k its
  latent is compared with a reference encoding of the true frame k: the target encoder's embedding for
  families that have one (`GoalEmbedding`, e.g. JEPA's EMA encoder, as in V-JEPA 2-AC's energy), else the
  model's own filtered latent after observing the real frames. Cosine similarity and the L2 error relative
  to the reference norm, beside a copy-last-latent baseline.
- state probe: ridge regression from the filtered latent to the env's true state (classic control), scored
  by R^2 in 5-fold cross-validation over whole held-out episodes, beside the same probe on five randomly
  initialised models of the same family and size: what training added beyond a random projection; and the
  same probe on the top principal components of the raw frame pairs: what the pixels hold linearly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data import Episode
from ..models.nn import seeded_init
from ..protocol import GoalEmbedding, WorldModel


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

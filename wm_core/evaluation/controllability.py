"""The controllability card: does a dream answer the keys? PSNR alone cannot tell, because a model that
ignores its actions can still draw plausible frames.

- ΔtPSNR (Genie, Bruce et al. 2024): from the same real contexts, dream once with the logged actions and once
  with random actions; PSNR against the real future over k = 1..15, logged minus random. The real future
  followed the logged actions, so a dream that listens to them scores higher with them: ΔtPSNR > 0. It is
  measured per window and reported as mean ± standard error.
- Inverse dynamics (as in MineWorld and Matrix-Game's GameWorld keyboard accuracy): a small classifier
  trained on *real* frame triples (t-2, t-1, t) to recover the action that led to frame t is applied to
  *dreamed* triples against the commanded actions. Its score on held-out real triples is the reference:
  a dream whose frames show the actions as clearly as reality reaches it. Discrete actions score accuracy;
  continuous ones the R² of the regressed action (mean over the dimensions the data varies).
  The reader must first read real frames clearly better than chance; where it cannot (CartPole at 64x64:
  one push moves the cart by a twentieth of a pixel before the next frame), its score is "n/a", not a pass.
- Action-blind: neither measure says the actions matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import Episode
from ..dream import Dream
from ..models.nn import seeded_init
from ..protocol import WorldModel
from ..spec import ActionSpec

DELTA_HORIZON = 15
IDM_STEPS = 300
IDM_MIN_LIFT = 0.1
"""How far above chance the reader must score on real frames for its score on dreams to mean anything: a
tenth of the way from chance to perfect (accuracy), or R² 0.1 (continuous actions)."""


def _psnr(pred: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB) of uint8 frames (..., H, W, 3)."""
    mse = ((pred.astype(np.float32) - real.astype(np.float32)) / 255.0) ** 2
    return 10 * np.log10(1.0 / np.maximum(mse.mean((-3, -2, -1)), 1e-10))


def random_actions(spec: ActionSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniformly random raw actions of `shape` (windows, steps)."""
    if spec.discrete:
        return rng.integers(spec.n, size=shape)
    return rng.uniform(spec.low, spec.high, size=(*shape, spec.n)).astype(np.float32)


def dream_windows(
    model: WorldModel, contexts: np.ndarray, context_acts: np.ndarray, actions: np.ndarray,
    temperature: float, seed: int,
) -> np.ndarray:  # fmt: skip
    """Batched dreams: contexts (E, C, H, W, 3), their raw actions (E, C, ...), then `actions` (E, K, ...)
    -> dreamed frames (E, K, H, W, 3) uint8; the sampling noise is fixed by `seed`."""
    dream = Dream(model, temperature, seed=seed)
    dream.reset(contexts, context_acts)
    return np.stack([dream.step(actions[:, k])[0] for k in range(actions.shape[1])], 1)


def delta_psnr(
    model: WorldModel, roll: dict[str, np.ndarray], temperature: float, seed: int, horizon: int = DELTA_HORIZON
) -> dict[str, Any]:
    """ΔtPSNR over k = 1..horizon from the open-loop rollout `roll` (`evaluate.open_loop`: logged actions) and
    a second dream with random actions from the same contexts and sampling seed. Returns mean, standard error
    and the number of windows."""
    K = min(horizon, roll["pred"].shape[1])
    rng = np.random.default_rng(seed + 7)
    rand = random_actions(model.action_spec, (len(roll["contexts"]), K), rng)
    rand_pred = dream_windows(model, roll["contexts"], roll["context_acts"], rand, temperature, seed)
    valid = roll["valid"][:, :K]
    logged = _psnr(roll["pred"][:, :K], roll["real"][:, :K])
    randomly = _psnr(rand_pred, roll["real"][:, :K])
    keep = valid.sum(1) > 0
    per_window = ((logged - randomly) * valid).sum(1)[keep] / valid.sum(1)[keep]
    n = len(per_window)
    per_k = lambda x: [round(float(x[valid[:, j], j].mean()), 3) for j in range(K) if valid[:, j].any()]  # noqa: E731
    return {
        "horizon": K,
        "windows": int(n),
        "delta_psnr": round(float(per_window.mean()), 4) if n else None,
        "stderr": round(float(per_window.std(ddof=1) / np.sqrt(n)), 4) if n > 1 else None,
        "psnr_logged": round(float(logged[valid].mean()), 3) if n else None,
        "psnr_random": round(float(randomly[valid].mean()), 3) if n else None,
        "curve_logged": per_k(logged),
        "curve_random": per_k(randomly),
    }


# ---- inverse dynamics ---------------------------------------------------------------------------
class InverseDynamics(nn.Module):
    """Three frames (t-2, t-1, t) and their two differences -> the action that led to frame t. What an action
    moves is small (a paddle, a few pixels), so the convs keep full resolution at first and the features are
    max-pooled over the frame as well as averaged: "did something move here" wherever it happened."""

    def __init__(self, outputs: int, channels: int = 16) -> None:
        super().__init__()
        c = channels
        self.convs = nn.Sequential(  # 2x2 pixel blocks first: lossless, a quarter of the cost
            nn.PixelUnshuffle(2), nn.Conv2d(60, 2 * c, 3, 1, 1), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 4, 2, 1), nn.SiLU(), nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.SiLU(),
        )  # fmt: skip
        self.head = nn.Linear(8 * c, outputs)

    def forward(self, triples: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W, 3) uint8 -> (N, outputs)."""
        x = triples.float().div(255.0).permute(0, 1, 4, 2, 3)  # (N, 3, 3, H, W)
        x = torch.cat([x.flatten(1, 2) - 0.5, (x[:, 1:] - x[:, :-1]).flatten(1, 2) * 4], dim=1)
        h = self.convs(x)
        return self.head(torch.cat([h.amax((2, 3)), h.mean((2, 3))], dim=1))


def triples(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> (T-2, 3, H, W, 3): each frame t >= 2 with the two before it."""
    return np.stack([frames[:-2], frames[1:-1], frames[2:]], axis=1)


class ActionReader:
    """An inverse-dynamics model fitted on real triples; `score(triples, actions)` on any triples."""

    def __init__(self, spec: ActionSpec, seed: int = 0) -> None:
        self.spec = spec
        with seeded_init(seed):
            self.net = InverseDynamics(spec.n)
        self.gen = torch.Generator().manual_seed(seed)
        self.mean = np.zeros(spec.n, np.float32)
        self.std = np.ones(spec.n, np.float32)
        self.dims = np.arange(spec.n)

    def _targets(self, actions: np.ndarray) -> torch.Tensor:
        if self.spec.discrete:
            return torch.as_tensor(actions.astype(np.int64))
        return torch.as_tensor((actions - self.mean) / self.std, dtype=torch.float32)

    def fit(
        self, x: np.ndarray, actions: np.ndarray, steps: int = IDM_STEPS, batch: int = 64, lr: float = 1e-3
    ) -> None:
        """Train on triples (N, 3, H, W, 3) uint8 and the raw actions (N, ...) that led to their last frame."""
        if not self.spec.discrete:
            self.mean, self.std = actions.mean(0), actions.std(0) + 1e-6
            self.dims = np.flatnonzero(actions.std(0) > 1e-3)
        opt = torch.optim.Adam(self.net.parameters(), lr, weight_decay=1e-4)
        y = self._targets(actions)
        xs = torch.as_tensor(x)
        self.net.train()
        for _ in range(steps):
            i = torch.randint(len(xs), (min(batch, len(xs)),), generator=self.gen)
            out = self.net(xs[i])
            if self.spec.discrete:
                loss = nn.functional.cross_entropy(out, y[i])
            else:
                loss = (out - y[i]).pow(2)[:, self.dims].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.net.eval()

    @torch.inference_mode()
    def score(self, x: np.ndarray, actions: np.ndarray) -> float | None:
        """Accuracy (discrete) or mean R² over the varying dims (continuous) on triples and true actions."""
        if not len(x):
            return None
        out = torch.cat([self.net(torch.as_tensor(x[i : i + 256])) for i in range(0, len(x), 256)]).numpy()
        if self.spec.discrete:
            return float((out.argmax(1) == actions.astype(np.int64)).mean())
        if not len(self.dims):
            return None
        y = (actions - self.mean) / self.std
        resid = ((out - y) ** 2)[:, self.dims].sum(0)
        total = ((y - y.mean(0)) ** 2)[:, self.dims].sum(0)
        return float(np.mean(1 - resid / np.maximum(total, 1e-12)))

    def chance(self, actions: np.ndarray) -> float:
        """What always guessing the most common action scores (discrete), or 0 (R² of the mean)."""
        if not self.spec.discrete:
            return 0.0
        counts = np.bincount(actions.astype(np.int64), minlength=self.spec.n)
        return float(counts.max() / max(counts.sum(), 1))


def inverse_dynamics(
    spec: ActionSpec, episodes: Sequence[Episode], roll: dict[str, np.ndarray], seed: int,
    horizon: int = DELTA_HORIZON,
) -> dict[str, Any]:  # fmt: skip
    """Fit the action reader on real triples of half the held-out episodes, score it on the other half (the
    reference) and on the dreamed triples of `roll` (k = 1..horizon, the last two context frames leading in)
    against the actions the dream was given."""
    usable = [e for e in episodes if len(e) > 3]
    if len(usable) < 4:
        return {"note": "n/a: fewer than 4 held-out episodes longer than 3 frames"}
    fit_eps, test_eps = usable[::2], usable[1::2]

    def real_set(eps: Sequence[Episode]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([triples(e.obs) for e in eps]), np.concatenate([e.act[2:] for e in eps])

    reader = ActionReader(spec, seed)
    reader.fit(*real_set(fit_eps))
    real_x, real_a = real_set(test_eps)
    K = min(horizon, roll["pred"].shape[1])
    actions = roll["acts"]
    frames = np.concatenate([roll["contexts"][:, -2:], roll["pred"][:, :K]], axis=1)  # (E, K + 2, H, W, 3)
    valid = roll["valid"][:, :K]
    dream_x = np.concatenate([triples(f) for f in frames])[valid.reshape(-1)]
    dream_a = actions[:, :K].reshape(len(actions) * K, *actions.shape[2:])[valid.reshape(-1)]
    real = reader.score(real_x, real_a)
    dream = reader.score(dream_x, dream_a)
    chance = reader.chance(real_a)
    readable = real is not None and real >= chance + IDM_MIN_LIFT * (1 - chance if spec.discrete else 1)
    out = {
        "metric": "accuracy" if spec.discrete else "R²",
        "real": None if real is None else round(real, 4),
        "dream": None if dream is None else round(dream, 4),
        "chance": round(chance, 4),
        "ratio": None if not readable or dream is None else round(dream / real, 4),
        "real_triples": int(len(real_x)),
        "dream_triples": int(len(dream_x)),
        "fit_triples": int(sum(len(e) - 2 for e in fit_eps)),
    }
    if not readable:
        out["note"] = (
            "n/a: the action reader cannot read the actions from real frames either (no better than chance), "
            "so its score on dreams says nothing"
        )
    return out


def action_blind(delta: dict[str, Any], idm: dict[str, Any]) -> bool | None:
    """True when neither measure says actions matter: ΔtPSNR within two standard errors of zero (or below),
    and the dreamed frames' action score less than a quarter of the way from chance to the real frames'. Where
    the reader cannot read real frames (its ratio is n/a), ΔtPSNR decides alone."""
    d, se = delta.get("delta_psnr"), delta.get("stderr")
    real, dream, chance = idm.get("real"), idm.get("dream"), idm.get("chance")
    if d is None or se is None:
        return None
    listens_psnr = d > 2 * se
    if idm.get("ratio") is None or real is None or dream is None:
        return not listens_psnr
    listens_idm = dream > chance + 0.25 * max(real - chance, 0.0)
    return not (listens_psnr or listens_idm)


def controllability(
    model: WorldModel, episodes: Sequence[Episode], roll: dict[str, np.ndarray], temperature: float, seed: int
) -> dict[str, Any]:
    """The controllability section of the card (see the module docstring): `roll` is the card's open-loop
    rollout with the logged actions, `episodes` the held-out episodes the action reader learns from."""
    delta = delta_psnr(model, roll, temperature, seed)
    idm = inverse_dynamics(model.action_spec, episodes, roll, seed)
    return {"delta": delta, "inverse_dynamics": idm, "action_blind": action_blind(delta, idm)}

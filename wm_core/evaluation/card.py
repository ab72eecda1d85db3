"""The model card, first part: open-loop prediction on held-out episodes next to baselines.

Protocol: each held-out episode is filtered through its first `context` real frames, then the model
dreams open-loop with the logged actions. At every horizon k we compare the k-th predicted frame with
the real one, and do the same for two baselines that need no model: copy the last context frame, and
the training set's mean frame.

Plain MSE flatters a model that draws only the background, because classic-control frames are mostly
background. The foreground-masked MSE therefore scores only pixels where the real frame *or* the
prediction differs from the dataset mean frame (so drawing the object in the wrong place costs too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import HELDOUT_SEED_BASE, Episode, EpisodeStore, collect
from ..dream import Dream
from ..protocol import WorldModel
from ..spec import FramePipeline
from .model_card import Budget, Controllability, Curves, CurveSet, Foreground, HeldOut, HorizonRow, ModelCard, Scores
from .object_card import format_objects, object_checks

HORIZONS = (1, 5, 15, 50)
FG_THRESHOLD = 0.05


def heldout_store(
    env_id: str,
    episodes: int,
    out: Path | str,
    seed: int = HELDOUT_SEED_BASE,
    max_steps: int | None = None,
    policy: str = "random",
    pipeline: FramePipeline | None = None,
) -> EpisodeStore:
    """Collect held-out episodes (seeds disjoint from training) into the folder `out`, which the caller owns
    (`wm_core.evaluation.report.heldout_episodes` collects into a temporary folder it removes), with `pipeline`
    (a checkpoint's own; default the catalog's)."""
    return collect(env_id, episodes, Path(out), split="heldout", seed=seed, max_steps=max_steps, policy=policy,
                   pipeline=pipeline)  # fmt: skip


def card_windows(episodes: Sequence[Episode], context: int, horizon: int, seed: int = 0) -> list[Episode]:
    """One open-loop window per held-out episode, starting at a seeded random frame such that the context
    and `horizon` dreamed steps fit (the episode's start when they do not): a Pong episode's first frames
    have no ball in play, a CarRacing episode's first frames show the start line. Each window is the
    episode from its start frame on, with "no action" and no reward before its first frame."""
    rng = np.random.default_rng(seed)
    out = []
    for e in episodes:
        s = int(rng.integers(0, max(0, len(e) - context - horizon) + 1))
        act, rew = e.act[s:].copy(), e.rew[s:].copy()
        act[0], rew[0] = np.zeros_like(act[0]), 0.0
        state = None if e.state is None else e.state[s:]
        out.append(Episode(e.obs[s:], act, rew, e.terminated, e.truncated, state, e.seed, e.ordinal))
    return out


def _frame_errors(pred: np.ndarray, real: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame MSE and foreground-masked MSE; frames (N, H, W, 3) float in [0, 1]."""
    sq = ((pred - real) ** 2).mean(-1)  # (N, H, W)
    fg = (np.abs(real - mean).max(-1) > FG_THRESHOLD) | (np.abs(pred - mean).max(-1) > FG_THRESHOLD)
    fg_mse = (sq * fg).sum((1, 2)) / np.maximum(fg.sum((1, 2)), 1)
    return sq.mean((1, 2)), fg_mse


def open_loop(
    model: WorldModel,
    episodes: Sequence[Episode],
    context: int = 5,
    horizon: int = 50,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Batched open-loop rollouts from each episode's start.

    Returns arrays over (episode, k) for k = 1..horizon: `pred` frames (E, H, S, S, 3) uint8, `real`
    frames, `valid` mask (episode long enough), predicted `reward`/`done_prob`, real `rew`/`term`; and what
    the dream was given: `contexts` (E, context, S, S, 3), `context_acts` and the logged `acts` (E, H, ...).
    """
    eps = [e for e in episodes if len(e) > context]
    if not eps:
        raise ValueError(f"no held-out episode is longer than the {context} context frames")
    H = min(horizon, max(len(e) for e in eps) - context)
    E, S = len(eps), eps[0].obs.shape[1]
    real = np.zeros((E, H, S, S, 3), np.uint8)
    valid = np.zeros((E, H), bool)
    rew = np.zeros((E, H), np.float32)
    term = np.zeros((E, H), bool)
    acts = np.zeros((E, H) + eps[0].act.shape[1:], eps[0].act.dtype)  # padding past an episode's end
    for i, e in enumerate(eps):
        n = min(H, len(e) - context)
        real[i, :n] = e.obs[context : context + n]
        valid[i, :n] = True
        rew[i, :n] = e.rew[context : context + n]
        term[i, n - 1] = e.terminated and context + n == len(e)
        acts[i, :n] = e.act[context : context + n]
    dream = Dream(model, temperature, seed=seed)
    contexts, context_acts = np.stack([e.obs[:context] for e in eps]), np.stack([e.act[:context] for e in eps])
    dream.reset(contexts, context_acts)
    pred = np.zeros_like(real)
    reward = np.zeros((E, H), np.float32)
    done = np.zeros((E, H), np.float32)
    for k in range(H):
        pred[:, k], reward[:, k], _, info = dream.step(acts[:, k])
        done[:, k] = info["done_prob"]
    last = np.stack([e.obs[context - 1] for e in eps])
    return {
        "pred": pred,
        "real": real,
        "valid": valid,
        "reward": reward,
        "done_prob": done,
        "rew": rew,
        "term": term,
        "last": last,
        "contexts": contexts,
        "context_acts": context_acts,
        "acts": acts,
    }


def _psnr(mse: np.ndarray) -> float:
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def _f1(pred: np.ndarray, real: np.ndarray) -> float | None:
    tp, fp, fn = (pred & real).sum(), (pred & ~real).sum(), (~pred & real).sum()
    if tp + fp + fn == 0:
        return None
    return float(2 * tp / (2 * tp + fp + fn))


def card_from_rollout(
    model: WorldModel,
    meta: dict[str, Any],
    roll: dict[str, np.ndarray],
    *,
    context: int,
    horizons: Sequence[int],
    temperature: float,
    seed: int,
    heldout: HeldOut | None = None,
) -> ModelCard:
    """The open-loop part of the card from an `open_loop` rollout: table rows, curves over every k."""
    mean = model.frame_mean.permute(1, 2, 0).cpu().numpy()
    real = roll["real"].astype(np.float32) / 255
    pred = roll["pred"].astype(np.float32) / 255
    last = roll["last"].astype(np.float32) / 255
    curves = Curves()
    rows_by_k: dict[int, HorizonRow] = {}
    for k in range(1, real.shape[1] + 1):
        idx = np.flatnonzero(roll["valid"][:, k - 1])
        if not len(idx):
            break
        r = real[idx, k - 1]
        scores = {}
        predictors = {"model": pred[idx, k - 1], "copy_last": last[idx], "mean_frame": np.broadcast_to(mean, r.shape)}
        for name, p in predictors.items():
            mse, fg = _frame_errors(p, r, mean)
            scores[name] = Scores(mse=float(mse.mean()), psnr=_psnr(mse), fg_mse=float(fg.mean()))
            curve: CurveSet = getattr(curves, name)
            curve.mse.append(round(scores[name].mse, 6))
            curve.psnr.append(round(scores[name].psnr, 6))
            curve.fg_mse.append(round(scores[name].fg_mse, 6))
        curves.k.append(k)
        curves.episodes.append(int(len(idx)))
        rows_by_k[k] = HorizonRow(k=k, episodes=int(len(idx)), **scores)
    v = roll["valid"]
    caps = model.capabilities
    end_f1 = _f1((roll["done_prob"] > 0.5) & v, roll["term"] & v) if caps.done else None
    notes = {}
    if caps.done and end_f1 is None:
        notes["end_f1"] = "n/a: no held-out episode ended inside its dreamed window and the model predicted no end"
    return ModelCard(
        family=meta["family"],
        env_id=meta["env_id"],
        step=meta["step"],
        context=context,
        temperature=temperature,
        seed=seed,
        decoded_by="decoder" if caps.decoder else "probe",
        open_loop=[rows_by_k.get(k, HorizonRow(k=k)) for k in horizons],
        curves=curves,
        reward_mae=float(np.abs(roll["reward"] - roll["rew"])[v].mean()) if caps.reward else None,
        end_f1=end_f1,
        notes=notes,
        foreground=Foreground(
            threshold=FG_THRESHOLD,
            rule="a pixel counts when the real or the predicted frame differs from the dataset mean frame by more "
            "than the threshold in some channel (frames in [0, 1])",
        ),
        heldout=heldout or HeldOut(),
        budget=Budget.from_json(meta.get("budget", {})),
    )


BAR_HORIZONS = (5, 15)


def verdict(card: ModelCard) -> list[dict[str, Any]]:
    """The playable-world bar, check by check: plain PSNR above copy-last-frame and mean-frame at k = 5 and 15;
    foreground MSE at most half of copy-last's at k = 5; ΔtPSNR above two standard errors; the inverse-dynamics
    score on dreams at least 80% of its score on real frames; and, where the card has an object section, the
    object targets (`object_checks`). `passed` is None where the card lacks the number."""
    checks = []
    for k in BAR_HORIZONS:
        r = card.row(k)
        ok = None if r is None else r.model.psnr > max(r.copy_last.psnr, r.mean_frame.psnr)
        checks.append({"check": f"PSNR beats copy-last and mean-frame at k={k}", "passed": ok})
    r = card.row(5)
    ok = None if r is None else r.model.fg_mse <= 0.5 * r.copy_last.fg_mse
    checks.append({"check": "fg-MSE <= 0.5 x copy-last at k=5", "passed": ok})
    ctrl = card.controllability or Controllability()
    d = ctrl.delta
    ok = None if d.delta_psnr is None or d.stderr is None else d.delta_psnr > 2 * d.stderr
    checks.append({"check": "ΔtPSNR > 2 standard errors", "passed": ok})
    ratio = ctrl.inverse_dynamics.ratio
    ok = None if ratio is None else ratio >= 0.8
    checks.append({"check": "inverse dynamics on dreams >= 80% of real", "passed": ok})
    if card.objects is not None:  # a dream that loses its ball fails the bar whatever its PSNR
        checks += [{"check": c["check"], "passed": c["passed"]} for c in object_checks(card.objects)]
    return checks


def format_controllability(ctrl: Controllability) -> list[str]:
    """The controllability section as text lines."""
    d, idm = ctrl.delta, ctrl.inverse_dynamics
    lines = []
    if d.delta_psnr is not None:
        se = f" ± {d.stderr:.2f}" if d.stderr is not None else ""
        lines.append(
            f"ΔtPSNR {d.delta_psnr:+.2f}{se} dB over k = 1..{d.horizon} ({d.windows} windows): PSNR "
            f"{d.psnr_logged:.2f} dB with the logged actions, {d.psnr_random:.2f} with random ones"
        )
    if idm.real is not None:
        dream = "n/a" if idm.dream is None else f"{idm.dream:.3f}"
        ratio = "" if idm.ratio is None else f" ({100 * idm.ratio:.0f}% of real)"
        lines.append(
            f"inverse dynamics ({idm.metric}): dreamed frames {dream}{ratio}, real frames {idm.real:.3f}, "
            f"chance {idm.chance:.3f} ({idm.fit_triples} real frame triples to learn from)"
        )
    if idm.note:
        lines.append(f"inverse dynamics: {idm.note}")
    if ctrl.action_blind:
        lines.append("ACTION-BLIND: neither measure says the dream answers its actions")
    elif ctrl.action_blind is False:
        lines.append("the dream answers its actions")
    return lines


def _known(x: Any) -> Any:
    return "?" if x is None else x


def format_card(card: ModelCard) -> str:
    """The model card as a fixed-width text table."""
    ho, b = card.heldout, card.budget
    held = "held-out" if ho.split == "heldout" else f"NOT held out ({ho.split} split)"
    lines = [
        f"{card.family} on {card.env_id} at step {card.step} "
        f"(open loop after {card.context} real frames, temperature {card.temperature}, "
        f"frames from the {card.decoded_by})",
        f"{held}: {_known(ho.episodes)} episodes, {_known(ho.frames)} frames, seeds from {_known(ho.seed)}, "
        f"content {str(_known(ho.content_hash))[:12]}",
        f"budget: {_known(b.env_steps)} env steps, {_known(b.grad_steps)} gradient steps, "
        f"{_known(b.train_seconds)} s on {_known(b.device)} ({_known(b.threads)} threads), "
        f"peak RSS {_known(b.peak_rss_mb)} MiB",
        "",
        f"{'k':>3} {'eps':>4} | {'fg-MSE model':>12} {'copy-last':>9} {'mean-frame':>10} | "
        f"{'MSE model':>9} {'copy-last':>9} {'mean':>8} | {'PSNR model':>10} {'copy':>6} {'mean':>6}",
    ]
    for row in card.open_loop:
        if not row.episodes or row.model is None:
            lines.append(f"{row.k:>3} {0:>4} | no held-out episode is long enough for this horizon")
            continue
        m, c, z = row.model, row.copy_last, row.mean_frame
        lines.append(
            f"{row.k:>3} {row.episodes:>4} | {m.fg_mse:>12.5f} {c.fg_mse:>9.5f} {z.fg_mse:>10.5f} | "
            f"{m.mse:>9.5f} {c.mse:>9.5f} {z.mse:>8.5f} | {m.psnr:>10.2f} {c.psnr:>6.2f} {z.psnr:>6.2f}"
        )
    fmt = lambda x: "n/a" if x is None else (f"{x:.3f}" if not math.isnan(x) else "nan")  # noqa: E731
    if fg := card.foreground:
        lines.append(f"fg-MSE: error over foreground pixels only; {fg.rule} ({fg.threshold})")
    lines += ["", f"reward MAE {fmt(card.reward_mae)}   episode-end F1 {fmt(card.end_f1)}"]
    lines += [f"  {note}" for note in card.notes.values()]
    if card.objects is not None:
        lines += ["", *format_objects(card.objects)]
    if card.controllability is not None:
        lines += ["", "controllability:"] + [f"  {line}" for line in format_controllability(card.controllability)]
        marks = {True: "pass", False: "FAIL", None: "n/a "}
        lines += ["", "playable-world bar:"] + [f"  [{marks[c['passed']]}] {c['check']}" for c in verdict(card)]
    return "\n".join(lines + _deeper_sections(card))


def _deeper_sections(card: ModelCard) -> list[str]:
    """Text of the latent, counterfactual, state-probe and coverage sections (see `wm_core.evaluation.report`)."""
    lines: list[str] = []
    if lt := card.latent:
        picks = [i for i, k in enumerate(lt.k) if k in (1, 5, 10, 15)]
        lines += ["", f"latent error vs {lt.reference} (temperature 0):"]
        lines += [
            f"  k={lt.k[i]:>2}: cosine {lt.cos[i]:.3f} (copy-last {lt.copy_cos[i]:.3f}), relative L2 "
            f"{lt.rel_l2[i]:.3f} (copy-last {lt.copy_rel_l2[i]:.3f}), {lt.episodes[i]} episodes"
            for i in picks
        ]
    if cf := card.counterfactual:
        real = (
            f"real futures {cf.real_spread} over the first {cf.common_steps} steps"
            if cf.real_replayed
            else "real futures not replayable"
        )
        lines += ["", f"counterfactual actions (one context, {cf.horizon} steps): spread of dreamed futures "
                      f"{cf.dream_spread}, {real}"]  # fmt: skip
        lines += [
            f"  {s.name:<24} dream vs real fg-MSE {s.fg_mse_vs_real} over {s.real_steps} real steps"
            for s in cf.sequences
        ]
    if sp := card.state_probe:
        head = (f"linear state probe, R² ({sp.folds}-fold over episodes, {sp.frames} frames): "
                f"model / {sp.twins} random models of the same size, mean ± sd (best)")  # fmt: skip
        if sp.r2_pixels:
            head += f" / raw frame pairs ({sp.pixel_components} principal components)"
        lines += ["", head]
        sd, best = sp.r2_random_sd or [0.0] * len(sp.names), sp.r2_random_max or sp.r2_random
        for i, (n, m, r, d, b) in enumerate(zip(sp.names, sp.r2_model, sp.r2_random, sd, best)):
            tail = f" / {sp.r2_pixels[i]:.3f}" if sp.r2_pixels else ""
            lines.append(f"  {n:<24} {m:>7.3f} / {r:.3f} ± {d:.3f} ({b:.3f}){tail}")
    if cov := card.coverage:
        counts = ", ".join(f"{n} {c}" for n, c in zip(cov.names, cov.counts))
        lines += ["", f"training actions ({cov.steps} steps): {counts}"]
    elif card.coverage_source:
        lines += ["", f"training actions: unknown ({card.coverage_source})"]
    return lines


def open_loop_grid(
    model: WorldModel,
    episode: Episode,
    context: int = 5,
    horizon: int = 10,
    temperature: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Rows real / predicted / |difference| for k = 1..horizon after `context` real frames, as one
    uint8 image with 1-pixel gaps (the open-loop grid of the Dreamer papers)."""
    roll = open_loop(model, [episode], context, horizon, temperature, seed)
    n = int(roll["valid"][0].sum())
    real, pred = roll["real"][0, :n], roll["pred"][0, :n]
    diff = np.abs(real.astype(np.int16) - pred.astype(np.int16)).astype(np.uint8)
    S = real.shape[1]
    grid = np.full((3 * S + 2, n * (S + 1) - 1, 3), 255, np.uint8)
    for r, row in enumerate((real, pred, diff)):
        for k in range(n):
            grid[r * (S + 1) : r * (S + 1) + S, k * (S + 1) : k * (S + 1) + S] = row[k]
    return grid

"""Figures of the model card, drawn with matplotlib (Agg) into RGB arrays: the Inspect tab shows them one
by one, `wm eval --report` stacks them into report.png. Every figure carries the card's budget line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .model_card import ModelCard

COLORS = {"model": "#2563eb", "copy_last": "#f97316", "mean_frame": "#6b7280", "random": "#9ca3af", "pixels": "#059669"}
LABELS = {"model": "model", "copy_last": "copy last frame", "mean_frame": "mean frame"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def budget_line(card: ModelCard) -> str:
    """One line: what the model cost to make and what it is evaluated on."""
    b, ho = card.budget, card.heldout
    q = lambda x: "?" if x is None else x  # noqa: E731
    return (
        f"{card.family} · {card.env_id} · {q(b.env_steps)} env steps, {q(b.grad_steps)} grad "
        f"steps, {q(b.train_seconds)} s on {q(b.device)} ({q(b.threads)} threads) · "
        f"{q(ho.episodes)} held-out episodes, seeds from {q(ho.seed)}"
    )


def to_image(fig: Any) -> np.ndarray:
    """A matplotlib figure -> (H, W, 3) uint8, then closed."""
    plt = _plt()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


def _figure(card: ModelCard, ncols: int, title: str, height: float = 3.0):
    plt = _plt()
    fig, axes = plt.subplots(1, ncols, figsize=(max(8.4, 4.2 * ncols), height), squeeze=False)
    fig.suptitle(f"{title}\n{budget_line(card)}", fontsize=9)
    return fig, axes[0]


def grid_image(real: np.ndarray, pred: np.ndarray, scale: int = 2) -> np.ndarray:
    """Rows real / predicted / |difference| of (n, S, S, 3) uint8 frames, 1-pixel gaps, scaled up."""
    n, S = len(real), real.shape[1]
    diff = np.abs(real.astype(np.int16) - pred.astype(np.int16)).astype(np.uint8)
    grid = np.full((3 * S + 2, max(1, n * (S + 1) - 1), 3), 255, np.uint8)
    for r, row in enumerate((real, pred, diff)):
        for k in range(n):
            grid[r * (S + 1) : r * (S + 1) + S, k * (S + 1) : k * (S + 1) + S] = row[k]
    return np.repeat(np.repeat(grid, scale, 0), scale, 1)


def open_loop_figure(card: ModelCard, roll: dict[str, np.ndarray], episode: int, horizon: int) -> np.ndarray:
    """The open-loop grid of one held-out episode with row labels: real, predicted, |difference|."""
    n = int(min(horizon, roll["valid"][episode].sum()))
    grid = grid_image(roll["real"][episode, :n], roll["pred"][episode, :n])
    plt = _plt()
    w = max(4.0, grid.shape[1] / 90)
    fig, ax = plt.subplots(figsize=(w, 2.6))
    ax.imshow(grid, interpolation="nearest")
    S2 = grid.shape[0] / 3
    predicted = "predicted" if card.decoded_by == "decoder" else "probe view"
    ax.set_yticks([S2 * (i + 0.5) for i in range(3)], ["real", predicted, "|difference|"], fontsize=8)
    step = max(1, n // 10)
    cell = grid.shape[1] / max(n, 1)
    ax.set_xticks([cell * (k + 0.5) for k in range(0, n, step)], [str(k + 1) for k in range(0, n, step)], fontsize=7)
    ax.set_xlabel(f"k (steps after {card.context} real frames), episode {episode}", fontsize=8)
    drawn = "the decoder" if card.decoded_by == "decoder" else "a probe decoder (what the latent knows)"
    fig.suptitle(f"Open loop, temperature {card.temperature}, frames from {drawn}\n{budget_line(card)}", fontsize=8)
    fig.tight_layout()
    return to_image(fig)


def curves_figure(card: ModelCard) -> np.ndarray:
    """fg-MSE, MSE and PSNR over horizon k for the model and both baselines."""
    c = card.curves
    fig, axes = _figure(card, 3, "Error vs horizon (open loop on held-out episodes)")
    for ax, metric, label in zip(axes, ("fg_mse", "mse", "psnr"), ("foreground MSE", "MSE", "PSNR (dB)")):
        for name in ("model", "copy_last", "mean_frame"):
            ax.plot(c.k, getattr(getattr(c, name), metric), color=COLORS[name], label=LABELS[name], lw=1.6)
        ax.set_xlabel("k", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        if metric != "psnr":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return to_image(fig)


def reward_end_figure(card: ModelCard, roll: dict[str, np.ndarray], episode: int) -> np.ndarray:
    """Predicted vs real reward, and predicted end probability vs the real end, over one rollout."""
    v = roll["valid"][episode]
    k = np.arange(1, int(v.sum()) + 1)
    fig, axes = _figure(card, 2, f"Reward and episode end over the rollout of episode {episode}")
    axes[0].plot(k, roll["rew"][episode, v], color=COLORS["mean_frame"], lw=2.5, label="real")
    axes[0].plot(k, roll["reward"][episode, v], color=COLORS["model"], lw=1.4, label="predicted")
    axes[0].set_title(f"reward (MAE over all episodes {card.reward_mae or 0:.3f})", fontsize=9)
    axes[1].plot(k, roll["done_prob"][episode, v], color=COLORS["model"], label="predicted P(end)")
    ends = k[roll["term"][episode, v]]
    for e in ends:
        axes[1].axvline(e, color="#dc2626", ls="--", label="real end")
    axes[1].set_ylim(-0.05, 1.05)
    f1 = card.end_f1
    axes[1].set_title(f"episode end (F1 over all episodes {'n/a' if f1 is None else f'{f1:.2f}'})", fontsize=9)
    for ax in axes:
        ax.set_xlabel("k", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return to_image(fig)


def latent_figure(card: ModelCard) -> np.ndarray | None:
    """Latent prediction error over k (cosine and relative L2) beside the copy-last-latent baseline (None for a
    family without a latent)."""
    lt = card.latent
    if not lt:
        return None
    fig, axes = _figure(card, 2, f"Latent prediction error vs {lt.reference}")
    for ax, key, label in zip(axes, ("cos", "rel_l2"), ("cosine similarity (higher is better)", "relative L2 error")):
        ax.plot(lt.k, getattr(lt, key), color=COLORS["model"], label="imagined latent")
        ax.plot(lt.k, getattr(lt, "copy_" + key), color=COLORS["copy_last"], label="copy last latent")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("k", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return to_image(fig)


def counterfactual_figure(card: ModelCard, cf: dict[str, np.ndarray], every: int = 1) -> np.ndarray:
    """One context, several action plans: the dreamed future (and the real one) of each plan, side by side."""
    c = card.counterfactual
    pred, real, valid = cf["pred"], cf["real"], cf["valid"]
    n, H, S = pred.shape[0], pred.shape[1], pred.shape[2]
    ks = list(range(0, H, every))
    rows = []
    for i in range(n):
        rows.append(pred[i, ks])
        if c.real_replayed:
            r = real[i, ks].copy()
            r[~valid[i, ks]] = 255  # the real episode ended: blank
            rows.append(r)
    grid = np.full((len(rows) * (S + 1), len(ks) * (S + 1), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for j, f in enumerate(row):
            grid[r * (S + 1) : r * (S + 1) + S, j * (S + 1) : j * (S + 1) + S] = f
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, grid.shape[1] / 70), max(2.5, grid.shape[0] / 70)))
    ax.imshow(grid, interpolation="nearest")
    labels = []
    for s in c.sequences:
        labels.append(f"dream: {s.name}")
        if c.real_replayed:
            labels.append(f"real: {s.name}")
    ax.set_yticks([(S + 1) * (i + 0.5) for i in range(len(rows))], labels, fontsize=7)
    ax.set_xticks([(S + 1) * (j + 0.5) for j in range(len(ks))], [str(k + 1) for k in ks], fontsize=6)
    spread = f"spread of the dreamed futures {c.dream_spread}"
    if c.real_spread is not None:
        spread += f", of the real futures {c.real_spread} (first {c.common_steps} steps)"
    fig.suptitle(f"Counterfactual actions from one context: {spread}\n{budget_line(card)}", fontsize=8)
    fig.tight_layout()
    return to_image(fig)


def controllability_figure(card: ModelCard) -> np.ndarray | None:
    """PSNR over k with the logged vs random actions (ΔtPSNR is the gap), and the inverse-dynamics score on
    real frames, dreamed frames and chance."""
    ctrl = card.controllability
    if not ctrl or not ctrl.delta.curve_logged:
        return None
    d, idm = ctrl.delta, ctrl.inverse_dynamics
    blind = " (ACTION-BLIND)" if ctrl.action_blind else ""
    fig, axes = _figure(card, 2, f"Does the dream answer its actions?{blind}")
    k = list(range(1, len(d.curve_logged) + 1))
    axes[0].plot(k, d.curve_logged, color=COLORS["model"], label="dream with the logged actions")
    axes[0].plot(k, d.curve_random, color=COLORS["copy_last"], label="dream with random actions")
    se = f" ± {d.stderr:.2f}" if d.stderr is not None else ""
    axes[0].set_title(f"PSNR vs the real future: ΔtPSNR {d.delta_psnr:+.2f}{se} dB", fontsize=9)
    axes[0].set_xlabel("k", fontsize=8)
    axes[0].legend(fontsize=7)
    if idm.real is not None:
        vals = [idm.real, idm.dream or 0.0, idm.chance]
        axes[1].bar(range(3), vals, color=[COLORS["pixels"], COLORS["model"], COLORS["random"]])
        axes[1].set_xticks(range(3), ["real frames", "dreamed frames", "chance"], fontsize=8)
        axes[1].set_title(f"inverse dynamics {idm.metric}: which action led to this frame?", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return to_image(fig)


def probe_figure(card: ModelCard) -> np.ndarray | None:
    """State-probe R^2 per true-state dim: trained model vs randomly initialised ones (mean ± sd)."""
    p = card.state_probe
    if not p:
        return None
    fig, axes = _figure(card, 1, "Linear state probe on held-out episodes (R², higher is better)", height=3.2)
    ax, x = axes[0], np.arange(len(p.names))
    pixels = p.r2_pixels
    w, offsets = (0.27, (-0.27, 0.0, 0.27)) if pixels else (0.4, (-0.2, 0.2))  # bar width, one offset per series
    ax.bar(x + offsets[0], p.r2_model, w, color=COLORS["model"], label="trained model")
    twins = p.twins
    label = f"random models, same size (mean ± sd of {twins})" if twins > 1 else "random model, same size"
    sd = p.r2_random_sd
    ax.bar(x + offsets[1], p.r2_random, w, yerr=sd, capsize=3, color=COLORS["random"], label=label)
    if pixels:
        label = f"raw frame pairs ({p.pixel_components} principal components)"
        ax.bar(x + offsets[2], pixels, w, color=COLORS["pixels"], label=label)
    ax.set_xticks(x, p.names, fontsize=7)
    ax.set_ylim(min(0.0, *p.r2_model, *p.r2_random, *(pixels or [])), 1.25)  # headroom for the legend
    ax.set_yticks([t for t in ax.get_yticks() if t <= 1.0])
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    fig.tight_layout()
    return to_image(fig)


def coverage_figure(card: ModelCard) -> np.ndarray | None:
    """Training-data action counts, and per true-state dim a heatmap of action x state bin."""
    cov = card.coverage
    if not cov:
        return None
    dims = cov.state[:4]
    fig, axes = _figure(card, 1 + len(dims), f"Training data: which actions, in which states ({cov.steps} steps)")
    axes[0].bar(range(len(cov.counts)), cov.counts, color=COLORS["model"])
    axes[0].set_xticks(range(len(cov.names)), cov.names, fontsize=7, rotation=20)
    axes[0].set_title("action counts", fontsize=9)
    for ax, d in zip(axes[1:], dims):
        grid = np.asarray(d.counts, float)
        ax.imshow(grid, aspect="auto", cmap="Blues", interpolation="nearest")
        for (i, j), v in np.ndenumerate(grid):
            if v == 0:
                ax.text(j, i, "0", ha="center", va="center", fontsize=7, color="#dc2626")
        ax.set_yticks(range(len(cov.names)), cov.names, fontsize=7)
        e = d.edges
        ax.set_xticks([0, len(e) - 2], [f"{e[0]:.2g}", f"{e[-1]:.2g}"], fontsize=7)
        ax.set_title(d.name, fontsize=9)
    fig.tight_layout()
    return to_image(fig)


def card_figures(report: Any, episode: int | None = None, horizon: int = 15) -> dict[str, np.ndarray | None]:
    """Every figure of a `Report`, by name; the open-loop figures show `episode` (default: the longest)."""
    card, roll = report.card, report.roll
    episode = int(roll["valid"].sum(1).argmax()) if episode is None else episode
    return {
        "open_loop": open_loop_figure(card, roll, episode, horizon),
        "curves": curves_figure(card),
        "reward_end": reward_end_figure(card, roll, episode),
        "controllability": controllability_figure(card),
        "latent": latent_figure(card),
        "counterfactual": counterfactual_figure(card, report.cf),
        "state_probe": probe_figure(card),
        "coverage": coverage_figure(card),
    }


def report_image(report: Any) -> np.ndarray:
    """All figures stacked into one image (white margins), for report.png."""
    imgs = [im for im in card_figures(report).values() if im is not None]
    W = max(im.shape[1] for im in imgs)
    padded = [np.pad(im, ((0, 12), (0, W - im.shape[1]), (0, 0)), constant_values=255) for im in imgs]
    return np.concatenate(padded, 0)

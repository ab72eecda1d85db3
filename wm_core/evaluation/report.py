"""The whole model card of a checkpoint: `evaluate_checkpoint` is the one entry point behind `wm eval` and the
Inspect tab, so the command line and the app always show the same numbers. It gathers the open-loop card
(`card`), controllability (`controllability`), latent error and state probe (`probes`), counterfactual
actions (`counterfactual`) and the training data's coverage (`wm_core.data.coverage`); `write_report` saves
report.json and report.png (`figures`) beside the run."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import check_env, load_checkpoint, recorded_data_dir
from ..data import HELDOUT_SEED_BASE, Episode, EpisodeStore
from ..data.coverage import action_coverage
from ..data.envs import env_entry
from ..files import atomic_write_bytes, atomic_write_json
from ..protocol import WorldModel
from ..spec import FramePipeline
from .card import HORIZONS, card_from_rollout, card_windows, heldout_store, open_loop
from .controllability import controllability
from .counterfactual import counterfactuals
from .model_card import (
    Controllability,
    Counterfactual,
    Coverage,
    HeldOut,
    LatentError,
    ModelCard,
    Record,
    StateProbe,
)
from .object_card import OBJECT_EPISODES, OBJECT_SEED_OFFSET, object_card
from .probes import latent_error, state_probe

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"


# ---- coverage of a run ---------------------------------------------------------------------------
def coverage_of_run(meta: dict[str, Any]) -> tuple[Coverage | None, str]:
    """The training data's coverage: recorded at training time, else recomputed from the data directory."""
    data = meta.get("data", {})
    if data.get("coverage"):
        return Coverage.from_json(data["coverage"]), "recorded when the model was trained"
    d = recorded_data_dir(meta) or Path(meta["_dir"]) / "data"
    if (d / "index.json").exists():
        store = EpisodeStore.open(d)
        entry = env_entry(meta["env_id"])
        coverage = action_coverage(store.episodes(), store.action_spec, entry.state_names)
        return Coverage.from_json(coverage), "from the run's data directory"
    saved = Path(meta["_dir"]) / REPORT_JSON  # written by `wm eval` while the training data was still there
    if saved.exists():
        try:
            card = ModelCard.load(saved)
        except ValueError:
            card = None
        if card is not None and card.coverage and card.step == meta["step"]:
            return card.coverage, "from the run's data directory, as the saved report.json recorded it"
    return None, "the training data is not here and the checkpoint predates recorded coverage"


# ---- the whole card --------------------------------------------------------------------------------
@dataclass
class Report:
    """The full model card plus the arrays its figures are drawn from."""

    card: ModelCard
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
    env_id: str, episodes: int, seed_base: int = HELDOUT_SEED_BASE, data: str | None = None, policy: str = "random",
    meta: dict[str, Any] | None = None,
):  # fmt: skip
    """(episodes, held-out record) from a given store or freshly collected with seeds from `seed_base` by `policy`,
    cut at the env's `heldout_steps`; with a checkpoint's `meta`, collected with its frame pipeline, and its model
    must fit the env (`check_env`)."""
    with tempfile.TemporaryDirectory(prefix="wm-heldout-") as tmp:
        if data:
            store = EpisodeStore.open(data)
            if store.env_id != env_id:
                raise ValueError(f"the held-out store holds {store.env_id} episodes but the run models {env_id}")
        else:
            cap = env_entry(env_id).heldout_steps
            pipeline = FramePipeline.from_json(meta["pipeline"]) if meta is not None else None
            store = heldout_store(
                env_id, episodes, out=tmp, seed=seed_base, max_steps=cap, policy=policy, pipeline=pipeline
            )  # the checkpoint's frames: an older world's sticky Atari too
        if meta is not None:
            check_env(meta, store.action_spec, store.pipeline)
        s = store.summary()
        info = HeldOut(
            episodes=s["episodes"],
            frames=s["frames"],
            content_hash=s["content_hash"],
            seed=min(store.seeds) if store.seeds else None,
            split=store.split,
            policies=s["policies"],
        )
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
    device: str | torch.device = "cpu",
) -> Report:
    """Every section of the model card for the run at `run`, on held-out episodes (see module docstring); the
    model runs on `device` (when it is loaded here)."""
    if model is None or meta is None:
        model, meta = load_checkpoint(run, device)
    eps, heldout = heldout_episodes(meta["env_id"], episodes, seed_base, data, heldout_policy(meta), meta)
    windows = card_windows(eps, context, max(HORIZONS), seed)
    heldout.windows = "one per episode, from a seeded random frame where context and 50 steps fit"
    roll = open_loop(model, windows, context, max(HORIZONS), temperature, seed)
    card = card_from_rollout(model, meta, roll, context=context, horizons=HORIZONS, temperature=temperature,
                             seed=seed, heldout=heldout)  # fmt: skip
    card.controllability = Controllability.read(controllability(model, eps, roll, temperature, seed))
    entry = env_entry(meta["env_id"])
    pipeline = FramePipeline.from_json(meta["pipeline"])
    if model.capabilities.latent:
        card.latent = LatentError.read(latent_error(model, eps, context, counterfactual_horizon))
        card.state_probe = StateProbe.read(state_probe(model, eps, entry.state_names, seed))
    else:
        card.notes["latent"] = "n/a: a pixel-space model has no latent (its state is its last frames)"
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
    card.counterfactual = Counterfactual.read(cf_card)
    card.coverage, card.coverage_source = coverage_of_run(meta)
    seed_objects = seed_base + OBJECT_SEED_OFFSET
    card.objects = object_card(model, meta["env_id"], pipeline, min(episodes, OBJECT_EPISODES), None, temperature,
                               seed_objects)  # fmt: skip
    return Report(card, roll, cf, eps)


def write_report(report: Report, out_dir: Path | str) -> tuple[Path, Path]:
    """report.json and report.png beside the checkpoint (atomic writes)."""
    from .figures import report_image

    out = Path(out_dir)
    js = out / REPORT_JSON
    atomic_write_json(js, report.card.to_json())
    png = out / REPORT_PNG
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, report_image(report), extension=".png")
    atomic_write_bytes(png, buf.getvalue())
    return js, png


def card_equal(a: Any, b: Any, tol: float = 1e-6) -> bool:
    """True when two cards (`ModelCard`s or their JSON) hold the same numbers (floats within `tol`, relative)."""
    a, b = (x.to_json() if isinstance(x, Record) else x for x in (a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(card_equal(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(card_equal(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return bool(np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True))
    return a == b


__all__ = ["Report", "card_equal", "coverage_of_run", "evaluate_checkpoint", "heldout_episodes", "write_report"]

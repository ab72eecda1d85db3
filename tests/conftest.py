"""Shared, expensive fixtures: one tiny real CartPole store, one tiny Pendulum store, one tiny trained run.

Everything here is real: gymnasium envs rendering frames, real Adam steps, real safetensors files.
"""

from __future__ import annotations

import os

# pygame (the classic-control renderer) must never try to open a window.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from pathlib import Path

import numpy as np
import pytest
import torch

from wm_core.data import EpisodeStore, SequenceSampler, collect
from wm_core.protocol import WorldModel, make_optimizer
from wm_core.registry import get_family
from wm_core.train import train_run

# One intra-op thread: on a shared 2-core machine two torch threads fighting another process made a tiny
# training step ~10x slower (0.3 s instead of 0.03 s), and tiny models gain nothing from a second thread.
torch.set_num_threads(1)

TRAINED_STEPS = 10
TRAIN_COMMAND = "wm train --family ha --env CartPole-v1 --preset tiny (conftest)"


@pytest.fixture(scope="session")
def cartpole_store(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """Four short random-policy CartPole episodes (about 60 frames)."""
    return collect("CartPole-v1", 4, tmp_path_factory.mktemp("cartpole"), seed=0)


@pytest.fixture(scope="session")
def pendulum_store(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """Two Pendulum episodes cut to 12 steps: a Box(1) action space in [-2, 2]."""
    return collect("Pendulum-v1", 2, tmp_path_factory.mktemp("pendulum"), seed=0, max_steps=12)


@pytest.fixture(scope="session")
def stores(cartpole_store: EpisodeStore, pendulum_store: EpisodeStore) -> dict[str, EpisodeStore]:
    """Stores by action kind: 'discrete' (CartPole) and 'box' (Pendulum)."""
    return {"discrete": cartpole_store, "box": pendulum_store}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, cartpole_store: EpisodeStore) -> Path:
    """A tiny `ha` run trained for a few real steps on the CartPole store. Treat as read-only: copy it."""
    out = tmp_path_factory.mktemp("runs") / "ha-cartpole"
    run, report = train_run(
        "ha", "CartPole-v1", preset="tiny", overrides={"steps": TRAINED_STEPS}, data=cartpole_store.root,
        out=out, device="cpu", command=TRAIN_COMMAND, checkpoint_every=0,
    )  # fmt: skip
    assert report.step == TRAINED_STEPS
    return run


def make_model(family: str, store: EpisodeStore, seed: int = 0) -> WorldModel:
    """A fresh tiny model of `family` for the store's action spec, with the store's mean frame."""
    torch.manual_seed(seed)
    cls = get_family(family)
    model = cls(cls.preset("tiny"), store.action_spec, store.pipeline.size)
    model.set_frame_mean(store.mean_frame())
    return model


def sampler_for(store: EpisodeStore, model: WorldModel, seed: int = 0, batch_size: int | None = None):
    """A SequenceSampler over the store with the model's tiny sequence length and batch size."""
    cfg = model.config
    return SequenceSampler(store.episodes(), store.action_spec, cfg.seq_len, batch_size or cfg.batch_size, seed=seed)


def adam_steps(model: WorldModel, sampler: SequenceSampler, steps: int, lr: float = 1e-3) -> torch.optim.Adam:
    """Take `steps` real Adam steps on sampled batches (the optimizer `wm train` builds); returns it."""
    opt = make_optimizer(model, lr)
    model.train()
    for _ in range(steps):
        loss, _ = model.loss(sampler.sample())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step()
    model.eval()
    return opt


def real_frames(store: EpisodeStore, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `length` frames and raw actions of `batch` stored episodes: (B, T, H, W, 3), (B, T[, n])."""
    eps = [store.load(i % len(store)) for i in range(batch)]
    assert all(len(e) >= length for e in eps), "fixture episodes are shorter than the context asked for"
    return np.stack([e.obs[:length] for e in eps]), np.stack([e.act[:length] for e in eps])


def context_state(model: WorldModel, store: EpisodeStore, batch: int, length: int = 5) -> dict:
    """Filter `batch` real episodes through their first `length` frames (act zero at the first)."""
    frames, acts = real_frames(store, batch, length)
    vec = model.action_spec.encode(acts)
    vec[:, 0] = 0.0
    state = model.initial(batch)
    for t in range(length):
        state = model.observe(state, torch.as_tensor(frames[:, t]), vec[:, t])
    return state

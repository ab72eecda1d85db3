"""Tiny learning test: `ha` overfits two short real CartPole episodes through the project's one training loop.

At step 0 the decoder draws the dataset mean frame (zero-initialised residual output), so the first
foreground MSE is the mean-frame baseline; learning must beat it, not just shrink the background error.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from wm_core.data import SequenceSampler, collect
from wm_core.registry import get_family
from wm_core.train import Trainer

# 200 steps, not 100: at 100 the foreground MSE's fall depends on the seed (x0.07 to x0.65 over six
# seeds); at 200 it is x0.05 to x0.15 for all six, and the loss x0.09 to x0.13. About 7 s on 2 cores.
STEPS = 200


def test_ha_overfits_two_cartpole_episodes(tmp_path: Path) -> None:
    store = collect("CartPole-v1", 2, tmp_path / "two", seed=0)
    episodes = store.episodes()
    assert len(episodes) == 2 and all(ep.terminated for ep in episodes)

    torch.manual_seed(0)
    cls = get_family("ha")
    model = cls(cls.preset("tiny", lr=1e-3), store.action_spec, store.pipeline.size)
    model.set_frame_mean(np.concatenate([ep.obs for ep in episodes]).mean(0) / 255.0)
    cfg = model.config
    fixed = SequenceSampler(episodes, store.action_spec, cfg.seq_len, batch_size=8, seed=123).sample()

    def evaluate() -> dict[str, float]:
        torch.manual_seed(0)  # the VAE's reparameterisation noise: same draw before and after
        with torch.no_grad():
            return model.loss(fixed)[1]

    before = evaluate()
    logged: list[int] = []
    sampler = SequenceSampler(episodes, store.action_spec, cfg.seq_len, cfg.batch_size, seed=0)
    report = Trainer(model, sampler, device=torch.device("cpu")).run(
        STEPS, log_every=50, on_metrics=lambda step, _m: logged.append(step)
    )
    after = evaluate()

    assert report.step == STEPS and not report.stopped and logged == [50, 100, 150, 200]
    assert all(np.isfinite(h["loss"]) for h in report.history)
    assert after["loss"] < 0.4 * before["loss"], (before, after)
    assert after["recon_fg_mse"] < 0.4 * before["recon_fg_mse"], (before, after)  # beats the mean frame
    assert after["recon_mse"] < before["recon_mse"], (before, after)
    assert after["reward_mse"] < 0.2 * before["reward_mse"], (before, after)
    assert after["done_bce"] < 0.5 * before["done_bce"], (before, after)
    # The loop's own running average fell too (first logged window vs last).
    assert report.history[-1]["loss"] < report.history[0]["loss"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc settings are glibc's")
def test_training_keeps_freed_memory_for_reuse() -> None:
    import resource

    from wm_core.train import keep_freed_memory

    assert keep_freed_memory() is True and keep_freed_memory() is True  # glibc takes both settings; repeatable
    faults = []
    for _ in range(12):  # 32 MiB of activations freed and allocated again, as training steps do
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(8 << 20)  # float32: 32 MiB, every page touched
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del x
    # With glibc's defaults every one of them faults its 8,192 pages in again; kept, the freed block comes
    # back without page faults (the first one or two grow the heap, and under pytest a few more fault).
    assert sum(f < 200 for f in faults) >= 6, faults

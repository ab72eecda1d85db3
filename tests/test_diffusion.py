"""The pixel-space `diffusion` family: a tiny learning test on real Pong, and sampling steps as a dream knob.
(Conformance and save/load identity come from the registry-wide tests in test_protocol.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model

from wm_core.data import EpisodeStore, SequenceSampler, collect
from wm_core.dream import Dream
from wm_core.evaluation.card import card_from_rollout, open_loop
from wm_core.protocol import WorldModel
from wm_core.registry import get_family
from wm_core.train import Trainer

CONTEXT, HORIZONS = 5, (1, 3)
STEPS = 150
# The tiny preset (whole frames, the family's default) with a higher learning rate, the training noise levels
# centred where a one-step sampler works (it denoises once, from sigma_max = 5, while the default log-sigma ~
# N(-0.4, 1.2^2) trains above sigma 3 only one time in ten), and one sampling step. (These numbers were measured
# when the schedule still ended with a step at sigma_min = 0.002, which hardly changes a frame: the same
# sampler as one step now.) Measured on these episodes at temperature 0, PSNR at k = 1 /
# k = 3 minus copy-last's (28.3 / 27.1 dB), with the U-Net's 1x1 input-to-output path:
#   this config, 150 steps, seeds 0, 1, 2:  +5.1 / +4.7, +4.7 / +4.3, +5.0 / +4.7 dB
#   this config, 200 steps, seeds 0, 1, 2:  +6.6 / +6.7, +6.2 / +6.9, +5.8 / +6.4 dB
#   default sigmas, lr 3e-3, 200 steps, seeds 0, 1:  -1.5 / -1.5, -0.6 / -1.1 dB (loses to copy-last)
# (before that path, this config needed 200 steps for +2.1 to +3.8 dB, and 150 steps lost at k = 2 with
# seed 1). So 150 steps (about 6-10 s on one core) with a 2 dB margin.
OVERRIDES = {"lr": 3e-3, "sigma_loc": 1.0, "sigma_scale": 0.5, "steps_default": 1}
SEED = 0


@pytest.fixture(scope="module")
def two_pong_episodes(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """Two scripted Pong episodes of 10 steps, starting as the first ball is served."""
    store = collect("ALE/Pong-v5", 2, tmp_path_factory.mktemp("pong"), policy="scripted", seed=0, max_steps=10)
    assert [len(store.load(i)) for i in range(2)] == [11, 11]
    return store


@pytest.fixture(scope="module")
def trained(two_pong_episodes: EpisodeStore) -> dict:
    """The diffusion model after STEPS real Adam steps on the two episodes (through Trainer)."""
    store = two_pong_episodes
    episodes = store.episodes()
    torch.manual_seed(SEED)
    cls = get_family("diffusion")
    model = cls(cls.preset("tiny", **OVERRIDES), store.action_spec, store.pipeline.size)
    model.set_frame_mean(store.mean_frame())
    cfg = model.config
    sampler = SequenceSampler(episodes, store.action_spec, cfg.seq_len, cfg.batch_size, seed=SEED)
    report = Trainer(model, sampler, device=torch.device("cpu")).run(STEPS, log_every=50)
    return {"model": model, "episodes": episodes, "report": report}


def test_untrained_residual_model_at_temperature_zero_copies_the_last_frame(
    two_pong_episodes: EpisodeStore,
) -> None:
    """With `residual` the family diffuses the change from the last frame, and the U-Net's output layer starts
    at zero: before any training a deterministic dream is exactly copy-last, at every step."""
    torch.manual_seed(SEED)
    cls = get_family("diffusion")
    model = cls(cls.preset("tiny", residual=True), two_pong_episodes.action_spec, 64)
    roll = open_loop(model, two_pong_episodes.episodes(), CONTEXT, 3, temperature=0.0, seed=0)
    for k in range(3):
        np.testing.assert_array_equal(roll["pred"][:, k], roll["last"])


def test_diffusion_overfits_two_pong_episodes(trained: dict) -> None:
    report, model = trained["report"], trained["model"]
    assert report.step == STEPS and all(np.isfinite(h["loss"]) for h in report.history)
    assert report.history[-1]["loss"] < 0.3 * report.history[0]["loss"], report.history
    assert report.history[-1]["denoise_moving_mse"] < report.history[0]["denoise_moving_mse"]
    roll = open_loop(model, trained["episodes"], CONTEXT, max(HORIZONS), temperature=0.0, seed=0)
    meta = {"family": "diffusion", "env_id": "ALE/Pong-v5", "step": STEPS}
    card = card_from_rollout(model, meta, roll, context=CONTEXT, horizons=HORIZONS, temperature=0.0, seed=0)
    for row in card.open_loop:
        assert row.episodes == 2
        # Deterministic dreams (temperature 0: the denoiser's best guess) of the training episodes beat copying
        # the last real frame, which Pong makes hard: only the ball and paddles (~1.5% of pixels) change.
        assert row.model.psnr > row.copy_last.psnr + 2.0, row
        assert row.model.fg_mse < row.copy_last.fg_mse, row


def dream_step(model: WorldModel, episodes: list, temperature: float, steps: int | None, seed: int) -> np.ndarray:
    """One batched dream step from the episodes' first CONTEXT frames, the dream's random stream seeded."""
    dream = Dream(model, temperature, seed=seed)
    dream.set_sampling_steps(steps)
    dream.reset(np.stack([e.obs[:CONTEXT] for e in episodes]), np.stack([e.act[:CONTEXT] for e in episodes]))
    return dream.step(np.array([e.act[CONTEXT] for e in episodes]))[0]


def test_sampling_steps_are_checked(trained: dict, cartpole_store: EpisodeStore) -> None:
    dream = Dream(trained["model"])
    assert dream.steps_range == (1, 6) and dream.sampling_steps is None
    for bad in (0, 7, -1):
        with pytest.raises(ValueError, match=f"sampling steps must be between 1 and 6, got {bad}"):
            dream.set_sampling_steps(bad)
    dream.set_sampling_steps(6)
    assert dream.sampling_steps == 6
    dream.set_sampling_steps(None)
    assert dream.sampling_steps is None
    ha = Dream(make_model("ha", cartpole_store))
    with pytest.raises(ValueError, match="the ha family draws each frame in one pass: it has no sampling steps"):
        ha.set_sampling_steps(2)
    ha.set_sampling_steps(None)  # "the default" is fine for every family
    assert ha.sampling_steps is None


def test_step_counts_draw_different_frames(trained: dict) -> None:
    model, episodes = trained["model"], trained["episodes"]
    two = dream_step(model, episodes, 1.0, 2, seed=3)
    np.testing.assert_array_equal(two, dream_step(model, episodes, 1.0, 2, seed=3))  # same seed, same frame
    four = dream_step(model, episodes, 1.0, 4, seed=3)
    assert np.abs(four.astype(int) - two.astype(int)).mean() > 0.5  # intensity levels of 255, per pixel
    # None means the config's `steps_default` (this test's config: 1; the presets': 2)
    default = dream_step(model, episodes, 1.0, None, seed=3)
    np.testing.assert_array_equal(default, dream_step(model, episodes, 1.0, model.config.steps_default, seed=3))
    assert get_family("diffusion").preset("small").steps_default == 2


def test_temperature_zero_dream_steps_are_deterministic(trained: dict) -> None:
    model, episodes = trained["model"], trained["episodes"]
    for steps in (1, 3):
        cold = [dream_step(model, episodes, 0.0, steps, seed=s) for s in (0, 1)]
        np.testing.assert_array_equal(cold[0], cold[1])
        warm = [dream_step(model, episodes, 1.0, steps, seed=s) for s in (0, 1)]
        assert not np.array_equal(warm[0], warm[1])  # at temperature 1 the seed matters


@pytest.mark.parametrize("planes", [False, True])
def test_action_planes_reach_every_pixel_of_the_unet(two_pong_episodes: EpisodeStore, planes: bool) -> None:
    """With the conditioning vector's action columns zeroed, the denoiser hears the action only through the
    action planes: with them two actions give different frames, without them the same frame."""
    torch.manual_seed(SEED)
    cls = get_family("diffusion")
    model = cls(cls.preset("tiny", action_planes=planes), two_pong_episodes.action_spec, 64).train()
    cfg, A = model.config, two_pong_episodes.action_spec.dim
    with torch.no_grad():
        model.cond[0].weight[:, -cfg.context * A :] = 0
        for p in model.unet.parameters():  # a random U-Net, so the untrained zero output layer says something
            p.add_(torch.randn_like(p) * 0.05)
    noisy, sigma = torch.randn(1, 3, 64, 64), torch.ones(1)
    context = torch.rand(1, cfg.context, 3, 64, 64) * 2 - 1
    frames = []
    for a in (0, 1):
        actions = torch.zeros(1, cfg.context, A)
        actions[:, :, a] = 1
        frames.append(model.denoise(noisy, sigma, context, actions))
    gap = (frames[0] - frames[1]).abs().max().item()
    assert (gap > 1e-4) if planes else (gap == 0.0), gap

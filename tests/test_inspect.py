"""The full model card (report sections, figures, files), the latent explorer and the Inspect controller,
on real tiny trained runs and real held-out CartPole episodes; `wm eval --json` must equal what the
Inspect tab shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import context_state, make_model

import wm_core
from playground.inspector import Inspection
from wm_core.data.coverage import action_coverage
from wm_core.data.envs import env_entry
from wm_core.evaluation.counterfactual import counterfactuals
from wm_core.evaluation.explorer import LatentExplorer
from wm_core.evaluation.probes import _ridge_r2, frame_pair_components
from wm_core.evaluation.report import card_equal, evaluate_checkpoint

EPISODES = 12  # the fewest that give the state probe its five folds of whole episodes with room to spare


@pytest.fixture(scope="module")
def report(trained_run: Path) -> wm_core.Report:
    """Every card section of the tiny trained CartPole run."""
    return evaluate_checkpoint(trained_run, episodes=EPISODES)


def test_card_sections_are_complete_and_consistent(report: wm_core.Report) -> None:
    card = report.card
    curves = card.curves
    assert curves.k == list(range(1, len(curves.k) + 1)) and len(curves.k) >= 15
    for name in ("model", "copy_last", "mean_frame"):
        assert len(getattr(curves, name).fg_mse) == len(curves.k)
    row5 = card.row(5)
    assert row5.model.fg_mse == pytest.approx(curves.model.fg_mse[4], rel=1e-4)  # table = curve
    lt = card.latent
    assert all(-1.0 <= c <= 1.0 for c in lt.cos + lt.copy_cos) and min(lt.rel_l2) >= 0
    assert lt.episodes == sorted(lt.episodes, reverse=True) and lt.episodes[0] <= EPISODES
    assert lt.k == list(range(1, len(lt.cos) + 1))
    probe = card.state_probe
    assert probe.names == list(env_entry("CartPole-v1").state_names)
    assert all(np.isfinite(probe.r2_model)) and all(r <= 1.0 for r in probe.r2_model + probe.r2_random)
    runs = np.asarray(probe.r2_random_runs)  # one row per random twin, each its own initialisation
    assert runs.shape == (probe.twins, len(probe.names)) and probe.twins > 1
    assert np.allclose(runs.mean(0), probe.r2_random, atol=1e-4) and np.allclose(runs.max(0), probe.r2_random_max)
    assert len({tuple(row) for row in runs.tolist()}) == probe.twins, "the twins share an initialisation"
    pixels = probe.r2_pixels  # the same probe on the raw frame pairs
    assert len(pixels) == len(probe.names) and all(np.isfinite(pixels)) and max(pixels) <= 1.0
    cov = card.coverage
    assert card.coverage_source == "recorded when the model was trained"
    assert sum(cov.counts) == cov.steps and len(cov.counts) == 2
    for dim in cov.state:
        assert np.asarray(dim.counts).sum() == cov.steps
    assert card.extra == {} and wm_core.ModelCard.from_json(card.to_json()) == card  # JSON keeps every field


def test_frame_pair_components_are_the_principal_scores_of_frame_pairs(report: wm_core.Report) -> None:
    eps = report.episodes[:4]
    scores = frame_pair_components(eps, components=5)
    assert [len(s) for s in scores] == [len(e) for e in eps] and scores[0].shape[1] == 5
    pairs = []
    for e in eps:  # each frame beside the one before it, the first frame standing for its own past
        x = e.obs.reshape(len(e), -1).astype(np.float64) / 255.0
        pairs.append(np.concatenate([x, np.concatenate([x[:1], x[:-1]])], axis=1))
    centred = np.concatenate(pairs) - np.concatenate(pairs).mean(0)
    u, sv, _ = np.linalg.svd(centred, full_matrices=False)
    direct = u[:, :5] * sv[:5]  # principal scores straight from the SVD of the (N, D) pixel matrix
    got = np.concatenate(scores)
    for j in range(5):  # each component agrees up to its sign
        sign = np.sign(direct[:, j] @ got[:, j])
        assert np.allclose(got[:, j], sign * direct[:, j], rtol=1e-3, atol=1e-3 * sv[0])
    # With fewer basis frames than frames, the directions come from evenly spaced pairs and every pair is
    # projected on them.
    picked = centred[np.linspace(0, len(centred) - 1, 30).astype(int)]
    directions = np.linalg.svd(picked, full_matrices=False)[2][:5].T  # (D, 5)
    sub = np.concatenate(frame_pair_components(eps, components=5, basis_frames=30))
    for j in range(5):
        want = centred @ directions[:, j]
        sign = np.sign(want @ sub[:, j])
        assert np.allclose(sub[:, j], sign * want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_counterfactuals_replay_the_real_env(report: wm_core.Report) -> None:
    cf, arrays = report.card.counterfactual, report.cf
    assert cf.real_replayed, "held-out CartPole episodes start from a recorded seed: their futures replay"
    assert [s.name for s in cf.sequences] == ["always push left", "always push right", "random"]
    left, right = arrays["real"][0], arrays["real"][1]
    assert not np.array_equal(left[1], right[1]), "the real cart answers opposite pushes differently"
    assert cf.real_spread > 0 and cf.dream_spread >= 0
    # Pushing one way ends CartPole within the horizon: the valid mask stops there, and only there.
    for s, valid in zip(cf.sequences, arrays["valid"]):
        assert valid.sum() == s.real_steps and (valid[: s.real_steps]).all()


def test_counterfactual_dream_is_seeded(trained_run: Path, cartpole_store: wm_core.EpisodeStore) -> None:
    model, meta = wm_core.load_checkpoint(trained_run)
    ep = max(cartpole_store.episodes(), key=len)
    pipe = wm_core.FramePipeline.from_json(meta["pipeline"])
    a, arr_a = counterfactuals(model, ep, "CartPole-v1", pipe, horizon=6, seed=3)
    b, arr_b = counterfactuals(model, ep, "CartPole-v1", pipe, horizon=6, seed=3)
    assert card_equal(a, b) and np.array_equal(arr_a["pred"], arr_b["pred"])


def test_ridge_probe_scores_signal_high_and_noise_low() -> None:
    rng = np.random.default_rng(0)
    zs = [rng.normal(size=(30, 16)) for _ in range(12)]
    w = rng.normal(size=(16, 2))
    signal = [z @ w + 0.01 * rng.normal(size=(30, 2)) for z in zs]
    noise = [rng.normal(size=(30, 2)) for _ in zs]
    r2_signal, _ = _ridge_r2(zs, signal)
    r2_noise, _ = _ridge_r2(zs, noise)
    assert (r2_signal > 0.99).all()
    assert (r2_noise < 0.05).all()


def test_action_coverage_counts_box_actions_by_thirds(pendulum_store: wm_core.EpisodeStore) -> None:
    eps = pendulum_store.episodes()
    cov = action_coverage(eps, pendulum_store.action_spec, env_entry("Pendulum-v1").state_names)
    steps = sum(len(e) - 1 for e in eps)
    assert cov["kind"] == "box" and cov["steps"] == steps and sum(cov["counts"]) == steps
    assert [d["name"] for d in cov["state"]] == list(env_entry("Pendulum-v1").state_names)


@pytest.mark.parametrize("family", sorted(wm_core.FAMILIES))
def test_set_latent_inverts_latent(family: str, cartpole_store: wm_core.EpisodeStore) -> None:
    model = make_model(family, cartpole_store)
    state = context_state(model, cartpole_store, batch=2)
    z = model.latent(state)
    moved = model.set_latent(state, z + 0.5)
    assert torch.allclose(model.latent(moved), z + 0.5)
    assert torch.equal(model.latent(model.set_latent(state, z)), z)
    with pytest.raises(ValueError, match="latent has"):
        model.set_latent(state, z[:, :-1])


def test_latent_explorer_moves_the_decoded_frame(trained_run: Path, report: wm_core.Report) -> None:
    model, _ = wm_core.load_checkpoint(trained_run)
    ex = LatentExplorer(model, report.episodes[:4], components=3)
    assert ex.directions.shape[0] == 3 and np.allclose(np.linalg.norm(ex.directions, axis=1), 1.0)
    assert sum(ex.explained) <= 1.0 + 1e-9
    still = ex.frame(0, 3, [0.0, 0.0, 0.0])
    with torch.inference_mode():
        decoded = wm_core.dream.to_uint8(model.decode(ex.state_at(0, 3)))[0]
    assert np.array_equal(still, decoded), "zero offsets decode the frozen state itself"
    moved = ex.frame(0, 3, [3.0, 0.0, 0.0])
    assert moved.shape == still.shape and not np.array_equal(moved, still)
    assert np.isfinite(ex.coordinates(0, 3)).all()


def test_wm_eval_json_equals_what_inspect_shows(trained_run: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "wm_core.cli", "eval", str(trained_run), "--episodes", str(EPISODES), "--json"]
    out = subprocess.run(cmd + ["--no-report"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    cli_card = json.loads(out.stdout)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the one-thread CLI run
    try:
        ins = Inspection(str(trained_run), episodes=EPISODES)
    finally:
        torch.set_num_threads(threads)
    assert card_equal(cli_card, ins.card), "the Inspect tab and `wm eval` disagree"
    js, png = ins.files()
    assert card_equal(json.loads(Path(js).read_text()), cli_card)
    assert Path(png).stat().st_size > 10_000
    assert "fg-MSE model" in ins.text() and "linear state probe" in ins.text()
    figs = ins.figures(ins.longest, 10)
    for name, img in figs.items():
        assert img is not None and img.ndim == 3 and img.shape[0] > 100 and img.std() > 0, name
    r = ins.explore(ins.longest, 4, [1.0, 0, 0, 0, 0, 0])
    assert r["decoded"].shape == r["real"].shape and len(r["coordinates"]) == len(r["explained"])


def test_wm_eval_writes_the_report_beside_the_run(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for f in trained_run.iterdir():
        if f.is_file():
            (run / f.name).write_bytes(f.read_bytes())
    cmd = [sys.executable, "-m", "wm_core.cli", "eval", str(run), "--episodes", str(EPISODES)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    card = json.loads((run / "report.json").read_text())
    assert card["family"] == "ha" and card["heldout"]["episodes"] == EPISODES
    assert f"{card['open_loop'][0]['model']['fg_mse']:.5f}" in out.stdout  # the printed table is the JSON
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

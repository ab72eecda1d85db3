"""Controllers trained only inside a dream (CMA-ES, Ha & Schmidhuber's temperature lesson) on a tiny real `ha`
run: the search moves the parameters, the files round-trip, the real env scores them, bad input is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from wm_core.agents.dream_controller import (
    CONTROLLER_FILE,
    ControllerConfig,
    LinearController,
    controller_episode,
    latent_size,
    load_controller,
    train_controller,
)
from wm_core.checkpoint import load_checkpoint

TINY = ControllerConfig(temperature=0.5, generations=2, population=4, dream_episodes=2, horizon=8, seed=3)


@pytest.fixture(scope="module")
def saved(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    run = tmp_path_factory.mktemp("ctl") / "run"
    shutil.copytree(trained_run, run)
    out = run / "controllers" / "tau-half"
    record = train_controller(run, TINY, out, real_episodes=2, command="wm controller test")
    return run, out, record


def test_the_search_is_saved_with_its_record(saved: tuple[Path, Path, dict]) -> None:
    run, out, record = saved
    params, loaded = load_controller(out)
    assert loaded == json.loads(json.dumps(record)) and loaded["command"] == "wm controller test"
    model, _ = load_checkpoint(run)
    assert params.shape == (model.action_spec.n * (latent_size(model) + 1),)
    assert np.abs(params).max() > 0, "CMA-ES never moved the controller from its zero start"
    assert np.isfinite(record["dream_return"]) and len(record["history"]) == TINY.generations
    assert record["real_return"]["episodes"] == 2 and np.isfinite(record["real_return"]["mean"])
    assert record["config"]["temperature"] == 0.5


def test_a_loaded_controller_acts_as_the_saved_one(saved: tuple[Path, Path, dict]) -> None:
    run, out, _ = saved
    params, _ = load_controller(out)
    model, _ = load_checkpoint(run)
    features = torch.randn(6, latent_size(model))
    saved_acts = LinearController(model, params).act(features)
    again = LinearController(model, load_controller(out)[0]).act(features)
    np.testing.assert_array_equal(saved_acts, again)
    assert set(saved_acts.tolist()) <= set(range(model.action_spec.n))


def test_watching_a_controller_gives_its_real_episode(saved: tuple[Path, Path, dict]) -> None:
    run, out, _ = saved
    ret, frames = controller_episode(run, load_controller(out)[0], seed=0)
    assert frames.ndim == 4 and frames.shape[1:] == (64, 64, 3) and frames.dtype == np.uint8
    assert ret == pytest.approx(len(frames) - 1)  # CartPole pays 1 per step survived


def test_bad_input_is_one_line(saved: tuple[Path, Path, dict], tmp_path: Path) -> None:
    run, out, _ = saved
    with pytest.raises(ValueError, match="temperature must be 0 or more"):
        train_controller(run, ControllerConfig(temperature=-1), tmp_path / "x", 1, "test")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / CONTROLLER_FILE).write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="no readable controller in") as err:
        load_controller(tmp_path / "broken")
    assert "\n" not in str(err.value)
    model, _ = load_checkpoint(run)
    with pytest.raises(ValueError, match="parameters, got 3"):
        LinearController(model, np.zeros(3))

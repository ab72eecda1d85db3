"""Controllers trained only inside a dream (CMA-ES, Ha & Schmidhuber's temperature lesson) on a tiny real `ha`
run: the search moves the parameters and is reproducible without touching the global random streams, the files
round-trip, the real env scores them, bad input is one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model

from wm_core.agents.dream_controller import (
    CONTROLLER_FILE,
    CONTROLLER_META,
    ControllerConfig,
    LinearController,
    controller_episode,
    latent_size,
    load_controller,
    real_returns,
    save_controller,
    search,
    train_controller,
)
from wm_core.checkpoint import load_checkpoint, save_checkpoint
from wm_core.data import EpisodeStore
from wm_core.errors import CheckpointError

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
    model, meta = load_checkpoint(run)
    assert params.shape == (model.action_spec.n * (latent_size(model) + 1),)
    assert np.abs(params).max() > 0, "CMA-ES never moved the controller from its zero start"
    assert np.isfinite(record["dream_return"]) and len(record["history"]) == TINY.generations
    assert record["real_return"]["episodes"] == 2 and len(record["real_return"]["returns"]) == 2
    assert np.isfinite(record["real_return"]["mean"]) and record["config"]["temperature"] == 0.5
    assert record["run"] == "run" and record["weights_sha256"] == meta["weights"]["sha256"]


def test_the_search_repeats_and_leaves_the_global_random_streams_alone(saved: tuple[Path, Path, dict]) -> None:
    run, out, _ = saved
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    again, _ = search(run, TINY)
    np.testing.assert_array_equal(again, load_controller(out)[0])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state), "cma seeded or drew from np.random"
    other, _ = search(run, replace(TINY, seed=4))
    assert not np.array_equal(other, again)


def test_a_saved_controller_round_trips_to_the_same_actions(saved: tuple[Path, Path, dict], tmp_path: Path) -> None:
    run, out, record = saved
    model, _ = load_checkpoint(run)
    params = np.random.default_rng(0).normal(size=load_controller(out)[0].shape).astype(np.float32)
    features = torch.randn(64, latent_size(model), generator=torch.Generator().manual_seed(0))
    save_controller(tmp_path / "c", params, record)
    loaded, loaded_record = load_controller(tmp_path / "c")
    np.testing.assert_array_equal(loaded, params)
    acts = LinearController(model, params).act(features)
    np.testing.assert_array_equal(LinearController(model, loaded).act(features), acts)
    assert set(acts.tolist()) == set(range(model.action_spec.n))  # random weights pick every action somewhere
    assert loaded_record["config"] == record["config"]


def test_box_actions_are_squashed_into_the_action_range(pendulum_store: EpisodeStore) -> None:
    model = make_model("ha", pendulum_store)
    spec, d = model.action_spec, latent_size(model)
    params = np.random.default_rng(0).normal(scale=3.0, size=spec.n * (d + 1))
    acts = LinearController(model, params).act(torch.randn(32, d, generator=torch.Generator().manual_seed(0)))
    assert acts.shape == (32, spec.n)
    assert (acts >= np.asarray(spec.low)).all() and (acts <= np.asarray(spec.high)).all()
    assert acts.min() < 0 < acts.max()  # both directions of the torque are reachable


def test_real_returns_count_the_asked_episodes(saved: tuple[Path, Path, dict]) -> None:
    run, out, _ = saved
    params = load_controller(out)[0]
    real = real_returns(run, params, 3, seed=5)
    assert real["episodes"] == 3 and len(real["returns"]) == 3 and np.isfinite(real["returns"]).all()
    assert real["returns"][0] == controller_episode(run, params, seed=5)[0]  # the same env seed, the same episode
    assert real["mean"] == pytest.approx(np.mean(real["returns"])) and real["std"] >= 0


def test_watching_a_controller_gives_its_real_episode(saved: tuple[Path, Path, dict]) -> None:
    run, out, _ = saved
    ret, frames = controller_episode(run, load_controller(out)[0], seed=0)
    assert frames.ndim == 4 and frames.shape[1:] == (64, 64, 3) and frames.dtype == np.uint8
    assert ret == pytest.approx(len(frames) - 1)  # CartPole pays 1 per step survived


def test_the_command_prints_its_summary_and_records_itself(saved: tuple[Path, Path, dict], tmp_path: Path) -> None:
    run, _, _ = saved
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "OMP_NUM_THREADS": "1"}
    tiny = ["--generations", "1", "--population", "2", "--episodes", "1", "--horizon", "4", "--threads", "1"]

    def wm(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "wm_core.cli", "controller", str(run), *tiny, *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    proc = wm("--temperature", "0", "--real-episodes", "2", "--out", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    summary = r"dream return [\d.]+ at temperature 0.0, real return [\d.]+ ± [\d.]+ over 2 episodes, [\d.]+ CPU-minutes"
    assert re.search(summary, proc.stdout), proc.stdout
    command = load_controller(tmp_path / "c")[1]["command"]
    assert command.startswith(f"wm controller {run} ") and command.endswith(f"--out {tmp_path / 'c'}")
    bad = wm("--population", "1", "--out", str(tmp_path / "d"))
    assert bad.returncode == 2 and "--population must be 2 or more" in bad.stderr and bad.stderr.count("\n") == 1


def one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_bad_input_is_one_line(saved: tuple[Path, Path, dict], cartpole_store: EpisodeStore, tmp_path: Path) -> None:
    run, out, _ = saved
    with pytest.raises(ValueError) as err:
        train_controller(run, replace(TINY, temperature=-1), tmp_path / "x", 1, "test")
    one_line(err, "--temperature must be 0 or more")
    with pytest.raises(ValueError) as err:
        search(run, replace(TINY, population=1))
    one_line(err, "--population must be 2 or more")
    with pytest.raises(CheckpointError) as err:
        train_controller(tmp_path / "no-such-run", TINY, tmp_path / "x", 1, "test")
    one_line(err, "no checkpoint at")
    pixels = make_model("diffusion", cartpole_store)  # a pixel-space state: nothing for a controller to read
    save_checkpoint(tmp_path / "diffusion", pixels, env_id="CartPole-v1", pipeline=cartpole_store.pipeline, step=0)
    with pytest.raises(CheckpointError) as err:
        train_controller(tmp_path / "diffusion", TINY, tmp_path / "x", 1, "test")
    one_line(err, "diffusion has no latent", "use an ha or dreamer run")
    assert not (tmp_path / "x").exists()
    (tmp_path / "broken").mkdir()
    shutil.copy(out / CONTROLLER_META, tmp_path / "broken" / CONTROLLER_META)
    (tmp_path / "broken" / CONTROLLER_FILE).write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError) as err:
        load_controller(tmp_path / "broken")
    one_line(err, "no readable controller in", "wm controller RUN --out DIR")
    with pytest.raises(CheckpointError) as err:
        LinearController(load_checkpoint(run)[0], np.zeros(3))
    one_line(err, "parameters, got 3")

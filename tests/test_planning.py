"""Planners in use: MuZero's MCTS agent loop (`wm agent train` on a muzero run), `wm plan` for MCTS and CEM,
the planner driving the Play tab's dream, and the value/policy texts the Dream shows beside the frame.

Everything is real: CartPole frames, tiny models trained for a few Adam steps, real subprocesses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model, real_frames
from test_cli import ENV

import wm_core
from playground.hub import SessionHub
from wm_core.agents.agent import AGENT_FILE, MctsAgent, load_agent
from wm_core.agents.loop import KEPT_SEED_OFFSET, POLICY_SEED_BASE, evaluate_agent, train_agent
from wm_core.agents.planning import check_planner
from wm_core.checkpoint import load_checkpoint
from wm_core.data import EpisodeStore, SequenceSampler
from wm_core.dream import Dream
from wm_core.train import train_run


def _tiny_run(family: str, store: EpisodeStore, out: Path) -> Path:
    run, report = train_run(
        family, "CartPole-v1", preset="tiny", overrides={"steps": 3}, data=store.root, out=out, device="cpu",
        command=f"wm train --family {family} (test_planning)", checkpoint_every=0,
    )  # fmt: skip
    assert report.step == 3
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cartpole_store: EpisodeStore) -> dict[str, Path]:
    """Tiny muzero and jepa runs (3 Adam steps each) on the shared CartPole store. Read-only."""
    root = tmp_path_factory.mktemp("planning-runs")
    return {family: _tiny_run(family, cartpole_store, root / family) for family in ("muzero", "jepa")}


@pytest.fixture(scope="module")
def mcts_run(tmp_path_factory: pytest.TempPathFactory, cartpole_store: EpisodeStore) -> tuple[Path, dict]:
    """Two iterations of the MCTS agent loop on a fresh tiny muzero (4 simulations per move)."""
    run = tmp_path_factory.mktemp("mcts-agent") / "run"
    shutil.copytree(cartpole_store.root, run / "data")
    tiny = dict(minutes=0.0001, collect_steps=30, train_steps=2, eval_episodes=2, simulations=4)
    result = train_agent(run, env_id="CartPole-v1", family="muzero", preset="tiny", overrides=tiny, say=lambda _m: None)
    result = train_agent(run, overrides=tiny, say=lambda _m: None)  # continues: model, agent and curve resume
    return run, result


def test_mcts_loop_writes_a_loadable_run_with_search_targets(mcts_run: tuple[Path, dict]) -> None:
    run, result = mcts_run
    assert (run / AGENT_FILE).exists() and (run / "checkpoint.json").exists()
    assert [p["grad_steps"] for p in result["curve"]] == [2, 4]
    ev = result["evaluation"]
    assert ev["episodes"] == 2 and len(ev["real"]) == 2 and min(ev["real"]) >= 8 and ev["ms_p50"] > 0

    model, meta = load_checkpoint(run)
    assert meta["step"] == 4 and model.family == "muzero"
    agent, agent_meta = load_agent(run, model)
    assert isinstance(agent, MctsAgent) and agent_meta["planner"] == "mcts" and agent.config.simulations == 4

    store = EpisodeStore.open(run / "agent-data")
    episodes = store.episodes()
    assert len(episodes) >= 2 and sum(len(e) - 1 for e in episodes) >= 60
    for ep in episodes:
        pol, val = ep.search_policy, ep.search_value
        assert pol is not None and val is not None and pol.shape == (len(ep), 2) and val.shape == (len(ep),)
        # Every searched frame's target is a distribution of 4 visits; the last frame has no search.
        np.testing.assert_allclose(pol[:-1].sum(1), 1.0, rtol=1e-6)
        assert (pol[:-1] >= 0).all() and np.isin(pol[:-1] * 4, np.arange(5)).all()
        assert not pol[-1].any() and np.isnan(val[-1]) and np.isfinite(val[:-1]).all()

    # Old stores without search fields load unchanged, and a sampler over both kinds marks the difference.
    old = EpisodeStore.open(run / "data").episodes()
    assert all(e.search_policy is None and e.search_value is None for e in old)
    both = old[:1] + episodes[:1]
    batch = SequenceSampler(both, store.action_spec, sum(map(len, both)), 1, seed=0).sample()  # the whole buffer
    has = batch["search_policy"].sum(-1) > 0
    assert torch.equal(has, ~batch["search_value"].isnan()) and has.any() and (~has).any()


def test_an_mcts_agent_run_drives_the_dream_with_its_own_search(mcts_run: tuple[Path, dict]) -> None:
    run, _ = mcts_run
    session = wm_core.Session(run, seed=0)
    assert session.driver_label == "MCTS planner (4 simulations)", session.driver_label  # the agent's, not 8
    session.reset()
    session.autopilot = True
    stepped = [f for f in (session.tick() for _ in range(3)) if f.step > 0]
    assert stepped and all(f.driver == "agent" and "value" in f.panels[0].extras for f in stepped)


def test_world_model_learning_rate_decays_over_the_budget(tmp_path: Path, cartpole_store: EpisodeStore) -> None:
    # A budget this small is spent before the first gradient step, so that step already runs at the end rate.
    tiny = dict(minutes=0.0001, collect_steps=20, train_steps=2, eval_episodes=1, simulations=2)
    moved = {}
    for decay in (1.0, 1e-9):
        run = tmp_path / f"decay-{decay}"
        shutil.copytree(cartpole_store.root, run / "data")
        train_agent(run, env_id="CartPole-v1", family="muzero", preset="tiny", overrides=tiny | {"wm_lr_decay": decay},
                    say=lambda _m: None)  # fmt: skip
        trained, _ = load_checkpoint(run)
        torch.manual_seed(0)  # the initial model of train_agent (seed 0)
        start = type(trained)(trained.config, trained.action_spec, trained.frame_size)
        moved[decay] = max((a - b).abs().max().item() for a, b in zip(trained.parameters(), start.parameters()))
    assert moved[1.0] > 1e-4 and moved[1e-9] < 1e-6, moved


def test_keep_best_finishes_with_the_best_evaluated_weights(tmp_path: Path, cartpole_store: EpisodeStore) -> None:
    run = tmp_path / "keep"
    shutil.copytree(cartpole_store.root, run / "data")
    # an evaluation after every iteration, for 6 CPU-seconds (not wall-clock, which a busy machine stretches):
    # several evaluations of different weights
    tiny = dict(minutes=10.0, cpu_minutes=0.1, eval_every=1e-6, collect_steps=20, train_steps=2, eval_episodes=2)
    tiny |= {"simulations": 2, "keep_best": True}
    result = train_agent(run, env_id="CartPole-v1", family="muzero", preset="tiny", overrides=tiny, say=lambda _m: None)
    evaluated = [p for p in result["curve"] if "eval_return" in p]
    kept = result["kept"]
    assert len(evaluated) >= 2 and kept["eval_return"] == max(p["eval_return"] for p in evaluated)
    assert kept["grad_steps"] in [p["grad_steps"] for p in evaluated]
    model, meta = load_checkpoint(run)
    agent, _ = load_agent(run, model)
    assert meta["step"] == result["world_model_step"] == kept["grad_steps"]
    assert result["budget"]["grad_steps"] == result["curve"][-1]["grad_steps"]  # the budget counts every step
    # the saved weights are the ones that made the best score on the evaluation seeds ...
    assert evaluate_agent(model, agent, "CartPole-v1", 2)["real_mean"] == kept["eval_return"]
    # ... and the reported evaluation played other seeds with them
    fresh = evaluate_agent(model, agent, "CartPole-v1", 2, KEPT_SEED_OFFSET)
    assert (
        fresh["real"] == result["evaluation"]["real"]
        and kept["fresh_seeds_from"] == 2 * POLICY_SEED_BASE + KEPT_SEED_OFFSET
    )


def test_a_run_that_records_another_machines_data_collects_into_its_own(runs: dict[str, Path], tmp_path: Path) -> None:
    # a shipped run records where the machine that trained it kept the data; continuing it elsewhere must
    # collect into RUN/data, never create the recorded path
    run = tmp_path / "copy"
    shutil.copytree(runs["muzero"], run)
    foreign = tmp_path / "another-machine" / "data"
    meta = json.loads((run / "checkpoint.json").read_text())
    meta["data"]["dir"] = str(foreign)
    (run / "checkpoint.json").write_text(json.dumps(meta))
    tiny = dict(minutes=0.0001, random_episodes=2, collect_steps=10, train_steps=1, eval_episodes=1, simulations=2)
    train_agent(run, overrides=tiny, say=lambda _m: None)
    assert not foreign.parent.exists()
    assert len(EpisodeStore.open(run / "data")) == 2
    assert json.loads((run / "checkpoint.json").read_text())["data"]["dir"] == "data"


def test_continuing_a_kept_run_keeps_its_weights_unless_an_evaluation_beats_them(
    tmp_path: Path, cartpole_store: EpisodeStore
) -> None:
    run = tmp_path / "keep"
    shutil.copytree(cartpole_store.root, run / "data")
    tiny = dict(minutes=10.0, cpu_minutes=0.02, eval_every=1e-6, collect_steps=20, train_steps=2, eval_episodes=2)
    tiny |= {"simulations": 2, "keep_best": True}
    train_agent(run, env_id="CartPole-v1", family="muzero", preset="tiny", overrides=tiny, say=lambda _m: None)
    record = json.loads((run / AGENT_FILE).read_text())
    record["kept"]["eval_return"] = 1e9  # a best no evaluation of the continuation can reach
    (run / AGENT_FILE).write_text(json.dumps(record))
    before, meta = load_checkpoint(run)
    same = lambda m: all(torch.equal(v, m.state_dict()[k]) for k, v in before.state_dict().items())  # noqa: E731

    def ctrl_c_after_an_evaluation(line: str) -> None:
        if "eval_return" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # stopped mid-run, after its first save
        train_agent(run, overrides=tiny, say=ctrl_c_after_an_evaluation)
    stopped, _ = load_checkpoint(run)
    assert same(stopped), "a stopped run left weights on disk that no evaluation preferred"
    result = train_agent(run, overrides=tiny, say=lambda _m: None)
    assert len(result["curve"]) > len(record["curve"])  # the continuation trained and evaluated
    assert result["kept"]["eval_return"] == 1e9 and result["kept"]["grad_steps"] == meta["step"]
    after, _ = load_checkpoint(run)
    assert same(after)


def test_muzero_trains_toward_the_stored_targets(mcts_run: tuple[Path, dict]) -> None:
    run, _ = mcts_run
    model, _ = load_checkpoint(run)
    store = EpisodeStore.open(run / "agent-data")
    batch = SequenceSampler(store.episodes(), store.action_spec, 8, 4, seed=1).sample()
    plain = {k: v for k, v in batch.items() if not k.startswith("search_")}
    with torch.no_grad():
        torch.manual_seed(0)
        searched = model.loss(batch)[1]
        torch.manual_seed(0)
        behaviour = model.loss(plain)[1]
    # Visit distributions (not one-hot actions) as policy targets, root values as bootstraps.
    assert searched["policy_loss"] != pytest.approx(behaviour["policy_loss"])
    assert searched["value_target_mean"] != pytest.approx(behaviour["value_target_mean"])
    # fresh_values bootstraps from the model's own value of each frame: the stored root values go unused.
    model.config.fresh_values = True
    with torch.no_grad():
        torch.manual_seed(0)
        fresh = model.loss(batch)[1]
    assert fresh["value_target_mean"] == pytest.approx(behaviour["value_target_mean"], rel=1e-6)
    assert fresh["policy_loss"] == pytest.approx(searched["policy_loss"], rel=1e-6)


def test_loaded_mcts_agent_plays_the_same_greedy_episodes(mcts_run: tuple[Path, dict]) -> None:
    run, result = mcts_run
    model, _ = load_checkpoint(run)
    agent, _ = load_agent(run, model)
    again = evaluate_agent(model, agent, "CartPole-v1", 2)
    assert again["real"] == result["evaluation"]["real"]  # no noise, greedy visits: same seeds, same episodes


def _wm(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "wm_core.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


PLAN_LINE = re.compile(r"return (\d+\.\d) ± (\d+\.\d), (\d+\.\d) ms per move \(p50; p95 (\d+\.\d)\)")


@pytest.mark.parametrize(
    ("family", "extra", "label"),
    [("muzero", ("--simulations", "4"), "MCTS planner (4 simulations)"),
     ("jepa", ("--goal-frame", "seed:5"), "CEM planner toward the first frame after a reset with seed 5")],
)  # fmt: skip
def test_wm_plan_acts_and_reports_time_per_move(family, extra, label, runs: dict[str, Path], tmp_path) -> None:
    proc = _wm("plan", runs[family], "--episodes", "2", "--max-steps", "8", *extra, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert label in last, last
    m = PLAN_LINE.search(last)
    assert m, last
    mean, _, p50, p95 = map(float, m.groups())
    assert 1 <= mean <= 8 and 0 < p50 <= p95


def test_wm_plan_without_a_planner_says_so_in_one_line(trained_run: Path, runs: dict[str, Path], tmp_path) -> None:
    proc = _wm("plan", trained_run, cwd=tmp_path)  # an ha run
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "ha has no planner" in proc.stderr and "mcts (muzero)" in proc.stderr
    proc = _wm("plan", runs["jepa"], "--planner", "mcts", cwd=tmp_path)
    assert proc.returncode == 2 and "jepa plans with cem, so it cannot act with the mcts planner" in proc.stderr


def test_mcts_on_continuous_actions_is_refused(pendulum_store: EpisodeStore) -> None:
    model = make_model("jepa", pendulum_store)
    with pytest.raises(ValueError, match="MCTS plans over discrete actions only"):
        check_planner(model, "mcts")
    assert check_planner(model) == "cem"


@pytest.mark.parametrize("family", ["muzero", "ha"])
def test_dream_extras_show_value_and_policy_where_the_family_has_them(family: str, cartpole_store) -> None:
    model = make_model(family, cartpole_store)
    dream = Dream(model)
    frames, acts = real_frames(cartpole_store, 1, 3)
    dream.reset(frames[0], acts[0])
    _, _, _, info = dream.step(1)
    if family == "ha":
        assert "extras" not in info
        return
    extras = info["extras"]
    with torch.no_grad():
        value = float(model.policy_value(dream.state)[1][0])
    assert set(extras) == {"value", "policy"} and float(extras["value"]) == pytest.approx(value, abs=0.05)
    shares = re.fullmatch(r"push left (\d+)% · push right (\d+)%", extras["policy"])
    assert shares and 99 <= sum(map(int, shares.groups())) <= 101, extras


@pytest.mark.parametrize(("family", "label"), [("muzero", "MCTS planner"), ("jepa", "CEM planner")])
def test_planner_drives_the_dream_on_autopilot(family: str, label: str, runs: dict[str, Path]) -> None:
    session = wm_core.Session(runs[family], seed=0)
    assert session.agent is not None and session.driver_label.startswith(label)
    session.reset()
    session.autopilot = True
    frames = [session.tick() for _ in range(3)]
    stepped = [f for f in frames if f.step > 0]
    assert stepped and all(f.driver == "agent" for f in stepped)
    assert all(f.panels[0].extras["time per move"].endswith(" ms") for f in stepped)
    assert ("value" in stepped[0].panels[0].extras) == (family == "muzero")

    hub = SessionHub()
    hub.start("c", str(runs[family]))
    assert label in hub.control("c", "autopilot", True)
    r = hub.tick("c", [])
    assert r["ok"] and r["driver"] == "agent" and r["driver_label"].startswith(label)
    assert "time per move" in r["panels"][0]["extras"]
    r = hub.tick("c", ["ArrowLeft"])  # a key takes over
    assert r["driver"] == "you" and r["driver_label"] == "you"
    assert hub.tick("c", [])["driver"] == "agent"  # and hands back when released
    hub.control("c", "autopilot", False)
    r = hub.tick("c", [])  # the agent's last frame is still shown, but no one drives it now
    assert r["waiting"] and r["driver"] == "you" and r["driver_label"] == "you"

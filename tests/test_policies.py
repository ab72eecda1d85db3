"""Data policies on the real catalog envs: scripted collection under a frame budget, and what each scripted
controller does that random actions do not.

Every check runs real gymnasium envs with fixed reset seeds and a seeded policy, so each number below is
reproducible (ALE's sticky actions draw from the env's seeded generator too).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wm_core.data import EpisodeStore, collect
from wm_core.data.envs import make_env
from wm_core.data.policies import SCRIPTED, RandomPolicy, ScriptedPolicy, make_policy
from wm_core.spec import ActionSpec

NUM_ENVS = 2
# Frames per env for the budget test: enough for every discrete action to come up in the random mixing
# (MountainCar's controller never idles and Pong's never fires, so those come only from random steps).
# CarRacing runs ~110 frames/s plus 50 physics no-ops per reset, so it gets a small budget.
BUDGET = {env_id: 240 for env_id in SCRIPTED} | {"CarRacing-v3": 60}
_stores: dict[str, EpisodeStore] = {}


def spec_of(env_id: str) -> ActionSpec:
    env = make_env(env_id)
    env.close()
    return env.action_spec


def controller_only(env_id: str, num_envs: int = 1) -> ScriptedPolicy:
    """The env's scripted controller with no random mixing."""
    return ScriptedPolicy(env_id, spec_of(env_id), num_envs, np.random.default_rng(0), eps=0.0, spell=0.0)


def play(env_id: str, policy, out: Path, max_steps: int, episodes: int = 1) -> EpisodeStore:
    """`episodes` episodes of at most `max_steps` steps in one env reset with seed 0."""
    return collect(env_id, episodes, out, policy=policy, seed=0, num_envs=1, max_steps=max_steps)


def scripted_store(env_id: str, tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """The budget test's scripted store of `env_id` (collected once per module, reused by behaviour tests)."""
    if env_id not in _stores:
        out = tmp_path_factory.mktemp("scripted")
        _stores[env_id] = collect(env_id, None, out, frames=BUDGET[env_id], policy="scripted", seed=0)
    return _stores[env_id]


@pytest.mark.parametrize("env_id", list(SCRIPTED))
def test_scripted_collection_holds_the_frame_budget(env_id: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    store = scripted_store(env_id, tmp_path_factory)
    budget, frames = BUDGET[env_id], store.num_frames
    assert budget <= frames <= budget + NUM_ENVS, (budget, frames)
    summary = store.summary()
    assert summary["frames"] == frames and summary["policies"] == {"scripted": frames}
    assert all(e["policy"] == "scripted" for e in store._index["episodes"])
    eps = [store.load(i) for i in range(len(store))]
    # An episode either ended by itself or was cut (by the env's time limit or the budget): never neither.
    assert all(e.terminated != e.truncated for e in eps)
    # These budgets hit no time limit, so the cut episodes are those still running when the budget was
    # reached: at most one per env.
    assert sum(e.truncated for e in eps) <= NUM_ENVS
    spec = store.action_spec
    acts = np.concatenate([e.act[1:] for e in eps])
    if spec.discrete:
        # The random mixing (eps 0.1 per step, spells of 5-30 steps) covers every action.
        assert sorted(set(acts.tolist())) == list(range(spec.n)), np.bincount(acts, minlength=spec.n)
    else:
        assert np.all(acts >= np.array(spec.low)) and np.all(acts <= np.array(spec.high))
        assert all(len(np.unique(acts[:, d])) > 2 for d in range(spec.n))  # every dimension moves


def test_frame_budget_rule_over_many_budgets(tmp_path: Path) -> None:
    """Budget <= stored frames <= budget + num_envs whatever the budget, the env count and episode length;
    only the episodes the budget cut are stored as truncated (CartPole's own limit is 500 steps)."""
    for i, (num_envs, budget, max_steps) in enumerate(
        [(1, 1, None), (3, 7, 3), (3, 23, None), (4, 38, 5), (2, 61, 4), (3, 95, None)]
    ):
        store = collect(
            "CartPole-v1", None, tmp_path / str(i), frames=budget, seed=0, num_envs=num_envs, max_steps=max_steps
        )
        entries = store._index["episodes"]
        assert budget <= store.num_frames <= budget + num_envs, (num_envs, budget, [e["frames"] for e in entries])
        assert store.summary()["policies"] == {"random": store.num_frames}
        cut = [e for e in entries if e["truncated"] and (max_steps is None or e["frames"] < max_steps + 1)]
        assert len(cut) <= num_envs
    with pytest.raises(ValueError, match="exactly one of episodes and frames"):
        collect("CartPole-v1", 2, tmp_path / "both", frames=50)
    with pytest.raises(ValueError, match="exactly one of episodes and frames"):
        collect("CartPole-v1", None, tmp_path / "neither")


def test_load_without_frames_keeps_everything_else(tmp_path_factory: pytest.TempPathFactory) -> None:
    store = scripted_store("CartPole-v1", tmp_path_factory)
    full, light = store.load(0), store.load(0, frames=False)
    assert light.obs.shape == (len(full), 0, 0, 3) and len(light) == len(full)
    np.testing.assert_array_equal(light.act, full.act)
    np.testing.assert_array_equal(light.rew, full.rew)
    np.testing.assert_array_equal(light.state, full.state)
    assert (light.terminated, light.truncated, light.seed) == (full.terminated, full.truncated, full.seed)


def test_cartpole_scripted_episodes_outlast_random_ones(tmp_path: Path) -> None:
    kw = dict(seed=0, max_steps=200)
    scripted = collect("CartPole-v1", 4, tmp_path / "s", policy="scripted", **kw)
    random = collect("CartPole-v1", 4, tmp_path / "r", policy="random", **kw)
    steps = lambda store: np.mean([e["frames"] - 1 for e in store._index["episodes"]])  # noqa: E731
    # Measured: 119 steps on average (two reach the 200-step cut despite the random spells) against 14.
    assert steps(scripted) > 4 * steps(random), (steps(scripted), steps(random))
    assert steps(random) < 30


@pytest.mark.parametrize("env_id", ["MountainCar-v0", "Acrobot-v1"])
def test_energy_pumping_controllers_reach_the_goal(env_id: str, tmp_path: Path) -> None:
    """The controller alone reaches the flag (the line) within 200 steps; random actions do not."""
    pumped = collect(env_id, 2, tmp_path / "s", policy=controller_only(env_id, 2), seed=0, max_steps=200)
    assert all(e.terminated for e in pumped.episodes()), [len(e) for e in pumped.episodes()]  # ~65-125 steps
    assert pumped.policies() == {"scripted": pumped.num_frames}
    random = play(env_id, "random", tmp_path / "r", max_steps=200)
    assert not random.load(0).terminated


def test_pendulum_controller_swings_up_and_stays_up(tmp_path: Path) -> None:
    up = lambda store: store.load(0).state[50:, 0]  # cos of the angle from frame 50 on; 1 is upright  # noqa: E731
    # The controller is up after ~30 steps and stays there; random torques swing it about (measured 0.16).
    assert np.all(up(play("Pendulum-v1", controller_only("Pendulum-v1"), tmp_path / "s", 100)) > 0.9)
    assert np.mean(up(play("Pendulum-v1", "random", tmp_path / "r", 100)) > 0.9) < 0.5


def test_car_racing_driver_collects_track_tiles(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Driving along the road visits tiles (+1000/N each, -0.1 per frame); a random walk barely moves."""
    store = scripted_store("CarRacing-v3", tmp_path_factory)  # random spells included
    scripted = np.mean([e["return"] / (e["frames"] - 1) for e in store._index["episodes"]])
    rand = play("CarRacing-v3", "random", tmp_path / "r", max_steps=29).load(0)
    random = rand.rew.sum() / (len(rand) - 1)
    assert scripted > 0.3 and scripted > random + 0.25, (scripted, random)  # measured 0.44 vs 0.016 per step


def _pong_offsets(frames: np.ndarray) -> np.ndarray:
    """|ball row - right paddle row| in 64x64 Pong frames where both show (the ball is the only pixel
    with much blue; the right paddle is green in columns 50-61); NaN where either is missing."""
    out = np.full(len(frames), np.nan)
    for i, f in enumerate(frames):
        ball = np.nonzero(f[..., 2] > 120)[0]
        band = f[:, 50:62]
        paddle = np.nonzero((band[..., 1] > 150) & (band[..., 0] < 160))[0]
        if len(ball) and len(paddle):
            out[i] = abs(ball.mean() - paddle.mean())
    return out


def test_pong_tracker_keeps_the_paddle_at_the_ball(tmp_path: Path) -> None:
    tracked = _pong_offsets(play("ALE/Pong-v5", controller_only("ALE/Pong-v5"), tmp_path / "s", 150).load(0).obs)
    random = _pong_offsets(play("ALE/Pong-v5", "random", tmp_path / "r", 150).load(0).obs)
    assert np.isfinite(tracked).mean() > 0.9  # the ball stays in play (random loses it: NaN while re-served)
    # Measured: 3.9 px on average for the tracker, 12.9 for random actions (a frame is 64 px high).
    assert np.nanmean(tracked) < 6 and np.nanmean(tracked) < 0.5 * np.nanmean(random)


def test_breakout_tracker_fires_to_serve_and_keeps_the_ball(tmp_path: Path) -> None:
    """FIRE only while no ball shows above the paddle (a fresh game serves none), else track the ball."""
    tracked = play("ALE/Breakout-v5", controller_only("ALE/Breakout-v5"), tmp_path / "s", 260).load(0)
    random = play("ALE/Breakout-v5", "random", tmp_path / "r", 260).load(0)
    assert tracked.act[1] == 1  # no ball after the reset: FIRE serves one
    fires = np.count_nonzero(tracked.act[1:] == 1)
    assert fires < 0.05 * (len(tracked) - 1), fires  # random play fires a quarter of the time
    assert random.terminated and len(random) < 260  # random play loses all five balls (measured: 251 steps)
    assert not tracked.terminated and tracked.rew.sum() > random.rew.sum()


def test_policies_count_frames_per_policy(tmp_path: Path) -> None:
    store = collect("CartPole-v1", 1, tmp_path / "mixed", seed=0, num_envs=1, max_steps=5)
    collect("CartPole-v1", 1, None, seed=1, num_envs=1, max_steps=5, policy="scripted", store=store)
    store.add(store.load(0))  # no policy given
    lengths = [e["frames"] for e in store._index["episodes"]]
    assert store.policies() == {"random": lengths[0], "scripted": lengths[1], "unknown": lengths[2]}
    # A store written before policies were recorded counts its episodes as "unrecorded".
    index_path = store.root / "index.json"
    index = json.loads(index_path.read_text())
    del index["episodes"][0]["policy"]
    index_path.write_text(json.dumps(index))
    reopened = EpisodeStore.open(store.root)
    assert reopened.summary()["policies"] == {"unrecorded": lengths[0], "scripted": lengths[1], "unknown": lengths[2]}


def test_unknown_policies_raise_naming_the_choices(tmp_path: Path) -> None:
    spec, rng = ActionSpec("discrete", 2), np.random.default_rng(0)
    for name in ("bogus", str(tmp_path)):  # a directory without a trained agent is no policy either
        with pytest.raises(ValueError, match="use random, scripted, or a run directory"):
            make_policy(name, "CartPole-v1", spec, 1, rng)
    with pytest.raises(ValueError, match="unknown policy 'bogus'"):
        collect("CartPole-v1", 1, tmp_path / "store", policy="bogus")
    with pytest.raises(ValueError, match="no scripted policy for LunarLander-v3.*CartPole-v1"):
        ScriptedPolicy("LunarLander-v3", ActionSpec("discrete", 4), 1, rng)
    fallback = make_policy("scripted", "LunarLander-v3", ActionSpec("discrete", 4), 2, rng)
    assert isinstance(fallback, RandomPolicy) and fallback.name == "random"  # recorded honestly as random
    assert isinstance(make_policy("scripted", "CartPole-v1", spec, 2, rng), ScriptedPolicy)


def test_a_trained_agent_collects_as_a_policy_object(tmp_path: Path) -> None:
    """`--policy RUN`: the command line turns a run with an agent into a policy object (the data layer knows
    only the named policies), which collects episodes recorded under the agent's name."""
    from wm_core.agents.policy import AgentPolicy, data_policy

    run = Path(__file__).resolve().parent.parent / "checkpoints" / "dreamer-cartpole-agent"
    assert data_policy("scripted", "CartPole-v1") == "scripted"
    policy = data_policy(str(run), "CartPole-v1")
    assert isinstance(policy, AgentPolicy)
    store = collect("CartPole-v1", 2, tmp_path / "s", policy=policy, seed=0, num_envs=2, max_steps=12)
    assert store.policies() == {"agent dreamer-cartpole-agent": store.num_frames}
    with pytest.raises(ValueError, match="plays CartPole-v1, not Pendulum-v1"):
        data_policy(str(run), "Pendulum-v1")

"""The decoder-free families `muzero` and `jepa` and their planners: what the protocol tests cannot see.

Value targets and transforms by hand, the Box-action refusal, the probe decoder's gradient isolation, the
JEPA EMA target and collapse metrics, tiny learning tests through the project's one training loop, and the
MCTS / CEM planners' contracts. Everything runs on real CartPole / Pendulum frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import adam_steps, context_state, make_model, real_frames, sampler_for

from wm_core.agents.planning import MctsChooser, cem, cem_goal_chooser, goal_cost, mcts, mcts_chooser, plan_episode
from wm_core.data import EpisodeStore, SequenceSampler, collect
from wm_core.data.envs import make_env
from wm_core.models.jepa import effective_rank
from wm_core.models.nn import inverse_value_transform, n_step_returns, value_transform
from wm_core.protocol import WorldModel, make_optimizer
from wm_core.registry import get_family
from wm_core.spec import ActionSpec
from wm_core.train import Trainer

FAMILIES = ("muzero", "jepa")


def test_value_transform_round_trips() -> None:
    x = torch.tensor([-300.0, -5.0, -0.5, 0.0, 0.3, 1.0, 22.0, 400.0])
    torch.testing.assert_close(inverse_value_transform(value_transform(x)), x, rtol=1e-5, atol=1e-4)


def test_n_step_returns_by_hand() -> None:
    # One window, two episodes: frames 0-2 end in a terminal at 2, frame 3 starts a new episode (4-5 follow).
    rew = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0, 1.0]])
    value = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]])
    first = torch.tensor([[True, False, False, True, False, False]])
    term = torch.tensor([[False, False, True, False, False, False]])
    z, ok = n_step_returns(rew, value, first, term, n=2, discount=0.5)
    expected = [
        1 + 0.5 * 1 + 0.25 * 0,  # t=0: two rewards, then the terminal frame's value is 0
        1 + 0.5 * 0,  # t=1: one reward into the terminal, no bootstrap
        0.0,  # t=2: terminal, value 0
        1 + 0.5 * 1 + 0.25 * 60,  # t=3: two rewards, bootstrap from frame 5
        1 + 0.5 * 60,  # t=4: the window ends after one step, bootstrap from frame 5
        0.0,  # t=5: nothing after it in the window: no target
    ]
    torch.testing.assert_close(z[0, :5], torch.tensor(expected[:5]))
    assert ok.tolist() == [[True, True, True, True, True, False]]


def test_muzero_refuses_box_actions(pendulum_store: EpisodeStore) -> None:
    cls = get_family("muzero")
    with pytest.raises(ValueError, match="muzero plans over discrete actions.*continuous action space"):
        cls(cls.preset("tiny"), pendulum_store.action_spec, pendulum_store.pipeline.size)
    assert cls.capabilities.action_kinds == ("discrete",)


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_decoder_sends_no_gradient_into_the_model(family: str, cartpole_store: EpisodeStore) -> None:
    model = make_model(family, cartpole_store)
    model.train()
    probe = {n for n, _ in model.named_parameters() if n.startswith("probe.")}
    assert probe and len(probe) < len(list(model.parameters()))

    # 1. The probe's loss alone, on latents computed with gradients, reaches no world-model parameter.
    state = context_state(model, cartpole_store, 3, 3)
    frames, _ = real_frames(cartpole_store, 3, 3)
    pixels = model.to_pixels(torch.as_tensor(frames[:, -1]))
    latent = state["s"] if family == "muzero" else state["z"]  # computed with gradients
    probe_loss, _ = model.probe.loss(latent, pixels, model.frame_mean, model.foreground(pixels), 20.0)
    model.zero_grad(set_to_none=True)
    probe_loss.backward()
    leaked = [n for n, p in model.named_parameters() if n not in probe and p.grad is not None and p.grad.any()]
    assert not leaked, f"the probe's loss reached {leaked}"
    assert all(p.grad is not None for n, p in model.named_parameters() if n in probe)

    # 2. Inside the full loss: re-drawing the probe's weights changes no world-model gradient.
    batch = sampler_for(cartpole_store, model).sample()

    def model_grads() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        model.loss(batch)[0].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if n not in probe and p.grad is not None}

    before = model_grads()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in probe:
                p.add_(torch.randn_like(p) * 0.1)
    after = model_grads()
    assert before.keys() == after.keys() and before
    for n in before:
        torch.testing.assert_close(before[n], after[n], msg=f"the probe's weights change the gradient of {n}")


def test_jepa_target_encoder_is_an_ema_without_gradients(cartpole_store: EpisodeStore) -> None:
    model = make_model("jepa", cartpole_store)
    assert not any(p.requires_grad for p in model.target_encoder.parameters())
    for t, o in zip(model.target_encoder.parameters(), model.encoder.parameters()):
        assert torch.equal(t, o)  # starts as a copy
    target_before = [p.clone() for p in model.target_encoder.parameters()]
    adam_steps(model, sampler_for(cartpole_store, model), 2)
    ema = model.config.ema
    # After two steps the target moved, but by far less than the online encoder.
    moved = [(t - b).abs().sum() for t, b in zip(model.target_encoder.parameters(), target_before)]
    online = [(o - b).abs().sum() for o, b in zip(model.encoder.parameters(), target_before)]
    assert sum(moved) > 0 and sum(moved) < (1 - ema) * 3 * sum(online)


def test_jepa_conv_layers_learn_at_their_share_of_the_rate(cartpole_store: EpisodeStore) -> None:
    model = make_model("jepa", cartpole_store)
    scale = model.config.encoder_lr_scale
    assert scale < 1.0  # the preset under test slows the convs
    opt = make_optimizer(model, 1e-3)
    fast, slow = opt.param_groups
    assert fast["lr"] == 1e-3 and slow["lr"] == pytest.approx(1e-3 * scale)
    convs = {id(p) for p in model.encoder.convs.parameters()}
    assert {id(p) for p in slow["params"]} == convs
    assert sorted(map(id, fast["params"] + slow["params"])) == sorted(map(id, model.parameters()))
    # Adam's first step moves every weight by at most its group's rate.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adam_steps(model, sampler_for(cartpole_store, model), 1, lr=1e-3)
    step = {n: float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters()}
    conv_step = max(v for n, v in step.items() if n.startswith("encoder.convs."))
    assert 0 < conv_step <= 1e-3 * scale * 1.001
    assert step["encoder.head.weight"] > 1e-3 * scale * 2


@pytest.mark.parametrize("head_grad", [0.0, 1.0])
def test_jepa_heads_reach_the_encoder_only_with_head_grad(head_grad: float, cartpole_store: EpisodeStore) -> None:
    cls = get_family("jepa")
    batch = sampler_for(cartpole_store, make_model("jepa", cartpole_store)).sample()
    grads = []
    for weight in (0.0, 5.0):  # the heads' losses off, then weighted up
        torch.manual_seed(0)
        cfg = cls.preset("tiny", head_grad=head_grad, reward_weight=weight, done_weight=weight)
        model = cls(cfg, cartpole_store.action_spec, 64)
        model.set_frame_mean(cartpole_store.mean_frame())
        model.loss(batch)[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.encoder.parameters()]))
    if head_grad:
        assert not torch.allclose(grads[0], grads[1])
    else:
        assert torch.equal(grads[0], grads[1])  # detached heads: the encoder's gradient is pure JEPA


def test_jepa_logs_collapse_metrics(cartpole_store: EpisodeStore) -> None:
    model = make_model("jepa", cartpole_store)
    _, metrics = model.loss(sampler_for(cartpole_store, model).sample())
    for key in ("embed_std", "effective_rank", "target_std", "target_effective_rank", "vicreg_var", "pred_l1"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert metrics["embed_std"] > 0 and metrics["effective_rank"] > 1.0
    assert effective_rank(torch.randn(256, 8)) > 7.0  # isotropic: close to D
    assert effective_rank(torch.randn(256, 1) * torch.ones(1, 8)) < 1.01  # every unit the same: rank 1


def test_muzero_representation_reads_the_actions_that_led_to_its_frames(cartpole_store: EpisodeStore) -> None:
    model = make_model("muzero", cartpole_store).eval()
    assert model.config.past_actions  # on in the presets
    batch = sampler_for(cartpole_store, model, batch_size=1).sample()
    first = batch["is_first"].clone()
    first[:, 0] = True  # start the window as an episode so `observe` sees the same history
    with torch.no_grad():
        windows, _ = model.represent_windows(model.to_pixels(batch["obs"]), batch["act"].float(), first)
        state, stepped = model.initial(1), []
        for t in range(first.shape[1]):
            state = model.initial(1) if first[0, t] else state
            state = model.observe(state, batch["obs"][:, t], batch["act"][:, t].float())
            stepped.append(state["s"])
        # training (every t at once) and play (one frame at a time) build the same state
        torch.testing.assert_close(torch.cat(stepped), windows[0], rtol=1e-4, atol=1e-5)
        # the last action reaches h: the same frames after the other push give another state
        before = model.observe(model.initial(1), batch["obs"][:, 0], torch.zeros(1, 2))
        pushes = [model.observe(before, batch["obs"][:, 1], torch.eye(2)[i : i + 1])["s"] for i in range(2)]
    assert (pushes[0] - pushes[1]).abs().max() > 1e-4


# Learning tests: 150 steps of the tiny preset on two short real episodes (about 5 s each on 2 cores).
STEPS = 150


@pytest.fixture(scope="module")
def two_episodes(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """Two real random-policy CartPole episodes (both end in a terminal)."""
    store = collect("CartPole-v1", 2, tmp_path_factory.mktemp("two"), seed=0)
    assert all(ep.terminated for ep in store.episodes())
    return store


def _train(
    family: str, store: EpisodeStore, steps: int = STEPS
) -> tuple[dict[str, float], dict[str, float], WorldModel]:
    episodes = store.episodes()
    torch.manual_seed(0)
    cls = get_family(family)
    model = cls(cls.preset("tiny"), store.action_spec, store.pipeline.size)
    model.set_frame_mean(np.concatenate([ep.obs for ep in episodes]).mean(0) / 255.0)
    fixed = SequenceSampler(episodes, store.action_spec, 8, batch_size=8, seed=123).sample()

    def evaluate() -> dict[str, float]:
        torch.manual_seed(0)  # the probe's frame choice: the same draw before and after
        model.eval()
        with torch.no_grad():
            return model.loss(fixed)[1]

    before = evaluate()
    sampler = SequenceSampler(episodes, store.action_spec, 8, 8, seed=0)
    report = Trainer(model, sampler, device=torch.device("cpu")).run(steps, log_every=50)
    assert report.step == steps and all(np.isfinite(h["loss"]) for h in report.history)
    return before, evaluate(), model


def test_muzero_learns_two_cartpole_episodes(two_episodes: EpisodeStore) -> None:
    before, after, _ = _train("muzero", two_episodes, steps=2 * STEPS)  # g needs more steps than the heads
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["reward_loss"] < 0.2 * before["reward_loss"], (before, after)
    assert after["done_loss"] < 0.5 * before["done_loss"], (before, after)
    assert after["probe_fg_mse"] < 0.6 * before["probe_fg_mse"], (before, after)  # beats the mean frame
    # g tracks h(o_{t+k}) better than a g that leaves the state alone (which is what g is at initialisation)
    assert abs(before["consistency_loss"] - before["consistency_still"]) < 1e-4, before
    assert after["consistency_loss"] < 0.8 * after["consistency_still"], after


def test_jepa_learns_two_cartpole_episodes(two_episodes: EpisodeStore) -> None:
    before, after, _ = _train("jepa", two_episodes)
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["pred_l1"] < before["pred_l1"], (before, after)
    assert after["done_bce"] < 0.5 * before["done_bce"], (before, after)
    assert after["probe_fg_mse"] < 0.6 * before["probe_fg_mse"], (before, after)
    assert after["embed_std"] > 0.3 and after["effective_rank"] > 1.0, after  # no collapse to a point


@pytest.fixture(scope="module")
def muzero_model(cartpole_store: EpisodeStore) -> WorldModel:
    """A tiny muzero after a few Adam steps, in eval mode."""
    model = make_model("muzero", cartpole_store)
    adam_steps(model, sampler_for(cartpole_store, model), 3)
    return model


@pytest.mark.parametrize("batch", [1, 3])
def test_mcts_returns_valid_actions_and_visit_counts(muzero_model: WorldModel, cartpole_store, batch: int) -> None:
    state = context_state(muzero_model, cartpole_store, batch, 3)
    result = mcts(muzero_model, state, simulations=16, rng=np.random.default_rng(0))
    A = muzero_model.action_spec.n
    assert result.action.shape == (batch,) and ((result.action >= 0) & (result.action < A)).all()
    assert result.visits.shape == (batch, A) and (result.visits.sum(1) == 16).all()
    assert np.isfinite(result.root_value).all() and result.ms > 0
    np.testing.assert_allclose(result.prior.sum(1), 1.0, rtol=1e-5)
    # Greedy choice follows the visits; sampling at temperature 1 still gives valid actions.
    assert (result.visits[np.arange(batch), result.action] == result.visits.max(1)).all()
    sampled = mcts(muzero_model, state, simulations=8, temperature=1.0, rng=np.random.default_rng(1))
    assert ((sampled.action >= 0) & (sampled.action < A)).all() and (sampled.visits.sum(1) == 8).all()


class _Corridor:
    """A hand-made model for MCTS: action 1 pays 1 and action 0 pays 0, forever; values are 0."""

    action_spec = ActionSpec("discrete", 3)
    config = type("Config", (), {"discount": 0.9})()

    def prediction(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(s.shape[0], 3), torch.zeros(s.shape[0])

    def recurrent_inference(self, s: torch.Tensor, action: torch.Tensor):
        r = action[:, 1]
        return s, r, torch.zeros(s.shape[0], 3), torch.zeros(s.shape[0]), torch.zeros(s.shape[0])


def test_mcts_finds_the_rewarding_action() -> None:
    state = {"s": torch.zeros(2, 4)}
    result = mcts(_Corridor(), state, simulations=40, noise_fraction=0.0)  # type: ignore[arg-type]
    assert (result.action == 1).all() and (result.visits.sum(1) == 40).all()
    assert (result.visits[:, 1] > 2 * result.visits[:, [0, 2]].max(1)).all(), result.visits
    # The root value approaches the discounted sum of 1s along the best path (1 / (1 - 0.9) = 10).
    assert (result.root_value > 2.0).all()


class _NearTie:
    """A hand-made model for MCTS: action 0 pays 1 and action 1 pays 0.95, forever; the value of a state is
    10 at odd depths and 0 at even ones, for both actions alike (as CartPole's values span from "about to
    fall" to "safe" while one push changes them little)."""

    action_spec = ActionSpec("discrete", 2)
    config = type("Config", (), {"discount": 0.97})()

    def prediction(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(s.shape[0], 2), torch.zeros(s.shape[0])

    def recurrent_inference(self, s: torch.Tensor, action: torch.Tensor):
        r, depth = 1.0 - 0.05 * action[:, 1], s + 1
        value = 10.0 * (depth[:, 0] % 2)
        return depth, r, torch.zeros(s.shape[0], 2), value, torch.zeros(s.shape[0])


def test_mcts_sibling_normalisation_separates_near_ties() -> None:
    state = {"s": torch.zeros(1, 4)}
    share = {}
    for normalize in ("tree", "siblings"):
        result = mcts(_NearTie(), state, simulations=50, noise_fraction=0.0, normalize=normalize)  # type: ignore[arg-type]
        assert result.visits.sum() == 50 and result.action[0] == 0, (normalize, result.visits)
        share[normalize] = result.visits[0, 0] / 50
    # Over the tree, Q spans the values' 10 and the 0.05 a step between the two actions is a sliver of it;
    # over the root's two children it is the whole span.
    assert share["siblings"] > 0.75 and share["siblings"] > share["tree"] + 0.15, share
    with pytest.raises(ValueError, match="normalize must be"):
        mcts(_NearTie(), state, simulations=4, normalize="root")  # type: ignore[arg-type]


class _Steady(_NearTie):
    """Action 0 pays 1 and action 1 pays `other`, forever; every state is worth always taking action 0."""

    def __init__(self, other: float = 0.95) -> None:
        self.other = other

    def recurrent_inference(self, s: torch.Tensor, action: torch.Tensor):
        r = 1.0 - (1.0 - self.other) * action[:, 1]
        value = torch.full((s.shape[0],), 1.0 / (1.0 - self.config.discount))
        return s + 1, r, torch.zeros(s.shape[0], 2), value, torch.zeros(s.shape[0])


def test_improved_policy_targets_follow_q_and_leave_ties_at_the_prior() -> None:
    state = {"s": torch.zeros(1, 4)}
    near = mcts(_Steady(), state, simulations=25, noise_fraction=0.0)  # type: ignore[arg-type]
    # Action 0's Q is the root children's max, action 1's the min: sigma adds (50 + max N) * 0.1 to action
    # 0's logit, with the uniform prior's logits equal.
    boost = (50 + near.visits.max()) * 0.1
    np.testing.assert_allclose(near.improved[0], [1 / (1 + np.exp(-boost)), 1 / (1 + np.exp(boost))], rtol=1e-6)
    assert near.visits[0, 0] / 25 < 0.99 < near.improved[0, 0], (near.visits, near.improved)
    tie = mcts(_Steady(other=1.0), state, simulations=25, noise_fraction=0.0)  # type: ignore[arg-type]
    np.testing.assert_allclose(tie.improved[0], tie.prior[0], rtol=1e-6)

    chooser = MctsChooser(_Steady(), policy_target="improved", simulations=25, noise_fraction=0.0)  # type: ignore[arg-type]
    chooser(state), chooser(state)
    policy, value = chooser.targets(3)
    np.testing.assert_allclose(policy[:2], np.repeat(near.improved, 2, 0), rtol=1e-6)
    assert not policy[2].any() and np.isnan(value[2]) and np.isfinite(value[:2]).all()
    with pytest.raises(ValueError, match="policy_target must be 'visits' or 'improved', got 'q'"):
        MctsChooser(_Steady(), policy_target="q")  # type: ignore[arg-type]


class _Misled(_Steady):
    """_Steady with a prior that favours the worse action 1, three to one."""

    def prediction(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.tensor([0.0, float(np.log(3.0))]).expand(s.shape[0], 2)
        return logits, torch.zeros(s.shape[0])


def test_greedy_improved_choice_follows_q_where_the_visits_follow_the_prior() -> None:
    state = {"s": torch.zeros(1, 4)}
    by_visits = mcts(_Misled(), state, simulations=25, noise_fraction=0.0)  # type: ignore[arg-type]
    by_q = mcts(_Misled(), state, simulations=25, noise_fraction=0.0, greedy="improved")  # type: ignore[arg-type]
    assert np.array_equal(by_visits.visits, by_q.visits)  # the same search, a different final choice
    assert by_visits.action[0] == 1 and by_visits.visits[0, 1] > by_visits.visits[0, 0], by_visits.visits
    assert by_q.action[0] == 0 and by_q.improved[0, 0] > 0.5, by_q.improved
    with pytest.raises(ValueError, match="greedy must be 'visits' or 'improved'"):
        mcts(_Misled(), state, simulations=2, greedy="q")  # type: ignore[arg-type]


def test_mcts_is_reproducible_with_a_seeded_rng(muzero_model: WorldModel, cartpole_store) -> None:
    state = context_state(muzero_model, cartpole_store, 2, 3)
    a = mcts(muzero_model, state, simulations=12, rng=np.random.default_rng(5))
    b = mcts(muzero_model, state, simulations=12, rng=np.random.default_rng(5))
    assert np.array_equal(a.visits, b.visits) and np.array_equal(a.action, b.action)


def test_mcts_plays_a_real_episode(muzero_model: WorldModel) -> None:
    env = make_env("CartPole-v1")
    try:
        choose = mcts_chooser(muzero_model, simulations=4)
        episode, ms = plan_episode(muzero_model, env, seed=7, choose=choose, max_steps=6)
    finally:
        env.close()
    assert 2 <= len(episode) <= 7 and len(ms) == len(episode) - 1 and all(m > 0 for m in ms)
    assert episode.obs.shape[1:] == (64, 64, 3) and episode.obs.dtype == np.uint8
    assert set(episode.act[1:].tolist()) <= {0, 1} and episode.rew[0] == 0 and episode.rew[1:].sum() == len(ms)
    assert episode.terminated or episode.truncated
    assert episode.state is not None and episode.state.shape == (len(episode), 4)


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_cem_plans_toward_a_goal_with_actions_in_range(kind: str, stores: dict[str, EpisodeStore]) -> None:
    store = stores[kind]
    model = make_model("jepa", store)
    adam_steps(model, sampler_for(store, model), 3)
    state = context_state(model, store, 2, 3)
    goal_frames, _ = real_frames(store, 2, 5)
    goal = model.goal_embedding(torch.as_tensor(goal_frames[:, -1]))
    gen = torch.Generator().manual_seed(0)
    result = cem(model, state, goal_cost(model, goal), horizon=4, population=16, elites=4, iterations=3, generator=gen)
    spec = model.action_spec
    if spec.discrete:
        assert result.action.shape == (2,) and result.plan.shape == (2, 4)
        assert ((result.plan >= 0) & (result.plan < spec.n)).all()
    else:
        assert result.action.shape == (2, spec.n) and result.plan.shape == (2, 4, spec.n)
        assert (result.plan >= np.array(spec.low) - 1e-6).all() and (result.plan <= np.array(spec.high) + 1e-6).all()
    assert np.isfinite(result.cost).all() and result.ms > 0
    # The best plan's cost is no worse than a random plan's.
    rand = cem(model, state, goal_cost(model, goal), horizon=4, population=1, elites=1, iterations=1, generator=gen)
    assert (result.cost <= rand.cost + 1e-6).all()


def test_cem_plays_a_real_episode_toward_a_goal_frame(cartpole_store: EpisodeStore) -> None:
    model = make_model("jepa", cartpole_store).eval()
    env = make_env("CartPole-v1")
    try:
        goal = cartpole_store.load(0).obs[0]  # an upright pole near the centre
        choose = cem_goal_chooser(model, goal, horizon=3, population=8, elites=2, iterations=2)
        episode, ms = plan_episode(model, env, seed=3, choose=choose, max_steps=4)
    finally:
        env.close()
    assert 2 <= len(episode) <= 5 and len(ms) == len(episode) - 1
    assert set(episode.act[1:].tolist()) <= {0, 1}


def test_goal_cost_is_zero_at_the_goal(cartpole_store: EpisodeStore) -> None:
    model = make_model("jepa", cartpole_store)
    state = context_state(model, cartpole_store, 2, 3)
    cost = goal_cost(model, model.embedding(state))([state])
    assert cost.shape == (2,) and torch.allclose(cost, torch.zeros(2))


def test_agent_config_refuses_an_unknown_q_normalisation() -> None:
    from wm_core.agents.agent import ActorCritic

    with pytest.raises(ValueError, match="--q-normalization must be 'tree' or 'siblings', got 'root'"):
        ActorCritic.preset(q_normalization="root")
    with pytest.raises(ValueError, match="--policy-target must be 'visits' or 'improved', got 'q'"):
        ActorCritic.preset(policy_target="q")
    with pytest.raises(ValueError, match="--greedy-choice must be 'visits' or 'improved', got 'q'"):
        ActorCritic.preset(greedy_choice="q")
    with pytest.raises(ValueError, match=r"--wm-lr-decay is the end learning rate's share of the start, in \(0, 1\]"):
        ActorCritic.preset(wm_lr_decay=0.0)

"""The `dreamer` family beyond protocol conformance: it learns, its temperature means what the docs say,
KL balancing and free bits behave, the time convention holds, and the two-hot head regresses."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from conftest import make_model, sampler_for

from wm_core.agents.agent import ActorCritic, AgentConfig, filter_batch, lambda_return
from wm_core.agents.loop import evaluate_agent, train_agent
from wm_core.checkpoint import load_checkpoint
from wm_core.data import EpisodeStore, SequenceSampler
from wm_core.models.dreamer import Rssm, TwoHot, symexp, symlog
from wm_core.spec import ActionSpec

CARTPOLE = ActionSpec("discrete", 2)


def _grad_norms(model: Rssm, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss on `batch` and the gradient norm per top-level module."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss, _ = model.loss(batch)
    loss.backward()
    norms = {
        name: sum(float(p.grad.norm()) for p in mod.parameters() if p.grad is not None)
        for name, mod in model.named_children()
    }
    return loss, norms


def test_parameter_counts_per_preset(record_property: pytest.RecordProperty) -> None:
    counts = {}
    for preset in ("tiny", "small", "large"):
        model = Rssm(Rssm.preset(preset), CARTPOLE)
        counts[preset] = sum(p.numel() for p in model.parameters())
        record_property(f"params_{preset}", counts[preset])
    print("dreamer parameters:", {k: f"{v / 1e6:.2f}M" for k, v in counts.items()})
    assert counts["tiny"] < 500_000 < counts["small"] < 10_000_000 < counts["large"]
    # The config's default and the large preset keep DreamerV3's 32 x 32 categorical latent.
    for config in (Rssm.Config(), Rssm.preset("large")):
        assert (config.stoch_kind, config.stoch, config.classes) == ("categorical", 32, 32)


def test_loss_falls_on_two_short_cartpole_episodes(cartpole_store: EpisodeStore) -> None:
    model = make_model("dreamer", cartpole_store)
    episodes = cartpole_store.episodes()[:2]
    train = SequenceSampler(episodes, cartpole_store.action_spec, 8, 4, seed=0)
    fixed = SequenceSampler(episodes, cartpole_store.action_spec, 8, 8, seed=1).sample()

    def evaluate() -> dict[str, float]:
        torch.manual_seed(0)
        with torch.no_grad():
            return model.loss(fixed)[1]

    before = evaluate()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(60):
        loss, _ = model.loss(train.sample())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    # Measured: loss 275 -> 168, foreground MSE 0.028 -> 0.017, reward cross-entropy 3.7 -> 1.8.
    assert after["loss"] < 0.75 * before["loss"], (before, after)
    assert after["recon_fg_mse"] < 0.8 * before["recon_fg_mse"], (before, after)
    assert after["reward_loss"] < 0.6 * before["reward_loss"], (before, after)


def test_temperature_zero_is_the_prior_mode_and_deterministic(cartpole_store: EpisodeStore) -> None:
    model = make_model("dreamer", cartpole_store).eval()
    state = model.initial(2)
    act = CARTPOLE.encode([0, 1])
    with torch.no_grad():
        torch.manual_seed(0)
        a = model.imagine(state, act, 0.0)
        torch.manual_seed(1)
        b = model.imagine(state, act, 0.0)
        log_probs, _ = model._dist(model.prior_net(a["deter"]))
    assert torch.equal(a["stoch"], b["stoch"])
    z = a["stoch"].view(2, model.config.stoch, model.config.classes)
    assert torch.equal(z.argmax(-1), log_probs.argmax(-1))
    torch.testing.assert_close(z.sum(-1), torch.ones_like(z[..., 0]))  # one-hot (plus a zero straight-through term)


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0])
def test_temperature_raises_categorical_probabilities_to_one_over_tau(tau: float) -> None:
    model = Rssm(Rssm.preset("tiny", stoch=1, classes=3), CARTPOLE)
    p = torch.tensor([0.7, 0.2, 0.1])
    n = 20_000
    log_probs = p.log().expand(n, 1, 3)
    torch.manual_seed(0)
    z = model._sample((log_probs, log_probs.exp()), tau)  # (n, 3) one-hot
    expected = p ** (1 / tau) / (p ** (1 / tau)).sum()
    torch.testing.assert_close(z.mean(0), expected, atol=0.015, rtol=0)


def test_gaussian_temperature_scales_std_by_sqrt_tau() -> None:
    model = Rssm(Rssm.preset("tiny", stoch_kind="gaussian", stoch=4), CARTPOLE)
    mean, std = torch.zeros(50_000, 4), torch.full((50_000, 4), 0.8)
    assert torch.equal(model._sample((mean, std), 0.0), mean)
    torch.manual_seed(0)
    spread = model._sample((mean, std), 0.25).std().item()
    assert spread == pytest.approx(0.8 * math.sqrt(0.25), rel=0.03)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_free_bits_gate_the_kl_gradient(kind: str, cartpole_store: EpisodeStore) -> None:
    batch = sampler_for(cartpole_store, make_model("dreamer", cartpole_store)).sample()
    norms = {}
    for free_bits in (0.0, 1e4):
        torch.manual_seed(0)
        model = Rssm(Rssm.preset("tiny", stoch_kind=kind, free_bits=free_bits), cartpole_store.action_spec)
        model.set_frame_mean(cartpole_store.mean_frame())
        loss, norms[free_bits] = _grad_norms(model, batch)
        assert torch.isfinite(loss)
    # The prior learns only from the KL: with every KL under the free bits it receives no gradient at all.
    assert norms[0.0]["prior_net"] > 0 and norms[1e4]["prior_net"] == 0
    # The posterior still learns from the frames, rewards and ends.
    assert norms[1e4]["post_net"] > 0 and norms[1e4]["encoder"] > 0


def test_kl_balance_weights_dynamics_and_representation(cartpole_store: EpisodeStore) -> None:
    """dyn_scale trains only the prior and rep_scale only the posterior (the stop-gradients of the KL balance)."""
    batch = sampler_for(cartpole_store, make_model("dreamer", cartpole_store)).sample()
    cfg = dict(free_bits=0.0, fg_weight=0.0)
    torch.manual_seed(0)
    model = Rssm(Rssm.preset("tiny", **cfg), cartpole_store.action_spec)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {}
    for dyn, rep in ((0.5, 0.1), (0.0, 0.1), (0.5, 0.0)):
        model.load_state_dict(base)
        model.config.dyn_scale, model.config.rep_scale = dyn, rep
        _, grads[(dyn, rep)] = _grad_norms(model, batch)
    assert grads[(0.0, 0.1)]["prior_net"] == 0 and grads[(0.5, 0.0)]["prior_net"] > 0
    assert grads[(0.5, 0.0)]["post_net"] != grads[(0.5, 0.1)]["post_net"]  # rep reaches the posterior


def test_is_first_resets_to_the_initial_state(cartpole_store: EpisodeStore) -> None:
    model = make_model("dreamer", cartpole_store).eval()
    batch = sampler_for(cartpole_store, model, batch_size=2).sample()
    obs, act, first = model.to_pixels(batch["obs"]), batch["act"], batch["is_first"].clone()
    first[:, 3] = True
    act[:, 3] = 0.0
    with torch.no_grad():
        whole, _ = model.observe_sequence(obs, act, first, sample=False)
        tail, _ = model.observe_sequence(obs[:, 3:], act[:, 3:], first[:, 3:], sample=False)
    for k in whole:
        torch.testing.assert_close(whole[k][:, 3:], tail[k])


def test_observe_sequence_matches_step_by_step_observe(cartpole_store: EpisodeStore) -> None:
    model = make_model("dreamer", cartpole_store).eval()
    batch = sampler_for(cartpole_store, model, batch_size=2).sample()
    with torch.no_grad():
        seq, _ = model.observe_sequence(model.to_pixels(batch["obs"]), batch["act"], batch["is_first"], False)
        state = model.initial(2)
        for t in range(batch["obs"].shape[1]):
            keep = (~batch["is_first"][:, t]).float()[:, None]
            state = model.observe({k: v * keep for k, v in state.items()}, batch["obs"][:, t], batch["act"][:, t])
            for k in state:
                torch.testing.assert_close(state[k], seq[k][:, t], atol=1e-5, rtol=1e-4)


def test_symlog_symexp_invert() -> None:
    x = torch.tensor([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4])
    torch.testing.assert_close(symexp(symlog(x)), x)


def test_two_hot_head_regresses_rewards_of_any_scale() -> None:
    torch.manual_seed(0)
    head = TwoHot(2, 16, 255)
    x = torch.eye(2).repeat(32, 1)  # (64, 2): two inputs
    y = torch.tensor([1.0, -250.0]).repeat(32)
    torch.testing.assert_close(head(x), torch.zeros(64), atol=1e-5, rtol=0)  # zero-initialised output layer
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(200):
        loss = head.loss(x, y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(head(x[:2]), y[:2], rtol=0.05, atol=0.05)


# ---- behaviour learned in imagination (wm_core.agents.agent) -------------------------------------------------


def test_lambda_return_by_hand() -> None:
    rew, cont = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    value = torch.tensor([[0.0, 10.0, 20.0]])
    ret = lambda_return(rew, cont, value, gamma=0.5, lam=0.5)
    # R_1 = 2 + 0.5 * 0 * (...) = 2;  R_0 = 1 + 0.5 * 1 * (0.5 * 10 + 0.5 * 2) = 4
    torch.testing.assert_close(ret, torch.tensor([[4.0, 2.0]]))
    # lam = 1 is the discounted Monte-Carlo return bootstrapped at the horizon: 1 + 0.5 * (2 + 0.5 * 20)
    torch.testing.assert_close(lambda_return(rew, torch.ones(1, 2), value, 0.5, 1.0)[0, 0], torch.tensor(7.0))


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_actor_critic_update_learns_in_the_dream(kind: str, stores: dict[str, EpisodeStore]) -> None:
    store = stores[kind]
    model = make_model("dreamer", store).eval()
    batch = sampler_for(store, model).sample()
    start = filter_batch(model, batch)
    assert start["deter"].shape[0] == batch["obs"].shape[0] * batch["obs"].shape[1]
    ac = ActorCritic(AgentConfig(hidden=32, bins=41, horizon=5), model.latent(start).shape[1], model.action_spec)
    before = [p.clone() for p in ac.actor.parameters()]
    torch.manual_seed(0)
    for _ in range(2):
        metrics = ac.update(model, start, 1.0 - batch["is_terminal"].flatten().float())
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, ac.actor.parameters()))
    a, vec = ac.act(model.latent(start)[:3], sample=False)
    assert vec.shape == (3, model.action_spec.dim)
    if kind == "box":  # actions stay inside the Box
        assert (vec >= -2.0).all() and (vec <= 2.0).all()
    else:
        assert torch.equal(vec.argmax(-1), a)


def test_agent_loop_saves_and_evaluates(cartpole_store: EpisodeStore, tmp_path) -> None:
    run = tmp_path / "agent"
    shutil.copytree(cartpole_store.root, run / "data")
    tiny = dict(minutes=0.0001, collect_steps=5, train_steps=2, eval_episodes=2, hidden=32, bins=41, horizon=4)
    result = train_agent(run, env_id="CartPole-v1", preset="tiny", overrides=tiny, say=lambda _m: None)
    assert (run / "agent.json").exists() and (run / "checkpoint.json").exists()
    assert result["curve"] and result["curve"][-1]["grad_steps"] == 2
    ev = result["evaluation"]
    assert ev["episodes"] == 2 and len(ev["real"]) == len(ev["dream"]) == 2 and ev["real_mean"] >= 8
    model, wm_meta = load_checkpoint(run)
    trained_on = cartpole_store.episodes() + EpisodeStore.open(run / "agent-data").episodes()
    coverage = wm_meta["data"]["coverage"]  # counts the random and the policy episodes alike
    assert coverage["steps"] == sum(len(e) - 1 for e in trained_on) == sum(coverage["counts"])
    ac, meta = ActorCritic.load(run, model)
    assert ac.config.horizon == 4 and meta["env_id"] == "CartPole-v1"
    again = evaluate_agent(model, ac, "CartPole-v1", 2)
    assert again["real"] == ev["real"]  # greedy actor, same seeds: the loaded agent plays the same episodes

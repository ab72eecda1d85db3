"""Behaviour for a world model, which `wm agent train` trains (`loop.py`): DreamerV3's actor-critic learned in
imagination (Hafner et al. 2023, "Mastering Diverse Domains through World Models", section "Actor Critic
Learning"), or, for a family whose capabilities name the "mcts" planner, MuZero's search acting in the real
env (Schrittwieser et al. 2020, "Mastering Atari, Go, Chess and Shogi by Planning with a Learned Model").

The loop alternates: collect episodes in the real env with the behaviour, train the world model on them,
update the behaviour. The actor-critic updates in the dream after each world-model step; MCTS has no
weights of its own (the model's prediction function is its prior and value), so what it adds is data:
each move searches with Dirichlet noise at the root, samples the action from the root visit counts at a
temperature that falls over training (the paper's 1, 0.5, 0.25), and the episode keeps every search's
visit distribution and root value, which the model then regresses (its policy and value targets).
Two options take from Gumbel MuZero (Danihelka et al. 2022): `policy_target` "improved" stores the improved
policy instead of the visits, and `greedy_choice` "improved" plays its favourite instead of the most
visited move (see `planning.improved_policy`).

The actor and critic read `model.latent(state)` and dream with `imagine`, `reward` and `done` only, so
they stay outside the world-model protocol and work on any family with reward and done heads. The actor
learns with REINFORCE gradients, which DreamerV3 uses for discrete and continuous actions alike; so no
gradient flows through the world model and its rollouts run under `no_grad`.

Per imagined trajectory s_0 .. s_H (s_{t+1} = imagine(s_t, a_{t+1}), a_{t+1} ~ pi(s_t)):
    r_t = reward(s_{t+1}),  c_t = 1 - done(s_{t+1})
    R_t = r_t + gamma * c_t * ((1 - lam) * v(s_{t+1}) + lam * R_{t+1}),  R_H = v(s_H)     (lambda-return)
    critic: two-hot cross-entropy of v(s_t) against sg(R_t), bootstrapped from an EMA ("slow") critic
    actor:  -sg((R_t - v(s_t)) / max(1, S)) * log pi(a_{t+1} | s_t) - eta * H[pi(s_t)]
with S the EMA of the 95th minus the 5th percentile of the returns (the paper's return normalisation),
and every term weighted by the predicted probability that s_t is still inside the episode.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ..checkpoint import read_record
from ..checkpoint_checks import check_fields, check_finite, weight_path
from ..errors import CheckpointError
from ..files import atomic_write_bytes, atomic_write_json, sha256_file
from ..models.dreamer import TwoHot
from ..models.nn import Mlp
from ..protocol import State, WorldModel
from ..spec import ActionSpec
from .planning import SEARCH_CHOICES, Chooser, MctsChooser, mcts

AGENT_FILE = "agent.json"


@dataclass
class AgentConfig:
    """Actor-critic, MCTS and loop knobs for `wm agent train` (the family's planner picks which apply)."""

    horizon: int = 15
    """Imagined steps per rollout (paper: 15)."""
    gamma: float = 0.99
    """Discount per step (paper: 0.997; 0.99 looks 100 steps ahead, enough for CartPole's balance)."""
    lam: float = 0.95
    """Lambda of the lambda-returns."""
    entropy: float = 3e-4
    """Weight of the actor's entropy bonus (paper: 3e-4)."""
    lr: float = 3e-4
    """Adam learning rate of actor and critic (paper: 3e-5, raised for CPU-minute budgets)."""
    hidden: int = 256
    """Width of the actor's and critic's hidden layer."""
    bins: int = 255
    """Bins of the two-hot critic."""
    slow_critic: float = 0.98
    """EMA decay of the slow critic that the returns bootstrap from."""
    simulations: int = 25
    """MCTS (mcts planner): simulations per real move, in collection and evaluation."""
    visit_temperature: float = 1.0
    """MCTS: temperature of sampling the collected moves from root visit counts; it halves at 50% and again
    at 75% of the budget (the paper's 1, 0.5, 0.25 schedule, by training progress). Evaluation is greedy."""
    dirichlet_alpha: float = 0.25
    """MCTS: Dirichlet alpha of the root noise while collecting (paper: 0.25 for Atari)."""
    noise_fraction: float = 0.25
    """MCTS: share of the root prior replaced by that noise while collecting (paper: 0.25)."""
    q_normalization: str = "tree"
    """MCTS: min-max normalise Q over the whole "tree" (the paper) or over each node's "siblings"."""
    policy_target: str = "visits"
    """MCTS: what the policy learns from each search: the root "visits" distribution (the paper) or Gumbel
    MuZero's "improved" policy (prior sharpened toward the children with the higher Q)."""
    greedy_choice: str = "visits"
    """MCTS: the move evaluation (and the dream) plays: the most "visits" (the paper) or the "improved"
    policy's favourite (Gumbel MuZero's final choice: the prior plus the children's normalised Q)."""
    wm_lr_decay: float = 1.0
    """The world model's learning rate at the end of the budget, as a share of its own `lr`: it decays
    exponentially with the share of the budget used (MuZero decays its rate exponentially with training
    steps; 1 keeps it constant)."""
    minutes: float = 30.0
    """Wall-clock budget of `wm agent train`."""
    cpu_minutes: float = 0.0
    """Process CPU-time budget as well (0: none); training stops at whichever budget runs out first."""
    replay_frames: int = 40_000
    """Most recent policy frames trained on (besides the random ones); bounds memory as episodes grow."""
    random_episodes: int = 50
    """Random-policy episodes to start from when the run has no data yet."""
    collect_steps: int = 100
    """Env steps (whole episodes) collected with the current policy per iteration."""
    train_steps: int = 25
    """World-model + actor-critic gradient steps per iteration."""
    eval_every: float = 5.0
    """Minutes between greedy evaluations in the real env during training."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    keep_best: bool = False
    """Finish with the weights of the best evaluation (the in-training ones and the last), not the last
    weights: early stopping on the evaluations. The kept weights are then evaluated again on env seeds no
    evaluation played, so the luck that made them the best is not reported as their return. Continuing a
    run that kept weights counts them as its best so far: an evaluation must beat their return to replace
    them, so a short continuation cannot throw away a better model. The saves at each evaluation write the
    best weights too, so a run stopped before its end keeps them."""

    def __post_init__(self) -> None:
        if self.q_normalization not in ("tree", "siblings"):
            raise ValueError(f"--q-normalization must be 'tree' or 'siblings', got {self.q_normalization!r}")
        if self.policy_target not in SEARCH_CHOICES:
            raise ValueError(f"--policy-target must be 'visits' or 'improved', got {self.policy_target!r}")
        if self.greedy_choice not in SEARCH_CHOICES:
            raise ValueError(f"--greedy-choice must be 'visits' or 'improved', got {self.greedy_choice!r}")
        if not 0 < self.wm_lr_decay <= 1:
            msg = f"--wm-lr-decay is the end learning rate's share of the start, in (0, 1]; got {self.wm_lr_decay}"
            raise ValueError(msg)


def lambda_return(rew: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """TD(lambda) returns R_0 .. R_{H-1}, (N, H), from rew and cont (N, H) and values of s_0 .. s_H (N, H+1)."""
    ret, nxt = torch.zeros_like(rew), value[:, -1]
    for t in reversed(range(rew.shape[1])):
        nxt = rew[:, t] + gamma * cont[:, t] * ((1 - lam) * value[:, t + 1] + lam * nxt)
        ret[:, t] = nxt
    return ret


class ActorCritic(nn.Module):
    """Actor (categorical with 1% unimix, or bounded Gaussian) and two-hot critic on a world model's latent."""

    Config = AgentConfig

    def __init__(self, config: AgentConfig, latent_dim: int, action_spec: ActionSpec) -> None:
        super().__init__()
        self.config, self.spec = config, action_spec
        n = action_spec.n
        self.actor = Mlp(latent_dim, config.hidden, n if action_spec.discrete else 2 * n)
        self.critic = TwoHot(latent_dim, config.hidden, config.bins)
        self.slow = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("ret_range", torch.zeros(2))  # EMA of the 5th and 95th return percentiles
        low, high = np.asarray(action_spec.low, np.float32), np.asarray(action_spec.high, np.float32)
        bounded = action_spec.discrete or bool(np.isfinite(low).all() and np.isfinite(high).all())
        # buffers (not saved): they move with the module to its device
        self.register_buffer(
            "_low",
            torch.tensor(low if bounded and not action_spec.discrete else -np.ones(n, np.float32)),
            persistent=False,
        )
        self.register_buffer(
            "_high",
            torch.tensor(high if bounded and not action_spec.discrete else np.ones(n, np.float32)),
            persistent=False,
        )
        self.opt = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()], lr=config.lr, eps=1e-5)

    @classmethod
    def preset(cls, name: str = "small", **overrides: Any) -> AgentConfig:
        """An AgentConfig with overrides (one preset: the CLI builds its flags from it like a family's)."""
        return AgentConfig(**{k: v for k, v in overrides.items() if v is not None})

    def policy(self, latent: torch.Tensor) -> torch.distributions.Distribution:
        """pi(. | latent): Categorical with 1% uniform mixed in, or Normal in [-1, 1] units with std in [0.1, 1]."""
        out = self.actor(latent).float()
        if self.spec.discrete:
            probs = 0.99 * out.softmax(-1) + 0.01 / self.spec.n
            return torch.distributions.Categorical(probs=probs)
        mean, std = out.chunk(2, -1)
        return torch.distributions.Normal(torch.tanh(mean), 0.9 * torch.sigmoid(std + 2.0) + 0.1)

    def act(self, latent: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (policy sample: index (B,) or unit vector (B, n), model action vector (B, dim))."""
        dist = self.policy(latent)
        if self.spec.discrete:
            a = dist.sample() if sample else dist.probs.argmax(-1)
            return a, nn.functional.one_hot(a, self.spec.n).float()
        a = (dist.sample() if sample else dist.mean).clamp(-1, 1)
        return a, self._low + (a + 1) / 2 * (self._high - self._low)

    def raw_action(self, vec: torch.Tensor) -> Any:
        """A model action vector (dim,) -> the raw env action (int or float array)."""
        return int(vec.argmax()) if self.spec.discrete else vec.cpu().numpy().astype(np.float32)

    # ---- the behaviour interface the loop uses (shared with MctsAgent) ---------------------------
    def chooser(self, model: WorldModel, explore: bool, progress: float = 1.0) -> Chooser:
        """Act on a filtered state: a policy sample when exploring, else the greedy action."""

        @torch.no_grad()
        def choose(state: State) -> tuple[Any, float]:
            t0 = time.perf_counter()
            _, vec = self.act(model.latent(state).float(), explore)
            return self.raw_action(vec[0]), (time.perf_counter() - t0) * 1e3

        return choose

    @torch.no_grad()
    def dream_actions(self, model: WorldModel, state: State) -> np.ndarray:
        """Greedy raw actions for B dream states."""
        _, vec = self.act(model.latent(state).float(), sample=False)
        return np.stack([np.asarray(self.raw_action(v)) for v in vec])

    def train_step(self, model: WorldModel, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One actor-critic update in the dream, started from the filtered states of a training batch."""
        model.eval()
        start = filter_batch(model, batch)
        metrics = self.update(model, start, 1.0 - batch["is_terminal"].flatten().float())
        model.train()
        return metrics

    @torch.no_grad()
    def dream(self, model: WorldModel, start: State) -> dict[str, torch.Tensor]:
        """Imagine `horizon` steps from N start states: latents (N, H+1, D), actions, rewards, continues."""
        lats, acts, rews, conts = [model.latent(start)], [], [], []
        state = start
        for _ in range(self.config.horizon):
            a, vec = self.act(lats[-1].float())
            state = model.imagine(state, vec, 1.0)
            lats.append(model.latent(state))
            acts.append(a)
            rews.append(model.reward(state).float())
            conts.append(1.0 - model.done(state).float())
        return {"lat": torch.stack(lats, 1).float(), "act": torch.stack(acts, 1), "rew": torch.stack(rews, 1)} | {
            "cont": torch.stack(conts, 1)
        }

    def update(self, model: WorldModel, start: State, start_cont: torch.Tensor) -> dict[str, float]:
        """One actor-critic step on rollouts from `start` (N states) whose own continue flags are start_cont (N,)."""
        c = self.config
        traj = self.dream(model, start)
        lat, rew, cont = traj["lat"], traj["rew"], traj["cont"]  # (N, H+1, D), (N, H), (N, H)
        N, H = rew.shape
        with torch.no_grad():
            ret = lambda_return(rew, cont, self.slow(lat.flatten(0, 1)).view(N, H + 1), c.gamma, c.lam)
            # weight of s_t: probability the episode has not ended before reaching it
            weight = torch.cumprod(torch.cat([start_cont[:, None], cont[:, :-1]], 1), 1)  # (N, H)
            lo, hi = torch.quantile(ret.flatten(), torch.tensor([0.05, 0.95], device=ret.device))
            self.ret_range.lerp_(torch.stack([lo, hi]), 0.01)  # EMA with decay 0.99
            scale = (self.ret_range[1] - self.ret_range[0]).clamp(min=1.0)

        feats = lat[:, :H].flatten(0, 1)  # (N*H, D): s_0 .. s_{H-1}
        value = self.critic(feats).view(N, H)
        critic_loss = (self.critic.loss(feats, ret.flatten()).view(N, H) * weight).mean()
        dist = self.policy(feats)
        act = traj["act"].flatten(0, 1)
        log_prob = dist.log_prob(act) if self.spec.discrete else dist.log_prob(act).sum(-1)
        entropy = dist.entropy() if self.spec.discrete else dist.entropy().sum(-1)
        adv = ((ret - value) / scale).detach().flatten()
        actor_loss = -((adv * log_prob + c.entropy * entropy) * weight.flatten()).mean()

        self.opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        nn.utils.clip_grad_norm_([*self.actor.parameters(), *self.critic.parameters()], 100.0)
        self.opt.step()
        with torch.no_grad():  # the slow critic trails the critic
            for s, p in zip(self.slow.parameters(), self.critic.parameters(), strict=True):
                s.lerp_(p, 1 - c.slow_critic)
        return {
            "actor_loss": actor_loss.item(),
            "critic_loss": critic_loss.item(),
            "imagined_return": ret[:, 0].mean().item(),
            "imagined_reward": rew.mean().item(),
            "imagined_cont": cont.mean().item(),
            "entropy": entropy.mean().item(),
            "return_scale": float(scale),
        }

    # ---- saving beside the world-model checkpoint ------------------------------------------------
    def save(self, run: Path, extra: dict[str, Any]) -> None:
        """Weights to agent-*.safetensors and config + `extra` to agent.json (written last, atomically).

        The Adam moments are not kept: a resumed agent restarts its optimizer (and the world model's)."""
        name = f"agent-{time.time_ns()}.safetensors"
        atomic_write_bytes(run / name, save({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}))
        record = {"config": asdict(self.config), "weights": name, "weights_sha256": sha256_file(run / name)}
        atomic_write_json(run / AGENT_FILE, {**record, **extra})
        for stale in run.glob("agent-*.safetensors"):  # the previous save's, and any a killed save left
            if stale.name != name and stale.is_file() and not stale.is_symlink():
                stale.unlink(missing_ok=True)

    @classmethod
    def load(cls, run: Path, model: WorldModel, **overrides: Any) -> tuple[ActorCritic, dict[str, Any]]:
        """The actor-critic saved in `run` for `model` (config fields overridable) and its agent.json."""
        meta = read_agent_meta(run)
        path = weight_path(Path(run), {"file": meta.get("weights")}, "agent weights")
        if sha256_file(path) != meta.get("weights_sha256"):
            raise CheckpointError(f"{path} does not match the hash in {AGENT_FILE}; the agent is corrupt")
        ac = cls(
            cls.preset(**{**meta["config"], **overrides}), model.latent(model.initial(1)).shape[1], model.action_spec
        ).to(model.frame_mean.device)
        try:
            tensors = load_file(str(path))
            check_finite(tensors, path)
            ac.load_state_dict(tensors)
        except (SafetensorError, RuntimeError) as e:
            raise CheckpointError(f"{path} does not fit its agent config ({str(e).splitlines()[0]})") from None
        return ac, meta


class MctsAgent:
    """MuZero's behaviour: MCTS with the model itself; no weights of its own, so it saves only its config."""

    Config = AgentConfig

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def chooser(self, model: WorldModel, explore: bool, progress: float = 1.0) -> MctsChooser:
        """Search each move; exploring adds root noise and samples from the visits at the scheduled
        temperature, else no noise and the greedy move (`greedy_choice`)."""
        c = self.config
        temperature = c.visit_temperature * (1.0 if progress < 0.5 else 0.5 if progress < 0.75 else 0.25)
        search = dict(simulations=c.simulations, dirichlet_alpha=c.dirichlet_alpha, normalize=c.q_normalization)
        search |= dict(greedy=c.greedy_choice)
        search |= dict(noise_fraction=c.noise_fraction if explore else 0.0, temperature=temperature if explore else 0.0)
        return MctsChooser(model, np.random.default_rng(), policy_target=c.policy_target, **search)

    def dream_actions(self, model: WorldModel, state: State) -> np.ndarray:
        """Greedy search from B dream states at once."""
        c = self.config
        search = dict(simulations=c.simulations, normalize=c.q_normalization, greedy=c.greedy_choice)
        return mcts(model, state, noise_fraction=0.0, **search).action

    def train_step(self, model: WorldModel, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Nothing to update: the world model's own loss trains the policy and value the search uses."""
        return {}

    def save(self, run: Path, extra: dict[str, Any]) -> None:
        """Config + `extra` to agent.json, marked with the planner."""
        atomic_write_json(run / AGENT_FILE, {"config": asdict(self.config), "planner": "mcts", "weights": None} | extra)


Agent = ActorCritic | MctsAgent


def new_agent(model: WorldModel, config: AgentConfig) -> Agent:
    """The behaviour a family's capabilities ask for: MCTS for the "mcts" planner, else an actor-critic."""
    if model.capabilities.planner == "mcts":
        if not model.action_spec.discrete:
            raise ValueError("MCTS plans over discrete actions only; this env's actions are continuous")
        return MctsAgent(config)
    return ActorCritic(config, model.latent(model.initial(1)).shape[1], model.action_spec).to(model.frame_mean.device)


def read_agent_meta(run: Path | str) -> dict[str, Any]:
    """A run's agent.json, checked: a JSON object whose config fields fit AgentConfig (a one-line
    CheckpointError otherwise, as for checkpoints)."""
    path = Path(run) / AGENT_FILE
    meta = read_record(path, "agent", f"no agent in {run}: train one with `wm agent train {run}`")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path} holds no agent config; the agent is corrupt")
    check_fields("agent config", meta["config"], AgentConfig)
    return meta


def load_agent(run: Path | str, model: WorldModel, **overrides: Any) -> tuple[Agent, dict[str, Any]]:
    """The behaviour saved in `run`'s agent.json (config fields overridable) and the file's content."""
    meta = read_agent_meta(run)
    if meta.get("planner") == "mcts":
        return MctsAgent(ActorCritic.preset(**{**meta["config"], **overrides})), meta
    return ActorCritic.load(Path(run), model, **overrides)


@torch.no_grad()
def filter_batch(model: WorldModel, batch: dict[str, torch.Tensor]) -> State:
    """Posterior states of every step of a training batch, flattened to (B*T, ...), via `filter_steps`
    (is_first restarts from the initial state: protocol.py's time convention)."""
    states = list(model.filter_steps(batch["obs"], batch["act"].float(), batch["is_first"]))
    return {k: torch.stack([s[k] for s in states], 1).flatten(0, 1) for k in states[0]}

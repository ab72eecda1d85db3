"""Family `muzero`: MuZero (Schrittwieser et al. 2020, "Mastering Atari, Go, Chess and Shogi by Planning
with a Learned Model"), scaled down to 64x64 frames on a CPU.

The paper's three functions:
    representation  s_t = h(o_{t-1}, o_t; the actions that led to them)
                                            a conv net on the last two frames stacked as planes, its features
                                            joined by the one-hot past actions (`past_actions`) -> hidden state
    dynamics        s', r = g(s, a)         an MLP on (s, one-hot a), residual on s
    prediction      pi, v = f(s)            policy logits and value
Hidden states are min-max normalised to [0, 1] after h and after every g ("we scale the hidden state to the
same range as the action input", paper Appendix G). The paper stacks 32 frames and their actions; here
two frames (`frames`) and their actions, which the state carries so `observe` can stack them.

Training (paper Appendix G): from *every* position t of a sampled window the model unrolls K steps of g
with the logged actions, and at each step k = 0..K regresses
    reward  r_{t+k}        the logged reward on arriving at frame t+k (k >= 1),
    value   z_{t+k}        n-step return  sum_i gamma^(i-1) r_{t+k+i} + gamma^n nu_{t+k+n}, where nu is the
                           root value the search stored with the frame (the paper's target), or for frames
                           without a search (random-policy data, or every frame with `fresh_values`) the
                           model's own value v(h(o)), detached; cut at a terminal (value 0 beyond it) and
                           at the window's end (bootstrap from the last frame inside it),
    policy  pi_{t+k}       the search's root visit distribution stored with frame t+k (the paper's target);
                           frames without a search use the one-hot behaviour action a_{t+k+1} (with
                           random-policy data f then learns the behaviour prior, about uniform).
Value and reward pass through the invertible transform of Pohlen et al. 2018 (paper Appendix F) and are
regressed with MSE, not the paper's 601-bin categorical: simpler, and adequate for CartPole's rewards of 1.
The gradient entering g is halved and each unrolled step's losses are weighted 1/K (Appendix G).

Additions (not in the paper), each for a failure measured on CartPole (docs/results/cartpole.md and
docs/results/agents.md tell the numbers):
  - a termination head on s, whose loss counts fully at every unrolled step and weights terminal frames up
    (`done_pos_weight`): the Dream ends episodes with it and MCTS discounts through it;
  - EfficientZero's temporal consistency (Ye et al. 2021, "Mastering Atari Games with Limited Data"): each
    unrolled state g^k(s_t) also regresses the detached representation h(o_{t+k}) of the real frame it
    stands for, as 1 - cosine after subtracting the batch's mean real state; without it the dynamics barely
    told actions apart;
  - a probe decoder on detached states: `decode` draws the probe's view and never trains the model;
  - a variance floor on the frame features (VICReg's hinge, `feature_std_floor`) and zero-initialised head
    outputs: otherwise the losses shrank the features' spread until the value never left its mean;
  - the encoder sees each frame minus the dataset mean frame.
Dynamics are deterministic: `imagine` ignores the temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import Batch, Capabilities, State, TrainConfig, WorldModel
from ..spec import ActionSpec
from .nn import (
    ConvEncoder,
    Mlp,
    ProbeConfig,
    ProbeDecoder,
    inverse_value_transform,
    masked_mean,
    n_step_returns,
    previous_in_episode,
    scale_gradient,
    shift,
    unroll_mask,
    value_transform,
)


def min_max(s: torch.Tensor) -> torch.Tensor:
    """Scale each hidden state (..., D) to [0, 1] over its D units (MuZero Appendix G)."""
    lo, hi = s.amin(-1, keepdim=True), s.amax(-1, keepdim=True)
    return (s - lo) / (hi - lo).clamp(min=1e-5)


@dataclass
class MuZeroConfig(ProbeConfig, TrainConfig):
    """MuZero network sizes, unroll and return horizons, and loss weights."""

    channels: int = 16
    """Width of the first conv layer of the representation's frame encoder (doubles per layer)."""
    feat_dim: int = 128
    """Conv features of the stacked frames."""
    frames: int = 2
    """Frames stacked as the representation's input planes, the current one and `frames - 1` before it
    (the paper stacks 32). Stacked pixels let the first conv see motion as a difference of intensities: a
    slow pole moves less than a pixel per step. Encoding each frame apart and joining the features (tried
    first) lost it: a linear probe read the pole's angular velocity from h with R^2 0.52, and from h on two
    stacked frames with 0.73; MCTS on the stacked model scored 112 against 62 (both after 2,000 steps on
    the same data). Four frames cost 1.5x per step and scored no better at 1,000 steps."""
    past_actions: bool = False
    """h also reads the actions that led to each stacked frame, one-hot, joined to the conv features (the
    paper feeds Atari's representation the last 32 actions as bias planes beside the 32 frames). Two frames
    show CartPole's angular velocity one step late: the frames' angle difference is the velocity before the
    last push, and the push changes it by about as much as its whole spread under a balancing policy."""
    gray: bool = True
    """Stack the frames as luminance planes, one per frame (DQN's Atari input, Mnih et al. 2015), not RGB:
    CartPole's shapes carry the state, and the first conv's cost grows with the planes."""
    hidden: int = 64
    """Size of the hidden state s (min-max normalised to [0, 1])."""
    mlp: int = 128
    """Width of the representation, dynamics, prediction and termination MLPs."""
    unroll: int = 5
    """K: dynamics steps unrolled from every position of a window (the paper uses 5)."""
    td_steps: int = 10
    """n of the n-step value targets (the paper uses 10 for Atari)."""
    discount: float = 0.97
    """Discount of value targets and of MCTS backups (the paper: 0.997 for Atari; CartPole's random-policy
    episodes last about 22 steps, so a shorter horizon keeps the values' scale close to what the data shows)."""
    fresh_values: bool = False
    """Bootstrap every n-step value target from the current model's value of the real frame, v(h(o)), also
    where a search stored its root value: a stored value is as old as the model that played the episode
    (MuZero Reanalyze refreshes targets with a new search; this refreshes them without one)."""
    value_weight: float = 1.0
    """Weight of the value loss (1 as in the paper's equation 1; its Reanalyse runs use 0.25)."""
    policy_weight: float = 1.0
    """Weight of the policy cross-entropy."""
    reward_weight: float = 1.0
    """Weight of the reward regression."""
    done_weight: float = 1.0
    """Weight of the termination head's cross-entropy (an addition for play), at every unrolled step."""
    done_pos_weight: float = 5.0
    """Weight of terminal frames in that cross-entropy: they are one frame per episode (1 in 22 with random
    CartPole play, 1 in hundreds with a good policy), and unweighted the head learned to say "never"."""
    consistency_weight: float = 1.0
    """Weight of EfficientZero's consistency loss between unrolled and real-frame states (0 turns it off).
    The small preset uses 10: on random-policy CartPole the value and end targets do not depend on which way
    the pole leans, and pulling each unrolled state toward the next frame's makes the push's effect, and so
    the sign, part of the state (docs/results/cartpole.md); the agent's recipe sets 1."""
    feature_std_floor: float = 0.1
    """VICReg's variance hinge on the frame features (an addition; 0 turns it off): each feature's std over
    the batch is pushed up to this floor, so the losses cannot shrink the features' spread across frames."""


class MuZero(WorldModel):
    """MuZero's representation, dynamics and prediction functions, plus termination and probe heads."""

    family = "muzero"
    Config = MuZeroConfig
    PRESETS = {
        "tiny": dict(channels=8, feat_dim=16, hidden=32, mlp=32, unroll=3, td_steps=3, probe_channels=8,
                     past_actions=True, steps=30, batch_size=4, seq_len=8, episodes=6),
        "small": dict(channels=8, past_actions=True, consistency_weight=10.0, steps=1500, batch_size=16,
                      seq_len=24),
        "large": dict(channels=32, feat_dim=256, hidden=256, mlp=512, probe_channels=32, discount=0.997,
                      past_actions=True, steps=20000, batch_size=32, seq_len=32),
    }  # fmt: skip
    latent_keys = ("s",)  # the hidden state s
    capabilities = Capabilities(
        decoder=False,
        probe_decoder=True,
        stochastic=False,
        planner="mcts",
        action_kinds=("discrete",),
        temperature="none: the dynamics function is deterministic, so the temperature is ignored",
    )

    def __init__(self, config: MuZeroConfig, action_spec: ActionSpec, frame_size: int = 64) -> None:
        super().__init__(config, action_spec, frame_size)
        if not action_spec.discrete:
            low, high = list(action_spec.low), list(action_spec.high)
            raise ValueError(
                f"muzero plans over discrete actions; this env has a continuous action space (Box of "
                f"{action_spec.n} from {low} to {high}): choose a discrete-action env such as CartPole-v1, "
                f"or the jepa or ha family"
            )
        c, A = config, action_spec.n
        if c.frames < 1:
            raise ValueError(f"muzero's representation reads at least one frame; got frames={c.frames}")
        self.planes_per_frame = 1 if c.gray else 3
        self.encoder = ConvEncoder(c.channels, c.feat_dim, frame_size, in_channels=self.planes_per_frame * c.frames)
        self.represent_mlp = Mlp(c.feat_dim + (A * c.frames if c.past_actions else 0), c.mlp, c.hidden)
        self.dynamics_mlp = Mlp(c.hidden + A, c.mlp, c.hidden + 1)  # state change and reward
        self.prediction_mlp = Mlp(c.hidden, c.mlp, A + 1)  # policy logits and value
        self.termination_mlp = Mlp(c.hidden, c.mlp, 1)
        self.probe = ProbeDecoder(c.hidden, c.probe_channels, frame_size)
        # Head outputs start at zero (DreamerV3 does so for its reward and critic): predictions start at a
        # constant and g at the identity, so early steps do not pay for random, frame-dependent outputs.
        for head in (self.dynamics_mlp, self.prediction_mlp, self.termination_mlp):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    # ---- the paper's three functions (on raw tensors; MCTS calls these) -------------------------
    def planes(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames (..., 3, H, W) in [0, 1] -> the encoder's input planes of each, (..., P, H, W): the frame minus
        the dataset mean frame (CartPole frames differ in a few pixels; without the shared background the
        features of different frames differ about half as much at initialisation, measured), as luminance
        (ITU-R BT.601 luma, P = 1) when `gray`, else RGB (P = 3)."""
        x = pixels - self.frame_mean + 0.5
        return (x * x.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(-3, keepdim=True) if self.config.gray else x

    def representation(self, stack: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """h: the planes of `frames` frames stacked newest first, (N, P * frames, H, W), and with `past_actions`
        the one-hot actions that led to them, newest first, (N, A * frames) -> state (N, D) in [0, 1]."""
        return min_max(self.represent_mlp(self._features(self.encoder(stack), actions)))

    def _features(self, feat: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        if not self.config.past_actions:
            return feat
        if actions is None:
            raise ValueError("this muzero reads past actions (past_actions=True): pass them to the representation")
        return torch.cat([feat, actions], dim=-1)

    def represent_windows(
        self, pixels: torch.Tensor, act: torch.Tensor, first: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h at every step of windows: frames (B, T, 3, H, W) in [0, 1], one-hot actions that led to them
        (B, T, A) and episode starts (B, T) -> states (B, T, D) and conv features (B*T, F). Frames and
        actions before an episode's first frame are the first frame and zeros, as in `observe`; the
        window's first step, when mid-episode, repeats its own frame (nothing earlier is in the batch)."""
        B, T = pixels.shape[:2]
        stack = [self.planes(pixels)]  # (B, T, P, H, W)
        acts = [act * ~first[..., None]]  # the action that led to each frame; none before an episode's first
        for _ in range(self.config.frames - 1):
            stack.append(previous_in_episode(stack[-1], first))
            acts.append(previous_in_episode(acts[-1], first) * ~first[..., None])
        feat = self.encoder(torch.cat(stack, dim=2).flatten(0, 1))  # (B*T, F)
        past = torch.cat(acts, dim=-1).flatten(0, 1) if self.config.past_actions else None
        return min_max(self.represent_mlp(self._features(feat, past))).view(B, T, -1), feat

    def _dynamics(self, s: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.dynamics_mlp(torch.cat([s, action], dim=-1))
        return min_max(s + out[..., :-1]), out[..., -1]  # reward still in transformed space

    def dynamics(self, s: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """g: state (..., D) and one-hot action (..., A) -> next state (..., D), reward (...)."""
        s2, r = self._dynamics(s, action)
        return s2, inverse_value_transform(r)

    def prediction(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f: state (..., D) -> policy logits (..., A) and value (...)."""
        out = self.prediction_mlp(s)
        return out[..., :-1], inverse_value_transform(out[..., -1])

    def recurrent_inference(
        self, s: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """g then f (and the termination head) in one call, as the search needs them (the paper's
        "recurrent inference"): -> next state (B, D), reward (B,), policy logits (B, A), value (B,), p_done (B,)."""
        s2, r = self._dynamics(s, action)
        out = self.prediction_mlp(s2)
        r_v = inverse_value_transform(torch.stack([r, out[..., -1]]))  # one transform for both scalars
        return s2, r_v[0], out[..., :-1], r_v[1], self.termination(s2)

    def termination(self, s: torch.Tensor) -> torch.Tensor:
        """Probability (...) that state s is terminal (an addition to MuZero, for play)."""
        return torch.sigmoid(self.termination_mlp(s)[..., 0])

    def policy_value(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior policy (B, A) and value (B,) of a protocol state, for display beside the frame."""
        logits, value = self.prediction(state["s"])
        return logits.softmax(-1), value

    # ---- protocol --------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """Zero state; `seen` = 0 says no frame has been observed yet."""
        c, dev = self.config, self.frame_mean.device
        zeros = lambda n: torch.zeros(batch_size, n, device=dev)  # noqa: E731
        # past: the planes of the frames before the last, newest first
        past = torch.zeros(batch_size, self.planes_per_frame * (c.frames - 1), *self.frame_mean.shape[1:], device=dev)
        state = {"s": zeros(c.hidden), "past": past, "rew": zeros(1), "seen": zeros(1)}
        if c.past_actions:  # the actions that led to the frames in `past`, newest first
            state["past_act"] = zeros(self.action_spec.n * (c.frames - 1))
        return state

    def observe(self, state: State, frame: torch.Tensor, prev_action: torch.Tensor) -> State:
        """s = h(the last `frames` frames, with `past_actions` also the actions that led to them); the reward is
        g's prediction for (previous s, prev_action)."""
        prev_action = prev_action.to(self.frame_mean.device)
        planes = self.planes(self.to_pixels(frame))  # (B, P, H, W)
        seen = state["seen"]
        first = (seen[:, 0] == 0).view(-1, 1, 1, 1)  # first frame: no motion known, it stands for the past too
        stack = torch.cat(
            [planes, torch.where(first, planes.repeat(1, self.config.frames - 1, 1, 1), state["past"])], 1
        )
        _, rew = self.dynamics(state["s"], prev_action)
        out = {"past": stack[:, : state["past"].shape[1]], "rew": (rew * seen[:, 0]).unsqueeze(-1)}
        out["seen"] = torch.ones_like(seen)
        if self.config.past_actions:  # before the first frame nothing was done: zeros
            actions = torch.cat([prev_action.float() * seen, state["past_act"]], 1)
            out["past_act"] = actions[:, : state["past_act"].shape[1]]
            return {"s": self.representation(stack, actions)} | out
        return {"s": self.representation(stack)} | out

    def imagine(
        self, state: State, action: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> State:
        """One step of g; deterministic, `temperature` has no effect."""
        s, rew = self.dynamics(state["s"], action.to(self.frame_mean.device))
        return state | {"s": s, "rew": rew.unsqueeze(-1)}

    def decode(self, state: State) -> torch.Tensor:
        """The probe decoder's view of s, (B, H, W, 3) in [0, 1]: what the latent knows, not a prediction."""
        return self.probe(state["s"], self.frame_mean).clamp(0, 1).movedim(-3, -1)

    def reward(self, state: State) -> torch.Tensor:
        """g's reward for the transition into this state."""
        return state["rew"][:, 0]

    def done(self, state: State) -> torch.Tensor:
        """The termination head on s."""
        return self.termination(state["s"])

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """K-step unrolled reward, value, policy and termination losses, plus the probe decoder's loss."""
        c = self.config
        obs = self.to_pixels(batch["obs"])  # (B, T, 3, H, W)
        B, T = obs.shape[:2]
        dev = obs.device
        act = batch["act"].to(dev).float()  # (B, T, A)
        rew = batch["rew"].to(dev).float()  # (B, T)
        first, term = batch["is_first"].to(dev), batch["is_terminal"].to(dev)

        s, feat = self.represent_windows(obs, act, first)  # (B, T, D): a root at every t
        feat_std = (feat.var(0) + 1e-6).sqrt()  # (F,)
        spread_loss = F.relu(1 - feat_std / c.feature_std_floor).mean() if c.feature_std_floor > 0 else 0.0
        with torch.no_grad():
            boot = self.prediction(s)[1]  # the model's value of each real frame ...
            # ... unless a search stored its root value with the frame (the paper) and fresh_values is off
            if "search_value" in batch and not c.fresh_values:
                searched_value = batch["search_value"].to(dev)
                boot = torch.where(searched_value.isnan(), boot, searched_value)
            z, has_z = n_step_returns(rew, boot, first, term, c.td_steps, c.discount)
        searched = batch["search_policy"].to(dev) if "search_policy" in batch else torch.zeros_like(act)
        has_pi = searched.sum(-1) > 0  # (B, T): frames whose search visit distribution was stored
        pos_weight = torch.tensor(c.done_pos_weight, device=dev)
        inside = unroll_mask(first, c.unroll + 1)  # (B, T, K + 2): frame t + k is in t's episode and window

        s_mean = s.detach().flatten(0, 1).mean(0)  # (D,): the part common to every frame carries no information
        s_real = s.detach() - s_mean  # (B, T, D): what each unrolled state should agree with (EfficientZero)
        losses = {"reward": 0.0, "value": 0.0, "policy": 0.0, "done": 0.0, "consistency": 0.0}
        still = 0.0  # the consistency loss of a g that leaves the state as it is: what g has to beat
        states = []
        for k in range(c.unroll + 1):
            ok = inside[..., k]
            if k > 0:
                s, r = self._dynamics(scale_gradient(s, 0.5), shift(act, k))
                r_err = (r - value_transform(shift(rew, k))).pow(2)
            weight = 1.0 if k == 0 else 1.0 / c.unroll  # each unrolled step counts 1/K (Appendix G)
            out = self.prediction_mlp(s)
            logits, v = out[..., :-1], out[..., -1]
            from_search = shift(has_pi, k)
            pi_target = torch.where(from_search[..., None], shift(searched, k), shift(act, k + 1))
            pi_ok = torch.where(from_search, ok, inside[..., k + 1])  # a behaviour action needs frame t+k+1
            step = {
                "reward": masked_mean(r_err, ok) if k > 0 else torch.zeros((), device=dev),
                "consistency": masked_mean(1 - F.cosine_similarity(s - s_mean, shift(s_real, k), dim=-1), ok)
                if k > 0
                else torch.zeros((), device=dev),
                "value": masked_mean((v - value_transform(shift(z, k))).pow(2), ok & shift(has_z, k)),
                "policy": masked_mean(-(pi_target * logits.log_softmax(-1)).sum(-1), pi_ok),
                "done": masked_mean(
                    F.binary_cross_entropy_with_logits(
                        self.termination_mlp(s)[..., 0], shift(term, k).float(), reduction="none", pos_weight=pos_weight
                    ),
                    ok,
                ),
            }
            for name, value in step.items():
                # the done head's steps count evenly, with the same total (2) as the paper's 1 + K * 1/K
                losses[name] = losses[name] + (2.0 / (c.unroll + 1) if name == "done" else weight) * value
            states.append(s.detach())
            if k > 0:
                agree = F.cosine_similarity(s_real, shift(s_real, k), dim=-1)
                still = still + weight * masked_mean(1 - agree, ok).detach()

        # The probe: a random share of (t, k) states, decoded toward the real frame t + k.
        valid = inside[..., : c.unroll + 1].flatten().float()  # over (B, T, K + 1)
        n_probe = max(1, min(round(c.probe_fraction * B * T), int(valid.sum())))
        pick = torch.multinomial(valid, n_probe, replacement=False)
        b, t, k = pick // (T * (c.unroll + 1)), (pick // (c.unroll + 1)) % T, pick % (c.unroll + 1)
        latents = torch.stack(states, dim=2)[b, t, k]  # (N, D)
        target = obs[b, t + k]  # (N, 3, H, W)
        probe_loss, probe_metrics = self.probe.loss(
            latents, target, self.frame_mean, self.foreground(target), c.fg_weight
        )

        loss = (
            c.reward_weight * losses["reward"]
            + c.value_weight * losses["value"]
            + c.policy_weight * losses["policy"]
            + c.done_weight * losses["done"]
            + c.consistency_weight * losses["consistency"]
            + spread_loss
            + probe_loss
        )
        with torch.no_grad():
            s0 = states[0].flatten(0, 1)
            metrics = {
                "loss": loss.item(),
                **{f"{name}_loss": float(value) for name, value in losses.items()},
                "consistency_still": float(still),
                "spread_loss": float(spread_loss),
                "feature_std": feat_std.mean().item(),
                "probe_loss": probe_loss.item(),
                **probe_metrics,
                "value_target_mean": masked_mean(z, has_z).item(),
                "state_std": s0.std(0).mean().item(),
            }
        return loss, metrics

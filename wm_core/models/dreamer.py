"""Family `dreamer`: the world model of DreamerV3 (Hafner et al. 2023, "Mastering Diverse Domains through
World Models"): conv encoder -> RSSM -> decoder, reward and continue heads, trained from one loss.

RSSM (recurrent state-space model). The state is a deterministic GRU state h and a stochastic state z:

    h_t = GRU(h_{t-1}, [z_{t-1}, a_t])      sequence model (a_t led to obs_t, see protocol.py)
    z_t ~ q(z | h_t, embed(obs_t))          posterior: `observe`, and the loss
    z_t ~ p(z | h_t)                         prior (dynamics predictor): `imagine`
    obs_t, rew_t, cont_t  <-  heads on [h_t, z_t]

z is 32 categoricals of 32 classes by default, each mixed with 1% uniform ("unimix", paper section
"Robust predictors") and sampled with straight-through gradients; `stoch_kind="gaussian"` gives a
diagonal Gaussian instead (the `small` CPU preset uses it: it learns dynamics in fewer steps, see PRESETS).
The paper's world-model loss (section "World Model Learning") is
    L = L_pred + 0.5 * max(1, KL[sg(q) || p]) + 0.1 * max(1, KL[q || sg(p)])
("KL balancing" with 1 nat of free bits). L_pred sums the image error over pixels, weighting the
pixels that differ from the dataset mean frame (`fg_weight`), plus a two-hot cross-entropy on the
symlog reward (paper: "symlog" and "two-hot") and a binary cross-entropy on the continue flag.

Temperature in `imagine`: the prior density is raised to the power 1/tau before sampling, i.e. the
categorical log-probabilities (after unimix) are divided by tau and Gaussian standard deviations are
multiplied by sqrt(tau). tau = 1 samples the learned prior, tau -> 0 sharpens it and tau = 0 takes its
mode (the most likely class of each categorical, the Gaussian mean): deterministic. `observe` always
takes the posterior's mode, so the same context frames give the same dream start (the loss samples the
posterior, as Dreamer does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import Batch, Capabilities, State, TrainConfig, WorldModel
from ..spec import ActionSpec
from .nn import ConvDecoder, ConvEncoder, Generators, Mlp, multinomial, randn_like, symexp, symlog, weighted_pixel_loss
from .steady import GRUCell, Linear


class TwoHot(nn.Module):
    """DreamerV3's two-hot regression head: logits over bins equally spaced in symlog space.

    A scalar target y lands on its two neighbouring bins with weights given by its distance to each, and
    the head is trained with cross-entropy; the prediction is symexp of the expected bin. Unlike MSE, the
    gradient does not grow with the target's magnitude, so rewards and returns of any scale train alike.
    """

    def __init__(self, in_dim: int, hidden: int, bins: int, low: float = -20.0, high: float = 20.0) -> None:
        super().__init__()
        self.mlp = Mlp(in_dim, hidden, bins)
        # The paper zero-initialises the output layer so early predictions are 0, not random large values.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.register_buffer("bins", torch.linspace(low, high, bins), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> prediction (N,) in the target's own units."""
        probs = self.mlp(x).float().softmax(-1)
        return symexp((probs * self.bins).sum(-1))

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the two-hot encoding of symlog(target); x (N, in_dim), target (N,) -> (N,)."""
        bins, K = self.bins, self.bins.numel()
        y = symlog(target.float()).clamp(bins[0], bins[-1])
        hi = torch.bucketize(y, bins).clamp(1, K - 1)  # bins[hi - 1] <= y <= bins[hi]
        w_hi = (y - bins[hi - 1]) / (bins[hi] - bins[hi - 1])
        two_hot = torch.zeros(y.shape[0], K, device=y.device)
        two_hot.scatter_(1, (hi - 1)[:, None], (1 - w_hi)[:, None])
        two_hot.scatter_add_(1, hi[:, None], w_hi[:, None])
        return -(two_hot * self.mlp(x).float().log_softmax(-1)).sum(-1)


@dataclass
class DreamerConfig(TrainConfig):
    """RSSM sizes and DreamerV3 loss weights (defaults: the paper's 32 x 32 categorical z at `small` sizes)."""

    channels: int = 16
    """Width of the first conv layer of encoder and decoder (doubles per layer)."""
    embed: int = 256
    """Size of the encoder's frame embedding."""
    deter: int = 256
    """GRU size: the deterministic state h."""
    hidden: int = 256
    """Width of the RSSM's and the heads' hidden layers."""
    stoch: int = 32
    """Number of categorical variables in z (or Gaussian dimensions)."""
    classes: int = 32
    """Classes per categorical variable (ignored for Gaussian z)."""
    stoch_kind: str = "categorical"
    """Stochastic state type: 'categorical' (DreamerV3) or 'gaussian' (DreamerV1/PlaNet)."""
    unimix: float = 0.01
    """Share of uniform mixed into each categorical so no class has probability 0 (KL stays finite)."""
    free_bits: float = 1.0
    """KL (nats, whole z) below which neither KL term pushes: the posterior may keep that much information."""
    dyn_scale: float = 0.5
    """Weight of KL[sg(q) || p]: trains the prior toward the posterior."""
    rep_scale: float = 0.1
    """Weight of KL[q || sg(p)]: keeps the posterior predictable."""
    fg_weight: float = 20.0
    """Extra reconstruction weight on pixels that differ from the dataset mean frame."""
    moving_share: float = 0.0
    """When > 0, the share of each frame's reconstruction loss that those pixels carry (instead of `fg_weight`)."""
    reward_bins: int = 255
    """Bins of the two-hot reward head (spaced evenly in symlog space over [-20, 20])."""
    decode_fraction: float = 0.5
    """Share of each batch's frames the decoder reconstructs. Decoding is the costliest part of a step and
    every state still gets the KL, reward and continue losses, so half the frames buy more steps."""


class Rssm(WorldModel):
    """DreamerV3's world model: conv encoder, RSSM with categorical (or Gaussian) z, decoder and heads."""

    family = "dreamer"
    Config = DreamerConfig
    # tiny keeps 32 categoricals (of 4 classes): with fewer, a fresh model's KL sits below the free bits
    # and the prior gets no gradient at all in the first steps.
    PRESETS = {
        "tiny": dict(
            channels=8, embed=32, deter=32, hidden=32, stoch=32, classes=4, reward_bins=41,
            decode_fraction=1.0, steps=30, batch_size=4, seq_len=8, episodes=6, lr=1e-3, grad_clip=1000.0,
        ),
        # small (the CPU default) uses Gaussian z: on pixel CartPole, 1 thread, it beat copy-last at k = 5
        # and 15 after 750 steps (fg-MSE 0.002 / 0.016 vs 0.025 / 0.045) where 32 x 32 categoricals still
        # lost at k = 15 (0.010 / 0.054). Categoricals (the paper's choice) need more steps than 10 CPU-minutes.
        "small": dict(
            stoch_kind="gaussian", steps=1000, batch_size=16, seq_len=16, lr=6e-4, grad_clip=1000.0
        ),
        "large": dict(
            channels=32, embed=1024, deter=1024, hidden=512, decode_fraction=1.0, steps=50000,
            batch_size=16, seq_len=64, lr=1e-4, grad_clip=1000.0,
        ),
    }  # fmt: skip
    latent_keys = ("deter", "stoch")  # [h, z]: what the heads read
    capabilities = Capabilities(
        decoder=True,
        probe_decoder=False,
        stochastic=True,
        planner="actor-critic",
        temperature="prior density ** (1/tau): categorical logits / tau, Gaussian std * sqrt(tau); "
        "tau=0 is deterministic (the prior's mode)",
    )

    def __init__(self, config: DreamerConfig, action_spec: ActionSpec, frame_size: int = 64) -> None:
        super().__init__(config, action_spec, frame_size)
        c = config
        if c.stoch_kind not in ("categorical", "gaussian"):
            raise ValueError(f"stoch_kind must be 'categorical' or 'gaussian', got {c.stoch_kind!r}")
        self.categorical = c.stoch_kind == "categorical"
        self.stoch_dim = c.stoch * c.classes if self.categorical else c.stoch  # size of flat z
        dist_dim = self.stoch_dim if self.categorical else 2 * c.stoch  # logits, or mean and raw std
        self.feat_dim = c.deter + self.stoch_dim
        self.encoder = ConvEncoder(c.channels, c.embed, frame_size)
        self.img_in = nn.Sequential(Linear(self.stoch_dim + action_spec.dim, c.hidden), nn.LayerNorm(c.hidden))
        self.gru = GRUCell(c.hidden, c.deter)
        self.prior_net = Mlp(c.deter, c.hidden, dist_dim)
        self.post_net = Mlp(c.deter + c.embed, c.hidden, dist_dim)
        self.decoder = ConvDecoder(self.feat_dim, c.channels, frame_size)
        self.reward_head = TwoHot(self.feat_dim, c.hidden, c.reward_bins)
        self.cont_head = Mlp(self.feat_dim, c.hidden, 1)

    # ---- the stochastic state ------------------------------------------------------------------
    def _dist(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output (N, dist_dim) -> categorical log-probs (N, stoch, classes) with unimix, or
        Gaussian (mean, std), each (N, stoch)."""
        c = self.config
        raw = raw.float()  # sampling and KL in fp32 also under bf16 autocast
        if self.categorical:
            probs = raw.view(-1, c.stoch, c.classes).softmax(-1)
            probs = (1 - c.unimix) * probs + c.unimix / c.classes
            return probs.log(), probs
        mean, std = raw.chunk(2, -1)
        return mean, 2 * torch.sigmoid(std / 2) + 0.1  # std bounded in (0.1, 2.1), as in DreamerV2

    def _sample(
        self,
        dist: tuple[torch.Tensor, torch.Tensor],
        temperature: float = 1.0,
        generator: Generators = None,
    ) -> torch.Tensor:
        """A flat z (N, stoch_dim) at `temperature`; gradients pass straight through categorical samples."""
        a, b = dist
        if not self.categorical:
            return a if temperature <= 0 else a + b * math.sqrt(temperature) * randn_like(a, generator)
        log_probs, probs = a, b
        if temperature <= 0:
            idx = log_probs.argmax(-1)
        else:
            idx = multinomial((log_probs / temperature).softmax(-1), generator, replacement=False)
        one_hot = F.one_hot(idx, self.config.classes).float()
        return (one_hot + probs - probs.detach()).flatten(1)  # straight-through (paper, section 2)

    def _kl(self, p: tuple[torch.Tensor, torch.Tensor], q: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """KL[p || q] summed over z, (N,)."""
        if self.categorical:
            return (p[1] * (p[0] - q[0])).sum((-2, -1))
        (m1, s1), (m2, s2) = p, q
        return (torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5).sum(-1)

    # ---- RSSM steps ----------------------------------------------------------------------------
    def _recurrent(self, state: State, action: torch.Tensor) -> torch.Tensor:
        """h_t = GRU(h_{t-1}, [z_{t-1}, a_t]) -> (B, deter)."""
        x = F.silu(self.img_in(torch.cat([state["stoch"], action.to(state["stoch"].dtype)], -1)))
        return self.gru(x, state["deter"])

    def feat(self, state: State) -> torch.Tensor:
        """[h, z], (B, deter + stoch_dim): what the heads (and an actor or critic) read."""
        return torch.cat([state["deter"], state["stoch"]], -1)

    def initial(self, batch_size: int) -> State:
        """Zero h and zero z (the state every episode starts from)."""
        dev = self.frame_mean.device
        return {
            "deter": torch.zeros(batch_size, self.config.deter, device=dev),
            "stoch": torch.zeros(batch_size, self.stoch_dim, device=dev),
        }

    def observe(self, state: State, frame: torch.Tensor, prev_action: torch.Tensor) -> State:
        """Advance h with (z, prev_action), then take the posterior's mode given the real frame."""
        deter = self._recurrent(state, prev_action.to(self.frame_mean.device))
        embed = self.encoder(self.to_pixels(frame))
        dist = self._dist(self.post_net(torch.cat([deter, embed], -1)))
        return {"deter": deter, "stoch": self._sample(dist, 0.0).detach()}

    def imagine(
        self, state: State, action: torch.Tensor, temperature: float = 1.0, generator: Generators = None
    ) -> State:
        """Advance h with (z, action) and sample z from the prior at `temperature` (see module doc)."""
        deter = self._recurrent(state, action.to(self.frame_mean.device))
        return {"deter": deter, "stoch": self._sample(self._dist(self.prior_net(deter)), temperature, generator)}

    def decode(self, state: State) -> torch.Tensor:
        """Decoder on [h, z] plus the mean frame -> (B, H, W, 3) in [0, 1]."""
        return (self.decoder(self.feat(state)) + self.frame_mean).clamp(0, 1).movedim(-3, -1)

    def reward(self, state: State) -> torch.Tensor:
        """Two-hot reward head on [h, z], (B,)."""
        return self.reward_head(self.feat(state))

    def done(self, state: State) -> torch.Tensor:
        """1 - the continue head's probability, (B,)."""
        return torch.sigmoid(-self.cont_head(self.feat(state)).squeeze(-1).float())

    # ---- training ------------------------------------------------------------------------------
    def observe_sequence(
        self, obs: torch.Tensor, act: torch.Tensor, is_first: torch.Tensor, sample: bool = True
    ) -> tuple[State, tuple[torch.Tensor, torch.Tensor]]:
        """Filter whole sequences: obs (B, T, 3, H, W) pixels, act (B, T, A), is_first (B, T) ->
        (posterior states with (B, T, ...) tensors, posterior distribution over B*T)."""
        B, T = obs.shape[:2]
        embed = self.encoder(obs.flatten(0, 1)).view(B, T, -1)  # (B, T, E): one conv pass for all frames
        state = self.initial(B)
        deters, stochs, raws = [], [], []
        for t in range(T):
            keep = (~is_first[:, t]).to(embed.dtype).unsqueeze(-1)  # is_first resets to the initial state
            state = {k: v * keep for k, v in state.items()}
            deter = self._recurrent(state, act[:, t])
            raw = self.post_net(torch.cat([deter, embed[:, t]], -1))
            stoch = self._sample(self._dist(raw), 1.0 if sample else 0.0)
            state = {"deter": deter, "stoch": stoch}
            deters.append(deter)
            stochs.append(stoch)
            raws.append(raw)
        states = {"deter": torch.stack(deters, 1), "stoch": torch.stack(stochs, 1)}  # (B, T, ...)
        return states, self._dist(torch.stack(raws, 1).flatten(0, 1))

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """DreamerV3 world-model loss: pixels + reward + continue + balanced KL with free bits."""
        c = self.config
        obs = self.to_pixels(batch["obs"])  # (B, T, 3, H, W)
        dev = obs.device
        act, first = batch["act"].to(dev).float(), batch["is_first"].to(dev)
        B, T = obs.shape[:2]
        states, post = self.observe_sequence(obs, act, first)
        feat = self.feat({k: v.flatten(0, 1) for k, v in states.items()})  # (B*T, F)
        prior = self._dist(self.prior_net(feat[:, : c.deter]))  # the prior needs only h: one batched call

        # KL balancing with free bits (paper, "World Model Learning"), per state then averaged.
        kl_dyn = self._kl(tuple(x.detach() for x in post), prior)  # (B*T,) trains the prior
        kl_rep = self._kl(post, tuple(x.detach() for x in prior))  # (B*T,) trains the posterior
        kl_loss = (
            c.dyn_scale * kl_dyn.clamp(min=c.free_bits).mean() + c.rep_scale * kl_rep.clamp(min=c.free_bits).mean()
        )

        # Pixels: on a random share of frames, summed over pixels (Gaussian log-likelihood), foreground-weighted.
        x = obs.flatten(0, 1)
        n_dec = max(1, round(c.decode_fraction * B * T))
        pick = torch.randperm(B * T, device=dev)[:n_dec] if n_dec < B * T else torch.arange(B * T, device=dev)
        xd = x[pick]
        recon = self.decoder(feat[pick]).float() + self.frame_mean  # (N, 3, H, W)
        fg = self.foreground(xd)
        rec_loss = weighted_pixel_loss(recon, xd, fg, c.fg_weight, c.moving_share)

        # Reward on arrival (not at is_first, where the sampler zeroes it and the state was just reset);
        # continue flag everywhere.
        valid = (~first).flatten().float()
        rew = batch["rew"].to(dev).float().flatten()
        rew_loss = (self.reward_head.loss(feat, rew) * valid).sum() / valid.sum().clamp(min=1.0)
        cont = 1.0 - batch["is_terminal"].to(dev).float().flatten()
        cont_loss = F.binary_cross_entropy_with_logits(self.cont_head(feat).squeeze(-1).float(), cont)

        loss = rec_loss + rew_loss + cont_loss + kl_loss
        with torch.no_grad():
            shown = recon.clamp(0, 1)
            sq = ((shown - xd) ** 2).mean(1, keepdim=True)
            entropy = -(post[1] * post[0]).sum((-2, -1)).mean() if self.categorical else post[1].log().sum(-1).mean()
            metrics = {
                "loss": loss.item(),
                "recon_mse": sq.mean().item(),
                "recon_fg_mse": ((sq * fg).sum() / fg.sum().clamp(min=1)).item(),
                "kl": kl_dyn.mean().item(),
                "reward_loss": rew_loss.item(),
                "cont_loss": cont_loss.item(),
                "post_entropy": entropy.item(),
            }
        return loss, metrics

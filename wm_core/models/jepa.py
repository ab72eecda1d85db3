"""Family `jepa`: an action-conditioned Joint-Embedding Predictive Architecture.

After LeCun 2022 ("A Path Towards Autonomous Machine Intelligence"), I-JEPA (Assran et al. 2023) and
V-JEPA 2-AC (Assran et al. 2025): the model never predicts pixels. A context encoder embeds each frame; a
target encoder, an exponential moving average of the context encoder that receives no gradient, embeds
the frames to be predicted; an action-conditioned predictor rolls embeddings forward,
    z_{t+1} = z_t + P(z_{t-1}, z_t, a_{t+1}),
reading the last two embeddings because one CartPole frame shows positions but not velocities (V-JEPA 2-AC's
predictor attends over the whole history; two steps is the smallest history with motion in it).

Loss: L1 between the predicted and the target encoder's embeddings over a K-step rollout from every
position of a window (V-JEPA 2-AC uses L1 with teacher-forced and rolled-out terms; step 1 here is the
teacher-forced one), plus VICReg's variance and covariance terms (Bardes et al. 2022) on the context
embeddings: V-JEPA 2-AC trains its predictor on a frozen, pretrained encoder, but here the encoder learns
from the prediction loss too, and a constant encoder would make every prediction exact. Collapse is
logged: the embeddings' mean per-unit std and their effective rank (Roy & Vetterli 2007).

Two choices of this project, both in the presets and both measured with a linear probe of pole angle on
200 held-out CartPole episodes after the small preset's 1,500 steps (seeds 0-6):
- The reward and termination heads train the representation (`head_grad` 1): their gradient reaches the
  encoder and predictor, as the reward and value heads shape TD-MPC's latent (Hansen et al. 2022, whose
  consistency loss against an EMA target encoder is this predictor's loss). In random-policy CartPole the
  termination head is the one that asks for the pole's angle: episodes end when the pole leans past 12
  degrees. R^2 0.969, 0.963, 0.932, 0.950, 0.918, 0.948, 0.922 (mean 0.943), against 0.945, 0.949, 0.888,
  0.910, 0.962, 0.879, 0.876 (0.916) with detached heads, pure JEPA, and 0.943, 0.937, 0.817, 0.951, 0.958,
  0.915, 0.965 (0.927) for the same seeds untrained: better than detached heads on six seeds of seven, but
  the seed still moves the result as much as the objective does. The cost is in the dream: against the
  detached-heads model of seed 0, the probe view's foreground MSE five steps ahead rose from 0.0113 to
  0.0130 and the latent cosine fifteen steps ahead fell from 0.731 to 0.628.
- The context encoder's conv layers learn at a tenth of the rate of everything else (`encoder_lr_scale`):
  with every layer at the full rate, seeds 0-3 read 0.882, 0.911, 0.872, 0.881 with detached heads, and
  seeds 2 and 6 0.900 and 0.924 with the heads' gradient.

Additions (not part of JEPA): the reward and termination heads, and a probe decoder that reads *detached*
embeddings, so it draws what the latent knows for the Dream and the Play tab without shaping it. The
predictor is deterministic: `imagine` ignores the temperature.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..protocol import Batch, Capabilities, State, TrainConfig, WorldModel
from ..spec import ActionSpec
from .nn import (
    ConvEncoder,
    Mlp,
    ProbeConfig,
    ProbeDecoder,
    masked_mean,
    previous_in_episode,
    scale_gradient,
    shift,
    unroll_mask,
    vicreg_terms,
)


@torch.no_grad()
def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of centred embeddings (N, D): 1 when collapsed to a
    line, D when every direction is used equally (Roy & Vetterli 2007)."""
    sv = torch.linalg.svdvals((z - z.mean(0)).float())
    p = sv / sv.sum().clamp(min=1e-12)
    return float(torch.exp(-(p * (p + 1e-12).log()).sum()))


@dataclass
class JepaConfig(ProbeConfig, TrainConfig):
    """JEPA encoder and predictor sizes, rollout length, EMA rate and loss weights."""

    channels: int = 16
    """Width of the first conv layer of the encoders (doubles per layer)."""
    embed_dim: int = 64
    """Size of a frame's embedding z."""
    pred_hidden: int = 256
    """Width of the predictor MLP."""
    pred_layers: int = 3
    """Layers of the predictor MLP."""
    rollout: int = 4
    """K: predictor steps rolled out from every position of a window."""
    ema: float = 0.99
    """Target encoder update: target <- ema * target + (1 - ema) * context, after every optimizer step."""
    var_weight: float = 1.0
    """Weight of VICReg's variance hinge (keeps every embedding unit's std near 1)."""
    cov_weight: float = 0.04
    """Weight of VICReg's covariance penalty (decorrelates units; VICReg's 1:25 ratio to the variance)."""
    encoder_lr_scale: float = 1.0
    """The context encoder's conv layers learn at this share of `lr` (its linear head at the full rate)."""
    head_hidden: int = 64
    """Width of the reward and termination heads (additions to JEPA)."""
    reward_weight: float = 1.0
    """Weight of the reward head's regression."""
    done_weight: float = 1.0
    """Weight of the termination head's cross-entropy."""
    head_grad: float = 0.0
    """Share of the reward and termination heads' gradient that reaches the encoder and predictor (0: the
    heads read detached embeddings and the representation is pure JEPA)."""


class Jepa(WorldModel):
    """Context encoder, EMA target encoder and action-conditioned predictor, plus heads and a probe."""

    family = "jepa"
    Config = JepaConfig
    PRESETS = {
        "tiny": dict(channels=8, embed_dim=16, pred_hidden=32, rollout=3, head_hidden=16, probe_channels=8,
                     encoder_lr_scale=0.1, head_grad=1.0, steps=30, batch_size=4, seq_len=8, episodes=6),
        "small": dict(encoder_lr_scale=0.1, head_grad=1.0, steps=1500, batch_size=16, seq_len=24),
        "large": dict(channels=32, embed_dim=256, pred_hidden=1024, head_hidden=256, probe_channels=32,
                      ema=0.996, head_grad=1.0, steps=20000, batch_size=32, seq_len=32),
    }  # fmt: skip
    latent_keys = ("z", "z_prev")  # the embedding and the one before it (motion lives in the pair)
    capabilities = Capabilities(
        decoder=False,
        probe_decoder=True,
        stochastic=False,
        planner="cem",
        temperature="none: the predictor is deterministic, so the temperature is ignored",
    )

    def __init__(self, config: JepaConfig, action_spec: ActionSpec, frame_size: int = 64) -> None:
        super().__init__(config, action_spec, frame_size)
        c, D = config, config.embed_dim
        self.encoder = ConvEncoder(c.channels, D, frame_size)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = Mlp(2 * D + action_spec.dim, c.pred_hidden, D, layers=c.pred_layers)
        self.reward_head = Mlp(2 * D, c.head_hidden, 1)
        self.done_head = Mlp(2 * D, c.head_hidden, 1)
        self.probe = ProbeDecoder(D, c.probe_channels, frame_size)

    def predict(self, z_prev: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The predictor: embeddings (..., D) at t-1 and t and action (..., A) -> embedding at t+1."""
        return z + self.predictor(torch.cat([z_prev, z, action], dim=-1))

    @torch.no_grad()
    def goal_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """Target-encoder embeddings (B, D) of goal frames (B, H, W, 3) uint8: what predictions aim at."""
        return self.target_encoder(self.to_pixels(frames))

    def embedding(self, state: State) -> torch.Tensor:
        """The current embedding z (B, D) of a protocol state: what planners compare with a goal."""
        return state["z"]

    @torch.no_grad()
    def after_step(self) -> None:
        """Move the target encoder toward the context encoder (the stop-gradient EMA target)."""
        ema = self.config.ema
        for target, online in zip(self.target_encoder.parameters(), self.encoder.parameters()):
            target.mul_(ema).add_(online.detach(), alpha=1 - ema)

    def param_groups(self) -> list[dict]:
        """The context encoder's conv layers at `encoder_lr_scale` of the learning rate, the rest at 1."""
        if self.config.encoder_lr_scale == 1.0:  # one group, as in checkpoints saved before this option
            return super().param_groups()
        convs = list(self.encoder.convs.parameters())
        slow = {id(p) for p in convs}
        rest = [p for p in self.parameters() if id(p) not in slow]
        return [{"params": rest}, {"params": convs, "lr_scale": self.config.encoder_lr_scale}]

    # ---- protocol --------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """Zero embeddings; `seen` = 0 says no frame has been observed yet."""
        dev, D = self.frame_mean.device, self.config.embed_dim
        zeros = lambda n: torch.zeros(batch_size, n, device=dev)  # noqa: E731
        return {"z": zeros(D), "z_prev": zeros(D), "seen": zeros(1)}

    def observe(self, state: State, frame: torch.Tensor, prev_action: torch.Tensor) -> State:
        """Context-encode the frame; the previous embedding is kept for the predictor's two-step input."""
        z = self.encoder(self.to_pixels(frame))  # (B, D)
        z_prev = torch.where(state["seen"] > 0, state["z"], z)  # first frame: no motion known
        return {"z": z, "z_prev": z_prev, "seen": torch.ones_like(state["seen"])}

    def imagine(
        self, state: State, action: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> State:
        """One predictor step; deterministic, `temperature` has no effect."""
        z = self.predict(state["z_prev"], state["z"], action.to(self.frame_mean.device))
        return {"z": z, "z_prev": state["z"], "seen": state["seen"]}

    def decode(self, state: State) -> torch.Tensor:
        """The probe decoder's view of z, (B, H, W, 3) in [0, 1]: what the latent knows, not a prediction."""
        return self.probe(state["z"], self.frame_mean).clamp(0, 1).movedim(-3, -1)

    def _pair(self, state: State) -> torch.Tensor:
        return torch.cat([state["z_prev"], state["z"]], dim=-1)

    def reward(self, state: State) -> torch.Tensor:
        """Reward head on (z_prev, z) (an addition to JEPA)."""
        return self.reward_head(self._pair(state))[:, 0]

    def done(self, state: State) -> torch.Tensor:
        """Termination head on (z_prev, z) (an addition to JEPA), as a probability."""
        return torch.sigmoid(self.done_head(self._pair(state))[:, 0])

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """K-step L1 prediction loss against the target encoder, VICReg terms, heads and probe."""
        c = self.config
        obs = self.to_pixels(batch["obs"])  # (B, T, 3, H, W)
        B, T = obs.shape[:2]
        dev = obs.device
        act = batch["act"].to(dev).float()  # (B, T, A)
        rew = batch["rew"].to(dev).float()
        first, term = batch["is_first"].to(dev), batch["is_terminal"].to(dev)

        frames = obs.flatten(0, 1)
        z = self.encoder(frames).view(B, T, -1)  # (B, T, D)
        with torch.no_grad():
            target = self.target_encoder(frames).view(B, T, -1)  # stop-gradient targets
        inside = unroll_mask(first, c.rollout)  # (B, T, K + 1)

        # Roll the predictor forward from every t; step k predicts the target embedding of frame t + k.
        prev, cur = previous_in_episode(z, first), z
        pairs = [torch.cat([prev, cur], dim=-1)]  # (B, T, 2D) per step, for heads and probe
        pred_loss = torch.zeros((), device=dev)
        for k in range(1, c.rollout + 1):
            prev, cur = cur, self.predict(prev, cur, shift(act, k))
            err = (cur - shift(target, k)).abs().mean(-1)  # (B, T), L1
            pred_loss = pred_loss + masked_mean(err, inside[..., k]) / c.rollout
            pairs.append(torch.cat([prev, cur], dim=-1))

        flat = z.flatten(0, 1)  # (B * T, D)
        # On z itself, not on an expander as in VICReg: with an expander the L1 loss shrank z's scale
        # (per-unit std 0.03 after 200 steps), an easy way to make predictions "accurate".
        variance, covariance = vicreg_terms(flat)

        # Heads (their gradient scaled by `head_grad`) and probe (detached) on the real (k = 0) and the
        # predicted (k >= 1) embeddings alike.
        live = torch.stack(pairs, dim=2)  # (B, T, K + 1, 2D)
        pair, head_in = live.detach(), scale_gradient(live, c.head_grad)
        ks = range(c.rollout + 1)
        rew_t = torch.stack([shift(rew, k) for k in ks], dim=-1)  # (B, T, K + 1)
        term_t = torch.stack([shift(term, k) for k in ks], dim=-1).float()
        has_rew = inside.clone()
        has_rew[..., 0] &= ~first  # an episode's first frame has no transition into it
        rew_loss = masked_mean((self.reward_head(head_in)[..., 0] - rew_t).pow(2), has_rew)
        bce = F.binary_cross_entropy_with_logits(self.done_head(head_in)[..., 0], term_t, reduction="none")
        done_loss = masked_mean(bce, inside)

        n_probe = max(1, min(round(c.probe_fraction * B * T), int(inside.sum())))
        pick = torch.multinomial(inside.flatten().float(), n_probe, replacement=False)
        K1 = c.rollout + 1
        b, t, k = pick // (T * K1), (pick // K1) % T, pick % K1
        pixels = obs[b, t + k]  # (N, 3, H, W): the real frame the (predicted) embedding stands for
        probe_loss, probe_metrics = self.probe.loss(
            pair[b, t, k, c.embed_dim :], pixels, self.frame_mean, self.foreground(pixels), c.fg_weight
        )

        loss = (
            pred_loss
            + c.var_weight * variance
            + c.cov_weight * covariance
            + c.reward_weight * rew_loss
            + c.done_weight * done_loss
            + probe_loss
        )
        with torch.no_grad():
            flat_target = target.flatten(0, 1)
            metrics = {
                "loss": loss.item(),
                "pred_l1": pred_loss.item(),
                "vicreg_var": variance.item(),
                "vicreg_cov": covariance.item(),
                "embed_std": flat.std(0).mean().item(),
                "effective_rank": effective_rank(flat),
                "target_std": flat_target.std(0).mean().item(),
                "target_effective_rank": effective_rank(flat_target),
                "reward_mse": rew_loss.item(),
                "done_bce": done_loss.item(),
                "probe_loss": probe_loss.item(),
                **probe_metrics,
            }
        return loss, metrics

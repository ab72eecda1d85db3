"""Family `diffusion`: a pixel-space world model in the manner of DIAMOND (Alonso et al. 2024, "Diffusion for
World Modeling: Visual Details Matter in Atari").

There is no latent bottleneck: the state is the last `context` frames and the actions that led to them, and a
dream step *draws the next frame* with a small U-Net denoiser conditioned on those frames and the new action.
Small objects (a Pong ball, a Breakout brick, the car on the road) stay sharp because nothing has to squeeze
them through a 32-number code.

Denoiser (EDM, Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"): with
frames x in [-1, 1], noise level sigma and sigma_data = 0.5,

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), context, actions)
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),  c_in = 1 / sqrt(sigma^2 + sd^2),
    c_noise = log(sigma) / 4,

trained on ||F - (x0 - c_skip x) / c_out||^2 with log sigma ~ N(sigma_loc, sigma_scale^2), which is the
paper's weighted denoising loss. Sampling is Euler on the probability-flow ODE over the Karras schedule from
sigma_max = 5 down to sigma_min (rho = 7), as DIAMOND does with 3 steps: a few steps already give sharp
frames because the context pins down most of the next frame.

Knobs at play time: `steps` (1-6, the quality/speed trade: one step is the denoiser's best single guess, a
blur where the future is uncertain; more steps commit to one sharp future) and the temperature tau, which
scales the starting noise (tau = 0: a deterministic dream; tau = 1: the trained sampler; tau > 1: wilder).

The U-Net works on 2x2 pixel blocks (pixel-unshuffle): a lossless rearrangement that quarters the spatial
cost, so a 64x64 dream step runs in a few milliseconds on a CPU core. Reward and episode-end heads read the
context frames and the new frame (a small conv net) and train on symlog rewards, so a +-100 crash reward
cannot drown the frame loss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import Batch, Capabilities, State, TrainConfig, WorldModel
from ..spec import ActionSpec
from .nn import ConvEncoder, Generators, Mlp, pixel_weights, previous_in_episode, randn_like, symexp, symlog
from .steady import Linear
from .unet import FourierFeatures, UNet, karras_sigmas


@dataclass
class DiffusionConfig(TrainConfig):
    """U-Net denoiser sizes, the EDM noise distribution and the sampler."""

    context: int = 4
    """Real or dreamed frames the denoiser conditions on (and the actions that led to them)."""
    channels: int = 32
    """Width of the U-Net at 32x32 (2x2 pixel blocks); the two coarser levels use twice as many."""
    cond_dim: int = 128
    """Size of the embedding of noise level and actions that modulates every U-Net block."""
    head_channels: int = 8
    """Width of the reward / episode-end heads' conv encoder."""
    sigma_data: float = 0.5
    """Standard deviation of frames in [-1, 1] that the EDM preconditioning assumes."""
    sigma_loc: float = -0.4
    """Mean of log sigma during training (DIAMOND: -0.4)."""
    sigma_scale: float = 1.2
    """Standard deviation of log sigma during training (DIAMOND: 1.2)."""
    sigma_min: float = 0.002
    """Smallest noise level of the sampler's schedule."""
    sigma_max: float = 5.0
    """Noise level a dream step starts from."""
    rho: float = 7.0
    """Curvature of the Karras noise schedule."""
    steps_default: int = 2
    """Sampling steps of a dream step unless the player picks another number (1 is fastest)."""
    residual: bool = False
    """Diffuse the change from the last context frame instead of the frame itself. Off by default: on Pong
    (1,500 steps) the changes' small errors integrated into trails and speckle over a 30-step dream (PSNR at
    k = 30 12-19 dB against 27.8 for whole frames)."""
    action_planes: bool = False
    """Also give the U-Net the actions as constant input planes, one set per context step, besides the
    conditioning vector. A global conditioning vector alone left Breakout's paddle deaf to the keys: the
    action's effect is a few pixels at one place, and every pixel of the first layer sees the planes."""
    offset_noise: float = 0.3
    """Std of a per-channel constant added to the training noise (DIAMOND's offset noise): it teaches the
    denoiser to correct whole-frame shifts of brightness, which plain pixel noise hardly shows it."""
    context_noise: float = 0.3
    """Largest std of Gaussian noise added to the context frames in training (level drawn per sample and told
    to the net), so the denoiser learns to read imperfect, dreamed context: compounding error grows slower."""
    ema: float = 0.999
    """Decay of the exponential moving average of the denoiser's weights that dreams sample with (EDM keeps one
    too): the averaged weights draw cleaner frames than the last step's. 0 samples with the trained weights."""
    fg_weight: float = 4.0
    """Extra loss weight on pixels that differ from the previous frame or the dataset mean frame (the moving
    objects): most of a frame repeats the one before, and a plain loss spends its capacity there."""
    moving_share: float = 0.0
    """When > 0, the share of each frame's loss that its moving pixels carry (instead of `fg_weight`): 0.5 gives
    a 2-pixel ball as much say as the whole background."""
    reward_weight: float = 1.0
    """Weight of the symlog reward regression."""
    done_weight: float = 1.0
    """Weight of the episode-end classification."""


class PixelDiffusion(WorldModel):
    """A U-Net denoiser that draws the next frame from the last frames and actions (DIAMOND-style), plus heads."""

    family = "diffusion"
    Config = DiffusionConfig
    PRESETS = {
        "tiny": dict(channels=8, cond_dim=16, head_channels=4, steps=30, batch_size=4, seq_len=7, lr=1e-3,
                     action_planes=True),
        # small: 4,000 steps with --bf16 are about 17 CPU-minutes on one core (0.25 s a step, 48 targets).
        "small": dict(channels=32, cond_dim=128, steps=4000, batch_size=12, seq_len=8, lr=5e-4, lr_decay=0.1,
                      grad_clip=10.0, action_planes=True),
        "large": dict(channels=64, cond_dim=256, head_channels=16, steps=30000, batch_size=32, seq_len=8, lr=2e-4,
                      grad_clip=10.0, action_planes=True),
    }  # fmt: skip
    latent_keys = ("frames",)
    capabilities = Capabilities(
        decoder=True,
        probe_decoder=False,
        stochastic=True,
        latent=False,  # the state is frames: no learned latent to probe or explore
        sampling_steps=(1, 6),
        # A step is its U-Net's convolutions: four players batched took 36 ms, four alone 35 (one thread). And
        # its convolutions and group norms add up in another order for other batch sizes, so each player steps
        # alone and sees exactly the frames of an unbatched dream.
        batched_play=False,
        temperature="scales the starting noise of each frame's denoising (0 = deterministic dream); "
        "sampling steps trade speed for sharpness",
    )

    def __init__(self, config: DiffusionConfig, action_spec: ActionSpec, frame_size: int = 64) -> None:
        super().__init__(config, action_spec, frame_size)
        c = config
        if frame_size % 8:
            raise ValueError(f"the diffusion family needs a frame size divisible by 8, got {frame_size}")
        if c.context < 3:
            raise ValueError(f"context must be at least 3 frames (the heads read the last two), got {c.context}")
        A = action_spec.dim
        self.noise_embed = FourierFeatures(c.cond_dim)
        # The conditioning: noise level, context-noise level and the C actions that led to the context's
        # frames after the first plus the new one.
        self.cond = nn.Sequential(
            Linear(2 * c.cond_dim + c.context * A, c.cond_dim), nn.SiLU(), Linear(c.cond_dim, c.cond_dim)
        )
        self.unet = UNet(3 * (c.context + 1) + (c.context * A if c.action_planes else 0), c.channels, c.cond_dim)
        # The averaged denoiser (conditioning MLP and U-Net) that eval-mode dreams use; see `after_step`.
        self.ema_cond, self.ema_unet = copy.deepcopy(self.cond), copy.deepcopy(self.unet)
        for p in [*self.ema_cond.parameters(), *self.ema_unet.parameters()]:
            p.requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros(()))
        # Heads: the last two context frames and the new frame, and the action that led to it.
        self.head_encoder = ConvEncoder(c.head_channels, 64, frame_size, in_channels=9)
        self.reward_head = Mlp(64 + A, 64, 1)
        self.done_head = Mlp(64 + A, 64, 1)

    # ---- the denoiser --------------------------------------------------------------------------
    def denoise(
        self, noisy: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, actions: torch.Tensor,
        context_sigma: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """EDM's D: noisy next frames (N, 3, H, W) in [-1, 1] scale, sigma (N,), context (N, C, 3, H, W) in
        [-1, 1], actions (N, C, A) -> denoised frames (N, 3, H, W)."""
        c = self.config
        sd = c.sigma_data
        s = sigma[:, None, None, None]
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        ctx_sigma = torch.zeros_like(sigma) if context_sigma is None else context_sigma
        emb = torch.cat(
            [self.noise_embed(sigma.log() / 4), self.noise_embed(ctx_sigma * 10), actions.flatten(1)], dim=-1
        )
        x = torch.cat([c_in * noisy, context.flatten(1, 2)], dim=1)
        if c.action_planes:
            planes = actions.flatten(1)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, planes.to(x.dtype)], dim=1)
        averaged = not self.training and c.ema > 0
        cond, unet = (self.ema_cond, self.ema_unet) if averaged else (self.cond, self.unet)
        return c_skip * noisy + c_out * unet(x, cond(emb))

    @torch.no_grad()
    def after_step(self) -> None:
        """Move the averaged denoiser toward the trained one, with a shorter memory early on
        (decay (1 + n) / (10 + n) until it reaches `ema`), so a short run's average is not its initialisation."""
        n = float(self.ema_updates)
        decay = min(self.config.ema, (1 + n) / (10 + n))
        for avg, live in zip(
            [*self.ema_cond.parameters(), *self.ema_unet.parameters()],
            [*self.cond.parameters(), *self.unet.parameters()],
        ):
            avg.lerp_(live.detach(), 1 - decay)
        self.ema_updates += 1

    def sample(
        self, context: torch.Tensor, actions: torch.Tensor, steps: int, temperature: float = 1.0,
        generator: Generators = None,
    ) -> torch.Tensor:  # fmt: skip
        """Draw the next frame (N, 3, H, W) in [-1, 1] with `steps` Euler steps from tau * sigma_max noise."""
        c = self.config
        sigmas = karras_sigmas(max(1, int(steps)), c.sigma_min, c.sigma_max, c.rho)
        N, _, _, H, W = context.shape
        noise = randn_like(context[:, -1], generator)  # (N, 3, H, W), a stream per row when given one per row
        x = noise * (c.sigma_max * max(temperature, 0.0))
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            sigma = torch.full((N,), s, device=context.device)
            denoised = self.denoise(x, sigma, context, actions)
            x = denoised if s_next == 0 else x + (s_next - s) * (x - denoised) / s
        return (x + context[:, -1] if c.residual else x).clamp(-1, 1)

    # ---- heads ---------------------------------------------------------------------------------
    def _heads(self, frames: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, 3 frames, 3, H, W) in [0, 1] (two before and the new one), action (N, A) ->
        reward (N,) in env units and the episode-end logit (N,)."""
        h = torch.cat([self.head_encoder(frames.flatten(1, 2)), action], dim=-1)
        return symexp(self.reward_head(h).squeeze(-1)), self.done_head(h).squeeze(-1)

    # ---- protocol --------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """Empty frame and action stacks; `filled` 0 says the next observed frame fills the whole stack."""
        c, S, dev = self.config, self.frame_size, self.frame_mean.device
        return {
            "frames": torch.zeros(batch_size, c.context, 3, S, S, device=dev),
            "acts": torch.zeros(batch_size, c.context, self.action_spec.dim, device=dev),
            "filled": torch.zeros(batch_size, 1, device=dev),
            "reward": torch.zeros(batch_size, 1, device=dev),
            "done_logit": torch.full((batch_size, 1), -10.0, device=dev),
        }

    def _push(self, state: State, frame: torch.Tensor, action: torch.Tensor) -> State:
        """The stacks with `frame` (B, 3, H, W) in [0, 1] and the action that led to it appended; an empty
        stack is filled with copies of the frame (as training pads the frames before an episode's start)."""
        empty = (state["filled"] < 0.5)[:, :, None, None, None]
        frames = torch.cat([state["frames"][:, 1:], frame[:, None]], dim=1)
        frames = torch.where(empty, frame[:, None].expand_as(frames), frames)
        acts = torch.cat([state["acts"][:, 1:], action[:, None]], dim=1)
        acts = torch.where(empty[:, :, :, 0, 0], torch.zeros_like(acts), acts)  # nothing led to a first frame
        return {**state, "frames": frames, "acts": acts, "filled": torch.ones_like(state["filled"])}

    def _with_heads(self, state: State, action: torch.Tensor) -> State:
        reward, done_logit = self._heads(state["frames"][:, -3:], action)
        return {**state, "reward": reward[:, None], "done_logit": done_logit[:, None]}

    def observe(self, state: State, frame: torch.Tensor, prev_action: torch.Tensor) -> State:
        """Push a real frame (B, H, W, 3) uint8 and the action that led to it onto the stacks."""
        action = prev_action.to(self.frame_mean.device).float()
        return self._with_heads(self._push(state, self.to_pixels(frame), action), action)

    def imagine(
        self, state: State, action: torch.Tensor, temperature: float = 1.0, generator: Generators = None,
        steps: int | None = None,
    ) -> State:  # fmt: skip
        """Draw the next frame given the stacks and `action` (B, A), with `steps` sampling steps (default
        `steps_default`) at `temperature`, and push it."""
        action = action.to(self.frame_mean.device).float()
        context = state["frames"] * 2 - 1
        actions = torch.cat([state["acts"][:, 1:], action[:, None]], dim=1)
        frame = (self.sample(context, actions, steps or self.config.steps_default, temperature, generator) + 1) / 2
        return self._with_heads(self._push(state, frame, action), action)

    def decode(self, state: State) -> torch.Tensor:
        """The newest frame of the stack, (B, H, W, 3) in [0, 1]."""
        return state["frames"][:, -1].clamp(0, 1).movedim(-3, -1)

    def reward(self, state: State) -> torch.Tensor:
        """The heads' reward for arriving at the newest frame, (B,)."""
        return state["reward"][:, 0]

    def done(self, state: State) -> torch.Tensor:
        """Probability that the newest frame is terminal, (B,)."""
        return torch.sigmoid(state["done_logit"][:, 0])

    def latent(self, state: State) -> torch.Tensor:
        """The newest frame, flat (B, 3 * H * W) in [0, 1]: a pixel model's state is its frames."""
        return state["frames"][:, -1].flatten(1)

    def set_latent(self, state: State, latent: torch.Tensor) -> State:
        """The state with its newest frame replaced by `latent` (B, 3 * H * W): the inverse of `latent`."""
        frames = state["frames"]
        if latent.shape[1] != frames[0, -1].numel():
            raise ValueError(f"latent has {latent.shape[1]} dims, the newest frame has {frames[0, -1].numel()}")
        new = frames.clone()
        new[:, -1] = latent.reshape(frames[:, -1].shape).to(frames.dtype)
        return {**state, "frames": new}

    # ---- training --------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """EDM denoising loss on every frame of the window whose context the window holds, plus heads."""
        c = self.config
        obs = self.to_pixels(batch["obs"])  # (B, T, 3, H, W) in [0, 1]
        dev = obs.device
        act, first = batch["act"].to(dev).float(), batch["is_first"].to(dev)
        B, T = first.shape
        # Context frame k (1 = the frame before the target) and the action that led to it, padded with the
        # episode's first frame and zero actions before the episode started.
        frames, acts = [obs], [act]
        for _ in range(c.context):
            frames.append(previous_in_episode(frames[-1], first))
            acts.append(previous_in_episode(acts[-1], first) * (~first).float()[..., None])
        # acts[k] at t is act[t - k] inside the episode and zero for the padding copies before its start.
        context = torch.stack(frames[c.context : 0 : -1], dim=2)  # (B, T, C, 3, H, W): oldest first
        cond_acts = torch.stack(acts[c.context - 1 :: -1], dim=2)  # (B, T, C, A): act[t-C+1] .. act[t]
        # A target is trained when its whole context lies inside the window: the window's first step is
        # marked as a start even mid-episode, so only steps >= C, or after a true start inside the window.
        pos = torch.arange(T, device=dev)[None].expand(B, T)
        inner_start = torch.cumsum((first & (pos > 0)).long(), dim=1) > 0
        valid = (~first) & ((pos >= c.context) | inner_start)  # (B, T)
        idx = valid.flatten().nonzero().squeeze(-1)
        if len(idx) == 0:  # a window too short for any target: train on what there is
            idx = (~first).flatten().nonzero().squeeze(-1)
        if len(idx) == 0:
            idx = torch.arange(B * T, device=dev)
        target = obs.flatten(0, 1)[idx]  # (N, 3, H, W)
        ctx = context.flatten(0, 1)[idx]
        cacts = cond_acts.flatten(0, 1)[idx]
        N = len(idx)

        # Denoising loss (EDM), on frames in [-1, 1] (or their change from the last context frame). Context
        # frames get a little noise of a known level.
        x0, ctx_x = target * 2 - 1, ctx * 2 - 1
        x0 = x0 - ctx_x[:, -1] if c.residual else x0
        ctx_sigma = torch.rand(N, device=dev) * c.context_noise
        ctx_x = ctx_x + torch.randn_like(ctx_x) * ctx_sigma[:, None, None, None, None]
        sigma = (torch.randn(N, device=dev) * c.sigma_scale + c.sigma_loc).exp()
        s = sigma[:, None, None, None]
        noise = torch.randn_like(x0) + c.offset_noise * torch.randn(N, 3, 1, 1, device=dev)
        noisy = x0 + noise * s
        denoised = self.denoise(noisy, sigma, ctx_x, cacts, ctx_sigma)
        sd = c.sigma_data
        weight = (s**2 + sd**2) / (s * sd) ** 2  # EDM's lambda(sigma): unit-variance training target for F
        prev = ctx[:, -1]
        moving = ((target - prev).abs().amax(1, keepdim=True) > 0.02) | (self.foreground(target) > 0)
        pix_w = pixel_weights(moving, c.fg_weight, c.moving_share)
        diff_loss = (weight * pix_w * (denoised.float() - x0) ** 2).mean()

        # Heads on real frames: the two context frames before the target and the target.
        reward, done_logit = self._heads(torch.cat([ctx[:, -2:], target[:, None]], dim=1), cacts[:, -1])
        rew = batch["rew"].to(dev).float().flatten()[idx]
        term = batch["is_terminal"].to(dev).float().flatten()[idx]
        rew_loss = (symlog(reward) - symlog(rew)).pow(2).mean()
        done_loss = F.binary_cross_entropy_with_logits(done_logit.float(), term)
        loss = diff_loss + c.reward_weight * rew_loss + c.done_weight * done_loss
        with torch.no_grad():
            err = (denoised.float() - x0).pow(2) / 4  # MSE in [0, 1] units
            metrics = {
                "loss": loss.item(),
                "denoise_loss": diff_loss.item(),
                "denoise_mse": err.mean().item(),
                "denoise_moving_mse": ((err.mean(1, keepdim=True) * moving).sum() / moving.sum().clamp(min=1)).item(),
                "reward_loss": rew_loss.item(),
                "done_bce": done_loss.item(),
                "targets": float(N),
            }
        return loss, metrics

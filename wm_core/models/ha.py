"""Family `ha`: World Models (Ha & Schmidhuber 2018), a VAE (V) plus an MDN-RNN (M).

V compresses each frame to z; M is an LSTM over (z, action) whose mixture-density head predicts the
next z, with reward and episode-end heads beside it. V and M train together from one loss, M on
*detached* z, which equals the paper's "train V, then M" without two phases.

Temperature (paper, section 4.4): at a dream step the mixture logits are divided by tau and each
Gaussian's standard deviation is multiplied by sqrt(tau). tau -> 0 picks the most likely component's
mean (deterministic); tau > 1 makes dreams wilder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..protocol import Batch, Capabilities, State, TrainConfig, WorldModel
from ..spec import ActionSpec
from .nn import ConvDecoder, ConvEncoder, Generators, Mlp, multinomial, randn_like, symexp, symlog, weighted_pixel_loss
from .steady import Linear, LSTMCell

LOG_2PI = math.log(2 * math.pi)
# A gate pre-activation that saturates its sigmoid to exactly 0 whatever M's weights add (see `_m_sequence`).
RESET_GATE = -1e6


@dataclass
class HaConfig(TrainConfig):
    """VAE + MDN-RNN sizes and loss weights."""

    channels: int = 32
    """Width of the first conv layer of V (doubles per layer)."""
    z_dim: int = 32
    """Size of V's latent z."""
    hidden: int = 256
    """LSTM hidden size of M."""
    mixtures: int = 5
    """Gaussian components per z dimension in M's mixture density head."""
    kl_weight: float = 1.0
    """Weight of V's KL term."""
    free_nats: float = 0.5
    """KL per z dimension below which V is not pushed (the paper's KL tolerance)."""
    fg_weight: float = 20.0
    """Extra reconstruction weight on pixels that differ from the dataset mean frame."""
    reward_weight: float = 1.0
    """Weight of M's reward regression."""
    reward_symlog: bool = False
    """Regress symlog(reward) (DreamerV3's squashing) instead of the raw reward, so an env with +-100 rewards
    (LunarLander) cannot drown the frame loss; the presets turn it on."""
    done_weight: float = 1.0
    """Weight of M's episode-end classification."""
    m_on_means: bool = True
    """Train M on V's posterior means rather than samples: with the KL tolerance V's posterior noise is
    large, and M's job is the dynamics, not that noise."""
    vae_fraction: float = 0.25
    """Share of each batch's frames that V trains on; M still sees z for every frame. V dominates the
    cost of a step, so a quarter of the frames lets M take four times as many steps in the same time."""


class VaeMdnRnn(WorldModel):
    """Ha & Schmidhuber's V (conv VAE) + M (LSTM with a mixture density head, reward and end heads)."""

    family = "ha"
    Config = HaConfig
    PRESETS = {
        "tiny": dict(
            channels=8,
            z_dim=8,
            hidden=32,
            mixtures=2,
            steps=30,
            batch_size=4,
            seq_len=8,
            episodes=6,
            reward_symlog=True,
        ),
        "small": dict(channels=16, z_dim=32, hidden=128, steps=900, batch_size=16, seq_len=32, reward_symlog=True),
        "large": dict(channels=32, z_dim=64, hidden=512, steps=20000, batch_size=32, seq_len=32, reward_symlog=True),
    }
    latent_keys = ("z",)  # z is the part of the state the decoder draws
    capabilities = Capabilities(
        decoder=True,
        probe_decoder=False,
        stochastic=True,
        temperature="mixture logits / tau, Gaussian std * sqrt(tau); tau=0 is deterministic",
    )

    def __init__(self, config: HaConfig, action_spec: ActionSpec, frame_size: int = 64) -> None:
        super().__init__(config, action_spec, frame_size)
        c = config
        self.encoder = ConvEncoder(c.channels, 2 * c.z_dim, frame_size)
        self.decoder = ConvDecoder(c.z_dim, c.channels, frame_size)
        self.rnn = LSTMCell(c.z_dim + action_spec.dim, c.hidden)
        self.mdn = Linear(c.hidden, 3 * c.mixtures * c.z_dim)  # logits, means, log-stds per z dim
        # Reward and end heads read M's hidden state *and* the frame's z: whether CartPole has ended is
        # visible in the frame (pole past 12 degrees), and from h alone the head learned "episodes end
        # about 20 steps in" and ended dreams early.
        self.reward_head = Mlp(c.hidden + c.z_dim, c.hidden, 1)
        self.done_head = Mlp(c.hidden + c.z_dim, c.hidden, 1)

    # ---- V ---------------------------------------------------------------------------------------
    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels (N, 3, H, W) -> mean and log-variance of q(z | x), each (N, z)."""
        mu, logvar = self.encoder(pixels).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 4.0)

    def _frame(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z) + self.frame_mean  # (N, 3, H, W), unclamped

    # ---- M ---------------------------------------------------------------------------------------
    def _mixture(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h (B, hidden) -> logits, means, log-stds, each (B, z, K)."""
        c = self.config
        out = self.mdn(h).view(-1, c.z_dim, 3, c.mixtures)
        return out[:, :, 0], out[:, :, 1], out[:, :, 2].clamp(-7.0, 3.0)

    def _step(self, state: State, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rnn(torch.cat([state["z"], action], dim=-1), (state["h"], state["c"]))

    def _m_stepwise(self, zs: torch.Tensor, act: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """What `_m_sequence` computes, one `LSTMCell` step per frame with the state zeroed where an episode starts:
        its reference (tests/test_ha_sequence.py) and the baseline of benchmarks/ha_m_step.py."""
        state, hs = self.initial(zs.shape[0]), []
        for t in range(zs.shape[1]):
            keep = (~first[:, t]).float().unsqueeze(-1)
            state = {k: v * keep for k, v in state.items()}
            h, c = self._step(state, act[:, t])
            state = {"h": h, "c": c, "z": zs[:, t]}
            hs.append(h)
        return torch.stack(hs, 1)

    def _m_sequence(self, zs: torch.Tensor, act: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """M's hidden states (B, T, hidden) over whole training sequences: the step `_step` takes, run by torch's
        fused LSTM kernel over all frames in one call instead of T Python steps.

        An episode start restarts h, c and z_{t-1} from zero (as `observe` from `initial` does), which the fused
        kernel cannot do mid-sequence. So a *reset step* goes in before each start inside a row: its input is a
        flag whose weight drives the input, forget and output gates' pre-activations to RESET_GATE, so those
        gates are exactly 0 and the step leaves c = f*c + i*g = 0 and h = o*tanh(c) = 0, with no gradient
        across it. A row grows by one step per start it holds; shorter rows are padded at their ends, which a
        causal LSTM never reads back. The LSTMCell's own weights are used (the flag's weight column is a
        constant), so checkpoints are unchanged. Cutting rows into zero-started segments instead doubles the
        rows of the batch when every window holds a start; docs/results/scale.md has both measured."""
        B, T, H = zs.shape[0], zs.shape[1], self.config.hidden
        starts = first.clone()
        starts[:, 0] = True  # every window begins from a zero state
        z_prev = torch.cat([zs.new_zeros(B, 1, zs.shape[-1]), zs[:, :-1]], 1) * (~starts).unsqueeze(-1)
        steps = torch.cat([z_prev, act, act.new_zeros(B, T, 1)], -1)  # (B, T, z + action + reset flag)
        inner = starts.clone()
        inner[:, 0] = False  # starts after the first column need a reset step
        pos = torch.arange(T, device=zs.device) + inner.long().cumsum(1)  # (B, T) where frame t lands in its row
        rows = torch.arange(B, device=zs.device).unsqueeze(1).expand(B, T)
        x = steps.new_zeros(B, int(pos[:, -1].max()) + 1, steps.shape[-1])
        r, t = inner.nonzero(as_tuple=True)
        x[r, pos[r, t] - 1, -1] = 1.0  # the reset steps: input zero but for the flag
        x = x.index_put((rows, pos), steps)
        gate = self.rnn.weight_ih.new_full((4 * H, 1), RESET_GATE)
        gate[2 * H : 3 * H] = 0.0  # torch's gate order is i, f, g, o: the cell input g needs no push
        weights = [torch.cat([self.rnn.weight_ih, gate], 1), self.rnn.weight_hh, self.rnn.bias_ih, self.rnn.bias_hh]
        zeros = x.new_zeros(1, B, H)
        out = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)[0]
        return out[rows, pos]

    # ---- protocol --------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """Zero LSTM state and zero z."""
        dev = self.frame_mean.device
        zeros = lambda n: torch.zeros(batch_size, n, device=dev)  # noqa: E731
        return {"h": zeros(self.config.hidden), "c": zeros(self.config.hidden), "z": zeros(self.config.z_dim)}

    def observe(self, state: State, frame: torch.Tensor, prev_action: torch.Tensor) -> State:
        """Advance M with (z_prev, prev_action), then take z from V's mean for the real frame."""
        h, c = self._step(state, prev_action.to(self.frame_mean.device))
        mu, _ = self.encode(self.to_pixels(frame))
        return {"h": h, "c": c, "z": mu}

    def imagine(
        self, state: State, action: torch.Tensor, temperature: float = 1.0, generator: Generators = None
    ) -> State:
        """Advance M with (z, action) and sample the next z from its mixture at `temperature`."""
        h, c = self._step(state, action.to(self.frame_mean.device))
        logits, means, log_std = self._mixture(h)
        if temperature <= 0:
            k = logits.argmax(-1, keepdim=True)
            z = means.gather(-1, k).squeeze(-1)
        else:
            probs = (logits / temperature).softmax(-1)
            k = multinomial(probs, generator).unsqueeze(-1)
            mean, std = means.gather(-1, k).squeeze(-1), log_std.gather(-1, k).squeeze(-1).exp()
            z = mean + std * math.sqrt(temperature) * randn_like(mean, generator)
        return {"h": h, "c": c, "z": z}

    def decode(self, state: State) -> torch.Tensor:
        """V's decoder on z -> (B, H, W, 3) in [0, 1]."""
        return self._frame(state["z"]).clamp(0, 1).movedim(-3, -1)

    def reward(self, state: State) -> torch.Tensor:
        """Reward head on M's hidden state and z."""
        out = self.reward_head(torch.cat([state["h"], state["z"]], -1)).squeeze(-1)
        return symexp(out) if self.config.reward_symlog else out

    def done(self, state: State) -> torch.Tensor:
        """Episode-end head on M's hidden state and z (probability)."""
        return torch.sigmoid(self.done_head(torch.cat([state["h"], state["z"]], -1)).squeeze(-1))

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """VAE loss on every frame plus MDN-RNN loss (z NLL, reward, end) on detached z."""
        c = self.config
        obs = self.to_pixels(batch["obs"])  # (B, T, 3, H, W)
        B, T = obs.shape[:2]
        x = obs.flatten(0, 1)  # (B*T, 3, H, W)

        # V on a random subset of frames (with gradients) ...
        n_vae = max(1, round(c.vae_fraction * B * T))
        order = torch.randperm(B * T, device=x.device)
        pick, rest = order[:n_vae], order[n_vae:]
        xv = x[pick]
        mu, logvar = self.encode(xv)
        recon = self._frame(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
        fg = self.foreground(xv)
        rec_loss = weighted_pixel_loss(recon, xv, fg, c.fg_weight)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)  # (B*T, z)
        kl_loss = kl.sum(-1).clamp(min=c.free_nats * c.z_dim).mean()

        # ... and M on z of every frame, without gradients (M never trains V): V's frames above are not encoded
        # twice, only the rest (a fifth fewer encoder passes per step at vae_fraction 0.25).
        with torch.no_grad():
            mu_rest, logvar_rest = self.encode(x[rest])
            back = order.argsort()  # frame i's row in [picked, rest]
            mu_all = torch.cat([mu.detach(), mu_rest])[back]
            logvar_all = torch.cat([logvar.detach(), logvar_rest])[back]
            noise = 0.0 if c.m_on_means else torch.randn_like(mu_all) * (0.5 * logvar_all).exp()
            zs = (mu_all + noise).view(B, T, -1)
        # M: h_t = LSTM(h_{t-1}, [z_{t-1}, a_t]) predicts z_t, rew_t and is_terminal_t.
        act = batch["act"].to(x.device).float()
        first = batch["is_first"].to(x.device)
        h = self._m_sequence(zs, act, first).flatten(0, 1)  # (B*T, hidden)
        valid = (~first).flatten().float()  # the first frame of an episode has nothing to predict from
        n_valid = valid.sum().clamp(min=1.0)

        logits, means, log_std = self._mixture(h)
        target = zs.flatten(0, 1).unsqueeze(-1)
        log_prob = -0.5 * (((target - means) / log_std.exp()) ** 2 + 2 * log_std + LOG_2PI)
        nll = -torch.logsumexp(F.log_softmax(logits, -1) + log_prob, -1).mean(-1)  # (B*T,)
        mdn_loss = (nll * valid).sum() / n_valid

        rew = batch["rew"].to(x.device).float().flatten()
        rew = symlog(rew) if c.reward_symlog else rew
        hz = torch.cat([h, zs.flatten(0, 1)], -1)  # heads see M's memory and the frame's z
        rew_loss = ((self.reward_head(hz).squeeze(-1) - rew) ** 2 * valid).sum() / n_valid
        term = batch["is_terminal"].to(x.device).float().flatten()
        done_logit = self.done_head(hz).squeeze(-1)
        bce = F.binary_cross_entropy_with_logits(done_logit, term, reduction="none")
        done_loss = (bce * valid).sum() / n_valid

        n_pix = x[0].numel()
        loss = (
            (rec_loss + c.kl_weight * kl_loss) / n_pix
            + mdn_loss / 10.0
            + c.reward_weight * rew_loss
            + c.done_weight * done_loss
        )
        with torch.no_grad():
            mse = F.mse_loss(recon.clamp(0, 1), xv).item()
            fg_mse = (((recon.clamp(0, 1) - xv) ** 2).mean(1, keepdim=True) * fg).sum() / fg.sum().clamp(min=1)
        metrics = {
            "loss": loss.item(),
            "recon_mse": mse,
            "recon_fg_mse": fg_mse.item(),
            "kl": kl.sum(-1).mean().item(),
            "mdn_nll": mdn_loss.item(),
            "reward_mse": rew_loss.item(),
            "done_bce": done_loss.item(),
        }
        return loss, metrics

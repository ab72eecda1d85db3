"""The world-model protocol: the few verbs every family implements.

Time convention (shared with the data store): at step t the model has seen frame `obs[t]`, which the
action `act[t]` led to, with reward `rew[t]` on arrival; `is_first[t]` starts an episode (act and rew are
zero there) and `is_terminal[t]` marks a true terminal frame. A *state* is whatever the family carries
between steps (a dict of tensors with a leading batch dimension). Then:

    state = model.initial(B)
    state = model.observe(state, frame_t, act_t)       # filter / posterior step from a real frame
    state = model.imagine(state, act_t1, temperature, generator)  # prior / dream step: no frame
    model.decode(state)  -> the frame of that state, (B, H, W, 3) float in [0, 1]
    model.reward(state)  -> predicted rew at that state, (B,)
    model.done(state)    -> probability that the state is terminal, (B,)
    model.loss(batch)    -> (loss, metrics) so one loop trains every family

Families that have no pixel decoder train a *probe* decoder on detached latents and say so in
`capabilities.probe_decoder`; `decode` then returns the probe's view.

What a family offers beyond these verbs is declared, not discovered: its `Capabilities` record, and the
optional interfaces below (`Searchable` for MCTS, `GoalEmbedding` for goal planning), which callers check
with `isinstance`. Who owns the action space is declared too: the env (its action spec and keymap) for every
family here; a family that learns its own latent actions (Genie) would say "model" and supply both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .spec import ActionSpec

State = dict[str, torch.Tensor]
Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Capabilities:
    """What a family offers beyond the core verbs. The trainer, the evaluator and the app read this record and
    never branch on a family's name."""

    decoder: bool
    """`decode` draws the model's own prediction of the frame."""
    probe_decoder: bool
    """`decode` shows a probe trained on detached latents: what the latent knows, not a prediction."""
    stochastic: bool
    """`imagine` samples: different random generators give different dreams at temperature > 0."""
    temperature: str
    """What the temperature does in this family, in a sentence for the UI."""
    reward: bool = True
    """`reward` predicts the reward on arrival."""
    done: bool = True
    """`done` predicts episode ends."""
    planner: str | None = None
    """The behaviour that acts with the model: "mcts", "cem", "actor-critic" or None."""
    action_kinds: tuple[str, ...] = ("discrete", "box")
    """Action spaces the family accepts."""
    actions: Literal["env", "model"] = "env"
    """Who owns the action space: the env (its spec and keymap), or the model (learned latent actions)."""
    latent: bool = True
    """The state has a learned latent to probe and explore (False: a pixel-space state)."""
    sampling_steps: tuple[int, int] | None = None
    """The range of denoising steps `imagine(..., steps=n)` accepts (diffusion families), else None."""
    batched_play: bool = True
    """Players' dream steps of one model are served as one batched pass (`StepBatcher`). False where a step is
    compute-bound, so batching saves nothing, and a batch would change the frames' last bits."""


@runtime_checkable
class Searchable(Protocol):
    """A model MCTS can search in (MuZero's three functions): a hidden state from the protocol state, and the
    prediction and recurrent inference steps on hidden states."""

    def policy_value(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior over actions (B, A) and value (B,) of a protocol state."""
        ...

    def prediction(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (..., D) -> policy logits (..., A) and value (...)."""
        ...

    def recurrent_inference(
        self, s: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hidden states and one-hot actions -> next states, reward, policy logits, value, end probability."""
        ...


@runtime_checkable
class GoalEmbedding(Protocol):
    """A model whose states can be compared with goal frames in an embedding space (CEM toward a goal frame)."""

    def embedding(self, state: State) -> torch.Tensor:
        """The embedding (B, D) of a protocol state."""
        ...

    def goal_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """The target embedding (B, D) of goal frames (B, H, W, 3) uint8."""
        ...


@dataclass
class TrainConfig:
    """Training knobs every family shares; a family's config extends this with its model fields."""

    steps: int = 1000
    """Gradient steps to train for."""
    batch_size: int = 16
    """Sequences per batch."""
    seq_len: int = 32
    """Timesteps per sequence."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_decay: float = 1.0
    """Learning rate at the last step as a share of `lr`, reached linearly over `steps` (1: constant)."""
    grad_clip: float = 100.0
    """Global gradient-norm clip."""
    episodes: int = 0
    """Episodes of data to collect when no data directory is given (0: collect `frames` frames instead)."""
    frames: int = 0
    """Frames of data to collect when no data directory is given and `episodes` is 0 (0: the env's default
    budget from the catalog, `wm envs`)."""
    blind_actions: bool = False
    """Zero every action the model sees, in training and in dreams: a model that cannot hear the keys, to
    show what the controllability card measures (a teaching control, never a better model)."""


def field_doc(config_cls: type, name: str) -> str:
    """The docstring written under a config field (used for --help and UI tooltips)."""
    import ast
    import inspect

    for cls in config_cls.__mro__:
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            tree = ast.parse(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                return " ".join(nxt.value.value.split())
    return ""


class WorldModel(nn.Module):
    """Base class of every family. Subclasses set `family`, `Config`, `PRESETS` and `capabilities`."""

    family: ClassVar[str] = ""
    Config: ClassVar[type] = TrainConfig
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "small": {}, "large": {}}
    capabilities: ClassVar[Capabilities]
    latent_keys: ClassVar[tuple[str, ...]] = ()  # state entries that make up `latent` (all when empty)

    def __init__(self, config: Any, action_spec: ActionSpec, frame_size: int = 64) -> None:
        super().__init__()
        self.config = config
        blind = getattr(config, "blind_actions", False)  # a hand-made test model may have no config
        self.action_spec = dataclasses.replace(action_spec, blind=True) if blind else action_spec
        self.frame_size = frame_size
        # The training set's mean frame. Decoders predict the difference from it, and the loss weights
        # pixels that differ from it ("foreground"): classic-control frames are mostly background, and a
        # plain pixel loss sits on the mean image for minutes before it draws the moving objects.
        self.register_buffer("frame_mean", torch.full((3, frame_size, frame_size), 0.5))

    @classmethod
    def preset(cls, name: str = "small", **overrides: Any) -> Any:
        """A config for preset `name` ("tiny", "small", "large") with field overrides."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset '{name}' for family '{cls.family}': choose {sorted(cls.PRESETS)}")
        values = {**cls.PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config fields for '{cls.family}': {sorted(unknown)}")
        return cls.Config(**values)

    # ---- data statistics -------------------------------------------------------------------------
    def set_frame_mean(self, mean_frame: np.ndarray) -> None:
        """Store the dataset mean frame, (H, W, 3) float in [0, 1]."""
        t = torch.as_tensor(np.asarray(mean_frame, dtype=np.float32)).permute(2, 0, 1)
        self.frame_mean.copy_(t.to(self.frame_mean.device))

    def to_pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (..., H, W, 3) -> float (..., 3, H, W) in [0, 1] on the model's device."""
        x = frames.to(self.frame_mean.device)
        return x.movedim(-1, -3).float().div_(255.0)

    def foreground(self, pixels: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
        """Mask (..., 1, H, W) of pixels that differ from the dataset mean frame."""
        return ((pixels - self.frame_mean).abs().amax(dim=-3, keepdim=True) > threshold).float()

    # ---- the protocol ----------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """The state before any frame: a dict of (B, ...) tensors."""
        raise NotImplementedError

    def observe(self, state: State, frame: torch.Tensor, prev_action: torch.Tensor) -> State:
        """Filter step: frame (B, H, W, 3) uint8 reached by prev_action (B, A) float -> new state."""
        raise NotImplementedError

    def imagine(
        self, state: State, action: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> State:
        """Dream step: action (B, A) float -> predicted next state, sampled at `temperature` with `generator`'s
        random numbers (the global generator when None; the app and the evaluator always pass their own)."""
        raise NotImplementedError

    def decode(self, state: State) -> torch.Tensor:
        """The state's frame, (B, H, W, 3) float in [0, 1] (clamped)."""
        raise NotImplementedError

    def filter_steps(
        self, frames: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor | None = None
    ) -> Iterator[State]:
        """The state after each of real frames (B, T, H, W, 3) uint8 reached by actions (B, T, A) float, from
        `initial`. Rows where `is_first` (B, T) holds start again from `initial` with no action (default: only
        t = 0): the model has not seen what came before. The one context-filtering loop of the library."""
        B, T = frames.shape[:2]
        first = torch.zeros(B, T, dtype=torch.bool, device=frames.device) if is_first is None else is_first.clone()
        first[:, 0] = True
        init = self.initial(B)
        state = init
        for t in range(T):
            reset = first[:, t].to(init[next(iter(init))].device)
            state = {k: torch.where(reset.view(B, *[1] * (v.dim() - 1)), init[k], v) for k, v in state.items()}
            act = torch.where(reset.view(B, 1), torch.zeros_like(actions[:, t]), actions[:, t])
            state = self.observe(state, frames[:, t], act)
            yield state

    def filter(self, frames: torch.Tensor, actions: torch.Tensor) -> State:
        """The state after observing real context frames (B, T, H, W, 3) uint8 reached by actions (B, T, A)
        (see `filter_steps`)."""
        *_, last = self.filter_steps(frames, actions)
        return last

    def context_tensors(self, frames: np.ndarray, raw_actions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Numpy frames (B, T, H, W, 3) uint8 and raw env actions (B, T[, n]) as tensors on the model's device,
        ready for `filter`."""
        dev = self.frame_mean.device
        return torch.as_tensor(frames, device=dev), self.action_spec.encode(np.asarray(raw_actions)).to(dev)

    def reward(self, state: State) -> torch.Tensor:
        """Predicted reward on arriving at this state, (B,)."""
        raise NotImplementedError

    def done(self, state: State) -> torch.Tensor:
        """Predicted probability that this state is terminal, (B,)."""
        raise NotImplementedError

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch (see `wm_core.data.SequenceSampler`) and scalar metrics to log."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimizer step (EMA target networks and the like)."""

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: dicts with "params" and an optional "lr_scale", a factor on
        the configured learning rate (see `make_optimizer`). One group at the full rate unless a family
        says otherwise."""
        return [{"params": list(self.parameters())}]

    def latent(self, state: State) -> torch.Tensor:
        """A flat (B, D) view of the state (its `latent_keys` parts), for probes and the latent explorer."""
        return torch.cat([state[k].flatten(1) for k in self.latent_keys or tuple(state)], dim=1)

    def set_latent(self, state: State, latent: torch.Tensor) -> State:
        """The state with its latent parts replaced by `latent` (B, D): the inverse of `latent`."""
        keys = self.latent_keys or tuple(state)
        total = sum(state[k][0].numel() for k in keys)
        if latent.shape[1] != total:
            raise ValueError(f"latent has {latent.shape[1]} dims, the state's latent parts have {total}")
        out, i = dict(state), 0
        for k in keys:
            n = state[k][0].numel()
            out[k] = latent[:, i : i + n].reshape(state[k].shape).to(state[k].dtype)
            i += n
        return out


def make_optimizer(model: WorldModel, lr: float) -> torch.optim.Adam:
    """Adam over the model's `param_groups`, each at `lr` times its "lr_scale" (kept in the group, so a
    schedule can set `group["lr"] = base * group["lr_scale"]`)."""
    groups = [{**g, "lr_scale": g.get("lr_scale", 1.0)} for g in model.param_groups()]
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.Adam(groups, lr=lr)

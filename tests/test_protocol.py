"""Protocol conformance for every registered family, on a Discrete (CartPole) and a Box (Pendulum) env.

Parametrized over `FAMILIES`, so a new family gets every check here for free. Models are tiny presets
warmed up with a few real Adam steps on real frames: a fresh `ha` decoder starts at "draw the mean frame"
(zero-initialised output layer), so some checks only mean something once training has moved it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import adam_steps, context_state, make_model, real_frames, sampler_for
from shift_family import ShiftFamily

from wm_core.checkpoint import load_checkpoint, save_checkpoint
from wm_core.data import EpisodeStore
from wm_core.dream import Dream
from wm_core.protocol import Capabilities, GoalEmbedding, Searchable, State, WorldModel
from wm_core.registry import FAMILIES, register
from wm_core.spec import ActionSpec

register("shift", ShiftFamily)  # a family from outside the library: one file and this one line

KINDS = {"discrete": "CartPole-v1", "box": "Pendulum-v1"}
ALL_KINDS = ("discrete", "box")


def _supports(family: str, kind: str) -> bool:
    return kind in FAMILIES[family].capabilities.action_kinds


CASES = [(family, kind) for family in FAMILIES for kind in KINDS if _supports(family, kind)]
UNSUPPORTED = [(family, kind) for family in FAMILIES for kind in KINDS if not _supports(family, kind)]
WARMUP_STEPS = 3
CONTEXT = 5
Case = tuple[WorldModel, EpisodeStore, str]


def _flat(state: State) -> torch.Tensor:
    return torch.cat([v.flatten(1).float() for v in state.values()], dim=1)


def _actions(spec: ActionSpec, batch: int) -> torch.Tensor:
    """Model-side action vectors (B, dim): distinct raw actions per row, encoded by the spec."""
    if spec.discrete:
        raw = np.arange(batch) % spec.n
    else:
        raw = np.linspace(spec.low, spec.high, batch).astype(np.float32)  # (B, n)
    return spec.encode(raw)


@pytest.mark.parametrize("family,kind", UNSUPPORTED or [pytest.param(None, None, marks=pytest.mark.skip("none"))])
def test_unsupported_action_kind_is_a_clear_error(family: str, kind: str, stores: dict[str, EpisodeStore]) -> None:
    """A family that declares fewer `action_kinds` refuses the others at construction, saying why."""
    with pytest.raises(ValueError, match=f"(?i){kind}|continuous|discrete"):
        make_model(family, stores[kind])


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{k}" for f, k in CASES])
def case(request: pytest.FixtureRequest, stores: dict[str, EpisodeStore]) -> Case:
    """(warmed-up tiny model in eval mode, its store, env id) for one family and action kind."""
    family, kind = request.param
    store = stores[kind]
    model = make_model(family, store)
    adam_steps(model, sampler_for(store, model), WARMUP_STEPS)
    return model, store, KINDS[kind]


def test_pendulum_is_a_box_spec(pendulum_store: EpisodeStore) -> None:
    assert pendulum_store.action_spec == ActionSpec("box", 1, (-2.0,), (2.0,))
    assert pendulum_store.action_spec.dim == 1


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_capabilities_are_declared(family: str) -> None:
    cls = FAMILIES[family]
    caps = cls.capabilities
    assert isinstance(caps, Capabilities) and cls.family == family
    for key in ("decoder", "probe_decoder", "stochastic", "reward", "done", "latent"):
        assert isinstance(getattr(caps, key), bool), f"capabilities.{key} must be declared as a bool"
    # A planner's interface is declared in code, so the planner can check for it (not probe with getattr).
    assert caps.planner != "mcts" or issubclass(cls, Searchable)
    assert caps.planner != "cem" or issubclass(cls, GoalEmbedding)
    assert caps.actions in ("env", "model") and set(caps.action_kinds) <= {"discrete", "box"}
    # Every family shows frames: either its own decoder or a labelled probe decoder, never both.
    assert caps.decoder != caps.probe_decoder
    assert set(FAMILIES[family].PRESETS) >= {"tiny", "small", "large"}


@pytest.mark.parametrize("batch", [1, 3])
def test_verbs_shapes_and_dtypes(case, batch: int) -> None:
    model, store, _ = case
    size = store.pipeline.size
    frames, _ = real_frames(store, batch, 1)
    acts = _actions(model.action_spec, batch)
    with torch.no_grad():
        init = model.initial(batch)
        assert init and all(v.shape[0] == batch and v.is_floating_point() for v in init.values())
        states = {"initial": init}
        no_action = torch.zeros(batch, model.action_spec.dim)
        states["observe"] = model.observe(init, torch.as_tensor(frames[:, 0]), no_action)
        states["imagine"] = model.imagine(states["observe"], acts, 1.0)
        states["imagine0"] = model.imagine(states["observe"], acts, 0.0)
        for name, state in states.items():
            assert set(state) == set(init), f"{name} changed the state's keys"
            for k, v in state.items():
                assert v.shape == init[k].shape and v.dtype == init[k].dtype, f"{name}: state[{k!r}]"
                assert torch.isfinite(v).all(), f"{name}: state[{k!r}] is not finite"
            frame = model.decode(state)
            assert frame.shape == (batch, size, size, 3) and frame.dtype == torch.float32
            assert frame.min() >= 0.0 and frame.max() <= 1.0, f"{name}: decode left [0, 1]"
            rew, done = model.reward(state), model.done(state)
            assert rew.shape == (batch,) and rew.is_floating_point() and torch.isfinite(rew).all()
            assert done.shape == (batch,) and done.is_floating_point()
            assert done.min() >= 0.0 and done.max() <= 1.0, f"{name}: done is a probability"
            lat = model.latent(state)
            assert lat.ndim == 2 and lat.shape[0] == batch


def _grads(model: WorldModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss, metrics = model.loss(batch)
    loss.backward()
    model.eval()
    return loss, metrics


def test_loss_is_finite_with_float_metrics_and_gradients_everywhere(case) -> None:
    model, store, _ = case
    batch = sampler_for(store, model, seed=1).sample()
    loss, metrics = _grads(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert metrics and all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["loss"] == pytest.approx(loss.item())
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params
    no_grad = [n for n, p in params if p.grad is None]
    assert not no_grad, f"the loss does not reach {no_grad}"
    not_finite = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not not_finite, f"non-finite gradients in {not_finite}"
    # After warm-up every parameter must actually move. (On the very first step `ha` legitimately has
    # all-zero gradients in V: its decoder's output layer starts at zero, which blocks the layers behind
    # it, and a fresh encoder's KL sits under the free-nats floor, whose clamp passes no gradient.)
    zero = [n for n, p in params if not p.grad.abs().sum() > 0]
    assert not zero, f"all-zero gradients in {zero}"
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fresh_model_loss_reaches_every_parameter(kind: str, stores: dict[str, EpisodeStore]) -> None:
    for family in [f for f in FAMILIES if _supports(f, kind)]:
        model = make_model(family, stores[kind])
        loss, _ = _grads(model, sampler_for(stores[kind], model).sample())
        assert torch.isfinite(loss)
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{family}: the loss does not reach {missing}"


def test_decoder_capability_is_honest(case) -> None:
    model, store, _ = case
    if not (model.capabilities.decoder or model.capabilities.probe_decoder):
        pytest.skip("family draws no frames")
    with torch.no_grad():
        state = context_state(model, store, 2, CONTEXT)
        frames = model.decode(state)
    assert not torch.equal(_flat(state)[0], _flat(state)[1]), "two different episodes gave the same state"
    diff = (frames[0] - frames[1]).abs().max().item()
    assert diff > 1e-4, f"decode draws the same frame for different states (max diff {diff})"


def test_stochastic_capability_is_honest(case) -> None:
    """`imagine` samples from the generator it is given (the app and the evaluator always pass one), never from
    the global stream that other sessions and threads share."""
    model, store, _ = case
    acts = _actions(model.action_spec, 3)

    def dream(seed: int, temperature: float, global_seed: int = 0) -> torch.Tensor:
        with torch.no_grad():
            torch.manual_seed(0)  # the context: a family may sample its posterior while it observes
            state = context_state(model, store, 3, CONTEXT)
            torch.manual_seed(global_seed)
            generator = torch.Generator(device=model.frame_mean.device).manual_seed(seed)
            for _ in range(3):
                state = model.imagine(state, acts, temperature, generator)
            return _flat(state)

    same_seed = torch.equal(dream(0, 1.0), dream(0, 1.0, global_seed=1))
    assert same_seed, "imagine is not reproducible with a seeded generator (does it sample from the global stream?)"
    differs = not torch.equal(dream(0, 1.0), dream(1, 1.0))
    assert differs == model.capabilities.stochastic, (
        f"capabilities.stochastic is {model.capabilities.stochastic} but different seeds "
        f"{'gave different' if differs else 'gave identical'} dreams at temperature 1"
    )
    if "deterministic" in model.capabilities.temperature:
        assert torch.equal(dream(0, 0.0), dream(1, 0.0)), "temperature 0 is claimed deterministic but is not"


def test_ha_claims_temperature_zero_is_deterministic() -> None:
    # So the check above runs for `ha` rather than skipping silently.
    assert "deterministic" in FAMILIES["ha"].capabilities.temperature


def test_batch_one_matches_batched(case) -> None:
    """A dream step of one episode gives the same frame alone as inside a batch (no batch statistics)."""
    model, store, _ = case
    acts = _actions(model.action_spec, 3)
    with torch.no_grad():
        big = model.imagine(context_state(model, store, 3, CONTEXT), acts, 0.0)
        one = model.imagine(context_state(model, store, 1, CONTEXT), acts[:1], 0.0)
        torch.testing.assert_close(model.decode(one)[0], model.decode(big)[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.reward(one)[0], model.reward(big)[0], atol=1e-5, rtol=1e-4)


def test_save_load_gives_identical_outputs(case, tmp_path: Path) -> None:
    model, store, env_id = case
    save_checkpoint(tmp_path, model, env_id=env_id, pipeline=store.pipeline, step=WARMUP_STEPS)
    loaded, meta = load_checkpoint(tmp_path)
    assert type(loaded) is type(model) and not loaded.training
    assert meta["family"] == model.family and meta["env_id"] == env_id and meta["step"] == WARMUP_STEPS
    assert loaded.config == model.config and loaded.action_spec == model.action_spec
    assert loaded.frame_size == model.frame_size
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    acts = _actions(model.action_spec, 3)
    with torch.no_grad():
        for m in (model, loaded):
            m.eval()
        a, b = context_state(model, store, 3, CONTEXT), context_state(loaded, store, 3, CONTEXT)
        for k in a:
            assert torch.equal(a[k], b[k]), f"observe differs after load in state[{k!r}]"
        for verb in ("decode", "reward", "done"):
            same = torch.equal(getattr(model, verb)(a), getattr(loaded, verb)(b))
            assert same, f"{verb} differs after load"
        a, b = model.imagine(a, acts, 0.0), loaded.imagine(b, acts, 0.0)
        assert torch.equal(_flat(a), _flat(b)), "imagine(temperature=0) differs after load"
        assert torch.equal(model.decode(a), loaded.decode(b))


def test_dream_single(case) -> None:
    model, store, _ = case
    size = store.pipeline.size
    frames, acts = real_frames(store, 1, CONTEXT)
    dream = Dream(model, temperature=1.0)
    first = dream.reset(frames[0], acts[0])
    assert first.shape == (size, size, 3) and first.dtype == np.uint8
    action = 1 if model.action_spec.discrete else np.array([1.5], np.float32)
    for _ in range(3):
        frame, reward, ended, info = dream.step(action)
        assert isinstance(frame, np.ndarray) and frame.shape == (size, size, 3) and frame.dtype == np.uint8
        assert type(reward) is float and math.isfinite(reward)
        assert type(ended) is bool
        assert type(info["done_prob"]) is float and 0.0 <= info["done_prob"] <= 1.0
        assert ended == (info["done_prob"] > dream.done_threshold)
    assert dream.latent().ndim == 1
    # Without actions the context is still accepted (first frame starts an episode).
    assert dream.reset(frames[0]).shape == (size, size, 3)


def test_dream_batched(case) -> None:
    model, store, _ = case
    size = store.pipeline.size
    frames, acts = real_frames(store, 3, CONTEXT)
    dream = Dream(model, temperature=1.0)
    first = dream.reset(frames, acts)
    assert first.shape == (3, size, size, 3) and first.dtype == np.uint8
    spec = model.action_spec
    action = np.array([0, 1, 0]) if spec.discrete else np.array([[-2.0], [0.0], [2.0]], np.float32)
    frame, reward, ended, info = dream.step(action)
    assert isinstance(frame, np.ndarray) and frame.shape == (3, size, size, 3) and frame.dtype == np.uint8
    assert isinstance(reward, np.ndarray) and reward.shape == (3,) and np.isfinite(reward).all()
    assert isinstance(ended, np.ndarray) and ended.shape == (3,) and ended.dtype == bool
    p = info["done_prob"]
    assert isinstance(p, np.ndarray) and p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    assert dream.latent().shape[0] == 3
    with pytest.raises(ValueError, match="expected 3 actions"):
        dream.step(action[:2])


def test_dream_batched_matches_single_at_temperature_zero(case) -> None:
    model, store, _ = case
    frames, acts = real_frames(store, 3, CONTEXT)
    single, batched = Dream(model, temperature=0.0), Dream(model, temperature=0.0)
    assert np.abs(single.reset(frames[0], acts[0]).astype(int) - batched.reset(frames, acts)[0]).max() <= 1
    a = 1 if model.action_spec.discrete else np.array([0.5], np.float32)
    batch_a = np.array([a, a, a])
    for _ in range(3):
        f1, r1, _, _ = single.step(a)
        fb, rb, _, _ = batched.step(batch_a)
        assert np.abs(f1.astype(int) - fb[0]).max() <= 1
        assert r1 == pytest.approx(float(rb[0]), abs=1e-5)


def test_players_step_the_same_alone_and_batched(case) -> None:
    """The app serves players' dreams of one model as one batched step (`StepBatcher`): each player must get what
    its dream gives stepped alone with the same seed, bit for bit, sampling included (tests/test_batcher.py checks
    the shipped runs). A family whose step a batch would change says `batched_play=False` and is served alone."""
    model, store, _ = case
    if not model.capabilities.batched_play:
        pytest.skip(f"{model.family} is served one player at a time (batched_play=False)")
    frames, acts = real_frames(store, 3, CONTEXT)
    spec = model.action_spec
    raw = list(range(3)) if spec.discrete else list(np.linspace(spec.low, spec.high, 3).astype(np.float32))
    raw = [a % spec.n for a in raw] if spec.discrete else raw

    def players() -> list[Dream]:
        dreams = [Dream(model, temperature=1.0, seed=10 + i) for i in range(3)]
        for i, d in enumerate(dreams):
            d.reset(frames[i], acts[i])
        return dreams

    alone, together = players(), players()
    for t in range(3):
        one = [d.step(a) for d, a in zip(alone, raw)]
        batch = Dream.step_together(together, raw)
        for i, ((fa, ra, ea, ia), (fb, rb, eb, ib)) in enumerate(zip(one, batch)):
            assert np.array_equal(fa, fb), f"step {t} player {i}: the frame differs batched"
            assert (ra, ea, ia) == (rb, eb, ib), f"step {t} player {i}: reward, end or info differs batched"


def test_dream_requires_reset(case) -> None:
    model, _, _ = case
    dream = Dream(model)
    with pytest.raises(RuntimeError, match="reset"):
        dream.step(0 if model.action_spec.discrete else np.zeros(1, np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        dream.latent()
    with pytest.raises(ValueError, match="context frames"):
        dream.reset(np.zeros((64, 64, 3), np.uint8))  # one frame without its time axis

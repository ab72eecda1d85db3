"""Batched dream serving: players' dreams of one model stepped together give the frames, rewards and ends each
would get stepped alone with the same seed, and `StepBatcher` really batches requests from many threads.

Every family but diffusion steps bit for bit the same alone and batched, with one torch thread (the app's players
on a machine of two or three cores) and with two: their layers pad batches to the sizes whose rows the matrix and
convolution libraries compute alike (`models.steady.Linear`, `Conv2d`, `ConvTranspose2d`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import wm_core
from wm_core import Dream, StepBatcher

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"
PLAYERS, STEPS = 5, 12


@pytest.fixture(autouse=True, params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request: pytest.FixtureRequest) -> None:
    """One torch thread, as the app's players have on a small machine (`playground.app.set_threads`), and two."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield
    torch.set_num_threads(before)


def dreams(run: str, temperature: float = 1.0) -> tuple[list[Dream], np.ndarray]:
    """PLAYERS fresh dreams of the shipped `run`, each with its own seed and context, and their action plans."""
    model, meta = wm_core.cached_model(SHIPPED / run)
    store_size = model.frame_size
    rng = np.random.default_rng(0)
    out = []
    for i in range(PLAYERS):
        d = Dream(model, temperature, seed=100 + i)
        frames = rng.integers(0, 255, (4, store_size, store_size, 3), dtype=np.uint8)
        d.reset(frames, rng.integers(0, model.action_spec.n, 4))
        out.append(d)
    plans = rng.integers(0, model.action_spec.n, (STEPS, PLAYERS))
    return out, plans


def alone(run: str, temperature: float) -> list[list[tuple]]:
    ds, plans = dreams(run, temperature)
    return [[d.step(int(a)) for d, a in zip(ds, plan)] for plan in plans]


def together(run: str, temperature: float) -> list[list[tuple]]:
    ds, plans = dreams(run, temperature)
    return [Dream.step_together(ds, [int(a) for a in plan]) for plan in plans]


def assert_same(a: list[list[tuple]], b: list[list[tuple]], exact: bool = True) -> None:
    assert len(a) == len(b) == STEPS
    for t, (row_a, row_b) in enumerate(zip(a, b)):
        assert len(row_a) == len(row_b) == PLAYERS
        for i, ((fa, ra, ea, ia), (fb, rb, eb, ib)) in enumerate(zip(row_a, row_b)):
            if exact:
                assert np.array_equal(fa, fb), f"step {t} player {i}: frames differ"
                assert ra == rb and ea == eb, f"step {t} player {i}: reward or end differs"
                assert ia == ib, f"step {t} player {i}: end probability or display texts differ"
                continue
            diff = np.abs(fa.astype(int) - fb.astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"step {t} player {i}: frames differ"
            assert ra == pytest.approx(rb, abs=1e-4) and ea == eb, f"step {t} player {i}: reward or end differs"


@pytest.mark.parametrize("run", ["ha-cartpole", "dreamer-pong", "jepa-cartpole", "muzero-cartpole"])
def test_batched_steps_give_each_player_the_unbatched_frames(run: str) -> None:
    temperature = 1.0  # sampling on: each player's stream must stay its own
    assert_same(alone(run, temperature), together(run, temperature))


def test_the_display_head_runs_once_per_batched_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """MuZero's value and prior beside each player's frame come from one pass over the batch, not one per player."""
    ds, plans = dreams("muzero-cartpole")
    model, calls = ds[0].model, []
    head = model.policy_value
    monkeypatch.setattr(model, "policy_value", lambda state: calls.append(len(state["s"])) or head(state))
    results = Dream.step_together(ds, [int(a) for a in plans[0]])
    assert calls == [PLAYERS]
    assert all(set(info["extras"]) == {"value", "policy"} for *_, info in results)


def served(run: str) -> tuple[list[list[tuple]], StepBatcher]:
    """What PLAYERS threads asking a StepBatcher within the same tick get, step after step."""
    ds, plans = dreams(run)
    batcher = StepBatcher(wait_ms=20.0)
    got: list[list[tuple]] = [[None] * PLAYERS for _ in range(STEPS)]
    barrier = threading.Barrier(PLAYERS)

    def player(i: int) -> None:
        for t in range(STEPS):
            barrier.wait()  # every player asks within the same tick
            got[t][i] = batcher.step(ds[i], int(plans[t][i]))

    threads = [threading.Thread(target=player, args=(i,)) for i in range(PLAYERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert batcher.steps == STEPS * PLAYERS
    return got, batcher


def test_diffusion_players_are_served_the_unbatched_frames() -> None:
    """Diffusion's U-Net sums its convolutions and group norms in another order for other batch sizes, and a
    batch saves it nothing (its step is compute-bound): the batcher steps each of its players alone, so what a
    player is served is exactly the unbatched dream."""
    got, batcher = served("diffusion-pong")
    assert batcher.batches == STEPS * PLAYERS, "diffusion steps were batched"
    assert_same(alone("diffusion-pong", 1.0), got)


def test_diffusion_step_together_stays_within_one_level() -> None:
    """Stepped together directly (an evaluation's batch), the last bits may differ, which moves a pixel by one
    level where a value sits on a rounding edge. Anything more is a real difference."""
    assert_same(alone("diffusion-pong", 1.0), together("diffusion-pong", 1.0), exact=False)


def test_players_streams_stay_their_own() -> None:
    """The same seeds stepped in another grouping (player 0 alone, the rest together) give the same frames."""
    ds, plans = dreams("ha-cartpole")
    mixed = [[ds[0].step(int(plan[0]))] + Dream.step_together(ds[1:], [int(a) for a in plan[1:]]) for plan in plans]
    assert_same(alone("ha-cartpole", 1.0), mixed)
    frames = [step[0][0] for step in mixed]
    assert len({f.tobytes() for f in frames}) > 1, "the dream did not move"


def test_step_batcher_batches_threads_and_keeps_results_apart() -> None:
    got, batcher = served("ha-cartpole")
    assert batcher.batches < STEPS * PLAYERS / 2, f"{batcher.batches} forward passes: requests were not batched"
    assert_same(alone("ha-cartpole", 1.0), got)


def test_dreams_that_cannot_share_a_pass_are_refused() -> None:
    ds, _ = dreams("ha-cartpole")
    ds[1].temperature = 0.5
    with pytest.raises(ValueError, match="one temperature"):
        Dream.step_together(ds, [0] * PLAYERS)


@pytest.mark.parametrize("out", [1, 3, 256])
def test_linear_rows_do_not_depend_on_the_batch(out: int) -> None:
    """Single-output heads included (their rows left over past a block of four ran another kernel)."""
    from wm_core.models.steady import Linear

    torch.manual_seed(0)
    layer, x = Linear(256, out), torch.randn(40, 256)
    with torch.inference_mode():
        full = layer(x)
        for m in range(1, 10):
            for start in (0, 3, 40 - m):
                assert torch.equal(layer(x[start : start + m]), full[start : start + m]), (m, start)


@pytest.mark.parametrize("kind", ["conv", "transposed"])
def test_conv_images_do_not_depend_on_the_batch(kind: str) -> None:
    """A decoder's last layer: with two threads odd batches used to come out differently from even ones."""
    from wm_core.models.steady import Conv2d, ConvTranspose2d

    torch.manual_seed(0)
    layer = Conv2d(32, 64, 4, stride=2, padding=1) if kind == "conv" else ConvTranspose2d(32, 3, 4, 2, 1)
    x = torch.randn(24, 32, 32, 32)
    with torch.inference_mode():
        full = layer(x)
        for n in range(1, 10):
            for start in (0, 5, 24 - n):
                assert torch.equal(layer(x[start : start + n]), full[start : start + n]), (n, start)

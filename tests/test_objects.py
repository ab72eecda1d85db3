"""The object card's ground: deterministic Atari frames, detectors held to the emulator's RAM, and a card that
fails a dream without a ball and passes one that draws reality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("ale_py")

from wm_core.checkpoint import load_checkpoint  # noqa: E402
from wm_core.data.envs import CATALOG, make_env, process_frame  # noqa: E402
from wm_core.evaluation.object_card import measure, object_card, object_checks, real_rollouts  # noqa: E402
from wm_core.evaluation.objects import GAMES, detect, ram_positions  # noqa: E402
from wm_core.spec import FramePipeline  # noqa: E402

ATARI = ["ALE/Pong-v5", "ALE/Breakout-v5"]


def _play(env_id: str, seed: int, actions: list[int], pipeline: FramePipeline | None = None):
    env = make_env(env_id, pipeline)
    frames, rams = [env.reset(seed=seed)[0]], [env.unwrapped.ale.getRAM().copy()]
    for a in actions:
        frame, _, term, trunc, _ = env.step(a)
        frames.append(frame)
        rams.append(env.unwrapped.ale.getRAM().copy())
        if term or trunc:
            break
    env.close()
    return np.stack(frames), np.stack(rams)


def _held(n: int, choices: tuple[int, ...], seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(a) for a in np.repeat(rng.choice(choices, n // 4 + 1), 4)[:n]]


@pytest.mark.parametrize("env_id", ATARI)
def test_atari_is_deterministic_given_the_keys(env_id: str) -> None:
    """No sticky keys: the same key presses give the same frames whatever the seed; v5's defaults do not."""
    keys = [1, 1] + _held(120, (0, 2, 3))
    a, _ = _play(env_id, 1, keys)
    b, _ = _play(env_id, 2, keys)
    assert np.array_equal(a, b)
    sticky = dataclasses.replace(CATALOG[env_id].pipeline, env_kwargs={}, action_repeat=1, reset_noops=0)
    c, _ = _play(env_id, 1, keys, sticky)
    d, _ = _play(env_id, 2, keys, sticky)
    assert not np.array_equal(c, d), "the old sticky pipeline should differ between seeds"


def test_frames_are_the_max_of_the_last_two() -> None:
    """Each frame is the pixel-wise max of the last two raw frames of the skip (the catalog pipeline)."""
    env = make_env("ALE/Breakout-v5")
    env.reset(seed=0)
    env.step(1)
    raw = env.unwrapped
    before = raw.ale.getScreenRGB().copy()  # the last raw frame of the previous step
    frame = env.step(2)[0]
    assert env.pipeline.max_last_two and env.pipeline.action_repeat == 4
    assert env.pipeline.env_kwargs == {"frameskip": 1, "repeat_action_probability": 0.0}
    last = raw.ale.getScreenRGB()
    assert np.array_equal(frame, process_frame(np.maximum(last, env.get_wrapper_attr("_prev_obs")), env.pipeline))
    assert not np.array_equal(before, last)
    assert not np.array_equal(env.get_wrapper_attr("_prev_obs"), last), "the frame before the last is another one"
    env.close()


@pytest.mark.parametrize("env_id", ATARI)
def test_detectors_agree_with_ram(env_id: str) -> None:
    """On real frames under held keys the ball (present or not) and the paddle sit where the RAM says, within 2
    and 3 pixels, on at least 95% of frames."""
    game = GAMES[env_id]
    frames, rams = [], []
    for seed in (11, 12):
        f, r = _play(env_id, seed, [1, 1] + _held(300, (0, 2, 3, 1), seed))
        frames.append(f)
        rams.append(r)
    frames, rams = np.concatenate(frames), np.concatenate(rams)
    found = detect(frames, game)
    ball, paddle = ram_positions(rams, game)
    in_play, seen = ~np.isnan(ball[:, 0]), ~np.isnan(found.ball[:, 0])
    assert in_play.sum() > 200, "too few frames with the ball in play to calibrate against"
    close = np.linalg.norm(np.nan_to_num(ball - found.ball, nan=99.0), axis=1) <= 2.0
    ball_agree = np.where(in_play, seen & close, ~seen)
    assert ball_agree.mean() >= 0.95, ball_agree.mean()
    paddle_agree = np.abs(np.nan_to_num(paddle - found.paddle, nan=99.0)) <= 3.0
    assert paddle_agree.mean() >= 0.95, paddle_agree.mean()


def _checks(card) -> dict[str, bool]:
    return {c["check"]: c["passed"] for c in object_checks(card)}


@pytest.mark.parametrize("env_id", ATARI)
def test_card_passes_reality_and_fails_a_mean_frame(env_id: str) -> None:
    pipeline = CATALOG[env_id].pipeline
    r, _, _ = real_rollouts(env_id, pipeline, episodes=3, steps=20)
    r.dream = r.real.copy()
    copy = measure(r, env_id, pipeline)
    assert copy.ball_recall[:2] == [1.0, 1.0] and copy.ball_error[0] == 0.0 and copy.paddle_follows == 1.0
    assert all(_checks(copy).values()), object_checks(copy)
    assert copy.moving_recall[0] == 1.0
    r.dream = np.broadcast_to(r.real.mean(axis=(0, 1), keepdims=True), r.real.shape).astype(np.uint8)
    blurred = measure(r, env_id, pipeline)
    checks = _checks(blurred)
    assert not checks["ball recall >= 0.9 over dream steps 1-5"] and blurred.ball_recall[0] == 0.0
    assert not checks["the paddle follows the held key in >= 95% of steps"]


def test_card_counts_bricks_that_come_back() -> None:
    env_id, pipeline = "ALE/Breakout-v5", CATALOG["ALE/Breakout-v5"].pipeline
    r, _, _ = real_rollouts(env_id, pipeline, episodes=1, steps=12)
    dream = r.real.copy()
    dream[0, 3:6, 12:14, 20:26] = 0  # a brick gone for three steps, then back
    r.dream = dream
    card = measure(r, env_id, pipeline)
    assert card.bricks_reappeared >= 1 and not _checks(card)["no brick reappears"]


def test_object_card_of_a_shipped_world() -> None:
    """The whole path on a real checkpoint: held keys drive the real env and the dream; the card is filled."""
    model, meta = load_checkpoint("checkpoints/dreamer-pong")
    card = object_card(model, meta["env_id"], FramePipeline.from_json(meta["pipeline"]), episodes=2, steps=8)
    assert card.windows == [[1, 5], [6, 15]] and len(card.ball_recall) == 2
    assert 0.0 <= card.ball_recall[0] <= 1.0 and len(card.paddle_error) == 2 and len(card.moving_recall) == 2
    assert card.to_json()["ball_recall"] == card.ball_recall


def test_strips_and_kept_checkpoints(tmp_path) -> None:
    """scripts/object_strips.py draws real over dream for a shipped world (a relative path, from the repo root);
    scripts/keep_checkpoints.py copies a run's current save once, loadable as a run."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "strips"
    cmd = [sys.executable, "scripts/object_strips.py", "checkpoints/dreamer-pong", "--out", str(out)]
    done = subprocess.run(cmd + ["--episodes", "1", "--steps", "1", "3", "--card"], cwd=root, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ball recall" in done.stdout
    img = Image.open(out / "strip-dreamer-pong.png")
    assert img.size == (48 + 2 * (64 * 4 + 4), 14 + 2 * (64 * 4 + 4))
    sys.path.insert(0, str(root / "scripts"))
    from keep_checkpoints import copy_save

    run = tmp_path / "run"
    shutil.copytree(root / "checkpoints/dreamer-pong", run)
    kept = copy_save(run, tmp_path / "run-steps")
    assert kept is not None and kept.name == "step-3000" and copy_save(run, tmp_path / "run-steps") is None
    assert load_checkpoint(kept)[1]["step"] == 3000


def test_an_older_world_is_judged_on_its_own_frames() -> None:
    """A world trained before deterministic Atari (its pipeline records ALE v5's sticky keys) gets held-out
    episodes drawn with that pipeline, not the catalog's."""
    from wm_core.checkpoint import read_meta
    from wm_core.evaluation.report import heldout_episodes

    meta = read_meta("checkpoints/dreamer-pong")
    assert meta["pipeline"]["env_kwargs"] == {} and CATALOG["ALE/Pong-v5"].pipeline.max_last_two
    eps, info = heldout_episodes("ALE/Pong-v5", 1, policy="scripted", meta=meta)
    env = make_env("ALE/Pong-v5", FramePipeline.from_json(meta["pipeline"]))
    first, _ = env.reset(seed=info.seed)
    env.close()
    assert np.array_equal(eps[0].obs[0], first)


def test_object_curve_prints_a_row_per_checkpoint() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "benchmarks/object_curve.py", "checkpoints/dreamer-pong", "--episodes", "1", "--json"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["step"] == 3000 and row["what"] == "ball" and len(row["recall"]) == 4 and row["psnr"][0] > 10


def test_the_car_is_found_in_every_real_frame_and_not_in_the_mean() -> None:
    pytest.importorskip("Box2D")
    env_id, pipeline = "CarRacing-v3", CATALOG["CarRacing-v3"].pipeline
    r, _, _ = real_rollouts(env_id, pipeline, episodes=2, steps=30)
    r.dream = r.real.copy()
    assert measure(r, env_id, pipeline).car_present == 1.0
    faded = r.real.copy()  # a dream whose car fades into the road from step 10, as a weak world's does
    red = (faded[..., 0] > 150) & (faded[..., 1] < 90) & (faded[..., 2] < 90)
    red[:, :10] = False
    faded[red] = (105, 105, 105)
    r.dream = faded
    card = measure(r, env_id, pipeline)
    assert card.car_present == 0.0 and not _checks(card)["the car in every frame of a 30-step dream"]


def test_cartpole_rollouts_stop_where_the_pole_falls() -> None:
    """Held keys topple CartPole: no real frame is taken past the episode's end, every dream still gets five
    context frames, and the moving-object measure covers the pole and cart."""
    import warnings

    model, meta = load_checkpoint("checkpoints/dreamer-cartpole")
    pipeline = FramePipeline.from_json(meta["pipeline"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns when a finished episode is stepped
        r, ctx, acts = real_rollouts("CartPole-v1", pipeline, episodes=4, steps=50)
    assert ctx.shape[:2] == (4, 5) and acts.shape[:2] == (4, 5)
    assert not r.valid.all() and all(v[: v.sum()].all() for v in r.valid)  # valid up to the fall, then not
    card = object_card(model, "CartPole-v1", pipeline, episodes=4, steps=20)
    assert card.ball_recall is None and card.car_present is None and card.moving_recall[0] is not None


def test_a_store_grows_with_its_own_frames(tmp_path) -> None:
    """More data for a run made before deterministic Atari (a resumed `wm train`) comes with the store's own
    pipeline: sticky keys and all, not the catalog's."""
    from wm_core.checkpoint import read_meta
    from wm_core.data import collect

    old = FramePipeline.from_json(read_meta("checkpoints/dreamer-pong")["pipeline"])
    store = collect("ALE/Pong-v5", 1, tmp_path / "data", pipeline=old, max_steps=10, num_envs=1)
    store = collect("ALE/Pong-v5", 1, tmp_path / "data", max_steps=10, num_envs=1, store=store)
    assert len(store) == 2 and store.pipeline == old

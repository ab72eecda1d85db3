"""Compare without a browser: the Compare tab's Session (hold rule, real env
on) and its SessionHub on two real tiny CartPole checkpoints (ha and
dreamer), checked against standalone Dreams and a separately replayed real env.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import torch
from test_hub import TINY_STEPS, train_tiny

import wm_core
from playground.hub import SessionHub
from wm_core.interactive import futures
from wm_core.interactive.futures import filmstrip, frame_divergence

# From the real context of seed 0 these keep the real pole up throughout (the tests check that they do).
KEYS = [["ArrowRight"], ["ArrowLeft"], ["ArrowRight"], [], ["ArrowLeft"], ["ArrowRight"], ["ArrowLeft"]]
KEYS += [["ArrowLeft", "ArrowRight"], [], ["ArrowLeft"], ["ArrowRight"], ["ArrowLeft"]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny CartPole runs of different families on one data set, and a tiny Pendulum run."""
    root = tmp_path_factory.mktemp("compare")
    ha = train_tiny(root / "ha-cartpole")
    dreamer, _ = wm_core.train_run(
        "dreamer", "CartPole-v1", preset="tiny", overrides={"steps": TINY_STEPS}, data=ha / "data",
        out=root / "dreamer-cartpole", device="cpu", command="wm train (test fixture)", checkpoint_every=0,
    )  # fmt: skip
    pendulum, _ = wm_core.train_run(
        "ha", "Pendulum-v1", preset="tiny", overrides={"steps": 2, "episodes": 2}, out=root / "ha-pendulum",
        device="cpu", command="wm train (test fixture)", checkpoint_every=0,
    )  # fmt: skip
    return {"ha": ha, "dreamer": dreamer, "pendulum": pendulum}


def session(runs: dict[str, Path], **kw) -> wm_core.Session:
    """A compare session of the ha and dreamer runs, reset."""
    s = wm_core.Session([runs["ha"], runs["dreamer"]], seed=kw.pop("seed", 0), real=True, hold=True, **kw)
    s.reset()
    return s


def test_one_key_stream_drives_every_dream_and_the_real_env(runs: dict[str, Path]) -> None:
    # Temperature 0 makes both families deterministic, so every panel can be checked frame for frame
    # against a standalone Dream of its model fed the actions the keys should give.
    s = session(runs, temperature=0.0)
    context_actions = list(s.actions)
    keys = wm_core.KeyController(s.keymap, s.spec)
    expected, shown = [], []
    for held in KEYS:
        before = s.frame.step
        f = s.tick(held)
        a = keys.action(held)
        if a is None:
            assert f.step == before, "the comparison stepped with no key held (CartPole has no idle action)"
            continue
        expected.append(a)
        shown.append(f)
    assert [f.step for f in shown] == list(range(1, len(expected) + 1))
    assert not shown[-1].real_ended, "pick keys that keep the real pole up, or this test checks nothing"
    assert [int(a) for a in s.actions] == [int(a) for a in context_actions + expected]
    assert len(set(expected)) == 2

    for i, model in enumerate(s.models):
        dream = wm_core.Dream(model, 0.0)
        dream.reset(s.context_frames, s.context_actions)
        for a, f in zip(expected, shown):
            frame, reward, ended, _ = dream.step(a)
            assert np.array_equal(f.panels[i].frame, frame), f"{s.labels[i]} got another action than the keys'"
            assert f.panels[i].reward == pytest.approx(reward)
            if ended:  # a predicted end holds the panel; nothing later can be compared
                break
    env = wm_core.make_env(s.env_id, s.pipeline)
    env.reset(seed=s.real_seed)
    for a in context_actions:
        env.step(a)
    ret = 0.0
    for a, f in zip(expected, shown):
        frame, r, *_ = env.step(a)
        ret += r
        assert np.array_equal(f.real, frame), "the real env got another action than the dreams"
    assert shown[-1].real_ret == pytest.approx(ret) and ret > 0
    assert s.labels[0].startswith("ha · step") and s.labels[1].startswith("dreamer · step")


def test_divergence_is_the_foreground_mse_against_the_real_frame(runs: dict[str, Path]) -> None:
    s = session(runs)
    f = s.tick(["ArrowRight"])
    for panel, mean in zip(f.panels, s.means):
        assert np.isfinite(panel.divergence) and panel.divergence > 0
        assert panel.divergence == pytest.approx(float(frame_divergence(panel.frame, f.real, mean)))
        # A "dream" that draws exactly the real frame does not diverge at all ...
        assert float(frame_divergence(f.real, f.real, mean)) == 0.0
        # ... and one that draws only the background (the mean frame) is charged for the missing cart and pole.
        background = (mean * 255 + 0.5).astype(np.uint8)
        assert float(frame_divergence(background, f.real, mean)) > 0.01
    batch = np.stack([f.real, f.panels[0].frame])
    assert frame_divergence(batch, f.real, s.means[0]).tolist() == pytest.approx([0.0, f.panels[0].divergence])


def test_mismatched_envs_and_counts_fail_clearly(runs: dict[str, Path]) -> None:
    with pytest.raises(ValueError) as info:
        wm_core.Session([runs["ha"], runs["pendulum"]])
    msg = str(info.value)
    assert "ha-cartpole (CartPole-v1)" in msg and "ha-pendulum (Pendulum-v1)" in msg
    assert "pick checkpoints trained on the same env" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="1 to 4 checkpoints, got 5"):
        wm_core.Session([runs["ha"]] * 5)
    with pytest.raises(ValueError, match="got 0"):
        wm_core.Session([])
    ha = wm_core.read_meta(runs["ha"])
    other = dict(ha, pipeline={**ha["pipeline"], "size": 32}, _dir="/x/ha-small-frames")
    assert "one frame pipeline" in wm_core.compare_problem([ha, other])
    assert wm_core.compare_problem([ha, wm_core.read_meta(runs["dreamer"])]) is None


def test_real_end_holds_everything_until_reset(runs: dict[str, Path]) -> None:
    s = session(runs)
    for _ in range(200):  # pushing one way topples the pole within a few dozen steps
        f = s.tick(["ArrowRight"])
        if f.real_ended:
            break
    assert f.real_ended and f.step < 200
    assert s.tick(["ArrowLeft"]) is f, "something stepped after the real episode ended"
    with pytest.raises(ValueError, match="press Reset"):
        s.dream_from_here(samples=2, horizon=3)
    g = s.reset()
    assert g.step == 0 and not g.real_ended and s.resets == 2
    assert s.tick(["ArrowLeft"]).step == 1


def twin_ticks(s: wm_core.Session, keys: list[list[str]]) -> list[wm_core.SessionFrame]:
    """Tick `s` with `keys` from a fixed torch seed."""
    torch.manual_seed(5)
    return [s.tick(k) for k in keys]


def test_dream_from_here(runs: dict[str, Path]) -> None:
    a, b = session(runs), session(runs)
    twin_ticks(a, KEYS[:3])
    twin_ticks(b, KEYS[:3])
    K, H = 3, 12
    fut = a.dream_from_here(samples=K, horizon=H, seed=11)
    n = len(fut.real)
    assert fut.dreams.shape == (2, K, H, 64, 64, 3) and fut.dreams.dtype == np.uint8
    assert fut.rewards.shape == fut.done_prob.shape == fut.divergence.shape == (2, K, H)
    assert 1 <= n <= H and fut.real.shape == (n, 64, 64, 3) and fut.actions.shape == (H,)
    assert np.isfinite(fut.divergence[:, :, :n]).all() and np.isnan(fut.divergence[:, :, n:]).all()
    assert fut.divergence[:, :, 0].max() > 0
    assert (fut.dreams[0, :, 1:] != fut.dreams[0, :1, 1:]).any(), "ha's K samples at temperature 1 are identical"

    # The real future is what a separately replayed env shows with the same actions.
    env = wm_core.make_env(a.env_id, a.pipeline)
    env.reset(seed=a.real_seed)
    for act in a.actions:
        env.step(act)
    for t, act in enumerate(fut.actions[:n]):
        frame, *_ = env.step(act)
        assert np.array_equal(frame, fut.real[t]), f"real future differs from a replayed env at step {t + 1}"

    # Same seed, same futures; the filmstrip and figure carry them.
    again = a.dream_from_here(samples=K, horizon=H, seed=11)
    assert np.array_equal(again.dreams, fut.dreams) and np.array_equal(again.actions, fut.actions)
    gap, S = 2, 64
    assert fut.filmstrip.dtype == np.uint8 and fut.columns == list(range(1, H + 1))
    height = (1 + 2 * K) * S + 2 * (3 * gap + (K - 1) * gap)  # real row, then 2 models: a wider gap before each
    assert fut.filmstrip.shape == (height, H * S + (H - 1) * gap, 3)
    assert np.array_equal(fut.filmstrip[:S, :S], fut.real[0])
    assert np.array_equal(fut.filmstrip[S + 3 * gap : 2 * S + 3 * gap, :S], fut.dreams[0, 0, 0])
    title = fut.figure.axes[0].get_title()
    assert f"{K} samples per model" in title and f"horizon {H}" in title and "temperature 1" in title
    assert len(fut.figure.axes[0].get_lines()) == 2

    # The live session goes on exactly as its twin that never dreamed from here.
    assert np.array_equal(a.frame.real, b.frame.real)
    rest_a, rest_b = twin_ticks(a, KEYS[3:]), twin_ticks(b, KEYS[3:])
    for fa, fb in zip(rest_a, rest_b):
        assert fa.step == fb.step and np.array_equal(fa.real, fb.real)
        assert all(np.array_equal(pa.frame, pb.frame) for pa, pb in zip(fa.panels, fb.panels))


def test_dream_from_here_closes_its_replay_env(runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The replayed copy of the real env that shows the real future is closed once the futures are drawn (it was
    kept on the session and never closed: a renderer or an emulator left open per session)."""
    opened, closed = [], []

    def tracked(*args, **kwargs):
        env = make_env(*args, **kwargs)
        opened.append(env)
        close = env.close
        env.close = lambda: (closed.append(env), close())[1]
        return env

    make_env = futures.make_env
    monkeypatch.setattr(futures, "make_env", tracked)
    s = session(runs)
    twin_ticks(s, KEYS[:2])
    for seed in (1, 2):
        s.dream_from_here(samples=1, horizon=3, seed=seed)
        assert len(opened) == seed and closed == opened, "the replay env outlived its dream from here"
    s.close()


def test_filmstrip_every_nth_step_and_end_marks() -> None:
    rng = np.random.default_rng(0)
    dreams = rng.integers(0, 256, (1, 2, 40, 8, 8, 3), dtype=np.uint8)
    real = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    ended = np.zeros((1, 2, 40), bool)
    ended[0, 1, 2] = True
    strip, cols = filmstrip(real, dreams, ended=ended, max_columns=15, gap=1)
    assert cols == list(range(3, 41, 3)) and strip.shape[1] == len(cols) * 9 - 1
    assert np.array_equal(strip[:8, :8], real[2]) and (strip[:8, 9 * 2 : 9 * 2 + 8] == 40).all()  # after the end
    row = lambda k: strip[8 + 3 + k * 9 : 16 + 3 + k * 9]  # noqa: E731
    assert np.array_equal(row(0)[:, :8], dreams[0, 0, 2])
    assert np.array_equal(row(1)[:, :8], (dreams[0, 1, 2] * np.float32(0.35)).astype(np.uint8)), "not dimmed"


def frame_of(b64: str) -> np.ndarray:
    """A tick's base64 frame -> (64, 64, 3) uint8."""
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(64, 64, 3)


def test_hub_loop_controls_and_dream_from_here(runs: dict[str, Path]) -> None:
    hub = SessionHub(hold=True)
    assert hub.tick("c", [])["ok"] is False and "Start" in hub.tick("c", [])["message"]
    assert hub.control("c", "pause") == "Start a comparison first."
    assert hub.dream_from_here("c", 2, 5) == ("Start a comparison first.", None)

    hub.start("c", [str(runs["ha"]), str(runs["dreamer"])])
    r = hub.tick("c", [])
    assert r["ok"] and r["step"] == 0 and r["waiting"] and len(r["panels"]) == 2
    assert frame_of(r["real"]).std() > 0
    r = hub.tick("c", ["ArrowRight"])
    assert r["step"] == 1 and not r["waiting"] and r["real_ret"] == pytest.approx(1.0)
    for p in r["panels"]:
        assert frame_of(p["frame"]).std() > 0 and np.isfinite(p["divergence"]) and 0 <= p["done_prob"] <= 1
    assert [p["label"].split(" ·")[0] for p in r["panels"]] == ["ha", "dreamer"]

    assert hub.control("c", "pause") == "paused"
    assert hub.tick("c", ["ArrowRight"])["step"] == 1
    assert hub.control("c", "pause") == "playing"
    assert hub.tick("c", ["ArrowRight"])["step"] == 2
    assert hub.control("c", "temperature", 0.5) == "temperature 0.50"
    hub.tick("c", ["ArrowLeft"])
    assert hub.get("c").session.temperature == pytest.approx(0.5)
    assert hub.control("c", "reset") == "new real context for every model"
    r = hub.tick("c", [])
    assert r["step"] == 0 and hub.get("c").session.resets == 2 and r["real_ret"] == 0
    with pytest.raises(ValueError, match="unknown control"):
        hub.control("c", "warp")

    text, fut = hub.dream_from_here("c", 2, 6, seed=1)
    assert fut is not None and fut.dreams.shape[:3] == (2, 2, 6) and "2 dreams per model for 6 steps" in text
    assert hub.tick("c", ["ArrowRight"])["paused"] is True, "dream from here should pause the comparison"
    assert hub.control("c", "pause") == "playing" and hub.tick("c", ["ArrowRight"])["step"] == 1


def test_hub_sessions_are_per_client_and_evicted(runs: dict[str, Path]) -> None:
    hub = SessionHub(hold=True, max_sessions=1)
    hub.start("a", [str(runs["ha"])])
    assert hub.tick("a", [])["ok"]
    hub.start("b", [str(runs["dreamer"])])
    assert hub.tick("a", [])["ok"] is False and hub.tick("b", [])["ok"]
    with pytest.raises(ValueError, match="same env"):
        hub.start("b", [str(runs["ha"]), str(runs["pendulum"])])
    assert hub.tick("b", [])["ok"], "a failed start must not drop the client's running comparison"

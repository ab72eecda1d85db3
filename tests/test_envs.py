"""Real gymnasium envs through the pixel pipeline, keymaps and key controllers (no mocks)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium
import numpy as np
import pytest

from wm_core.data.envs import (
    CATALOG,
    EnvEntry,
    EnvError,
    action_spec_of,
    env_entry,
    make_env,
    process_frame,
)
from wm_core.data.keys import KeyController, Keymap
from wm_core.spec import ActionSpec, FramePipeline


def _check_frame(frame: np.ndarray) -> None:
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert frame.std() > 0, "a blank frame"


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "ALE/Pong-v5"])
def test_catalog_frames_and_state(env_id: str) -> None:
    env = make_env(env_id)
    frame, info = env.reset(seed=0)
    _check_frame(frame)
    assert env.observation_space.shape == (64, 64, 3) and env.observation_space.contains(frame)
    frame, reward, terminated, truncated, info = env.step(env.action_spec.sample(np.random.default_rng(0)))
    _check_frame(frame)
    assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    np.testing.assert_array_equal(env.frame(), frame)
    if env_id.startswith("ALE/"):
        assert "state" not in info  # only classic-control envs expose their true state
    else:
        assert info["state"].dtype == np.float32 and info["state"].shape == env.env.observation_space.shape
    env.close()


def test_car_racing_frames_and_box_actions() -> None:
    env = make_env("CarRacing-v3")
    assert env.pipeline.source == "obs" and env.pipeline.action_repeat == 2
    assert env.action_spec == ActionSpec("box", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    frame, info = env.reset(seed=0)
    _check_frame(frame)
    assert "state" not in info
    for _ in range(2):
        frame, *_ = env.step(np.array([0.5, 1.0, 0.0]))
        _check_frame(frame)
    env.close()


def test_action_repeat_sums_rewards_and_stops_at_episode_end() -> None:
    raw = gymnasium.make("CartPole-v1")
    raw.reset(seed=3)
    n_raw = 1
    while not raw.step(0)[2]:
        n_raw += 1
    env = make_env("CartPole-v1", dataclasses.replace(CATALOG["CartPole-v1"].pipeline, action_repeat=3))
    env.reset(seed=3)
    rewards, terminated = [], False
    while not terminated:
        _, reward, terminated, _, _ = env.step(0)
        rewards.append(reward)
    # CartPole pays 1 per env step: every outer step sums 3, the last only the steps before termination.
    assert sum(rewards) == n_raw and all(r == 3.0 for r in rewards[:-1]) and 1 <= rewards[-1] <= 3


def test_any_registered_id_gets_a_generic_entry() -> None:
    assert "MountainCarContinuous-v0" not in CATALOG
    entry = env_entry("MountainCarContinuous-v0")
    assert entry.pipeline.source == "render"
    assert [(b.key, b.dim, b.sign) for b in entry.keymap.bindings] == [
        ("ArrowLeft", 0, -1.0),
        ("ArrowRight", 0, 1.0),
    ]
    env = make_env("MountainCarContinuous-v0")
    frame, info = env.reset(seed=0)
    _check_frame(frame)
    assert info["state"].shape == (2,)
    _check_frame(env.step(np.array([1.0]))[0])


def test_any_ale_id_uses_obs_and_action_meanings() -> None:
    assert "ALE/Freeway-v5" not in CATALOG
    env = make_env("ALE/Freeway-v5")
    assert env.pipeline.source == "obs" and env.action_spec.names == ("NOOP", "UP", "DOWN")
    keymap = env.entry.keymap
    assert keymap.idle_action == 0 and {b.key: b.action for b in keymap.bindings} == {
        "ArrowUp": 1,
        "ArrowDown": 2,
    }
    _check_frame(env.reset(seed=0)[0])


def test_unknown_id_and_missing_extra_raise_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for call in (env_entry, make_env):
        with pytest.raises(EnvError, match=r"unknown environment 'Foo-v0': see `wm envs`"):
            call("Foo-v0")
    fake = dataclasses.replace(CATALOG["CartPole-v1"], env_id="Fake-v0", requires="no_such_module", extra="atari")
    monkeypatch.setitem(CATALOG, "Fake-v0", fake)
    with pytest.raises(
        EnvError, match=r"Fake-v0 needs the 'atari' extra: pip install 'world-model-playground\[atari\]'"
    ):
        make_env("Fake-v0")


def test_unsupported_action_spaces_raise() -> None:
    for space in (gymnasium.spaces.MultiDiscrete([2, 3]), gymnasium.spaces.Box(-1, 1, (2, 2))):
        with pytest.raises(EnvError, match="not supported \\(Discrete or 1-D Box only\\)"):
            action_spec_of(space)
    assert action_spec_of(gymnasium.spaces.Discrete(3)) == ActionSpec("discrete", 3, names=("0", "1", "2"))
    assert action_spec_of(gymnasium.spaces.Box(-2, 2, (1,))) == ActionSpec("box", 1, (-2.0,), (2.0,))


def _pole_columns(env, x: float, theta: float) -> np.ndarray:
    env.unwrapped.state = np.array([x, 0.0, theta, 0.0])
    frame = env.frame().astype(int)
    # Row 20 of 64 is well above the cart (rows ~45-60): only the pole can be there.
    return np.flatnonzero((255 - frame[20]).max(-1) > 100)


def test_cartpole_pole_is_visible_and_its_angle_readable() -> None:
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    for x in (-1.5, 0.0, 1.5):
        upright = _pole_columns(env, x, 0.0)
        assert len(upright) >= 2, "the pole must be at least 2 px wide at 64x64"
        assert abs(upright.mean() - (x / 4.8 + 0.5) * 64) < 3, "the pole must stand above the cart"
        left, right = _pole_columns(env, x, -0.2), _pole_columns(env, x, 0.2)
        assert right.mean() - left.mean() >= 2, "pole angles must give clearly different frames"
    # Without thickening the 10-px pole is at most one column, often a faint smear.
    env.pipeline = dataclasses.replace(env.pipeline, thicken=0)
    assert max(len(_pole_columns(env, x, 0.0)) for x in np.linspace(-1.5, 1.5, 7)) <= 1


def test_key_controller_discrete_latest_press_wins_and_combos() -> None:
    entry = CATALOG["ALE/Pong-v5"]
    spec = ActionSpec("discrete", 6)
    kc = KeyController(entry.keymap, spec)
    assert kc.action([]) == 0  # NOOP when idle
    assert kc.action(["ArrowUp"]) == 2
    assert kc.action(["ArrowUp", "ArrowDown"]) == 3  # Down pressed later
    assert kc.action(["ArrowDown", "ArrowUp"]) == 3  # order in the set does not matter, press order does
    assert kc.action(["ArrowUp"]) == 2
    assert kc.action(["ArrowUp", "Shift"]) == 2  # unbound keys are ignored
    assert kc.action(["ArrowUp", " "]) == 4  # the combo beats the newer single key
    assert kc.action([" "]) == 1
    assert kc.action(["ArrowDown", " "]) == 5
    cartpole = KeyController(CATALOG["CartPole-v1"].keymap, ActionSpec("discrete", 2))
    assert cartpole.action([]) is None and cartpole.action(["x"]) is None
    assert cartpole.action(["ArrowRight"]) == 1 and cartpole.action(["ArrowRight", "ArrowLeft"]) == 0
    cartpole.reset()
    assert cartpole.action(["ArrowLeft", "ArrowRight"]) in (0, 1)
    assert KeyController(CATALOG["MountainCar-v0"].keymap, ActionSpec("discrete", 3)).action([]) == 1


def test_key_controller_box_ramps_decays_and_clips() -> None:
    spec = ActionSpec("box", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    kc = KeyController(CATALOG["CarRacing-v3"].keymap, spec)
    a = kc.action(["ArrowRight", "ArrowUp"])
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, [0.1, 0.05, 0.0], atol=1e-6)  # +0.1 of the half range per frame
    np.testing.assert_allclose(kc.action(["ArrowRight", "ArrowUp"]), [0.2, 0.1, 0.0], atol=1e-6)
    a[:] = 9.0  # the caller's copy must not feed back
    np.testing.assert_allclose(kc.action(["ArrowUp"]), [0.18, 0.15, 0.0], atol=1e-6)  # steer decays x0.9
    np.testing.assert_allclose(kc.action([]), [0.162, 0.135, 0.0], atol=1e-6)
    for _ in range(40):
        a = kc.action(["ArrowLeft", "ArrowDown"])
    np.testing.assert_allclose(a, [-1.0, 0.135 * 0.9**40, 1.0], atol=1e-6)  # clipped; gas decayed
    kc.reset()
    np.testing.assert_allclose(kc.action([]), [0.0, 0.0, 0.0])


def test_keymaps_round_trip_json_and_describe() -> None:
    for entry in CATALOG.values():
        km = entry.keymap
        assert Keymap.from_json(json.loads(json.dumps(km.to_json()))) == km
    assert CATALOG["CartPole-v1"].keymap.describe() == ["← push left", "→ push right"]
    assert "↑+Space up + fire" in CATALOG["ALE/Pong-v5"].keymap.describe()
    assert isinstance(CATALOG["CartPole-v1"], EnvEntry)


def test_process_frame_thickening_keeps_thin_lines() -> None:
    dark = np.full((256, 256, 3), 255, np.uint8)
    dark[:, 101] = 0  # a 1-px black line on white
    plain = process_frame(dark, FramePipeline())
    thick = process_frame(dark, FramePipeline(thicken=5))
    assert plain.shape == thick.shape == (64, 64, 3) and thick.dtype == np.uint8
    assert plain.min() > 180, "area resize alone washes a 1-px line out"
    assert thick.min() < 30 and (thick.min(-1) < 128).all(0).sum() == 1

    light = 255 - dark  # a 1-px white line on black
    assert process_frame(light, FramePipeline(thicken=5, thicken_mode="light")).max() > 225
    assert process_frame(light, FramePipeline(thicken=5, thicken_mode="dark")).max() == 0

    # crop (top, bottom, left, right) keeps only that window before resizing
    img = np.zeros((100, 200, 3), np.uint8)
    img[10:30, 50:70] = (255, 0, 0)
    out = process_frame(img, FramePipeline(crop=(10, 30, 50, 70), size=8))
    assert out.shape == (8, 8, 3) and (out == (255, 0, 0)).all()


def test_sigterm_still_stops_a_process_that_rendered_an_env() -> None:
    code = (
        "import time, wm_core; env = wm_core.make_env('CartPole-v1'); env.reset(seed=0); "
        "print('ready', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == -signal.SIGTERM
    finally:
        proc.kill()

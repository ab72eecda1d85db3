"""The controllability card on hand-made world models whose answer is known: a model that ignores its actions
(copy the last frame) and one that uses them the way the env does.

The full card (ΔtPSNR, the inverse-dynamics reader, action-blind) runs on a tiny gymnasium env registered
here, a 2x2 dot on a 16x16 torus that each action moves by 2 pixels: the reader trains a fixed 300 steps
(`IDM_STEPS`, not settable through `controllability`), which costs ~35 s per card on 64x64 Pong frames and
~3 s on these. ΔtPSNR, which needs no reader, is also checked on real scripted Pong data with a model that
moves the green paddle.
"""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from wm_core.data import HELDOUT_SEED_BASE, Episode, EpisodeStore, collect
from wm_core.evaluation.card import card_windows, open_loop, verdict
from wm_core.evaluation.controllability import DELTA_HORIZON, action_blind, controllability, delta_psnr
from wm_core.evaluation.model_card import Controllability, ModelCard
from wm_core.protocol import Capabilities, WorldModel
from wm_core.spec import FramePipeline

CONTEXT = 5


class FrameModel(WorldModel):
    """The state is the last frame; `imagine` makes the next one with `next_frame` (copy: action-blind)."""

    family = "test-copy-last"
    capabilities = Capabilities(decoder=True, probe_decoder=False, stochastic=False, temperature="ignored")

    def initial(self, batch_size: int) -> dict[str, torch.Tensor]:
        return {"frame": torch.zeros(batch_size, self.frame_size, self.frame_size, 3)}

    def observe(self, state, frame, prev_action):
        return {"frame": frame.float() / 255.0}

    def imagine(self, state, action, temperature=1.0, generator=None):
        return {"frame": self.next_frame(state["frame"], action.argmax(-1))}

    def next_frame(self, frame: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return frame.clone()

    def decode(self, state):
        return state["frame"]

    def reward(self, state):
        return torch.zeros(len(state["frame"]))

    def done(self, state):
        return torch.zeros(len(state["frame"]))

    def loss(self, batch):
        return torch.zeros(()), {"loss": 0.0}


# ---- a dot that the actions move --------------------------------------------------------------------
DOT_ID, DOT_SIZE = "WmTestDot-v0", 16
DOT_MOVES = {0: (0, 0), 1: (-2, 0), 2: (2, 0), 3: (0, -2), 4: (0, 2)}  # stay, up, down, left, right


class DotEnv(gymnasium.Env):
    """A white 2x2 dot on black, moved 2 pixels per step by the action; the field wraps around."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(0, 255, (DOT_SIZE, DOT_SIZE, 3), np.uint8)
        self.action_space = spaces.Discrete(len(DOT_MOVES))
        self.render_mode = render_mode

    def render(self) -> np.ndarray:
        frame = np.zeros((DOT_SIZE, DOT_SIZE, 3), np.uint8)
        frame[self.pos[0] : self.pos[0] + 2, self.pos[1] : self.pos[1] + 2] = 255
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.integers(0, DOT_SIZE // 2, size=2) * 2
        return self.render(), {}

    def step(self, action):
        self.pos = (self.pos + DOT_MOVES[int(action)]) % DOT_SIZE
        return self.render(), 0.0, False, False, {}


if DOT_ID not in gymnasium.registry:
    gymnasium.register(DOT_ID, entry_point=DotEnv, max_episode_steps=30)


class DotMover(FrameModel):
    """Moves the frame (the dot on black) the way the env moves the dot."""

    family = "test-dot-mover"

    def next_frame(self, frame, action):
        return torch.stack([torch.roll(f, DOT_MOVES[int(a)], (0, 1)) for f, a in zip(frame, action)])


@pytest.fixture(scope="module")
def dot_cards(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The controllability card of both models on 24 held-out random-policy dot episodes of 31 frames."""
    store = collect(
        DOT_ID, 24, tmp_path_factory.mktemp("dot"), split="heldout", seed=HELDOUT_SEED_BASE,
        pipeline=FramePipeline(source="obs", size=DOT_SIZE),
    )  # fmt: skip
    episodes = store.episodes()
    windows = card_windows(episodes, CONTEXT, DELTA_HORIZON, seed=0)
    out = {}
    for name, cls in (("blind", FrameModel), ("mover", DotMover)):
        model = cls(None, store.action_spec, DOT_SIZE)
        roll = open_loop(model, windows, CONTEXT, DELTA_HORIZON, temperature=1.0, seed=0)
        out[name] = {"card": controllability(model, episodes, roll, temperature=1.0, seed=0), "roll": roll}
    # The same frames with actions redrawn at random: actions no frame shows, as a push in CartPole at 64x64.
    rng = np.random.default_rng(0)
    unseen = [dataclasses.replace(e, act=rng.integers(0, 5, len(e))) for e in episodes]
    model = FrameModel(None, store.action_spec, DOT_SIZE)
    roll = open_loop(model, card_windows(unseen, CONTEXT, DELTA_HORIZON, seed=0), CONTEXT, DELTA_HORIZON, 1.0, 0)
    out["unseen"] = {"card": controllability(model, unseen, roll, temperature=1.0, seed=0), "roll": roll}
    return out


def test_reader_that_cannot_read_real_frames_gives_no_verdict(dot_cards: dict) -> None:
    card = dot_cards["unseen"]["card"]
    idm = card["inverse_dynamics"]
    assert idm["real"] < idm["chance"] + 0.1 * (1 - idm["chance"]), idm
    # Its dream score would pass an 80%-of-real bar by itself (both sit at chance); the card must not say so.
    assert idm["ratio"] is None and idm["note"].startswith("n/a"), idm
    assert verdict_row(card) is None
    assert card["action_blind"] is True  # ΔtPSNR (0 for a copying model) decides alone


def test_action_blind_model_is_called_blind(dot_cards: dict) -> None:
    card, roll = dot_cards["blind"]["card"], dot_cards["blind"]["roll"]
    delta, idm = card["delta"], card["inverse_dynamics"]
    # Same contexts, same sampling seed, and the actions change nothing: both dreams are the same frames.
    assert delta["delta_psnr"] == 0.0 and delta["stderr"] == 0.0 and delta["windows"] == 24
    assert delta["curve_logged"] == delta["curve_random"]
    # The reader does read real frames (it is no broken meter) ...
    assert idm["real"] > idm["chance"] + 0.3, idm
    # ... but a copied frame shows no move, so on every dreamed triple but the first of each window (whose two
    # context frames are real) it gives one answer whatever the action: it scores that action's share of the
    # commanded actions. The bound below is the commonest action's share (the random policy gives each ~1/5)
    # plus one window in 15.
    shares = np.bincount(roll["acts"][roll["valid"]], minlength=5) / roll["valid"].sum()
    assert shares.min() - 1 / DELTA_HORIZON <= idm["dream"] <= shares.max() + 1 / DELTA_HORIZON, (idm, shares)
    assert abs(idm["dream"] - idm["chance"]) < 0.1, idm
    assert card["action_blind"] is True


def test_action_using_model_answers_its_actions(dot_cards: dict) -> None:
    card, blind = dot_cards["mover"]["card"], dot_cards["blind"]["card"]
    delta, idm = card["delta"], card["inverse_dynamics"]
    # The logged actions reproduce the real future exactly (PSNR capped at 100 dB); random ones lose the dot.
    assert delta["psnr_logged"] == 100.0
    assert delta["delta_psnr"] > 10 and delta["delta_psnr"] > 10 * delta["stderr"], delta
    # The reader recognises the commanded moves in the dream about as well as in real frames (measured
    # 0.86 and 0.72), far above the blind model's 0.23.
    assert idm["dream"] > blind["inverse_dynamics"]["dream"] + 0.3, (idm, blind["inverse_dynamics"])
    assert idm["dream"] > 0.8 * idm["real"]
    assert card["action_blind"] is False
    assert idm["real"] == blind["inverse_dynamics"]["real"]  # one reader: same seed, same real triples


def verdict_row(ctrl: dict) -> bool | None:
    """The playable-world bar's inverse-dynamics check on a card holding only this controllability section."""
    card = ModelCard(family="dot", env_id="dot", step=0, controllability=Controllability.from_json(ctrl))
    checks = verdict(card)
    return next(c["passed"] for c in checks if c["check"].startswith("inverse dynamics"))


def test_action_blind_thresholds() -> None:
    """ΔtPSNR must exceed two standard errors, the dream's reader score a quarter of the way from chance;
    where the reader cannot read real frames (no ratio), ΔtPSNR decides alone."""
    idm = {"real": 0.8, "chance": 0.2, "ratio": 1.0}
    at_bar = 0.2 + 0.25 * 0.6
    assert action_blind({"delta_psnr": 0.2, "stderr": 0.1}, idm | {"dream": at_bar}) is True
    assert action_blind({"delta_psnr": 0.21, "stderr": 0.1}, idm | {"dream": at_bar}) is False
    assert action_blind({"delta_psnr": 0.0, "stderr": 0.1}, idm | {"dream": at_bar + 0.01}) is False
    assert action_blind({"delta_psnr": -1.0, "stderr": 0.1}, idm | {"dream": 0.1}) is True
    assert action_blind({"delta_psnr": None, "stderr": None}, idm | {"dream": 0.5}) is None
    assert action_blind({"delta_psnr": 1.0, "stderr": 0.1}, {"note": "n/a"}) is False
    assert action_blind({"delta_psnr": 0.1, "stderr": 0.1}, {"note": "n/a"}) is True
    assert action_blind({"delta_psnr": None, "stderr": None}, {"note": "n/a"}) is None


# ---- real Pong --------------------------------------------------------------------------------------
PADDLE_COLUMNS = slice(52, 60)  # the right (green) paddle's columns in the 64x64 Pong frame
BACKGROUND = torch.tensor([144, 72, 17]) / 255.0


def paddle_row(frame: np.ndarray) -> float:
    """Mean row of the green paddle's pixels (NaN when it is off the field)."""
    band = frame[:, PADDLE_COLUMNS]
    rows = np.nonzero((band[..., 1] > 150) & (band[..., 0] < 160))[0]
    return float(rows.mean()) if len(rows) else np.nan


def paddle_step(episodes: list[Episode]) -> int:
    """The paddle's typical move in one step under UP (2, 4) and DOWN (3, 5), in pixels (median)."""
    up, down = [], []
    for e in episodes:
        dy = np.diff([paddle_row(f) for f in e.obs])
        up += list(-dy[np.isin(e.act[1:], (2, 4))])
        down += list(dy[np.isin(e.act[1:], (3, 5))])
    return int(round((np.nanmedian(up) + np.nanmedian(down)) / 2))


class PaddleMover(FrameModel):
    """Copies the last frame and moves the green paddle's columns up (actions 2, 4) or down (3, 5)."""

    family = "test-paddle-mover"
    step = 4

    def next_frame(self, frame, action):
        out = frame.clone()
        for b, a in enumerate(action.tolist()):
            dy = -self.step if a in (2, 4) else self.step if a in (3, 5) else 0
            if dy:
                band = torch.roll(frame[b, :, PADDLE_COLUMNS], dy, 0)
                band[: max(dy, 0)] = BACKGROUND  # what rolled in from the other edge is background
                band[band.shape[0] + min(dy, 0) :] = BACKGROUND
                out[b, :, PADDLE_COLUMNS] = band
        return out


@pytest.fixture(scope="module")
def pong(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """Held-out scripted Pong, cut into 31-frame episodes (one open-loop window each)."""
    return collect(
        "ALE/Pong-v5", None, tmp_path_factory.mktemp("pong"), frames=2400, split="heldout",
        seed=HELDOUT_SEED_BASE, policy="scripted", max_steps=30,
    )  # fmt: skip


def test_delta_psnr_on_real_pong(pong: EpisodeStore) -> None:
    episodes = pong.episodes()
    step = paddle_step(episodes)
    assert 2 <= step <= 6, step  # measured 4 (median 4 up, 3 down): a few pixels of 64 per step
    windows = card_windows(episodes, CONTEXT, DELTA_HORIZON, seed=0)
    mover = PaddleMover(None, pong.action_spec)
    mover.step = step
    deltas = {}
    for name, model in (("blind", FrameModel(None, pong.action_spec)), ("mover", mover)):
        roll = open_loop(model, windows, CONTEXT, DELTA_HORIZON, temperature=1.0, seed=0)
        deltas[name] = delta_psnr(model, roll, temperature=1.0, seed=0)
    assert deltas["blind"]["delta_psnr"] == 0.0 and deltas["blind"]["stderr"] == 0.0
    assert deltas["blind"]["windows"] == deltas["mover"]["windows"] > 50
    # Moving the paddle the logged way follows the real paddle; random moves do not. The paddle is ~20
    # pixels of 4,096, so the gain is small in dB (measured 0.23 ± 0.04 over 78 windows) but clear.
    moved = deltas["mover"]
    assert moved["delta_psnr"] > 2 * moved["stderr"] and moved["delta_psnr"] > 0.05, moved
    assert moved["psnr_logged"] > deltas["blind"]["psnr_logged"]  # and it beats copying the last frame

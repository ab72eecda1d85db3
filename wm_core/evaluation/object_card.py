"""The object card: is the game still in the dream? Ball and paddle where reality has them, the paddle following
the held key, bricks that stay broken, CarRacing's car on screen, and the moving objects of any env.

A person-like key stream (each key held for 3-8 steps) drives the real env and the dream side by side from the
same five real context frames, on held-out seeds; the detectors of `objects.py` read both. Whole-frame PSNR
averages a 2-pixel ball away; these numbers do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import HELDOUT_SEED_BASE
from ..data.envs import make_env
from ..data.keys import KeyController, Keymap, _combo
from ..dream import Dream
from ..protocol import WorldModel
from ..spec import FramePipeline
from .model_card import ObjectCard
from .objects import CARS, GAMES, Game, car_present, detect, game_of, matched_objects, moving_masks

WINDOWS: tuple[tuple[int, int], ...] = ((1, 5), (6, 15), (16, 30), (31, 50))
BALL_RADIUS = 3.0  # pixels (at 64x64): a dream ball this close to the real one is "where reality has it"
MOVE = 0.5  # pixels: a paddle that moved less than this stood still
OBJECT_SEED_OFFSET = 7_000  # from the held-out seed base: disjoint from training and from the card's episodes
OBJECT_SEED = HELDOUT_SEED_BASE + OBJECT_SEED_OFFSET
OBJECT_EPISODES = 8


@dataclass
class Rollouts:
    """Real and dreamed frames under one held-key stream: (E, T, H, W, 3) each, `valid` (E, T) until the real
    episode ends, the actions (E, T, ...) and the real frame before step 1 (E, H, W, 3)."""

    real: np.ndarray
    dream: np.ndarray
    valid: np.ndarray
    actions: np.ndarray
    last_context: np.ndarray


def held_keys(keymap: Keymap, spec: Any, rng: np.random.Generator, steps: int) -> list[Any]:
    """Actions of a person-like key stream: one key (or none, where the env has a rest action) held 3-8 steps."""
    keys = [b.key for b in keymap.bindings if len(_combo(b.key)) == 1]
    if keymap.idle_action is not None or not spec.discrete:
        keys.append("")
    ctl, out, held, left = KeyController(keymap, spec), [], "", 0
    for _ in range(steps):
        if left == 0:
            held, left = keys[int(rng.integers(len(keys)))], int(rng.integers(3, 9))
        a = ctl.action([held] if held else [])
        out.append(a if a is not None else out[-1] if out else keymap.bindings[0].action)
        left -= 1
    return out


def _fire(keymap: Keymap) -> int | None:
    return next((b.action for b in keymap.bindings if b.key == " "), None)


def _warm_up(env: Any, seed: int, keys: list[Any], fire: int | None, context: int) -> tuple[list, list, bool]:
    """Play `keys` from a reset (FIRE first where the game has it: Breakout waits for it); an episode that ends
    on the way (CartPole falls under held keys) starts again with only `context` steps. Returns (frames,
    actions) from the reset on, at least `context` of each, and whether the episode ended even so."""
    for plan in (keys, keys[:context]):
        frames, acts, ended = [env.reset(seed=seed)[0]], [env.action_spec.zeros()], False
        for a in ([fire, fire] + plan[2:]) if fire is not None else plan:
            frame, _, term, trunc, _ = env.step(a)
            frames.append(frame)
            acts.append(a)
            if term or trunc:
                ended = True
                break
        if not ended:
            break
    pad = max(0, context - len(frames))
    return [frames[0]] * pad + frames, [acts[0]] * pad + acts, ended


def real_rollouts(
    env_id: str, pipeline: FramePipeline, episodes: int, steps: int, context: int = 5, seed: int = OBJECT_SEED
) -> tuple[Rollouts, np.ndarray, np.ndarray]:
    """The real side: (rollouts with `dream` empty, context frames (E, context, H, W, 3), their actions)."""
    env = make_env(env_id, pipeline)
    rng = np.random.default_rng(seed)
    keymap, spec, fire = env.entry.keymap, env.action_spec, _fire(env.entry.keymap)
    contexts, context_acts, plans, reals, valids = [], [], [], [], []
    try:
        for e in range(episodes):
            warm = held_keys(keymap, spec, rng, int(rng.integers(8, 30)) + context)
            frames, acts, ended = _warm_up(env, seed + e, warm, fire, context)
            frame = frames[-1]
            contexts.append(np.stack(frames[-context:]))
            context_acts.append(np.stack([np.asarray(a) for a in acts[-context:]]))
            plans.append(np.stack([np.asarray(a) for a in held_keys(keymap, spec, rng, steps)]))
            real, valid = np.zeros((steps,) + frame.shape, np.uint8), np.zeros(steps, bool)
            for k, a in enumerate([] if ended else plans[-1]):
                frame, _, term, trunc, _ = env.step(a)
                real[k], valid[k] = frame, True
                if term or trunc:
                    break
            reals.append(real)
            valids.append(valid)
    finally:
        env.close()
    ctx = np.stack(contexts)
    r = Rollouts(np.stack(reals), np.zeros((0,), np.uint8), np.stack(valids), np.stack(plans), ctx[:, -1])
    return r, ctx, np.stack(context_acts)


def object_rollouts(
    model: WorldModel, env_id: str, pipeline: FramePipeline, episodes: int = 8, steps: int = 50, context: int = 5,
    temperature: float = 1.0, seed: int = OBJECT_SEED,
) -> Rollouts:  # fmt: skip
    """Drive `episodes` real envs and one batched dream with the same held-key stream for `steps` steps."""
    r, contexts, context_acts = real_rollouts(env_id, pipeline, episodes, steps, context, seed)
    dream = Dream(model, temperature, seed=seed)
    dream.reset(contexts, context_acts)
    r.dream = np.zeros_like(r.real)
    for k in range(steps):
        r.dream[:, k] = dream.step(r.actions[:, k])[0]
    return r


def _rate(hits: np.ndarray, mask: np.ndarray) -> float | None:
    return float(hits[mask].mean()) if mask.any() else None


def _per_window(values: np.ndarray, mask: np.ndarray, windows: list[list[int]], fn=_rate) -> list:
    return [fn(values[:, lo - 1 : hi], mask[:, lo - 1 : hi]) for lo, hi in windows if lo <= values.shape[1]]


def _mean(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def _ball_lost(miss: np.ndarray, steps: int) -> float:
    """Median over dreams of the first step of two missed ones in a row (steps + 1 when never lost)."""
    firsts = []
    for row in miss:
        two = np.nonzero(row[:-1] & row[1:])[0]
        firsts.append(two[0] + 1 if len(two) else steps + 1)
    return float(np.median(firsts))


def _atari(card: ObjectCard, r: Rollouts, game: Game) -> None:
    E, T = r.valid.shape
    real = [detect(x, game) for x in r.real]
    dream = [detect(x, game) for x in r.dream]
    rb, db = np.stack([d.ball for d in real]), np.stack([d.ball for d in dream])  # (E, T, 2)
    dist = np.linalg.norm(rb - db, axis=-1)
    has_r, has_d = ~np.isnan(rb[..., 0]) & r.valid, ~np.isnan(db[..., 0]) & r.valid
    near = np.nan_to_num(dist, nan=np.inf) <= BALL_RADIUS
    w = card.windows
    card.ball_recall = _per_window(near, has_r, w)
    card.ball_precision = _per_window(near, has_d, w)
    card.ball_error = _per_window(dist, has_r & has_d, w, _mean)
    rp, dp = np.stack([d.paddle for d in real]), np.stack([d.paddle for d in dream])
    card.paddle_error = _per_window(np.abs(rp - dp), ~np.isnan(rp - dp) & r.valid, w, _mean)
    card.ball_lost_step = _ball_lost(has_r & ~near, T)
    card.paddle_follows = _paddle_follows(r, game, rp, dp)
    if game.bricks is not None:
        card.bricks_reappeared = sum(_reappeared(d.bricks, v) for d, v in zip(dream, r.valid))


def _paddle_follows(r: Rollouts, game: Game, rp: np.ndarray, dp: np.ndarray) -> float | None:
    """Of the held-key steps where the real paddle moved the way the key says, the share where the dream's did."""
    first_r = np.stack([detect(c[None], game).paddle[0] for c in r.last_context])[:, None]
    d_real = np.diff(np.concatenate([first_r, rp], 1), axis=1)
    d_dream = np.diff(np.concatenate([first_r, dp], 1), axis=1)
    sign = np.vectorize(lambda a: game.moves.get(int(a), 0))(r.actions.reshape(r.valid.shape))
    moved = (sign != 0) & r.valid & (np.nan_to_num(d_real * sign) >= MOVE)
    return _rate(np.nan_to_num(d_dream * sign) >= MOVE, moved)


def _reappeared(bricks: np.ndarray, valid: np.ndarray) -> int:
    """Brick cells (T, rows, cols) absent at some dream step and lit for two steps in a row later (the ball flying
    through a gap lights a cell for one step)."""
    b = bricks[valid]
    if len(b) < 3:
        return 0
    lit = b[1:] & b[:-1]  # lit at s and s + 1, indexed by s
    gone = np.maximum.accumulate(~b, axis=0)  # absent at some step <= t
    return int((lit[1:] & gone[:-2]).any(0).sum())


def _moving(card: ObjectCard, r: Rollouts) -> None:
    E, T = r.valid.shape
    stats = np.zeros((E, T, 4))
    for e in range(E):
        n = int(r.valid[e].sum())
        if n == 0:
            continue
        background = np.median(np.concatenate([r.last_context[e][None], r.real[e, :n]]), axis=0)
        mr, md = moving_masks(r.real[e, :n], background), moving_masks(r.dream[e, :n], background)
        for k in range(n):
            stats[e, k] = matched_objects(mr[k], md[k])
    card.moving_recall = [_ratio(stats[:, lo - 1 : hi], 1, 0) for lo, hi in card.windows if lo <= T]
    card.moving_precision = [_ratio(stats[:, lo - 1 : hi], 3, 2) for lo, hi in card.windows if lo <= T]


def _ratio(s: np.ndarray, num: int, den: int) -> float | None:
    total = s[..., den].sum()
    return float(s[..., num].sum() / total) if total else None


def measure(r: Rollouts, env_id: str, pipeline: FramePipeline) -> ObjectCard:
    """The object card of a set of rollouts."""
    E, T = r.valid.shape
    card = ObjectCard(env_id=env_id, episodes=E, steps=T, windows=[list(w) for w in WINDOWS if w[0] <= T])
    if (game := game_of(env_id, pipeline)) is not None:
        _atari(card, r, game)
    if env_id in CARS:
        present = np.stack([car_present(x, CARS[env_id]) | ~v for x, v in zip(r.dream, r.valid)])
        card.car_present = float(present.all(1).mean())
    _moving(card, r)
    return card


def object_card(
    model: WorldModel, env_id: str, pipeline: FramePipeline, episodes: int = OBJECT_EPISODES, steps: int | None = None,
    temperature: float = 1.0, seed: int = OBJECT_SEED,
) -> ObjectCard:  # fmt: skip
    """Roll the model beside the real env under held keys and measure what a player sees (CarRacing: 200 steps,
    for its car; otherwise 50)."""
    steps = steps or (200 if env_id in CARS else WINDOWS[-1][1])
    r = object_rollouts(model, env_id, pipeline, episodes, steps, temperature=temperature, seed=seed)
    return measure(r, env_id, pipeline)


def object_checks(card: ObjectCard) -> list[dict[str, Any]]:
    """The card's object targets as verdict checks: {"check", "passed", "value"}. A dream that loses its ball,
    lets its paddle ignore the keys, rebuilds bricks or drops the car fails here whatever its PSNR."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ok: bool) -> None:
        checks.append({"check": name, "passed": bool(ok and value is not None), "value": value})

    if card.ball_recall is not None:
        rec = card.ball_recall + [None] * (4 - len(card.ball_recall))
        late = [x for x in rec[2:] if x is not None]
        add("ball recall >= 0.9 over dream steps 1-5", rec[0], (rec[0] or 0) >= 0.9)
        add("ball recall >= 0.8 over steps 6-15", rec[1], (rec[1] or 0) >= 0.8)
        add("ball recall >= 0.5 over steps 16-50", min(late) if late else None, bool(late) and min(late) >= 0.5)
        err = card.ball_error[0] if card.ball_error else None
        add("ball error <= 3 px over steps 1-5", err, err is not None and err <= 3.0)
        add(
            "the paddle follows the held key in >= 95% of steps",
            card.paddle_follows,
            (card.paddle_follows or 0) >= 0.95,
        )
    if card.bricks_reappeared is not None:
        add("no brick reappears", card.bricks_reappeared, card.bricks_reappeared == 0)
    if card.car_present is not None:
        add(f"the car in every frame of a {card.steps}-step dream", card.car_present, card.car_present == 1.0)
    return checks


def format_objects(card: ObjectCard) -> list[str]:
    """Text lines of the object card for `wm eval` and the Inspect tab."""

    def row(name: str, vals: list | None, fmt: str) -> str:
        return f"  {name:<22}" + "".join(f"{'–' if v is None else format(v, fmt):>10}" for v in (vals or []))

    head = "  " + " " * 22 + "".join(f"{f'{lo}-{hi}':>10}" for lo, hi in card.windows)
    lines = [f"Objects ({card.episodes} held-key dreams beside the real env, dream steps):", head]
    for name, vals, fmt in (
        ("ball recall", card.ball_recall, ".2f"), ("ball precision", card.ball_precision, ".2f"),
        ("ball error px", card.ball_error, ".1f"), ("paddle error px", card.paddle_error, ".1f"),
        ("moving-object recall", card.moving_recall, ".2f"), ("moving precision", card.moving_precision, ".2f"),
    ):  # fmt: skip
        if vals is not None:
            lines.append(row(name, vals, fmt))
    if card.ball_lost_step is not None:
        lost = "never" if card.ball_lost_step > card.steps else f"step {card.ball_lost_step:.0f}"
        lines.append(f"  ball lost (median): {lost}; paddle follows the key: {_pct(card.paddle_follows)}")
    if card.bricks_reappeared is not None:
        lines.append(f"  bricks that reappeared: {card.bricks_reappeared}")
    if card.car_present is not None:
        lines.append(f"  dreams with the car in every frame: {_pct(card.car_present)}")
    return lines


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


__all__ = ["GAMES", "ObjectCard", "Rollouts", "format_objects", "measure", "object_card", "object_checks"]

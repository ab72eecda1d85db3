"""What a player sees, read off frames: the ball, the paddle and the bricks of Atari games, CarRacing's car, and
the moving objects of any env.

Whole-frame PSNR cannot see a ball that is 2 of 4,096 pixels, so the object card (`object_card.py`) reads
each real and dreamed frame with these detectors. The Atari detectors look for the game's palette (colours from
OCAtari's vision modules) and were calibrated against the emulator's RAM (AtariARI's annotations: Pong ball
x/y at 49/54 and player paddle at 51; Breakout ball x/y at 99/101 and paddle at 72); `ram_positions` gives the
RAM's view in frame pixels, and the tests hold the detectors to it. Positions are (x, y) in pixels of the
frame as the model sees it, for the catalog's crop; another crop gets the generic measure only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spec import FramePipeline

Band = tuple[float, float]  # a range of rows or columns, as fractions of the frame side


@dataclass(frozen=True)
class Sprite:
    """An object drawn in one colour over a one-colour background, looked for inside one box of the frame. The colour
    is the one the pipeline draws: a light thickening takes the channel-wise max of the object and background."""

    colour: tuple[int, int, int]
    rows: Band = (0.0, 1.0)
    cols: Band = (0.0, 1.0)
    max_width: float = 1.0  # wider components (as a fraction of the side) are something else: a row of bricks


@dataclass(frozen=True)
class Game:
    """The objects of one Atari game, their RAM addresses and the RAM -> frame-pixel calibration (at size 64)."""

    crop: tuple[int, int, int, int]
    thicken: int
    background: tuple[int, int, int]
    ball: Sprite
    paddle: Sprite
    paddle_axis: int  # 0: the paddle moves along x (Breakout), 1: along y (Pong)
    moves: dict[int, int]  # discrete action -> the sign it moves the paddle's coordinate
    ram_ball: tuple[int, int]  # RAM addresses of the ball's x and y
    ram_paddle: int
    ball_map: tuple[tuple[float, float], tuple[float, float]]  # (scale, offset) for x and y: pixel = s * ram + o
    paddle_map: tuple[float, float]
    bricks: tuple[Band, Band, int, int] | None = None  # rows, cols, and the grid's rows x columns


GAMES: dict[str, Game] = {
    "ALE/Pong-v5": Game(
        crop=(34, 194, 0, 160),
        thicken=4,
        background=(144, 72, 17),
        ball=Sprite((236, 236, 236)),
        paddle=Sprite((144, 186, 92), cols=(0.84, 0.94)),  # (92, 186, 92) after the light thickening's max
        paddle_axis=1,
        moves={2: -1, 4: -1, 3: 1, 5: 1},
        ram_ball=(49, 54),
        ram_paddle=51,
        ball_map=((0.399, -20.0), (0.396, -18.8)),
        paddle_map=(0.4, -16.6),
    ),
    "ALE/Breakout-v5": Game(
        crop=(32, 196, 8, 152),
        thicken=3,
        background=(0, 0, 0),
        ball=Sprite((200, 72, 72), rows=(0.19, 0.935), max_width=0.1),  # below the red bricks, above the paddle
        paddle=Sprite((200, 72, 72), rows=(0.935, 1.0)),
        paddle_axis=0,
        moves={2: 1, 3: -1},
        ram_ball=(99, 101),
        ram_paddle=72,
        ball_map=((0.4425, -25.1), (0.386, -8.2)),
        paddle_map=(0.431, -20.3),
        bricks=((0.15, 0.375), (0.0, 1.0), 6, 18),
    ),
}


def game_of(env_id: str, pipeline: FramePipeline) -> Game | None:
    """The Atari game whose detectors read this env's frames (None when the crop or thickening differs)."""
    game = GAMES.get(env_id)
    if game is None or pipeline.crop != game.crop or pipeline.thicken != game.thicken or pipeline.source != "obs":
        return None
    return game


def _alpha(frames: np.ndarray, colour: tuple[int, int, int], background: tuple[int, int, int]) -> np.ndarray:
    """How much of `colour` each pixel holds over `background` (0..1), zero where the pixel is another colour.

    An area resize blends a small object with the background, so an object pixel lies on the line from the
    background to the object's colour; pixels far off that line (another object's colour) count 0."""
    f = frames.astype(np.float32) - np.asarray(background, np.float32)
    v = np.asarray(colour, np.float32) - np.asarray(background, np.float32)
    a = (f @ v) / float(v @ v)
    off = np.linalg.norm(f - a[..., None] * v, axis=-1)
    return np.where((a > 0.25) & (off < 0.06 * np.linalg.norm(v) + 10.0), np.clip(a, 0.0, 1.0), 0.0)


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a 2-D bool mask: (labels with 0 for background and 1..n, n)."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:  # each pass spreads the smallest label one pixel further; stops when nothing changes
        p = np.pad(lab, 1, constant_values=big)
        nb = np.min([p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        new = np.where(mask, nb, big)
        if np.array_equal(new, lab):
            break
        lab = new
    ids, inverse = np.unique(np.where(mask, lab, 0), return_inverse=True)
    inverse = inverse.reshape(h, w)
    return (inverse if ids[0] == 0 else inverse + 1), len(ids) - (1 if ids[0] == 0 else 0)


def _box(size: int, rows: Band, cols: Band) -> tuple[slice, slice]:
    return slice(round(rows[0] * size), round(rows[1] * size)), slice(round(cols[0] * size), round(cols[1] * size))


def find_sprite(
    frame: np.ndarray, sprite: Sprite, background: tuple[int, int, int]
) -> list[tuple[float, float, float]]:
    """The components of `sprite`'s colour in one frame: [(x, y, mass)], heaviest first (mass = summed alpha)."""
    size = frame.shape[0]
    rs, cs = _box(size, sprite.rows, sprite.cols)
    alpha = np.zeros(frame.shape[:2], np.float32)
    alpha[rs, cs] = _alpha(frame[rs, cs], sprite.colour, background)
    labels, n = components(alpha > 0)
    found = []
    for i in range(1, n + 1):
        ys, xs = np.nonzero(labels == i)
        a = alpha[ys, xs]
        if xs.max() - xs.min() + 1 > max(2, sprite.max_width * size) or a.sum() < 0.6:
            continue  # too wide to be this object, or too faint to be seen
        found.append((float((xs * a).sum() / a.sum()), float((ys * a).sum() / a.sum()), float(a.sum())))
    return sorted(found, key=lambda t: -t[2])


@dataclass
class Detections:
    """Per frame of a sequence: ball (x, y) (NaN when absent), ball-like blobs, paddle coordinate, bricks."""

    ball: np.ndarray  # (T, 2)
    blobs: np.ndarray  # (T,) int
    paddle: np.ndarray  # (T,) NaN when absent
    bricks: np.ndarray | None  # (T, rows, cols) bool


def detect(frames: np.ndarray, game: Game) -> Detections:
    """Read the ball, paddle and bricks off frames (T, H, W, 3) uint8."""
    T = len(frames)
    ball, blobs, paddle = np.full((T, 2), np.nan), np.zeros(T, int), np.full(T, np.nan)
    for t, frame in enumerate(frames):
        found = find_sprite(frame, game.ball, game.background)
        blobs[t] = len(found)
        if found:
            ball[t] = found[0][:2]
        pads = find_sprite(frame, game.paddle, game.background)
        if pads:
            paddle[t] = pads[0][game.paddle_axis]
    return Detections(ball, blobs, paddle, brick_grid(frames, game) if game.bricks else None)


def brick_grid(frames: np.ndarray, game: Game) -> np.ndarray:
    """(T, rows, cols) bool: each brick cell lit (its middle brighter than the background) or not."""
    rows, cols, n_r, n_c = game.bricks
    size = frames.shape[1]
    rs, cs = _box(size, rows, cols)
    band = frames[:, rs, cs].astype(np.float32).max(-1)  # (T, h, w) brightest channel
    h, w = band.shape[1:]
    r_mid = ((np.arange(n_r) + 0.5) * h / n_r).astype(int)
    c_mid = ((np.arange(n_c) + 0.5) * w / n_c).astype(int)
    return band[:, r_mid][:, :, c_mid] > 60.0


def ram_positions(ram: np.ndarray, game: Game) -> tuple[np.ndarray, np.ndarray]:
    """The RAM's ball (T, 2) (NaN when no ball is in play) and paddle (T,) in frame pixels at size 64."""
    ram = np.asarray(ram, np.float64)
    (sx, ox), (sy, oy) = game.ball_map
    bx, by = ram[:, game.ram_ball[0]], ram[:, game.ram_ball[1]]
    ball = np.stack([sx * bx + ox, sy * by + oy], axis=1)
    lo, hi = (64 * r for r in game.ball.rows)  # outside its rows (Breakout's paddle rows) a ball is not looked for
    ball[(by == 0) | (ball[:, 0] < -1) | (ball[:, 0] > 64) | (ball[:, 1] < lo - 1) | (ball[:, 1] > hi)] = np.nan
    return ball, game.paddle_map[0] * ram[:, game.ram_paddle] + game.paddle_map[1]


# CarRacing's car sits still on screen while the track turns under it: its red pixels, inside this box.
CARS: dict[str, tuple[Band, Band]] = {"CarRacing-v3": ((0.66, 0.81), (0.44, 0.56))}


def car_present(frames: np.ndarray, box: tuple[Band, Band]) -> np.ndarray:
    """(T,) bool: at least 3 red car pixels inside the car's box of each frame (T, H, W, 3)."""
    rs, cs = _box(frames.shape[1], *box)
    f = frames[:, rs, cs].astype(np.int16)
    red = (f[..., 0] > 150) & (f[..., 1] < 90) & (f[..., 2] < 90)
    return red.sum((1, 2)) >= 3


def moving_masks(frames: np.ndarray, background: np.ndarray, threshold: int = 40) -> np.ndarray:
    """(T, H, W) bool: pixels that differ from the episode's static background by more than `threshold` levels."""
    return np.abs(frames.astype(np.int16) - background.astype(np.int16)).max(-1) > threshold


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """A 2-D (or stacked 3-D) bool mask grown by `r` pixels in every direction (a square neighbourhood)."""
    out = mask.copy()
    for axis in (mask.ndim - 2, mask.ndim - 1):
        grown, n = out.copy(), out.shape[axis]
        for s in range(1, r + 1):
            lo, hi = [slice(None)] * out.ndim, [slice(None)] * out.ndim
            lo[axis], hi[axis] = slice(0, n - s), slice(s, n)
            grown[tuple(hi)] |= out[tuple(lo)]
            grown[tuple(lo)] |= out[tuple(hi)]
        out = grown
    return out


def matched_objects(real: np.ndarray, dream: np.ndarray, r: int = 2) -> tuple[int, int, int, int]:
    """Moving objects of one frame pair (bool masks (H, W)): (real objects, real ones the dream draws within `r`
    pixels, dream objects, dream ones that reality has within `r` pixels). Objects are 8-connected components of
    2 or more pixels."""
    counts = []
    for a, b in ((real, dream), (dream, real)):
        labels, n = components(a)
        near = dilate(b, r)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        hit = np.bincount(labels.ravel(), weights=near.ravel(), minlength=n + 1)
        big = sizes[1:] >= 2
        counts += [int(big.sum()), int((big & (hit[1:] > 0)).sum())]
    return counts[0], counts[1], counts[2], counts[3]

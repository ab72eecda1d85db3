"""The model card as a typed record: `evaluate_checkpoint` fills a `ModelCard`, `wm eval` prints it, report.json
stores it (`to_json`), and the Inspect tab and the lessons read it back (`ModelCard.load`).

Every section is a small dataclass deriving from `Record`, which reads and writes JSON by its field types:
a field typed with a `Record` (or a list of them, or one or None) is read into that type, anything else is kept
as JSON. Reading is tolerant both ways: a key an older report.json lacks takes the field's default, and a key
this code does not know (a newer file) is kept in `extra` and written back unchanged.

To add a section: write its dataclass here (`@dataclass(kw_only=True)`, deriving from `Record`), add a field
`name: Section | None = None` to `ModelCard`, fill it in `wm_core.evaluation.report.evaluate_checkpoint`, and
print it in `wm_core.evaluation.card.format_card`. Files written before the section existed load with None.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from ..files import read_json_file

R = TypeVar("R", bound="Record")


@dataclass(kw_only=True)
class Record:
    """A JSON-backed section of the card: `from_json` / `to_json`, unknown keys kept in `extra`."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        """Read a section from its JSON dict (see the module docstring for how missing and unknown keys read)."""
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.__name__} section must be a JSON object, got {type(data).__name__}")
        hints = _hints(cls)
        known = {f.name for f in fields(cls) if f.name != "extra"}
        missing = [f.name for f in fields(cls) if f.name in known and f.name not in data and _required(f)]
        if missing:
            raise ValueError(f"not a {cls.__name__}: missing {', '.join(missing)}")
        values = {name: _read(hints[name], data[name]) for name in known if name in data}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def read(cls: type[R], data: dict[str, Any] | None) -> R | None:
        """`from_json`, or None where the producer had nothing to report (a section it returned as None)."""
        return None if data is None else cls.from_json(data)

    def to_json(self) -> dict[str, Any]:
        """The section as a JSON-ready dict (its `extra` keys included)."""
        out = {f.name: _write(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **out}


def _required(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _record_of(tp: Any) -> tuple[type[Record] | None, bool]:
    """(the Record class a field type holds, whether it holds a list of them); (None, False) for plain JSON."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) != 1:
            return None, False
        tp = inner[0]
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return (item, True) if isinstance(item, type) and issubclass(item, Record) else (None, False)
    return (tp, False) if isinstance(tp, type) and issubclass(tp, Record) else (None, False)


def _read(tp: Any, value: Any) -> Any:
    cls, many = _record_of(tp)
    if cls is None or value is None:
        return value
    return [cls.from_json(v) for v in value] if many else cls.from_json(value)


def _write(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_write(v) for v in value]
    if isinstance(value, dict):
        return {k: _write(v) for k, v in value.items()}
    return value


# ---- 1. open-loop prediction ---------------------------------------------------------------------------
@dataclass(kw_only=True)
class Scores(Record):
    """One predictor's error at one horizon: MSE, PSNR (dB) and foreground-masked MSE."""

    mse: float
    psnr: float
    fg_mse: float


@dataclass(kw_only=True)
class HorizonRow(Record):
    """One row of the open-loop table: the model beside copy-last-frame and mean-frame at horizon k (the scores
    are None when no held-out episode is long enough for k)."""

    k: int
    episodes: int = 0
    model: Scores | None = None
    copy_last: Scores | None = None
    mean_frame: Scores | None = None


@dataclass(kw_only=True)
class CurveSet(Record):
    """One predictor's errors at every k = 1..H."""

    mse: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    fg_mse: list[float] = field(default_factory=list)


@dataclass(kw_only=True)
class Curves(Record):
    """Error against horizon for the model and both baselines, with the episodes counted at each k."""

    k: list[int] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)
    model: CurveSet = field(default_factory=CurveSet)
    copy_last: CurveSet = field(default_factory=CurveSet)
    mean_frame: CurveSet = field(default_factory=CurveSet)


@dataclass(kw_only=True)
class Foreground(Record):
    """Which pixels the foreground-masked MSE scores."""

    threshold: float
    rule: str = ""


@dataclass(kw_only=True)
class HeldOut(Record):
    """The episodes the card was measured on: split, count, seeds, content hash, the policy that played them."""

    episodes: int | None = None
    frames: int | None = None
    content_hash: str | None = None
    seed: int | None = None
    split: str = "heldout"
    policies: dict[str, int] = field(default_factory=dict)
    windows: str = ""


@dataclass(kw_only=True)
class Budget(Record):
    """What the model cost to make, copied from its checkpoint (fields a run did not record are None)."""

    env_steps: int | None = None
    grad_steps: int | None = None
    train_seconds: float | None = None
    cpu_seconds: float | None = None
    device: str | None = None
    threads: int | None = None
    peak_rss_mb: float | None = None


# ---- 1b. controllability ---------------------------------------------------------------------------------
@dataclass(kw_only=True)
class DeltaPsnr(Record):
    """ΔtPSNR: PSNR with the logged actions minus PSNR with random ones from the same contexts."""

    horizon: int | None = None
    windows: int | None = None
    delta_psnr: float | None = None
    stderr: float | None = None
    psnr_logged: float | None = None
    psnr_random: float | None = None
    curve_logged: list[float] = field(default_factory=list)
    curve_random: list[float] = field(default_factory=list)


@dataclass(kw_only=True)
class InverseDynamics(Record):
    """An action reader trained on real frames, scored on real and on dreamed frames (`ratio` = dream / real)."""

    metric: str | None = None
    real: float | None = None
    dream: float | None = None
    chance: float | None = None
    ratio: float | None = None
    fit_triples: int | None = None
    real_triples: int | None = None
    dream_triples: int | None = None
    note: str | None = None


@dataclass(kw_only=True)
class Controllability(Record):
    """Does the dream answer its actions: ΔtPSNR, inverse dynamics, and the action-blind flag (None: no verdict)."""

    delta: DeltaPsnr = field(default_factory=DeltaPsnr)
    inverse_dynamics: InverseDynamics = field(default_factory=InverseDynamics)
    action_blind: bool | None = None


# ---- deeper sections -------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class LatentError(Record):
    """Imagined latent vs the filtered one over k, beside copying the last latent."""

    reference: str = ""
    temperature: float | None = None
    k: list[int] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)
    cos: list[float] = field(default_factory=list)
    copy_cos: list[float] = field(default_factory=list)
    rel_l2: list[float] = field(default_factory=list)
    copy_rel_l2: list[float] = field(default_factory=list)


@dataclass(kw_only=True)
class StateProbe(Record):
    """A linear probe from latent to the env's true state: R² of the model, of random twins, of raw frames."""

    names: list[str] = field(default_factory=list)
    frames: int | None = None
    folds: int | None = None
    r2_model: list[float] = field(default_factory=list)
    r2_random: list[float] = field(default_factory=list)
    r2_random_sd: list[float] | None = None
    r2_random_max: list[float] | None = None
    r2_random_runs: list[list[float]] | None = None
    twins: int = 1
    r2_pixels: list[float] | None = None
    pixel_components: int | None = None
    ridge: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class CounterfactualPlan(Record):
    """One action plan from the shared context: its dream against its replayed real future."""

    name: str
    fg_mse_vs_real: float | None = None
    real_steps: int = 0


@dataclass(kw_only=True)
class Counterfactual(Record):
    """Several action plans from one context: how far their dreams spread, and whether reality agrees."""

    horizon: int
    context: int | None = None
    temperature: float | None = None
    episode_seed: int | None = None
    dream_spread: float | None = None
    real_spread: float | None = None
    real_replayed: bool = False
    common_steps: int = 0
    sequences: list[CounterfactualPlan] = field(default_factory=list)


@dataclass(kw_only=True)
class StateCoverage(Record):
    """Action counts per bin of one true-state dimension."""

    name: str
    edges: list[float] = field(default_factory=list)
    counts: list[list[int]] = field(default_factory=list)


@dataclass(kw_only=True)
class Coverage(Record):
    """Which actions the training data took, and in which states."""

    kind: str = ""
    names: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    steps: int = 0
    state: list[StateCoverage] = field(default_factory=list)


@dataclass(kw_only=True)
class ObjectCard(Record):
    """What a player sees (`wm_core.evaluation.object_card`): per window of dream steps (`windows`), under held
    keys beside the real env; None where a measure does not apply to the env."""

    env_id: str
    episodes: int
    steps: int
    windows: list[list[int]] = field(default_factory=list)
    ball_recall: list[float | None] | None = None  # real balls the dream draws within the ball radius
    ball_precision: list[float | None] | None = None  # dream balls that reality has within the ball radius
    ball_error: list[float | None] | None = None  # pixels, where both draw a ball
    paddle_error: list[float | None] | None = None  # pixels along the paddle's axis
    ball_lost_step: float | None = None  # median over dreams of the first of two missed steps (steps + 1: never)
    paddle_follows: float | None = None  # held-key steps where the real paddle moved and the dream's moved alike
    bricks_reappeared: int | None = None  # brick cells gone in a dream that came back later in it
    car_present: float | None = None  # share of dreams with the car in every frame
    moving_recall: list[float | None] = field(default_factory=list)  # real moving objects the dream draws
    moving_precision: list[float | None] = field(default_factory=list)  # dream moving objects reality has


# ---- the card --------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class ModelCard(Record):
    """How we judge a model (DESIGN.md, "Model card"): one record per evaluated checkpoint. Sections a model
    or an older file lacks are None; `notes` say why a number is n/a."""

    family: str
    env_id: str
    step: int
    context: int = 5
    temperature: float = 1.0
    seed: int = 0
    decoded_by: str = "decoder"
    open_loop: list[HorizonRow] = field(default_factory=list)
    curves: Curves = field(default_factory=Curves)
    reward_mae: float | None = None
    end_f1: float | None = None
    notes: dict[str, str] = field(default_factory=dict)
    foreground: Foreground | None = None
    heldout: HeldOut = field(default_factory=HeldOut)
    budget: Budget = field(default_factory=Budget)
    controllability: Controllability | None = None
    latent: LatentError | None = None
    state_probe: StateProbe | None = None
    counterfactual: Counterfactual | None = None
    coverage: Coverage | None = None
    coverage_source: str = ""
    objects: ObjectCard | None = None

    def row(self, k: int) -> HorizonRow | None:
        """The open-loop row at horizon `k`, or None when the card has none with episodes there."""
        return next((r for r in self.open_loop if r.k == k and r.episodes and r.model is not None), None)

    @classmethod
    def load(cls, path: Path | str) -> ModelCard:
        """A saved report.json; a ValueError naming the file when it cannot be read as a card."""
        try:
            return cls.from_json(read_json_file(path))
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(f"{path} is not a readable model card: {e}") from e


__all__ = [
    "Budget",
    "Controllability",
    "Counterfactual",
    "CounterfactualPlan",
    "Coverage",
    "CurveSet",
    "Curves",
    "DeltaPsnr",
    "Foreground",
    "HeldOut",
    "HorizonRow",
    "InverseDynamics",
    "LatentError",
    "ModelCard",
    "ObjectCard",
    "Record",
    "Scores",
    "StateCoverage",
    "StateProbe",
]

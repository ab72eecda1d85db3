"""What a training run is, resolved once (`RunPlan`: its family, env entry, folders, config, and the checkpoint it
continues), where its data comes from (the episodes it collects or is given, reused after an interruption), and
the sampler that draws its training windows (under torchrun, each rank from its own shard). `wm train` and
`wm agent train` both start from a `RunPlan`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .checkpoint import load_checkpoint, recorded_data_dir
from .data import DataError, EpisodeStore, SequenceSampler, collect
from .data.envs import EnvEntry, env_entry
from .protocol import WorldModel
from .registry import get_family
from .run_checks import check_train_config, refuse_overwrite
from .spec import FramePipeline


@dataclass(frozen=True)
class RunPlan:
    """One run, resolved at its start and read-only after: the family's class, the env's catalog entry, the frame
    pipeline (a continued run's own), the run folder, the data folder (`own_data`: the run collects into it and
    tops it up; else a given store used as it is), the config, and for a continued run its model, checkpoint
    metadata and step."""

    family: type[WorldModel]
    entry: EnvEntry
    pipeline: FramePipeline
    run: Path
    data: Path
    own_data: bool
    config: Any
    model: WorldModel | None = None
    meta: dict[str, Any] | None = None
    step: int = 0

    @property
    def env_id(self) -> str:
        """The env's id."""
        return self.entry.env_id

    @property
    def family_name(self) -> str:
        """The family's registered name."""
        return self.family.family


def new_run(
    family: str, env_id: str, preset: str, overrides: dict[str, Any], data: Path | str | None, out: Path | str | None
) -> RunPlan:
    """A new run of `family` on `env_id` (config checked; ValueError if `out` already holds a checkpoint), into
    `out` (default runs/FAMILY-ENV), on the store `data` or on data it collects into RUN/data."""
    cls = get_family(family)
    config = cls.preset(preset, **overrides)
    check_train_config(family, config, env_id)
    entry = env_entry(env_id)
    run = Path(out) if out is not None else Path("runs") / f"{family}-{env_id.replace('/', '-')}"
    refuse_overwrite(run)
    return RunPlan(cls, entry, entry.pipeline, run, Path(data or run / "data"), data is None, config)


def continued_run(
    checkpoint: Path | str, device: torch.device, out: Path | str | None = None, data: Path | str | None = None
) -> RunPlan:
    """The run that `checkpoint` saved, to continue: its model on `device`, its env, config and data (the recorded
    store, else the run's own RUN/data); `out` and `data` replace its folder and its store."""
    model, meta = load_checkpoint(checkpoint, device)
    run = Path(out) if out is not None else Path(meta["_dir"])
    given = data or recorded_data_dir(meta)
    pipeline = FramePipeline.from_json(meta["pipeline"])
    return RunPlan(type(model), env_entry(meta["env_id"]), pipeline, run, Path(given or run / "data"), given is None,
                   model.config, model, meta, int(meta["step"]))  # fmt: skip


def data_budget(env_id: str, config: Any, entry: EnvEntry | None = None) -> tuple[int | None, int | None]:
    """(episodes, None) when the config asks for episodes, else (None, frames): its `frames` or the env's
    catalog default."""
    if getattr(config, "episodes", 0):
        return int(config.episodes), None
    return None, int(getattr(config, "frames", 0) or (entry or env_entry(env_id)).data_frames)


def collect_for_run(
    plan: RunPlan,
    policy: str | Any,
    seed: int,
    say: Callable[[str], None],
    on_collect: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> EpisodeStore:
    """The run's own store, topped up to the config's budget with `policy`. A store left by an interrupted run is
    reused: collection continues past the seeds it already holds."""
    data = plan.data
    store = EpisodeStore.open(data) if (data / "index.json").exists() else None
    episodes, frames = data_budget(plan.env_id, plan.config, plan.entry)
    have = 0 if store is None else (len(store) if episodes else store.num_frames)
    want = episodes or frames
    if have >= want:
        return store
    unit = "episodes" if episodes else "frames"
    say(
        f"collecting {want - have} {unit} of {plan.env_id} with the {getattr(policy, 'name', policy)} policy"
        + (f" ({have} already here)" if have else "")
    )
    rest = (want - have, None) if episodes else (None, want - have)
    return collect(
        plan.env_id, rest[0], data, frames=rest[1], seed=None if store else seed, policy=policy,
        progress=on_collect, should_stop=should_stop, store=store,
    )  # fmt: skip


def run_store(
    plan: RunPlan, policy: str | Any, seed: int, say: Callable[[str], None], collected: Callable[[int, int], None],
    should_stop: Callable[[], bool] | None,
) -> EpisodeStore:  # fmt: skip
    """The run's episode store: the given one (checked against the run's env), or its own collected with progress
    to `collected(frames, episodes)` (under torchrun by rank 0 while the other ranks wait)."""
    if not plan.own_data:
        store = EpisodeStore.open(plan.data)
        if store.env_id != plan.env_id:
            raise DataError(
                f"data in {plan.data} is from {store.env_id}, not {plan.env_id}: collect data for {plan.env_id}"
            )
        return store
    if distributed.is_main():
        store = collect_for_run(plan, policy, seed, say, collected, should_stop)
    distributed.barrier()
    store = store if distributed.is_main() else EpisodeStore.open(plan.data)
    if should_stop is not None and should_stop() and len(store) == 0:
        raise DataError("stopped before any episode was collected")
    return store


def run_sampler(store: EpisodeStore, model: WorldModel, seed: int, cache_mb: float, size: int) -> SequenceSampler:
    """Training windows through a replay buffer of at most `cache_mb` MiB of frames. Under torchrun each rank
    draws from its own shard of the episodes when the shard fits the buffer, else from its own random stream."""
    cfg, cache_frames = model.config, int(cache_mb * 2**20 / (3 * size**2))
    if distributed.world_size() > 1:
        seed += 1000 * distributed.rank()
        if store.num_frames <= cache_frames:
            episodes = [store.load(i) for i in distributed.shard(len(store))]
            if sum(len(ep) for ep in episodes) >= cfg.seq_len:
                return SequenceSampler(episodes, model.action_spec, cfg.seq_len, cfg.batch_size, seed=seed)
    return SequenceSampler(store, model.action_spec, cfg.seq_len, cfg.batch_size, seed=seed, cache_frames=cache_frames)

"""Where a training run's data comes from: the episodes it collects (or is given), reused after an interruption,
and the sampler that draws its training windows (under torchrun, each rank from its own shard)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import distributed
from .data import DataError, EpisodeStore, SequenceSampler, collect
from .data.envs import env_entry
from .protocol import WorldModel


def data_budget(env_id: str, config: Any) -> tuple[int | None, int | None]:
    """(episodes, None) when the config asks for episodes, else (None, frames): its `frames` or the env's
    catalog default."""
    if getattr(config, "episodes", 0):
        return int(config.episodes), None
    return None, int(getattr(config, "frames", 0) or env_entry(env_id).data_frames)


def collect_for_run(
    env_id: str,
    data: Path,
    config: Any,
    policy: str | Any,
    seed: int,
    say: Callable[[str], None],
    on_collect: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> EpisodeStore:
    """The run's own store at `data`, topped up to the config's budget with `policy`. A store left by an
    interrupted run is reused: collection continues past the seeds it already holds."""
    store = EpisodeStore.open(data) if (data / "index.json").exists() else None
    episodes, frames = data_budget(env_id, config)
    have = 0 if store is None else (len(store) if episodes else store.num_frames)
    want = episodes or frames
    if have >= want:
        return store
    unit = "episodes" if episodes else "frames"
    say(
        f"collecting {want - have} {unit} of {env_id} with the {getattr(policy, 'name', policy)} policy"
        + (f" ({have} already here)" if have else "")
    )
    rest = (want - have, None) if episodes else (None, want - have)
    return collect(
        env_id, rest[0], data, frames=rest[1], seed=None if store else seed, policy=policy,
        progress=on_collect, should_stop=should_stop, store=store,
    )  # fmt: skip


def open_run_data(
    s: Any, policy: str | Any, seed: int, say: Callable[[str], None], collected: Callable[[int, int], None],
    should_stop: Callable[[], bool] | None,
) -> EpisodeStore:  # fmt: skip
    """The run's episode store (`s` is the run's start: its data, run folder, env and config): the given one, or
    RUN/data collected with progress to `collected(frames, episodes)` (under torchrun by rank 0 while the other
    ranks wait)."""
    if s.data is not None:
        store = EpisodeStore.open(s.data)
        if store.env_id != s.env_id:
            raise DataError(f"data in {s.data} is from {store.env_id}, not {s.env_id}: collect data for {s.env_id}")
        return store
    s.data = s.run / "data"
    if distributed.is_main():
        store = collect_for_run(s.env_id, s.data, s.config, policy, seed, say, collected, should_stop)
    distributed.barrier()
    store = store if distributed.is_main() else EpisodeStore.open(s.data)
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

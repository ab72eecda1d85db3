"""One training loop for every family, and `train_run`, which goes from env id to a saved checkpoint.

The loop knows nothing about models beyond `loss(batch) -> (loss, metrics)` and `after_step()`.
"""

from __future__ import annotations

import ctypes
import resource
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import data_record, load_checkpoint, load_optimizer_state, recorded_data_dir, save_checkpoint
from .data import DataError, EpisodeStore, SequenceSampler, collect
from .data.coverage import action_coverage
from .data.envs import env_entry
from .protocol import WorldModel, make_optimizer
from .registry import get_family
from .spec import FramePipeline

MetricsCallback = Callable[[int, dict[str, float]], None]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when a GPU is visible, else cpu; a clear error for an unavailable 'cuda'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU: use --device auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device '{name}': choose auto, cpu or cuda")
    return torch.device(name)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
_KEPT: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the kernel: never trim
    the heap, and serve blocks up to 64 MiB from it rather than from fresh mmaps. A training step frees and
    reallocates its activations (tens of MiB); by default each reuse page-faulted them in again, which cost
    a jepa small step 42 ms of system time on top of 357 ms of compute (24,500 page faults per step; one
    thread, measured). The price: the process keeps its peak memory until it exits. Idempotent; a no-op
    (False) where the C library is not glibc."""
    global _KEPT
    if _KEPT is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            _KEPT = bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(M_MMAP_THRESHOLD, 64 << 20))
        except (OSError, AttributeError):
            _KEPT = False
    return _KEPT


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (every thread), in seconds."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


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
    policy: str,
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
        f"collecting {want - have} {unit} of {env_id} with the {policy} policy"
        + (f" ({have} already here)" if have else "")
    )
    rest = (want - have, None) if episodes else (None, want - have)
    return collect(
        env_id, rest[0], data, frames=rest[1], seed=None if store else seed, policy=policy,
        progress=on_collect, should_stop=should_stop, store=store,
    )  # fmt: skip


@dataclass
class TrainReport:
    """What a training run did, with its budget."""

    step: int
    metrics: dict[str, float]
    seconds: float
    device: str
    threads: int
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def gradient_step(
    model: WorldModel, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], device: torch.device,
    bf16: bool = False, step: int = 0,
) -> dict[str, float]:  # fmt: skip
    """One optimizer step on `model.loss(batch)`: the batch to `device`, bf16 autocast if asked, a finite-loss
    check, gradient clipping at the config's `grad_clip`, `after_step`; returns the loss's metrics and the
    gradient norm. The world-model trainer and the agent loop both step through here."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, metrics = model.loss(batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}; try a lower --lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), model.config.grad_clip))
    optimizer.step()
    model.after_step()
    return metrics


def budget_record(env_steps: int, grad_steps: int, seconds: float, cpu: float, device: torch.device | str) -> dict:
    """What a checkpoint records of its cost: env steps, gradient steps, wall and CPU seconds (counting earlier
    sessions of the run), device, torch threads and the process's peak memory."""
    return {
        "env_steps": int(env_steps),
        "grad_steps": int(grad_steps),
        "train_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


class Trainer:
    """Adam on `model.loss` over batches from a sampler; bf16 autocast optional; stops cleanly."""

    def __init__(self, model: WorldModel, sampler: SequenceSampler, *, device: torch.device, bf16: bool = False):
        keep_freed_memory()
        self.model = model.to(device)
        self.sampler = sampler
        self.device = device
        self.bf16 = bf16
        self.optimizer = make_optimizer(model, model.config.lr)

    def run(
        self,
        steps: int,
        *,
        start_step: int = 0,
        log_every: int = 25,
        on_metrics: MetricsCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        progress: bool = False,
    ) -> TrainReport:
        """Train from `start_step` up to `steps` total gradient steps; returns the report."""
        from tqdm import tqdm

        model, cfg = self.model, self.model.config
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        n, last, history = 0, {}, []
        bar = tqdm(total=steps, initial=start_step, disable=not progress, unit="step", dynamic_ncols=True)
        step, stopped = start_step, False
        while step < steps:
            if should_stop is not None and should_stop():
                stopped = True
                break
            if getattr(cfg, "lr_decay", 1.0) != 1.0:  # linear decay to lr * lr_decay at the last step
                scale = 1.0 - (1.0 - cfg.lr_decay) * step / max(1, steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * group.get("lr_scale", 1.0) * scale
            metrics = gradient_step(model, self.optimizer, self.sampler.sample(), self.device, self.bf16, step)
            step += 1
            n += 1
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if step % log_every == 0 or step == steps:
                elapsed = time.perf_counter() - t0
                last = {k: v / n for k, v in sums.items()}
                last.update(step=step, seconds=elapsed, steps_per_s=(step - start_step) / max(elapsed, 1e-9))
                history.append(last)
                sums, n = {}, 0
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                if on_metrics is not None:
                    on_metrics(step, last)
            bar.update(1)
            if on_step is not None:
                on_step(step, last)
        bar.close()
        model.eval()
        threads = torch.get_num_threads()
        return TrainReport(step, last, time.perf_counter() - t0, str(self.device), threads, stopped, history)


def cli_command(argv: list[str] | None = None) -> str:
    """The command line that is running, as one shell-quoted string (recorded in checkpoints)."""
    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(("wm", "cli.py", "__main__.py")):
        args[0] = "wm"
    return shlex.join(args)


RESUME_OVERRIDES = ("steps", "episodes", "frames")  # what `train_run(resume=...)` may change; the rest is the run's


def train_run(
    family: str | None = None,
    env_id: str | None = None,
    *,
    preset: str = "small",
    overrides: dict[str, Any] | None = None,
    data: Path | str | None = None,
    out: Path | str | None = None,
    resume: Path | str | None = None,
    device: str = "auto",
    bf16: bool = False,
    slim: bool = False,
    seed: int = 0,
    policy: str = "scripted",
    cache_mb: float = 1024.0,
    command: str = "",
    on_status: Callable[[str], None] | None = None,
    on_collect: Callable[[int, int], None] | None = None,
    on_metrics: MetricsCallback | None = None,
    on_preview: Callable[[int, WorldModel, list], None] | None = None,
    preview_every: int = 100,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int = 500,
    progress: bool = False,
) -> tuple[Path, TrainReport]:
    """Collect data if needed, build (or resume) a model, train it, save it; returns (run dir, report).

    `slim` saves weights without optimizer state (a third the size; resuming restarts Adam's moments).
    Without `data`, the run collects into RUN/data with `policy` (see `collect_for_run`); training samples
    through a replay buffer of at most `cache_mb` MiB of frames, so memory stays bounded whatever the data.
    With `resume`, family, env, config and data come from that checkpoint and training continues to
    `overrides["steps"]` (default: the config's steps) with the saved optimizer state; overrides other than
    `RESUME_OVERRIDES` raise a ValueError rather than being ignored.
    """
    say = on_status or (lambda _msg: None)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    overrides = dict(overrides or {})
    if resume is not None:
        fixed = sorted(k for k, v in overrides.items() if v is not None and k not in RESUME_OVERRIDES)
        if fixed:
            flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
            raise ValueError(
                f"--resume continues a run with its own config; {flags} cannot change it (only "
                f"{' and '.join('--' + k for k in RESUME_OVERRIDES)} can): start a new run with --out to train "
                "with other settings"
            )
        model, meta = load_checkpoint(resume, dev)
        family, env_id = meta["family"], meta["env_id"]
        pipeline = FramePipeline.from_json(meta["pipeline"])
        run = Path(out) if out is not None else Path(meta["_dir"])
        data = data or recorded_data_dir(meta)
        start = int(meta["step"])
        for key in RESUME_OVERRIDES:
            if overrides.get(key) is not None:
                setattr(model.config, key, int(overrides[key]))
    else:
        if family is None or env_id is None:
            raise ValueError("train_run needs a family and an env id (or resume=RUN)")
        cls = get_family(family)
        config = cls.preset(preset, **overrides)
        pipeline = env_entry(env_id).pipeline
        run = Path(out) if out is not None else Path("runs") / f"{family}-{env_id.replace('/', '-')}"
        meta, start, model = None, 0, None

    cfg = model.config if model is not None else config
    if data is not None:
        store = EpisodeStore.open(data)
        if store.env_id != env_id:
            raise DataError(f"data in {data} is from {store.env_id}, not {env_id}: collect data for {env_id}")
    else:
        data = run / "data"
        store = collect_for_run(env_id, data, cfg, policy, seed, say, on_collect, should_stop)
    if should_stop is not None and should_stop() and len(store) == 0:
        raise DataError("stopped before any episode was collected")

    if model is None:
        model = get_family(family)(config, store.action_spec, pipeline.size)
        model.set_frame_mean(store.mean_frame())
    cfg = model.config
    cache_frames = int(cache_mb * 2**20 / (3 * pipeline.size**2))
    sampler = SequenceSampler(
        store, store.action_spec, cfg.seq_len, cfg.batch_size, seed=seed + start, cache_frames=cache_frames
    )
    trainer = Trainer(model, sampler, device=dev, bf16=bf16)
    if meta is not None:
        load_optimizer_state(meta, trainer.optimizer)
    command = command or cli_command()
    coverage = action_coverage(
        [store.load(i, frames=False) for i in range(len(store))], store.action_spec, env_entry(env_id).state_names
    )
    preview_eps = [store.load(i) for i in range(min(3, len(store)))]
    prior = (meta or {}).get("budget", {})
    prior_seconds, prior_cpu = float(prior.get("train_seconds", 0.0)), float(prior.get("cpu_seconds", 0.0))

    def save(step: int, metrics: dict[str, float], seconds: float = 0.0) -> None:
        budget = budget_record(store.num_frames, step, prior_seconds + seconds, prior_cpu + cpu_seconds(), dev)
        data_info = {"dir": data_record(data, run), **store.summary(), "coverage": coverage}
        extra = {"data": data_info, "budget": budget}
        save_checkpoint(
            run,
            model,
            env_id=env_id,
            pipeline=pipeline,
            step=step,
            metrics=metrics,
            command=command,
            optimizer=None if slim else trainer.optimizer,
            extra=extra,
        )

    say(f"training {family} on {env_id}: {cfg.steps} steps on {dev} ({torch.get_num_threads()} threads)")
    t0 = time.perf_counter()

    def on_step(step: int, metrics: dict[str, float]) -> None:
        if checkpoint_every and step % checkpoint_every == 0 and step < cfg.steps:
            save(step, metrics, time.perf_counter() - t0)
        if on_preview is not None and preview_every and (step % preview_every == 0 or step == cfg.steps):
            on_preview(step, model, preview_eps)
            model.train()  # the preview's dream switched it to eval mode

    report = trainer.run(
        cfg.steps,
        start_step=start,
        log_every=max(1, min(25, cfg.steps // 40)),
        on_metrics=on_metrics,
        should_stop=should_stop,
        on_step=on_step,
        progress=progress,
    )
    save(report.step, report.metrics, report.seconds)
    say(f"saved {run} at step {report.step}" + (" (stopped early)" if report.stopped else ""))
    return run, report

"""One training loop for every family, and `train_run`, which goes from env id to a saved checkpoint.

The loop knows nothing about models beyond `loss(batch) -> (loss, metrics)` and `after_step()`.
"""

from __future__ import annotations

import resource
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from . import distributed
from .checkpoint import data_record, load_optimizer_state, save_checkpoint
from .data import EpisodeStore, SequenceSampler
from .data.coverage import action_coverage
from .memory import keep_freed_memory
from .protocol import WorldModel, make_optimizer
from .run_checks import check_resume
from .run_data import RunPlan, continued_run, new_run, run_sampler, run_store

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


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (every thread), in seconds."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


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


@dataclass(frozen=True)
class LrSchedule:
    """The learning rate as a share `progress` (0 to 1) of a run goes by: `lr` at the start, `lr * end` at the end,
    reached linearly (`wm train`: the config's `lr_decay`, by gradient step) or exponentially (`wm agent train`:
    `wm_lr_decay`, by share of the budget, as MuZero decays its rate with training steps). Each optimizer
    group keeps its `lr_scale` (see `make_optimizer`)."""

    lr: float
    end: float = 1.0
    shape: Literal["linear", "exponential"] = "linear"

    @classmethod
    def of(cls, config: Any) -> LrSchedule:
        """A world-model config's own schedule: linear to `lr * lr_decay` at its last step."""
        return cls(float(config.lr), float(getattr(config, "lr_decay", 1.0)))

    def share(self, progress: float) -> float:
        """The rate at `progress` as a share of `lr`."""
        p = min(max(float(progress), 0.0), 1.0)
        return 1.0 - (1.0 - self.end) * p if self.shape == "linear" else self.end**p

    def apply(self, optimizer: torch.optim.Optimizer, progress: float) -> None:
        """Set every group's rate for `progress`."""
        share = self.share(progress)
        for group in optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_scale", 1.0) * share


def gradient_step(
    model: WorldModel, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], device: torch.device,
    bf16: bool = False, step: int = 0, loss_fn: Callable[[dict], tuple[torch.Tensor, dict]] | None = None,
) -> dict[str, float]:  # fmt: skip
    """One optimizer step on `model.loss(batch)` (or `loss_fn`, e.g. the DDP-wrapped loss): the batch to `device`,
    bf16 autocast if asked, a finite-loss check, gradient clipping at the config's `grad_clip`, `after_step`;
    returns the loss's metrics and the gradient norm. The world-model trainer and the agent loop both step
    through here."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, metrics = (loss_fn or model.loss)(batch)
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
    sessions of the run; CPU over every rank), device, the processes that trained together (`world_size`), torch
    threads and the peak memory of the process that saves."""
    return {
        "env_steps": int(env_steps),
        "grad_steps": int(grad_steps),
        "train_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "device": str(device),
        "world_size": distributed.world_size(),
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


class Trainer:
    """Adam on `model.loss` over batches from a sampler, on `device`: bf16 autocast optional, DDP-wrapped under
    torchrun, the learning rate following `schedule` (default: the config's own, `LrSchedule.of`); stops cleanly.
    Build a run's trainer with `build_trainer`."""

    def __init__(
        self, model: WorldModel, sampler: SequenceSampler | None = None, *, device: torch.device, bf16: bool = False,
        schedule: LrSchedule | None = None,
    ) -> None:  # fmt: skip
        keep_freed_memory()
        self.model = model.to(device)
        self.sampler = sampler
        self.device = device
        self.bf16 = bf16
        self.schedule = schedule or LrSchedule.of(model.config)
        self.optimizer = make_optimizer(model, model.config.lr)
        self.loss_fn = distributed.wrap(self.model, device)  # the model's loss, DDP-wrapped under torchrun

    def step(self, batch: dict[str, torch.Tensor], step: int, progress: float) -> dict[str, float]:
        """Gradient step number `step` + 1 on `batch` at `progress` (0 to 1) through the schedule; its metrics."""
        self.schedule.apply(self.optimizer, progress)
        metrics = gradient_step(self.model, self.optimizer, batch, self.device, self.bf16, step, self.loss_fn)
        distributed.record_checksum(self.model, step + 1)
        return metrics

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

        model = self.model
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
            metrics = self.step(self.sampler.sample(), step, step / max(1, steps))
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


def build_trainer(
    plan: RunPlan, store: EpisodeStore, device: torch.device, bf16: bool = False, schedule: LrSchedule | None = None
) -> Trainer:
    """The run's model and its trainer, as `wm train` and `wm agent train` both build them: the continued model
    with its saved optimizer state, or a new one of the plan's family for `store`'s actions and mean frame; on
    `device`, with bf16 autocast if asked and DDP under torchrun. The trainer's sampler is the caller's."""
    model = plan.model
    if model is None:
        model = plan.family(plan.config, store.action_spec, plan.pipeline.size)
        model.set_frame_mean(store.mean_frame())
    trainer = Trainer(model, device=device, bf16=bf16, schedule=schedule)
    if plan.meta is not None:
        load_optimizer_state(plan.meta, trainer.optimizer)
    return trainer


def cli_command(argv: list[str] | None = None) -> str:
    """The command line that is running, as one shell-quoted string (recorded in checkpoints): `wm ...`, or under
    torchrun the torchrun line that launched every rank (`distributed.launch_argv`), so re-running it makes the
    same run."""
    if argv is None and (launched := distributed.launch_argv()):
        return shlex.join(launched)
    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(("wm", "cli.py", "__main__.py")):
        args[0] = "wm"
    return shlex.join(args)


RESUME_OVERRIDES = ("steps", "episodes", "frames")  # what `train_run(resume=...)` may change; the rest is the run's


@dataclass
class TrainEvent:
    """What a training run reports as it goes; the CLI prints it, the Train tab shows it.

    kind "status": a line of text; "collect": data collection progress (`frames`, `episodes` so far);
    "metrics": the running means of the loss's metrics at `step`; "preview": `model` at `step` with a few
    training `episodes`, to draw an open-loop preview of (leave the model as you found it); "saved": the run
    was saved at `step` (`message` says where)."""

    kind: Literal["status", "collect", "metrics", "preview", "saved"]
    message: str = ""
    step: int = 0
    frames: int = 0
    episodes: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    model: WorldModel | None = None
    preview_episodes: list = field(default_factory=list)


EventCallback = Callable[[TrainEvent], None]


def _plan(
    family: str | None, env_id: str | None, preset: str, overrides: dict[str, Any], data: Path | str | None,
    out: Path | str | None, resume: Path | str | None, dev: torch.device,
) -> RunPlan:  # fmt: skip
    """Resume `resume` (its family, env, config and data; only RESUME_OVERRIDES may change) or plan a new run."""
    if resume is None:
        if family is None or env_id is None:
            raise ValueError("train_run needs a family and an env id (or resume=RUN)")
        return new_run(family, env_id, preset, overrides, data, out)
    check_resume(overrides, RESUME_OVERRIDES)
    plan = continued_run(resume, dev, out, data)
    for key in RESUME_OVERRIDES:
        if overrides.get(key) is not None:
            setattr(plan.config, key, int(overrides[key]))
    return plan


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
    policy: str | Any = "scripted",
    cache_mb: float = 1024.0,
    command: str = "",
    on_event: EventCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int = 500,
    preview_every: int = 0,
    progress: bool = False,
) -> tuple[Path, TrainReport]:
    """Collect data if needed, build (or resume) a model, train it, save it; returns (run dir, report).

    `slim` saves weights without optimizer state (a third the size; resuming restarts Adam's moments).
    Without `data`, the run collects into RUN/data with `policy` (a name, or a policy object such as a trained
    agent's, `wm_core.agents.policy.data_policy`; see `collect_for_run`); training samples
    through a replay buffer of at most `cache_mb` MiB of frames, so memory stays bounded whatever the data.
    With `resume`, family, env, config and data come from that checkpoint and training continues to
    `overrides["steps"]` (default: the config's steps) with the saved optimizer state; overrides other than
    `RESUME_OVERRIDES` raise a ValueError rather than being ignored. Progress goes to `on_event` as
    `TrainEvent`s (a "preview" every `preview_every` steps when it is > 0); `should_stop()` ends the run early
    with a resumable checkpoint.
    """
    main = distributed.is_main()  # under torchrun only rank 0 reports and saves
    emit = on_event if on_event is not None and main else (lambda _e: None)
    dev = distributed.start(resolve_device(device))
    torch.manual_seed(seed)  # a training run seeds the global stream; dreams and evaluations use their own
    plan = _plan(family, env_id, preset, dict(overrides or {}), data, out, resume, dev)
    say = lambda msg: emit(TrainEvent("status", msg))  # noqa: E731
    collected = lambda frames, episodes: emit(TrainEvent("collect", frames=frames, episodes=episodes))  # noqa: E731
    store = run_store(plan, policy, seed, say, collected, should_stop)
    trainer = build_trainer(plan, store, dev, bf16)
    model, cfg = trainer.model, trainer.model.config
    trainer.sampler = run_sampler(store, model, seed + plan.step, cache_mb, plan.pipeline.size)
    save = _saver(plan, store, trainer, command or cli_command(), slim)
    preview_eps = [store.load(i) for i in range(min(3, len(store)))] if preview_every else []
    say(f"training {plan.family_name} on {plan.env_id}: {cfg.steps} steps on {dev} ({torch.get_num_threads()} threads)")
    t0 = time.perf_counter()

    def on_step(step: int, metrics: dict[str, float]) -> None:
        if checkpoint_every and step % checkpoint_every == 0 and step < cfg.steps:
            save(step, metrics, time.perf_counter() - t0)  # every rank: the CPU-seconds are summed over them
        if preview_every and (step % preview_every == 0 or step == cfg.steps):
            emit(TrainEvent("preview", step=step, model=model, preview_episodes=preview_eps))
            model.train()  # drawing the preview switched it to eval mode

    report = trainer.run(cfg.steps, start_step=plan.step, log_every=max(1, min(25, cfg.steps // 40)),
                         on_metrics=lambda step, m: emit(TrainEvent("metrics", step=step, metrics=m)),
                         should_stop=should_stop, on_step=on_step, progress=progress and main)  # fmt: skip
    save(report.step, report.metrics, report.seconds)
    emit(TrainEvent("saved", f"saved {plan.run} at step {report.step}" + (" (stopped early)" * report.stopped),
                    step=report.step))  # fmt: skip
    distributed.finish()
    return plan.run, report


def _saver(plan: RunPlan, store: EpisodeStore, trainer: Trainer, command: str, slim: bool) -> Callable[..., None]:
    """save(step, metrics, seconds), called by every rank: the run's checkpoint with its data record (policies,
    coverage) and budget, written by rank 0."""
    episodes = [store.load(i, frames=False) for i in range(len(store))]
    coverage = action_coverage(episodes, store.action_spec, plan.entry.state_names)
    prior = (plan.meta or {}).get("budget", {})
    prior_seconds, prior_cpu = float(prior.get("train_seconds", 0.0)), float(prior.get("cpu_seconds", 0.0))

    def save(step: int, metrics: dict[str, float], seconds: float = 0.0) -> None:
        cpu = prior_cpu + distributed.summed(cpu_seconds())
        if not distributed.is_main():
            return
        budget = budget_record(store.num_frames, step, prior_seconds + seconds, cpu, trainer.device)
        data_info = {"dir": data_record(plan.data, plan.run), **store.summary(), "coverage": coverage}
        save_checkpoint(plan.run, trainer.model, env_id=plan.env_id, pipeline=plan.pipeline, step=step,
                        metrics=metrics, command=command, optimizer=None if slim else trainer.optimizer,
                        extra={"data": data_info, "budget": budget})  # fmt: skip

    return save

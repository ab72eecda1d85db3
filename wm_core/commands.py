"""What each `wm` command does (`wm_core.cli` parses the arguments and calls these). Each imports what it
needs when it runs, so the parser itself stays light."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .files import dumps


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def set_threads(args: argparse.Namespace) -> None:
    """Apply `--threads` (torch's intra-op threads) where the command has it."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _names_checkpoint(path: str) -> bool:
    """Whether `path` (a run directory or its checkpoint.json) has anything at its checkpoint.json."""
    p = Path(path)
    return os.path.lexists(p if p.suffix == ".json" else p / "checkpoint.json")


def check_runs(args: argparse.Namespace) -> None:
    """Every checkpoint a command names (RUN, --resume RUN, --policy RUN) is read, checked and matched with the real
    env it names (or --env) before any work, so every command refuses a bad checkpoint the same way: a one-line
    CheckpointError, exit 2. A RUN with no checkpoint.json is left to the command (`wm agent train` starts one).
    Each command calls this once its own arguments are checked (a bad flag is named before a bad checkpoint)."""
    from .checkpoint import check_real_env, read_meta

    named = [(getattr(args, "run", None), None), (getattr(args, "resume", None), None)]
    named.append((getattr(args, "policy", None), getattr(args, "env", None)))
    for run, env_id in named:
        if run and _names_checkpoint(run):
            check_real_env(read_meta(run), env_id)


def cmd_envs(args: argparse.Namespace) -> None:
    """Print the environment catalog."""
    from .data.envs import CATALOG

    for env_id, e in CATALOG.items():
        keys = ", ".join(e.keymap.describe())
        print(f"{env_id:<18} {e.description}\n{'':<18} keys: {keys}")
    print("\nAny other gymnasium id works too: frames come from render() or image observations.")


class _CollectBar:
    """A tqdm bar over collected frames that opens on the first progress call (only if collecting happens), so
    an error before any frame stays one line."""

    def __init__(self) -> None:
        self.bar = None

    def close(self) -> None:
        """Close the bar if it was drawn."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def update(self, frames: int, episodes: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(unit="frames", dynamic_ncols=True, desc="collecting", leave=False)
        self.bar.update(frames - self.bar.n)

    def say(self, message: str) -> None:
        """Print a status line (closing the bar first, so the line is not drawn over)."""
        self.close()
        print(message, flush=True)

    def show(self, event: Any, quiet: bool = False) -> None:
        """A training run's event: status and save lines printed, collection progress drawn (unless quiet);
        metrics go to the training progress bar instead."""
        if event.kind in ("status", "saved"):
            self.say(event.message)
        elif event.kind == "collect" and not quiet:
            self.update(event.frames, event.episodes)


def cmd_collect(args: argparse.Namespace) -> None:
    """Collect episodes with a data policy into an episode store."""
    from .agents.policy import data_policy
    from .data import collect

    if (args.episodes is None) == (args.frames is None):
        raise UserError("give --episodes N or --frames N (one of them)")
    check_runs(args)
    bar = _CollectBar()
    try:
        store = collect(
            args.env,
            args.episodes,
            args.out,
            frames=args.frames,
            split=args.split,
            seed=args.seed,
            policy=data_policy(args.policy, args.env),
            max_steps=args.max_steps,
            num_envs=args.num_envs,
            progress=None if args.quiet else bar.update,
        )
    finally:
        bar.close()
    s = store.summary()
    policies = ", ".join(f"{k} {v}" for k, v in s["policies"].items())
    print(
        f"{s['episodes']} episodes, {s['frames']} frames of {args.env} in {args.out} (content "
        f"{s['content_hash'][:12]}; frames by policy: {policies})"
    )


def cmd_train(args: argparse.Namespace) -> None:
    """Train a family on an env (collecting data when --data is absent), or resume a run.

    The first Ctrl-C stops training at the next step and saves a resumable checkpoint; a second one
    interrupts at once."""
    from . import distributed
    from .agents.policy import data_policy
    from .train import cpu_seconds, peak_rss_mb, train_run

    stop = threading.Event()
    collect_bar = _CollectBar()

    def on_sigint(signum, frame) -> None:
        print("\nstopping: saving a resumable checkpoint (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    check_runs(args)
    previous = signal.signal(signal.SIGINT, on_sigint)
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    try:
        run, report = train_run(
            args.family,
            args.env,
            preset=args.preset,
            overrides=overrides,
            data=args.data,
            out=args.out,
            resume=args.resume,
            device=args.device,
            bf16=args.bf16,
            slim=args.slim,
            seed=args.seed,
            policy=data_policy(args.policy, args.env),
            on_event=lambda e: collect_bar.show(e, args.quiet),
            progress=not args.quiet,
            should_stop=stop.is_set,
            checkpoint_every=args.save_every,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    if not distributed.is_main():  # under torchrun, rank 0 speaks for the run
        return
    m = report.metrics
    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k not in ("step", "seconds"))
    print(f"done: {run} step {report.step} in {report.seconds:.1f} s ({shown})")
    print(f"budget: {cpu_seconds() / 60:.1f} CPU-minutes in this process, peak RSS {peak_rss_mb() / 1024:.2f} GiB")


def cmd_eval(args: argparse.Namespace) -> None:
    """Print (or write as JSON) the model card of a run on held-out episodes; write report.json/.png."""
    from .evaluation.card import format_card
    from .evaluation.report import evaluate_checkpoint, write_report
    from .train import resolve_device

    device = resolve_device(args.device)
    check_runs(args)
    report = evaluate_checkpoint(
        args.run,
        device=device,
        episodes=args.episodes,
        seed_base=args.seed_base,
        data=args.data,
        context=args.context,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(dumps(report.card.to_json(), indent=2) if args.json else format_card(report.card))
    if args.no_report:
        return
    run = Path(args.run).parent if Path(args.run).name == "checkpoint.json" else Path(args.run)
    try:
        paths = write_report(report, run)
    except OSError as e:
        print(f"report not written ({e}); pass --no-report for a read-only run", file=sys.stderr)
        return
    print(f"wrote {paths[0]} and {paths[1]}", file=sys.stderr)


def cmd_dream(args: argparse.Namespace) -> None:
    """Roll the dream from a real context and write it as GIF or MP4."""
    from .interactive.recording import record_dream
    from .train import resolve_device

    if Path(args.out).suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--out must end in .gif or .mp4, got '{args.out}'")
    device = resolve_device(args.device)
    check_runs(args)
    summary = record_dream(
        args.run,
        args.out,
        device=str(device),
        steps=args.steps,
        temperature=args.temperature,
        actions=args.actions,
        seed=args.seed,
        real=args.real,
    )
    print(
        f"wrote {args.out}: {summary['frames']} frames, return {summary['return']:.2f}, "
        f"{summary['resets']} dream resets, {summary['ms_per_step']:.2f} ms per dream step"
    )


def cmd_bench(args: argparse.Namespace) -> None:
    """Dream latency, imagination and training throughput, parameters and memory per family and preset."""
    from .bench import bench_training, format_bench, format_training, run_bench

    if args.train:
        rows = bench_training(args.family or None, tuple(args.preset or ["small"]), args.device, args.steps)
        print(dumps(rows, indent=2) if args.json else format_training(rows))
        return
    rows = run_bench(args.family or None, tuple(args.preset or ["small"]), args.device)
    print(dumps(rows, indent=2) if args.json else format_bench(rows))


def cmd_agent_train(args: argparse.Namespace) -> None:
    """Train an actor-critic in the dream of RUN's world model, alternating with real collection."""
    from . import distributed
    from .agents.loop import train_agent
    from .train import resolve_device

    if distributed.world_size() > 1:  # its loop runs to a wall-clock budget: ranks would part ways
        raise UserError("wm agent train runs in one process; torchrun is for wm train")
    device = resolve_device(args.device)
    check_runs(args)
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    result = train_agent(
        args.run,
        env_id=args.env,
        family=args.family,
        preset=args.preset,
        overrides=overrides,
        seed=args.seed,
        say=lambda m: print(m, flush=True),
        device=device,
    )
    ev = result["evaluation"]
    print(f"done: {args.run}: real return {ev['real_mean']:.1f} ± {ev['real_std']:.1f}, dream {ev['dream_mean']:.1f}")


def cmd_agent_eval(args: argparse.Namespace) -> None:
    """Score RUN's agent (actor or MCTS) in the real env and in the dream from the same first frames."""
    from .agents.agent import MctsAgent, load_agent
    from .agents.loop import evaluate_agent
    from .checkpoint import load_checkpoint
    from .spec import FramePipeline
    from .train import resolve_device

    device = resolve_device(args.device)
    check_runs(args)
    model, meta = load_checkpoint(args.run, device)
    if not (Path(args.run) / "agent.json").exists():
        raise UserError(f"{args.run} has no agent.json: train one with `wm agent train {args.run}`")
    agent, _ = load_agent(Path(args.run), model)
    ev = evaluate_agent(
        model, agent, meta["env_id"], args.episodes, args.seed, FramePipeline.from_json(meta["pipeline"])
    )
    who = f"greedy MCTS ({agent.config.simulations} simulations)" if isinstance(agent, MctsAgent) else "greedy actor"
    print(
        f"{meta['env_id']}, {args.episodes} episodes, {who}: real return {ev['real_mean']:.1f} ± "
        f"{ev['real_std']:.1f}, dream return {ev['dream_mean']:.1f} ± {ev['dream_std']:.1f} "
        f"(dream - real {ev['gap']:+.1f}), {ev['ms_p50']:.1f} ms per move (p50; p95 {ev['ms_p95']:.1f})"
    )


def cmd_plan(args: argparse.Namespace) -> None:
    """Act in the real env with RUN's planner (MCTS or CEM toward a goal frame); print returns and ms per move."""
    import numpy as np

    from .agents.loop import POLICY_SEED_BASE
    from .agents.planning import check_planner, load_goal_frame, plan_episode, planner_chooser
    from .checkpoint import load_checkpoint
    from .data.envs import make_env
    from .spec import FramePipeline

    check_runs(args)
    model, meta = load_checkpoint(args.run)
    pipeline = FramePipeline.from_json(meta["pipeline"])
    planner = check_planner(model, args.planner)
    goal, goal_label, options = None, "", {}
    if planner == "mcts" and args.simulations:
        options["simulations"] = args.simulations
    if planner == "cem":
        goal, goal_label = load_goal_frame(args.goal_frame, meta["env_id"], pipeline)
    env = make_env(meta["env_id"], pipeline)
    returns, ms = [], []
    try:
        for i in range(args.episodes):
            choose, label = planner_chooser(
                model, planner=planner, goal_frame=goal, goal_label=goal_label, seed=args.seed + i, **options
            )
            seed = 2 * POLICY_SEED_BASE + args.seed + i  # the episodes `wm agent eval` plays
            episode, took = plan_episode(model, env, seed, choose, args.max_steps)
            returns.append(float(episode.rew.sum()))
            ms += took
            print(f"episode {i + 1}: return {returns[-1]:.1f}, {len(took)} moves", flush=True)
    finally:
        env.close()
    r, t = np.array(returns), np.array(ms)
    print(
        f"{meta['env_id']}, {args.episodes} episodes, {label}: return {r.mean():.1f} ± {r.std():.1f}, "
        f"{np.percentile(t, 50):.1f} ms per move (p50; p95 {np.percentile(t, 95):.1f})"
    )


def cmd_controller(args: argparse.Namespace) -> None:
    """Train a controller in RUN's dream with CMA-ES, score it in the real env, save it with its record."""
    from .agents.dream_controller import ControllerConfig, train_controller
    from .train import cli_command

    cfg = ControllerConfig(temperature=args.temperature, generations=args.generations, population=args.population,
                           dream_episodes=args.episodes, horizon=args.horizon, seed=args.seed)  # fmt: skip
    check_runs(args)
    log = (lambda line: print(line, flush=True)) if sys.stdout.isatty() else None
    r = train_controller(args.run, cfg, args.out, args.real_episodes, cli_command(), log)
    real = r["real_return"]
    print(
        f"controller in {args.out}: dream return {r['dream_return']:.1f} at temperature {cfg.temperature}, real "
        f"return {real['mean']:.1f} ± {real['std']:.1f} over {real['episodes']} episodes, "
        f"{r['cpu_seconds'] / 60:.1f} CPU-minutes"
    )

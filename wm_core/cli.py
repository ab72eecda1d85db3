"""The `wm` command: envs, collect, train, eval, dream.

Every bad argument ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line."""

    def error(self, message: str) -> NoReturn:
        """One line on stderr, exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, low: float, name: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {kind.__name__}, got '{text}'") from None
        if not value >= low or value != value:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {text}")
        return value

    parse.__name__ = name
    return parse


positive = _number(int, 1, "a positive whole number")
nonneg_float = _number(float, 0.0, "a number")
any_float = _number(float, -float("inf"), "a number")


def _add_config_flags(p: argparse.ArgumentParser, family_cls: type) -> None:
    """One --flag per config field, with the field's docstring as help (a knob is defined once)."""
    from .protocol import field_doc

    config_cls = family_cls.Config
    small = family_cls.preset("small")
    for f in dataclasses.fields(config_cls):
        kind = {int: positive, float: nonneg_float}.get(type(f.default), str)
        if isinstance(f.default, float) and f.default < 0:  # a field that may be negative (a log-scale mean)
            kind = any_float
        if isinstance(f.default, bool):
            kind = lambda s: s.lower() in ("1", "true", "yes")  # noqa: E731
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"cfg_{f.name}",
            type=kind,
            default=None,
            metavar=type(f.default).__name__.upper(),
            # argparse %-formats help strings: a literal % in a docstring must be doubled
            help=f"{field_doc(config_cls, f.name)} (default: the preset's; small: {getattr(small, f.name)})".replace(
                "%", "%%"
            ),
        )


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


def cmd_collect(args: argparse.Namespace) -> None:
    """Collect episodes with a data policy into an episode store."""
    from .data import collect

    if (args.episodes is None) == (args.frames is None):
        raise UserError("give --episodes N or --frames N (one of them)")
    bar = _CollectBar()
    try:
        store = collect(
            args.env,
            args.episodes,
            args.out,
            frames=args.frames,
            split=args.split,
            seed=args.seed,
            policy=args.policy,
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
    from .train import cpu_seconds, peak_rss_mb, train_run

    stop = threading.Event()
    collect_bar = _CollectBar()

    def on_sigint(signum, frame) -> None:
        print("\nstopping: saving a resumable checkpoint (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

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
            policy=args.policy,
            on_status=collect_bar.say,
            on_collect=None if args.quiet else collect_bar.update,
            progress=not args.quiet,
            should_stop=stop.is_set,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    m = report.metrics
    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k not in ("step", "seconds"))
    print(f"done: {run} step {report.step} in {report.seconds:.1f} s ({shown})")
    print(f"budget: {cpu_seconds() / 60:.1f} CPU-minutes in this process, peak RSS {peak_rss_mb() / 1024:.2f} GiB")


def cmd_eval(args: argparse.Namespace) -> None:
    """Print (or write as JSON) the model card of a run on held-out episodes; write report.json/.png."""
    from .evaluation.card import format_card
    from .evaluation.report import evaluate_checkpoint, write_report

    report = evaluate_checkpoint(
        args.run,
        episodes=args.episodes,
        seed_base=args.seed_base,
        data=args.data,
        context=args.context,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(json.dumps(report.card, indent=2) if args.json else format_card(report.card))
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
    from .interactive.play import record_dream

    if Path(args.out).suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--out must end in .gif or .mp4, got '{args.out}'")
    summary = record_dream(
        args.run,
        args.out,
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
    from .bench import format_bench, run_bench

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = run_bench(args.family or None, tuple(args.preset or ["small"]), args.device)
    print(json.dumps(rows, indent=2) if args.json else format_bench(rows))


def cmd_agent_train(args: argparse.Namespace) -> None:
    """Train an actor-critic in the dream of RUN's world model, alternating with real collection."""
    from .agents.loop import train_agent

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    result = train_agent(
        args.run,
        env_id=args.env,
        family=args.family,
        preset=args.preset,
        overrides=overrides,
        seed=args.seed,
        say=lambda m: print(m, flush=True),
    )
    ev = result["evaluation"]
    print(f"done: {args.run}: real return {ev['real_mean']:.1f} ± {ev['real_std']:.1f}, dream {ev['dream_mean']:.1f}")


def cmd_agent_eval(args: argparse.Namespace) -> None:
    """Score RUN's agent (actor or MCTS) in the real env and in the dream from the same first frames."""
    from .agents.agent import MctsAgent, load_agent
    from .agents.loop import evaluate_agent
    from .checkpoint import load_checkpoint

    model, meta = load_checkpoint(args.run)
    if not (Path(args.run) / "agent.json").exists():
        raise UserError(f"{args.run} has no agent.json: train one with `wm agent train {args.run}`")
    agent, _ = load_agent(Path(args.run), model)
    ev = evaluate_agent(model, agent, meta["env_id"], args.episodes, args.seed)
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


POLICY_HELP = (
    "data policy: random, scripted (the env's scripted player mixed with random actions; random where the "
    "catalog has no script) or a run directory with a trained agent"
)


def build_parser(family: str | None = None, command: str | None = None) -> Parser:
    """The `wm` parser; `family` selects which config fields `wm train` offers as flags, and the agent's config
    flags are added only for `command` "agent" (building them imports torch, which `wm --help` need not)."""
    from .registry import FAMILIES, get_family

    root = Parser(prog="wm", description="World Model Playground: collect, train, evaluate and dream.")
    sub = root.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("envs", help="list the environment catalog")
    p.set_defaults(fn=cmd_envs)

    p = sub.add_parser("collect", help="collect episodes (random, scripted or agent play) into a store")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. CartPole-v1 (see wm envs)")
    p.add_argument("--episodes", type=positive, default=None, help="episodes to collect")
    p.add_argument("--frames", type=positive, default=None, help="frames to collect (instead of --episodes)")
    p.add_argument("--policy", default="random", help=POLICY_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="directory of the episode store")
    p.add_argument(
        "--split",
        default="train",
        choices=["train", "heldout"],
        help="heldout uses seeds disjoint from training",
    )
    p.add_argument("--seed", type=int, default=None, help="base seed (default: by split)")
    p.add_argument("--max-steps", type=positive, default=None, help="cap episode length")
    p.add_argument("--num-envs", type=positive, default=2, help="vector env workers")
    p.set_defaults(fn=cmd_collect)

    p = sub.add_parser("train", help="train a world model (collects data when --data is absent)")
    p.add_argument("--family", choices=sorted(FAMILIES), default=family, help="model family (not with --resume)")
    p.add_argument("--env", help="gymnasium id (see wm envs)")
    p.add_argument("--data", help="episode store to train on (default: collect into RUN/data)")
    p.add_argument("--preset", default="small", choices=["tiny", "small", "large"])
    p.add_argument("--out", help="run directory (default: runs/FAMILY-ENV)")
    p.add_argument("--resume", help="continue training this run directory")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster batched training)")
    p.add_argument("--slim", action="store_true", help="save no optimizer state (smaller; for shipping)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", default="scripted", help=POLICY_HELP + " (when collecting)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if family is not None:
        _add_config_flags(p.add_argument_group(f"{family} config"), get_family(family))
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("eval", help="model card on held-out episodes")
    p.add_argument("run", help="run directory (or its checkpoint.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--episodes", type=positive, default=50, help="held-out episodes to collect")
    p.add_argument("--data", help="held-out episode store to use instead of collecting")
    p.add_argument("--context", type=positive, default=5, help="real frames before the dream")
    p.add_argument("--temperature", type=nonneg_float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--seed-base", type=int, default=1_000_000, help="first held-out env seed")
    p.add_argument("--no-report", action="store_true", help="do not write report.json and report.png beside the run")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("dream", help="write a dream rollout as GIF/MP4")
    p.add_argument("run", help="run directory (or its checkpoint.json)")
    p.add_argument("--steps", type=positive, default=100)
    p.add_argument("--out", required=True, help="FILE.gif or FILE.mp4")
    p.add_argument("--temperature", type=nonneg_float, default=1.0)
    p.add_argument(
        "--actions",
        default="random",
        choices=["random", "keys"],
        help="random actions, or a scripted key pattern through the env's keymap",
    )
    p.add_argument("--real", action="store_true", help="show the real env beside the dream, same actions")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_dream)

    p = sub.add_parser("bench", help="speed and memory of each family (numbers, not tests)")
    p.add_argument("--family", action="append", choices=sorted(FAMILIES), help="repeat for several (default: all)")
    p.add_argument("--preset", action="append", choices=["tiny", "small", "large"], default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=positive, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("agent", help="behaviour on a world model: actor-critic in its dream, or MCTS (muzero)")
    agent = p.add_subparsers(dest="agent_command", required=True, parser_class=Parser)
    q = agent.add_parser("train", help="collect with the behaviour, train the world model (and actor-critic), repeat")
    q.add_argument("run", help="run directory: continues its world model (and agent), or starts one there")
    q.add_argument("--env", help="gymnasium id, when RUN holds no world model yet")
    q.add_argument("--family", choices=sorted(FAMILIES), default="dreamer", help="family of a new world model")
    q.add_argument("--preset", default="small", choices=["tiny", "small", "large"], help="preset of a new one")
    q.add_argument("--seed", type=int, default=0)
    if command == "agent":
        from .agents.agent import ActorCritic

        _add_config_flags(q.add_argument_group("agent config"), ActorCritic)
    q.set_defaults(fn=cmd_agent_train)
    q = agent.add_parser("eval", help="greedy behaviour: real-env return and dream return")
    q.add_argument("run", help="run directory holding checkpoint.json and agent.json")
    q.add_argument("--episodes", type=positive, default=10)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(fn=cmd_agent_eval)

    p = sub.add_parser("plan", help="act in the real env with the run's planner (MCTS, or CEM toward a goal frame)")
    p.add_argument("run", help="run directory (or its checkpoint.json) of a family with a planner (muzero, jepa)")
    p.add_argument("--planner", choices=["mcts", "cem"], help="default: the family's own planner")
    p.add_argument("--episodes", type=positive, default=5)
    p.add_argument("--simulations", type=positive, default=None, help="MCTS simulations per move (default 25)")
    p.add_argument(
        "--goal-frame",
        default="heldout",
        help="CEM goal: 'heldout' (first frame of a held-out episode; CartPole: upright pole), 'seed:N' "
        "(first frame after a reset with seed N) or a .npy / image file of one frame",
    )
    p.add_argument("--max-steps", type=positive, default=None, help="cap episode length")
    p.add_argument("--seed", type=int, default=0, help="episode i resets the env with seed 200000 + seed + i")
    p.set_defaults(fn=cmd_plan)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `wm` console script."""
    from .errors import CheckpointError, DataError, EnvError
    from .registry import FAMILIES

    argv = list(sys.argv[1:] if argv is None else argv)
    # Which family's config fields `wm train` offers depends on --family (or the run being resumed).
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--family")
    pre.add_argument("--resume")
    known, _ = pre.parse_known_args(argv)
    family = known.family
    if family is None and known.resume:
        from .checkpoint import read_meta

        try:
            family = read_meta(known.resume)["family"]
        except CheckpointError as e:
            print(f"wm train: error: {e}", file=sys.stderr)
            return 2
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(family if family in FAMILIES else None, command).parse_args(argv)
    if args.command == "train" and args.resume is None and (args.env is None or args.family is None):
        print("wm train: error: --family and --env are required (or --resume RUN)", file=sys.stderr)
        return 2
    try:
        args.fn(args)
    except (UserError, CheckpointError, DataError, EnvError, ValueError, FileNotFoundError) as e:
        print(f"wm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wm {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

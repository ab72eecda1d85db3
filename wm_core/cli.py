"""The `wm` command: envs, collect, train, eval, dream.

Every bad argument, and every checkpoint a command refuses, ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import NoReturn

from . import commands

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


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


def boolean(text: str) -> bool:
    """true/false (also yes/no, on/off, 1/0); anything else is refused rather than read as false."""
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


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
            kind = boolean
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


POLICY_HELP = (
    "data policy: random, scripted (the env's scripted player mixed with random actions; random where the "
    "catalog has no script) or a run directory with a trained agent"
)


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive, default=None, help="torch threads (default: torch's choice)")


def _device(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """--device, read by `wm_core.train.resolve_device` (auto: cuda when torch sees a GPU, else cpu)."""
    p.add_argument(
        "--device",
        default=default,
        choices=["auto", "cpu", "cuda"],
        help=f"where the model runs: auto (cuda when torch sees a GPU), cpu or cuda (default {default})",
    )


def _collect_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="collect episodes (random, scripted or agent play) into a store")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. CartPole-v1 (see wm envs)")
    p.add_argument("--episodes", type=positive, default=None, help="episodes to collect")
    p.add_argument("--frames", type=positive, default=None, help="frames to collect (instead of --episodes)")
    p.add_argument("--policy", default="random", help=POLICY_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="directory of the episode store")
    p.add_argument(
        "--split", default="train", choices=["train", "heldout"], help="heldout: seeds disjoint from training"
    )
    p.add_argument("--seed", type=int, default=None, help="base seed (default: by split)")
    p.add_argument("--max-steps", type=positive, default=None, help="cap episode length")
    p.add_argument("--num-envs", type=positive, default=2, help="vector env workers")
    _threads(p)  # an agent policy (--policy RUN) runs torch
    p.set_defaults(fn=commands.cmd_collect)


def _train_parser(sub: argparse._SubParsersAction, family: str | None) -> None:
    from .registry import FAMILIES, PRESET_NAMES, get_family

    p = sub.add_parser("train", help="train a world model (collects data when --data is absent)")
    p.add_argument("--family", choices=sorted(FAMILIES), default=family, help="model family (not with --resume)")
    p.add_argument("--env", help="gymnasium id (see wm envs)")
    p.add_argument("--data", help="episode store to train on (default: collect into RUN/data)")
    p.add_argument("--preset", default="small", choices=PRESET_NAMES)
    p.add_argument("--out", help="run directory (default: runs/FAMILY-ENV)")
    p.add_argument("--resume", help="continue training this run directory")
    _device(p)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster batched training)")
    p.add_argument("--slim", action="store_true", help="save no optimizer state (smaller; for shipping)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", default="scripted", help=POLICY_HELP + " (when collecting)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--save-every", type=positive, default=500, help="save a resumable checkpoint every N steps (default 500)"
    )
    _threads(p)
    if family is not None:
        _add_config_flags(p.add_argument_group(f"{family} config"), get_family(family))
    p.set_defaults(fn=commands.cmd_train)


def _eval_parsers(sub: argparse._SubParsersAction) -> None:
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
    _device(p, "cpu")  # the shipped model cards were measured on the CPU; a GPU is opt-in
    _threads(p)
    p.set_defaults(fn=commands.cmd_eval)

    p = sub.add_parser("dream", help="write a dream rollout as GIF/MP4")
    p.add_argument("run", help="run directory (or its checkpoint.json)")
    p.add_argument("--steps", type=positive, default=100)
    p.add_argument("--out", required=True, help="FILE.gif or FILE.mp4")
    p.add_argument("--temperature", type=nonneg_float, default=1.0)
    p.add_argument("--actions", default="random", choices=["random", "keys"],
                   help="random actions, or a scripted key pattern through the env's keymap")  # fmt: skip
    p.add_argument("--real", action="store_true", help="show the real env beside the dream, same actions")
    p.add_argument("--seed", type=int, default=0)
    _device(p, "cpu")  # batch-1 dream steps were measured on the CPU (1-3 ms for the small presets)
    _threads(p)
    p.set_defaults(fn=commands.cmd_dream)

    from .registry import FAMILIES, PRESET_NAMES

    p = sub.add_parser("bench", help="speed and memory of each family (numbers, not tests)")
    p.add_argument("--family", action="append", choices=sorted(FAMILIES), help="repeat for several (default: all)")
    p.add_argument("--preset", action="append", choices=PRESET_NAMES, default=None)
    _device(p)
    p.add_argument("--train", action="store_true", help="training steps/s and frames/s, fp32 and bf16")
    p.add_argument("--steps", type=positive, default=20, help="with --train: timed steps per row (default 20)")
    p.add_argument("--json", action="store_true")
    _threads(p)
    p.set_defaults(fn=commands.cmd_bench)


def _agent_parsers(sub: argparse._SubParsersAction, command: str | None) -> None:
    from .registry import FAMILIES, PRESET_NAMES

    p = sub.add_parser("agent", help="behaviour on a world model: actor-critic in its dream, or MCTS (muzero)")
    agent = p.add_subparsers(dest="agent_command", required=True, parser_class=Parser)
    q = agent.add_parser("train", help="collect with the behaviour, train the world model (and actor-critic), repeat")
    q.add_argument("run", help="run directory: continues its world model (and agent), or starts one there")
    q.add_argument("--env", help="gymnasium id, when RUN holds no world model yet")
    q.add_argument("--family", choices=sorted(FAMILIES), default="dreamer", help="family of a new world model")
    q.add_argument("--preset", default="small", choices=PRESET_NAMES, help="preset of a new one")
    q.add_argument("--seed", type=int, default=0)
    _device(q)
    _threads(q)
    if command == "agent":  # the agent's config flags import torch, which `wm --help` need not
        from .agents.agent import ActorCritic

        _add_config_flags(q.add_argument_group("agent config"), ActorCritic)
    q.set_defaults(fn=commands.cmd_agent_train)
    q = agent.add_parser("eval", help="greedy behaviour: real-env return and dream return")
    q.add_argument("run", help="run directory holding checkpoint.json and agent.json")
    q.add_argument("--episodes", type=positive, default=10)
    q.add_argument("--seed", type=int, default=0)
    _device(q, "cpu")
    _threads(q)
    q.set_defaults(fn=commands.cmd_agent_eval)

    p = sub.add_parser("plan", help="act in the real env with the run's planner (MCTS, or CEM toward a goal frame)")
    p.add_argument("run", help="run directory (or its checkpoint.json) of a family with a planner (muzero, jepa)")
    p.add_argument("--planner", choices=["mcts", "cem"], help="default: the family's own planner")
    p.add_argument("--episodes", type=positive, default=5)
    p.add_argument("--simulations", type=positive, default=None, help="MCTS simulations per move (default 25)")
    p.add_argument("--goal-frame", default="heldout",
                   help="CEM goal: 'heldout' (first frame of a held-out episode; CartPole: upright pole), 'seed:N' "
                   "(first frame after a reset with seed N) or a .npy / image file of one frame")  # fmt: skip
    p.add_argument("--max-steps", type=positive, default=None, help="cap episode length")
    p.add_argument("--seed", type=int, default=0, help="episode i resets the env with seed 200000 + seed + i")
    _threads(p)
    p.set_defaults(fn=commands.cmd_plan)

    p = sub.add_parser("controller", help="a controller trained only in RUN's dream (CMA-ES), scored in the real env")
    p.add_argument("run", help="run directory (or its checkpoint.json) of a family with a latent (ha, dreamer)")
    p.add_argument("--out", required=True, help="folder for controller.safetensors and controller.json")
    p.add_argument("--temperature", type=nonneg_float, default=1.0, help="the dream's sampling temperature (default 1)")
    p.add_argument("--generations", type=positive, default=30, help="CMA-ES generations (default 30)")
    p.add_argument("--population", type=positive, default=16, help="candidates per generation (default 16)")
    p.add_argument("--episodes", type=positive, default=8, help="dreams per candidate (default 8)")
    p.add_argument("--horizon", type=positive, default=200, help="dream steps per episode (default 200)")
    p.add_argument("--real-episodes", type=positive, default=20, help="real-env episodes to score it (default 20)")
    p.add_argument("--seed", type=int, default=0)
    _threads(p)
    p.set_defaults(fn=commands.cmd_controller)


def build_parser(family: str | None = None, command: str | None = None) -> Parser:
    """The `wm` parser; `family` selects which config fields `wm train` offers as flags, and the agent's config
    flags are added only for `command` "agent"."""
    root = Parser(prog="wm", description="World Model Playground: collect, train, evaluate and dream.")
    sub = root.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("envs", help="list the environment catalog").set_defaults(fn=commands.cmd_envs)
    _collect_parser(sub)
    _train_parser(sub, family)
    _eval_parsers(sub)
    _agent_parsers(sub, command)
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
        commands.set_threads(args)
        args.fn(args)
    except (commands.UserError, CheckpointError, DataError, EnvError, ValueError, FileNotFoundError) as e:
        print(f"wm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wm {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

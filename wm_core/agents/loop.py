"""The one loop behind `wm agent train`: collect real episodes with the behaviour, train the world model on
them (with the `Trainer` that `wm train` builds: `build_trainer`), update the behaviour, evaluate, save; repeat
until a wall-clock or CPU budget runs out (see `wm_core.agents.agent` for the behaviours themselves). `AgentRun`
holds one run's state; each part of an iteration is one method."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import data_record, save_checkpoint
from ..data import Episode, EpisodeStore, SequenceSampler, collect
from ..data.coverage import action_coverage
from ..data.envs import PixelEnv, make_env
from ..dream import Dream
from ..protocol import WorldModel
from ..run_data import RunPlan, continued_run, new_run
from ..spec import FramePipeline
from ..train import LrSchedule, budget_record, build_trainer, cli_command
from .agent import AGENT_FILE, ActorCritic, Agent, MctsAgent, load_agent, new_agent
from .planning import MctsChooser, plan_episode

# world-model metrics that the curve logs too (MuZero's; an actor-critic's own metrics come from its update)
LOGGED = ("value_loss", "policy_loss", "done_loss", "consistency_loss", "value_target_mean")
POLICY_SEED_BASE = 100_000  # policy episodes use env seeds from here: disjoint from random and held-out data
KEPT_SEED_OFFSET = 50_000  # `keep_best`'s closing evaluation: env seeds no in-training evaluation played


def run_episode(
    model: WorldModel, agent: Agent, env: PixelEnv, seed: int, sample: bool, progress: float = 1.0
) -> tuple[Episode, list[float]]:
    """Play one real episode with the agent (exploring when `sample`) -> the episode in the store's format,
    with the search's targets when the agent searched, and the milliseconds of each move."""
    choose = agent.chooser(model, sample, progress)
    episode, ms = plan_episode(model, env, seed, choose)
    if isinstance(choose, MctsChooser):
        episode.search_policy, episode.search_value = choose.targets(len(episode))
    return episode, ms


@torch.no_grad()
def dream_returns(model: WorldModel, agent: Agent, first_frames: np.ndarray, max_steps: int) -> np.ndarray:
    """Return of the greedy agent inside the dream (through `Dream`) from real first frames (B, H, W, 3)."""
    dream = Dream(model, temperature=1.0)
    dream.reset(first_frames[:, None])
    B = len(first_frames)
    total, alive = np.zeros(B), np.ones(B, bool)
    for _ in range(max_steps):
        _, reward, ended, _ = dream.step(agent.dream_actions(model, dream.state))
        total += reward * alive
        alive &= ~ended
        if not alive.any():
            break
    return total


def evaluate_agent(
    model: WorldModel, agent: Agent, env_id: str, episodes: int, seed: int = 0, pipeline: FramePipeline | None = None
) -> dict[str, Any]:
    """Greedy real-env returns and dream returns from the same first frames, with the dream - real gap and
    the milliseconds per real move (p50, p95); the env draws frames with `pipeline` (the world model's own)."""
    env = make_env(env_id, pipeline)
    try:
        played = [run_episode(model, agent, env, 2 * POLICY_SEED_BASE + seed + i, False) for i in range(episodes)]
        max_steps = (env.spec.max_episode_steps if env.spec else None) or 1000
    finally:
        env.close()
    eps, ms = [e for e, _ in played], np.concatenate([m for _, m in played])
    real = np.array([e.rew.sum() for e in eps])
    dream = dream_returns(model, agent, np.stack([e.obs[0] for e in eps]), max_steps)
    return {
        "episodes": episodes,
        "real_mean": float(real.mean()),
        "real_std": float(real.std()),
        "dream_mean": float(dream.mean()),
        "dream_std": float(dream.std()),
        "gap": float(dream.mean() - real.mean()),
        "ms_p50": float(np.percentile(ms, 50)),
        "ms_p95": float(np.percentile(ms, 95)),
        "real": real.tolist(),
        "dream": dream.tolist(),
    }


class AgentRun:
    """One `wm agent train` run: the world model (continued from `run`, or a new one of `family`/`preset` on
    `env_id` from random episodes), its behaviour (MCTS for the "mcts" planner, else the actor-critic), the
    policy episodes, the learning curve and, with `keep_best`, the best evaluated weights."""

    def __init__(
        self, run: Path | str, *, env_id: str | None = None, family: str = "dreamer", preset: str = "small",
        overrides: dict[str, Any] | None = None, seed: int = 0, say: Callable[[str], None] = print,
        device: torch.device | str = "cpu", bf16: bool = False,
    ) -> None:  # fmt: skip
        self.run, self.seed, self.say = Path(run), seed, say
        torch.manual_seed(seed)  # a training run seeds the global stream; dreams and evaluations use their own
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.command, self.overrides = cli_command(), overrides
        plan = self._plan(env_id, family, preset, torch.device(device))
        self.env_id, self.entry, self.pipeline, self.data_dir = plan.env_id, plan.entry, plan.pipeline, plan.data
        self.step = plan.step
        self._random_data(seed)
        self.random_eps = EpisodeStore.open(self.data_dir).episodes()
        self.trainer = build_trainer(plan, EpisodeStore.open(self.data_dir), torch.device(device), bf16)
        self.model = self.trainer.model  # on its device before the behaviour is built on it
        if (self.run / AGENT_FILE).exists():
            self.agent, self.ameta = load_agent(self.run, self.model, **overrides)
        else:
            self.agent, self.ameta = new_agent(self.model, ActorCritic.preset(**overrides)), {}
        self.config = self.agent.config
        self.trainer.schedule = LrSchedule(self.model.config.lr, self.config.wm_lr_decay, "exponential")
        self.store = EpisodeStore.create(self.run / "agent-data", self.env_id, self.pipeline, self.model.action_spec)
        self.policy_eps = self.store.episodes()
        self.curve: list[dict[str, Any]] = self.ameta.get("curve", [])
        last = self.curve[-1] if self.curve else {}
        self.t_prior, self.cpu_prior = last.get("seconds", 0.0), last.get("cpu_seconds", 0.0)
        self.env_steps = last.get("env_steps") or sum(len(e) - 1 for e in self.random_eps)
        self.t0, self.cpu0, self.recent = time.perf_counter(), time.process_time(), []
        self.best: dict[str, Any] = {}  # keep_best: the best evaluation so far, with its weights
        if self.config.keep_best and self.ameta.get("kept"):  # a kept run's loaded weights are its best so far
            self.remember_if_best(self.ameta["kept"]["eval_return"], self.ameta.get("evaluation"), self.ameta["kept"])

    def _plan(self, env_id: str | None, family: str, preset: str, device: torch.device) -> RunPlan:
        """The run's own world model to continue, or a new one of `family`/`preset` on `env_id`."""
        if (self.run / "checkpoint.json").exists():
            plan = continued_run(self.run, device)
            command = (plan.meta or {}).get("command")
            if command and not command.endswith(self.command):  # the history, oldest first
                self.command = f"{command} && {self.command}"
            return plan
        if env_id is None:
            raise ValueError(f"{self.run} holds no world model yet: give an env id (and family) to start one")
        return new_run(family, env_id, preset, {}, None, self.run)

    def _random_data(self, seed: int) -> None:
        """The random episodes the run starts from, collected into its data directory when it has none (a copied
        or shipped run whose recorded directory is gone collects into its own `data/`)."""
        if not (self.data_dir / "index.json").exists():
            episodes = ActorCritic.preset(**self.overrides).random_episodes
            self.say(f"collecting {episodes} random episodes of {self.env_id}")
            collect(self.env_id, episodes, self.data_dir, seed=seed, pipeline=self.pipeline)

    # ---- the parts of an iteration -----------------------------------------------------------------
    def progress(self) -> float:
        """Share of the budget used (wall-clock, or CPU time when that budget is tighter)."""
        c = self.config
        wall = (time.perf_counter() - self.t0) / (60 * c.minutes) if c.minutes > 0 else 1.0
        cpu = (time.process_time() - self.cpu0) / (60 * c.cpu_minutes) if c.cpu_minutes > 0 else 0.0
        return max(wall, cpu)

    def collect(self, env: PixelEnv) -> None:
        """Whole episodes with the exploring behaviour until `collect_steps` env steps are in the store."""
        self.model.eval()
        collected = 0
        while collected < self.config.collect_steps:
            ep, _ = run_episode(self.model, self.agent, env, POLICY_SEED_BASE + len(self.store), True, self.progress())
            self.store.add(ep, policy="agent")
            self.policy_eps.append(ep)
            collected += len(ep) - 1
            self.recent = (self.recent + [float(ep.rew.sum())])[-10:]
        self.env_steps += collected

    def train(self) -> tuple[dict[str, float], dict[str, float]]:
        """`train_steps` world-model steps (and a behaviour update after each) on the random episodes and the
        most recent policy frames (`replay_frames`: recent data dominates as it grows, memory stays bounded)."""
        c, wm = self.config, self.model.config
        recent_eps, frames = [], 0
        for e in reversed(self.policy_eps[-400:]):
            frames += len(e)
            if frames > c.replay_frames and recent_eps:
                break
            recent_eps.append(e)
        eps = self.random_eps + recent_eps[::-1]
        sampler = SequenceSampler(eps, self.model.action_spec, wm.seq_len, wm.batch_size, seed=self.seed + self.step)
        self.model.train()
        progress = self.progress()  # one learning rate for the iteration
        for _ in range(c.train_steps):
            batch = {k: v.to(self.trainer.device) for k, v in sampler.sample().items()}  # one copy for both updates
            wm_metrics = self.trainer.step(batch, self.step, progress)
            self.step += 1
            agent_metrics = self.agent.train_step(self.model, batch)
        return wm_metrics, agent_metrics

    def evaluate(self, seed_offset: int = 0) -> dict[str, Any]:
        """Greedy real-env and dream returns (see `evaluate_agent`)."""
        self.model.eval()
        return evaluate_agent(self.model, self.agent, self.env_id, self.config.eval_episodes, self.seed + seed_offset,
                              self.pipeline)  # fmt: skip

    def save(self, evaluation: dict[str, Any] | None = None, kept: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the model and agent; `kept` (keep_best) names the evaluation whose weights these are."""
        seconds = self.t_prior + time.perf_counter() - self.t0
        cpu = self.cpu_prior + time.process_time() - self.cpu0
        budget = budget_record(self.env_steps, self.step, seconds, cpu, self.trainer.device)
        # the random data stays findable; coverage counts every episode the world model has trained on
        coverage = action_coverage(self.random_eps + self.policy_eps, self.model.action_spec, self.entry.state_names)
        data = {"data": {"dir": data_record(self.data_dir, self.run), "coverage": coverage}, "budget": budget}
        at = kept["grad_steps"] if kept else self.step  # the saved weights' step; the budget counts every step
        save_checkpoint(self.run, self.model, env_id=self.env_id, pipeline=self.pipeline, step=at,
                        command=self.command, extra=data)  # fmt: skip
        extra = {"env_id": self.env_id, "curve": self.curve, "world_model_step": at, "budget": budget}
        extra |= {"evaluation": evaluation or self.ameta.get("evaluation")}
        extra |= {"kept": kept} if kept else {}
        self.agent.save(self.run, extra)
        return {"config": asdict(self.config), **extra}

    # ---- keep-best -----------------------------------------------------------------------------------
    def weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Copies of the world model's (and an actor-critic's) weights."""
        clone = lambda module: {k: v.detach().clone() for k, v in module.state_dict().items()}  # noqa: E731
        return clone(self.model), clone(self.agent) if isinstance(self.agent, nn.Module) else None

    def load_weights(self, model_state: dict[str, torch.Tensor], agent_state: dict[str, torch.Tensor] | None) -> None:
        """Put weights from `weights` back."""
        self.model.load_state_dict(model_state)
        if agent_state is not None:
            self.agent.load_state_dict(agent_state)

    def remember_if_best(self, score: float, evaluation: dict[str, Any] | None, point: dict[str, Any]) -> None:
        """Keep the current weights if `score` beats the best evaluation so far."""
        if self.best and score <= self.best["eval_return"]:
            return
        self.best = {"eval_return": score, "cpu_seconds": point.get("cpu_seconds", 0.0), "grad_steps": self.step}
        self.best |= {"evaluation": evaluation, "weights": self.weights()}

    def kept_record(self) -> dict[str, Any]:
        """What agent.json records of the kept weights."""
        return {k: self.best[k] for k in ("eval_return", "cpu_seconds", "grad_steps")}

    def save_best(self) -> None:
        """keep_best's save during training: the best evaluated weights, so a run stopped before its end
        (Ctrl-C, a crash) leaves them on disk rather than the weights of its latest step."""
        current = self.weights()
        self.load_weights(*self.best["weights"])
        try:
            self.save(self.best["evaluation"], self.kept_record())
        finally:
            self.load_weights(*current)

    # ---- the loop --------------------------------------------------------------------------------------
    def iterate(self, env: PixelEnv, next_eval: float) -> float:
        """Collect, train, and every `eval_every` minutes evaluate and save; logs one curve point. Returns when
        the next evaluation is due."""
        c = self.config
        self.collect(env)
        wm_metrics, agent_metrics = self.train()
        elapsed = time.perf_counter() - self.t0
        point = {"seconds": round(self.t_prior + elapsed, 1), "env_steps": self.env_steps, "grad_steps": self.step}
        point |= {"cpu_seconds": round(self.cpu_prior + time.process_time() - self.cpu0, 1)}
        point |= {"return": float(np.mean(self.recent)), "wm_loss": wm_metrics["loss"]}
        point |= {k: round(v, 4) for k, v in agent_metrics.items()}
        point |= {k: round(wm_metrics[k], 4) for k in LOGGED if k in wm_metrics}
        if elapsed >= 60 * next_eval:
            ev = self.evaluate()
            point |= {"eval_return": ev["real_mean"], "dream_return": ev["dream_mean"]}
            next_eval += c.eval_every
            if c.keep_best:
                self.remember_if_best(ev["real_mean"], ev, point)
                self.save_best()
            else:
                self.save(ev)
        self.curve.append(point)
        self.say(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in point.items()))
        return next_eval

    def train_until_budget(self) -> dict[str, Any]:
        """Iterate until the budget is spent (at least once), evaluate, keep the best if asked, save; returns
        agent.json's content."""
        c = self.config
        kind = "MCTS" if isinstance(self.agent, MctsAgent) else "actor-critic"
        self.say(f"{kind} agent on {self.env_id}: {c.minutes} min budget, world model at step {self.step}, "
                 f"{len(self.store)} policy episodes")  # fmt: skip
        env, next_eval = make_env(self.env_id, self.pipeline), c.eval_every
        try:
            while True:
                next_eval = self.iterate(env, next_eval)
                if self.progress() >= 1.0:
                    break
        finally:
            env.close()
        evaluation = self.evaluate()
        if self.curve:
            self.curve[-1] |= {"eval_return": evaluation["real_mean"], "dream_return": evaluation["dream_mean"]}
        kept = None
        if c.keep_best:
            self.remember_if_best(evaluation["real_mean"], evaluation, self.curve[-1] if self.curve else {})
            self.load_weights(*self.best["weights"])
            evaluation = self.evaluate(KEPT_SEED_OFFSET)
            kept = self.kept_record() | {"fresh_seeds_from": 2 * POLICY_SEED_BASE + self.seed + KEPT_SEED_OFFSET}
            self.say(
                f"kept the weights evaluated at {kept['cpu_seconds'] / 60:.1f} CPU-min (return "
                f"{kept['eval_return']:.1f} there); on fresh env seeds they score {evaluation['real_mean']:.1f} ± "
                f"{evaluation['real_std']:.1f}"
            )
        return self.save(evaluation, kept)


def train_agent(run: Path | str, **kwargs: Any) -> dict[str, Any]:
    """Collect with the behaviour, train the world model, update the behaviour, repeat (see `AgentRun`);
    saves both into `run` and returns agent.json's content."""
    return AgentRun(run, **kwargs).train_until_budget()

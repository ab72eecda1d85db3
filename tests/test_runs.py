"""A training run's parts that `wm train` and `wm agent train` share: the run is resolved once into a frozen
`RunPlan`, both loops build their model and trainer with `build_trainer` (so bf16 and DDP reach the agent loop
too), and one `LrSchedule` sets the learning rate in both."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

import wm_core.run_data
from wm_core.agents.loop import AgentRun
from wm_core.data import EpisodeStore, SequenceSampler
from wm_core.run_data import RunPlan, continued_run, new_run
from wm_core.train import LrSchedule, Trainer, build_trainer, train_run


def test_one_schedule_in_two_shapes() -> None:
    linear, exponential = LrSchedule(1e-3, 0.1), LrSchedule(1e-3, 0.01, "exponential")
    assert [linear.share(p) for p in (0.0, 0.5, 1.0, 2.0)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert [exponential.share(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.1, 0.01])
    assert LrSchedule(2e-3).share(0.7) == 1.0  # no decay: the rate stays put
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam([{"params": [model.weight], "lr_scale": 1.0}, {"params": [model.bias], "lr_scale": 0.5}])
    linear.apply(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.55e-3, 0.275e-3])  # each group keeps its scale


def test_wm_train_decays_linearly_over_its_steps(cartpole_store: EpisodeStore) -> None:
    plan = new_run("ha", "CartPole-v1", "tiny", {"lr_decay": 0.5, "steps": 4}, cartpole_store.root, None)
    trainer = build_trainer(plan, cartpole_store, torch.device("cpu"))
    assert trainer.schedule == LrSchedule.of(plan.config) == LrSchedule(plan.config.lr, 0.5)
    cfg = plan.config
    trainer.sampler = SequenceSampler(cartpole_store, trainer.model.action_spec, cfg.seq_len, cfg.batch_size)
    trainer.run(4)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr * (1 - 0.5 * 3 / 4))  # the last step's


def test_the_agent_loop_builds_its_model_as_wm_train_does(tmp_path: Path, cartpole_store: EpisodeStore) -> None:
    run = tmp_path / "agent"
    shutil.copytree(cartpole_store.root, run / "data")
    agent = AgentRun(run, env_id="CartPole-v1", preset="tiny", overrides={"wm_lr_decay": 0.25}, bf16=True,
                     say=lambda _m: None)  # fmt: skip
    trainer = agent.trainer
    assert isinstance(trainer, Trainer) and trainer.model is agent.model and trainer.bf16
    assert trainer.loss_fn == agent.model.loss  # one process: the model's own loss (DDP-wrapped under torchrun)
    assert trainer.schedule == LrSchedule(agent.model.config.lr, 0.25, "exponential")
    batch = SequenceSampler(agent.random_eps, agent.model.action_spec, 8, 2).sample()
    metrics = trainer.step(batch, 0, 1.0)  # a bf16 step at the end of the budget
    assert metrics["loss"] == metrics["loss"] and trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        agent.model.config.lr * 0.25
    )


def test_a_run_is_resolved_once_into_a_frozen_plan(
    tmp_path: Path, cartpole_store: EpisodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"env_entry": 0, "get_family": 0}
    for name in calls:
        real = getattr(wm_core.run_data, name)

        def counted(*args, _real=real, _name=name):
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(wm_core.run_data, name, counted)
    run, _ = train_run("ha", "CartPole-v1", preset="tiny", overrides={"steps": 2}, data=cartpole_store.root,
                       out=tmp_path / "run", device="cpu", checkpoint_every=0)  # fmt: skip
    assert calls == {"env_entry": 1, "get_family": 1}, calls  # not again for the budget, the coverage or the save
    plan = continued_run(run, torch.device("cpu"))
    assert isinstance(plan, RunPlan) and plan.family_name == "ha" and plan.env_id == "CartPole-v1"
    assert plan.step == 2 and not plan.own_data and plan.data == cartpole_store.root
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.data = tmp_path  # type: ignore[misc]
    own = new_run("ha", "CartPole-v1", "tiny", {}, None, tmp_path / "fresh")
    assert own.own_data and own.data == tmp_path / "fresh" / "data"

"""The cross-entropy method (Rubinstein 1999; PlaNet's planner) over action sequences: sample a population, roll
each through `model.imagine`, keep the elites, refit, repeat; discrete actions use one categorical distribution
per step, continuous ones a clipped Gaussian. With `goal_cost` it plans in embedding space toward a goal
frame's embedding, as V-JEPA 2-AC does (L1 energy to the goal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..protocol import State, WorldModel
from .mcts import Chooser


def cem_goal_chooser(model: WorldModel, goal_frame: np.ndarray, final_only: bool = True, **plan: Any) -> Chooser:
    """Act by `cem` toward the embedding of `goal_frame` (H, W, 3) uint8 (keyword arguments go to `cem`)."""
    goal = model.goal_embedding(torch.as_tensor(np.array(goal_frame[None])))
    cost = goal_cost(model, goal, final_only)

    def choose(state: State) -> tuple[np.ndarray, float]:
        result = cem(model, state, cost, **plan)
        return result.action[0], result.ms

    return choose


@dataclass
class PlanResult:
    """What one CEM call decided, per start state."""

    action: np.ndarray
    """(B,) discrete action index or (B, n) continuous action: the first step of the best plan."""
    plan: np.ndarray
    """(B, H) or (B, H, n): the best action sequence found."""
    cost: np.ndarray
    """(B,) its cost."""
    ms: float
    """Wall-clock milliseconds the planning took."""


CostFn = Callable[[list[State]], torch.Tensor]


def goal_cost(model: WorldModel, goal: torch.Tensor, final_only: bool = True) -> CostFn:
    """Cost of an imagined trajectory: L1 distance (mean over units) between the model's embedding
    (`model.embedding(state)`, (N, D)) and a goal embedding (B, D), at the last step (V-JEPA 2-AC's energy)
    or averaged over all steps. Rows are the B goals each repeated population times, as `cem` lays them out."""

    def cost(states: list[State]) -> torch.Tensor:
        steps = states[-1:] if final_only else states
        z = torch.stack([model.embedding(s) for s in steps])  # (H', N, D)
        g = goal.repeat_interleave(z.shape[1] // goal.shape[0], dim=0)  # (N, D)
        return (z - g).abs().mean(-1).mean(0)

    return cost


@torch.no_grad()
def cem(
    model: WorldModel,
    state: State,
    cost_fn: CostFn,
    *,
    horizon: int = 8,
    population: int = 64,
    elites: int = 8,
    iterations: int = 4,
    smoothing: float = 0.1,
    generator: torch.Generator | None = None,
) -> PlanResult:
    """Cross-entropy planning from the B protocol states in `state`, minimising `cost_fn` over imagined
    trajectories (temperature 0). Returns raw env actions: indices for Discrete specs, clipped vectors for Box."""
    t0 = time.perf_counter()
    spec = model.action_spec
    B = next(iter(state.values())).shape[0]
    N, H, dev = population, horizon, model.frame_mean.device
    start = {k: v.repeat_interleave(N, dim=0) for k, v in state.items()}  # (B * N, ...)
    if spec.discrete:
        probs = torch.full((B, H, spec.n), 1.0 / spec.n, device=dev)
    else:
        low = torch.tensor(spec.low, device=dev)
        high = torch.tensor(spec.high, device=dev)
        mean = ((low + high) / 2).expand(B, H, spec.n).clone()
        std = ((high - low) / 2).expand(B, H, spec.n).clone()
    best_cost = torch.full((B,), float("inf"), device=dev)
    best_plan: torch.Tensor | None = None
    for _ in range(iterations):
        if spec.discrete:
            flat = probs.unsqueeze(1).expand(B, N, H, spec.n).reshape(-1, spec.n)
            plans = torch.multinomial(flat, 1, generator=generator).view(B, N, H)  # (B, N, H)
            vectors = torch.nn.functional.one_hot(plans, spec.n).float()
        else:
            eps = torch.randn(B, N, H, spec.n, generator=generator, device=dev)
            plans = torch.maximum(torch.minimum(mean.unsqueeze(1) + std.unsqueeze(1) * eps, high), low)
            vectors = plans
        states, s = [], start
        for h in range(H):
            s = model.imagine(s, vectors[:, :, h].reshape(B * N, -1), 0.0)
            states.append(s)
        cost = cost_fn(states).view(B, N)
        top = cost.topk(elites, dim=1, largest=False).indices  # (B, elites)
        rows = torch.arange(B, device=dev)
        elite = vectors[rows.unsqueeze(1), top]  # (B, elites, H, dim)
        if spec.discrete:
            probs = (1 - smoothing) * elite.mean(1) + smoothing * probs
        else:
            mean, std = elite.mean(1), elite.std(1, correction=0).clamp(min=1e-3)
        it_cost, it_best = cost.min(1)
        chosen = plans[rows, it_best]  # (B, H[, n]): this iteration's best sequence
        if best_plan is None:
            best_plan = chosen
        else:
            better = (it_cost < best_cost).view(B, *[1] * (chosen.dim() - 1))
            best_plan = torch.where(better, chosen, best_plan)
        best_cost = torch.minimum(best_cost, it_cost)
    assert best_plan is not None
    plan = best_plan.cpu().numpy()
    return PlanResult(action=plan[:, 0], plan=plan, cost=best_cost.cpu().numpy(), ms=(time.perf_counter() - t0) * 1e3)

"""MuZero's search (Schrittwieser et al. 2020, Appendix B), batched: pUCT selection with the paper's c1, c2,
Dirichlet noise on the root prior, Q values min-max normalised over the tree, n-step backups with the model's
rewards and discount (and, an addition, its termination head: a child the model thinks terminal passes on its
reward but no future value). It searches B roots at once: every simulation descends all B trees in lock step
(each to its own depth) and expands one leaf per tree with a single batched network call. Gumbel MuZero's
improved policy (Danihelka et al. 2022) gives the alternative policy target and greedy move."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..protocol import State, WorldModel

SEARCH_CHOICES = ("visits", "improved")  # what a search's policy target and greedy move are taken from


@dataclass
class SearchResult:
    """What one MCTS call decided, per root."""

    action: np.ndarray
    """(B,) chosen action index."""
    visits: np.ndarray
    """(B, A) root visit counts; each row sums to the number of simulations."""
    root_value: np.ndarray
    """(B,) mean backed-up value at the root."""
    prior: np.ndarray
    """(B, A) the prediction function's policy at the root (before noise)."""
    improved: np.ndarray
    """(B, A) Gumbel MuZero's improved policy softmax(log prior + sigma(completed Q)) (`improved_policy`)."""
    ms: float
    """Wall-clock milliseconds the search took."""


class _Tree:
    """One search tree's statistics in flat Python lists indexed by node (0 is the root)."""

    def __init__(self, prior: list[float], gamma: float) -> None:
        self.gamma = gamma
        self.prior = [prior]  # per node: the prediction function's policy over its edges
        self.children = [[-1] * len(prior)]  # per node and action: child node, -1 while unexpanded
        self.reward = [0.0]  # reward on entering the node
        self.cont = [1.0]  # probability the node's state is not terminal (1 without a termination head)
        self.visits = [0]
        self.value_sum = [0.0]
        self.q_min, self.q_max = math.inf, -math.inf  # the paper's MinMaxStats over the tree

    def q(self, node: int) -> float:
        """The node's value seen from its parent: reward on entering it plus the discounted mean value."""
        return self.reward[node] + self.gamma * self.cont[node] * self.value_sum[node] / max(self.visits[node], 1)

    def select(self, c1: float, c2: float, siblings: bool = False) -> tuple[list[int], int]:
        """Descend by pUCT (paper, equation 2) to an unexpanded edge: (path of nodes, its action). Q values
        are min-max normalised over the tree, or with `siblings` over the visited children of each node."""
        node, path = 0, [0]
        while True:
            n_parent = self.visits[node]
            # sqrt(max(N, 1)): at a fresh root (N = 0) the paper's formula scores every edge 0 and picks
            # action 0; with 1 the first visit follows the (noisy) prior instead.
            explore = (math.log((n_parent + c2 + 1) / c2) + c1) * math.sqrt(max(n_parent, 1))
            kids = self.children[node]
            qs = [self.q(kid) if kid >= 0 and self.visits[kid] > 0 else None for kid in kids]  # None: unvisited
            lo, hi = self.q_min, self.q_max
            if siblings:
                seen = [q for q in qs if q is not None]
                lo, hi = (min(seen), max(seen)) if seen else (0.0, 0.0)
            span = hi - lo
            best, best_a = -math.inf, 0
            for a, (kid, p, q_kid) in enumerate(zip(kids, self.prior[node], qs)):
                n_kid = self.visits[kid] if kid >= 0 else 0
                q = 0.0  # unvisited edges score 0, as in the paper's pseudocode
                if q_kid is not None:
                    q = (q_kid - lo) / span if span > 0 else (0.5 if siblings else q_kid)
                score = q + p * explore / (1 + n_kid)
                if score > best:
                    best, best_a = score, a
            kid = self.children[node][best_a]
            if kid < 0:
                return path, best_a
            node = kid
            path.append(node)

    def expand(self, parent: int, action: int, prior: list[float], reward: float, cont: float = 1.0) -> int:
        """Add the child reached from `parent` by `action`; returns its index."""
        self.children[parent][action] = len(self.prior)
        self.prior.append(prior)
        self.children.append([-1] * len(prior))
        self.reward.append(reward)
        self.cont.append(cont)
        self.visits.append(0)
        self.value_sum.append(0.0)
        return len(self.prior) - 1

    def backup(self, path: list[int], value: float) -> None:
        """Add the leaf's value to every node on the path, discounting through rewards (paper, Appendix B)."""
        for node in reversed(path):
            self.value_sum[node] += value
            self.visits[node] += 1
            q = self.q(node)
            self.q_min, self.q_max = min(self.q_min, q), max(self.q_max, q)
            value = self.reward[node] + self.gamma * self.cont[node] * value


@torch.no_grad()
def mcts(
    model: WorldModel,
    state: State,
    *,
    simulations: int = 50,
    temperature: float = 0.0,
    dirichlet_alpha: float = 0.25,
    noise_fraction: float = 0.25,
    c1: float = 1.25,
    c2: float = 19652.0,
    discount: float | None = None,
    use_done: bool = True,
    normalize: str = "tree",
    greedy: str = "visits",
    rng: np.random.Generator | None = None,
) -> SearchResult:
    """MuZero MCTS from the B protocol states in `state`; the model must offer `prediction` and
    `recurrent_inference` on hidden states `state["s"]` (B, D).

    temperature 0 picks the most visited action (`greedy` "visits", the paper) or the improved policy's
    favourite (`greedy` "improved", Gumbel MuZero's final choice: the prior plus the children's normalised
    Q, see `improved_policy`), > 0 samples from visits^(1/temperature) (the paper's training-time choice);
    noise_fraction 0 turns the root noise off (evaluation). With `use_done` every node's future value is
    scaled by 1 - p(terminal) from the termination head, an addition: the paper's Atari games have no
    episode ends to plan around, CartPole's are the whole game.

    normalize "tree" min-max normalises Q over the whole tree (the paper's MinMaxStats); "siblings" over the
    visited children of the node being descended (an addition, as Gumbel MuZero rescales the root's
    children, Danihelka et al. 2022): on CartPole the tree's span runs from nodes the model thinks terminal
    to safe ones, so the small Q differences between a node's own actions barely moved its visits.

    The B trees are walked in plain Python (a node's work is a few float operations, far below the
    overhead of a tensor op); each simulation expands one leaf per tree with one batched network call.
    """
    if normalize not in ("tree", "siblings"):
        raise ValueError(f"normalize must be 'tree' or 'siblings', got {normalize!r}")
    if greedy not in SEARCH_CHOICES:
        raise ValueError(f"greedy must be 'visits' or 'improved', got {greedy!r}")
    t0 = time.perf_counter()
    rng = rng or np.random.default_rng()
    gamma = float(model.config.discount if discount is None else discount)
    s0 = state["s"]
    B, A = s0.shape[0], model.action_spec.n
    latent = s0.new_zeros(B, simulations + 1, s0.shape[1])  # hidden state of every node
    latent[:, 0] = s0
    logits, _ = model.prediction(s0)
    root_prior = logits.softmax(-1).double().cpu().numpy()  # (B, A)
    noisy = (1 - noise_fraction) * root_prior + noise_fraction * rng.dirichlet([dirichlet_alpha] * A, size=B)
    trees = [_Tree(row.tolist(), gamma) for row in noisy]
    rows = torch.arange(B, device=s0.device)

    for _ in range(simulations):
        picks = [tree.select(c1, c2, normalize == "siblings") for tree in trees]
        parents = torch.tensor([path[-1] for path, _ in picks], device=s0.device)
        actions = torch.tensor([a for _, a in picks], device=s0.device)
        one_hot = torch.nn.functional.one_hot(actions, A).to(s0.dtype)
        s, r, leaf_logits, v, p_done = model.recurrent_inference(latent[rows, parents], one_hot)
        conts = (1 - p_done).tolist() if use_done else [1.0] * B
        priors, rewards, values = leaf_logits.softmax(-1).tolist(), r.tolist(), v.tolist()
        for b, (tree, (path, a)) in enumerate(zip(trees, picks)):
            new = tree.expand(path[-1], a, priors[b], rewards[b], conts[b])
            latent[b, new] = s[b]
            tree.backup(path + [new], values[b])

    return _result(trees, root_prior, temperature, greedy, rng, t0)


def _result(
    trees: list[_Tree], root_prior: np.ndarray, temperature: float, greedy: str, rng: np.random.Generator, t0: float
) -> SearchResult:
    """The searched trees' chosen moves (see `mcts` for temperature and greedy), visits, values and policies."""
    root_visits = np.array([[tree.visits[k] if k >= 0 else 0 for k in tree.children[0]] for tree in trees])
    improved = np.stack([improved_policy(tree, row) for tree, row in zip(trees, root_prior)])
    if temperature <= 0 and greedy == "improved":
        chosen = improved.argmax(-1)
    elif temperature <= 0:
        chosen = (root_visits + 1e-3 * root_prior).argmax(-1)  # ties go to the prior's favourite
    else:
        p = root_visits ** (1.0 / temperature)
        chosen = np.array([rng.choice(root_prior.shape[1], p=row / row.sum()) for row in p])
    root_value = np.array([tree.value_sum[0] / max(tree.visits[0], 1) for tree in trees])
    return SearchResult(action=chosen, visits=root_visits.astype(np.int64), root_value=root_value, prior=root_prior,
                        improved=improved, ms=(time.perf_counter() - t0) * 1e3)  # fmt: skip


def improved_policy(tree: _Tree, prior: np.ndarray, c_visit: float = 50.0, c_scale: float = 0.1) -> np.ndarray:
    """Gumbel MuZero's policy target at a root (Danihelka et al. 2022, "Policy improvement by planning with
    Gumbel", equations 8, 10, 11): softmax(log prior + sigma(q)), sigma(q) = (c_visit + max_b N(b)) c_scale q,
    with q the root children's Q values (an unvisited child completed with the root's mean value) min-max
    normalised over those children; c_visit 50 and c_scale 0.1 as in DeepMind's mctx library. Unlike the
    visit distribution it moves away from the prior as soon as the search tells the actions apart."""
    root_value = tree.value_sum[0] / max(tree.visits[0], 1)
    kids = tree.children[0]
    q = np.array([tree.q(k) if k >= 0 and tree.visits[k] > 0 else root_value for k in kids])
    span = q.max() - q.min()  # below a millionth of the values' scale the children tie (rounding, not search)
    q = (q - q.min()) / span if span > 1e-6 * max(1.0, np.abs(q).max()) else np.full_like(q, 0.5)
    max_visits = max(tree.visits[k] if k >= 0 else 0 for k in kids)
    logits = np.log(np.maximum(prior, 1e-12)) + (c_visit + max_visits) * c_scale * q
    p = np.exp(logits - logits.max())
    return p / p.sum()


Chooser = Callable[[State], tuple[np.ndarray, float]]  # protocol state (1 row) -> raw action, milliseconds


class MctsChooser:
    """A `Chooser` that acts by `mcts` (keyword arguments go to it) and keeps every search's result, so an
    episode played with it can store training targets (`targets`): the root visit distribution (the paper's
    policy target) or, with policy_target "improved", Gumbel MuZero's improved policy."""

    def __init__(
        self, model: WorldModel, rng: np.random.Generator | None = None, policy_target: str = "visits", **search: Any
    ) -> None:
        if policy_target not in SEARCH_CHOICES:
            raise ValueError(f"policy_target must be 'visits' or 'improved', got {policy_target!r}")
        self.model, self.rng, self.search = model, rng or np.random.default_rng(0), search
        self.policy_target = policy_target
        self.results: list[SearchResult] = []

    def __call__(self, state: State) -> tuple[np.ndarray, float]:
        """Search from `state` (one row) -> (action index, milliseconds)."""
        result = mcts(self.model, state, rng=self.rng, **self.search)
        self.results.append(result)
        return result.action[0], result.ms

    def targets(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Policy targets (frames, A) and root values (frames,) of the searches so far, one per frame from
        the first; frames without a search (the last one) get a zero row and NaN."""
        policy = np.zeros((frames, self.model.action_spec.n), np.float32)
        value = np.full(frames, np.nan, np.float32)
        for t, r in enumerate(self.results[:frames]):
            policy[t] = r.improved[0] if self.policy_target == "improved" else r.visits[0] / max(r.visits[0].sum(), 1)
            value[t] = r.root_value[0]
        return policy, value


def mcts_chooser(model: WorldModel, rng: np.random.Generator | None = None, **search: Any) -> MctsChooser:
    """Act by `mcts` (keyword arguments go to it): for `plan_episode`."""
    return MctsChooser(model, rng, **search)

"""Controllers trained only inside a world model's dream, then scored in the real env: the temperature lesson of
Ha & Schmidhuber 2018 ("World Models", sections 4.4-4.5, "Learning inside of a dream" and "Cheating the
world model"), reproduced small. Results and the commands that made them: docs/results/dream-controllers.md.

A controller is linear on the model's flat latent, `WorldModel.latent` (what the actor-critic of `wm agent`
reads too): action = argmax(W f + b) for discrete actions, low + (high - low)(tanh(W f + b) + 1)/2 for
continuous ones. The paper's controller reads [z, h]; `latent` is each family's declared choice
(`latent_keys`): [h, z] for dreamer, but V's z alone for ha, so on ha this controller sees the frame's code and
not M's memory of the motion. CMA-ES (Hansen's `cma` package, the paper's optimiser) searches W and b; a
candidate's fitness is its mean return over dreams started from real contexts, with the model's own predicted
rewards and episode ends, sampled at a temperature. The paper's finding: a controller trained in a
low-temperature dream learns to exploit the model's mistakes ("cheats the dream") and transfers badly; a
noisier dream (higher temperature) makes such exploits unreliable.

Every random number comes from generators seeded by the config's `seed` (numpy for contexts and CMA-ES, the
dream's own torch generator for sampling); nothing reads or reseeds the global streams.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..checkpoint_checks import check_finite, weight_path
from ..data.collect import real_context
from ..data.envs import make_env
from ..dream import Dream
from ..errors import CheckpointError
from ..files import atomic_write_bytes, atomic_write_json, read_json_file
from ..model_cache import cached_model
from ..protocol import WorldModel
from ..spec import FramePipeline
from .planning import plan_episode

CONTROLLER_FILE, CONTROLLER_META = "controller.safetensors", "controller.json"
REAL_SEED_BASE = 300_000  # real-env episodes of controllers (disjoint from training and held-out seeds)
CONTEXT_FRAMES = 5  # real frames of random play each dream starts from


@dataclass
class ControllerConfig:
    """How a controller is searched in the dream (the `wm controller` flags)."""

    temperature: float = 1.0
    """The dream's sampling temperature (the paper's tau); 0 dreams the model's most likely future."""
    generations: int = 30
    """CMA-ES generations."""
    population: int = 16
    """Candidates per generation (CMA-ES needs at least 2)."""
    dream_episodes: int = 8
    """Dreams per candidate, each from its own real context; the fitness is their mean return."""
    horizon: int = 200
    """Most dream steps per episode."""
    sigma: float = 0.5
    """CMA-ES's initial step size around the all-zero controller."""
    seed: int = 0
    """Seeds the real contexts, CMA-ES, the dreams, and the env seeds of the real episodes."""


class LinearController:
    """action = f(W · latent + b); `params` is the flat vector CMA-ES searches (W row-major, then b)."""

    def __init__(self, model: WorldModel, params: np.ndarray) -> None:
        spec, d = model.action_spec, latent_size(model)
        n = spec.n
        self.spec = spec
        p = np.asarray(params, np.float32)
        if p.shape != (n * d + n,):
            raise CheckpointError(
                f"a controller for this model has {n * d + n} parameters, got {p.size}: use one trained in its dream"
            )
        self.weight, self.bias = torch.from_numpy(p[: n * d].reshape(n, d)), torch.from_numpy(p[n * d :])

    def act(self, features: torch.Tensor) -> np.ndarray:
        """Raw env actions (B,) or (B, n) for latents (B, D)."""
        out = features.float().cpu() @ self.weight.T + self.bias
        if self.spec.discrete:
            return out.argmax(-1).numpy()
        low, high = np.asarray(self.spec.low, np.float32), np.asarray(self.spec.high, np.float32)
        return low + (high - low) * (np.tanh(out.numpy()) + 1) / 2


def latent_size(model: WorldModel) -> int:
    """D of the model's flat latent."""
    return int(model.latent(model.initial(1)).shape[1])


def check_config(cfg: ControllerConfig) -> None:
    """A ValueError in one line for a setting the search cannot use."""
    if not cfg.temperature >= 0:
        raise ValueError(f"--temperature must be 0 or more, got {cfg.temperature}")
    if cfg.population < 2:
        raise ValueError(f"--population must be 2 or more (CMA-ES ranks candidates), got {cfg.population}")
    if min(cfg.generations, cfg.dream_episodes, cfg.horizon) < 1 or not cfg.sigma > 0:
        raise ValueError("--generations, --episodes and --horizon must be 1 or more, and sigma above 0")


def controller_model(run: Path | str) -> tuple[WorldModel, dict[str, Any]]:
    """RUN's model (loaded once per file version) and metadata; a CheckpointError for a family without a latent."""
    model, meta = cached_model(str(run))
    if not model.capabilities.latent:
        raise CheckpointError(f"{meta['family']} has no latent for a controller to read: use an ha or dreamer run")
    return model.eval(), meta


def real_contexts(model: WorldModel, meta: dict[str, Any], count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` real contexts (frames (count, T, S, S, 3), actions) from random play, the dreams' starts."""
    env = make_env(meta["env_id"], FramePipeline.from_json(meta["pipeline"]))
    try:
        rng = np.random.default_rng(seed)
        got = [real_context(env, model.action_spec, rng, CONTEXT_FRAMES) for _ in range(count)]
    finally:
        env.close()
    return np.stack([c.frames for c in got]), np.stack([c.acts for c in got])


@torch.inference_mode()
def dream_returns(
    model: WorldModel, candidates: list[np.ndarray], contexts: tuple[np.ndarray, np.ndarray], cfg: ControllerConfig,
    seed: int,
) -> np.ndarray:  # fmt: skip
    """Mean dream return of each candidate over the contexts, all P x E dreams rolled out as one batch; an episode
    stops counting reward once the model predicts its end (the paper's fitness, inside the dream)."""
    frames, acts = contexts
    E, P = len(frames), len(candidates)
    dream = Dream(model, cfg.temperature, seed=seed)
    dream.reset(np.tile(frames, (P, 1, 1, 1, 1)), np.tile(acts, (P,) + (1,) * (acts.ndim - 1)))  # row p * E + e
    controllers = [LinearController(model, c) for c in candidates]
    alive, total = np.ones(P * E, bool), np.zeros(P * E)
    for _ in range(cfg.horizon):
        z = model.latent(dream.state)
        action = np.concatenate([ctl.act(z[i * E : (i + 1) * E]) for i, ctl in enumerate(controllers)])
        _, reward, ended, _ = dream.step(action)
        total += np.where(alive, reward, 0.0)
        alive &= ~np.asarray(ended, bool)
        if not alive.any():
            break
    return total.reshape(P, E).mean(1)


def search(run: Path | str, cfg: ControllerConfig, log: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """CMA-ES over a linear controller in RUN's dream (Ha & Schmidhuber 2018, section 4.4); returns the final
    mean parameters and a record (dream return of them, mean fitness per generation)."""
    import cma

    check_config(cfg)
    model, meta = controller_model(run)
    n, d = model.action_spec.n, latent_size(model)
    contexts = real_contexts(model, meta, cfg.dream_episodes, cfg.seed)
    rng = np.random.default_rng([cfg.seed, 1])
    # cma draws from np.random (and seeds it) unless given its own `randn`; a nan seed skips the seeding
    options = {"popsize": cfg.population, "seed": float("nan"), "verbose": -9}
    options["randn"] = lambda count, dim: rng.standard_normal((count, dim))
    es = cma.CMAEvolutionStrategy(np.zeros(n * d + n), cfg.sigma, options)
    history = []
    for g in range(cfg.generations):
        xs = es.ask()
        fitness = dream_returns(model, xs, contexts, cfg, seed=cfg.seed + 1000 * g)
        es.tell(xs, (-fitness).tolist())
        history.append(float(fitness.mean()))
        if log is not None:
            log(f"generation {g + 1}/{cfg.generations}: dream return {fitness.mean():.1f}, best {fitness.max():.1f}")
    best = np.asarray(es.result.xfavorite, np.float32)
    final = float(dream_returns(model, [best], contexts, cfg, seed=cfg.seed + 999_999)[0])
    return best, {"dream_return": final, "history": history, "latent_size": d}


def real_returns(run: Path | str, params: np.ndarray, episodes: int, seed: int = 0) -> dict[str, Any]:
    """The controller driving the real env for `episodes` episodes (env seeds `REAL_SEED_BASE + seed + i`):
    {"mean", "std", "episodes", "returns"}."""
    if episodes < 1:
        raise ValueError(f"--real-episodes must be 1 or more, got {episodes}")
    returns = [controller_episode(run, params, seed + i)[0] for i in range(episodes)]
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "episodes": episodes, "returns": returns}


@torch.inference_mode()
def controller_episode(run: Path | str, params: np.ndarray, seed: int = 0) -> tuple[float, np.ndarray]:
    """One real episode (env seed `REAL_SEED_BASE + seed`) driven by the controller on the latent the model
    filters from the real frames, as the Play tab's model sees them: (return, frames (T+1, S, S, 3) uint8)."""
    model, meta = controller_model(run)
    ctl = LinearController(model, params)
    env = make_env(meta["env_id"], FramePipeline.from_json(meta["pipeline"]))
    try:
        episode, _ = plan_episode(model, env, REAL_SEED_BASE + seed, lambda s: (ctl.act(model.latent(s))[0], 0.0))
    finally:
        env.close()
    return float(episode.rew.sum()), episode.obs


def save_controller(out: Path | str, params: np.ndarray, record: dict[str, Any]) -> Path:
    """Write controller.safetensors and controller.json (each atomically) into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / CONTROLLER_FILE, save({"params": torch.from_numpy(np.asarray(params, np.float32))}))
    atomic_write_json(out / CONTROLLER_META, record)
    return out


def load_controller(folder: Path | str) -> tuple[np.ndarray, dict[str, Any]]:
    """(params, record) of a saved controller; a one-line CheckpointError naming the folder when it is missing or
    broken."""
    folder = Path(folder)
    try:
        record = read_json_file(folder / CONTROLLER_META)
        path = weight_path(folder, {"file": CONTROLLER_FILE}, "controller")
        tensors = load_file(str(path))
        check_finite(tensors, path)
        params = tensors["params"].numpy()
        if not isinstance(record, dict) or params.ndim != 1:
            raise ValueError("its record or parameters have the wrong shape")
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        why = " ".join(str(e).split())
        raise CheckpointError(
            f"no readable controller in {folder} ({why}): train one with `wm controller RUN --out DIR`"
        ) from None
    return params, record


def train_controller(
    run: Path | str, cfg: ControllerConfig, out: Path | str, real_episodes: int, command: str, log: Any = None
) -> dict[str, Any]:
    """Search a controller in RUN's dream, score it in the real env, save it with its record; returns the record
    (run, weights hash, config, dream return, real return, CPU-seconds, command)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    params, found = search(run, cfg, log)
    real = real_returns(run, params, real_episodes, cfg.seed)
    meta = controller_model(run)[1]
    record = {
        "run": Path(meta["_dir"]).name,
        "weights_sha256": meta["weights"]["sha256"],
        "config": asdict(cfg),
        **found,
        "real_return": real,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "command": command,
    }
    save_controller(out, params, record)
    return record

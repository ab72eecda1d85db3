"""`wm bench`: speed and memory of each family through the protocol, on random inputs.

Numbers are printed, never asserted: tests check correctness, benchmarks report speed.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
import torch

from .dream import Dream
from .memory import keep_freed_memory
from .protocol import WorldModel, make_optimizer
from .registry import FAMILIES, get_family
from .spec import ActionSpec
from .train import gradient_step, peak_rss_mb, resolve_device


def _percentiles(samples: list[float]) -> tuple[float, float]:
    a = np.asarray(samples) * 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _dream_latency(model: WorldModel, steps: int, dev: torch.device) -> tuple[float, float]:
    """p50 and p95 ms of a batch-1 dream step (imagine + decode + the frame's base64, as the Play tab sends)."""
    rng, S = np.random.default_rng(0), model.frame_size
    dream = Dream(model, temperature=1.0, seed=0)
    dream.reset(rng.integers(0, 255, (5, S, S, 3), dtype=np.uint8), np.array([0, 1, 0, 1, 0]))
    times = []
    for i in range(steps + 10):
        t0 = time.perf_counter()
        frame, _, _, _ = dream.step(i % 2)
        base64.b64encode(frame.tobytes())
        _sync(dev)
        if i >= 10:  # warm-up steps are not counted
            times.append(time.perf_counter() - t0)
    return _percentiles(times)


@torch.inference_mode()
def _imagine_rate(model: WorldModel, spec: ActionSpec, batch: int, dev: torch.device) -> float:
    """Imagined states per second at `batch` (no decoding)."""
    state = model.initial(batch)
    act = spec.encode(np.random.default_rng(0).integers(0, 2, batch)).to(dev)
    for _ in range(3):
        state = model.imagine(state, act)
    _sync(dev)
    t0, n = time.perf_counter(), 20
    for _ in range(n):
        state = model.imagine(state, act)
    _sync(dev)
    return n * batch / (time.perf_counter() - t0)


def _train_step_seconds(
    model: WorldModel, spec: ActionSpec, steps: int, dev: torch.device, bf16: bool = False,
    max_seconds: float = float("inf"),
) -> float:  # fmt: skip
    """Median seconds of the trainer's `gradient_step` on a random batch of the config's size (first step not
    counted; fewer than `steps` when `max_seconds` runs out first). The median, because single CPU steps here
    spread by -20/+35 % around it. Each row holds one episode start inside its window besides the first, as
    sampled CartPole data does, so families that restart state at episode starts pay for it."""
    cfg, S, rng = model.config, model.frame_size, np.random.default_rng(0)
    B, T = cfg.batch_size, cfg.seq_len
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    if T > 2:
        first[torch.arange(B), torch.as_tensor(rng.integers(1, T, B))] = True
    data = {
        "obs": torch.randint(0, 255, (B, T, S, S, 3), dtype=torch.uint8),
        "act": spec.encode(rng.integers(0, 2, (B, T))),
        "rew": torch.ones(B, T),
        "is_first": first,
        "is_terminal": torch.zeros(B, T, dtype=torch.bool),
    }
    opt = make_optimizer(model, 1e-4)
    model.train()
    times: list[float] = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        gradient_step(model, opt, data, dev, bf16)
        _sync(dev)
        if i:
            times.append(time.perf_counter() - t0)
        if times and sum(times) > max_seconds:
            break
    model.eval()
    return float(np.median(times))


def bench_family(
    name: str,
    preset: str = "small",
    device: str = "auto",
    dream_steps: int = 200,
    train_steps: int = 5,
    batch: int = 256,
) -> dict[str, Any]:
    """Dream step latency (batch 1, imagine + decode + frame encoding), batched imagination
    throughput, training throughput and parameter count for one family and preset."""
    dev = resolve_device(device)
    cls = get_family(name)
    cfg = cls.preset(preset)
    spec = ActionSpec("discrete", 2, names=("left", "right"))
    model = cls(cfg, spec).to(dev).eval()
    p50, p95 = _dream_latency(model, dream_steps, dev)
    imagine_rate = _imagine_rate(model, spec, batch, dev)
    step_s = _train_step_seconds(model, spec, train_steps, dev)
    return {
        "family": name,
        "preset": preset,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "dream_ms_p50": p50,
        "dream_ms_p95": p95,
        "imagine_states_per_s": imagine_rate,
        "train_step_s": step_s,
        "train_sequences_per_s": cfg.batch_size / step_s,
        "batch": f"{cfg.batch_size}x{cfg.seq_len}",
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
    }


def run_bench(
    families: list[str] | None = None, presets: tuple[str, ...] = ("small",), device: str = "auto", **kwargs: Any
) -> list[dict[str, Any]]:
    """`bench_family` over families x presets."""
    return [bench_family(f, p, device, **kwargs) for f in (families or sorted(FAMILIES)) for p in presets]


def format_bench(rows: list[dict[str, Any]]) -> str:
    """Rows as a fixed-width table."""
    head = (
        f"{'family':<8} {'preset':<6} {'device':<6} {'params':>9} {'dream p50':>9} {'p95 ms':>7} "
        f"{'imagine/s':>10} {'train seq/s':>11} {'batch':>7} {'peak RSS MiB':>12}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['family']:<8} {r['preset']:<6} {r['device']:<6} {r['params']:>9,} {r['dream_ms_p50']:>9.2f} "
            f"{r['dream_ms_p95']:>7.2f} {r['imagine_states_per_s']:>10,.0f} {r['train_sequences_per_s']:>11.1f} "
            f"{r['batch']:>7} {r['peak_rss_mb']:>12.0f}"
        )
    return "\n".join(lines) + f"\n({rows[0]['threads'] if rows else '?'} torch threads)"


def bench_training(
    families: list[str] | None = None, presets: tuple[str, ...] = ("small",), device: str = "auto", steps: int = 20
) -> list[dict[str, Any]]:
    """`wm bench --train`: gradient steps/s and frames/s (batch x sequence frames per second) of every family and
    preset, in fp32 and under bf16 autocast, on random batches of the preset's size. Freed memory is kept for
    reuse, as the Trainer does."""
    keep_freed_memory()
    dev, rows = resolve_device(device), []
    spec = ActionSpec("discrete", 2, names=("left", "right"))
    for name in families or sorted(FAMILIES):
        for preset in presets:
            cls = get_family(name)
            cfg = cls.preset(preset)
            for bf16 in (False, True):
                model = cls(cfg, spec).to(dev)
                seconds = _train_step_seconds(model, spec, steps, dev, bf16)
                rows.append({
                    "family": name, "preset": preset, "precision": "bf16" if bf16 else "fp32", "device": str(dev),
                    "threads": torch.get_num_threads(), "batch": f"{cfg.batch_size}x{cfg.seq_len}",
                    "steps_per_s": 1 / seconds, "frames_per_s": cfg.batch_size * cfg.seq_len / seconds,
                    "peak_rss_mb": peak_rss_mb(),
                })  # fmt: skip
    return rows


def format_training(rows: list[dict[str, Any]]) -> str:
    """`bench_training` rows as a fixed-width table."""
    lines = [f"{'family':<10} {'preset':<6} {'precision':<9} {'batch':>7} {'steps/s':>8} {'frames/s':>9}"]
    for r in rows:
        lines.append(
            f"{r['family']:<10} {r['preset']:<6} {r['precision']:<9} {r['batch']:>7} {r['steps_per_s']:>8.2f} "
            f"{r['frames_per_s']:>9.0f}"
        )
    where = f"({rows[0]['threads']} torch threads, {rows[0]['device']})" if rows else ""
    return "\n".join(lines) + "\n" + where

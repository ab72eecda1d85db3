"""Data-parallel training with `torch.distributed` (DDP), for several processes, GPUs or machines:

    torchrun --standalone --nproc_per_node=N -m wm_core.cli train --family ha --env CartPole-v1 ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `wm train` then trains one model in N processes: gloo on CPU,
NCCL on GPUs (rank r on cuda:LOCAL_RANK). Rank 0 collects the data (the others wait), every rank samples its own
shard of the episodes, DDP averages the gradients, and only rank 0 prints and writes the checkpoint, in the usual
format, so a run resumes with any N. The checkpoint records how the run ran: the torchrun command that launched
it (`launch_argv`), the world size, and the CPU-seconds of every rank (`summed`). Without torchrun nothing here
does anything.

With WM_DDP_CHECKSUMS=DIR each rank appends a checksum of its weights after every step to DIR/rank-R.txt: the
ranks must hold the same weights (tests/test_distributed.py compares them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    """Processes training together (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def is_main() -> bool:
    """True in the process that prints and saves."""
    return rank() == 0


def start(device: torch.device) -> torch.device:
    """Join the process group when torchrun started us (gloo on CPU, NCCL on CUDA); returns this rank's device."""
    if world_size() == 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if dist.is_initialized():
        dist.barrier()


def finish() -> None:
    """Leave the process group."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def summed(value: float) -> float:
    """`value` added up over the ranks (every rank must call this at the same point); `value` in one process."""
    if not dist.is_initialized():
        return value
    on_gpu = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
    total = torch.tensor([value], dtype=torch.float64, device="cuda" if on_gpu else "cpu")
    dist.all_reduce(total)
    return float(total.item())


def launch_argv() -> list[str] | None:
    """Under torchrun, the command line that launched the ranks, as `torchrun ARGS -m wm_core.cli ...` (read from
    the launcher's process where the system shows it, else rebuilt from torchrun's variables); None in one
    process."""
    if world_size() == 1:
        return None
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        parent = [part.decode() for part in raw.split(b"\0") if part]
    except (OSError, UnicodeDecodeError):
        parent = []
    for i, part in enumerate(parent):  # `torchrun ...` or `python -m torch.distributed.run ...`
        if Path(part).name == "torchrun" or (part == "torch.distributed.run" and parent[i - 1] == "-m"):
            return ["torchrun", *parent[i + 1 :]]
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    nodes = [f"--nnodes={world_size() // per_node}"] if per_node != world_size() else ["--standalone"]
    return ["torchrun", *nodes, f"--nproc_per_node={per_node}", "-m", "wm_core.cli", *sys.argv[1:]]


class LossModule(nn.Module):
    """A world model whose `forward` is its `loss`, so DDP can wrap it (DDP synchronises gradients of what its
    forward computed)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch)


def wrap(model: nn.Module, device: torch.device) -> Any:
    """The loss function to train with: the model's own in one process, else a DDP-wrapped one that averages
    gradients across ranks (unused parameters allowed: not every family uses every head in every loss)."""
    if not dist.is_initialized():
        return model.loss
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(LossModule(model), device_ids=ids, find_unused_parameters=True)


def shard(count: int) -> list[int]:
    """The episode indices this rank samples from (every one in one process)."""
    return list(range(rank(), count, world_size())) if world_size() > 1 else list(range(count))


def record_checksum(model: nn.Module, step: int) -> None:
    """With WM_DDP_CHECKSUMS=DIR: append this rank's weight checksum after `step` to DIR/rank-R.txt."""
    folder = os.environ.get("WM_DDP_CHECKSUMS")
    if not folder:
        return
    with torch.no_grad():
        total = sum(float(p.double().sum()) for p in model.parameters())
    with open(Path(folder) / f"rank-{rank()}.txt", "a") as f:
        f.write(f"{step} {total:.10e}\n")

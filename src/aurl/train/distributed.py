"""Data-parallel training with torch.distributed, started by ``torchrun`` (nothing home-made).

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs in one
process and every helper here is a no-op. Processes talk over gloo on CPUs and NCCL on GPUs,
one GPU per local rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """Where this process sits among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates, checkpoints and exports."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_environment() -> Ranks:
    """The ranks ``torchrun`` set in the environment (one process when it did not)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (gloo on CPU, NCCL on CUDA); return this rank's device."""
    if not ranks.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop(ranks: Ranks) -> None:
    """Leave the process group (after the last collective)."""
    if ranks.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrapper(ranks: Ranks, device: torch.device):
    """A function wrapping a module in DDP (identity in one process)."""

    def wrap(module: nn.Module) -> nn.Module:
        if not ranks.active:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    return wrap


def all_reduce_sum(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The sum over ranks of ``values`` (a CPU tensor; itself in one process)."""
    if not ranks.active:
        return values
    on = values.cuda() if dist.get_backend() == "nccl" else values  # NCCL reduces GPU memory only
    dist.all_reduce(on, op=dist.ReduceOp.SUM)
    return on.cpu()


def broadcast(obj, ranks: Ranks):
    """Rank 0's ``obj`` on every rank (pickled; for small states and decisions)."""
    if not ranks.active:
        return obj
    box = [obj if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, ranks: Ranks) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ranks.active:
        return [obj]
    out = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        dist.barrier()

"""Multi-process training under ``torchrun``: who this process is, and the few collectives the loop needs.

``torchrun`` describes each process through ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; those are
read once, at the command-line boundary (:func:`context_from_environment`), and passed down as a
:class:`DistributedContext`. With a world of one every helper here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "context_from_environment"]


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes logs and checkpoints."""
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        """Join the process group (NCCL on CUDA, gloo on CPU)."""
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank, world_size=self.world)

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is true on any rank (for stop decisions)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over ranks."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], device=device, dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world


def context_from_environment(environment: Mapping[str, str] | None = None) -> DistributedContext:
    """The context ``torchrun`` describes in the environment (not distributed when absent)."""
    environment = os.environ if environment is None else environment
    world = int(environment.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    return DistributedContext(
        rank=int(environment.get("RANK", "0")),
        world=world,
        local_rank=int(environment.get("LOCAL_RANK", "0")),
    )

"""Multi-process training under ``torchrun``: who this process is, and the few collectives the loop needs.

``torchrun`` describes each process through ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; those are
read once, at the command-line boundary (:func:`context_from_environment`), and passed down as a
:class:`DistributedContext`. With a world of one every helper here is a no-op.

On CUDA each process is bound to the GPU of its ``LOCAL_RANK`` before the NCCL group exists
(``torch.cuda.set_device`` and ``init_process_group(device_id=...)``), so no rank creates a context
on GPU 0 by accident. Collectives of the training steps use the default group (NCCL on CUDA, with its
10-minute timeout). Waits for work that takes long and varies between ranks (building a rank's share
of the preprocessing cache, validating its share of the cases) use a separate gloo group through
:meth:`DistributedContext.sum_after_work`, with a timeout the caller sizes to the work.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "context_from_environment"]


def _device_binding(device: torch.device) -> dict[str, Any]:
    """``init_process_group``'s ``device_id`` where it is safe: PyTorch >= 2.3 has it, and 2.7.0 is skipped,
    whose eager NCCL initialisation can hang (pytorch/pytorch#153960, worked around in 2.7.1)."""
    if "device_id" not in inspect.signature(dist.init_process_group).parameters:
        return {}
    if torch.__version__.split("+")[0] == "2.7.0":
        return {}
    return {"device_id": device}


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    _groups: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes logs and checkpoints."""
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        """Join the process group (NCCL on CUDA, bound to ``device``; gloo on CPU) and create the gloo group
        for long waits."""
        if not self.enabled or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", rank=self.rank, world_size=self.world, **_device_binding(device))
        else:
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world)
        self._groups["work"] = dist.new_group(backend="gloo")

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
            self._groups.clear()

    def sum_after_work(self, values: Sequence[float], timeout: timedelta) -> list[float]:
        """The sums of ``values`` over ranks, once every rank has finished its share of some work.

        The wait happens on the host (gloo), for up to ``timeout``: ranks that finish early wait for
        the others without hitting the default group's collective timeout.
        """
        if not self.enabled:
            return [float(v) for v in values]
        group = self._groups["work"]
        dist.monitored_barrier(group=group, timeout=timeout, wait_all_ranks=True)
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(tensor, group=group)
        return tensor.tolist()

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

"""The process group of a ``torchrun`` job, and the device each process uses.

``torchrun --nproc-per-node N -m mvspin train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`setup_distributed` joins the group (gloo on CPU, nccl on CUDA) and picks
``cuda:LOCAL_RANK`` when CUDA is asked for. A plain ``python -m mvspin train`` is a group of one
and touches no ``torch.distributed`` state.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup_distributed", "resolve_train_device"]


def resolve_train_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N`` / ``auto`` -> a device (``cuda`` under torchrun: the local rank's GPU)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


@dataclass
class DistContext:
    """Rank, world size and device of this process; ``owns_group``: this context started the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` in rank order (``[obj]`` alone)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average of a tensor over processes."""
        if not self.distributed:
            return values
        v = values.detach().clone().to(self.device)
        dist.all_reduce(v)
        return (v / self.world_size).cpu()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device_name: str = "cpu") -> DistContext:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_train_device(device_name, local)
    if world <= 1:
        return DistContext(device=device)
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, device=device,
                       owns_group=owns)

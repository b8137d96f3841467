"""Process-group helpers: init, rank, world size, gathers and job launching.

A job runs ``NUM_GPUS`` processes on each of ``NUM_SHARDS`` machines. Under
``torchrun`` the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) decides;
otherwise ``launch_job`` spawns the local processes with torch.multiprocessing
(PySlowFast convention: ``--init_method``, ``--shard_id``, ``--num_shards``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

__all__ = ["DistInfo", "init_process_group", "get_world_size", "get_rank", "is_master", "all_gather",
           "all_gather_objects", "all_reduce_mean", "barrier", "launch_job", "under_torchrun", "destroy"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int


#: The one process of a job that is not distributed (rank 0 of 1); frozen, so safe as a default argument.
SINGLE_PROCESS = DistInfo(0, 1, 0)


def under_torchrun() -> bool:
    """True when launched by torchrun (or any launcher exporting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_backend(requested: str, use_cuda: bool) -> str:
    """nccl on GPU, gloo on CPU, unless one is requested explicitly."""
    if requested != "auto":
        return requested
    return "nccl" if use_cuda else "gloo"


def init_process_group(info: DistInfo, init_method: str, backend: str) -> None:
    """Join the process group when the job has more than one process (no-op otherwise)."""
    if info.world_size <= 1 or dist.is_initialized():
        return
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend, init_method=init_method, world_size=info.world_size, rank=info.rank)


def destroy() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_master() -> bool:
    """True on global rank 0 (the process that logs and saves)."""
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_gather(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (ranks may hold different lengths)."""
    world = get_world_size()
    if world == 1:
        return tensor
    length = torch.tensor([tensor.shape[0]], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    longest = int(max(int(n) for n in lengths))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(n)] for p, n in zip(parts, lengths)])


def all_gather_objects(obj: Any) -> list[Any]:
    """Picklable ``obj`` from every rank, in rank order."""
    if get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: Tensor) -> Tensor:
    """Mean of ``values`` over ranks (returns a new tensor)."""
    if get_world_size() == 1:
        return values
    out = values.clone()
    dist.all_reduce(out)
    return out / get_world_size()


def _spawned(local_rank: int, func: Callable, num_local: int, shard_id: int, num_shards: int, init_method: str,
             backend: str, args: tuple) -> None:
    info = DistInfo(shard_id * num_local + local_rank, num_local * num_shards, local_rank)
    init_process_group(info, init_method, backend)
    try:
        func(info, *args)
    finally:
        destroy()


def launch_job(func: Callable[..., Any], num_local: int, args: tuple = (), init_method: str = "tcp://localhost:9999",
               shard_id: int = 0, num_shards: int = 1, backend: str = "gloo") -> Any:
    """Run ``func(DistInfo, *args)`` in every process of the job.

    Under torchrun the current process is one rank already; otherwise ``num_local``
    processes are spawned here (none when the whole job is a single process).

    Returns:
        what ``func`` returned in this process, or None when the work ran in spawned processes.
    """
    if under_torchrun():
        info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
        init_process_group(info, "env://", backend)
        try:
            return func(info, *args)
        finally:
            destroy()
    elif num_local * num_shards > 1:
        mp.spawn(_spawned, nprocs=num_local,
                 args=(func, num_local, shard_id, num_shards, init_method, backend, args), daemon=False)
        return None
    return func(SINGLE_PROCESS, *args)

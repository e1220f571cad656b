"""Process-group setup for data-parallel training under ``torchrun``.

The training function is the same on one process and on many: a process group is created only
when ``torchrun`` has set ``WORLD_SIZE`` (gloo on CPU, nccl on GPU). Each rank reads its own
shard of the data; gradients are averaged by DistributedDataParallel; the JEPA critic all-reduces
its statistics so it sees the global batch; only rank 0 writes checkpoints and logs.

One machine, N processes::

    torchrun --standalone --nproc_per_node=N -m physworld.cli train --data DATA --out runs/x

Several machines (run on every node, with the same rendezvous endpoint; node 0 hosts it)::

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 \\
        --rdzv_backend=c10d --rdzv_endpoint=node0.example:29500 --rdzv_id=run1 \\
        -m physworld.cli train --data DATA --out /shared/runs/x --batch-size 512

``--batch-size`` is the global batch (split evenly over ``WORLD_SIZE`` ranks); ``--out`` must be
on storage every node can read, since all ranks resume from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from physworld.runtime import pick_device


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this call created the process group, so it must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistContext:
    """Join (or create, under torchrun) the process group and pick this rank's device."""
    wanted = pick_device(device)
    if dist.is_available() and dist.is_initialized():
        ctx = DistContext(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if wanted.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        ctx = DistContext(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", 0)),
            owns_group=True,
        )
    else:
        ctx = DistContext()
    if wanted.type == "cuda":
        wanted = torch.device("cuda", ctx.local_rank if wanted.index is None else wanted.index)
        torch.cuda.set_device(wanted)
    ctx.device = wanted
    return ctx


def cleanup(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks (a no-op on one process); every rank gets the same result."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()

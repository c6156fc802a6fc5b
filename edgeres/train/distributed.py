"""Distributed training under torchrun (gloo on CPU, NCCL on GPU) and the sharded DataLoader."""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgeres.errors import require


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a plain run)."""
    torch = require("torch", "desktop")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world == 1:
        return DistInfo(device="cuda" if cuda else "cpu")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=f"cuda:{local}" if cuda else "cpu")


def make_train_loader(dataset, batch_size: int, dist_info: DistInfo, seed: int, workers: int = 0):
    """A DataLoader that shards across ranks with DistributedSampler when distributed."""
    torch = require("torch", "desktop")
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    if dist_info.distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=seed, drop_last=True
        )
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=dist_info.device.startswith("cuda"), persistent_workers=workers > 0,
    )



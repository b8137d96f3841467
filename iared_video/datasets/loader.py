"""DataLoader construction (PySlowFast's ``construct_loader`` / ``shuffle_dataset``)."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from iared_video.config import device_of
from iared_video.datasets.build import build_dataset, split_mode

__all__ = ["construct_loader", "shuffle_dataset", "worker_init_fn", "uses_cuda"]


def uses_cuda(cfg) -> bool:
    """Whether this run puts batches on a GPU (decides ``pin_memory``)."""
    return device_of(cfg).type == "cuda"


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and ``random`` in a worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def construct_loader(cfg, split: str) -> DataLoader:
    """Build the loader of ``split`` ("train", "val" or "test") for ``DATA.DATASET``.

    Train shuffles and drops the last incomplete batch (``TRAIN.BATCH_SIZE`` per process);
    val/test keep order and every sample (``TEST.BATCH_SIZE`` per process). Under
    torch.distributed a ``DistributedSampler`` shards the data; for val/test it pads the
    last shard with repeated samples, so de-duplicate test results by ``index``.
    """
    train = split_mode(split) == "train"
    dataset = build_dataset(cfg.DATA.DATASET, cfg, split)
    sampler: DistributedSampler | None = None
    if _distributed():
        sampler = DistributedSampler(dataset, shuffle=train, seed=cfg.RNG_SEED)
    generator = torch.Generator()
    generator.manual_seed(cfg.RNG_SEED)
    return DataLoader(
        dataset,
        batch_size=cfg.TRAIN.BATCH_SIZE if train else cfg.TEST.BATCH_SIZE,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=cfg.DATA_LOADER.NUM_WORKERS,
        pin_memory=cfg.DATA_LOADER.PIN_MEMORY and uses_cuda(cfg),
        drop_last=train,
        worker_init_fn=worker_init_fn,
        generator=generator,
    )


def shuffle_dataset(loader: DataLoader, epoch: int) -> None:
    """Make epoch ``epoch``'s order (and worker seeds) a function of the seed and the epoch.

    Call at the start of every epoch, so a resumed run sees the same order as an unbroken one.
    """
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(getattr(loader.dataset, "seed", 0) + epoch)

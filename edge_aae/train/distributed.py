"""Data-parallel training under ``torchrun`` (DistributedDataParallel): gloo on CPU, NCCL on CUDA.

    torchrun --nproc-per-node 2 -m edge_aae.train --data train.csv --out runs/pump

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`init_from_env` joins the
process group when there is more than one process. Every rank reads the same data and cuts the
same windows; each epoch's shuffled order is the same on every rank (one seed) and each rank takes
its share of every batch, so the global batch and the number of steps per epoch are those of a
single-process run. Gradients are averaged by one DDP wrapper per network (encoder, decoder,
discriminator). Rank 0 alone fits the scoring and the threshold on all validation windows and
writes the run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the group (``world == 1``: no group, a plain run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process trains this model."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """The process that reports, checkpoints and writes the run."""
        return self.rank == 0


def current() -> DistContext:
    """The group this process has joined, or a single-process context."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext()


def launched_by_torchrun() -> bool:
    """``WORLD_SIZE`` > 1 in the environment (torchrun or another launcher set it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group ``torchrun`` describes; a no-op for a single process.

    ``device``: the training device setting; NCCL when it resolves to CUDA, gloo otherwise.
    """
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        log.info("joined a %s group: rank %d of %d", dist.get_backend(), dist.get_rank(), dist.get_world_size())
    return current()


def shutdown() -> None:
    """Leave the group (after the last collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over the group (the tensor itself in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values

"""Which samples each rank trains on: PyTorch's ``DistributedSampler`` rule.

Every rank computes the same shuffled order of the epoch (same seed, same epoch), then
takes every ``world_size``-th entry starting at its rank. The order's length is first
made a multiple of ``world_size``, so that all ranks get the same number of samples and
hence of batches (a rank with one batch fewer would leave the others waiting in an
all-reduce):

    drop_last=False:  pad by repeating the order from its start (every sample is seen,
                      a few twice): ceil(N / p) samples per rank
    drop_last=True:   drop the tail of the order: floor(N / p) samples per rank

Example, N = 5, p = 2, order [4 0 3 1 2]: drop_last=False pads to [4 0 3 1 2 4], rank 0
gets [4 3 2], rank 1 [0 1 4]; drop_last=True keeps [4 0 3 1], rank 0 [4 3], rank 1 [0 1].
"""
import math

import numpy as np

from .. import checks


def shard_size(num_samples, world_size, drop_last=False):
    """Samples per rank for ``num_samples`` split over ``world_size`` ranks."""
    if drop_last:
        return num_samples // world_size
    return math.ceil(num_samples / world_size)


def shard_order(order, rank, world_size, drop_last=False):
    """This rank's share of an epoch's ``order`` (a 1-D integer array of sample indices).

    Returns ``shard_size(len(order), world_size, drop_last)`` indices; the shards of
    ranks 0 .. world_size-1 are disjoint positions of the (padded or cut) order.
    """
    world_size = checks.positive_int(world_size, "world_size", "shard_order")
    rank = checks.integer(rank, "rank", "shard_order", low=0, high=world_size - 1)
    drop_last = checks.boolean(drop_last, "drop_last", "shard_order")
    order = np.asarray(order)
    if order.ndim != 1 or order.dtype.kind not in "iu":
        raise TypeError(f"shard_order: order must be a 1-D integer array, got dtype "
                        f"{order.dtype} and shape {order.shape}")
    per_rank = shard_size(len(order), world_size, drop_last)
    if per_rank == 0:
        raise ValueError(f"shard_order: {len(order)} samples leave rank {rank} of {world_size} "
                         f"nothing with drop_last={drop_last}")
    total = per_rank * world_size
    padded = np.resize(order, total)  # repeats the order from its start when total > N
    return padded[rank:total:world_size]


__all__ = ["shard_order", "shard_size"]

"""Gradient check of SyncBatchNorm1d/2d across 2 ranks, with uneven shards.

The function checked is L = sum over ranks r of sum(y_r * dy_r), a function of the
inputs of every rank at once: each rank knows the whole input (same seed everywhere),
takes its own shard, and every evaluation all-reduces the ranks' terms. All ranks run
the same centred differences in lockstep; the analytic dx of each rank is gathered
into the whole input's shape with an all-reduce of zero-padded copies.
"""
import sys

import numpy as np
from common import dist, report

import minidl
from minidl import layers as L
from minidl.gradcheck import TOLERANCES, numerical_gradient, rel_error

dist.init("mpi")
rank = dist.rank()
minidl.set_default_dtype(np.float64)
tolerance = TOLERANCES[np.dtype(np.float64)]
EPS, RTOL, TINY = tolerance["eps"], tolerance["rtol"], tolerance["atol"] / tolerance["rtol"]

# (layer class, keyword arguments, shard shapes of rank 0 and rank 1, training)
CASES = [
    (L.SyncBatchNorm2d, {}, [(3, 2, 3, 2), (2, 2, 3, 2)], True),
    (L.SyncBatchNorm2d, dict(weight=False), [(1, 3, 2, 2), (2, 3, 2, 2)], True),
    (L.SyncBatchNorm2d, {}, [(2, 2, 1, 1), (1, 2, 1, 1)], True),
    (L.SyncBatchNorm1d, {}, [(1, 4), (1, 4)], True),  # one sample per rank: m = 2 in all
    (L.SyncBatchNorm1d, dict(affine=False), [(3, 3), (2, 3)], True),
    (L.SyncBatchNorm2d, {}, [(2, 2, 2, 3), (1, 2, 2, 3)], False),  # eval mode
    (L.SyncBatchNorm2d, {}, [(3, 2, 2, 1), (0, 2, 2, 1)], True),  # rank 1's shard is empty
]

for index, (kind, options, shapes, training) in enumerate(CASES):
    rng = np.random.default_rng(index)  # the same draws on every rank
    sizes = [int(np.prod(shape)) for shape in shapes]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    mine = slice(starts[rank], starts[rank + 1])
    x_all = rng.standard_normal(starts[-1]) * 2 + 0.5
    dy_all = rng.standard_normal(starts[-1])
    channels = shapes[0][1]
    layer = kind(channels, **options).train(training)
    for param in layer.parameters():
        param.data[...] = rng.standard_normal(channels)
    layer.running_mean[...] = rng.standard_normal(channels)
    layer.running_var[...] = rng.uniform(0.5, 2.0, channels)

    def total_loss(x_all):
        y = layer(x_all[mine].reshape(shapes[rank]))
        layer.drop_saved()
        return dist.all_reduce(np.array([np.sum(y * dy_all[mine].reshape(y.shape))]))[0]

    numeric = {"input": numerical_gradient(total_loss, x_all, EPS)}
    for name, param in layer.named_parameters():
        numeric[name] = numerical_gradient(lambda _: total_loss(x_all), param.data, EPS)
    layer.zero_grad()
    layer(x_all[mine].reshape(shapes[rank]))
    dx = layer.backward(dy_all[mine].reshape(shapes[rank]))
    analytic = {"input": np.zeros_like(x_all)}
    analytic["input"][mine] = dx.reshape(-1)
    dist.all_reduce(analytic["input"])
    for name, param in layer.named_parameters():
        analytic[name] = dist.all_reduce(param.grad.copy())  # each rank holds its share
    errors = {name: rel_error(analytic[name], numeric[name], tiny=TINY) for name in numeric}
    if not all(error <= RTOL for error in errors.values()):
        sys.exit(f"rank {rank}: {kind.__name__}{options} shards {shapes}: errors {errors}")
    report(f"sync-bn-gradcheck-{index}", f"{kind.__name__} {options} {shapes} "
           f"train={training} max-rel-error {max(errors.values()):.1e}")

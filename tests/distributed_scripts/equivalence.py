"""DataParallel on 2 ranks x batch 32 == 1 process x batch 64, in float64.

Every rank also trains the single-process reference itself (it has the whole batch),
then compares parameters and buffers after 5 SGD-with-momentum steps.
"""
import sys

import numpy as np
from common import dist, report

import minidl
from minidl import layers as L
from minidl.losses import CrossEntropyLoss
from minidl.optim import SGD

dist.init("mpi")
rank, size = dist.rank(), dist.world_size()
minidl.set_default_dtype(np.float64)
BATCH, STEPS, TOLERANCE = 64, 5, 1e-12


def mlp():
    return L.Sequential(L.Flatten(), L.Linear(192, 32), L.ReLU(), L.Linear(32, 32), L.Tanh(),
                        L.Linear(32, 10))


def cnn():
    return L.Sequential(L.Conv2d(3, 6, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
                        L.Conv2d(6, 8, 3, padding=1), L.ReLU(), L.Flatten(),
                        L.Linear(8 * 4 * 4, 10))


def bn_cnn():
    return L.Sequential(L.Conv2d(3, 6, 3, padding=1), L.BatchNorm2d(6), L.ReLU(), L.MaxPool2d(2),
                        L.Conv2d(6, 8, 3, padding=1, bias=False), L.BatchNorm2d(8, weight=False),
                        L.ReLU(), L.Flatten(), L.Linear(8 * 4 * 4, 16), L.BatchNorm1d(16), L.ReLU(),
                        L.Linear(16, 10))


def train(model, shard, steps_data):
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = CrossEntropyLoss()
    for x, y in steps_data:
        optimizer.zero_grad()
        loss_fn(model(x[shard]), y[shard])
        model.backward(loss_fn.backward())
        optimizer.step()
    return model


def max_difference(a, b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b), (list(state_a), list(state_b))
    return max(float(np.max(np.abs(state_a[k] - state_b[k]))) for k in state_a)


data_rng = np.random.default_rng(123)
steps_data = [(data_rng.standard_normal((BATCH, 3, 8, 8)), data_rng.integers(0, 10, BATCH))
              for _ in range(STEPS)]
mine = slice(rank * BATCH // size, (rank + 1) * BATCH // size)
cases = [("mlp", mlp, {}), ("cnn", cnn, {}), ("cnn", cnn, dict(overlap=False)),
         ("cnn", cnn, dict(bucket_mb=0.001)),  # ~1 KB buckets: several all-reduces in flight
         ("bn_cnn", bn_cnn, dict(bucket_mb=0.001))]
for name, build, options in cases:
    minidl.seed(0)
    reference = train(build(), slice(None), steps_data)
    minidl.seed(rank)  # rank 1 starts from other weights: the wrap must broadcast rank 0's
    model = build()
    if name == "bn_cnn":
        model = L.convert_sync_batchnorm(model)
    parallel = train(dist.DataParallel(model, **options), mine, steps_data)
    difference = max_difference(reference, parallel.module)
    if not difference <= TOLERANCE:
        sys.exit(f"rank {rank}: {name} {options}: max |difference| {difference:.3e} > {TOLERANCE}")
    buckets = parallel._buckets
    early = buckets.started_during_backward
    if options.get("overlap", True) and early != len(buckets.buckets):
        sys.exit(f"rank {rank}: {name} {options}: only {early} of {len(buckets.buckets)} "
                 "buckets started during backward")
    if options.get("overlap") is False and early != 0:
        sys.exit(f"rank {rank}: {name}: overlap=False but {early} buckets started early")
    report(f"equivalence-{name}", f"{options} max-diff {difference:.2e} buckets "
           f"{len(buckets.buckets)} started-during-backward {early}")

# The check has teeth: plain BatchNorm on shards of 32 is not the batch of 64.
minidl.seed(0)
reference = train(bn_cnn(), slice(None), steps_data)
minidl.seed(0)
parallel = train(dist.DataParallel(bn_cnn()), mine, steps_data)
difference = max_difference(reference, parallel.module)
assert difference > 1e-6, difference
report("plain-batchnorm-differs", f"max-diff {difference:.2e}")

"""World size 1 through the real transport: MPI (CPU) or, with --gpu, NCCL on one GPU.

Collectives must return their input unchanged, in place, and DataParallel (overlap,
several buckets) with SyncBatchNorm must train exactly like the bare model.
"""
import sys

import numpy as np
from common import dist, report

import minidl
from minidl import backend
from minidl import layers as L
from minidl.losses import CrossEntropyLoss
from minidl.optim import SGD

on_gpu = "--gpu" in sys.argv
if on_gpu:
    minidl.use_device("gpu")
dist.init("nccl" if on_gpu else "mpi")
assert dist.world_size() == 1 and dist.backend_name() == ("nccl" if on_gpu else "mpi")
xp = backend.cupy_module() if on_gpu else np

for dtype in (np.float32, np.float64, np.int32, np.int64, np.uint8):
    for shape in ((1,), (5, 3), (1 << 15,)):
        x = xp.asarray(np.arange(np.prod(shape)).reshape(shape) % 97, dtype=dtype)
        expected = backend.to_numpy(x).copy()
        ops = ("sum", "max", "min", "mean") if np.dtype(dtype).kind == "f" else ("sum", "min")
        for op in ops:
            assert dist.all_reduce(x, op) is x
            assert np.array_equal(backend.to_numpy(x), expected), (dtype, shape, op)
        assert dist.start_all_reduce(x).wait() is x
        assert dist.broadcast(x) is x
        assert np.array_equal(backend.to_numpy(x), expected), (dtype, shape)
dist.barrier()
report("one-rank-collectives", "nccl" if on_gpu else "mpi")

minidl.set_default_dtype(np.float64)


def model():
    minidl.seed(0)
    net = L.Sequential(L.Conv2d(3, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.Flatten(),
                       L.Linear(4 * 6 * 6, 5))
    return net.to("gpu") if on_gpu else net


data = np.random.default_rng(0)
steps = [(xp.asarray(data.standard_normal((8, 3, 6, 6))), xp.asarray(data.integers(0, 5, 8)))
         for _ in range(3)]
trained = []
for net in (model(), dist.DataParallel(L.convert_sync_batchnorm(model()), bucket_mb=1e-4)):
    optimizer, loss_fn = SGD(net.parameters(), lr=0.1, momentum=0.9), CrossEntropyLoss()
    for x, y in steps:
        optimizer.zero_grad()
        loss_fn(net(x), y)
        net.backward(loss_fn.backward())
        optimizer.step()
    trained.append(net)
plain, parallel = trained[0].state_dict(), trained[1].module.state_dict()
difference = max(float(np.max(np.abs(backend.to_numpy(plain[k] - parallel[k])))) for k in plain)
assert difference <= 1e-12, difference
assert trained[1]._buckets.started_during_backward == len(trained[1]._buckets.buckets) > 1
report("one-rank-data-parallel", f"max-diff {difference:.1e}")

"""all_reduce (sum, mean, max) and broadcast on NumPy arrays of several dtypes and sizes."""
import numpy as np
from common import dist, report

dist.init("mpi")
rank, size = dist.rank(), dist.world_size()
assert size == 2, f"expected 2 ranks, got {size}"

for dtype in (np.float32, np.float64, np.int32, np.int64, np.uint8):
    for shape in ((1,), (7,), (3, 5), (2, 3, 4), (1 << 16,)):
        values = [np.arange(np.prod(shape)).reshape(shape) % 50 + 3 * r for r in range(size)]
        mine = values[rank].astype(dtype)
        total = dist.all_reduce(mine.copy(), "sum")
        assert total.dtype == dtype and total.shape == shape
        assert np.array_equal(total, sum(values).astype(dtype)), (dtype, shape)
        biggest = dist.all_reduce(mine.copy(), "max")
        assert np.array_equal(biggest, np.maximum(*values).astype(dtype)), (dtype, shape)
        smallest = dist.all_reduce(mine.copy(), "min")
        assert np.array_equal(smallest, np.minimum(*values).astype(dtype)), (dtype, shape)
        if np.dtype(dtype).kind == "f":
            mean = dist.all_reduce(mine.copy(), "mean")
            assert np.allclose(mean, sum(values) / size), (dtype, shape)
        copy = mine.copy() if rank == 1 else np.zeros(shape, dtype)
        dist.broadcast(copy, root=1)
        assert np.array_equal(copy, values[1].astype(dtype)), (dtype, shape)
        result = dist.all_reduce(mine, "sum")
        assert result is mine  # in place, the same array back
report("collectives", "5 dtypes x 5 shapes")

handles = [dist.start_all_reduce(np.full(10, float(rank + i)), "sum") for i in range(4)]
for i, handle in enumerate(handles):
    assert np.array_equal(handle.wait(), np.full(10, 2.0 * i + 1))
report("start_all_reduce", "4 in flight")

texts = dist.all_gather_text("rank-%d-é" % rank * (rank + 1))
assert texts == ["rank-0-é", "rank-1-érank-1-é"], texts
dist.barrier()
report("all_gather_text")

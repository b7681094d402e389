"""Rank 1 raises while rank 0 waits in an all-reduce: every rank must end, non-zero."""
import numpy as np
from common import dist

dist.init("mpi")
dist.barrier()
if dist.rank() == 1:
    raise RuntimeError("deliberate failure on rank 1")
dist.all_reduce(np.ones(4))  # rank 0 would wait here forever without the abort
print("rank 0 passed the all-reduce: the abort did not happen", flush=True)

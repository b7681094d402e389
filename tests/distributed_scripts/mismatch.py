"""Rank 1 builds a different model: DataParallel must refuse it on every rank."""
from common import dist, report

from minidl import layers as L

dist.init("mpi")
hidden = 16 if dist.rank() == 0 else 17
model = L.Sequential(L.Linear(8, hidden), L.ReLU(), L.Linear(hidden, 2))
try:
    dist.DataParallel(model)
except ValueError as error:
    print(f"rank {dist.rank()} ValueError: {error}", flush=True)
    report("mismatch-refused")
else:
    raise AssertionError("DataParallel accepted models that differ between ranks")

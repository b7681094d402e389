"""benchmarks/layer_times.py: the per-layer breakdown the GPU and CPU benchmarks read."""
import os
import sys
import time

import numpy as np

from minidl import layers as L
from minidl.module import Module

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import layer_times  # noqa: E402


class Slow(Module):
    """The identity, taking at least 5 ms forward and 2 ms backward."""

    def forward(self, x):
        time.sleep(0.005)
        return x

    def backward(self, dy):
        time.sleep(0.002)
        return dy


def test_breakdown_times_every_leaf_once_and_removes_its_timers():
    model = L.Sequential(L.Linear(4, 8), L.ReLU(), Slow(), L.Linear(8, 2))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    synchronized = []

    def step():
        y = model(x)
        model.backward(np.ones_like(y))

    step_ms, rows = layer_times.layer_breakdown(model, step, lambda: synchronized.append(1),
                                                steps=3, warmup=1)
    names = [row[0] for row in rows]
    assert sorted(names[:-1]) == ["0", "1", "2", "3"] and names[-1] == "(not in a leaf layer)"
    assert names[0] == "2" and rows[0][1] == "Slow"
    assert rows[0][2] >= 5.0 and rows[0][3] >= 2.0
    assert all(forward >= 0 and backward >= 0 for _, _, forward, backward in rows[:-1])
    assert 0 <= rows[-1][2] < step_ms  # the step's time outside the layers
    assert step_ms >= 7.0
    assert len(synchronized) >= 2 * 2 * 4 * 3  # around every forward and backward call
    for module in model.children():
        assert "forward" not in module.__dict__ and "backward" not in module.__dict__
    table = layer_times.format_breakdown(step_ms, rows, limit=2)
    assert "(2 more layers)" in table and "Slow" in table

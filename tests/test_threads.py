"""minidl.threads: fixed and automatic thread counts for BLAS and minidl's copies."""
import numpy as np
import pytest

from minidl import threads
from minidl.layers import Conv2d


@pytest.fixture(autouse=True)
def restore_threads():
    saved = dict(threads._state)
    yield
    threads._state.update(saved)
    threads._state["current"] = None
    threads._apply(saved["current"] or threads.cpu_count())


def test_set_num_threads_fixes_the_count_and_adapt_leaves_it():
    threads.set_num_threads(1)
    assert threads.get_num_threads() == 1
    assert threads.adapt_to_load(now=1e12) == 1
    threadpoolctl = pytest.importorskip("threadpoolctl")
    assert all(info["num_threads"] == 1 for info in threadpoolctl.threadpool_info())


@pytest.mark.parametrize("value, error", [(0, ValueError), (True, TypeError), (1.5, TypeError)])
def test_set_num_threads_validates(value, error):
    with pytest.raises(error, match="set_num_threads: n must be a positive integer"):
        threads.set_num_threads(value)


@pytest.mark.parametrize("busy, expected", [(0, 4), (1, 3), (3, 1), (10, 1)])
def test_adapt_uses_the_cores_others_leave_free(monkeypatch, busy, expected):
    threads.set_num_threads(None)
    monkeypatch.setattr(threads, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "_runnable_threads_of_others", lambda: busy)
    threads._state["last_check"] = -float("inf")
    assert threads.adapt_to_load(now=1e12) == expected
    # Within CHECK_INTERVAL it does not look again.
    monkeypatch.setattr(threads, "_runnable_threads_of_others", lambda: 0)
    assert threads.adapt_to_load(now=1e12 + 0.5) == expected


def test_results_do_not_depend_on_the_thread_count():
    draw = np.random.default_rng(0)
    x = draw.standard_normal((8, 3, 16, 16)).astype(np.float32)
    outputs = []
    for n in (1, 2):
        threads.set_num_threads(n)
        layer = Conv2d(3, 4, 3, padding=1)
        layer.weight.data[...] = 0.1
        outputs.append(layer(x))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)

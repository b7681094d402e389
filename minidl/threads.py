"""How many CPU threads minidl uses, and backing off when the machine is busy.

Two things run threads on the CPU: the BLAS library behind NumPy's matrix products
(OpenBLAS or MKL, limited through ``threadpoolctl`` when it is installed) and
minidl's own copy threads (:mod:`minidl.layers.cpu_kernels`). Using every core is
fastest on a quiet machine. When other programs keep the cores busy too, BLAS threads
that spin while they wait for each other make every step many times slower, and one
thread is far faster (``benchmarks/bench_busy.py`` measures both).

- ``set_num_threads(n)`` fixes the count (``MINIDL_NUM_THREADS=n`` does the same at
  import), ``set_num_threads(None)`` returns to automatic.
- ``adapt_to_load()``, called by :class:`minidl.train.Trainer` at every step (it looks
  at the machine at most every couple of seconds), uses ``cores - busy`` threads, where
  ``busy`` counts the runnable threads of *other* processes right now (Linux; on other
  systems it keeps every core).
"""
import os
import statistics
import time

from .checks import positive_int

_state = {"fixed": None, "current": None, "last_check": -float("inf")}
CHECK_INTERVAL = 2.0  # seconds between two looks at the machine's load


def cpu_count():
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def get_num_threads():
    """Threads minidl and BLAS use now (every core until set or adapted)."""
    return _state["current"] or cpu_count()


def set_num_threads(n):
    """Use ``n`` threads for BLAS and minidl's copies from now on; None: automatic."""
    if n is None:
        _state["fixed"] = None
        return
    _state["fixed"] = positive_int(n, "n", "set_num_threads")
    _apply(_state["fixed"])


def _apply(n):
    if _state["current"] == n:
        return
    _state["current"] = n
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it only minidl's own threads follow
        return
    threadpool_limits(n)


def _runnable_threads_of_others():
    """Runnable threads on the machine minus this process's own (Linux only, else 0)."""
    try:
        with open("/proc/loadavg") as file:
            runnable = int(file.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/stat") as file:
                own += file.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, ValueError, IndexError):
        return 0
    return max(runnable - own, 0)


def adapt_to_load(now=None):
    """Use ``cores - busy`` threads (at least 1), ``busy`` measured from other processes.

    Does nothing when the count was fixed with :func:`set_num_threads` or when the
    last look was less than :data:`CHECK_INTERVAL` seconds ago.
    """
    now = time.monotonic() if now is None else now
    if _state["fixed"] is not None or now - _state["last_check"] < CHECK_INTERVAL:
        return get_num_threads()
    _state["last_check"] = now
    samples = []
    for _ in range(5):  # an instant's count is noisy: the median of a few, 1 ms apart
        samples.append(_runnable_threads_of_others())
        time.sleep(0.001)
    busy = statistics.median(samples)
    _apply(max(1, cpu_count() - int(busy)))
    return get_num_threads()


if os.environ.get("MINIDL_NUM_THREADS"):
    set_num_threads(int(os.environ["MINIDL_NUM_THREADS"]))

__all__ = ["adapt_to_load", "cpu_count", "get_num_threads", "set_num_threads"]

"""Array backend: NumPy on the CPU, CuPy on the GPU, one code path for both.

Layers never import CuPy. They ask the data which module it belongs to::

    xp = get_array_module(x)   # numpy or cupy
    y = xp.maximum(x, 0)

This module is the only place that imports CuPy, and only if it is installed.

Device selection: ``use_device("gpu")`` or the environment variable
``MINIDL_DEVICE=gpu`` makes new arrays created by :func:`to_device` live on the GPU.
Default dtype is float32; ``set_default_dtype(np.float64)`` is used by gradient checks.
Randomness (initialisers, dropout, data shuffling) comes from one seeded NumPy
``Generator`` (``minidl.seed(n)``), so a run is reproducible, and its state can be
saved in a checkpoint (:func:`get_rng_state` / :func:`set_rng_state`).
"""
import os

import numpy as np

from .checks import integer

try:  # CuPy is optional; everything works without it.
    import cupy as _cupy
except Exception:  # ImportError, or a broken CUDA install raising something else
    _cupy = None

_DEVICES = ("cpu", "gpu")
_state = {
    "device": None,
    "dtype": np.dtype(np.float32),
    "rng": np.random.default_rng(0),
    "gpu_rng": None,
    "gpu_seed": None,
    "gpu_count": None,
}


def gpu_available():
    """True when CuPy imports and sees at least one GPU."""
    if _cupy is None:
        return False
    if _state["gpu_count"] is None:  # asked once: to_device checks it on every call
        try:
            _state["gpu_count"] = _cupy.cuda.runtime.getDeviceCount()
        except Exception:
            _state["gpu_count"] = 0
    return _state["gpu_count"] > 0


def cupy_module():
    """The cupy module, or None when CuPy is absent. For tests and benchmarks."""
    return _cupy


def nccl_module():
    """``cupy.cuda.nccl`` (for :mod:`minidl.distributed`), or None when CuPy or its NCCL
    library is absent."""
    if _cupy is None:
        return None
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


def get_array_module(x):
    """Return ``cupy`` if ``x`` is a CuPy array, else ``numpy``."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def _check_device_name(device):
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
    if device == "gpu" and not gpu_available():
        reason = "CuPy is not installed" if _cupy is None else "CuPy sees no GPU"
        raise RuntimeError(f"device 'gpu' requested but {reason}; "
                           "install with pip install -e .[gpu] or use device 'cpu'")
    return device


def use_device(device):
    """Select the default device ("cpu" or "gpu") for :func:`to_device`."""
    _state["device"] = _check_device_name(device)


def current_device():
    """The default device: set by :func:`use_device`, else ``MINIDL_DEVICE``, else "cpu"."""
    if _state["device"] is None:
        _state["device"] = _check_device_name(os.environ.get("MINIDL_DEVICE", "cpu").lower())
    return _state["device"]


def device_of(x):
    """"gpu" for a CuPy array, "cpu" otherwise."""
    return "gpu" if get_array_module(x) is not np else "cpu"



def to_numpy(x):
    """Return ``x`` as a NumPy array (copying from the GPU if needed)."""
    if get_array_module(x) is not np:
        return _cupy.asnumpy(x)
    return np.asarray(x)


def to_device(x, device=None):
    """Return ``x`` on ``device`` (default: the current device); no copy if already there."""
    device = _check_device_name(device or current_device())
    if device == "gpu":
        return _cupy.asarray(x)
    return to_numpy(x)


def default_dtype():
    """The floating dtype for new parameters (float32 unless changed)."""
    return _state["dtype"]


def set_default_dtype(dtype):
    """Set the dtype of new parameters: ``np.float32`` (default) or ``np.float64``."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"default dtype must be float32 or float64, got {dtype}")
    _state["dtype"] = dtype


def seed(n):
    """Seed every random draw in minidl (init, dropout, shuffling, augmentation).

    ``n``: a non-negative integer (the seed of NumPy's default generator).
    """
    n = integer(n, "n", "minidl.seed", low=0)
    _state["rng"] = np.random.default_rng(n)
    # The GPU generator is made on first use (see rng): building one costs a GPU allocation.
    _state["gpu_rng"], _state["gpu_seed"] = None, n


def rng(xp=np):
    """The library's random generator for array module ``xp``.

    On the CPU this is one ``numpy.random.Generator``; on the GPU a CuPy generator
    seeded by the same :func:`seed` call (so masks are drawn on the device).
    """
    if xp is np:
        return _state["rng"]
    if _state["gpu_rng"] is None:
        gpu_seed = _state["gpu_seed"]
        if gpu_seed is None:
            gpu_seed = int(_state["rng"].integers(2**31))
        _state["gpu_rng"] = xp.random.default_rng(gpu_seed)
    return _state["gpu_rng"]


def get_rng_state():
    """The CPU generator's state as a JSON-serialisable dict (for checkpoints)."""
    return _state["rng"].bit_generator.state


def set_rng_state(state):
    """Restore a state returned by :func:`get_rng_state`."""
    generator = np.random.default_rng()
    generator.bit_generator.state = state
    _state["rng"] = generator
    # re-seeded from the restored CPU generator on next use
    _state["gpu_rng"], _state["gpu_seed"] = None, None

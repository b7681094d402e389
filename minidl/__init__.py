"""minidl: a from-scratch deep learning library in NumPy (and CuPy on the GPU).

Every layer has a hand-written forward and backward; see :mod:`minidl.module` for the
protocol and :mod:`minidl.gradcheck` for the finite-difference checks that test them.
"""
from . import backend, data, distributed, init, layers, losses, models, optim, train
from .backend import (current_device, default_dtype, get_array_module, gpu_available, seed,
                      set_default_dtype, to_device, to_numpy, use_device)
from .module import Module, Param
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "Module", "Param", "backend", "current_device", "data", "default_dtype", "distributed",
    "get_array_module", "get_num_threads", "gpu_available", "init", "layers", "losses",
    "models", "optim", "seed", "set_default_dtype", "set_num_threads", "to_device",
    "to_numpy", "train", "use_device",
]

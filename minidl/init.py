"""Weight initialisers.

Each initialiser is ``init(shape, dtype=None) -> numpy array`` drawn from the library's
seeded generator (``minidl.seed``), always on the CPU so a seed gives the same weights
on every device; ``Module.to("gpu")`` moves them.

Fans follow the usual convention: for a Linear weight ``(in, out)``, fan_in = in and
fan_out = out; for a conv kernel ``(C_out, C_in/groups, kh, kw)``,
fan_in = C_in/groups * kh * kw and fan_out = C_out * kh * kw.

Defaults: ``Linear`` and ``Conv2d`` weights use ``"torch_default"`` (PyTorch's default,
U(-1/sqrt(fan_in), 1/sqrt(fan_in))), so networks behave like their PyTorch twins;
biases start at zero.
"""
import math

import numpy as np

from . import backend


def compute_fans(shape):
    """(fan_in, fan_out) of a weight of ``shape``.

    2-D shapes are Linear weights ``(in_features, out_features)``; 4-D shapes are conv
    kernels ``(C_out, C_in/groups, kh, kw)``; 1-D shapes use their length for both.
    """
    shape = tuple(shape)
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = int(np.prod(shape[2:]))
    return shape[1] * receptive_field, shape[0] * receptive_field


def _dtype(dtype):
    return np.dtype(dtype) if dtype is not None else backend.default_dtype()


def zeros(shape, dtype=None):
    return np.zeros(shape, dtype=_dtype(dtype))


def ones(shape, dtype=None):
    return np.ones(shape, dtype=_dtype(dtype))


def normal(shape, dtype=None, std=0.01, mean=0.0):
    """N(mean, std^2)."""
    return backend.rng().normal(mean, std, size=shape).astype(_dtype(dtype))


def uniform(shape, dtype=None, low=-0.05, high=0.05):
    """U(low, high)."""
    return backend.rng().uniform(low, high, size=shape).astype(_dtype(dtype))


def glorot_uniform(shape, dtype=None):
    """Xavier/Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, dtype, -limit, limit)


def glorot_normal(shape, dtype=None):
    """Xavier/Glorot normal: N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = compute_fans(shape)
    return normal(shape, dtype, std=math.sqrt(2.0 / (fan_in + fan_out)))


def he_normal(shape, dtype=None):
    """Kaiming/He normal for ReLU nets: N(0, 2 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    return normal(shape, dtype, std=math.sqrt(2.0 / fan_in))


def he_uniform(shape, dtype=None):
    """Kaiming/He uniform for ReLU nets: U(-a, a), a = sqrt(6 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return uniform(shape, dtype, -limit, limit)


def torch_default(shape, dtype=None):
    """PyTorch's default for Linear/Conv weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in, _ = compute_fans(shape)
    limit = 1.0 / math.sqrt(fan_in)
    return uniform(shape, dtype, -limit, limit)


INITIALIZERS = {
    "zeros": zeros, "ones": ones, "normal": normal, "uniform": uniform,
    "glorot_uniform": glorot_uniform, "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal, "xavier_normal": glorot_normal,
    "he_normal": he_normal, "kaiming_normal": he_normal,
    "he_uniform": he_uniform, "kaiming_uniform": he_uniform,
    "torch_default": torch_default,
}


def get(init):
    """Resolve an initialiser given by name or as a callable ``f(shape, dtype)``."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        raise ValueError(f"unknown initialiser {init!r}; choose one of {sorted(INITIALIZERS)} "
                         "or pass a callable f(shape, dtype)")
    return INITIALIZERS[init]

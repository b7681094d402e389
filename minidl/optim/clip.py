"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``.

Called between ``backward`` and ``optimizer.step()``::

    model.backward(loss_fn.backward())
    total_norm = optim.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()

Recurrent networks need it: backpropagation through time multiplies by ``W_hh`` once
per step, so an occasional gradient is orders of magnitude larger than the rest (an
"exploding gradient"), and one such step can wreck the weights.
"""
import math
import numbers

import numpy as np

from .. import checks
from ..backend import get_array_module
from ..module import Param


def _params(parameters, owner):
    """A list of Params from a Param or an iterable of them."""
    if isinstance(parameters, Param):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{owner}: expected a Param or an iterable of Params, got "
                        f"{type(parameters).__name__}") from None
    for index, param in enumerate(params):
        if not isinstance(param, Param):
            raise TypeError(f"{owner}: expected Params, got {type(param).__name__} at "
                            f"position {index}")
        if param.grad.dtype.kind != "f":
            raise TypeError(f"{owner}: expected Params of floats, got dtype "
                            f"{param.grad.dtype} at position {index}")
    return params


def _vector_norm(values, norm_type):
    """The ``norm_type``-norm of the entries of an array (inf: the largest |value|).

    Where ``|x|^p`` may overflow (float32 squares past 3e38) or underflow (squares below
    1e-38, a large p), the norm is taken of ``x / max|x|`` and scaled back:
    ``||x|| = m ||x / m||``.
    """
    xp = get_array_module(values)
    flat = values.reshape(-1)
    if flat.size == 0:
        return 0.0
    if norm_type == 2.0:
        with np.errstate(over="ignore"):
            norm = float(xp.sqrt(xp.dot(flat, flat)))
        if not math.isinf(norm) and not norm < math.sqrt(np.finfo(flat.dtype).tiny):
            return norm  # else the squares may have overflowed or underflowed
    largest = float(xp.abs(flat).max())
    if norm_type == math.inf or largest == 0.0 or not math.isfinite(largest):
        return largest
    scaled = xp.abs(flat) / largest  # in [0, 1]: no overflow for any p
    return largest * float((scaled ** norm_type).sum() ** (1.0 / norm_type))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their joint norm is at most ``max_norm``.

    ``total = || (||g_1||, ..., ||g_k||) ||``, the ``norm_type``-norm of every gradient
    entry as one vector (``math.inf``: the largest |entry|). Every grad is multiplied
    in place by ``min(1, max_norm / (total + 1e-6))``, which keeps its direction.
    Returns ``total`` (the norm before clipping) as a float. A NaN total leaves the
    grads as they are; an infinite one scales them by 0 (as torch: infinite entries
    become NaN, without a warning); with ``error_if_nonfinite`` a NaN or infinite total
    raises RuntimeError instead.
    """
    owner = "clip_grad_norm_"
    params = _params(parameters, owner)
    max_norm = checks.real_number(max_norm, "max_norm", owner, 0.0)
    error_if_nonfinite = checks.boolean(error_if_nonfinite, "error_if_nonfinite", owner)
    if checks.is_bool(norm_type) or not (isinstance(norm_type, numbers.Real)
                                         and norm_type == math.inf):
        norm_type = checks.real_number(norm_type, "norm_type", owner, 0.0, low_open=True)
    else:
        norm_type = math.inf  # also np.float32("inf")
    norms = [_vector_norm(param.grad, norm_type) for param in params]
    total = _vector_norm(np.array(norms, dtype=np.float64), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"{owner}: the total norm of the gradients is {total}; set "
                           "error_if_nonfinite=False to clip anyway")
    scale = min(1.0, max_norm / (total + 1e-6))
    if scale < 1.0:
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN is the documented result
            for param in params:
                param.grad *= scale
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient entry into ``[-clip_value, clip_value]``, in place."""
    owner = "clip_grad_value_"
    params = _params(parameters, owner)
    clip_value = checks.real_number(clip_value, "clip_value", owner, 0.0)
    for param in params:
        get_array_module(param.grad).clip(param.grad, -clip_value, clip_value, out=param.grad)


__all__ = ["clip_grad_norm_", "clip_grad_value_"]

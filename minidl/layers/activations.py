"""Activation functions: ReLU, LeakyReLU, ELU, GELU, Sigmoid, Tanh, Softmax.

Every activation is elementwise (Softmax: along one axis), accepts a float32 or
float64 array of any shape ``(N, ...)`` and returns one of the same shape and dtype.
Each is written to stay finite and warning-free far in the tails (inputs of +-1e4):
exponentials only ever see non-positive arguments.

The stateless formulas they use (``erf``, ``normal_cdf``, ``sigmoid``, ``softmax``)
live in :mod:`minidl.functional`.
"""
import math

from ..backend import get_array_module
from ..checks import choice, integer, real_number
from ..functional import normal_cdf, sigmoid, softmax
from ..module import Module


class ReLU(Module):
    """``y = max(x, 0)``. Caches the mask ``x > 0`` (one byte per entry).

    Gradient: ``dx = dy * (x > 0)`` (0 at the kink, as in PyTorch).
    """

    input_shape = "(N, ...)"

    def forward(self, x):
        positive = x > 0
        self.save_for_backward(positive)
        return get_array_module(x).maximum(x, 0.0)

    def backward(self, dy):
        positive = self.saved_for_backward(dy)
        return dy * positive


class LeakyReLU(Module):
    """``y = x`` for x > 0, ``negative_slope * x`` otherwise. Caches the mask ``x > 0``.

    Gradient: ``dx = dy`` where x > 0, ``negative_slope * dy`` elsewhere.
    """

    input_shape = "(N, ...)"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = real_number(negative_slope, "negative_slope", "LeakyReLU")

    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(x > 0)
        return xp.maximum(x, 0.0) + self.negative_slope * xp.minimum(x, 0.0)

    def backward(self, dy):
        positive = self.saved_for_backward(dy)
        slope = positive.astype(dy.dtype)  # 1 where x > 0, then mapped to negative_slope elsewhere
        slope *= 1.0 - self.negative_slope
        slope += self.negative_slope
        slope *= dy
        return slope

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """``y = x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise (``alpha > 0``). Caches y.

    Gradient: ``dx = dy`` where x > 0, ``dy * (y + alpha)`` elsewhere (since
    ``d/dx alpha (e^x - 1) = alpha e^x = y + alpha``). With alpha > 0, ``y > 0`` exactly
    where ``x > 0``, so y alone is enough for backward.
    """

    input_shape = "(N, ...)"

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = real_number(alpha, "alpha", "ELU", low=0, low_open=True)

    def forward(self, x):
        xp = get_array_module(x)
        # Each term vanishes on the other side of 0; expm1 of min(x, 0) is exact near 0
        # and never overflows for large positive x.
        y = xp.maximum(x, 0.0) + self.alpha * xp.expm1(xp.minimum(x, 0.0))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        y = self.saved_for_backward(dy)
        positive = y > 0
        return dy * (positive + ~positive * (y + self.alpha))

    def extra_repr(self):
        return f"alpha={self.alpha}"


class GELU(Module):
    """Gaussian error linear unit ``y = x * Phi(x)``, Phi the standard normal CDF.

    ``approximate="none"`` (default, as in PyTorch): exact, with Phi from :func:`erf`.
    Caches x and Phi(x). Gradient: ``dx = dy * (Phi(x) + x * phi(x))``,
    ``phi(x) = exp(-x^2 / 2) / sqrt(2 pi)``.

    ``approximate="tanh"``: ``y = x/2 * (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``,
    cheaper (about a third of the elementwise passes). Caches x and tanh(u). Gradient:
    ``dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))``.
    """

    input_shape = "(N, ...)"

    _SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
    _INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
    _CUBIC = 0.044715
    # Past |x| = 40, phi(x) = 0 and tanh(u) = +-1 in float64: clipping there changes
    # nothing but keeps x^2 and x^3 from overflowing (float32 overflows at |x| ~ 1e13).
    _CLIP = 40.0

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = choice(approximate, "approximate", "GELU", ("none", "tanh"))

    def forward(self, x):
        xp = get_array_module(x)
        if self.approximate == "tanh":
            xc = xp.clip(x, -self._CLIP, self._CLIP)
            t = xp.tanh(self._SQRT_2_OVER_PI * (xc + self._CUBIC * xc * xc * xc))
            self.save_for_backward(x, t)
            return 0.5 * x * (1.0 + t)
        cdf = normal_cdf(x)
        self.save_for_backward(x, cdf)
        return x * cdf

    def backward(self, dy):
        xp = get_array_module(dy)
        x, saved = self.saved_for_backward(dy)
        xc = xp.clip(x, -self._CLIP, self._CLIP)
        if self.approximate == "tanh":
            t = saved
            du_dx = self._SQRT_2_OVER_PI * (1.0 + 3.0 * self._CUBIC * xc * xc)
            return dy * (0.5 * (1.0 + t) + 0.5 * xc * (1.0 - t * t) * du_dx)
        pdf = xp.exp(-0.5 * xc * xc) * self._INV_SQRT_2PI
        return dy * (saved + xc * pdf)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))``. Caches y. Gradient: ``dx = dy * y * (1 - y)``.

    Stable form: ``y = exp(min(x, 0)) / (1 + exp(-|x|))``, which is ``1 / (1 + e^-x)``
    for x >= 0 and ``e^x / (1 + e^x)`` for x < 0; exp never sees a positive argument,
    and tiny values keep their relative accuracy.
    """

    input_shape = "(N, ...)"

    def forward(self, x):
        y = sigmoid(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        y = self.saved_for_backward(dy)
        return dy * y * (1.0 - y)


class Tanh(Module):
    """``y = tanh(x)``. Caches y. Gradient: ``dx = dy * (1 - y^2)``."""

    input_shape = "(N, ...)"

    def forward(self, x):
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        y = self.saved_for_backward(dy)
        return dy * (1.0 - y * y)


class Softmax(Module):
    """``y_i = exp(x_i) / sum_j exp(x_j)`` along ``axis`` (default the last).

    Stable: the maximum along the axis is subtracted first, so exp sees only values
    <= 0. Caches y. Gradient (the Jacobian ``diag(y) - y y^T`` applied to dy):
    ``dx = y * (dy - sum_j(dy_j * y_j))``.
    """

    input_shape = "(N, ...)"

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = integer(axis, "axis", "Softmax")

    def forward(self, x):
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax: axis {self.axis} is out of range for input of shape "
                             f"{tuple(x.shape)} ({x.ndim}-D)")
        y = softmax(x, axis=self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        y = self.saved_for_backward(dy)
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))

    def extra_repr(self):
        return f"axis={self.axis}"


__all__ = ["ELU", "GELU", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh"]

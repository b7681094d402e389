"""Activation functions: ReLU, LeakyReLU, ELU, GELU, Sigmoid, Tanh, Softmax.

Every activation is elementwise (Softmax: along one axis), accepts a float32 or
float64 array of any shape ``(N, ...)`` and returns one of the same shape and dtype.
Each is written to stay finite and warning-free far in the tails (inputs of +-1e4):
exponentials only ever see non-positive arguments.

This module also defines :func:`erf` (NumPy has none, and minidl may not use SciPy),
used by the exact GELU.
"""
import math

from ..backend import get_array_module
from ..module import Module, require_float_array


def check_float_input(module, x, expected="(N, ...)"):
    """Raise a clear error unless ``x`` is a float32/float64 array with at least one axis."""
    name = type(module).__name__
    require_float_array(name, x, expected)
    if x.ndim < 1:
        raise ValueError(f"{name}: expected input of shape {expected} (at least 1-D), "
                         f"got a 0-D array")


# --------------------------------------------------------------------------- erf
# Rational approximations from the Cephes library (S. L. Moshier, ndtr.c), relative
# error ~1e-16 in float64 on their intervals. Coefficients are listed from the highest
# power down; in the denominators the leading coefficient 1 is implied.
#   erf(z)  = z * T(z^2) / U(z^2)            for |z| <= 1
#   erfc(z) = exp(-z^2) * P(z) / Q(z)        for 1 <= z  (Cephes uses it on [1, 8); past
#                                            8, erfc < 1e-28 and only its absolute size
#                                            matters here, so one branch suffices)
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
# erfc(40) ~ 1e-697 underflows to 0 in float64: clipping there changes no result but
# keeps the polynomials (degree 8) far from overflow for huge inputs.
_ERFC_CLIP = 40.0


def _polynomial(z, coefficients, leading_one=False):
    """Horner evaluation in z's dtype (Python-float coefficients keep float32 float32)."""
    if leading_one:
        result = z + coefficients[0]
    else:
        result = z * coefficients[0] + coefficients[1]
        coefficients = coefficients[1:]
    for c in coefficients[1:]:
        result *= z
        result += c
    return result


def _erf_small(z):
    """erf(z) for |z| <= 1."""
    z2 = z * z
    return z * _polynomial(z2, _ERF_T) / _polynomial(z2, _ERF_U, leading_one=True)


def _erfc_large(z):
    """erfc(z) for z >= 1 (relative accuracy, so tails stay accurate)."""
    xp = get_array_module(z)
    return xp.exp(-z * z) * _polynomial(z, _ERFC_P) / _polynomial(z, _ERFC_Q, leading_one=True)


def _select(condition, a, b):
    """``where(condition, a, b)`` for finite float arrays a and b, as arithmetic.

    ``condition * a + ~condition * b`` is exact (the unused branch is multiplied by 0)
    and in NumPy several times faster than ``np.where`` on float arrays.
    """
    return condition * a + ~condition * b


def erf(x):
    """The error function, elementwise, on NumPy or CuPy arrays (relative error ~1e-16)."""
    xp = get_array_module(x)
    z = xp.abs(x)
    small = _erf_small(xp.minimum(z, 1.0))
    large = 1.0 - _erfc_large(xp.clip(z, 1.0, _ERFC_CLIP))
    return xp.copysign(_select(z < 1.0, small, large), x)


def normal_cdf(x):
    """Phi(x) = P(X <= x) for X ~ N(0, 1), accurate in both tails.

    ``Phi(-|x|) = erfc(|x| / sqrt 2) / 2`` is computed directly (never as 1 - something
    close to 1), and ``Phi(x) = 1 - Phi(-x)``.
    """
    xp = get_array_module(x)
    z = xp.abs(x) * (1.0 / math.sqrt(2.0))
    lower_tail = _select(z < 1.0,
                         0.5 - 0.5 * _erf_small(xp.minimum(z, 1.0)),
                         0.5 * _erfc_large(xp.clip(z, 1.0, _ERFC_CLIP)))
    return _select(x >= 0, 1.0 - lower_tail, lower_tail)


# --------------------------------------------------------------------------- layers
class ReLU(Module):
    """``y = max(x, 0)``. Caches the mask ``x > 0`` (one byte per entry).

    Gradient: ``dx = dy * (x > 0)`` (0 at the kink, as in PyTorch).
    """

    def forward(self, x):
        check_float_input(self, x)
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

    def __init__(self, negative_slope=0.01):
        super().__init__()
        if not isinstance(negative_slope, (int, float)) or not math.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU: negative_slope must be a finite number, "
                             f"got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        check_float_input(self, x)
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

    def __init__(self, alpha=1.0):
        super().__init__()
        if not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"ELU: alpha must be a positive finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x):
        check_float_input(self, x)
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

    _SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
    _INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
    _CUBIC = 0.044715
    # Past |x| = 40, phi(x) = 0 and tanh(u) = +-1 in float64: clipping there changes
    # nothing but keeps x^2 and x^3 from overflowing (float32 overflows at |x| ~ 1e13).
    _CLIP = 40.0

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        check_float_input(self, x)
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

    def forward(self, x):
        check_float_input(self, x)
        y = sigmoid(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        y = self.saved_for_backward(dy)
        return dy * y * (1.0 - y)


def sigmoid(x):
    """Numerically stable logistic function, elementwise (see :class:`Sigmoid`)."""
    xp = get_array_module(x)
    return xp.exp(xp.minimum(x, 0.0)) / (1.0 + xp.exp(-xp.abs(x)))


class Tanh(Module):
    """``y = tanh(x)``. Caches y. Gradient: ``dx = dy * (1 - y^2)``."""

    def forward(self, x):
        check_float_input(self, x)
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

    def __init__(self, axis=-1):
        super().__init__()
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"Softmax: axis must be an int, got {axis!r}")
        self.axis = axis

    def forward(self, x):
        check_float_input(self, x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax: axis {self.axis} is out of range for input of shape "
                             f"{tuple(x.shape)} ({x.ndim}-D)")
        xp = get_array_module(x)
        y = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        y /= y.sum(axis=self.axis, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        y = self.saved_for_backward(dy)
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))

    def extra_repr(self):
        return f"axis={self.axis}"


__all__ = ["ELU", "GELU", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh", "erf",
           "normal_cdf", "sigmoid"]

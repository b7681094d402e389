"""Stateless math on NumPy or CuPy arrays, shared by layers and losses.

Nothing here keeps state or knows about gradients: these are the formulas the layers
(:mod:`minidl.layers.activations`) and losses (:mod:`minidl.losses`) are written with.

- :func:`erf` and :func:`normal_cdf`: NumPy has no ``erf`` and minidl may not use SciPy,
  so it is evaluated from the Cephes rational approximations (used by the exact GELU).
- :func:`sigmoid`, :func:`softmax`, :func:`log_softmax`, :func:`softplus`: written so
  that ``exp`` only ever sees non-positive arguments, finite for inputs of +-1e4.
"""
import math

from .backend import get_array_module


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


# --------------------------------------------------------------------------- logistic and softmax
def sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))``, elementwise and stable.

    ``exp(min(x, 0)) / (1 + exp(-|x|))`` is ``1 / (1 + e^-x)`` for x >= 0 and
    ``e^x / (1 + e^x)`` for x < 0: exp never sees a positive argument, and tiny values
    keep their relative accuracy.
    """
    xp = get_array_module(x)
    return xp.exp(xp.minimum(x, 0.0)) / (1.0 + xp.exp(-xp.abs(x)))


def softplus(u):
    """``log(1 + e^u)``, stable for any u: ``max(u, 0) + log1p(e^-|u|)``."""
    xp = get_array_module(u)
    return xp.maximum(u, 0.0) + xp.log1p(xp.exp(-xp.abs(u)))


def softmax(x, axis=-1):
    """``exp(x_i) / sum_j exp(x_j)`` along ``axis``; the maximum is subtracted first."""
    xp = get_array_module(x)
    if x.size == 0:  # no entries, no maximum to subtract
        return x.copy()
    y = xp.exp(x - x.max(axis=axis, keepdims=True))
    y /= y.sum(axis=axis, keepdims=True)
    return y


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` along ``axis``, and the softmax itself: ``(log_p, p)``.

    ``x - max - log(sum exp(x - max))``: no exp of a positive number, no log of 0.
    """
    xp = get_array_module(x)
    if x.size == 0:
        return x.copy(), x.copy()
    shifted = x - x.max(axis=axis, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=axis, keepdims=True)
    return shifted - xp.log(total), exp / total


__all__ = ["erf", "log_softmax", "normal_cdf", "sigmoid", "softmax", "softplus"]

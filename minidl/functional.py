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


# --------------------------------------------------------------------------- attention
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, rng=None):
    """Attention ``softmax(q k^T * scale + mask) v``, batched over all leading axes.

    query ``(..., L, E)``, key ``(..., S, E)``, value ``(..., S, Ev)``; output
    ``(..., L, Ev)``. ``scale`` defaults to ``1 / sqrt(E)``. ``attn_mask`` (broadcastable
    to ``(..., L, S)``): boolean, True where a query MAY attend (as in
    ``torch.nn.functional.scaled_dot_product_attention``), or float, added to the
    scores. ``is_causal``: query i sees keys j <= i only. A query that may attend to no
    key gets NaN weights (as in PyTorch). ``dropout_p > 0`` zeroes weights with that
    probability, drawing from ``rng`` (a ``Generator``), and rescales by ``1/(1-p)``.

    Returns ``(output, weights, keep)``: ``weights`` the softmax probabilities
    ``(..., L, S)`` (before dropout), ``keep`` the dropout mask or None. Pass them with
    the inputs to :func:`scaled_dot_product_attention_backward`.
    """
    xp = get_array_module(query)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    scores = query @ xp.swapaxes(key, -1, -2)
    scores *= scale
    length, source = scores.shape[-2:]
    if is_causal:
        future = xp.triu(xp.ones((length, source), dtype=bool), k=1)
        scores = xp.where(future, -xp.inf, scores).astype(scores.dtype, copy=False)
    if attn_mask is not None:
        if attn_mask.dtype == bool:
            scores = xp.where(attn_mask, scores, -xp.inf).astype(scores.dtype, copy=False)
        else:
            scores = scores + attn_mask.astype(scores.dtype, copy=False)
    weights = softmax(scores, axis=-1)
    keep = None
    if dropout_p > 0.0:
        keep = rng.random(weights.shape, dtype=weights.dtype) >= dropout_p
        dropped = weights * keep * (1.0 / (1.0 - dropout_p))
        return dropped @ value, weights, keep
    return weights @ value, weights, keep


def scaled_dot_product_attention_backward(d_output, query, key, value, weights, keep=None,
                                          dropout_p=0.0, scale=None):
    """Gradients ``(dquery, dkey, dvalue)`` of :func:`scaled_dot_product_attention`.

    With ``A`` the weights after dropout (``P * keep / (1 - p)``, or ``P``)::

        dvalue = A^T d_output        dA = d_output value^T       dP = dA * keep / (1 - p)
        dscores = P * (dP - sum_j dP * P)    (the softmax Jacobian, row by row)
        dquery = dscores key * scale         dkey = dscores^T query * scale

    Masked entries have P = 0, so they pass no gradient.
    """
    xp = get_array_module(d_output)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if keep is not None:
        attended = weights * keep * (1.0 / (1.0 - dropout_p))
    else:
        attended = weights
    d_value = xp.swapaxes(attended, -1, -2) @ d_output
    d_weights = d_output @ xp.swapaxes(value, -1, -2)
    if keep is not None:
        d_weights *= keep * (1.0 / (1.0 - dropout_p))
    d_scores = d_weights
    d_scores -= (d_weights * weights).sum(axis=-1, keepdims=True)
    d_scores *= weights
    d_scores *= scale
    d_query = d_scores @ key
    d_key = xp.swapaxes(d_scores, -1, -2) @ query
    return d_query, d_key, d_value


__all__ += ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]

"""Loop references: every core layer written the slow, obvious way, with its backward.

These are the definitions, for reading and printing; the layers in :mod:`minidl.layers`
compute the same numbers fast and are tested against them. Every pair follows the
CS231n convention::

    out, cache = something_forward(x, ...)      # cache: what backward needs
    grads = something_backward(dout, cache)    # dout = dL/dout, same shape as out

and every backward is checked against finite differences in ``tests/test_naive.py``.
Layouts are minidl's (and PyTorch's): images are NCHW, a Linear weight is
``(in_features, out_features)``, a Conv2d weight ``(C_out, C_in / groups, kh, kw)``.

=====================================  ================================================
reference                              fast layer
=====================================  ================================================
linear_forward / _backward             minidl.layers.Linear
conv2d_forward / _backward             minidl.layers.Conv2d
max_pool2d_forward / _backward         minidl.layers.MaxPool2d
avg_pool2d_forward / _backward         minidl.layers.AvgPool2d
batch_norm_forward / _backward(_alt)   minidl.layers.BatchNorm1d, BatchNorm2d (train)
dropout_forward / _backward            minidl.layers.Dropout (train)
softmax_cross_entropy                  minidl.losses.CrossEntropyLoss
=====================================  ================================================
"""
import numpy as np

from .backend import get_array_module
from .checks import real_number
from .layers.geometry import pair as _pair  # argument parsing only; no fast-path code


# --------------------------------------------------------------------------- helpers
def _output_size(size, kernel, stride, padding, dilation, owner):
    """How many windows fit: ``floor((size + 2 p - d (k - 1) - 1) / s) + 1``."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out <= 0:
        raise ValueError(f"{owner}: input size {size} with padding {padding} is smaller than "
                         f"the window {dilation * (kernel - 1) + 1}")
    return out


def _pad(x, padding, value):
    """x (N, C, H, W) with ``padding = (ph, pw)`` rows/columns of ``value`` on each side."""
    xp = get_array_module(x)
    (ph, pw), (n, c, h, w) = padding, x.shape
    x_pad = xp.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    x_pad[:, :, ph:ph + h, pw:pw + w] = x
    return x_pad


def _unpad(x_pad, padding):
    """The inverse of :func:`_pad`: drop the border (its gradient goes nowhere)."""
    (ph, pw), (h, w) = padding, x_pad.shape[2:]
    return x_pad[:, :, ph:h - ph, pw:w - pw]


# --------------------------------------------------------------------------- linear
def linear_forward(x, weight, bias=None):
    """``out = x @ W + b``.

    x: (N, in_features) (or (..., in_features)), weight: (in_features, out_features),
    bias: (out_features,) or None. out: (N, out_features). cache: (x, weight, has_bias).
    """
    out = x @ weight
    if bias is not None:
        out = out + bias
    return out, (x, weight, bias is not None)


def linear_backward(dout, cache):
    """``dx = dout @ W.T``, ``dW = x.T @ dout``, ``db = sum of dout over the batch``.

    Each ``out[n, j] = sum_i x[n, i] W[i, j] + b[j]``, so ``d out[n, j] / d W[i, j] =
    x[n, i]``, summed over the n that W[i, j] served. Returns (dx, dW, db); db is None
    without a bias.
    """
    x, weight, has_bias = cache
    # Leading axes (N, or N, T, ...) all act as the batch: flatten them to one.
    x_rows = x.reshape(-1, x.shape[-1])
    dout_rows = dout.reshape(-1, dout.shape[-1])
    dx = dout @ weight.T
    dweight = x_rows.T @ dout_rows
    dbias = dout_rows.sum(axis=0) if has_bias else None
    return dx, dweight, dbias


# --------------------------------------------------------------------------- conv2d
def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) as a loop over output pixels.

    x: (N, C_in, H, W), weight: (C_out, C_in/groups, kh, kw), bias: (C_out,) or None;
    zero padding. For output channel o in group g (input channels ``g C_in/groups`` on)::

        out[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q]
                                 * x_pad[n, g C_in/groups + c, i s_h + p d_h, j s_w + q d_w]

    out: (N, C_out, H_out, W_out). cache: (x, weight, has_bias, stride, padding,
    dilation, groups) with the window arguments as (height, width) pairs.
    """
    xp = get_array_module(x)
    owner = "conv2d_forward"
    stride, dilation = _pair(stride, "stride", owner), _pair(dilation, "dilation", owner)
    padding = _pair(padding, "padding", owner, allow_zero=True)
    (sh, sw), (dh, dw) = stride, dilation
    n, c_in, h, w = x.shape
    c_out, c_group, kh, kw = weight.shape
    if c_in != groups * c_group or c_out % groups:
        raise ValueError(f"{owner}: weight {weight.shape} does not fit input channels {c_in} "
                         f"in {groups} groups")
    out_group = c_out // groups
    h_out = _output_size(h, kh, sh, padding[0], dh, owner)
    w_out = _output_size(w, kw, sw, padding[1], dw, owner)
    x_pad = _pad(x, padding, 0.0)
    out = xp.zeros((n, c_out, h_out, w_out), dtype=x.dtype)
    for g in range(groups):
        ins = slice(g * c_group, (g + 1) * c_group)
        outs = slice(g * out_group, (g + 1) * out_group)
        for i in range(h_out):
            for j in range(w_out):
                rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                window = x_pad[:, ins, rows, cols]  # (N, C_in/groups, kh, kw)
                out[:, outs, i, j] = xp.einsum("ncpq,ocpq->no", window, weight[outs])
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out, (x, weight, bias is not None, stride, padding, dilation, groups)


def conv2d_backward(dout, cache):
    """Gradients of :func:`conv2d_forward`, the same loop run backwards.

    Output pixel (i, j) read one window of x_pad with every filter, so it sends back
    ``dw[o] += sum_n dout[n, o, i, j] window[n]`` and
    ``dx_pad[window] += sum_o dout[n, o, i, j] w[o]``; ``db[o] = sum_{n, i, j} dout``.
    dout: (N, C_out, H_out, W_out). Returns (dx, dweight, dbias); dbias is None
    without a bias.
    """
    x, weight, has_bias, (sh, sw), padding, (dh, dw), groups = cache
    xp = get_array_module(dout)
    c_out, c_group, kh, kw = weight.shape
    out_group = c_out // groups
    h_out, w_out = dout.shape[2:]
    x_pad = _pad(x, padding, 0.0)
    dx_pad = xp.zeros_like(x_pad)
    dweight = xp.zeros_like(weight)
    for g in range(groups):
        ins = slice(g * c_group, (g + 1) * c_group)
        outs = slice(g * out_group, (g + 1) * out_group)
        for i in range(h_out):
            for j in range(w_out):
                rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                window = x_pad[:, ins, rows, cols]  # (N, C_in/groups, kh, kw)
                d = dout[:, outs, i, j]  # (N, C_out/groups)
                dweight[outs] += xp.einsum("no,ncpq->ocpq", d, window)
                dx_pad[:, ins, rows, cols] += xp.einsum("no,ocpq->ncpq", d, weight[outs])
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return _unpad(dx_pad, padding), dweight, dbias


# --------------------------------------------------------------------------- pooling
def _pool_geometry(x, kernel_size, stride, padding, owner):
    kernel = _pair(kernel_size, "kernel_size", owner)
    stride = kernel if stride is None else _pair(stride, "stride", owner)
    padding = _pair(padding, "padding", owner, allow_zero=True)
    h_out = _output_size(x.shape[2], kernel[0], stride[0], padding[0], 1, owner)
    w_out = _output_size(x.shape[3], kernel[1], stride[1], padding[1], 1, owner)
    return kernel, stride, padding, (h_out, w_out)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max over each ``kh x kw`` window, as a loop over output pixels.

    x: (N, C, H, W); stride defaults to the kernel size; padding counts as -inf (it is
    never the maximum). ``out[n, c, i, j] = max_{p, q} x_pad[n, c, i s_h + p, j s_w + q]``.
    out: (N, C, H_out, W_out). cache: (x, kernel, stride, padding) as pairs.
    """
    xp = get_array_module(x)
    kernel, stride, padding, (h_out, w_out) = _pool_geometry(
        x, kernel_size, stride, padding, "max_pool2d_forward")
    (kh, kw), (sh, sw) = kernel, stride
    x_pad = _pad(x, padding, -np.inf)
    out = xp.zeros(x.shape[:2] + (h_out, w_out), dtype=x.dtype)
    for i in range(h_out):
        for j in range(w_out):
            window = x_pad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]  # (N, C, kh, kw)
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, (x, kernel, stride, padding)


def max_pool2d_backward(dout, cache):
    """Each ``dout[n, c, i, j]`` goes to the entry that was its window's maximum.

    The max is locally ``out = x[winner]``: derivative 1 at the winner, 0 elsewhere.
    On ties the FIRST maximum in row-major window order wins (argmax's rule; minidl's
    MaxPool2d and PyTorch do the same), so each dout lands on exactly one entry.
    Overlapping windows (stride < kernel) add up. Returns dx: (N, C, H, W).
    """
    x, (kh, kw), (sh, sw), padding = cache
    xp = get_array_module(dout)
    n, c, h_out, w_out = dout.shape
    x_pad = _pad(x, padding, -np.inf)
    dx_pad = xp.zeros_like(x_pad)
    for i in range(h_out):
        for j in range(w_out):
            window = x_pad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            winner = window.reshape(n, c, kh * kw).argmax(axis=2)  # first maximum
            one_hot = (xp.arange(kh * kw) == winner[:, :, None]).reshape(n, c, kh, kw)
            dx_pad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += \
                one_hot * dout[:, :, i, j, None, None]
    return _unpad(dx_pad, padding)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Mean over each ``kh x kw`` window, as a loop over output pixels.

    x: (N, C, H, W); stride defaults to the kernel size; padding counts as zeros and
    every window divides by ``kh kw`` (PyTorch's default ``count_include_pad=True``).
    out: (N, C, H_out, W_out). cache: (x.shape, kernel, stride, padding) as pairs.
    """
    xp = get_array_module(x)
    kernel, stride, padding, (h_out, w_out) = _pool_geometry(
        x, kernel_size, stride, padding, "avg_pool2d_forward")
    (kh, kw), (sh, sw) = kernel, stride
    x_pad = _pad(x, padding, 0.0)
    out = xp.zeros(x.shape[:2] + (h_out, w_out), dtype=x.dtype)
    for i in range(h_out):
        for j in range(w_out):
            window = x_pad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]  # (N, C, kh, kw)
            out[:, :, i, j] = window.mean(axis=(2, 3))
    return out, (x.shape, kernel, stride, padding)


def avg_pool2d_backward(dout, cache):
    """Every entry of a window gets ``dout / (kh kw)`` (each had weight 1 / (kh kw)).

    Overlapping windows add up; the share that fell on padding is dropped.
    Returns dx: (N, C, H, W).
    """
    x_shape, (kh, kw), (sh, sw), (ph, pw) = cache
    xp = get_array_module(dout)
    n, c, h, w = x_shape
    h_out, w_out = dout.shape[2:]
    dx_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dout.dtype)
    for i in range(h_out):
        for j in range(w_out):
            dx_pad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += \
                dout[:, :, i, j, None, None] / (kh * kw)
    return _unpad(dx_pad, (ph, pw))


# --------------------------------------------------------------------------- batch norm
def _channel_axes(x):
    """Every axis but the channel axis 1: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, ndim):
    """A (C,) vector shaped to broadcast against an (N, C, ...) array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm_forward(x, gamma, beta, eps=1e-5):
    """Batch normalization in train mode, one node of the graph per line.

    x: (N, C) or (N, C, H, W); gamma, beta: (C,). Per channel, over the m = x.size / C
    values of that channel (every axis but axis 1)::

        mu = mean(x)          xc = x - mu            var = mean(xc^2)   (biased)
        std = sqrt(var + eps) inv = 1 / std          xhat = xc * inv
        out = gamma * xhat + beta

    out: like x. cache: (x, gamma, xc, std, inv, xhat), for the step-by-step backward.
    """
    axes = _channel_axes(x)
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=axes, keepdims=True)
    std = (var + eps) ** 0.5
    inv = 1.0 / std
    xhat = xc * inv
    out = _per_channel(gamma, x.ndim) * xhat + _per_channel(beta, x.ndim)
    return out, (x, gamma, xc, std, inv, xhat)


def batch_norm_backward(dout, cache):
    """Backward through the graph of :func:`batch_norm_forward`, one node at a time.

    Walks x -> mu -> xc -> var -> std -> inv -> xhat -> out in reverse. At each node
    the upstream gradient is multiplied by the node's local derivative; a value used
    twice (xc feeds both var and xhat) collects the sum of both paths, and a
    per-channel value broadcast over m entries collects the sum over them.
    Returns (dx, dgamma, dbeta).
    """
    x, gamma, xc, std, inv, xhat = cache
    axes = _channel_axes(x)
    m = x.size // x.shape[1]  # values per channel
    # out = gamma * xhat + beta: d/dbeta = 1, d/dgamma = xhat, d/dxhat = gamma
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dxhat = dout * _per_channel(gamma, x.ndim)
    # xhat = xc * inv: d/dxc = inv (path 1 into xc), d/dinv = xc (inv was broadcast: sum)
    dxc = dxhat * inv
    dinv = (dxhat * xc).sum(axis=axes, keepdims=True)
    # inv = 1 / std: d inv / d std = -1 / std^2
    dstd = -dinv / std ** 2
    # std = sqrt(var + eps): d std / d var = 1 / (2 sqrt(var + eps)) = 1 / (2 std)
    dvar = dstd / (2.0 * std)
    # var = mean(xc^2): d var / d xc = 2 xc / m (path 2 into xc, added to path 1)
    dxc = dxc + dvar * 2.0 * xc / m
    # xc = x - mu: d/dx = 1 (path 1 into x), d/dmu = -1 (mu was broadcast: sum)
    dx = dxc
    dmu = -dxc.sum(axis=axes, keepdims=True)
    # mu = mean(x): d mu / d x = 1 / m (path 2 into x)
    dx = dx + dmu / m
    return dx, dgamma, dbeta


def batch_norm_backward_alt(dout, cache):
    """The closed form :func:`batch_norm_backward` simplifies to.

    Per channel, with sums over its m values, ``xhat_i = (x_i - mu) inv`` and
    ``g_i = dL/dxhat_i = gamma dout_i``. From ``d mu / d x_j = 1/m`` and
    ``d var / d x_j = 2 (x_j - mu) / m`` (the mu term sums to zero),
    ``d inv / d x_j = -inv^3 (x_j - mu) / m = -inv^2 xhat_j / m``, hence::

        d xhat_i / d x_j = inv (delta_ij - 1/m) + (x_i - mu) d inv / d x_j
                         = inv / m (m delta_ij - 1 - xhat_i xhat_j)

        dx_j = sum_i g_i d xhat_i / d x_j = inv / m (m g_j - sum_i g_i - xhat_j sum_i g_i xhat_i)

    and since ``sum_i g_i = gamma dbeta`` and ``sum_i g_i xhat_i = gamma dgamma``::

        dx = gamma inv / m (m dout - dbeta - xhat dgamma)

    Three per-channel sums instead of the graph's six steps. Returns (dx, dgamma, dbeta).
    """
    x, gamma, xc, std, inv, xhat = cache
    axes = _channel_axes(x)
    m = x.size // x.shape[1]
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dx = (_per_channel(gamma, x.ndim) * inv / m
          * (m * dout - _per_channel(dbeta, x.ndim) - xhat * _per_channel(dgamma, x.ndim)))
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- dropout
def dropout_forward(x, p, mask=None, generator=None):
    """Inverted dropout (train mode): drop each entry with probability p, scale the rest.

    ``out = x * mask / (1 - p)``, so ``E[out] = x`` and eval mode is the identity.
    mask: booleans shaped like x (True = kept), or None to draw
    ``mask = generator.random(x.shape) >= p`` from ``generator`` (a NumPy/CuPy
    ``Generator``, e.g. ``minidl.backend.rng()``). cache: (mask, p).
    """
    p = real_number(p, "p", "dropout_forward", 0.0, 1.0, high_open=True)
    if mask is None:
        if generator is None:
            raise ValueError("dropout_forward: pass a mask or a generator to draw it from")
        mask = generator.random(x.shape) >= p  # kept with probability 1 - p
    out = x * mask / (1.0 - p)
    return out, (mask, p)


def dropout_backward(dout, cache):
    """``dx = dout * mask / (1 - p)``: out is linear in x, with slope mask / (1 - p)."""
    mask, p = cache
    return dout * mask / (1.0 - p)


# --------------------------------------------------------------------------- loss
def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy and its gradient, in one function.

    logits: (N, K) scores, y: (N,) integer classes in [0, K). With
    ``probs = softmax(logits)`` per row::

        loss = -mean_n log probs[n, y_n]        dlogits = (probs - onehot(y)) / N

    Stable: each row's maximum is subtracted first (softmax is unchanged by a shift,
    and exp never overflows); log probs are ``shifted - log(sum(exp(shifted)))``.
    Returns (loss, dlogits), loss a 0-d array, dlogits shaped like logits.
    """
    xp = get_array_module(logits)
    n = logits.shape[0]
    rows = xp.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].mean()
    dlogits = xp.exp(log_probs)
    dlogits[rows, y] -= 1.0
    dlogits /= n
    return loss, dlogits


__all__ = [
    "avg_pool2d_backward", "avg_pool2d_forward", "batch_norm_backward",
    "batch_norm_backward_alt", "batch_norm_forward", "conv2d_backward", "conv2d_forward",
    "dropout_backward", "dropout_forward", "linear_backward", "linear_forward",
    "max_pool2d_backward", "max_pool2d_forward", "softmax_cross_entropy",
]

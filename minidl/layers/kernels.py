"""The plain functions the fast layers call for their heavy lifting.

A layer's ``forward``/``backward`` is written as its math (``cols = im2col(x)``,
``y = cols @ W``); the machinery that makes it fast lives here and below. Functions
whose best body differs between the backends pick it from the data: NumPy arrays go
to :mod:`~minidl.layers.cpu_kernels` (workspaces, copy threads, channels-last
tricks), CuPy arrays to :mod:`~minidl.layers.gpu_kernels` (CUDA kernels). The rest is
written once with ``xp`` and serves both.
"""
from itertools import chain

import numpy as np

from ..backend import get_array_module
from . import cpu_kernels, gpu_kernels
from .geometry import offset_slice


def for_array(array):
    """The kernel module for ``array``'s backend: cpu_kernels or gpu_kernels."""
    return cpu_kernels if get_array_module(array) is np else gpu_kernels


class Workspace:
    """Buffers a layer keeps between calls (Conv2d's columns live from forward to backward).

    On NumPy a buffer per role is reused from step to step; on CuPy the memory pool
    already does this, so ``get`` just allocates.
    """

    def __init__(self):
        self._by_backend = {cpu_kernels: cpu_kernels.Workspace(),
                            gpu_kernels: gpu_kernels.Workspace()}

    def get(self, like, role, shape):
        """An uninitialised array of ``shape`` with ``like``'s dtype and device."""
        return self._by_backend[for_array(like)].get(like, role, shape)

    def clear(self):
        for workspace in self._by_backend.values():
            workspace.clear()


def scratch(like, role, shape):
    """A buffer for the duration of one call (the next request for ``role`` reuses it)."""
    return for_array(like).scratch(like, role, shape)


def copy_batched(dst, src):
    """``dst[...] = src`` (on NumPy split over the batch axis between threads)."""
    return for_array(dst).copy_batched(dst, src)


# --------------------------------------------------------------------------- convolution
def im2col(x, kernel_size, stride, padding, dilation, groups, out_hw, out):
    """Write the windows of NCHW ``x`` into the rows of ``out``; arguments validated."""
    return for_array(x).im2col(x, kernel_size, stride, padding, dilation, groups, out_hw, out)


def col2im(cols, x_shape, kernel_size, stride, padding, dilation, groups, out_hw):
    """Adjoint of :func:`im2col`: a new NCHW array; arguments validated."""
    return for_array(cols).col2im(cols, x_shape, kernel_size, stride, padding, dilation,
                                  groups, out_hw)


def pointwise_columns(x, stride, out):
    """im2col of a 1x1 kernel without padding: the (strided) pixels, channels last."""
    sh, sw = stride
    pixels = x[:, :, ::sh, ::sw].transpose(0, 2, 3, 1)
    copy_batched(out.reshape(pixels.shape), pixels)
    return out


def pointwise_col2im(cols, x_shape, stride):
    """Adjoint of :func:`pointwise_columns`: each row back to its pixel; zeros between strides."""
    xp = get_array_module(cols)
    n, _, height, width = x_shape
    sh, sw = stride
    out_h, out_w = -(-height // sh), -(-width // sw)
    pixels = cols.reshape(n, out_h, out_w, x_shape[1]).transpose(0, 3, 1, 2)
    # A new array even when the view is contiguous: cols is a scratch buffer.
    strided = (sh, sw) != (1, 1)
    dx = xp.zeros(x_shape, dtype=cols.dtype) if strided else xp.empty(x_shape, dtype=cols.dtype)
    dx[:, :, ::sh, ::sw] = pixels
    return dx


def nchw_to_rows(y, role):
    """NCHW ``y`` as a matrix ``(N*H*W, C)`` (NHWC order) in a scratch buffer."""
    n, c, h, w = y.shape
    rows = scratch(y, role, (n * h * w, c))
    copy_batched(rows.reshape(n, h, w, c), y.transpose(0, 2, 3, 1))
    return rows


def rows_to_nchw(rows, shape, bias=None):
    """Matrix ``(N*H*W, C)`` (NHWC order) to a new NCHW array of ``shape``, plus ``bias``."""
    return for_array(rows).rows_to_nchw(rows, shape, bias)


def grouped_matmul(a, b, out):
    """``out_g = a_g @ b_g`` for each group g: a ``(rows, groups*k)``, b ``(groups, k, m)``.

    Writes ``out`` ``(rows, groups*m)``: one GEMM when groups == 1, else one batched call.
    """
    xp = get_array_module(a)
    groups, rows = b.shape[0], a.shape[0]
    if groups == 1:
        return xp.matmul(a, b[0], out=out)
    grouped = a.reshape(rows, groups, b.shape[1]).transpose(1, 0, 2)
    out.reshape(rows, groups, b.shape[2]).transpose(1, 0, 2)[...] = xp.matmul(grouped, b)
    return out


def grouped_transposed_matmul(a, b, groups):
    """``a_g^T @ b_g`` for each group: a ``(rows, groups*k)``, b ``(rows, groups*m)`` ->
    ``(groups, k, m)`` (the weight gradient ``cols^T dY`` of a grouped convolution)."""
    xp = get_array_module(a)
    if groups == 1:
        return (a.T @ b)[None]
    rows = a.shape[0]
    grouped_a = a.reshape(rows, groups, a.shape[1] // groups).transpose(1, 2, 0)
    grouped_b = b.reshape(rows, groups, b.shape[1] // groups).transpose(1, 0, 2)
    return xp.matmul(grouped_a, grouped_b)


# --------------------------------------------------------------------------- pooling
def pad(x, padding, fill):
    """x with a border of ``fill`` (a new array), or x itself without padding."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def max_and_first_argmax(slices):
    """Elementwise maximum over equally shaped arrays, and the index of the first one
    attaining it (uint8, so at most 255 arrays).

    Scanning backwards, ``winner <- k`` wherever slice k equals the maximum, written as
    uint8 arithmetic (``winner += equal * (k - winner)``, exact modulo 256), because
    masked copies (``np.copyto(..., where=)``) are ten times slower than these
    elementwise operations.
    """
    xp = get_array_module(slices[0])
    maximum = xp.array(slices[0])
    for candidate in slices[1:]:
        xp.maximum(maximum, candidate, out=maximum)
    winner = xp.zeros(maximum.shape, dtype=np.uint8)
    equal = xp.empty(maximum.shape, dtype=bool)
    for k in range(len(slices) - 1, -1, -1):
        xp.equal(slices[k], maximum, out=equal)
        step = k - winner
        step *= equal
        winner += step
    return maximum, winner


def add_into_windows(gradients, x_shape, out_hw, kernel_size, stride, padding):
    """``dx_pad[offset_slice(i, j)] += gradients[k]`` for every window offset k = i*kw + j.

    ``gradients`` yields kh*kw arrays ``(N, C, H_out, W_out)`` in offset order. When the
    windows tile the input (stride == kernel, no padding) the slices are disjoint, so
    each is written once and only the uncovered border is zeroed.
    """
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel_size, padding
    gradients = iter(gradients)
    first = next(gradients)
    xp = get_array_module(first)
    if stride == tuple(kernel_size) and (ph, pw) == (0, 0):
        dx = xp.empty(x_shape, dtype=first.dtype)
        dx[:, :, out_hw[0] * kh:] = 0
        dx[:, :, :, out_hw[1] * kw:] = 0
        for k, gradient in enumerate(chain([first], gradients)):
            offset_slice(dx, k // kw, k % kw, out_hw, stride)[...] = gradient
        return dx
    dx_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=first.dtype)
    for k, gradient in enumerate(chain([first], gradients)):
        offset_slice(dx_pad, k // kw, k % kw, out_hw, stride)[...] += gradient
    return xp.ascontiguousarray(dx_pad[:, :, ph:ph + h, pw:pw + w])

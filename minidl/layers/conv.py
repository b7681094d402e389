"""2-D convolution: im2col + one GEMM per group, with a loop version for teaching.

Layout conventions (NCHW in and out, like PyTorch)::

    x       (N, C_in, H, W)
    weight  (C_out, C_in / groups, kh, kw)
    y       (N, C_out, H_out, W_out)
    H_out = floor((H + 2 p_h - d_h (kh - 1) - 1) / s_h) + 1      (same for W)

**im2col.** Every output pixel ``(n, ho, wo)`` sees one window of the padded input.
:func:`im2col` copies those windows into the rows of a matrix ``cols`` of shape
``(N * H_out * W_out, groups * kh * kw * C_in/groups)``; the columns run over
``(g, i, j, c)``: group, kernel row, kernel column, channel within the group::

    cols[(n, ho, wo), (g, i, j, c)] = x_pad[n, g * C_in/groups + c, ho s_h + i d_h, wo s_w + j d_w]

With the weight rearranged to ``W_g`` of shape ``(kh * kw * C_in/groups, C_out/groups)``
a convolution is one matrix product per group: ``Y_g = cols_g @ W_g``.

Why channels last (NHWC) inside: the windows are then copied as runs of ``C``
contiguous numbers, so the copy is one strided view plus one ``np.copyto`` (about three
times faster than gathering NCHW windows), and the GEMM output ``(N*H_out*W_out, C_out)``
is NHWC, transposed back to NCHW while the bias is added, in one pass.

**col2im** is the adjoint (transpose) of im2col: it adds every column entry back into
the pixel it was copied from, ``<im2col(x), c> == <x, col2im(c)>``. On the CPU it loops
over the ``kh * kw`` kernel offsets, each a strided slice of the padded gradient, never
over samples or pixels. On the GPU (CuPy) both are CUDA kernels from
:mod:`minidl.layers.gpu_kernels`; col2im there is a deterministic gather.

Gradients (per group, ``dY`` the upstream gradient as an ``(N*H_out*W_out, C_out)`` matrix)::

    dW = cols^T @ dY        db = sum of dY over rows        dx = col2im(dY @ W^T)
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import init as initializers
from ..backend import get_array_module
from ..module import Module, Param, positive_int


# --------------------------------------------------------------------------- helpers


def pair(value, label, owner="conv", allow_zero=False):
    """``3 -> (3, 3)``; ``(3, 1) -> (3, 1)``; validated as positive (or non-negative) ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: {label} must be an int or a pair of ints, got {value!r}")
        return tuple(positive_int(v, label, owner, allow_zero) for v in value)
    value = positive_int(value, label, owner, allow_zero)
    return value, value


def output_size(size, kernel, stride, padding, dilation=1):
    """Output length of a sliding window: ``floor((size + 2p - d (k - 1) - 1) / s) + 1``.

    Returns 0 or less when the padded input is smaller than the dilated kernel.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_geometry(x_shape, kernel_size, stride, padding, dilation, owner="im2col"):
    """(H_out, W_out) for an NCHW shape; ValueError when the input is too small."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    height, width = x_shape[2], x_shape[3]
    out_h = output_size(height, kh, sh, ph, dh)
    out_w = output_size(width, kw, sw, pw, dw)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"{owner}: input of spatial size {height}x{width} with padding ({ph}, {pw}) is "
            f"{height + 2 * ph}x{width + 2 * pw}, smaller than the dilated kernel "
            f"{dh * (kh - 1) + 1}x{dw * (kw - 1) + 1} (kernel {kh}x{kw}, dilation ({dh}, {dw}))")
    return out_h, out_w


class Workspace:
    """Reusable NumPy buffers, one per role, grown on demand and never shrunk.

    Large fresh arrays cost page faults on first touch (as much as the copy itself), so
    hot paths write into a buffer that survives between steps. ``get`` returns a view of
    the first ``prod(shape)`` entries of that buffer, so whoever holds the view must be
    done with it before the same role is requested again. On CuPy the memory pool
    already does this, so ``get`` just allocates.
    """

    def __init__(self):
        self._buffers = {}

    def get(self, xp, role, shape, dtype):
        if xp is not np:
            return xp.empty(shape, dtype=dtype)
        size = math.prod(shape)
        key = (role, np.dtype(dtype))
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype=dtype)
            self._buffers[key] = buffer
        return buffer[:size].reshape(shape)

    def clear(self):
        self._buffers.clear()


#: Buffers used only for the duration of one call (padded inputs, dy rearranged, dcols).
_scratch = Workspace()

# NumPy copies run on one core but release the GIL, so large ones are split over the
# batch axis between a few threads. MINIDL_NUM_THREADS=1 turns this off.
_NUM_THREADS = max(1, int(os.environ.get("MINIDL_NUM_THREADS", min(os.cpu_count() or 1, 4))))
_PARALLEL_MIN_ELEMENTS = 1 << 18
_pool = None


def parallel_over_batch(work, batch, elements):
    """Run ``work(start, stop)`` over ``range(batch)``, split between threads when large.

    ``work`` must write disjoint outputs for disjoint sample ranges.
    """
    global _pool
    chunks = min(_NUM_THREADS, batch)
    if chunks <= 1 or elements < _PARALLEL_MIN_ELEMENTS:
        work(0, batch)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(_NUM_THREADS, thread_name_prefix="minidl")
    bounds = [batch * k // chunks for k in range(chunks + 1)]
    futures = [_pool.submit(work, bounds[k], bounds[k + 1]) for k in range(1, chunks)]
    work(bounds[0], bounds[1])
    for future in futures:
        future.result()


def _to_nhwc_padded(x, padding, workspace, role):
    """Copy NCHW ``x`` into a zero-bordered NHWC buffer ``(N, H + 2p_h, W + 2p_w, C)``.

    Returns x itself (as an NHWC view) when there is no padding and x is already
    channels-last in memory.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    nhwc = x.transpose(0, 2, 3, 1)
    if ph == 0 and pw == 0 and nhwc.flags.c_contiguous:
        return nhwc
    padded = workspace.get(np, role, (n, h + 2 * ph, w + 2 * pw, c), x.dtype)

    def copy(start, stop):
        block = padded[start:stop]
        if ph:
            block[:, :ph] = 0
            block[:, ph + h:] = 0
        if pw:
            block[:, ph:ph + h, :pw] = 0
            block[:, ph:ph + h, pw + w:] = 0
        block[:, ph:ph + h, pw:pw + w] = nhwc[start:stop]

    parallel_over_batch(copy, n, x.size)
    return padded


def _window_view(padded, out_hw, kernel_size, stride, dilation, groups):
    """Strided view ``(N, H_out, W_out, groups, kh, kw, C/groups)`` of an NHWC buffer."""
    n, _, _, c = padded.shape
    sn, sh_, sw_, sc = padded.strides
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    shape = (n, out_hw[0], out_hw[1], groups, kh, kw, c // groups)
    strides = (sn, sh * sh_, sw * sw_, (c // groups) * sc, dh * sh_, dw * sw_, sc)
    return as_strided(padded, shape, strides, writeable=False)


def _normalise_args(kernel_size, stride, padding, dilation, owner):
    return (pair(kernel_size, "kernel_size", owner), pair(stride, "stride", owner),
            pair(padding, "padding", owner, allow_zero=True), pair(dilation, "dilation", owner))


# --------------------------------------------------------------------------- im2col / col2im
def im2col(x, kernel_size, stride=1, padding=0, dilation=1, groups=1, out=None):
    """Unfold the sliding windows of ``x`` into the rows of a matrix.

    x: (N, C, H, W). Returns cols of shape ``(N * H_out * W_out, C * kh * kw)``, rows
    ordered (n, ho, wo), columns ordered (g, i, j, c) as in the module docstring.
    ``out``, if given, is a C-contiguous array of that shape to write into.
    """
    kernel_size, stride, padding, dilation = _normalise_args(kernel_size, stride, padding,
                                                             dilation, "im2col")
    groups = positive_int(groups, "groups", "im2col")
    if x.ndim != 4 or x.shape[1] % groups:
        raise ValueError(f"im2col: expected x of shape (N, C, H, W) with C divisible by "
                         f"groups={groups}, got shape {tuple(x.shape)}")
    xp = get_array_module(x)
    n, c = x.shape[:2]
    out_h, out_w = conv_geometry(x.shape, kernel_size, stride, padding, dilation)
    shape = (n * out_h * out_w, c * kernel_size[0] * kernel_size[1])
    if out is None:
        out = xp.empty(shape, dtype=x.dtype)
    elif tuple(out.shape) != shape or not out.flags.c_contiguous:
        raise ValueError(f"im2col: out must be a C-contiguous array of shape {shape}, "
                         f"got {tuple(out.shape)}")
    if xp is not np:
        from . import gpu_kernels
        return gpu_kernels.im2col(xp, x, kernel_size, stride, padding, dilation, groups,
                                  (out_h, out_w), out)
    padded = _to_nhwc_padded(x, padding, _scratch, "im2col.padded")
    windows = _window_view(padded, (out_h, out_w), kernel_size, stride, dilation, groups)
    target = out.reshape(windows.shape)
    parallel_over_batch(lambda a, b: np.copyto(target[a:b], windows[a:b]), n, out.size)
    return out


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """Adjoint of :func:`im2col`: add every column entry back into its source pixel.

    cols: ``(N * H_out * W_out, C * kh * kw)`` laid out as im2col makes it.
    Returns a new array of shape ``x_shape`` = (N, C, H, W) (padding discarded).
    """
    kernel_size, stride, padding, dilation = _normalise_args(kernel_size, stride, padding,
                                                             dilation, "col2im")
    groups = positive_int(groups, "groups", "col2im")
    n, c, h, w = (int(v) for v in x_shape)
    out_h, out_w = conv_geometry(x_shape, kernel_size, stride, padding, dilation, "col2im")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    expected = (n * out_h * out_w, c * kh * kw)
    if tuple(cols.shape) != expected or c % groups:
        raise ValueError(f"col2im: expected cols of shape {expected} for x_shape "
                         f"{tuple(x_shape)} (groups={groups}), got {tuple(cols.shape)}")
    xp = get_array_module(cols)
    if xp is not np:
        from . import gpu_kernels
        return gpu_kernels.col2im(xp, cols, (n, c, h, w), kernel_size, stride, padding,
                                  dilation, groups, (out_h, out_w))
    windows = cols.reshape(n, out_h, out_w, groups, kh, kw, c // groups)
    padded = _scratch.get(np, "col2im.padded", (n, h + 2 * ph, w + 2 * pw, groups, c // groups),
                          cols.dtype)
    dx = np.empty((n, c, h, w), dtype=cols.dtype)
    span_h, span_w = sh * (out_h - 1) + 1, sw * (out_w - 1) + 1

    def accumulate(start, stop):
        block = padded[start:stop]
        block.fill(0)
        for i in range(kh):
            for j in range(kw):
                target = block[:, i * dh:i * dh + span_h:sh, j * dw:j * dw + span_w:sw]
                target += windows[start:stop, :, :, :, i, j]
        inner = block[:, ph:ph + h, pw:pw + w].reshape(stop - start, h, w, c)
        dx[start:stop] = inner.transpose(0, 3, 1, 2)

    parallel_over_batch(accumulate, n, cols.size)
    return dx


# --------------------------------------------------------------------------- naive reference
def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Convolution written as loops over output pixels: the definition, for teaching and tests.

    x: (N, C_in, H, W), weight: (C_out, C_in/groups, kh, kw), bias: (C_out,) or None.
    ``y[n, o, ho, wo] = b[o] + sum_{c, i, j} w[o, c, i, j] x_pad[n, g C_in/groups + c,
    ho s_h + i d_h, wo s_w + j d_w]`` where g is the group of output channel o.
    """
    xp = get_array_module(x)
    (kh, kw) = weight.shape[2:]
    stride, padding, dilation = (pair(stride, "stride"), pair(padding, "padding", allow_zero=True),
                                 pair(dilation, "dilation"))
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    out_h, out_w = conv_geometry(x.shape, (kh, kw), stride, padding, dilation, "conv2d_naive")
    x_pad = xp.zeros((n, c_in, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    x_pad[:, :, ph:ph + h, pw:pw + w] = x
    in_per_group, out_per_group = c_in // groups, c_out // groups
    y = xp.zeros((n, c_out, out_h, out_w), dtype=x.dtype)
    for g in range(groups):
        w_g = weight[g * out_per_group:(g + 1) * out_per_group]
        x_g = x_pad[:, g * in_per_group:(g + 1) * in_per_group]
        for ho in range(out_h):
            for wo in range(out_w):
                top, left = ho * sh, wo * sw
                window = x_g[:, :, top:top + dh * (kh - 1) + 1:dh, left:left + dw * (kw - 1) + 1:dw]
                # window (N, C_g, kh, kw) against w_g (C_out_g, C_g, kh, kw)
                y[:, g * out_per_group:(g + 1) * out_per_group, ho, wo] = \
                    (window[:, None] * w_g[None]).sum(axis=(2, 3, 4))
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


# --------------------------------------------------------------------------- layer
class Conv2d(Module):
    """2-D convolution (cross-correlation, as in every framework), NCHW.

    Shapes: x (N, C_in, H, W) -> y (N, C_out, H_out, W_out); weight
    (C_out, C_in/groups, kh, kw); bias (C_out,). ``kernel_size``, ``stride``,
    ``padding``, ``dilation`` are ints or (height, width) pairs; zero padding.
    ``init`` names a :mod:`minidl.init` initialiser or is a callable ``f(shape, dtype)``;
    default ``"torch_default"`` (U(+-1/sqrt(fan_in)), fan_in = C_in/groups * kh * kw).

    Forward: ``cols = im2col(x)``, then per group ``Y_g = cols_g @ W_g``, + bias.
    Cached for backward: the columns (in a buffer owned by this layer, reused by the
    next forward: ``N H_out W_out C_in kh kw`` numbers) and the rearranged weight.
    Backward: ``dW_g = cols_g^T dY_g``, ``db = sum dY``, ``dx = col2im(dY_g W_g^T)``.
    A 1x1 kernel without padding skips im2col: its columns are the (strided) input
    pixels themselves, rearranged channels-last.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, init="torch_default"):
        super().__init__()
        name = "Conv2d"
        self.in_channels = positive_int(in_channels, "in_channels", name)
        self.out_channels = positive_int(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, allow_zero=True)
        self.dilation = pair(dilation, "dilation", name)
        self.groups = positive_int(groups, "groups", name)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: in_channels ({self.in_channels}) and out_channels "
                             f"({self.out_channels}) must both be divisible by groups "
                             f"({self.groups})")
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Param(initializers.get(init)(shape))
        self.bias = Param(initializers.zeros((self.out_channels,))) if bias else None
        self._workspace = Workspace()  # holds the cached columns between forward and backward

    def drop_saved(self):
        super().drop_saved()
        self._workspace.clear()  # the cached columns (also on the old device/dtype after to())

    @property
    def _pointwise(self):
        return self.kernel_size == (1, 1) and self.padding == (0, 0)

    def _weight_matrices(self):
        """weight (C_out, C_g, kh, kw) -> (groups, kh*kw*C_g, C_out/groups), matching cols."""
        groups = self.groups
        c_out, c_g, kh, kw = self.weight.data.shape
        w = self.weight.data.reshape(groups, c_out // groups, c_g, kh, kw)
        return w.transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * c_g, c_out // groups)

    def _columns(self, x, out_hw):
        """im2col into this layer's workspace (the pointwise case: strided NHWC pixels)."""
        xp = get_array_module(x)
        n, c = x.shape[:2]
        rows = n * out_hw[0] * out_hw[1]
        width = c * self.kernel_size[0] * self.kernel_size[1]
        cols = self._workspace.get(xp, "cols", (rows, width), x.dtype)
        if not self._pointwise:
            return im2col(x, self.kernel_size, self.stride, self.padding, self.dilation,
                          self.groups, out=cols)
        sh, sw = self.stride
        pixels = x[:, :, ::sh, ::sw].transpose(0, 2, 3, 1)
        target = cols.reshape(pixels.shape)
        if xp is np:
            parallel_over_batch(lambda a, b: np.copyto(target[a:b], pixels[a:b]), n, cols.size)
        else:
            target[...] = pixels
        return cols

    def forward(self, x):
        self.check_input(x, "(N, C, H, W)", channels=self.in_channels)
        xp = get_array_module(x)
        out_hw = conv_geometry(x.shape, self.kernel_size, self.stride, self.padding,
                               self.dilation, "Conv2d")
        n, groups = x.shape[0], self.groups
        rows, c_out = n * out_hw[0] * out_hw[1], self.out_channels
        cols = self._columns(x, out_hw)
        w_mats = self._weight_matrices()
        y_rows = _scratch.get(xp, "conv.y_rows", (rows, c_out), x.dtype)
        if groups == 1:
            xp.matmul(cols, w_mats[0], out=y_rows)
        else:  # one batched call: a GEMM per group, (groups, rows, C_out/groups)
            grouped = cols.reshape(rows, groups, -1).transpose(1, 0, 2)
            y_rows.reshape(rows, groups, -1).transpose(1, 0, 2)[...] = xp.matmul(grouped, w_mats)
        self.save_for_backward(cols, w_mats, tuple(x.shape))
        y = xp.empty((n, c_out) + out_hw, dtype=x.dtype)
        y_nhwc = y_rows.reshape(n, out_hw[0], out_hw[1], c_out)
        bias = self.bias.data.reshape(c_out, 1, 1) if self.bias is not None else None

        def to_nchw(start, stop):  # the transpose back to NCHW, fused with the bias add
            source = y_nhwc[start:stop].transpose(0, 3, 1, 2)
            if bias is None:
                y[start:stop] = source
            else:
                xp.add(source, bias, out=y[start:stop])

        if xp is np:
            parallel_over_batch(to_nchw, n, y.size)
        else:
            to_nchw(0, n)
        return y

    def backward(self, dy):
        cols, w_mats, x_shape = self.saved_for_backward(dy)
        xp = get_array_module(dy)
        n, c_out, out_h, out_w = dy.shape
        rows, groups = n * out_h * out_w, self.groups
        dy_rows = _scratch.get(xp, "conv.dy_rows", (rows, c_out), dy.dtype)
        dy_nhwc = dy_rows.reshape(n, out_h, out_w, c_out)
        source = dy.transpose(0, 2, 3, 1)
        if xp is np:
            parallel_over_batch(lambda a, b: np.copyto(dy_nhwc[a:b], source[a:b]), n, dy.size)
        else:
            dy_nhwc[...] = source
        if self.bias is not None:
            self.bias.grad += dy_rows.sum(axis=0)
        d_cols = _scratch.get(xp, "conv.d_cols", cols.shape, dy.dtype)
        if groups == 1:
            d_w = (cols.T @ dy_rows)[None]                          # (1, kh*kw*C_in, C_out)
            if self.needs_input_grad:
                xp.matmul(dy_rows, w_mats[0].T, out=d_cols)
        else:
            grouped_cols = cols.reshape(rows, groups, -1).transpose(1, 0, 2)
            grouped_dy = dy_rows.reshape(rows, groups, -1).transpose(1, 0, 2)
            d_w = xp.matmul(grouped_cols.transpose(0, 2, 1), grouped_dy)
            if self.needs_input_grad:
                d_cols.reshape(rows, groups, -1).transpose(1, 0, 2)[...] = \
                    xp.matmul(grouped_dy, w_mats.transpose(0, 2, 1))
        kh, kw = self.kernel_size
        c_g = self.in_channels // groups
        # (groups, kh*kw*C_g, C_out/groups) -> (C_out, C_g, kh, kw)
        self.weight.grad += d_w.reshape(groups, kh, kw, c_g, c_out // groups) \
                               .transpose(0, 4, 3, 1, 2).reshape(self.weight.grad.shape)
        if not self.needs_input_grad:  # the input is data (see Module.set_needs_input_grad)
            return None
        if not self._pointwise:
            return col2im(d_cols, x_shape, self.kernel_size, self.stride, self.padding,
                          self.dilation, groups)
        sh, sw = self.stride
        pixels = d_cols.reshape(n, out_h, out_w, -1).transpose(0, 3, 1, 2)
        if (sh, sw) == (1, 1):
            dx = xp.empty(x_shape, dtype=dy.dtype)
            dx[...] = pixels
        else:
            dx = xp.zeros(x_shape, dtype=dy.dtype)
            dx[:, :, ::sh, ::sw] = pixels
        return dx

    def macs(self, input_shape, output_shape):
        kh, kw = self.kernel_size
        return int(math.prod(output_shape)) * (self.in_channels // self.groups) * kh * kw

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + f", bias={self.bias is not None}"


__all__ = ["Conv2d", "col2im", "conv2d_naive", "im2col"]

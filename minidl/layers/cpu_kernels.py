"""NumPy bodies of the kernels in :mod:`minidl.layers.kernels` (the CPU twin of
:mod:`minidl.layers.gpu_kernels`).

Everything here is performance machinery that the layers' math does not need:

- **Workspaces.** Large fresh arrays cost page faults on first touch (as much as the
  copy itself), so hot paths write into buffers that survive between steps.
- **Copy threads.** NumPy copies run on one core but release the GIL, so large ones
  are split over the batch axis between up to four threads (as many as
  :func:`minidl.threads.get_num_threads` allows; ``MINIDL_NUM_THREADS=1`` turns this off).
- **Channels last inside im2col.** With NHWC data the windows are copied as runs of
  ``C`` contiguous numbers: one strided view plus one ``np.copyto`` (about three times
  faster than gathering NCHW windows).
- **col2im** loops over the ``kh * kw`` kernel offsets, each a strided slice of the
  padded gradient, never over samples or pixels.
"""
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import threads


class Workspace:
    """Reusable NumPy buffers, one per role, grown on demand and never shrunk.

    ``get`` returns a view of the first ``prod(shape)`` entries of the role's buffer,
    so whoever holds the view must be done with it before the same role is requested
    again.
    """

    def __init__(self):
        self._buffers = {}

    def get(self, like, role, shape):
        """A view of ``role``'s buffer with ``shape`` and ``like``'s dtype."""
        size = math.prod(shape)
        key = (role, np.dtype(like.dtype))
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype=like.dtype)
            self._buffers[key] = buffer
        return buffer[:size].reshape(shape)

    def clear(self):
        self._buffers.clear()


#: Buffers used only for the duration of one call (padded inputs, dy rearranged, dcols).
_scratch = Workspace()


def scratch(like, role, shape):
    """A short-lived buffer of ``like``'s dtype for ``role`` (reused by the next request)."""
    return _scratch.get(like, role, shape)


_MAX_COPY_THREADS = 4  # copies are memory-bound: more threads stop helping
_PARALLEL_MIN_ELEMENTS = 1 << 18
_pool = None


def parallel_over_batch(work, batch, elements):
    """Run ``work(start, stop)`` over ``range(batch)``, split between threads when large.

    ``work`` must write disjoint outputs for disjoint sample ranges.
    """
    global _pool
    chunks = min(threads.get_num_threads(), _MAX_COPY_THREADS, batch)
    if chunks <= 1 or elements < _PARALLEL_MIN_ELEMENTS:
        work(0, batch)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(_MAX_COPY_THREADS, thread_name_prefix="minidl")
    bounds = [batch * k // chunks for k in range(chunks + 1)]
    futures = [_pool.submit(work, bounds[k], bounds[k + 1]) for k in range(1, chunks)]
    work(bounds[0], bounds[1])
    for future in futures:
        future.result()


def copy_batched(dst, src):
    """``dst[...] = src`` for arrays with the batch on axis 0, split between threads."""
    parallel_over_batch(lambda a, b: np.copyto(dst[a:b], src[a:b]), dst.shape[0], dst.size)
    return dst


def rows_to_nchw(rows, shape, bias):
    """GEMM rows ``(N*H*W, C)`` (NHWC order) to a new NCHW array, bias added in the same pass."""
    n, c, h, w = shape
    nhwc = rows.reshape(n, h, w, c)
    y = np.empty(shape, dtype=rows.dtype)

    def to_nchw(start, stop):
        source = nhwc[start:stop].transpose(0, 3, 1, 2)
        if bias is None:
            y[start:stop] = source
        else:
            np.add(source, bias.reshape(c, 1, 1), out=y[start:stop])

    parallel_over_batch(to_nchw, n, y.size)
    return y


def _to_nhwc_padded(x, padding):
    """Copy NCHW ``x`` into a zero-bordered NHWC buffer ``(N, H + 2p_h, W + 2p_w, C)``.

    Returns x itself (as an NHWC view) when there is no padding and x is already
    channels-last in memory.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    nhwc = x.transpose(0, 2, 3, 1)
    if ph == 0 and pw == 0 and nhwc.flags.c_contiguous:
        return nhwc
    padded = scratch(x, "im2col.padded", (n, h + 2 * ph, w + 2 * pw, c))

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


def im2col(x, kernel_size, stride, padding, dilation, groups, out_hw, out):
    """Fill ``out`` (N*H_out*W_out, C*kh*kw) with the windows of NCHW ``x``; returns out."""
    padded = _to_nhwc_padded(x, padding)
    windows = _window_view(padded, out_hw, kernel_size, stride, dilation, groups)
    copy_batched(out.reshape(windows.shape), windows)
    return out


def col2im(cols, x_shape, kernel_size, stride, padding, dilation, groups, out_hw):
    """Sum the column entries back into a new NCHW array of shape ``x_shape``."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    out_h, out_w = out_hw
    windows = cols.reshape(n, out_h, out_w, groups, kh, kw, c // groups)
    padded = scratch(cols, "col2im.padded", (n, h + 2 * ph, w + 2 * pw, groups, c // groups))
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

"""Pooling: MaxPool2d, AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d; loop versions for teaching.

All take NCHW input ``(N, C, H, W)`` and pool each channel separately; the output is
``(N, C, H_out, W_out)`` with ``H_out = floor((H + 2p - k) / s) + 1`` (PyTorch's
default floor mode; ``stride`` defaults to ``kernel_size``).

The fast versions never loop over samples or pixels: they loop over the ``kh * kw``
offsets ``(i, j)`` of the window. For a fixed offset, the entries that offset picks
from every window form one strided slice of the (padded) input::

    slice_ij = x_pad[:, :, i : i + s_h (H_out - 1) + 1 : s_h, j : ... : s_w]  # (N, C, H_out, W_out)

so max-pooling is a running maximum over ``kh * kw`` slices, and average pooling a
running sum. Backward adds each output gradient into the same slices. When
``stride == kernel_size`` and there is no padding, the windows tile the input, the
slices are disjoint views of ``x`` itself, and backward writes instead of adding.
"""
import numpy as np

from ..backend import get_array_module
from ..module import Module
from .conv import pair


def _pool_geometry(owner, x_shape, kernel_size, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    height, width = x_shape[2], x_shape[3]
    out_h = (height + 2 * ph - kh) // sh + 1
    out_w = (width + 2 * pw - kw) // sw + 1
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"{owner}: input of spatial size {height}x{width} with padding "
                         f"({ph}, {pw}) is smaller than the kernel {kh}x{kw}")
    return out_h, out_w


def _offset_slice(array, i, j, out_hw, stride):
    """The strided slice of ``array`` (N, C, H, W) that window offset (i, j) reads."""
    (out_h, out_w), (sh, sw) = out_hw, stride
    return array[:, :, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]


def _padded(x, padding, fill):
    """x with a border of ``fill`` (a new array), or x itself without padding."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


class _Pool2d(Module):
    """Shared argument handling of MaxPool2d and AvgPool2d."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", name)
        self.padding = pair(padding, "padding", name, allow_zero=True)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size} (as in PyTorch), or some windows would "
                             "see only padding")

    @property
    def _tiles(self):
        """True when the windows tile the input: stride == kernel and no padding."""
        return self.stride == self.kernel_size and self.padding == (0, 0)

    def _geometry(self, x):
        self.check_input(x, "(N, C, H, W)")
        return _pool_geometry(type(self).__name__, x.shape, self.kernel_size, self.stride,
                              self.padding)

    def _scatter(self, x_shape, out_hw, gradient_at):
        """dx from per-offset gradients: ``dx_pad[slice_ij] += gradient_at(k)``, k = i*kw + j."""
        n, c, h, w = x_shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if self._tiles:  # disjoint slices: write each once, zero only the uncovered border
            first = gradient_at(0)
            xp = get_array_module(first)
            dx = xp.empty(x_shape, dtype=first.dtype)
            covered_h, covered_w = out_hw[0] * kh, out_hw[1] * kw
            if covered_h < h or covered_w < w:
                dx[:, :, covered_h:] = 0
                dx[:, :, :, covered_w:] = 0
            for k in range(kh * kw):
                _offset_slice(dx, k // kw, k % kw, out_hw, self.stride)[...] = \
                    first if k == 0 else gradient_at(k)
            return dx
        first = gradient_at(0)
        xp = get_array_module(first)
        dx_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=first.dtype)
        for k in range(kh * kw):
            _offset_slice(dx_pad, k // kw, k % kw, out_hw, self.stride)[...] += \
                first if k == 0 else gradient_at(k)
        return xp.ascontiguousarray(dx_pad[:, :, ph:ph + h, pw:pw + w])

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over each ``kh x kw`` window; padding counts as -inf (as in PyTorch).

    x (N, C, H, W) -> y (N, C, H_out, W_out). Cached for backward: the index of the
    winning offset ``k = i * kw + j`` in every window (uint8, the first maximum on ties).
    Gradient: each ``dy`` goes to its window's maximum, ``dx[argmax] += dy``.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        if self.kernel_size[0] * self.kernel_size[1] > 255:  # winners are stored as uint8
            raise ValueError(f"MaxPool2d: kernel {self.kernel_size} has more than 255 entries")

    def forward(self, x):
        out_hw = self._geometry(x)
        xp = get_array_module(x)
        (kh, kw) = self.kernel_size
        source = _padded(x, self.padding, -np.inf)
        slices = [_offset_slice(source, k // kw, k % kw, out_hw, self.stride)
                  for k in range(kh * kw)]
        y = xp.array(slices[0])
        for candidate in slices[1:]:
            xp.maximum(y, candidate, out=y)
        # The winner of each window is the first offset that attains the maximum. Scanning
        # the offsets backwards, winner <- k wherever slice k equals the maximum; written as
        # uint8 arithmetic (winner += eq * (k - winner), exact modulo 256) because masked
        # copies (np.copyto(..., where=)) are ten times slower than these elementwise ops.
        winner = xp.zeros(y.shape, dtype=np.uint8)
        equal = xp.empty(y.shape, dtype=bool)
        for k in range(kh * kw - 1, -1, -1):
            xp.equal(slices[k], y, out=equal)
            step = k - winner
            step *= equal
            winner += step
        self.save_for_backward(winner, tuple(x.shape), out_hw)
        return y

    def backward(self, dy):
        winner, x_shape, out_hw = self.saved_for_backward(dy)
        return self._scatter(x_shape, out_hw, lambda k: (winner == k) * dy)


class AvgPool2d(_Pool2d):
    """Mean over each ``kh x kw`` window, padding counted as zeros.

    Like PyTorch's default ``count_include_pad=True``: every window divides by
    ``kh * kw``. x (N, C, H, W) -> y (N, C, H_out, W_out); caches only shapes.
    Gradient: ``dx[window] += dy / (kh * kw)``.
    """

    def forward(self, x):
        out_hw = self._geometry(x)
        (kh, kw) = self.kernel_size
        source = _padded(x, self.padding, 0)
        y = get_array_module(x).array(_offset_slice(source, 0, 0, out_hw, self.stride))
        for k in range(1, kh * kw):
            y += _offset_slice(source, k // kw, k % kw, out_hw, self.stride)
        y *= 1.0 / (kh * kw)
        self.save_for_backward(tuple(x.shape), out_hw)
        return y

    def backward(self, dy):
        x_shape, out_hw = self.saved_for_backward(dy)
        share = dy * (1.0 / (self.kernel_size[0] * self.kernel_size[1]))
        return self._scatter(x_shape, out_hw, lambda k: share)


class GlobalAvgPool2d(Module):
    """Mean over all pixels of each channel: x (N, C, H, W) -> y (N, C).

    Caches the input shape. Gradient: ``dx[n, c, h, w] = dy[n, c] / (H * W)``.
    """

    def forward(self, x):
        self.check_input(x, "(N, C, H, W)")
        self.save_for_backward(tuple(x.shape))
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        x_shape = self.saved_for_backward(dy)
        xp = get_array_module(dy)
        dx = xp.empty(x_shape, dtype=dy.dtype)
        dx[...] = (dy * (1.0 / (x_shape[2] * x_shape[3])))[:, :, None, None]
        return dx


# --------------------------------------------------------------------------- naive reference
def _naive_pool(x, kernel_size, stride, padding, fill, reduce):
    xp = get_array_module(x)
    kernel_size = pair(kernel_size, "kernel_size", "pool2d_naive")
    stride = pair(stride if stride is not None else kernel_size, "stride", "pool2d_naive")
    padding = pair(padding, "padding", "pool2d_naive", allow_zero=True)
    out_h, out_w = _pool_geometry("pool2d_naive", x.shape, kernel_size, stride, padding)
    (kh, kw), (sh, sw) = kernel_size, stride
    x_pad = _padded(x, padding, fill)
    y = xp.empty(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    for ho in range(out_h):
        for wo in range(out_w):
            window = x_pad[:, :, ho * sh:ho * sh + kh, wo * sw:wo * sw + kw]
            y[:, :, ho, wo] = reduce(window)
    return y


def max_pool2d_naive(x, kernel_size, stride=None, padding=0):
    """Max-pooling as a loop over output pixels (padding counts as -inf). For teaching/tests."""
    return _naive_pool(x, kernel_size, stride, padding, -np.inf,
                       lambda window: window.max(axis=(2, 3)))


def avg_pool2d_naive(x, kernel_size, stride=None, padding=0):
    """Average pooling as a loop over output pixels (zero padding counted). For teaching/tests."""
    return _naive_pool(x, kernel_size, stride, padding, 0,
                       lambda window: window.sum(axis=(2, 3)) / (window.shape[2] * window.shape[3]))


class GlobalMaxPool2d(Module):
    """Max over all spatial positions: x ``(N, C, H, W)`` -> y ``(N, C)``.

    Caches the flat index of each maximum (the first one on ties, like MaxPool2d);
    backward sends ``dy[n, c]`` to that position and zero elsewhere.
    Equals ``MaxPool2d(kernel_size=(H, W))`` followed by Flatten, for any input size
    (the head of the fast CIFAR nets in :mod:`minidl.models.fast`).
    """

    def forward(self, x):
        self.check_input(x, "(N, C, H, W)")
        xp = get_array_module(x)
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        argmax = flat.argmax(axis=2)
        self.save_for_backward(argmax, x.shape)
        return xp.take_along_axis(flat, argmax[:, :, None], axis=2)[:, :, 0]

    def backward(self, dy):
        argmax, shape = self.saved_for_backward(dy)
        xp = get_array_module(dy)
        n, c, h, w = shape
        is_max = xp.arange(h * w)[None, None, :] == argmax[:, :, None]  # (N, C, H*W) one-hot
        return (is_max * dy[:, :, None]).reshape(shape)  # bool * float keeps the float dtype


__all__ = ["AvgPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d", "MaxPool2d", "avg_pool2d_naive",
           "max_pool2d_naive"]

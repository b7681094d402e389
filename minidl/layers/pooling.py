"""Pooling: MaxPool2d, AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d.

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
Loop references: :mod:`minidl.naive` (``max_pool2d_forward``, ``avg_pool2d_forward``
and their backwards).
"""

import numpy as np

from ..backend import get_array_module
from ..module import Module
from . import kernels
from .geometry import conv_geometry, offset_slice, pair


class _Pool2d(Module):
    """Shared argument handling of MaxPool2d and AvgPool2d."""

    input_shape = "(N, C, H, W)"

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

    def _window_slices(self, x, fill):
        """The output size and the kh*kw strided slices of padded x, one per window offset."""
        out_hw = conv_geometry(x.shape, self.kernel_size, self.stride, self.padding,
                               owner=type(self).__name__)
        source = kernels.pad(x, self.padding, fill)
        kh, kw = self.kernel_size
        return out_hw, [offset_slice(source, i, j, out_hw, self.stride)
                        for i in range(kh) for j in range(kw)]

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
        out_hw, slices = self._window_slices(x, fill=-np.inf)
        y, winner = kernels.max_and_first_argmax(slices)
        self.save_for_backward(winner, tuple(x.shape), out_hw)
        return y

    def backward(self, dy):
        winner, x_shape, out_hw = self.saved_for_backward(dy)
        offsets = range(self.kernel_size[0] * self.kernel_size[1])
        per_offset = ((winner == k) * dy for k in offsets)  # dy where offset k won, else 0
        return kernels.add_into_windows(per_offset, x_shape, out_hw, self.kernel_size,
                                        self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over each ``kh x kw`` window, padding counted as zeros.

    Like PyTorch's default ``count_include_pad=True``: every window divides by
    ``kh * kw``. x (N, C, H, W) -> y (N, C, H_out, W_out); caches only shapes.
    Gradient: ``dx[window] += dy / (kh * kw)``.
    """

    def forward(self, x):
        out_hw, slices = self._window_slices(x, fill=0.0)
        y = get_array_module(x).array(slices[0])
        for window_entry in slices[1:]:
            y += window_entry
        y *= 1.0 / len(slices)
        self.save_for_backward(tuple(x.shape), out_hw)
        return y

    def backward(self, dy):
        x_shape, out_hw = self.saved_for_backward(dy)
        window = self.kernel_size[0] * self.kernel_size[1]
        share = dy * (1.0 / window)
        return kernels.add_into_windows([share] * window, x_shape, out_hw, self.kernel_size,
                                        self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """Mean over all pixels of each channel: x (N, C, H, W) -> y (N, C).

    Caches the input shape. Gradient: ``dx[n, c, h, w] = dy[n, c] / (H * W)``.
    """

    input_shape = "(N, C, H, W)"

    def forward(self, x):
        self.save_for_backward(tuple(x.shape))
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        x_shape = self.saved_for_backward(dy)
        dx = get_array_module(dy).empty(x_shape, dtype=dy.dtype)
        dx[...] = (dy * (1.0 / (x_shape[2] * x_shape[3])))[:, :, None, None]
        return dx


class GlobalMaxPool2d(Module):
    """Max over all spatial positions: x ``(N, C, H, W)`` -> y ``(N, C)``.

    Caches the flat index of each maximum (the first one on ties, like MaxPool2d);
    backward sends ``dy[n, c]`` to that position and zero elsewhere.
    Equals ``MaxPool2d(kernel_size=(H, W))`` followed by Flatten, for any input size
    (the head of the fast CIFAR nets in :mod:`minidl.models.fast`).
    """

    input_shape = "(N, C, H, W)"

    def forward(self, x):
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


__all__ = ["AvgPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d", "MaxPool2d"]

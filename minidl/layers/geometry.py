"""Sliding-window geometry shared by convolution and pooling.

A window of ``k`` taps spaced ``d`` apart (dilation), moved in steps of ``s`` (stride)
over an input of length ``L`` padded by ``p`` on both sides, fits

    L_out = floor((L + 2p - d (k - 1) - 1) / s) + 1

times. Pooling is the case ``d = 1``. Window offset ``(i, j)`` of every window reads
one strided slice of the padded input (see :func:`offset_slice`), which is how the
fast layers loop over the ``kh * kw`` offsets instead of over pixels.
"""
from ..checks import positive_int


def pair(value, label, owner, allow_zero=False):
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


def conv_geometry(x_shape, kernel_size, stride, padding, dilation=(1, 1), owner="im2col"):
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


def offset_slice(array, i, j, out_hw, stride, dilation=(1, 1)):
    """The strided slice of ``array`` (N, C, H, W) that window offset (i, j) reads.

    Entry ``[n, c, ho, wo]`` of the slice is ``array[n, c, ho s_h + i d_h, wo s_w + j d_w]``.
    """
    (out_h, out_w), (sh, sw), (dh, dw) = out_hw, stride, dilation
    top, left = i * dh, j * dw
    return array[:, :, top:top + sh * (out_h - 1) + 1:sh, left:left + sw * (out_w - 1) + 1:sw]


__all__ = ["conv_geometry", "offset_slice", "output_size", "pair"]

"""2-D convolution: im2col + one GEMM per group (the loop reference is
:func:`minidl.naive.conv2d_forward` / :func:`minidl.naive.conv2d_backward`).

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

The GEMM output ``(N*H_out*W_out, C_out)`` is NHWC; it is transposed back to NCHW
while the bias is added, in one pass.

**col2im** is the adjoint (transpose) of im2col: it adds every column entry back into
the pixel it was copied from, ``<im2col(x), c> == <x, col2im(c)>``. On the CPU it loops
over the ``kh * kw`` kernel offsets, each a strided slice of the padded gradient, never
over samples or pixels. How they are made fast (channels-last copies, thread pools,
CUDA kernels on the GPU) is in :mod:`minidl.layers.kernels` and the two modules
behind it; this file holds the math.

Gradients (per group, ``dY`` the upstream gradient as an ``(N*H_out*W_out, C_out)`` matrix)::

    dW = cols^T @ dY        db = sum of dY over rows        dx = col2im(dY @ W^T)
"""
import math

from .. import init as initializers
from ..backend import get_array_module
from ..checks import boolean, positive_int
from ..module import Module, Param
from . import kernels
from .geometry import conv_geometry, pair


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
    n, c = x.shape[:2]
    out_hw = conv_geometry(x.shape, kernel_size, stride, padding, dilation)
    shape = (n * out_hw[0] * out_hw[1], c * kernel_size[0] * kernel_size[1])
    if out is None:
        out = get_array_module(x).empty(shape, dtype=x.dtype)
    elif tuple(out.shape) != shape or not out.flags.c_contiguous:
        raise ValueError(f"im2col: out must be a C-contiguous array of shape {shape}, "
                         f"got {tuple(out.shape)}")
    return kernels.im2col(x, kernel_size, stride, padding, dilation, groups, out_hw, out)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    """Adjoint of :func:`im2col`: add every column entry back into its source pixel.

    cols: ``(N * H_out * W_out, C * kh * kw)`` laid out as im2col makes it.
    Returns a new array of shape ``x_shape`` = (N, C, H, W) (padding discarded).
    """
    kernel_size, stride, padding, dilation = _normalise_args(kernel_size, stride, padding,
                                                             dilation, "col2im")
    groups = positive_int(groups, "groups", "col2im")
    n, c, h, w = (int(v) for v in x_shape)
    out_hw = conv_geometry(x_shape, kernel_size, stride, padding, dilation, "col2im")
    expected = (n * out_hw[0] * out_hw[1], c * kernel_size[0] * kernel_size[1])
    if tuple(cols.shape) != expected or c % groups:
        raise ValueError(f"col2im: expected cols of shape {expected} for x_shape "
                         f"{tuple(x_shape)} (groups={groups}), got {tuple(cols.shape)}")
    return kernels.col2im(cols, (n, c, h, w), kernel_size, stride, padding, dilation, groups,
                          out_hw)


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
    Loop reference: :func:`minidl.naive.conv2d_forward` / ``conv2d_backward``.
    """

    input_shape = "(N, C, H, W)"
    input_axis_size = "in_channels"

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
        bias = boolean(bias, "bias", name)
        self.bias = Param(initializers.zeros((self.out_channels,))) if bias else None
        self._workspace = kernels.Workspace()  # holds the columns from forward to backward

    def forward(self, x):
        out_hw = conv_geometry(x.shape, self.kernel_size, self.stride, self.padding,
                               self.dilation, "Conv2d")
        n = x.shape[0]
        cols = self._columns(x, out_hw)                # (N*H_out*W_out, kh*kw*C_in)
        w_mats = self._weight_matrices()               # (groups, kh*kw*C_g, C_out/groups)
        y_rows = kernels.grouped_matmul(cols, w_mats, out=kernels.scratch(
            x, "conv.y_rows", (cols.shape[0], self.out_channels)))
        self.save_for_backward(cols, w_mats, tuple(x.shape))
        bias = self.bias.data if self.bias is not None else None
        return kernels.rows_to_nchw(y_rows, (n, self.out_channels) + out_hw, bias)

    def backward(self, dy):
        cols, w_mats, x_shape = self.saved_for_backward(dy)
        dy_rows = kernels.nchw_to_rows(dy, "conv.dy_rows")          # (N*H_out*W_out, C_out)
        if self.bias is not None:
            self.bias.grad += dy_rows.sum(axis=0)
        d_w = kernels.grouped_transposed_matmul(cols, dy_rows, self.groups)   # cols^T dY
        self.weight.grad += self._weight_from_matrices(d_w)
        if not self.needs_input_grad:  # the input is data (see Module.set_needs_input_grad)
            return None
        d_cols = kernels.grouped_matmul(dy_rows, w_mats.transpose(0, 2, 1),   # dY W^T
                                        out=kernels.scratch(dy, "conv.d_cols", cols.shape))
        if self._pointwise:
            return kernels.pointwise_col2im(d_cols, x_shape, self.stride)
        return col2im(d_cols, x_shape, self.kernel_size, self.stride, self.padding,
                      self.dilation, self.groups)

    # ------------------------------------------------------------------ layout helpers
    @property
    def _pointwise(self):
        return self.kernel_size == (1, 1) and self.padding == (0, 0)

    def _columns(self, x, out_hw):
        """im2col into this layer's workspace (the pointwise case: strided NHWC pixels)."""
        n, c = x.shape[:2]
        shape = (n * out_hw[0] * out_hw[1], c * self.kernel_size[0] * self.kernel_size[1])
        cols = self._workspace.get(x, "cols", shape)
        if self._pointwise:
            return kernels.pointwise_columns(x, self.stride, out=cols)
        return im2col(x, self.kernel_size, self.stride, self.padding, self.dilation,
                      self.groups, out=cols)

    def _weight_matrices(self):
        """weight (C_out, C_g, kh, kw) -> (groups, kh*kw*C_g, C_out/groups), matching cols."""
        groups = self.groups
        c_out, c_g, kh, kw = self.weight.data.shape
        w = self.weight.data.reshape(groups, c_out // groups, c_g, kh, kw)
        return w.transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * c_g, c_out // groups)

    def _weight_from_matrices(self, w_mats):
        """Inverse of :meth:`_weight_matrices`: (groups, kh*kw*C_g, C_out/groups) -> weight's shape."""
        groups, (kh, kw) = self.groups, self.kernel_size
        c_out, c_g = self.out_channels, self.in_channels // groups
        return w_mats.reshape(groups, kh, kw, c_g, c_out // groups) \
                     .transpose(0, 4, 3, 1, 2).reshape(c_out, c_g, kh, kw)

    def drop_saved(self):
        super().drop_saved()
        self._workspace.clear()  # the cached columns (also on the old device/dtype after to())

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


__all__ = ["Conv2d", "col2im", "im2col"]

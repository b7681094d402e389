"""CUDA kernels for im2col and col2im, used when the data are CuPy arrays.

The layout is the one :mod:`minidl.layers.conv` documents: ``cols`` has one row per
output pixel ``(n, ho, wo)`` and columns ``(g, i, j, c)``; x and dx are NCHW.

- ``im2col``: one thread per entry of ``cols``; it computes which input pixel (or
  padding zero) it copies. Consecutive threads write consecutive addresses.
- ``col2im``: a *gather*, one thread per input pixel ``(n, c, h, w)``, summing the
  column entries that were copied from it: for kernel row ``i``, the output row is
  ``ho = (h + p_h - i d_h) / s_h`` when that division is exact and in range (same for
  columns). Each pixel is written by exactly one thread in a fixed order, so the
  result is deterministic and needs no atomics (a scatter, one thread per column
  entry adding into its pixel, would need ``atomicAdd`` and sum in a random order).

CuPy is never imported here: the kernels are built from the array module of the data
(``get_array_module``), on first use, and cached. The remaining functions mirror
:mod:`minidl.layers.cpu_kernels`: on the GPU, CuPy's memory pool already reuses memory
and copies already run in parallel, so they are plain array operations.
"""
from ..backend import get_array_module

_GEOMETRY = ("int64 C, int64 H, int64 W, int64 out_h, int64 out_w, int64 kh, int64 kw, "
             "int64 sh, int64 sw, int64 ph, int64 pw, int64 dh, int64 dw, int64 groups")

# One thread per column entry: i -> (n, ho, wo, g, ki, kj, cc).
_IM2COL = """
    const long long c_g = C / groups;
    long long r = i;
    const long long cc = r % c_g; r /= c_g;
    const long long kj = r % kw;  r /= kw;
    const long long ki = r % kh;  r /= kh;
    const long long g = r % groups; r /= groups;
    const long long wo = r % out_w; r /= out_w;
    const long long ho = r % out_h;
    const long long n = r / out_h;
    const long long h = ho * sh - ph + ki * dh;
    const long long w = wo * sw - pw + kj * dw;
    const long long c = g * c_g + cc;
    col = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : (T)0;
"""

# One thread per input pixel: i -> (n, c, h, w); gathers from every window that saw it.
_COL2IM = """
    const long long c_g = C / groups;
    long long r = i;
    const long long w = r % W; r /= W;
    const long long h = r % H; r /= H;
    const long long c = r % C;
    const long long n = r / C;
    const long long g = c / c_g;
    const long long cc = c % c_g;
    const long long row_length = groups * kh * kw * c_g;
    T total = 0;
    for (long long ki = 0; ki < kh; ++ki) {
        const long long hh = h + ph - ki * dh;
        if (hh < 0 || hh % sh != 0) continue;
        const long long ho = hh / sh;
        if (ho >= out_h) continue;
        for (long long kj = 0; kj < kw; ++kj) {
            const long long ww = w + pw - kj * dw;
            if (ww < 0 || ww % sw != 0) continue;
            const long long wo = ww / sw;
            if (wo >= out_w) continue;
            total += col[((n * out_h + ho) * out_w + wo) * row_length
                         + ((g * kh + ki) * kw + kj) * c_g + cc];
        }
    }
    dx = total;
"""

_SOURCES = {
    "minidl_im2col": ("raw T x, " + _GEOMETRY, "T col", _IM2COL),
    "minidl_col2im": ("raw T col, " + _GEOMETRY, "T dx", _COL2IM),
}
_cache = {}


def kernel(xp, name):
    """The ElementwiseKernel ``name`` built with ``xp.ElementwiseKernel`` (cached)."""
    key = (xp.__name__, name)
    if key not in _cache:
        in_params, out_params, body = _SOURCES[name]
        _cache[key] = xp.ElementwiseKernel(in_params, out_params, body, name)
    return _cache[key]


def _geometry(channels, height, width, out_hw, kernel_size, stride, padding, dilation, groups):
    return (channels, height, width, out_hw[0], out_hw[1], *kernel_size, *stride, *padding,
            *dilation, groups)


class Workspace:
    """The CuPy twin of :class:`minidl.layers.cpu_kernels.Workspace`: CuPy's memory pool
    already reuses memory between steps, so ``get`` just allocates."""

    def get(self, like, role, shape):
        return get_array_module(like).empty(shape, dtype=like.dtype)

    def clear(self):
        pass


def scratch(like, role, shape):
    """A short-lived buffer of ``like``'s dtype: a fresh array from CuPy's memory pool."""
    return get_array_module(like).empty(shape, dtype=like.dtype)


def copy_batched(dst, src):
    """``dst[...] = src``: one CuPy assignment."""
    dst[...] = src
    return dst


def rows_to_nchw(rows, shape, bias):
    """GEMM rows ``(N*H*W, C)`` (NHWC order) to a new NCHW array, bias added."""
    n, c, h, w = shape
    source = rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    if bias is None:
        return get_array_module(rows).ascontiguousarray(source)
    return source + bias.reshape(c, 1, 1)


def im2col(x, kernel_size, stride, padding, dilation, groups, out_hw, out):
    """Fill ``out`` (N*H_out*W_out, C*kh*kw) with the windows of NCHW ``x``; returns out."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    _, channels, height, width = x.shape
    kernel(xp, "minidl_im2col")(x, *_geometry(channels, height, width, out_hw, kernel_size,
                                              stride, padding, dilation, groups), out)
    return out


def col2im(cols, x_shape, kernel_size, stride, padding, dilation, groups, out_hw):
    """Sum the column entries back into a new NCHW array of shape ``x_shape``."""
    xp = get_array_module(cols)
    cols = xp.ascontiguousarray(cols)
    _, channels, height, width = x_shape
    dx = xp.empty(x_shape, dtype=cols.dtype)
    kernel(xp, "minidl_col2im")(cols, *_geometry(channels, height, width, out_hw, kernel_size,
                                                 stride, padding, dilation, groups), dx)
    return dx

"""Per-sample normalization: LayerNorm (over the last axes) and GroupNorm (over groups
of channels). Unlike BatchNorm, the statistics come from each sample alone, so train
and eval mode compute the same thing and there are no running statistics.

Both share one formula, for the values x_1..x_m of one normalized group::

    mean = (1/m) sum x_i        var = (1/m) sum (x_i - mean)^2      (biased, as in PyTorch)
    xhat = (x - mean) / sqrt(var + eps)          y = weight * xhat + bias

and one backward (with g = dy * weight, the gradient reaching xhat)::

    dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)
"""
import math
import numbers

from .. import checks
from .. import init as initializers
from ..backend import get_array_module
from ..module import Module, Param


def normalize(x, axes, eps):
    """``(xhat, inv_std)`` of ``x`` normalized over ``axes`` (statistics kept as dims)."""
    xp = get_array_module(x)
    centred = x - x.mean(axis=axes, keepdims=True)
    # Two-pass variance (of the centred values): no cancellation in float32.
    inv_std = 1.0 / xp.sqrt(xp.square(centred).mean(axis=axes, keepdims=True) + eps)
    centred *= inv_std
    return centred, inv_std


def normalize_backward(g, xhat, inv_std, axes):
    """dx from ``g = dL/dxhat`` (the formula of the module docstring)."""
    dx = xhat * (-(g * xhat).mean(axis=axes, keepdims=True))
    dx += g
    dx -= g.mean(axis=axes, keepdims=True)
    dx *= inv_std
    return dx


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` axes (as in PyTorch).

    ``LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)``.
    x and y: ``(*, *normalized_shape)``. Parameters ``weight`` (ones) and ``bias``
    (zeros), shaped ``normalized_shape``; ``bias=False``: no bias (nanoGPT's option);
    ``elementwise_affine=False``: neither. Caches xhat and 1/sqrt(var + eps).
    Gradients: ``dweight = sum dy * xhat``, ``dbias = sum dy`` over the leading axes;
    dx as in the module docstring.
    """

    input_shape = "(..., normalized)"

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral) and not checks.is_bool(normalized_shape):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise TypeError(f"LayerNorm: normalized_shape must be a positive integer or a "
                            f"non-empty tuple of them, got {checks.describe(normalized_shape)}")
        self.normalized_shape = tuple(checks.positive_int(size, "normalized_shape", "LayerNorm")
                                      for size in normalized_shape)
        self.eps = checks.real_number(eps, "eps", "LayerNorm", 0.0, low_open=True)
        self.elementwise_affine = checks.boolean(elementwise_affine, "elementwise_affine",
                                                 "LayerNorm")
        affine = self.elementwise_affine
        self.weight = Param(initializers.ones(self.normalized_shape)) if affine else None
        use_bias = checks.boolean(bias, "bias", "LayerNorm") and affine
        self.bias = Param(initializers.zeros(self.normalized_shape)) if use_bias else None

    def _axes(self):
        return tuple(range(-len(self.normalized_shape), 0))

    def forward(self, x):
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input of shape "
                             f"(..., {', '.join(map(str, self.normalized_shape))}) (the last "
                             f"{k} axes normalized), got shape {tuple(x.shape)}")
        xhat, inv_std = normalize(x, self._axes(), self.eps)
        self.save_for_backward(xhat, inv_std)
        y = xhat * self.weight.data if self.weight is not None else xhat.copy()
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy):
        xhat, inv_std = self.saved_for_backward(dy)
        leading = tuple(range(dy.ndim - len(self.normalized_shape)))
        if self.bias is not None:
            self.bias.grad += dy.sum(axis=leading)
        if self.weight is None:
            return normalize_backward(dy, xhat, inv_std, self._axes())
        self.weight.grad += (dy * xhat).sum(axis=leading)
        return normalize_backward(dy * self.weight.data, xhat, inv_std, self._axes())

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class GroupNorm(Module):
    """Group normalization (Wu & He, 2018), as ``torch.nn.GroupNorm``.

    ``GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)``. x and y:
    ``(N, C, *)``; the C channels are split into ``num_groups`` groups of consecutive
    channels, each normalized over its channels and all spatial positions of one
    sample. Parameters ``weight`` (ones) and ``bias`` (zeros), per channel ``(C,)``.
    Caches xhat and 1/sqrt(var + eps) (per sample and group).
    Gradients: ``dweight = sum dy * xhat``, ``dbias = sum dy`` over all axes but C;
    dx as in the module docstring, within each group.
    """

    input_shape = "(N, C, ...)"
    input_axis_size = "num_channels"
    input_axis = 1

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        self.num_groups = checks.positive_int(num_groups, "num_groups", "GroupNorm")
        self.num_channels = checks.positive_int(num_channels, "num_channels", "GroupNorm")
        if self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_channels ({self.num_channels}) must be divisible "
                             f"by num_groups ({self.num_groups})")
        self.eps = checks.real_number(eps, "eps", "GroupNorm", 0.0, low_open=True)
        self.affine = checks.boolean(affine, "affine", "GroupNorm")
        self.weight = Param(initializers.ones((self.num_channels,))) if self.affine else None
        self.bias = Param(initializers.zeros((self.num_channels,))) if self.affine else None

    def check_input(self, x):
        """Module's contract; a batch may be empty (N = 0), a group may not."""
        super().check_input(x)
        if 0 in x.shape[2:]:
            raise ValueError(f"GroupNorm: got input of shape {tuple(x.shape)} with an empty "
                             f"spatial axis; only the batch axis N of {self.input_shape} may be 0")

    def _grouped(self, x):
        """(N, C, *) -> (N, G, C/G * prod(*)); sizes spelled out, so N = 0 reshapes too."""
        return x.reshape(x.shape[0], self.num_groups, math.prod(x.shape[1:]) // self.num_groups)

    def forward(self, x):
        grouped = self._grouped(x)
        xhat, inv_std = normalize(grouped, (2,), self.eps)
        xhat = xhat.reshape(x.shape)
        self.save_for_backward(xhat, inv_std)
        if not self.affine:
            return xhat.copy()
        per_channel = (1, self.num_channels) + (1,) * (x.ndim - 2)
        return xhat * self.weight.data.reshape(per_channel) + self.bias.data.reshape(per_channel)

    def backward(self, dy):
        xhat, inv_std = self.saved_for_backward(dy)
        g = dy
        if self.affine:
            others = (0,) + tuple(range(2, dy.ndim))
            self.bias.grad += dy.sum(axis=others)
            self.weight.grad += (dy * xhat).sum(axis=others)
            g = dy * self.weight.data.reshape((1, self.num_channels) + (1,) * (dy.ndim - 2))
        dx = normalize_backward(self._grouped(g), self._grouped(xhat), inv_std, (2,))
        return dx.reshape(dy.shape)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


__all__ = ["GroupNorm", "LayerNorm"]

"""Fully connected layer."""
import math

from .. import init as initializers
from ..checks import boolean, positive_int
from ..module import Module, Param


class Linear(Module):
    """``y = x @ W + b``.

    Shapes: x ``(..., in_features)`` (any leading axes, as in PyTorch; typically
    ``(N, in_features)``), W ``(in_features, out_features)``, b ``(out_features,)``,
    y ``(..., out_features)``. Caches x for backward. With the leading axes flattened
    into rows (``X``: ``(rows, in_features)``), the gradients are
    ``dW = X.T @ dY``, ``db = sum over rows of dY``, ``dx = dy @ W.T`` (None when
    ``needs_input_grad`` is off, see :meth:`Module.set_needs_input_grad`).
    ``init`` names an initialiser from :mod:`minidl.init` or is a callable
    ``f(shape, dtype)``; default ``"torch_default"``.
    Loop reference: :func:`minidl.naive.linear_forward` / ``linear_backward``.
    """

    input_shape = "(..., in_features)"
    input_axis_size = "in_features"
    input_axis = -1

    def __init__(self, in_features, out_features, bias=True, init="torch_default"):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        bias = boolean(bias, "bias", "Linear")
        self.weight = Param(initializers.get(init)((self.in_features, self.out_features)))
        self.bias = Param(initializers.zeros((self.out_features,))) if bias else None

    def forward(self, x):
        self.save_for_backward(x)
        y = x @ self.weight.data
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy):
        x = self.saved_for_backward(dy)
        x_rows, dy_rows = x.reshape(-1, self.in_features), dy.reshape(-1, self.out_features)
        self.weight.grad += x_rows.T @ dy_rows
        if self.bias is not None:
            self.bias.grad += dy_rows.sum(axis=0)
        return dy @ self.weight.data.T if self.needs_input_grad else None

    def macs(self, input_shape, output_shape):
        # in_features * out_features for each position of the leading axes, e.g. each of
        # the T tokens of a (T, in_features) sample
        return math.prod(output_shape[:-1]) * self.in_features * self.out_features

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


__all__ = ["Linear"]

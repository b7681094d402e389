"""Fully connected layer."""
from .. import init as initializers
from ..module import Module, Param, positive_int


class Linear(Module):
    """``y = x @ W + b``.

    Shapes: x ``(N, in_features)``, W ``(in_features, out_features)``, b ``(out_features,)``,
    y ``(N, out_features)``. Caches x for backward.
    Gradients: ``dW = x.T @ dy``, ``db = sum_n dy``, ``dx = dy @ W.T`` (None when
    ``needs_input_grad`` is off, see :meth:`Module.set_needs_input_grad`).
    ``init`` names an initialiser from :mod:`minidl.init` or is a callable
    ``f(shape, dtype)``; default ``"torch_default"``.
    """

    def __init__(self, in_features, out_features, bias=True, init="torch_default"):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        self.weight = Param(initializers.get(init)((self.in_features, self.out_features)))
        self.bias = Param(initializers.zeros((self.out_features,))) if bias else None

    def forward(self, x):
        self.check_input(x, "(N, in_features)", channels=self.in_features, what="features")
        self.save_for_backward(x)
        y = x @ self.weight.data
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy):
        x = self.saved_for_backward(dy)
        self.weight.grad += x.T @ dy
        if self.bias is not None:
            self.bias.grad += dy.sum(axis=0)
        return dy @ self.weight.data.T if self.needs_input_grad else None

    def macs(self, input_shape, output_shape):
        return self.in_features * self.out_features

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


__all__ = ["Linear"]

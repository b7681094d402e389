"""Shape-only layers: Flatten and Identity."""
import math

from ..module import Module


class Flatten(Module):
    """``(N, d1, d2, ...) -> (N, d1*d2*...)``; backward reshapes dy back."""

    input_shape = "(N, d1, ...)"

    def forward(self, x):
        self.save_for_backward(x.shape)
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, dy):
        x_shape = self.saved_for_backward(dy)
        return dy.reshape(x_shape)


class Identity(Module):
    """``y = x``; ``dx = dy``."""

    input_shape = "(N, ...)"

    def forward(self, x):
        return x

    def backward(self, dy):
        self.saved_for_backward(dy)
        return dy

"""Shape-only layers: Flatten and Identity."""
from ..module import Module


class Flatten(Module):
    """``(N, d1, d2, ...) -> (N, d1*d2*...)``; backward reshapes dy back."""

    def forward(self, x):
        if not hasattr(x, "ndim") or x.ndim < 2:
            raise ValueError(f"Flatten: expected input of shape (N, ...) with at least 2 dims, "
                             f"got shape {tuple(getattr(x, 'shape', ()))}")
        self.save_for_backward(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.saved_for_backward(dy))


class Identity(Module):
    """``y = x``; ``dx = dy``."""

    def forward(self, x):
        self.save_for_backward(True)
        return x

    def backward(self, dy):
        self.saved_for_backward(dy)
        return dy

"""Inverted dropout."""
from ..backend import get_array_module, rng
from ..checks import real_number
from ..module import Module


class Dropout(Module):
    """Zero each entry with probability ``p`` in training; identity in eval mode.

    "Inverted" dropout (as in PyTorch): kept entries are scaled by ``1 / (1 - p)`` during
    training, so the expected output equals the input and eval needs no rescaling.
    x and y: any shape ``(N, ...)``. The keep mask is drawn from
    :func:`minidl.backend.rng` for x's array module (so ``minidl.seed`` makes it
    reproducible) and cached as booleans. Gradient: ``dx = dy * mask / (1 - p)``.
    Loop reference: :func:`minidl.naive.dropout_forward` / ``dropout_backward``.
    """

    input_shape = "(N, ...)"

    def __init__(self, p=0.5):
        super().__init__()
        self.p = real_number(p, "p (the drop probability)", "Dropout", 0, 1, high_open=True)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.save_for_backward(None)
            return x
        xp = get_array_module(x)
        # Drawn in x's dtype: no float64 temporary the size of x for float32 runs.
        keep = rng(xp).random(x.shape, dtype=x.dtype) >= self.p
        self.save_for_backward(keep)
        return x * keep * (1.0 / (1.0 - self.p))

    def backward(self, dy):
        keep = self.saved_for_backward(dy)
        if keep is None:
            return dy
        return dy * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self):
        return f"p={self.p}"


__all__ = ["Dropout"]

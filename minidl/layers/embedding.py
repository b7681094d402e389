"""Embedding: a lookup table from integer indices to learned vectors."""
from .. import checks
from .. import init as initializers
from ..backend import device_of, get_array_module
from ..module import Module, Param


class Embedding(Module):
    """``y = weight[indices]``, as ``torch.nn.Embedding``.

    ``Embedding(num_embeddings, embedding_dim, padding_idx=None)``. indices: an integer
    array of any shape ``(*)`` with values in ``[0, num_embeddings)``; y:
    ``(*, embedding_dim)``. Parameter ``weight`` ``(num_embeddings, embedding_dim)``
    (PyTorch's layout), initialised N(0, 1) as in PyTorch. ``padding_idx``: that row
    starts at zero and receives no gradient (negative values count from the end).
    Caches the indices. Gradient: each row of dy is added to the row of ``weight`` it
    was read from (``add.at``, so repeated indices accumulate); the indices have no
    gradient, so backward returns None.
    """

    input_shape = None  # integer indices: checked here, not by the float contract

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None):
        super().__init__()
        self.num_embeddings = checks.positive_int(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = checks.positive_int(embedding_dim, "embedding_dim", "Embedding")
        if padding_idx is not None:
            padding_idx = checks.integer(padding_idx, "padding_idx", "Embedding",
                                         -self.num_embeddings, self.num_embeddings - 1)
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = Param(initializers.normal((self.num_embeddings, self.embedding_dim),
                                                std=1.0))
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def _check(self, indices):
        if not checks.is_array(indices) or indices.dtype.kind not in "iu":
            got = (f"dtype {indices.dtype}" if checks.is_array(indices)
                   else type(indices).__name__)
            raise TypeError(f"Embedding: expected an integer array of indices, got {got}")
        if device_of(indices) != device_of(self.weight.data):
            raise ValueError(f"Embedding: indices are on {device_of(indices)} but the weight "
                             f"is on {device_of(self.weight.data)}")
        if indices.size and (int(indices.min()) < 0
                             or int(indices.max()) >= self.num_embeddings):
            raise ValueError(f"Embedding: indices must lie in [0, {self.num_embeddings - 1}], "
                             f"got values in [{int(indices.min())}, {int(indices.max())}]")

    def forward(self, indices):
        self._check(indices)
        self.save_for_backward(indices)
        return self.weight.data[indices]

    def backward(self, dy):
        indices = self.saved_for_backward(dy)
        xp = get_array_module(dy)
        flat_indices = indices.reshape(-1)
        flat_dy = dy.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            used = flat_indices != self.padding_idx
            flat_indices, flat_dy = flat_indices[used], flat_dy[used]
        xp.add.at(self.weight.grad, flat_indices, flat_dy)
        return None

    def extra_repr(self):
        padding = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"


__all__ = ["Embedding"]

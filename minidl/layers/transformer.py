"""The Transformer encoder block, as ``torch.nn.TransformerEncoderLayer``."""
from .. import checks
from ..module import Module
from .activations import GELU, ReLU
from .attention import MultiheadAttention
from .dropout import Dropout
from .layer_norm import LayerNorm
from .linear import Linear


class TransformerEncoderLayer(Module):
    """Self-attention then a position-wise feed-forward net, each with a residual and a
    LayerNorm (Vaswani et al., 2017).

    ``TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation="relu", batch_first=False, norm_first=False, layer_norm_eps=1e-5)``::

        ff(x) = dropout2(linear2(dropout(activation(linear1(x)))))
        sa(x) = dropout1(self_attn(x, x, x))
        norm_first=False (post-LN):  x = norm1(x + sa(x));   y = norm2(x + ff(x))
        norm_first=True  (pre-LN):   x = x + sa(norm1(x));   y = x + ff(norm2(x))

    src and y: ``(S, N, E)`` (``(N, S, E)`` with ``batch_first=True``), E = d_model.
    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: the masks
    of :class:`MultiheadAttention`. Submodules carry PyTorch's names (``self_attn``,
    ``linear1``, ``linear2``, ``norm1``, ``norm2``), so parameters map one to one.
    Each sublayer caches its own values. Gradient: the residual adds dy to the
    sublayer's backward, ``dx = dy + sublayer.backward(dy)`` (through the norms in order).
    """

    input_shape = "(..., E)"
    input_axis_size = "d_model"
    input_axis = -1

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 batch_first=False, norm_first=False, layer_norm_eps=1e-5):
        super().__init__()
        name = "TransformerEncoderLayer"
        self.d_model = checks.positive_int(d_model, "d_model", name)
        dim_feedforward = checks.positive_int(dim_feedforward, "dim_feedforward", name)
        self.norm_first = checks.boolean(norm_first, "norm_first", name)
        activation = checks.choice(activation, "activation", name, ("relu", "gelu"))
        # The sublayers check these again; checking here names this class and the
        # argument the user passed (nhead, not MultiheadAttention's num_heads).
        nhead = checks.positive_int(nhead, "nhead", name)
        if self.d_model % nhead:
            raise ValueError(f"{name}: d_model ({self.d_model}) must be divisible by nhead "
                             f"({nhead})")
        dropout = checks.real_number(dropout, "dropout", name, 0.0, 1.0, high_open=True)
        batch_first = checks.boolean(batch_first, "batch_first", name)
        layer_norm_eps = checks.real_number(layer_norm_eps, "layer_norm_eps", name, 0.0,
                                            low_open=True)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, batch_first=batch_first)
        self.linear1 = Linear(self.d_model, dim_feedforward)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, self.d_model)
        self.norm1 = LayerNorm(self.d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(self.d_model, eps=layer_norm_eps)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = ReLU() if activation == "relu" else GELU()

    def _sa(self, x, mask, padding_mask, is_causal):
        out, _ = self.self_attn(x, attn_mask=mask, key_padding_mask=padding_mask,
                                need_weights=False, is_causal=is_causal)
        return self.dropout1(out)

    def _sa_backward(self, dy):
        return self.self_attn.backward(self.dropout1.backward(dy))

    def _ff(self, x):
        """The feed-forward net on the tokens as rows: (S*N, E) -> (S*N, E)."""
        h = self.dropout(self.activation(self.linear1(x.reshape(-1, self.d_model))))
        return self.dropout2(self.linear2(h)).reshape(x.shape)

    def _ff_backward(self, dy):
        dh = self.linear2.backward(self.dropout2.backward(dy.reshape(-1, self.d_model)))
        dh = self.activation.backward(self.dropout.backward(dh))
        return self.linear1.backward(dh).reshape(dy.shape)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            y = x + self._ff(self.norm2(x))
        else:
            x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
            y = self.norm2(x + self._ff(x))
        return y

    def backward(self, dy):
        self.saved_for_backward(dy)
        if self.norm_first:
            dx = dy + self.norm2.backward(self._ff_backward(dy))
            return dx + self.norm1.backward(self._sa_backward(dx))
        d = self.norm2.backward(dy)
        d = self.norm1.backward(d + self._ff_backward(d))
        return d + self._sa_backward(d)

    def extra_repr(self):
        return f"d_model={self.d_model}, norm_first={self.norm_first}"


__all__ = ["TransformerEncoderLayer"]

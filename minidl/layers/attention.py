"""Multi-head attention (Vaswani et al., 2017), as ``torch.nn.MultiheadAttention``."""
import math

import numpy as np

from .. import checks
from .. import init as initializers
from ..backend import device_of, get_array_module, rng
from ..functional import scaled_dot_product_attention, scaled_dot_product_attention_backward
from ..module import Module, Param
from .linear import Linear


class MultiheadAttention(Module):
    """``MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False)``.

    For each head h (E = embed_dim, H = num_heads, D = E / H)::

        q_h = query W_q,h^T + b_q,h     k_h = key W_k,h^T + b_k,h     v_h = value W_v,h^T + b_v,h
        head_h = softmax(q_h k_h^T / sqrt(D) + mask) v_h                 (L x S weights)
        output = out_proj(concat_h head_h)

    query ``(L, N, E)``, key and value ``(S, N, E)`` (``(N, L, E)`` and ``(N, S, E)`` with
    ``batch_first=True``); output shaped like query. Parameters as in PyTorch:
    ``in_proj_weight`` ``(3E, E)`` (rows: W_q, W_k, W_v, PyTorch's layout, Xavier
    uniform), ``in_proj_bias`` ``(3E,)`` (zeros) and ``out_proj`` (a :class:`Linear`).

    ``forward(query, key=None, value=None, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
    ``(output, weights)`` like PyTorch: weights ``(N, L, S)`` averaged over heads
    (``(N, H, L, S)`` with ``average_attn_weights=False``; None with
    ``need_weights=False``). ``key=None``: self-attention on query; ``value=None``:
    value = key. Masks follow PyTorch: ``attn_mask`` ``(L, S)`` or ``(N*H, L, S)``,
    boolean True where attention is NOT allowed, or float (added to the scores);
    ``key_padding_mask`` ``(N, S)``, True at keys to ignore (or float). ``is_causal``:
    query i attends to keys j <= i (here it needs no attn_mask).
    ``self.attn_weights`` keeps the last ``(N, H, L, S)`` weights (for plots).

    Caches the inputs, the projected heads and the weights (and dropout mask).
    ``backward(d_output)`` returns dquery for self-attention (the three paths summed),
    else ``(dquery, dkey, dvalue)`` (dvalue None when value was key: dkey holds both).
    """

    input_shape = "(..., E)"
    input_axis_size = "embed_dim"
    input_axis = -1

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False):
        super().__init__()
        name = "MultiheadAttention"
        self.embed_dim = checks.positive_int(embed_dim, "embed_dim", name)
        self.num_heads = checks.positive_int(num_heads, "num_heads", name)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{name}: embed_dim ({self.embed_dim}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = checks.real_number(dropout, "dropout", name, 0.0, 1.0, high_open=True)
        self.batch_first = checks.boolean(batch_first, "batch_first", name)
        bias = checks.boolean(bias, "bias", name)
        self.in_proj_weight = Param(initializers.glorot_uniform((3 * self.embed_dim,
                                                                 self.embed_dim)))
        self.in_proj_bias = Param(initializers.zeros((3 * self.embed_dim,))) if bias else None
        self.out_proj = Linear(self.embed_dim, self.embed_dim, bias=bias)
        self.attn_weights = None
        self._saved_attention = None

    # ------------------------------------------------------------------ checks and masks
    def _check(self, query, key, value, flags):
        """query is checked by Module.__call__'s contract; key and value like it here;
        ``flags`` (need_weights...) must be bools."""
        for label, flag in flags.items():
            checks.boolean(flag, label, "MultiheadAttention")
        layout = "(N, {}, E)" if self.batch_first else "({}, N, E)"
        for what, x, length in (("query", query, "L"), ("key", key, "S"), ("value", value, "S")):
            expected = layout.format(length)
            checks.float_array(x, "MultiheadAttention", expected, what)
            checks.array_shape(x, "MultiheadAttention", expected, what)
            if x.shape[2] != self.embed_dim:
                raise ValueError(f"MultiheadAttention: expected {self.embed_dim} features "
                                 f"(embed_dim, axis 2 of {expected}) in {what}, got shape "
                                 f"{tuple(x.shape)}")
            if x.dtype != query.dtype or device_of(x) != device_of(query):
                raise TypeError(f"MultiheadAttention: {what} must have query's dtype and "
                                f"device ({query.dtype}, {device_of(query)}), got {x.dtype} "
                                f"on {device_of(x)}")
            if x is not query and device_of(x) == "cpu" and not bool(np.isfinite(x).all()):
                raise ValueError(f"MultiheadAttention: {what} contains NaN or Inf")  # as query
        batch = 0 if self.batch_first else 1
        if key.shape != value.shape or key.shape[batch] != query.shape[batch]:
            raise ValueError(f"MultiheadAttention: key and value must have the same shape, "
                             f"with query's batch size; got query {tuple(query.shape)}, key "
                             f"{tuple(key.shape)}, value {tuple(value.shape)}")

    def _mask(self, attn_mask, key_padding_mask, n, length, source, dtype, xp):
        """Both masks as one additive float mask broadcastable to (N, H, L, S), or None."""
        total = None
        if attn_mask is not None:
            total = self._additive(attn_mask, "attn_mask", [(length, source),
                                   (n * self.num_heads, length, source)], dtype, xp)
            if total.ndim == 3:
                total = total.reshape(n, self.num_heads, length, source)
        if key_padding_mask is not None:
            padding = self._additive(key_padding_mask, "key_padding_mask", [(n, source)],
                                     dtype, xp)[:, None, None, :]
            total = padding if total is None else total + padding
        return total

    @staticmethod
    def _additive(mask, what, shapes, dtype, xp):
        if not checks.is_array(mask) or mask.dtype.kind not in "bf":
            raise TypeError(f"MultiheadAttention: {what} must be a boolean or float array, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        if tuple(mask.shape) not in shapes:
            raise ValueError(f"MultiheadAttention: expected {what} of shape "
                             f"{' or '.join(map(str, shapes))}, got {tuple(mask.shape)}")
        if mask.dtype == bool:  # True = not allowed, PyTorch's convention for this layer
            return xp.where(mask, -xp.inf, 0.0).astype(dtype)
        if device_of(mask) == "cpu" and (np.isnan(mask).any() or np.isposinf(mask).any()):
            raise ValueError(f"MultiheadAttention: {what} holds NaN or +inf; mask with -inf "
                             "(or True in a boolean mask)")
        return mask.astype(dtype)

    @staticmethod
    def _attend(q, k, v, mask, p, is_causal):
        """The heads' attention; a query left without keys (NaN weights) is an error."""
        xp = get_array_module(q)
        with np.errstate(invalid="ignore"):  # the NaN of such a query: checked below
            heads, weights, keep = scaled_dot_product_attention(q, k, v, mask, p, is_causal,
                                                                rng=rng(xp))
        # CPU only, as Module's NaN check of x: on the GPU the answer would stall the device
        if device_of(weights) == "cpu" and np.isnan(weights).any():
            raise ValueError("MultiheadAttention: some queries have no key to attend to (every "
                             "key masked by attn_mask, key_padding_mask or is_causal); PyTorch "
                             "returns NaN there")
        return heads, weights, keep

    # ------------------------------------------------------------------ heads
    def _split(self, x2d, n, length):
        """(N*L, E) -> (N, H, L, D)"""
        return x2d.reshape(n, length, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def _merge(self, heads):
        """(N, H, L, D) -> (N*L, E)"""
        return heads.transpose(0, 2, 1, 3).reshape(-1, self.embed_dim)

    def _project(self, inputs):
        """q, k, v (N*L, E) from the 2-D inputs [x] (self-attention: one GEMM) or [q, k, v]."""
        weight, bias, e = self.in_proj_weight.data, self.in_proj_bias, self.embed_dim
        if len(inputs) == 1:
            qkv = inputs[0] @ weight.T
            if bias is not None:
                qkv += bias.data
            return qkv[:, :e], qkv[:, e:2 * e], qkv[:, 2 * e:]
        projected = [x @ weight[i * e:(i + 1) * e].T for i, x in enumerate(inputs)]
        if bias is not None:
            for i, p in enumerate(projected):
                p += bias.data[i * e:(i + 1) * e]
        return projected

    # ------------------------------------------------------------------ forward / backward
    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        self_attention, value_is_key = key is None, value is None
        key = query if key is None else key
        value = key if value is None else value
        self._check(query, key, value, dict(need_weights=need_weights, is_causal=is_causal,
                                            average_attn_weights=average_attn_weights))
        xp = get_array_module(query)
        if not self.batch_first:  # compute in (N, L, E)
            query, key, value = (xp.swapaxes(t, 0, 1) for t in (query, key, value))
        (n, length, e), source = query.shape, key.shape[1]
        sources = [query] if self_attention else [query, key, value]
        inputs = [xp.ascontiguousarray(x).reshape(-1, e) for x in sources]
        q, k, v = (self._split(t, n, size)
                   for t, size in zip(self._project(inputs), (length, source, source)))
        mask = self._mask(attn_mask, key_padding_mask, n, length, source, query.dtype, xp)
        p = self.dropout if self.training else 0.0
        heads, weights, keep = self._attend(q, k, v, mask, p, is_causal)
        output = self.out_proj(self._merge(heads)).reshape(n, length, e)
        self._saved_attention = (inputs, q, k, v, weights, keep, p, self_attention, value_is_key)
        self.attn_weights = weights
        output = output if self.batch_first else xp.swapaxes(output, 0, 1)
        if not need_weights:
            return output, None
        return output, weights.mean(axis=1) if average_attn_weights else weights

    def backward(self, d_output):
        inputs, q, k, v, weights, keep, p, self_attention, value_is_key = self._take_saved(d_output)
        xp = get_array_module(d_output)
        d = d_output if self.batch_first else xp.swapaxes(d_output, 0, 1)
        n = d.shape[0]
        d_rows = xp.ascontiguousarray(d).reshape(-1, self.embed_dim)  # tokens as rows: one GEMM
        d_heads = self._split(self.out_proj.backward(d_rows), n, d.shape[1])
        dq, dk, dv = (self._merge(g) for g in scaled_dot_product_attention_backward(
            d_heads, q, k, v, weights, keep, p))
        d_inputs = self._project_backward(inputs, [dq, dk, dv])
        lengths = (q.shape[2], k.shape[2], v.shape[2])  # of query, key, value
        d_inputs = [g.reshape(n, size, self.embed_dim) for g, size in zip(d_inputs, lengths)]
        if not self.batch_first:
            d_inputs = [xp.swapaxes(g, 0, 1) for g in d_inputs]
        if self_attention:
            return d_inputs[0]
        if value_is_key:  # value was key: both paths reach key
            return d_inputs[0], d_inputs[1] + d_inputs[2], None
        return tuple(d_inputs)

    def _project_backward(self, inputs, grads):
        """Accumulate dW, db of the input projection; return d(input) per input."""
        weight, bias, e = self.in_proj_weight, self.in_proj_bias, self.embed_dim
        if len(inputs) == 1:
            d_qkv = get_array_module(grads[0]).concatenate(grads, axis=1)  # (N*L, 3E)
            weight.grad += d_qkv.T @ inputs[0]
            if bias is not None:
                bias.grad += d_qkv.sum(axis=0)
            return [d_qkv @ weight.data]
        d_inputs = []
        for i, (x, g) in enumerate(zip(inputs, grads)):
            rows = slice(i * e, (i + 1) * e)  # W_q, W_k, W_v
            weight.grad[rows] += g.T @ x
            if bias is not None:
                bias.grad[rows] += g.sum(axis=0)
            d_inputs.append(g @ weight.data[rows])
        return d_inputs

    def _take_saved(self, d_output):
        """What forward saved, freed; the output is a tuple, so dy is checked here."""
        saved = getattr(self, "_saved_attention", None)
        if saved is None:
            raise RuntimeError("MultiheadAttention.backward: nothing saved from a forward pass; "
                               "call forward before backward, and backward once per forward")
        expected = saved[1].shape[0], saved[1].shape[2], self.embed_dim  # (N, L, E)
        if not self.batch_first:
            expected = expected[1], expected[0], expected[2]
        self._check_output_gradient(d_output, expected, saved[1].dtype, device_of(saved[1]))
        self._saved_attention = None
        return saved

    def drop_saved(self):
        super().drop_saved()
        self._saved_attention = None

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")


__all__ = ["MultiheadAttention"]

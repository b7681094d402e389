"""A GPT (decoder-only Transformer) with nanoGPT's architecture and initialisation.

Karpathy's nanoGPT (model.py), layer for layer, with hand-written backward passes::

    x = drop(wte(idx) + wpe(0..T-1))                       token + learned position embeddings
    for each block:  x = x + attn(ln_1(x))                  causal self-attention, pre-LN
                     x = x + mlp(ln_2(x))                   mlp = c_proj(GELU(c_fc(x)))
    logits = ln_f(x) @ wte.weight^T                         weight tying: no separate lm_head

Parameter names are nanoGPT's without its ``transformer.`` prefix (``wte.weight``,
``h.0.attn.c_attn.weight``, ``ln_f.weight``, ...); Linear weights are stored
``(in, out)`` (minidl's layout), i.e. transposed with respect to PyTorch's. Init as in
nanoGPT: every weight N(0, 0.02), biases 0, and the two ``c_proj`` weights of each
block N(0, 0.02 / sqrt(2 n_layer)) (the residual stream sums 2 n_layer of them).
"""
import math
import sys
from functools import partial

import numpy as np

from .. import checks
from .. import init as initializers
from .. import layers as L
from ..backend import default_dtype, get_array_module, rng, to_numpy
from ..functional import (scaled_dot_product_attention, scaled_dot_product_attention_backward,
                          softmax)
from ..module import Module


def _normal_init(std):
    return partial(initializers.normal, std=std)


class CausalSelfAttention(Module):
    """nanoGPT's CausalSelfAttention: multi-head attention where token t sees tokens <= t.

    x and y: ``(B, T, C)``. ``c_attn`` projects to q, k, v at once (one GEMM), the heads
    attend as batched matmuls ``(B, H, T, T)`` (no loop over heads or time), ``c_proj``
    mixes the heads. Keeps the last weights in ``attn_weights`` ``(B, H, T, T)``.
    Caches q, k, v, the weights and the dropout mask. Gradient: see
    :func:`minidl.functional.scaled_dot_product_attention_backward`.
    """

    input_shape = "(B, T, C)"
    input_axis_size = "n_embd"
    input_axis = -1

    def __init__(self, n_embd, n_head, dropout, bias, proj_init):
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.dropout = dropout
        self.c_attn = L.Linear(n_embd, 3 * n_embd, bias=bias, init=_normal_init(0.02))
        self.c_proj = L.Linear(n_embd, n_embd, bias=bias, init=proj_init)
        self.resid_dropout = L.Dropout(dropout)
        self.attn_weights = None

    def forward(self, x):
        b, t, c = x.shape
        qkv = self.c_attn(x.reshape(-1, c)).reshape(b, t, 3, self.n_head, c // self.n_head)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (B, H, T, D)
        p = self.dropout if self.training else 0.0
        y, weights, keep = scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True,
                                                        rng=rng(get_array_module(x)))
        self.save_for_backward(q, k, v, weights, keep, p)
        self.attn_weights = weights
        y = self.resid_dropout(self.c_proj(y.transpose(0, 2, 1, 3).reshape(-1, c)))
        return y.reshape(b, t, c)

    def backward(self, dy):
        q, k, v, weights, keep, p = self.saved_for_backward(dy)
        xp = get_array_module(dy)
        b, t, c = dy.shape
        d_heads = self.c_proj.backward(self.resid_dropout.backward(dy.reshape(-1, c)))
        d_heads = d_heads.reshape(b, t, self.n_head, c // self.n_head).transpose(0, 2, 1, 3)
        dq, dk, dv = scaled_dot_product_attention_backward(d_heads, q, k, v, weights, keep, p)
        d_qkv = xp.stack([dq, dk, dv], axis=2).transpose(0, 3, 2, 1, 4).reshape(b * t, 3 * c)
        return self.c_attn.backward(d_qkv).reshape(b, t, c)


class MLP(Module):
    """nanoGPT's MLP on ``(B, T, C)``: ``dropout(c_proj(GELU(c_fc(x))))``, 4C hidden units.

    The Linears see the tokens as rows ``(B*T, C)``: one GEMM each."""

    input_shape = "(..., C)"
    input_axis_size = "n_embd"
    input_axis = -1

    def __init__(self, n_embd, dropout, bias, proj_init, gelu_approximate="none"):
        super().__init__()
        self.n_embd = n_embd
        self.c_fc = L.Linear(n_embd, 4 * n_embd, bias=bias, init=_normal_init(0.02))
        self.gelu = L.GELU(approximate=gelu_approximate)
        self.c_proj = L.Linear(4 * n_embd, n_embd, bias=bias, init=proj_init)
        self.dropout = L.Dropout(dropout)

    def forward(self, x):
        h = self.gelu(self.c_fc(x.reshape(-1, x.shape[-1])))
        return self.dropout(self.c_proj(h)).reshape(x.shape)

    def backward(self, dy):
        dh = self.c_proj.backward(self.dropout.backward(dy.reshape(-1, dy.shape[-1])))
        return self.c_fc.backward(self.gelu.backward(dh)).reshape(dy.shape)


class Block(Module):
    """A pre-LN Transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``.

    Gradient: each residual passes dy through unchanged and adds the branch's backward.
    """

    input_shape = "(B, T, C)"
    input_axis_size = "n_embd"
    input_axis = -1

    def __init__(self, n_embd, n_head, dropout, bias, proj_init, gelu_approximate="none"):
        super().__init__()
        self.n_embd = n_embd
        self.ln_1 = L.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias, proj_init)
        self.ln_2 = L.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias, proj_init, gelu_approximate)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x

    def backward(self, dy):
        self.saved_for_backward(dy)
        dx = dy + self.ln_2.backward(self.mlp.backward(dy))
        return dx + self.ln_1.backward(self.attn.backward(dx))


class GPT(Module):
    """nanoGPT's GPT (see the module docstring). idx: int ``(B, T)`` with T <= block_size
    and values in [0, vocab_size); logits: ``(B, T, vocab_size)``.

    backward(dlogits) fills every gradient (the tied ``wte.weight`` gets both its
    embedding and its output-layer part) and returns None: token indices have no gradient.
    """

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0,
                 bias=True, gelu_approximate="none"):
        super().__init__()
        name = "GPT"
        self.vocab_size = checks.positive_int(vocab_size, "vocab_size", name)
        self.block_size = checks.positive_int(block_size, "block_size", name)
        self.n_layer = checks.positive_int(n_layer, "n_layer", name)
        n_head = checks.positive_int(n_head, "n_head", name)
        self.n_embd = checks.positive_int(n_embd, "n_embd", name)
        if self.n_embd % n_head:
            raise ValueError(f"{name}: n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({n_head})")
        dropout = checks.real_number(dropout, "dropout", name, 0.0, 1.0, high_open=True)
        bias = checks.boolean(bias, "bias", name)
        self.wte = L.Embedding(self.vocab_size, self.n_embd)
        self.wpe = L.Embedding(self.block_size, self.n_embd)
        for embedding in (self.wte, self.wpe):
            embedding.weight.data[...] = initializers.normal(embedding.weight.shape, std=0.02)
        self.drop = L.Dropout(dropout)
        per_block = 12 * self.n_embd ** 2 + 13 * self.n_embd  # checked before the loop below
        if self.n_layer * per_block * np.dtype(default_dtype()).itemsize > sys.maxsize:
            raise ValueError(f"{name}: the sizes are too large to allocate (n_layer="
                             f"{checks.describe(self.n_layer)}, "
                             f"{per_block} parameters per block)")
        proj_init = _normal_init(0.02 / math.sqrt(2 * self.n_layer))
        gelu_approximate = checks.choice(gelu_approximate, "gelu_approximate", name,
                                         ("none", "tanh"))
        self.h = L.Sequential(*[Block(self.n_embd, n_head, dropout, bias, proj_init,
                                      gelu_approximate)
                                for _ in range(self.n_layer)])
        self.ln_f = L.LayerNorm(self.n_embd, bias=bias)

    def _check(self, idx):
        if not checks.is_array(idx) or idx.dtype.kind not in "iu" or idx.ndim != 2:
            raise TypeError(f"GPT: expected token indices as an integer array of shape (B, T), "
                            f"got {getattr(idx, 'dtype', type(idx).__name__)} "
                            f"{tuple(getattr(idx, 'shape', ()))}")
        if idx.shape[1] > self.block_size:
            raise ValueError(f"GPT: sequence length {idx.shape[1]} exceeds block_size "
                             f"{self.block_size}; crop the context to its last {self.block_size} "
                             "tokens")

    def forward(self, idx):
        self._check(idx)
        xp = get_array_module(self.wte.weight.data)
        x = self.drop(self.wte(idx) + self.wpe(xp.arange(idx.shape[1])))
        x = self.ln_f(self.h(x))
        self.save_for_backward(x)
        return x @ self.wte.weight.data.T

    def backward(self, dlogits):
        x = self.saved_for_backward(dlogits)
        c = self.n_embd
        self.wte.weight.grad += dlogits.reshape(-1, self.vocab_size).T @ x.reshape(-1, c)
        dx = self.drop.backward(self.h.backward(self.ln_f.backward(dlogits @ self.wte.weight.data)))
        self.wte.backward(dx)
        self.wpe.backward(dx.sum(axis=0))
        return None

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=None):
        """Append ``max_new_tokens`` sampled tokens to ``idx`` ``(B, T)`` (nanoGPT's
        ``generate``: the context is cropped to block_size, the last logits divided by
        ``temperature``, optionally kept to the ``top_k`` largest, then sampled).
        Draws from ``numpy.random.default_rng(seed)``, so a seed repeats a sample.
        Returns int64 ``(B, T + max_new_tokens)``."""
        max_new_tokens, temperature, top_k, seed = _generate_arguments(
            idx, max_new_tokens, temperature, top_k, seed)
        xp = get_array_module(self.wte.weight.data)
        idx = idx.astype(xp.int64)  # the new ids may not fit a smaller integer type
        draw = np.random.default_rng(seed)
        training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                logits = self(idx[:, -self.block_size:])[:, -1, :].astype(np.float64)
                logits /= temperature  # in float64: a small temperature overflows float32
                self.drop_saved()
                if top_k is not None:
                    kth = xp.sort(logits, axis=-1)[:, -min(top_k, self.vocab_size), None]
                    logits = xp.where(logits < kth, -xp.inf, logits)
                probs = to_numpy(softmax(logits, axis=-1))
                nxt = [draw.choice(self.vocab_size, p=row / row.sum()) for row in probs]
                idx = xp.concatenate([idx, xp.asarray(nxt, dtype=idx.dtype)[:, None]], axis=1)
        finally:
            self.train(training)
        return idx

    def extra_repr(self):
        return (f"vocab_size={self.vocab_size}, block_size={self.block_size}, "
                f"n_layer={self.n_layer}, n_embd={self.n_embd}")


def _generate_arguments(idx, max_new_tokens, temperature, top_k, seed):
    """GPT.generate's arguments checked: (max_new_tokens, temperature, top_k, seed)."""
    owner = "GPT.generate"
    if not checks.is_array(idx) or idx.dtype.kind not in "iu" or idx.ndim != 2:
        raise TypeError(f"{owner}: expected token indices as an integer array of shape (B, T), "
                        f"got {getattr(idx, 'dtype', type(idx).__name__)} "
                        f"{tuple(getattr(idx, 'shape', ()))}")
    if idx.shape[1] == 0:
        raise ValueError(f"{owner}: expected at least one token per row to continue, got shape "
                         f"{tuple(idx.shape)}")
    return (checks.positive_int(max_new_tokens, "max_new_tokens", owner, allow_zero=True),
            checks.real_number(temperature, "temperature", owner, 0.0, low_open=True),
            None if top_k is None else checks.positive_int(top_k, "top_k", owner),
            None if seed is None else checks.integer(seed, "seed", owner, 0))


def gpt(vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0, bias=True,
        gelu_approximate="none"):
    """nanoGPT's GPT: ``gpt(65, 64, 4, 4, 128)`` is its Shakespeare-char CPU model
    (809,856 parameters, the tied embedding counted once).

    ``gelu_approximate``: "none" (nanoGPT's exact GELU) or "tanh" (GPT-2's original
    approximation; cheaper in NumPy, which has no erf, see :class:`minidl.layers.GELU`).
    """
    return GPT(vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias, gelu_approximate)


__all__ = ["GPT", "Block", "CausalSelfAttention", "MLP", "gpt"]

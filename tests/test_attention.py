"""Attention: scaled_dot_product_attention, MultiheadAttention, TransformerEncoderLayer.

Float64 gradient checks on drawn configurations (masks, causal, batch_first, dropout in
train mode, cross-attention) for the input and every parameter; equality with PyTorch
on outputs, weights and every gradient; errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minidl import backend
from minidl import functional as F
from minidl import layers as L
from minidl.gradcheck import assert_gradients
from minidl.module import Module, Param

stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow], max_examples=12)
seeds = st.integers(0, 2**16)
heads_and_dims = st.sampled_from([(1, 3), (2, 4), (2, 6), (3, 6)])


def on(xp, module):
    return module.to("gpu") if xp is not np else module


def randomize(module, seed):
    """Non-trivial parameters (zero biases would hide bias-gradient mistakes)."""
    draw = np.random.default_rng([seed, 7])
    for param in module.parameters():
        param.data[...] = 0.5 * draw.standard_normal(param.shape)
    return module


def allowed_pattern(length, source, seed):
    """A boolean (L, S) pattern of allowed keys with at least one per query (no NaN rows)."""
    allowed = np.random.default_rng([seed, 3]).random((length, source)) < 0.6
    allowed[np.arange(length), np.arange(length) % source] = True
    return allowed


class SDPA(Module):
    """scaled_dot_product_attention as a one-input layer: the query is the input, key and
    value are parameters, so check_layer checks all three gradients."""

    def __init__(self, key, value, **options):
        super().__init__()
        self.key, self.value, self.options = Param(key), Param(value), options

    def forward(self, query):
        p = self.options.get("dropout_p", 0.0)
        out, weights, keep = F.scaled_dot_product_attention(
            query, self.key.data, self.value.data, rng=backend.rng(backend.get_array_module(query)),
            **self.options)
        self.save_for_backward(query, weights, keep, p)
        return out

    def backward(self, dy):
        query, weights, keep, p = self.saved_for_backward(dy)
        dq, dk, dv = F.scaled_dot_product_attention_backward(
            dy, query, self.key.data, self.value.data, weights, keep, p, self.options.get("scale"))
        self.key.grad += dk
        self.value.grad += dv
        return dq


class Attend(Module):
    """MultiheadAttention with fixed masks as a one-input layer; for cross-attention the
    key and value are parameters of this wrapper, so their gradients are checked too."""

    def __init__(self, mha, key=None, value=None, **options):
        super().__init__()
        self.mha, self.options = mha, options
        self.key = Param(key) if key is not None else None
        self.value = Param(value) if value is not None else None

    def forward(self, x):
        key = self.key.data if self.key is not None else None
        value = self.value.data if self.value is not None else None
        return self.mha(x, key, value, **self.options)[0]

    def backward(self, dy):
        grads = self.mha.backward(dy)
        if not isinstance(grads, tuple):
            return grads
        self.key.grad += grads[1]
        if self.value is not None:
            self.value.grad += grads[2]
        return grads[0]


# ------------------------------------------------------------------ functional
@stateless_xp
@given(batch=st.integers(1, 2), length=st.integers(1, 4), source=st.integers(1, 4),
       dim=st.integers(1, 3), mask=st.sampled_from(["none", "bool", "float", "causal"]),
       dropout=st.sampled_from([0.0, 0.4]), seed=seeds)
def test_sdpa_gradients(xp, batch, length, source, dim, mask, dropout, seed):
    draw = np.random.default_rng(seed)
    source = length if mask == "causal" else source
    q, k, v = (draw.standard_normal((batch, 2, n, dim)) for n in (length, source, source))
    options = {"dropout_p": dropout, "is_causal": mask == "causal"}
    if mask == "bool":
        options["attn_mask"] = xp.asarray(allowed_pattern(length, source, seed))
    elif mask == "float":
        options["attn_mask"] = xp.asarray(draw.standard_normal((length, source)))
    layer = on(xp, SDPA(k.copy(), v.copy(), **options))
    assert_gradients(layer, xp.asarray(q))


def test_sdpa_matches_torch_and_masks_mean_what_they_say():
    torch = pytest.importorskip("torch")
    draw = np.random.default_rng(0)
    q, k, v = (draw.standard_normal((2, 3, n, 4)) for n in (5, 6, 6))
    allowed = allowed_pattern(5, 6, 1)
    for options, torch_options in [({}, {}), ({"is_causal": True}, {"is_causal": True}),
                                   ({"attn_mask": allowed}, {"attn_mask": torch.tensor(allowed)}),
                                   ({"scale": 0.3}, {"scale": 0.3})]:
        out, weights, keep = F.scaled_dot_product_attention(q, k, v, **options)
        expected = torch.nn.functional.scaled_dot_product_attention(
            *(torch.tensor(a) for a in (q, k, v)), **torch_options)
        np.testing.assert_allclose(out, expected.numpy(), rtol=1e-12, atol=1e-12)
        assert keep is None
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-12)
    out, weights, _ = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert np.all(weights[..., np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] == 0)
    _, weights, _ = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert np.all(weights[..., ~allowed] == 0)


# ------------------------------------------------------------------ MultiheadAttention
@stateless_xp
@given(hd=heads_and_dims, length=st.integers(1, 4), batch=st.integers(1, 2),
       batch_first=st.booleans(), bias=st.booleans(),
       mask=st.sampled_from(["none", "bool", "float", "causal", "padding"]),
       training=st.booleans(), seed=seeds)
def test_mha_self_attention_gradients(xp, hd, length, batch, batch_first, bias, mask, training,
                                      seed):
    heads, dim = hd
    mha = randomize(L.MultiheadAttention(dim, heads, dropout=0.3, bias=bias,
                                         batch_first=batch_first), seed).train(training)
    options = {}
    if mask == "bool":
        options["attn_mask"] = xp.asarray(~allowed_pattern(length, length, seed))
    elif mask == "float":
        options["attn_mask"] = xp.asarray(np.random.default_rng(seed).standard_normal(
            (batch * heads, length, length)))
    elif mask == "causal":
        options["is_causal"] = True
    elif mask == "padding":
        padding = np.zeros((batch, length), dtype=bool)
        padding[0, 1:] = True  # the first key is always kept
        options["key_padding_mask"] = xp.asarray(padding)
    x = np.random.default_rng(seed).standard_normal(
        (batch, length, dim) if batch_first else (length, batch, dim))
    assert_gradients(on(xp, Attend(mha, **options)), xp.asarray(x))


@stateless_xp
@given(hd=heads_and_dims, length=st.integers(1, 3), source=st.integers(1, 4),
       batch=st.integers(1, 2), batch_first=st.booleans(), value_is_key=st.booleans(),
       seed=seeds)
def test_mha_cross_attention_gradients(xp, hd, length, source, batch, batch_first, value_is_key,
                                       seed):
    heads, dim = hd
    mha = randomize(L.MultiheadAttention(dim, heads, batch_first=batch_first), seed)
    draw = np.random.default_rng(seed)
    shape = (lambda n: (batch, n, dim)) if batch_first else (lambda n: (n, batch, dim))
    key = draw.standard_normal(shape(source))
    value = None if value_is_key else draw.standard_normal(shape(source))
    padding = np.zeros((batch, source), dtype=bool)
    padding[:, 1:] = draw.random((batch, source - 1)) < 0.5
    layer = Attend(mha, key, value, key_padding_mask=xp.asarray(padding))
    assert_gradients(on(xp, layer), xp.asarray(draw.standard_normal(shape(length))))


def to_torch_mha(torch, mha):
    t = torch.nn.MultiheadAttention(mha.embed_dim, mha.num_heads, bias=mha.in_proj_bias is not None,
                                    batch_first=mha.batch_first, dtype=torch.float64)
    with torch.no_grad():
        t.in_proj_weight.copy_(torch.tensor(mha.in_proj_weight.data))
        t.out_proj.weight.copy_(torch.tensor(mha.out_proj.weight.data.T))  # minidl: (in, out)
        if mha.in_proj_bias is not None:
            t.in_proj_bias.copy_(torch.tensor(mha.in_proj_bias.data))
            t.out_proj.bias.copy_(torch.tensor(mha.out_proj.bias.data))
    return t


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["self", "cross", "cross_value_is_key"])
@pytest.mark.parametrize("mask", ["none", "bool", "float", "padding"])
def test_mha_matches_torch(batch_first, mode, mask):
    torch = pytest.importorskip("torch")
    e, h, length, source, n = 6, 3, 4, 5, 2
    source = length if mode == "self" else source
    mha = randomize(L.MultiheadAttention(e, h, batch_first=batch_first).to(np.float64), 1)
    t = to_torch_mha(torch, mha)
    draw = np.random.default_rng(2)
    shape = (lambda s: (n, s, e)) if batch_first else (lambda s: (s, n, e))
    q, k, v = draw.standard_normal(shape(length)), draw.standard_normal(shape(source)), \
        draw.standard_normal(shape(source))
    options, torch_options = {}, {}
    if mask == "bool":
        blocked = ~allowed_pattern(length, source, 3)
        options["attn_mask"], torch_options["attn_mask"] = blocked, torch.tensor(blocked)
    elif mask == "float":
        additive = draw.standard_normal((n * h, length, source))
        options["attn_mask"], torch_options["attn_mask"] = additive, torch.tensor(additive)
    elif mask == "padding":
        padding = np.zeros((n, source), dtype=bool)
        padding[1, 2:] = True
        options["key_padding_mask"] = padding
        torch_options["key_padding_mask"] = torch.tensor(padding)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    if mode == "self":
        out, weights = mha(q, **options)
        t_out, t_weights = t(tq, tq, tq, **torch_options)
    elif mode == "cross":
        out, weights = mha(q, k, v, **options)
        t_out, t_weights = t(tq, tk, tv, **torch_options)
    else:
        out, weights = mha(q, k, **options)
        t_out, t_weights = t(tq, tk, tk, **torch_options)
    dy = draw.standard_normal(out.shape)
    (t_out * torch.tensor(dy)).sum().backward()
    grads = mha.backward(dy)
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, t_out.detach().numpy(), **close)
    np.testing.assert_allclose(weights, t_weights.detach().numpy(), **close)
    assert mha.attn_weights.shape == (n, h, length, source)
    if mode == "self":
        np.testing.assert_allclose(grads, tq.grad.numpy(), **close)
    else:
        np.testing.assert_allclose(grads[0], tq.grad.numpy(), **close)
        np.testing.assert_allclose(grads[1], tk.grad.numpy(), **close)
        if mode == "cross":
            np.testing.assert_allclose(grads[2], tv.grad.numpy(), **close)
        else:
            assert grads[2] is None
    np.testing.assert_allclose(mha.in_proj_weight.grad, t.in_proj_weight.grad.numpy(), **close)
    np.testing.assert_allclose(mha.in_proj_bias.grad, t.in_proj_bias.grad.numpy(), **close)
    np.testing.assert_allclose(mha.out_proj.weight.grad, t.out_proj.weight.grad.numpy().T, **close)
    np.testing.assert_allclose(mha.out_proj.bias.grad, t.out_proj.bias.grad.numpy(), **close)


def test_mha_weights_per_head_and_need_weights():
    mha = L.MultiheadAttention(4, 2, batch_first=True).to(np.float64)
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    out, weights = mha(x, average_attn_weights=False)
    assert out.shape == (3, 5, 4) and weights.shape == (3, 2, 5, 5)
    np.testing.assert_allclose(weights.sum(-1), 1.0)
    mha.drop_saved()
    out2, none = mha(x, need_weights=False)
    assert none is None
    np.testing.assert_array_equal(out, out2)


def test_mha_errors():
    with pytest.raises(ValueError, match="divisible"):
        L.MultiheadAttention(6, 4)
    with pytest.raises(TypeError, match="num_heads"):
        L.MultiheadAttention(6, 2.0)
    with pytest.raises(ValueError, match="dropout"):
        L.MultiheadAttention(6, 2, dropout=1.0)
    mha = L.MultiheadAttention(4, 2)
    x = np.zeros((3, 2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="3-D"):
        mha(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="features"):
        mha(np.zeros((3, 2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        mha(x.astype(np.int64))
    with pytest.raises(ValueError, match="attn_mask of shape"):
        mha(x, attn_mask=np.zeros((2, 2), dtype=bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a boolean or float"):
        mha(x, key_padding_mask=np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="same shape"):
        mha(x, np.zeros((3, 1, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="nothing saved"):
        L.MultiheadAttention(4, 2).backward(x)
    mha(x)
    with pytest.raises(ValueError, match="expected dy of shape"):
        mha.backward(np.zeros((2, 3, 4), dtype=np.float32))


# ------------------------------------------------------------------ TransformerEncoderLayer
class Encode(Module):
    """TransformerEncoderLayer with fixed masks as a one-input layer."""

    def __init__(self, layer, **options):
        super().__init__()
        self.layer, self.options = layer, options

    def forward(self, x):
        return self.layer(x, **self.options)

    def backward(self, dy):
        return self.layer.backward(dy)


@stateless_xp
@given(hd=heads_and_dims, length=st.integers(1, 4), batch=st.integers(1, 2),
       norm_first=st.booleans(), activation=st.sampled_from(["relu", "gelu"]),
       batch_first=st.booleans(), causal=st.booleans(), training=st.booleans(), seed=seeds)
def test_transformer_encoder_layer_gradients(xp, hd, length, batch, norm_first, activation,
                                             batch_first, causal, training, seed):
    heads, dim = hd
    layer = L.TransformerEncoderLayer(dim, heads, dim_feedforward=5, dropout=0.2,
                                      activation=activation, batch_first=batch_first,
                                      norm_first=norm_first)
    layer = randomize(layer, seed).train(training)
    x = np.random.default_rng(seed).standard_normal(
        (batch, length, dim) if batch_first else (length, batch, dim))
    assert_gradients(on(xp, Encode(layer, is_causal=causal)), xp.asarray(x))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_matches_torch(norm_first, activation):
    torch = pytest.importorskip("torch")
    e, h, f, s, n = 8, 2, 16, 5, 3
    layer = randomize(L.TransformerEncoderLayer(e, h, f, dropout=0.0, activation=activation,
                                                norm_first=norm_first), 4).to(np.float64)
    t = torch.nn.TransformerEncoderLayer(e, h, f, dropout=0.0, activation=activation,
                                         norm_first=norm_first, dtype=torch.float64)
    torch_params = dict(t.named_parameters())
    assert set(torch_params) == {name for name, _ in layer.named_parameters()}
    def transposed(name):  # minidl's Linear weights are (in, out)
        return name.endswith("weight") and ("linear" in name or "out_proj" in name)
    with torch.no_grad():
        for name, param in layer.named_parameters():
            value = torch.tensor(param.data)
            torch_params[name].copy_(value.T if transposed(name) else value)
    draw = np.random.default_rng(5)
    x = draw.standard_normal((s, n, e))
    mask = np.triu(np.ones((s, s), dtype=bool), 1)
    padding = np.zeros((n, s), dtype=bool)
    padding[2, 3:] = True
    tx = torch.tensor(x, requires_grad=True)
    y = layer(x, src_mask=mask, src_key_padding_mask=padding)
    ty = t(tx, src_mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(padding))
    dy = draw.standard_normal(y.shape)
    (ty * torch.tensor(dy)).sum().backward()
    dx = layer.backward(dy)
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **close)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **close)
    for name, param in layer.named_parameters():
        expected = torch_params[name].grad.numpy()
        np.testing.assert_allclose(param.grad, expected.T if transposed(name) else expected,
                                   **close, err_msg=name)


def test_transformer_encoder_layer_errors():
    with pytest.raises(ValueError, match="activation"):
        L.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="divisible"):
        L.TransformerEncoderLayer(8, 3)
    layer = L.TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match="features"):
        layer(np.zeros((3, 2, 4), dtype=np.float32))

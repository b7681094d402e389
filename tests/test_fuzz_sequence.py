"""Property-based fuzzing of the sequence parts: Embedding, LayerNorm, GroupNorm, RNN,
LSTM, GRU, MultiheadAttention, TransformerEncoderLayer, the sequence losses, the text
data, the GPT model, gradient clipping, minidl.interop and minidl.distributed (one
process, without mpiexec).

The rule is test_fuzz.py's (see its docstring and tests/fuzzing.py): every call gives a
correct result - here compared with a float64 twin of the layer on float64 copies of
every input, outputs, dx, the parameter gradients and the state gradients alike - or a
ValueError / TypeError / RuntimeError naming the class or function; never another
exception type, a RuntimeWarning, a NaN or Inf from finite input, a wrong dtype or
shape. Extra inputs (initial states, masks, key and value, need_weights...) are drawn
like the input: valid, or a list, the wrong dtype, the wrong shape, NaN. An empty batch
(N = 0) gives empty outputs and zero parameter gradients, as in PyTorch.
"""
import importlib.util
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
import minidl.distributed as dist
from minidl import Param, interop, layers as L, losses
from minidl.data import text
from minidl.models.gpt import GPT
from minidl.optim import clip_grad_norm_, clip_grad_value_

from fuzzing import FUZZ, ODD_VALUES, arrays, finite, float_input, outcome, strict, wrong_kind

SEQ_FUZZ = settings(FUZZ, max_examples=40)
FLOATS = [np.float32, np.float64]
INDEX_DTYPES = [np.int64, np.int32, np.int8, np.uint8, np.uint64, np.float32, np.float64,
                np.bool_, np.complex64, object, "U3"]


# ----------------------------------------------------------------------------- helpers
def to64(value):
    """Float arrays (also inside tuples) as contiguous float64 copies; the rest as is."""
    if isinstance(value, tuple):
        return tuple(to64(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return np.ascontiguousarray(value, dtype=np.float64)
    return value


def twin_of(layer, factory, kwargs):
    """The same layer (same weights, same mode) in float64."""
    twin = factory(**kwargs).to(np.float64)
    twin.load_state_dict(layer.state_dict())  # float64 first: a float64 layer loses nothing
    twin.train(layer.training)
    return twin


def assert_close(actual, expected, dtype):
    """``actual`` (of ``dtype``) equals the float64 ``expected``, array by array."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, dtype)
        return
    if expected is None:
        assert actual is None
        return
    assert isinstance(actual, np.ndarray) and actual.dtype == dtype, \
        f"expected a {np.dtype(dtype)} array, got {getattr(actual, 'dtype', type(actual))}"
    assert actual.shape == expected.shape and finite(actual)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def assert_same_gradients(layer, twin, dtype):
    for (name, p), (_, q) in zip(layer.named_parameters(), twin.named_parameters()):
        assert p.grad.dtype == dtype, name
        assert_close(p.grad, q.grad, dtype)


def assert_zero_gradients(layer):
    for name, p in layer.named_parameters():
        assert not np.any(p.grad), f"{name}: nonzero gradient from an empty batch"


def random(shape, dtype, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def draw_broken(data, parts):
    """None (every input valid: 3 draws in 7) or the one input drawn to be broken."""
    return data.draw(st.sampled_from([None] * 3 + list(parts)))


def draw_kind(data, broken, part, valid_kinds, bad_kinds):
    """A valid kind of ``part``, or a bad one if it is the input drawn to be broken."""
    return data.draw(st.sampled_from(bad_kinds if broken == part else valid_kinds))


# ----------------------------------------------------------------------------- constructors
# name -> (factory, valid kwargs, kind of each kwarg ("int?": an int or None), owners)
SEQ_LAYERS = {
    "Embedding": (L.Embedding, dict(num_embeddings=5, embedding_dim=3, padding_idx=None),
                  dict(num_embeddings="int", embedding_dim="int", padding_idx="int?")),
    "LayerNorm": (L.LayerNorm, dict(normalized_shape=4, eps=1e-5, elementwise_affine=True,
                                    bias=True),
                  dict(eps="real", elementwise_affine="bool", bias="bool")),
    "GroupNorm": (L.GroupNorm, dict(num_groups=2, num_channels=4, eps=1e-5, affine=True),
                  dict(num_groups="int", num_channels="int", eps="real", affine="bool")),
    "RNN": (L.RNN, dict(input_size=3, hidden_size=4, num_layers=1, nonlinearity="tanh",
                        bias=True, batch_first=False, dropout=0.0, bidirectional=False),
            dict(input_size="int", hidden_size="int", num_layers="int", bias="bool",
                 nonlinearity=("tanh", "relu"), batch_first="bool", dropout="real",
                 bidirectional="bool")),
    "LSTM": (L.LSTM, dict(input_size=3, hidden_size=4, num_layers=1, bias=True,
                          batch_first=False, dropout=0.0, bidirectional=False),
             dict(input_size="int", hidden_size="int", num_layers="int", bias="bool",
                  batch_first="bool", dropout="real", bidirectional="bool")),
    "GRU": (L.GRU, dict(input_size=3, hidden_size=4, num_layers=1, bias=True,
                        batch_first=False, dropout=0.0, bidirectional=False),
            dict(input_size="int", hidden_size="int", num_layers="int", bias="bool",
                 batch_first="bool", dropout="real", bidirectional="bool")),
    "MultiheadAttention": (L.MultiheadAttention, dict(embed_dim=4, num_heads=2, dropout=0.0,
                                                      bias=True, batch_first=False),
                           dict(embed_dim="int", num_heads="int", dropout="real",
                                bias="bool", batch_first="bool")),
    "TransformerEncoderLayer": (L.TransformerEncoderLayer,
                                dict(d_model=4, nhead=2, dim_feedforward=8, dropout=0.0,
                                     activation="relu", batch_first=False, norm_first=False,
                                     layer_norm_eps=1e-5),
                                dict(d_model="int", nhead="int", dim_feedforward="int",
                                     dropout="real", activation=("relu", "gelu"),
                                     batch_first="bool", norm_first="bool",
                                     layer_norm_eps="real")),
}
# A block may leave an argument's check to the layer it hands it to.
INNER = {"TransformerEncoderLayer": ("MultiheadAttention", "LayerNorm", "Linear", "Dropout")}


def must_refuse(kind, value):
    if kind == "int?":
        return value is not None and wrong_kind("int", value)
    return wrong_kind(kind, value)


def valid_input(name, layer, data):
    """A valid first input for the layer built by the constructor test."""
    if name == "Embedding":
        return np.arange(4) % layer.num_embeddings
    if name == "LayerNorm":
        return float_input(data.draw, (2,) + layer.normalized_shape, np.float32)
    if name == "GroupNorm":
        return float_input(data.draw, (2, layer.num_channels, 3), np.float32)
    size = getattr(layer, "input_size", None) or getattr(layer, "embed_dim", None) or \
        layer.d_model
    return float_input(data.draw, (3, 2, size), np.float32)


@pytest.mark.parametrize("name", sorted(SEQ_LAYERS))
@SEQ_FUZZ
@given(data=st.data())
def test_sequence_layer_constructors_refuse_wrong_kinds_and_what_they_accept_works(name, data):
    factory, valid, kinds = SEQ_LAYERS[name]
    kwargs = dict(valid)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [valid[key], (4,), (2, 2)]))
    owners = (name,) + INNER.get(name, ())
    status, layer = outcome(owners, lambda: factory(**kwargs))
    if must_refuse(kinds.get(key), kwargs[key]):
        assert status == "error", f"{name}({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    x = valid_input(name, layer, data)
    status, y = outcome(owners, lambda: layer(x))
    assert status == "ok", y
    output = y[0] if isinstance(y, tuple) else y
    assert output.dtype == np.float32 and finite(output)
    status, dx = outcome(owners, lambda: layer.backward(np.ones_like(output)))
    assert status == "ok", dx
    if name != "Embedding":
        assert dx.shape == x.shape and dx.dtype == x.dtype and finite(dx)
    for param in layer.parameters():
        assert param.grad.dtype == param.data.dtype and finite(param.grad)


# ----------------------------------------------------------------------------- Embedding
@SEQ_FUZZ
@given(data=st.data())
def test_embedding_on_drawn_indices(data):
    padding_idx = data.draw(st.sampled_from([None, 0, -1]))
    dtype = data.draw(st.sampled_from(FLOATS))
    layer = L.Embedding(6, 3, padding_idx=padding_idx).to(dtype)
    if data.draw(st.booleans()):  # indices of a drawn shape, dtype and layout (any values)
        shape = (data.draw(st.sampled_from([0, 1, 3])), data.draw(st.integers(0, 3)))
        indices = data.draw(arrays(shape=shape, dtypes=INDEX_DTYPES))
    else:
        indices = data.draw(arrays(dtypes=INDEX_DTYPES))
    status, y = outcome("Embedding", lambda: layer(indices))
    array = np.asarray(indices)
    good = (isinstance(indices, (np.ndarray, np.generic)) and array.dtype.kind in "iu"
            and (array.size == 0 or (array.min() >= 0 and array.max() < 6)))
    assert status == ("ok" if good else "error"), (indices, y)
    if status == "error":
        return
    weight = layer.weight.data.astype(np.float64)
    assert y.dtype == dtype and y.shape == array.shape + (3,)
    np.testing.assert_array_equal(y, weight[array].astype(dtype))
    dy = random(y.shape, dtype)
    status, dx = outcome("Embedding", lambda: layer.backward(dy))
    assert status == "ok" and dx is None, dx
    expected = np.zeros((6, 3))
    np.add.at(expected, array.reshape(-1), dy.reshape(-1, 3).astype(np.float64))
    if padding_idx is not None:
        expected[padding_idx % 6] = 0
    assert_close(layer.weight.grad, expected, dtype)
    if array.size == 0:
        assert_zero_gradients(layer)


# ----------------------------------------------------------------------------- norms
NORMS = {
    "LayerNorm": (L.LayerNorm, dict(normalized_shape=(3, 2)), (2, 3, 2)),
    "LayerNorm_nobias": (L.LayerNorm, dict(normalized_shape=4, bias=False), (3, 4)),
    "LayerNorm_noaffine": (L.LayerNorm, dict(normalized_shape=4, elementwise_affine=False),
                           (2, 2, 4)),
    "GroupNorm": (L.GroupNorm, dict(num_groups=2, num_channels=4), (2, 4, 3)),
    "GroupNorm_4d": (L.GroupNorm, dict(num_groups=1, num_channels=2, affine=False),
                     (2, 2, 2, 3)),
}


@pytest.mark.parametrize("case", sorted(NORMS))
@SEQ_FUZZ
@given(data=st.data())
def test_norms_on_drawn_arrays(case, data):
    factory, kwargs, shape = NORMS[case]
    name = case.split("_")[0]
    dtype = data.draw(st.sampled_from(FLOATS))
    minidl.seed(0)
    layer = factory(**kwargs).to(dtype)
    for p in layer.parameters():  # not the identity: weights and biases of their own
        p.data[...] = random(p.data.shape, dtype, seed=2)
    shape = (data.draw(st.sampled_from([0, 1, 3])),) + shape[1:]
    x_is_valid = data.draw(st.sampled_from([True, True, False]))
    x = float_input(data.draw, shape, dtype) if x_is_valid else data.draw(arrays())
    status, y = outcome(name, lambda: layer(x))
    if x_is_valid:
        assert status == "ok", y
    if status == "error":
        return
    assert isinstance(x, np.ndarray) and x.dtype in FLOATS and finite(x), \
        f"{name} accepted {type(x).__name__} {getattr(x, 'dtype', '')}"
    if layer.parameters():  # else, like an activation, any float dtype
        assert x.dtype == dtype, f"{name} accepted {x.dtype} into a {np.dtype(dtype)} layer"
    dtype = x.dtype
    twin = twin_of(layer, factory, kwargs)
    assert_close(y, twin(to64(x)), dtype)
    dy = random(y.shape, dtype)
    status, dx = outcome(name, lambda: layer.backward(dy))
    assert status == "ok", dx
    assert_close(dx, twin.backward(to64(dy)), dtype)
    assert_same_gradients(layer, twin, dtype)
    if x.shape[0] == 0:
        assert_zero_gradients(layer)


# ----------------------------------------------------------------------------- RNN/LSTM/GRU
RECURRENT = {"RNN": L.RNN, "LSTM": L.LSTM, "GRU": L.GRU}
BAD_STATES = ["half", "list", "dtype", "shape", "nan", "triple"]


def drawn_state(kind, shape, dtype, pair):
    """An initial state (or its gradient) of the kind drawn; ``pair``: LSTM's (h, c)."""
    good = random(shape, dtype, seed=3) * 0.5
    if kind == "none":
        return None
    if kind == "half":
        return (good, None)
    bad = {"good": good, "list": good.tolist(), "dtype": good.astype(np.float16),
           "shape": good[:, :, :-1] if shape[-1] > 1 else good[None],
           "nan": np.where(good == good.max(initial=0), np.nan, good) if good.size
           else np.full((1,) + shape, np.nan, dtype),
           "triple": (good, good, good)}[kind]
    if pair and kind != "triple":
        return (bad, good * 0.3)
    return bad


@pytest.mark.parametrize("name", sorted(RECURRENT))
@SEQ_FUZZ
@given(data=st.data())
def test_recurrent_layers_on_drawn_inputs_and_states(name, data):
    factory = RECURRENT[name]
    kwargs = dict(input_size=3, hidden_size=data.draw(st.sampled_from([1, 4])),
                  num_layers=data.draw(st.sampled_from([1, 2])),
                  bias=data.draw(st.booleans()), batch_first=data.draw(st.booleans()),
                  bidirectional=data.draw(st.booleans()))
    if name == "RNN":
        kwargs["nonlinearity"] = data.draw(st.sampled_from(["tanh", "relu"]))
    dtype = data.draw(st.sampled_from(FLOATS))
    minidl.seed(0)
    layer = factory(**kwargs).to(dtype)
    steps, batch = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 2))
    shape = (batch, steps, 3) if kwargs["batch_first"] else (steps, batch, 3)
    broken = draw_broken(data, ["x", "state"])
    x = float_input(data.draw, shape, dtype) if broken != "x" else data.draw(arrays())
    directions = 2 if kwargs["bidirectional"] else 1
    state_shape = (kwargs["num_layers"] * directions, batch, kwargs["hidden_size"])
    state_kind = draw_kind(data, broken, "state", ["none", "good"] + ["half"] * (name == "LSTM"),
                           BAD_STATES)
    hx = drawn_state(state_kind, state_shape, dtype, pair=name == "LSTM")
    status, out = outcome(name, lambda: layer(x, hx))
    state_is_valid = state_kind in ("none", "good") or (state_kind == "half" and name == "LSTM")
    if broken is None:
        assert status == "ok", out
    if status == "error":
        return
    assert state_is_valid, f"{name} accepted a bad initial state ({state_kind})"
    assert isinstance(x, np.ndarray) and x.dtype == dtype and finite(x)
    twin = twin_of(layer, factory, kwargs)
    assert_close(out, twin(to64(x), to64(hx)), dtype)
    output, final = out
    d_output = random(output.shape, dtype, seed=4)
    finals = final if name == "LSTM" else (final,)
    d_state = data.draw(st.sampled_from(["none", "good", "half"]))
    d_final = None if d_state == "none" else tuple(
        random(f.shape, dtype, seed=5 + i) if d_state == "good" or i == 0 else None
        for i, f in enumerate(finals))
    if d_final is not None and name != "LSTM":
        d_final = d_final[0]
    status, dx = outcome(name, lambda: layer.backward(d_output, d_final))
    assert status == "ok", dx
    assert_close(dx, twin.backward(to64(d_output), to64(d_final)), dtype)
    assert_same_gradients(layer, twin, dtype)
    assert_close(layer.grad_initial_state, twin.grad_initial_state, dtype)
    if x.shape[0 if kwargs["batch_first"] else 1] == 0:  # the input's own N
        assert output.size == 0
        assert_zero_gradients(layer)


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_backward_refuses_bad_gradients(name):
    layer = RECURRENT[name](3, 2)
    x = random((2, 1, 3), np.float32)
    for d_output in (np.ones((2, 1, 2)).tolist(), np.ones((2, 1, 2), np.int64),
                     np.ones((2, 1, 2)), np.ones((2, 1, 3), np.float32)):
        layer(x)
        status, _ = outcome(name, lambda: layer.backward(d_output))
        assert status == "error", d_output


# ----------------------------------------------------------------------------- attention
KPM_KINDS = ["none", "bool", "bool_all", "float", "float16"]
BAD_KPM = ["int", "list", "shape", "nan"]
ATTN_KINDS = ["none", "bool_causal", "bool_random", "float2d", "float3d"]
BAD_ATTN = ["shape", "list", "inf"]
FLAGS = [True, False, np.bool_(True)]
BAD_FLAGS = [None, 1, 0, "yes"]


def padding_mask(kind, n, source, dtype, generator):
    masked = generator.random((n, source)) < 0.4
    if kind == "none":
        return None, None
    if kind == "bool":
        return masked, masked
    if kind == "bool_all":
        masked[:, :] = True
        return masked, masked
    values = generator.standard_normal((n, source))
    mask = {"float": values.astype(dtype), "float16": values.astype(np.float16),
            "int": masked.astype(np.int64), "list": masked.tolist(),
            "shape": np.zeros((n, source + 1), bool),
            "nan": np.full((n, source), np.nan, dtype)}[kind]
    return mask, (np.zeros((n, source), bool) if kind.startswith("float") else None)


def attention_mask(kind, n, heads, length, source, dtype, generator):
    if kind == "none":
        return None, None
    if kind == "bool_causal":
        mask = np.triu(np.ones((length, source), bool), 1)
        return mask, mask
    if kind == "bool_random":
        mask = generator.random((length, source)) < 0.4
        return mask, mask
    if kind == "float2d":
        return generator.standard_normal((length, source)).astype(dtype), \
            np.zeros((length, source), bool)
    if kind == "float3d":
        return generator.standard_normal((n * heads, length, source)).astype(dtype), \
            np.zeros((n * heads, length, source), bool)
    return {"shape": np.zeros((length + 1, source), bool),
            "list": np.zeros((length, source), bool).tolist(),
            "inf": np.full((length, source), np.inf, dtype)}[kind], None


def some_query_sees_no_key(masked_parts, n, heads, length, source, is_causal):
    """Whether the boolean masks (True = masked) leave a query without any key."""
    if n == 0:
        return False
    masked = np.zeros((n, heads, length, source), bool)
    padding, attn = masked_parts
    if padding is not None:
        masked |= padding[:, None, None, :]
    if attn is not None:
        masked |= attn.reshape((n, heads, length, source) if attn.ndim == 3 else attn.shape)
    if is_causal:
        masked |= np.triu(np.ones((length, source), bool), 1)
    return bool(masked.all(axis=-1).any())


@SEQ_FUZZ
@given(data=st.data())
def test_multihead_attention_on_drawn_inputs_and_masks(data):
    kwargs = dict(embed_dim=4, num_heads=data.draw(st.sampled_from([1, 2])),
                  bias=data.draw(st.booleans()), batch_first=data.draw(st.booleans()))
    dtype = data.draw(st.sampled_from(FLOATS))
    minidl.seed(0)
    layer = L.MultiheadAttention(**kwargs).to(dtype)
    n, length, source = (data.draw(st.integers(0, 2)), data.draw(st.integers(1, 3)),
                         data.draw(st.integers(1, 3)))
    generator = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    layout = (lambda size: (n, size, 4)) if kwargs["batch_first"] else (lambda size: (size, n, 4))
    broken = draw_broken(data, ["query", "source", "kpm", "attn", "flag"])
    query = float_input(data.draw, layout(length), dtype) if broken != "query" \
        else data.draw(arrays())
    source_kind = draw_kind(data, broken, "source", ["self", "key", "key_value"],
                            ["list", "dtype", "nan", "short_value"])
    if source_kind == "self":
        source = length
    key = None if source_kind == "self" else random(layout(source), dtype, seed=6)
    value = random(layout(source), dtype, seed=7) if source_kind == "key_value" else None
    if source_kind == "list":
        key = key.tolist()
    elif source_kind == "dtype":
        key = key.astype(np.float16)
    elif source_kind == "nan":
        key = np.full(layout(source), np.nan, dtype)
    elif source_kind == "short_value":
        value = random(layout(source + 1), dtype, seed=7)
    kpm_kind = draw_kind(data, broken, "kpm", KPM_KINDS, BAD_KPM)
    attn_kind = draw_kind(data, broken, "attn", ATTN_KINDS, BAD_ATTN)
    kpm, kpm_masked = padding_mask(kpm_kind, n, source, dtype, generator)
    attn_mask, attn_masked = attention_mask(attn_kind, n, kwargs["num_heads"], length, source,
                                            dtype, generator)
    flags = {name: data.draw(st.sampled_from(FLAGS))
             for name in ("need_weights", "average_attn_weights", "is_causal")}
    if broken == "flag":
        flags[data.draw(st.sampled_from(sorted(flags)))] = data.draw(st.sampled_from(BAD_FLAGS))
    call = dict(key_padding_mask=kpm, attn_mask=attn_mask, **flags)
    if n == 0 and "nan" in (source_kind, kpm_kind):
        broken = None  # an empty batch holds no NaN
    status, out = outcome("MultiheadAttention", lambda: layer(query, key, value, **call))
    if broken is None and some_query_sees_no_key((kpm_masked, attn_masked), n,
                                                 kwargs["num_heads"], length, source,
                                                 bool(flags["is_causal"])):
        assert status == "error", "a query without keys was accepted"
    elif broken is None:
        assert status == "ok", out
    if status == "error":
        return
    assert broken in (None, "query"), f"accepted a bad {broken}: {source_kind}, {kpm_kind}, " \
        f"{attn_kind}, {flags}"
    assert isinstance(query, np.ndarray) and query.dtype == dtype and finite(query)
    twin = twin_of(layer, L.MultiheadAttention, kwargs)
    expected = twin(to64(query), to64(key), to64(value), **dict(call, key_padding_mask=to64(kpm),
                                                               attn_mask=to64(attn_mask)))
    assert_close(out, expected, dtype)
    d_output = random(out[0].shape, dtype, seed=8)
    status, grads = outcome("MultiheadAttention", lambda: layer.backward(d_output))
    assert status == "ok", grads
    assert_close(grads, twin.backward(to64(d_output)), dtype)
    assert_same_gradients(layer, twin, dtype)
    if query.shape[0 if kwargs["batch_first"] else 1] == 0:
        assert_zero_gradients(layer)


@SEQ_FUZZ
@given(data=st.data())
def test_transformer_encoder_layer_on_drawn_inputs_and_masks(data):
    kwargs = dict(d_model=4, nhead=2, dim_feedforward=6, dropout=0.0,
                  activation=data.draw(st.sampled_from(["relu", "gelu"])),
                  batch_first=data.draw(st.booleans()), norm_first=data.draw(st.booleans()))
    dtype = data.draw(st.sampled_from(FLOATS))
    minidl.seed(0)
    layer = L.TransformerEncoderLayer(**kwargs).to(dtype)
    n, length = data.draw(st.integers(0, 2)), data.draw(st.integers(1, 3))
    shape = (n, length, 4) if kwargs["batch_first"] else (length, n, 4)
    broken = draw_broken(data, ["src", "kpm", "attn", "flag"])
    src = float_input(data.draw, shape, dtype) if broken != "src" else data.draw(arrays())
    generator = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    kpm_kind = draw_kind(data, broken, "kpm", KPM_KINDS, BAD_KPM)
    attn_kind = draw_kind(data, broken, "attn", ATTN_KINDS, BAD_ATTN)
    kpm, kpm_masked = padding_mask(kpm_kind, n, length, dtype, generator)
    attn_mask, attn_masked = attention_mask(attn_kind, n, 2, length, length, dtype, generator)
    is_causal = draw_kind(data, broken, "flag", FLAGS, BAD_FLAGS)
    owners = ("TransformerEncoderLayer",) + INNER["TransformerEncoderLayer"]
    if n == 0 and kpm_kind == "nan":
        broken = None  # an empty batch holds no NaN
    status, y = outcome(owners, lambda: layer(src, attn_mask, kpm, is_causal))
    if broken is None and some_query_sees_no_key((kpm_masked, attn_masked), n, 2, length,
                                                 length, bool(is_causal)):
        assert status == "error", "a query without keys was accepted"
    elif broken is None:
        assert status == "ok", y
    if status == "error":
        return
    assert broken in (None, "src"), f"accepted a bad {broken}: {kpm_kind}, {attn_kind}, " \
        f"is_causal={is_causal!r}"
    assert isinstance(src, np.ndarray) and src.dtype == dtype and finite(src)
    twin = twin_of(layer, L.TransformerEncoderLayer, kwargs)
    assert_close(y, twin(to64(src), to64(attn_mask), to64(kpm), is_causal), dtype)
    dy = random(y.shape, dtype, seed=9)
    status, dx = outcome(owners, lambda: layer.backward(dy))
    assert status == "ok", dx
    assert_close(dx, twin.backward(to64(dy)), dtype)
    assert_same_gradients(layer, twin, dtype)
    if src.shape[0 if kwargs["batch_first"] else 1] == 0:
        assert_zero_gradients(layer)


# ----------------------------------------------------------------------------- sequence losses
def cross_entropy_reference(logits, target, smoothing, ignore_index):
    """(loss, dlogits) of CrossEntropyLoss on (N, K, d...) in float64, from the definition."""
    k = logits.shape[1]
    rows = np.moveaxis(logits.astype(np.float64), 1, -1).reshape(-1, k)
    labels = target.reshape(-1)
    counted = labels != ignore_index
    shifted = rows - rows.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    picked = np.where(counted, labels, 0)
    q = (1 - smoothing) * np.eye(k)[picked] + smoothing / k
    count = counted.sum()
    loss = -(q * log_p).sum(axis=1)[counted].sum() / count
    grad = (np.exp(log_p) - q) * counted[:, None] / count
    grad = np.moveaxis(grad.reshape((logits.shape[0],) + logits.shape[2:] + (k,)), -1, 1)
    return loss, grad


@SEQ_FUZZ
@given(data=st.data())
def test_cross_entropy_on_drawn_sequences_and_arguments(data):
    kwargs = dict(label_smoothing=0.1, ignore_index=-100)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [kwargs[key], 0.0, 2, -1]))
    status, loss_fn = outcome("CrossEntropyLoss", lambda: losses.CrossEntropyLoss(**kwargs))
    kinds = dict(label_smoothing="real", ignore_index="int")
    if wrong_kind(kinds[key], kwargs[key]):
        assert status == "error", f"CrossEntropyLoss({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    generator = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    valid = data.draw(st.sampled_from([True, True, False]))
    if valid:
        k = data.draw(st.integers(1, 4))
        shape = (data.draw(st.integers(1, 3)), k) + tuple(
            data.draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
        logits = float_input(data.draw, shape)
        target = generator.integers(0, k, (shape[0],) + shape[2:])
        target[generator.random(target.shape) < 0.3] = loss_fn.ignore_index \
            if -2 ** 63 <= loss_fn.ignore_index < 2 ** 63 else 0
        target = target.astype(data.draw(st.sampled_from([np.int64, np.int32, np.uint8]))) \
            if target.min() >= 0 else target
    else:
        logits = data.draw(arrays())
        target = data.draw(st.one_of(arrays(dtypes=INDEX_DTYPES), st.just(
            np.zeros(np.shape(logits)[:1] + np.shape(logits)[2:], np.int64))))
    status, value = outcome("CrossEntropyLoss", lambda: loss_fn(logits, target))
    if valid:
        assert status == "ok", value
    if status == "error":
        return
    assert isinstance(logits, np.ndarray) and logits.dtype in FLOATS and finite(logits)
    assert np.asarray(value).dtype == logits.dtype
    status, grad = outcome("CrossEntropyLoss", loss_fn.backward)
    assert status == "ok", grad
    if np.all(np.asarray(target) == loss_fn.ignore_index):  # nothing counted: NaN, as torch
        assert np.isnan(value)
        return
    expected, expected_grad = cross_entropy_reference(
        logits, np.asarray(target).astype(np.int64), loss_fn.label_smoothing,
        loss_fn.ignore_index)
    tolerance = 1e-5 if logits.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(float(value), expected, rtol=tolerance, atol=tolerance)
    assert_close(grad, expected_grad, logits.dtype)


@SEQ_FUZZ
@given(data=st.data())
def test_multi_margin_loss_on_drawn_arguments(data):
    kwargs = dict(p=1, margin=1.0, weight=None)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [
        2, 0.5, 1e300, np.ones(3), np.array([0.5, 1.0, 2.0], np.float32),
        np.array([1, np.nan, 1]),
        np.ones((3, 1)), np.ones(3, np.int64), [1.0, 1.0, 1.0]]))
    status, loss_fn = outcome("MultiMarginLoss", lambda: losses.MultiMarginLoss(**kwargs))
    kinds = dict(p="int", margin="real", weight=None)
    if wrong_kind(kinds[key], kwargs[key]):
        assert status == "error", f"MultiMarginLoss({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    weight = np.ones(3) if loss_fn.weight is None else np.asarray(loss_fn.weight, np.float64)
    assert weight.shape == (3,) and finite(weight), f"accepted weight {loss_fn.weight!r}"
    n = data.draw(st.integers(1, 3))
    scores = float_input(data.draw, (n, 3))
    target = np.random.default_rng(n).integers(0, 3, n)
    status, value = outcome("MultiMarginLoss", lambda: loss_fn(scores, target))
    if abs(loss_fn.margin) > np.finfo(scores.dtype).max:  # 1e300 in float32: inf
        assert status == "error", value
        return
    assert status == "ok", value
    s = scores.astype(np.float64)
    hinge = np.maximum(0.0, loss_fn.margin - s[np.arange(n), target][:, None] + s)
    hinge[np.arange(n), target] = 0
    expected = (weight[target][:, None] * hinge ** loss_fn.p).sum() / (n * 3)
    tolerance = 1e-5 if scores.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(float(value), expected, rtol=tolerance, atol=tolerance)
    assert np.asarray(value).dtype == scores.dtype
    status, grad = outcome("MultiMarginLoss", loss_fn.backward)
    assert status == "ok" and grad.dtype == scores.dtype and finite(grad), grad


# ----------------------------------------------------------------------------- text data
TEXTS = ODD_VALUES + ["hello world", "a", "", b"bytes", ["a", "b"]]


@SEQ_FUZZ
@given(data=st.data())
def test_text_vocabulary_on_drawn_arguments(data):
    source = data.draw(st.sampled_from(TEXTS))
    status, vocab = outcome("CharVocab", lambda: text.CharVocab(source))
    assert status == ("ok" if isinstance(source, str) and source else "error"), vocab
    if status == "error":
        vocab = text.CharVocab("hello world")
    sentence = data.draw(st.sampled_from(TEXTS + ["hello", "xyz"]))
    status, ids = outcome("CharVocab.encode", lambda: vocab.encode(sentence))
    if isinstance(sentence, str) and set(sentence) <= set(vocab.chars):
        assert status == "ok", ids
        assert ids.dtype == np.int64 and ids.shape == (len(sentence),)
        assert vocab.decode(ids) == sentence
    else:
        assert status == "error", f"encode({sentence!r}) gave {ids!r}"
    ids = data.draw(st.one_of(arrays(dtypes=INDEX_DTYPES),
                              st.sampled_from(ODD_VALUES + [[0, 1], [], [[0], [1, 2]]])))
    status, decoded = outcome("CharVocab.decode", lambda: vocab.decode(ids))
    try:
        array = np.asarray(ids)
    except ValueError:  # a ragged list
        array = np.asarray(None)
    good = array.dtype.kind in "iu" or (array.size == 0 and array.dtype.kind == "f")
    good = good and (array.size == 0 or (array.min() >= 0 and array.max() < len(vocab)))
    assert status == ("ok" if good else "error"), (ids, decoded)
    if good:
        assert decoded == "".join(vocab.chars[i] for i in array.reshape(-1).tolist())


@SEQ_FUZZ
@given(data=st.data())
def test_split_text_and_block_sampler_on_drawn_arguments(data):
    ids = data.draw(st.one_of(arrays(dtypes=INDEX_DTYPES),
                              st.sampled_from(ODD_VALUES + [np.arange(20), list(range(12))])))
    fraction = data.draw(st.sampled_from(ODD_VALUES + [0.1, 0.5]))
    status, parts = outcome("split_text", lambda: text.split_text(ids, fraction))
    if wrong_kind("real", fraction):
        assert status == "error"
    if status == "ok":
        train, val = parts
        assert len(train) + len(val) == len(ids)
    kwargs = dict(block_size=3, batch_size=2, seed=0)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [kwargs[key], None]))
    status, sampler = outcome("BlockSampler", lambda: text.BlockSampler(ids, **kwargs))
    if wrong_kind("int", kwargs[key]) and not (key == "seed" and kwargs[key] is None):
        assert status == "error", f"BlockSampler({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    tokens = np.asarray(ids)
    assert tokens.ndim == 1 and tokens.dtype.kind in "iu" and len(tokens) > sampler.block_size
    status, batch = outcome("BlockSampler", sampler.sample)
    assert status == "ok", batch
    x, y = batch
    assert x.shape == y.shape == (sampler.batch_size, sampler.block_size)
    assert x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x, y):  # each row a window of the ids, y the next tokens
        starts = [i for i in range(len(tokens) - sampler.block_size)
                  if np.array_equal(tokens[i:i + sampler.block_size], row_x)
                  and np.array_equal(tokens[i + 1:i + 1 + sampler.block_size], row_y)]
        assert starts, (row_x, row_y)


@FUZZ
@given(data=st.data())
def test_load_tiny_shakespeare_on_drawn_roots_and_files(data, tmp_path_factory):
    """Never downloads (download is False or a wrong kind); root None is left out, as it
    reads $MINIDL_DATA. A missing file is the loaders' documented FileNotFoundError."""
    folder = tmp_path_factory.mktemp("text")
    content = data.draw(st.sampled_from([None, b"", b"hello", b"\xff\xfe" * 10, b"x" * 999]))
    if content is not None:
        (folder / "input.txt").write_bytes(content)
    root = data.draw(st.sampled_from([v for v in ODD_VALUES if v is not None] +
                                     [folder, str(folder)]))
    download = data.draw(st.sampled_from([False, np.bool_(False), None, 0, "no"]))
    try:
        status, result = outcome(("load_tiny_shakespeare", "input.txt"),
                                 lambda: text.load_tiny_shakespeare(root, download))
    except FileNotFoundError as error:
        assert "input.txt" in str(error)
        assert content is None or root not in (folder, str(folder))
        return
    assert status == "error", "a damaged Tiny Shakespeare was accepted"
    if root in (folder, str(folder)) and download is False and content is not None:
        assert str(folder) in str(result), result


# ----------------------------------------------------------------------------- GPT
GPT_ARGS = dict(vocab_size=7, block_size=5, n_layer=1, n_head=2, n_embd=4, dropout=0.0,
                bias=True, gelu_approximate="none")
GPT_KINDS = dict(vocab_size="int", block_size="int", n_layer="int", n_head="int", n_embd="int",
                 dropout="real", bias="bool", gelu_approximate=("none", "tanh"))


@SEQ_FUZZ
@given(data=st.data())
def test_gpt_constructor_forward_and_backward_on_drawn_arguments(data):
    kwargs = dict(GPT_ARGS, bias=data.draw(st.booleans()))
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(kwargs)))
        kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [GPT_ARGS[key], 1, 3]))
        status, model = outcome(("GPT", "Embedding", "LayerNorm", "Linear"),
                                lambda: GPT(**kwargs))
        if wrong_kind(GPT_KINDS[key], kwargs[key]):
            assert status == "error", f"GPT({key}={kwargs[key]!r}) was accepted"
        if status == "error" or kwargs[key] != GPT_ARGS[key]:
            return
    dtype = data.draw(st.sampled_from(FLOATS))
    minidl.seed(0)
    model = GPT(**kwargs).to(dtype)
    batch, steps = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 6))
    valid = data.draw(st.sampled_from([True, True, False]))
    if valid:
        idx = np.random.default_rng(steps).integers(0, 7, (batch, steps)).astype(
            data.draw(st.sampled_from([np.int64, np.int32, np.uint8])))
    else:
        idx = data.draw(arrays(shape=(batch, steps), dtypes=INDEX_DTYPES))
    status, logits = outcome(("GPT", "Embedding"), lambda: model(idx))
    if valid and steps <= 5:
        assert status == "ok", logits
    if status == "error":
        return
    array = np.asarray(idx)
    assert array.dtype.kind in "iu" and steps <= 5 and (
        array.size == 0 or (array.min() >= 0 and array.max() < 7)), f"GPT accepted {idx!r}"
    twin = twin_of(model, GPT, kwargs)
    assert_close(logits, twin(idx), dtype)
    dlogits = random(logits.shape, dtype)
    status, none = outcome("GPT", lambda: model.backward(dlogits))
    assert status == "ok" and none is None, none
    twin.backward(to64(dlogits))
    assert_same_gradients(model, twin, dtype)
    if array.size == 0:
        assert_zero_gradients(model)


@SEQ_FUZZ
@given(data=st.data())
def test_gpt_generate_on_drawn_arguments(data):
    minidl.seed(0)
    model = GPT(**GPT_ARGS)
    kwargs = dict(max_new_tokens=3, temperature=1.0, top_k=None, seed=0)
    key = data.draw(st.sampled_from(sorted(kwargs) + ["idx"]))
    value = data.draw(st.sampled_from(ODD_VALUES + [1e-30, 2, 10]))
    idx = np.array([[1, 2], [3, 4]])
    if key == "idx":
        idx = data.draw(st.one_of(arrays(dtypes=INDEX_DTYPES), st.sampled_from(ODD_VALUES)))
    elif key == "max_new_tokens" and not wrong_kind("int", value) and value > 10:
        return  # valid, but endless
    else:
        kwargs[key] = value
    status, out = outcome(("GPT", "Embedding"), lambda: model.generate(idx, **kwargs))
    kinds = dict(max_new_tokens="int", temperature="real", top_k="int", seed="int")
    if key in kinds and wrong_kind(kinds[key], value) and not (key in ("top_k", "seed")
                                                               and value is None):
        assert status == "error", f"generate({key}={value!r}) was accepted"
    if status == "error":
        return
    idx = np.asarray(idx)
    assert out.dtype == np.int64 and out.shape == (idx.shape[0], idx.shape[1] +
                                                   kwargs["max_new_tokens"])
    np.testing.assert_array_equal(out[:, :idx.shape[1]], idx)
    assert out.size == 0 or (out.min() >= 0 and out.max() < GPT_ARGS["vocab_size"])


# ----------------------------------------------------------------------------- clipping
def reference_norm(grads, norm_type):
    flat = np.concatenate([g.astype(np.float64).reshape(-1) for g in grads] + [np.zeros(0)])
    if flat.size == 0:
        return 0.0
    largest = np.abs(flat).max()
    if norm_type == math.inf or largest == 0 or not np.isfinite(largest):
        return float(largest)
    return float(largest * ((np.abs(flat) / largest) ** norm_type).sum() ** (1 / norm_type))


@SEQ_FUZZ
@given(data=st.data())
def test_clip_grad_norm_and_value_on_drawn_gradients_and_arguments(data):
    params = []
    for i in range(data.draw(st.integers(0, 3))):
        dtype = data.draw(st.sampled_from(FLOATS))
        shape = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2)))
        param = Param(np.zeros(shape, dtype))
        param.grad[...] = data.draw(arrays(shape=shape, dtypes=[dtype],
                                           layouts=("plain",))) * data.draw(
            st.sampled_from([1.0, 1e-30, 1e30]))
        params.append(param)
    before = [p.grad.copy() for p in params]
    kwargs = dict(max_norm=1.0, norm_type=2.0, error_if_nonfinite=False)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [kwargs[key], 1, 3.5, math.inf,
                                                          np.float32("inf")]))
    status, total = outcome("clip_grad_norm_", lambda: clip_grad_norm_(params, **kwargs))
    kinds = dict(max_norm="real", norm_type=None, error_if_nonfinite="bool")
    if wrong_kind(kinds[key], kwargs[key]):
        assert status == "error" or (key == "norm_type" and kwargs[key] == math.inf)
    expected = reference_norm(before, float(kwargs["norm_type"])) if status == "ok" or \
        isinstance(total, RuntimeError) else None
    if status == "error":
        for p, old in zip(params, before):  # a refused call changes nothing
            np.testing.assert_array_equal(p.grad, old)
        if isinstance(total, RuntimeError):
            assert not math.isfinite(expected)
        return
    assert isinstance(total, float)
    np.testing.assert_allclose(total, expected, rtol=1e-5)
    # torch's rule: a NaN total leaves the grads, an infinite one scales them by 0
    scale = 1.0 if math.isnan(expected) else min(1.0, kwargs["max_norm"] / (expected + 1e-6))
    for p, old in zip(params, before):
        assert p.grad.dtype == old.dtype
        if scale in (0.0, 1.0):
            with np.errstate(invalid="ignore"):  # inf * 0 = NaN, as in torch
                np.testing.assert_array_equal(p.grad, old * old.dtype.type(scale))
        else:  # the scale is as exact as the least precise gradient's norm
            coarsest = min((q.grad.dtype for q in params), key=lambda d: d.itemsize)
            assert_close(p.grad.astype(coarsest), old.astype(np.float64) * scale, coarsest)
    value = data.draw(st.sampled_from(ODD_VALUES + [0.5, 1e30]))
    before = [p.grad.copy() for p in params]
    status, _ = outcome("clip_grad_value_", lambda: clip_grad_value_(params, value))
    if wrong_kind("real", value):
        assert status == "error"
    for p, old in zip(params, before):
        clipped = np.clip(old, -value, value) if status == "ok" else old
        np.testing.assert_array_equal(p.grad, clipped)


# ----------------------------------------------------------------------------- interop
def interop_model():
    minidl.seed(0)
    return L.Sequential(L.Linear(3, 4), L.LSTM(4, 2), L.LayerNorm(2), L.BatchNorm1d(2))


CORRUPTIONS = ["none", "shape", "transposed", "object", "complex", "int", "list", "ragged",
               "none_value", "str", "missing", "extra", "int_key", "not_dict", "bool"]


@SEQ_FUZZ
@given(data=st.data())
def test_load_torch_state_dict_on_drawn_corruptions(data):
    source, model = interop_model(), interop_model()
    for p in source.parameters():
        p.data[...] = random(p.data.shape, np.float32, seed=p.data.size)
    state = dict(interop.torch_state_dict(source))
    assert set(state) >= {"0.weight", "1.weight_ih_l0", "2.weight", "3.num_batches_tracked"}
    key = data.draw(st.sampled_from(sorted(state)))
    corruption = data.draw(st.sampled_from(CORRUPTIONS))
    value = state[key]
    state[key] = {"shape": np.zeros(value.shape + (1,), np.float32), "transposed": value.T,
                  "object": value.astype(object), "complex": value.astype(np.complex64),
                  "int": value.astype(np.int64), "list": value.tolist(),
                  "ragged": [[1.0], [1.0, 2.0]], "none_value": None, "str": "weights",
                  "bool": value.astype(bool)}.get(corruption, value)
    if corruption == "missing":
        del state[key]
    elif corruption == "extra":
        state["4.weight"] = value
    elif corruption == "int_key":
        state[4] = value
    strict = data.draw(st.sampled_from([True, False, None]))
    argument = list(state.items()) if corruption == "not_dict" else state
    before = model.state_dict()
    status, result = outcome(("load_torch_state_dict", "load_state_dict"),
                             lambda: interop.load_torch_state_dict(model, argument, strict))
    if strict is None:
        assert status == "error"
    after = model.state_dict()
    if status == "error":  # all or nothing: a refused state changes nothing
        for name in before:
            np.testing.assert_array_equal(after[name], before[name])
        return
    ignored = key == "3.num_batches_tracked" or (
        not strict and corruption in ("missing", "extra", "int_key"))
    transposed = value.ndim == 2 and value.shape[0] != value.shape[1]
    assert corruption in ("none", "int", "list", "extra", "missing", "int_key") or ignored or (
        corruption == "transposed" and not transposed), f"accepted {corruption} {key}"
    assert result is model
    reloaded = interop.torch_state_dict(model)
    for name, array in interop.torch_state_dict(source).items():
        if name == key and corruption in ("missing",):
            continue
        expected = array if not (name == key and corruption == "int") else \
            array.astype(np.int64).astype(np.float32)
        if name == key and corruption == "transposed":
            expected = array.T
        np.testing.assert_array_equal(reloaded[name], expected)


@pytest.mark.parametrize("grads", [False, True])
def test_torch_state_dict_loads_into_torch_and_back(grads):
    torch = pytest.importorskip("torch")
    model = interop_model()
    reference = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LSTM(4, 2),
                                    torch.nn.LayerNorm(2), torch.nn.BatchNorm1d(2))
    state = interop.torch_state_dict(model, grads=grads)
    if grads:
        assert set(state) == {name for name, _ in reference.named_parameters()}
        return
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    back = interop_model()
    for p in back.parameters():
        p.data[...] = 0
    with strict():
        interop.load_torch_state_dict(back, {k: v.detach().numpy() for k, v in
                                             reference.state_dict().items()})
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], array)
    tensor = dict(reference.named_parameters())["0.weight"]
    status, error = outcome("load_torch_state_dict", lambda: interop.load_torch_state_dict(
        back, dict(state, **{"0.weight": tensor})))  # requires grad: no .numpy()
    assert status == "error" and "detach" in str(error)
    status, error = outcome("load_torch_state_dict", lambda: interop.load_torch_state_dict(
        back, dict(state, **{"0.weight": tensor.detach().to(torch.bfloat16)})))
    assert status == "error"


@FUZZ
@given(module=st.sampled_from(ODD_VALUES + [L.Linear, {"0.weight": np.ones(2)}]))
def test_interop_refuses_what_is_not_a_module(module):
    for call in (lambda: interop.torch_state_dict(module),
                 lambda: interop.load_torch_state_dict(module, {})):
        status, _ = outcome(("torch_state_dict", "load_torch_state_dict"), call)
        assert status == "error"


# ----------------------------------------------------------------------------- distributed
@SEQ_FUZZ
@given(data=st.data())
def test_collectives_in_a_world_of_one_on_drawn_arrays(data):
    assert not dist.is_initialized()
    read_only = np.ones(3)
    read_only.flags.writeable = False
    x = data.draw(st.one_of(arrays(), st.sampled_from(ODD_VALUES + [
        read_only, np.ones(3, ">f8"), np.float32(1.0)])))
    op = data.draw(st.sampled_from(list(dist.OPS) + ["prod", None, "SUM", 1]))
    root = data.draw(st.sampled_from([0, np.int64(0), 1, -1, True, None, 0.0, 2 ** 63]))
    copy = np.array(x, copy=True) if isinstance(x, np.ndarray) else None
    good = (isinstance(x, np.ndarray) and x.dtype.kind in "iuf" and x.flags.c_contiguous
            and x.flags.writeable and x.dtype.isnative)
    for name, call, ok in (
            ("distributed.all_reduce", lambda: dist.all_reduce(x, op), good and op in dist.OPS
             and (op != "mean" or x.dtype.kind == "f")),
            ("distributed.all_reduce", lambda: dist.start_all_reduce(x, op).wait(),
             good and op in dist.OPS and (op != "mean" or x.dtype.kind == "f")),
            ("distributed.broadcast", lambda: dist.broadcast(x, root),
             good and not isinstance(root, bool) and root in (0,) and not isinstance(root, float))):
        status, result = outcome(name, call)
        assert status == ("ok" if ok else "error"), (name, x, op, root, result)
        if status == "ok":  # one process: the input itself, unchanged
            assert result is x
            np.testing.assert_array_equal(x, copy)
    text_value = data.draw(st.sampled_from(ODD_VALUES + ["héllo", ""]))
    status, gathered = outcome("distributed.all_gather_text",
                               lambda: dist.all_gather_text(text_value))
    assert status == ("ok" if isinstance(text_value, str) else "error")
    if status == "ok":
        assert gathered == [text_value]


@SEQ_FUZZ
@given(data=st.data())
def test_data_parallel_in_a_world_of_one_on_drawn_arguments(data):
    kwargs = dict(bucket_mb=25, overlap=True)
    key = data.draw(st.sampled_from(sorted(kwargs) + ["model"]))
    value = data.draw(st.sampled_from(ODD_VALUES + [1e-6, 1e300]))
    minidl.seed(0)
    model = L.Sequential(L.Linear(3, 4), L.Tanh(), L.Linear(4, 2))
    if key == "model":
        model = value
    else:
        kwargs[key] = value
    status, wrapped = outcome("DataParallel", lambda: dist.DataParallel(model, **kwargs))
    kinds = dict(bucket_mb="real", overlap="bool", model="module")
    if key == "model" or wrong_kind(kinds[key], value):
        assert status == "error", f"DataParallel({key}={value!r}) was accepted"
    if status == "error":
        return
    x = random((data.draw(st.integers(0, 3)), 3), np.float32)
    y = wrapped(x)
    dy = random(y.shape, np.float32, seed=2)
    dx = wrapped.backward(dy)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    np.testing.assert_array_equal(model(x), y)
    np.testing.assert_array_equal(model.backward(dy), dx)
    for grad, param in zip(grads, model.parameters()):
        np.testing.assert_array_equal(grad, param.grad)


AFTER_INIT = """
import warnings
import numpy as np
import minidl.distributed as dist
warnings.simplefilter("error")
dist.init("mpi")
assert dist.is_initialized() and dist.world_size() == 1 and dist.rank() == 0
rng = np.random.default_rng(0)
cases = [np.ones(3, np.float32), rng.standard_normal((2, 0, 3)), np.array(2.5), np.arange(6),
         np.ones(4, np.uint8), np.ones(3, bool), np.ones(3, complex), np.ones(4)[::2], [1.0],
         np.ones(3, object), np.asfortranarray(np.ones((2, 3))), np.float64(1.0),
         np.ones(3, ">f8"), np.ones((2, 3))[0]]
cases[-1].flags.writeable = False  # MPI failed with a BufferError on these three
for x in cases:
    for op in ["sum", "mean", "max", "min", "prod", None]:
        for call in (lambda: dist.all_reduce(x, op), lambda: dist.start_all_reduce(x, op).wait(),
                     lambda: dist.broadcast(x, 0 if op else 1)):
            copy = np.array(x, copy=True)
            try:
                result = call()
            except (ValueError, TypeError, RuntimeError) as error:
                assert "distributed" in str(error), error
                continue
            assert result is x and np.array_equal(x, copy), (x, op)
            assert isinstance(x, np.ndarray) and x.dtype.kind in "iuf", x
for text in ["abc", "", "h\\u00e9"]:
    assert dist.all_gather_text(text) == [text]
try:
    dist.all_gather_text(5)
    raise AssertionError("all_gather_text(5) was accepted")
except TypeError as error:
    assert "all_gather_text" in str(error)
import minidl.layers as L
model = L.Linear(3, 2)
wrapped = dist.DataParallel(model, bucket_mb=1e-6)
x = rng.standard_normal((4, 3)).astype(np.float32)
dy = rng.standard_normal((4, 2)).astype(np.float32)
y, dx = wrapped(x), None
dx = wrapped.backward(dy)
grads = [p.grad.copy() for p in model.parameters()]
model.zero_grad()
assert np.array_equal(model(x), y) and np.array_equal(model.backward(dy), dx)
assert all(np.array_equal(g, p.grad) for g, p in zip(grads, model.parameters()))
print("PASS after-init")
"""


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py")
def test_collectives_after_init_in_one_process_without_mpiexec():
    """init() in a plain ``python`` process (MPI's singleton start, no mpiexec): a world of
    one that goes through MPI; the same rule for odd arrays and ops."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, MINIDL_DEVICE="cpu", OPENBLAS_NUM_THREADS="1")
    for variable in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"):
        env.pop(variable, None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(AFTER_INIT)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "PASS after-init" in done.stdout, done.stdout + done.stderr


# ----------------------------------------------------------------------------- regressions
def raises(kind, match, call):
    """``call`` raises ``kind`` matching ``match``, with warnings as errors."""
    with strict(), pytest.raises(kind, match=match):
        call()


def test_regressions_found_by_fuzzing_the_sequence_layers():
    f32 = np.float32
    norm = L.GroupNorm(2, 4)  # N = 0 failed to reshape; an empty spatial axis warned
    y = norm(np.zeros((0, 4, 3), f32))
    assert y.shape == (0, 4, 3) and norm.backward(y).shape == (0, 4, 3)
    assert not norm.weight.grad.any()
    raises(ValueError, r"GroupNorm: .*empty spatial axis", lambda: norm(np.ones((2, 4, 0), f32)))
    for cls in (L.RNN, L.LSTM, L.GRU):  # num_layers=2**63 looped for ever
        raises(ValueError, f"{cls.__name__}: the sizes are too large",
               lambda: cls(3, 4, num_layers=2 ** 63))
    raises(ValueError, "GRU: the state h contains NaN",  # a NaN state was used
           lambda: L.GRU(3, 2)(np.ones((2, 1, 3), f32), np.full((1, 1, 2), np.nan, f32)))
    attention, x = L.MultiheadAttention(4, 2), random((3, 2, 4), f32)
    for flag in ("need_weights", "average_attn_weights", "is_causal"):  # were accepted
        raises(TypeError, f"MultiheadAttention: {flag} must be True or False",
               lambda: attention(x, **{flag: "no"}))
    raises(ValueError, "MultiheadAttention: key contains NaN",
           lambda: attention(x, np.full((3, 2, 4), np.nan, f32)))
    raises(ValueError, "MultiheadAttention: some queries have no key",  # RuntimeWarning, NaN
           lambda: attention(x, key_padding_mask=np.ones((2, 3), bool)))
    raises(ValueError, "MultiheadAttention: attn_mask holds NaN or \\+inf",  # +inf - inf
           lambda: attention(x, attn_mask=np.full((3, 3), np.inf, f32),
                             key_padding_mask=np.eye(2, 3, dtype=bool)))


def test_regressions_found_by_fuzzing_gpt_text_clip_interop_and_distributed():
    f32 = np.float32
    model = GPT(**GPT_ARGS)
    for shape in ((0, 3), (2, 0)):  # backward failed to reshape
        logits = model(np.zeros(shape, np.int64))
        assert model.backward(np.zeros_like(logits)) is None
    raises(ValueError, "GPT: the sizes are too large", lambda: GPT(**dict(GPT_ARGS,
                                                                          n_layer=2 ** 63)))
    idx = np.array([[1]], np.uint8)
    for kwargs, kind in ((dict(temperature=0), ValueError), (dict(temperature=None), TypeError),
                         (dict(top_k=0), ValueError), (dict(seed="x"), TypeError),
                         (dict(max_new_tokens=1.5), TypeError)):
        raises(kind, "GPT.generate", lambda: model.generate(idx, **dict(dict(
            max_new_tokens=2), **kwargs)))
    raises(ValueError, "GPT.generate: expected at least one token",
           lambda: model.generate(np.zeros((1, 0), np.int64), 2))
    assert model.generate(idx, 2, temperature=1e-30, seed=0).dtype == np.int64
    vocab = text.CharVocab("hello")
    raises(TypeError, "CharVocab.encode: expected a str", lambda: vocab.encode(None))
    raises(TypeError, "CharVocab.decode: expected integer", lambda: vocab.decode([True]))
    raises(TypeError, "CharVocab.decode: expected integer", lambda: vocab.decode([[0], [1, 2]]))
    raises(TypeError, "split_text: expected a sequence", lambda: text.split_text(5))
    raises(TypeError, "BlockSampler: seed", lambda: text.BlockSampler(np.arange(9), 3, 2, "x"))
    raises(ValueError, "BlockSampler: batch_size",
           lambda: text.BlockSampler(np.arange(9), 3, 2 ** 63))
    big = Param(np.zeros(3, f32))  # the float32 square overflowed: warning, no clipping
    big.grad[...] = 1e30
    with strict():
        total = clip_grad_norm_([big], 1.0)
    np.testing.assert_allclose(total, math.sqrt(3) * 1e30, rtol=1e-6)
    np.testing.assert_allclose(big.grad, 1 / math.sqrt(3), rtol=1e-5)
    big.grad[...] = [0.5, 0.25, 0.0]  # a huge norm_type underflowed to a norm of 0
    assert clip_grad_norm_([big], 10.0, norm_type=2 ** 63) == 0.5
    assert clip_grad_norm_([big], 10.0, norm_type=np.float32("inf")) == 0.5
    big.grad[0] = np.inf  # scaled by 0 as in torch (inf * 0 = NaN), without a warning
    with strict():
        assert clip_grad_norm_([big], 1.0) == math.inf
    assert np.isnan(big.grad[0]) and big.grad[1] == 0.0
    raises(TypeError, "error_if_nonfinite must be True or False",
           lambda: clip_grad_norm_([big], 1.0, error_if_nonfinite=None))
    raises(TypeError, "clip_grad_value_: expected Params of floats",
           lambda: clip_grad_value_([Param(np.ones(3, np.int64))], 0.5))
    linear = L.Linear(2, 2)
    raises(TypeError, "torch_state_dict: expected a minidl Module",
           lambda: interop.torch_state_dict(None))
    raises(TypeError, "torch_state_dict: grads must be True or False",
           lambda: interop.torch_state_dict(linear, grads="x"))
    raises(TypeError, "load_torch_state_dict: strict must be True or False",
           lambda: interop.load_torch_state_dict(linear, {}, strict=None))
    state = dict(interop.torch_state_dict(linear))
    state[5] = np.ones(2)  # a non-str key: the message's join raised a bare TypeError
    raises(ValueError, "(?s)load_torch_state_dict: .*unexpected keys: 5",
           lambda: interop.load_torch_state_dict(linear, state))
    raises(TypeError, "load_torch_state_dict: weight: cannot convert",
           lambda: interop.load_torch_state_dict(linear, {"weight": [[1.0], [1.0, 2.0]]}))
    raises(TypeError, "all_gather_text: expected a str", lambda: dist.all_gather_text(5))
    read_only = np.ones(3)  # after init, MPI raised BufferError on these: refused before too
    read_only.flags.writeable = False
    for x, kind in ((np.float64(1.0), TypeError), (np.ones(3, ">f8"), TypeError),
                    (read_only, ValueError)):
        raises(kind, "distributed.all_reduce", lambda: dist.all_reduce(x))
    little = Param(np.zeros(3, np.float32))  # squares below 1e-38 underflowed: a norm of 0
    little.grad[...] = 1e-30
    np.testing.assert_allclose(clip_grad_norm_([little], 1.0), math.sqrt(3) * 1e-30, rtol=1e-6)


def test_regressions_found_by_fuzzing_the_sequence_losses():
    loss_fn = losses.CrossEntropyLoss(label_smoothing=np.float32(0.25))  # refused before
    assert loss_fn.label_smoothing == 0.25
    raises(TypeError, "CrossEntropyLoss: label_smoothing",
           lambda: losses.CrossEntropyLoss(label_smoothing=None))
    raises(ValueError, "MultiMarginLoss: expected weight as finite",  # gave a NaN loss
           lambda: losses.MultiMarginLoss(weight=np.array([1.0, np.nan, 1.0])))
    raises(ValueError, "MultiMarginLoss: expected weight as finite",
           lambda: losses.MultiMarginLoss(weight=np.ones((3, 1))))
    raises(ValueError, "MultiMarginLoss: margin 1e\\+300 is beyond the range of float32",
           lambda: losses.MultiMarginLoss(margin=1e300)(np.zeros((2, 3), np.float32),
                                                        np.array([0, 1])))

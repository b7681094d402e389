"""Contracts of the sequence layers (Embedding, LayerNorm, GroupNorm, RNN/LSTM/GRU,
MultiheadAttention, TransformerEncoderLayer) that survived a mutmut run (issue 12):
the gradient checks pinned the formulas, not these.

* A bad constructor argument is the right exception type, and the message starts with
  the class and names the argument (mutants dropping or rewriting either survived).
* Range limits sit where PyTorch puts them (``padding_idx`` in [-n, n-1], dropout in
  [0, 1), eps > 0): mutants moving a bound by one survived.
* Defaults and initialisation are PyTorch's: ``repr`` of a default layer equals
  PyTorch's, Embedding starts N(0, 1), biases start at zero, the encoder layer's
  defaults (dim_feedforward=2048, dropout=0.1, eps=1e-5, relu).
* A second backward ACCUMULATES into every parameter gradient.
* Bad inputs, states, masks and output gradients: the right type, the class (or
  ``Class.backward``) first, then what was expected and what was given.
* Behaviour no gradient check sees: inverted dropout between recurrent layers (values and
  backward), dropout only in training, ``is_causal`` = the causal mask, ``batch_first`` =
  the same layer on swapped axes, LSTM state parts left as None are zeros, float32 stays
  float32 with float64 masks, an overwritten output does not change the backward.
* Two bugs found on the way (TransformerEncoderLayer's own argument names in its errors,
  LayerNorm's bias checked without affine parameters) are pinned at the end.
"""
import re

import numpy as np
import pytest

from minidl import layers as L


def assert_names(excinfo, owner, label):
    """The message starts with ``owner:`` and names the argument ``label`` as a word."""
    message = str(excinfo.value)
    assert message.startswith(f"{owner}: "), message
    assert re.search(rf"(?<![\w]){re.escape(label)}(?![\w])", message), message


# --------------------------------------------------------------------------- constructors
RECURRENT = [L.RNN, L.LSTM, L.GRU]

BAD_ARGUMENTS = [
    # (constructor, error, owner, argument named)
    (lambda: L.Embedding(0, 3), ValueError, "Embedding", "num_embeddings"),
    (lambda: L.Embedding(2.0, 3), TypeError, "Embedding", "num_embeddings"),
    (lambda: L.Embedding(5, 0), ValueError, "Embedding", "embedding_dim"),
    (lambda: L.Embedding(5, "3"), TypeError, "Embedding", "embedding_dim"),
    (lambda: L.Embedding(5, 3, padding_idx=5), ValueError, "Embedding", "padding_idx"),
    (lambda: L.Embedding(5, 3, padding_idx=-6), ValueError, "Embedding", "padding_idx"),
    (lambda: L.Embedding(5, 3, padding_idx=1.0), TypeError, "Embedding", "padding_idx"),
    (lambda: L.LayerNorm(0), ValueError, "LayerNorm", "normalized_shape"),
    (lambda: L.LayerNorm((4, 0)), ValueError, "LayerNorm", "normalized_shape"),
    (lambda: L.LayerNorm("4"), TypeError, "LayerNorm", "normalized_shape"),
    (lambda: L.LayerNorm(()), TypeError, "LayerNorm", "normalized_shape"),
    (lambda: L.LayerNorm(True), TypeError, "LayerNorm", "normalized_shape"),
    (lambda: L.LayerNorm((4, 2.0)), TypeError, "LayerNorm", "normalized_shape"),
    (lambda: L.LayerNorm(4, eps=0.0), ValueError, "LayerNorm", "eps"),
    (lambda: L.LayerNorm(4, eps="1e-5"), TypeError, "LayerNorm", "eps"),
    (lambda: L.LayerNorm(4, elementwise_affine=1), TypeError, "LayerNorm", "elementwise_affine"),
    (lambda: L.LayerNorm(4, bias=1), TypeError, "LayerNorm", "bias"),
    (lambda: L.GroupNorm(0, 4), ValueError, "GroupNorm", "num_groups"),
    (lambda: L.GroupNorm(2, 0), ValueError, "GroupNorm", "num_channels"),
    (lambda: L.GroupNorm(2.0, 4), TypeError, "GroupNorm", "num_groups"),
    (lambda: L.GroupNorm(2, 4.0), TypeError, "GroupNorm", "num_channels"),
    (lambda: L.GroupNorm(3, 4), ValueError, "GroupNorm", "num_groups"),
    (lambda: L.GroupNorm(3, 4), ValueError, "GroupNorm", "num_channels"),
    (lambda: L.GroupNorm(2, 4, eps=0.0), ValueError, "GroupNorm", "eps"),
    (lambda: L.GroupNorm(2, 4, affine=1), TypeError, "GroupNorm", "affine"),
    (lambda: L.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "RNN", "nonlinearity"),
    (lambda: L.MultiheadAttention(0, 1), ValueError, "MultiheadAttention", "embed_dim"),
    (lambda: L.MultiheadAttention(4.0, 1), TypeError, "MultiheadAttention", "embed_dim"),
    (lambda: L.MultiheadAttention(4, 0), ValueError, "MultiheadAttention", "num_heads"),
    (lambda: L.MultiheadAttention(6, 4), ValueError, "MultiheadAttention", "num_heads"),
    (lambda: L.MultiheadAttention(6, 4), ValueError, "MultiheadAttention", "embed_dim"),
    (lambda: L.MultiheadAttention(4, 2, dropout=1.0), ValueError, "MultiheadAttention",
     "dropout"),
    (lambda: L.MultiheadAttention(4, 2, dropout=-0.1), ValueError, "MultiheadAttention",
     "dropout"),
    (lambda: L.MultiheadAttention(4, 2, bias=1), TypeError, "MultiheadAttention", "bias"),
    (lambda: L.MultiheadAttention(4, 2, batch_first=1), TypeError, "MultiheadAttention",
     "batch_first"),
    (lambda: L.TransformerEncoderLayer(0, 1), ValueError, "TransformerEncoderLayer", "d_model"),
    (lambda: L.TransformerEncoderLayer(8.0, 2), TypeError, "TransformerEncoderLayer",
     "d_model"),
    (lambda: L.TransformerEncoderLayer(8, 2, 0), ValueError, "TransformerEncoderLayer",
     "dim_feedforward"),
    (lambda: L.TransformerEncoderLayer(8, 2, norm_first=1), TypeError,
     "TransformerEncoderLayer", "norm_first"),
    (lambda: L.TransformerEncoderLayer(8, 2, activation="tanh"), ValueError,
     "TransformerEncoderLayer", "activation"),
] + [
    (lambda cls=cls, kwargs=kwargs: cls(**{"input_size": 3, "hidden_size": 4, **kwargs}),
     error, cls.__name__, label)
    for cls in RECURRENT
    for kwargs, error, label in [
        ({"input_size": 0}, ValueError, "input_size"),
        ({"input_size": 2.0}, TypeError, "input_size"),
        ({"hidden_size": 0}, ValueError, "hidden_size"),
        ({"num_layers": 0}, ValueError, "num_layers"),
        ({"num_layers": 1.0}, TypeError, "num_layers"),
        ({"bias": 1}, TypeError, "bias"),
        ({"batch_first": "yes"}, TypeError, "batch_first"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"dropout": -0.5}, ValueError, "dropout"),
        ({"dropout": "0.1"}, TypeError, "dropout"),
        ({"bidirectional": 1}, TypeError, "bidirectional"),
    ]
]


@pytest.mark.parametrize("make, error, owner, label", BAD_ARGUMENTS)
def test_a_bad_constructor_argument_names_the_class_and_the_argument(make, error, owner, label):
    with pytest.raises(error) as excinfo:
        make()
    assert_names(excinfo, owner, label)


@pytest.mark.parametrize("make", [
    lambda: L.TransformerEncoderLayer(8, 3),                   # nhead must divide d_model
    lambda: L.TransformerEncoderLayer(8, 2, dropout=1.0),
    lambda: L.TransformerEncoderLayer(8, 2, layer_norm_eps=0.0),
])
def test_encoder_layer_arguments_checked_by_its_sublayers_are_value_errors(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("make, attribute, expected", [
    (lambda: L.Embedding(5, 3, padding_idx=4), "padding_idx", 4),     # the last row
    (lambda: L.Embedding(5, 3, padding_idx=-5), "padding_idx", 0),    # counts from the end
    (lambda: L.Embedding(5, 3, padding_idx=-1), "padding_idx", 4),
    (lambda: L.Embedding(5, 3, padding_idx=0), "padding_idx", 0),
    (lambda: L.Embedding(1, 1), "num_embeddings", 1),
    (lambda: L.LayerNorm(4, eps=1e-12), "eps", 1e-12),
    (lambda: L.GroupNorm(1, 1, eps=1e-12), "eps", 1e-12),
    (lambda: L.GroupNorm(4, 4), "num_groups", 4),
    (lambda: L.LSTM(1, 1, num_layers=2, dropout=0.0), "dropout", 0.0),
    (lambda: L.GRU(1, 1, num_layers=2, dropout=0.999), "dropout", 0.999),
    (lambda: L.MultiheadAttention(4, 4, dropout=0.0), "head_dim", 1),
    (lambda: L.MultiheadAttention(4, 1, dropout=0.999), "dropout", 0.999),
])
def test_arguments_at_the_edge_of_their_range_are_accepted(make, attribute, expected):
    assert getattr(make(), attribute) == expected


def test_the_padding_row_of_a_negative_padding_idx_is_zero_and_gets_no_gradient():
    layer = L.Embedding(5, 3, padding_idx=-2).to(np.float64)
    assert not layer.weight.data[3].any() and layer.weight.data[[0, 1, 2, 4]].all()
    indices = np.array([[3, 1], [3, 3]])
    layer(indices)
    layer.backward(np.ones((2, 2, 3)))
    np.testing.assert_array_equal(layer.weight.grad.sum(axis=1), [0, 3, 0, 0, 0])


# --------------------------------------------------------------------------- repr
TORCH_REPRS = [
    (lambda: L.Embedding(10, 3), "Embedding(10, 3)"),
    (lambda: L.Embedding(10, 3, padding_idx=-1), "Embedding(10, 3, padding_idx=9)"),
    (lambda: L.LayerNorm(4), "LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)"),
    (lambda: L.LayerNorm((4, 5), eps=1e-3, bias=False),
     "LayerNorm((4, 5), eps=0.001, elementwise_affine=True, bias=False)"),
    (lambda: L.LayerNorm([2, 3], elementwise_affine=False),
     "LayerNorm((2, 3), eps=1e-05, elementwise_affine=False, bias=False)"),
    (lambda: L.LSTM(10, 20), "LSTM(10, 20)"),
    (lambda: L.LSTM(10, 20, num_layers=2, batch_first=True),
     "LSTM(10, 20, num_layers=2, batch_first=True)"),
    (lambda: L.GRU(3, 4, bias=False, dropout=0.5, num_layers=3),
     "GRU(3, 4, num_layers=3, bias=False, dropout=0.5)"),
    (lambda: L.RNN(3, 4, bidirectional=True), "RNN(3, 4, bidirectional=True)"),
    (lambda: L.RNN(3, 4, 2, "tanh", False, True, 0.25, True),
     "RNN(3, 4, num_layers=2, bias=False, batch_first=True, dropout=0.25, bidirectional=True)"),
]


@pytest.mark.parametrize("make, expected", TORCH_REPRS)
def test_repr_is_pytorchs(make, expected):
    """The expected strings are what PyTorch 2 prints for the same layer."""
    assert repr(make()) == expected


def test_repr_matches_torch_for_the_same_constructor_calls():
    torch = pytest.importorskip("torch")
    pairs = [
        (L.Embedding(7, 2, padding_idx=3), torch.nn.Embedding(7, 2, padding_idx=3)),
        (L.LayerNorm((3, 2), eps=0.01), torch.nn.LayerNorm((3, 2), eps=0.01)),
        (L.LSTM(5, 6, 2, bidirectional=True), torch.nn.LSTM(5, 6, 2, bidirectional=True)),
        (L.GRU(5, 6, batch_first=True), torch.nn.GRU(5, 6, batch_first=True)),
        (L.RNN(5, 6, dropout=0.5, num_layers=2), torch.nn.RNN(5, 6, dropout=0.5, num_layers=2)),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


def test_repr_of_our_extensions():
    """PyTorch omits these; minidl prints them only when they are not the default."""
    assert repr(L.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
    assert repr(L.RNN(3, 4, nonlinearity="tanh")) == "RNN(3, 4)"
    assert repr(L.GroupNorm(2, 4)) == "GroupNorm(2, 4, eps=1e-05, affine=True)"
    assert repr(L.GroupNorm(1, 3, eps=0.5, affine=False)) == \
        "GroupNorm(1, 3, eps=0.5, affine=False)"


def test_extra_repr_of_the_attention_layers_lists_their_settings():
    """Their repr shows the submodules (as PyTorch's does); ``extra_repr()`` the rest."""
    assert L.MultiheadAttention(8, 2).extra_repr() == \
        "embed_dim=8, num_heads=2, dropout=0.0, batch_first=False"
    assert L.MultiheadAttention(6, 3, dropout=0.5, batch_first=True).extra_repr() == \
        "embed_dim=6, num_heads=3, dropout=0.5, batch_first=True"
    assert L.TransformerEncoderLayer(8, 2).extra_repr() == "d_model=8, norm_first=False"
    assert L.TransformerEncoderLayer(4, 1, norm_first=True).extra_repr() == \
        "d_model=4, norm_first=True"


# --------------------------------------------------------------------------- defaults
def test_embedding_starts_standard_normal_as_in_pytorch():
    weight = L.Embedding(400, 50).weight.data
    assert abs(weight.mean()) < 0.03 and abs(weight.std() - 1.0) < 0.03


@pytest.mark.parametrize("cls", RECURRENT)
def test_recurrent_weights_start_uniform_over_the_whole_pytorch_range(cls):
    """U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias: centred, reaching both ends."""
    hidden = 64
    bound = 1 / np.sqrt(hidden)
    layer = cls(32, hidden, num_layers=2, bidirectional=True)
    values = np.concatenate([param.data.ravel() for param in layer.parameters()])
    assert values.min() >= -bound and values.max() <= bound
    assert values.min() < -0.99 * bound and values.max() > 0.99 * bound
    assert abs(values.mean()) < 0.02 * bound


def test_normalization_parameters_start_at_one_and_zero_with_pytorchs_eps():
    for layer, shape in ((L.LayerNorm((2, 3)), (2, 3)), (L.GroupNorm(2, 4), (4,))):
        assert layer.eps == 1e-5
        np.testing.assert_array_equal(layer.weight.data, np.ones(shape))
        np.testing.assert_array_equal(layer.bias.data, np.zeros(shape))
    assert L.GroupNorm(2, 4).affine is True
    assert L.LayerNorm(3).elementwise_affine is True
    assert L.LayerNorm(3, elementwise_affine=False).weight is None
    assert L.LayerNorm(3, elementwise_affine=False).bias is None
    for layer in (L.LayerNorm(3, elementwise_affine=False), L.GroupNorm(2, 4, affine=False)):
        assert layer.weight is None and layer.bias is None
        assert list(layer.state_dict()) == [] and list(layer.parameters()) == []


def test_attention_starts_xavier_uniform_with_zero_biases_as_in_pytorch():
    embed = 64
    mha = L.MultiheadAttention(embed, 4)
    assert (mha.dropout, mha.batch_first) == (0.0, False)
    bound = np.sqrt(6 / (embed + 3 * embed))  # xavier_uniform_ on (3E, E)
    weight = mha.in_proj_weight.data
    assert weight.shape == (3 * embed, embed)
    assert np.abs(weight).max() <= bound and abs(weight.std() - bound / np.sqrt(3)) < 0.05 * bound
    np.testing.assert_array_equal(mha.in_proj_bias.data, np.zeros(3 * embed))
    np.testing.assert_array_equal(mha.out_proj.bias.data, np.zeros(embed))
    assert mha.out_proj.bias is not None
    unbiased = L.MultiheadAttention(embed, 4, bias=False)
    assert unbiased.in_proj_bias is None and unbiased.out_proj.bias is None


def test_encoder_layer_defaults_are_pytorchs():
    """dim_feedforward=2048, dropout=0.1 everywhere, relu, eps=1e-5, post-LN, (S, N, E)."""
    layer = L.TransformerEncoderLayer(8, 2)
    assert layer.linear1.weight.data.size == 8 * 2048 and layer.linear2.weight.data.size == 8 * 2048
    assert [d.p for d in (layer.dropout, layer.dropout1, layer.dropout2)] == [0.1] * 3
    assert layer.self_attn.dropout == 0.1 and layer.self_attn.batch_first is False
    assert layer.self_attn.num_heads == 2
    assert isinstance(layer.activation, L.ReLU) and layer.norm_first is False
    assert layer.norm1.eps == layer.norm2.eps == 1e-5
    custom = L.TransformerEncoderLayer(8, 4, 16, 0.0, "gelu", True, True, 1e-3)
    assert isinstance(custom.activation, L.GELU) and custom.norm_first is True
    assert custom.self_attn.batch_first is True and custom.self_attn.num_heads == 4
    assert custom.norm1.eps == custom.norm2.eps == 1e-3
    assert [d.p for d in (custom.dropout, custom.dropout1, custom.dropout2)] == [0.0] * 3


# --------------------------------------------------------------------------- accumulation
def _twice(layer, run):
    """Run forward+backward twice on zeroed grads; each grad must be twice one run's."""
    layer.zero_grad()
    run()
    once = {name: p.grad.copy() for name, p in layer.named_parameters()}
    run()
    for name, param in layer.named_parameters():
        assert np.abs(once[name]).max() > 0, name
        np.testing.assert_allclose(param.grad, 2 * once[name], rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def _randomized(layer, seed=0):
    draw = np.random.default_rng(seed)
    layer = layer.to(np.float64)
    for param in layer.parameters():
        param.data[...] = draw.uniform(-0.8, 0.8, param.shape)
    return layer


@pytest.mark.parametrize("make, shape", [
    (lambda: L.LayerNorm(4), (3, 4)),
    (lambda: L.LayerNorm((2, 3), bias=False), (2, 2, 3)),
    (lambda: L.GroupNorm(2, 4), (2, 4, 3)),
    (lambda: L.TransformerEncoderLayer(4, 2, 6, dropout=0.0), (3, 2, 4)),
    (lambda: L.TransformerEncoderLayer(4, 2, 6, dropout=0.0, norm_first=True), (3, 2, 4)),
])
def test_a_second_backward_accumulates_float_input_layers(make, shape):
    layer = _randomized(make())
    draw = np.random.default_rng(1)
    x = draw.standard_normal(shape)
    dy = draw.standard_normal(layer(x).shape)
    layer.drop_saved()

    def run():
        layer(x)
        layer.backward(dy)
    _twice(layer, run)


def test_a_second_backward_accumulates_embedding():
    layer = L.Embedding(5, 3, padding_idx=2).to(np.float64)
    indices = np.array([[0, 1, 1], [4, 2, 0]])
    dy = np.random.default_rng(1).standard_normal((2, 3, 3))

    def run():
        layer(indices)
        layer.backward(dy)
    layer.zero_grad()
    run()
    once = layer.weight.grad.copy()
    run()
    np.testing.assert_allclose(layer.weight.grad, 2 * once, rtol=1e-12)
    assert not layer.weight.grad[2].any() and np.abs(once[[0, 1, 4]]).min() > 0


@pytest.mark.parametrize("cls", RECURRENT)
def test_a_second_backward_accumulates_recurrent(cls):
    layer = _randomized(cls(2, 3, num_layers=2, bidirectional=True))
    draw = np.random.default_rng(1)
    x = draw.standard_normal((4, 2, 2))
    d_output = draw.standard_normal((4, 2, 6))

    def run():
        layer(x)
        layer.backward(d_output)
    _twice(layer, run)


@pytest.mark.parametrize("self_attention", [True, False])
def test_a_second_backward_accumulates_attention(self_attention):
    layer = _randomized(L.MultiheadAttention(4, 2))
    draw = np.random.default_rng(1)
    query, key = draw.standard_normal((3, 2, 4)), draw.standard_normal((5, 2, 4))
    value = draw.standard_normal((5, 2, 4))
    dy = draw.standard_normal((3, 2, 4))

    def run():
        if self_attention:
            layer(query)
        else:
            layer(query, key, value)
        layer.backward(dy)
    _twice(layer, run)


# --------------------------------------------------------------------------- bad inputs
F32 = np.float32


def _lstm_pair_of(h, c):
    return lambda: L.LSTM(3, 4, num_layers=2)(np.zeros((5, 2, 3), F32), (h, c))


H0 = np.zeros((2, 2, 4), F32)

BAD_CALLS = [
    # (call, error, owner, what the message must name)
    (lambda: L.Embedding(3, 2)(np.zeros(4, F32)), TypeError, "Embedding", "float32"),
    (lambda: L.Embedding(3, 2)([0, 1]), TypeError, "Embedding", "list"),
    (lambda: L.Embedding(3, 2)(np.array([0, 3])), ValueError, "Embedding", "[0, 2]"),
    (lambda: L.Embedding(3, 2)(np.array([-1, 0])), ValueError, "Embedding", "-1"),
    (lambda: L.LayerNorm((2, 3))(np.zeros(3, F32)), ValueError, "LayerNorm", "(..., 2, 3)"),
    (lambda: L.LayerNorm((2, 3))(np.zeros((3, 3), F32)), ValueError, "LayerNorm", "(3, 3)"),
    (lambda: L.LSTM(3, 4, num_layers=2)(np.zeros((5, 2, 3), F32), H0), TypeError, "LSTM",
     "(h, c)"),
    (lambda: L.LSTM(3, 4, num_layers=2)(np.zeros((5, 2, 3), F32), H0), TypeError, "LSTM",
     "got ndarray"),
    (lambda: L.LayerNorm("4"), TypeError, "LayerNorm", "got '4' (str)"),
    (lambda: L.LayerNorm(()), TypeError, "LayerNorm", "got () (tuple)"),
    (lambda: L.LSTM(3, 4, num_layers=2)(np.zeros((5, 2, 3), F32), (H0,)), TypeError, "LSTM",
     "(h, c)"),
    (lambda: L.LSTM(3, 4, num_layers=2)(np.zeros((5, 2, 3), F32), (H0, H0, H0)), TypeError,
     "LSTM", "(h, c)"),
    (_lstm_pair_of(H0, H0[:1]), ValueError, "LSTM", "state c"),
    (_lstm_pair_of(H0[:, :1], H0), ValueError, "LSTM", "state h"),
    (_lstm_pair_of(H0, H0.astype(np.float64)), TypeError, "LSTM", "state c"),
    (_lstm_pair_of(H0.tolist(), H0), TypeError, "LSTM",
     "the state h as an array of shape (2, 2, 4)"),
    (_lstm_pair_of(H0.astype(np.int32), H0), TypeError, "LSTM", "state h"),
    (lambda: L.GRU(3, 4)(np.zeros((5, 2, 3), F32), np.zeros((1, 2, 4))), TypeError, "GRU",
     "state h"),
    (lambda: L.GRU(3, 4)(np.zeros((5, 2, 3), F32), np.zeros((1, 2, 4))), TypeError, "GRU",
     "got float64 on numpy"),
    (lambda: L.RNN(3, 4, bidirectional=True)(np.zeros((5, 2, 3), F32), np.zeros((1, 2, 4), F32)),
     ValueError, "RNN", "(2, 2, 4)"),
    (lambda: L.GRU(3, 4, batch_first=True)(np.zeros((2, 0, 3), F32)), ValueError, "GRU",
     "(N, T, input_size)"),
    (lambda: L.RNN(3, 4)(np.zeros((0, 2, 3), F32)), ValueError, "RNN", "(T, N, input_size)"),
    (lambda: L.LSTM(3, 4, batch_first=True)(np.zeros((2, 3), F32)), ValueError, "LSTM",
     "shape (N, T, input_size)"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), np.zeros((3, 2, 4))),
     TypeError, "MultiheadAttention", "key"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), np.zeros((3, 2, 4), F32),
                                        np.zeros((3, 2, 4))),
     TypeError, "MultiheadAttention", "value must have query's dtype"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), [[0.0]]), TypeError,
     "MultiheadAttention", "key as an array of shape (S, N, E)"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), np.zeros((3, 2, 4), F32),
                                        np.zeros((3, 4), F32)),
     ValueError, "MultiheadAttention", "value of shape (S, N, E)"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), np.zeros((3, 4), F32)),
     ValueError, "MultiheadAttention", "key of shape (S, N, E)"),
    (lambda: L.MultiheadAttention(4, 2, batch_first=True)(np.zeros((3, 2, 4), F32),
                                                          np.zeros((3, 4), F32)),
     ValueError, "MultiheadAttention", "key of shape (N, S, E)"),
    (lambda: L.MultiheadAttention(4, 2, batch_first=True)(np.zeros((3, 2, 4), F32),
                                                          np.zeros((2, 2, 4), F32)),
     ValueError, "MultiheadAttention", "batch size"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), np.zeros((3, 2, 4), F32),
                                        np.zeros((3, 2, 5), F32)),
     ValueError, "MultiheadAttention", "in value,"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), np.zeros((3, 3, 4), F32)),
     ValueError, "MultiheadAttention", "batch size"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), np.zeros((3, 2, 4), F32),
                                        np.zeros((4, 2, 4), F32)),
     ValueError, "MultiheadAttention", "same shape"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), attn_mask=[[True]]),
     TypeError, "MultiheadAttention", "attn_mask"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32), key_padding_mask=[[True]]),
     TypeError, "MultiheadAttention", "got list"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32),
                                        attn_mask=np.zeros((3, 3), np.int8)),
     TypeError, "MultiheadAttention", "int8"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32),
                                        attn_mask=np.zeros((2, 3, 3), bool)),
     ValueError, "MultiheadAttention", "attn_mask of shape (3, 3) or (4, 3, 3)"),
    (lambda: L.MultiheadAttention(4, 2)(np.zeros((3, 2, 4), F32),
                                        key_padding_mask=np.zeros((3, 2), bool)),
     ValueError, "MultiheadAttention", "key_padding_mask"),
]


@pytest.mark.parametrize("call, error, owner, fragment", BAD_CALLS)
def test_a_bad_input_names_the_class_and_what_is_wrong(call, error, owner, fragment):
    with pytest.raises(error) as excinfo:
        call()
    message = str(excinfo.value)
    assert message.startswith(f"{owner}: ") and fragment in message, message


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
def test_embedding_takes_any_integer_dtype_and_an_empty_index_array(dtype):
    layer = L.Embedding(4, 2)
    indices = np.array([[3, 0], [1, 1]], dtype=dtype)
    np.testing.assert_array_equal(layer(indices), layer.weight.data[indices.astype(np.int64)])
    layer.drop_saved()
    assert layer(np.zeros((0, 3), dtype=dtype)).shape == (0, 3, 2)


def test_layer_norm_takes_an_input_that_is_exactly_the_normalized_shape():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3))
    ours = L.LayerNorm((2, 3)).to(np.float64)(x)
    theirs = torch.nn.LayerNorm((2, 3), dtype=torch.float64)(torch.tensor(x))
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- behaviour
def test_lstm_state_parts_left_as_none_are_zeros_in_and_out():
    lstm = _randomized(L.LSTM(2, 3, num_layers=2))
    draw = np.random.default_rng(3)
    x, h0, c0 = draw.standard_normal((4, 2, 2)), *draw.standard_normal((2, 2, 2, 3))
    d_output, dh, dc = draw.standard_normal((4, 2, 3)), *draw.standard_normal((2, 2, 2, 3))
    zeros = np.zeros_like(h0)
    for hx, explicit, d_state, d_explicit in [((h0, None), (h0, zeros), (dh, None), (dh, zeros)),
                                              ((None, c0), (zeros, c0), (None, dc), (zeros, dc))]:
        results = []
        for state, d_final in ((hx, d_state), (explicit, d_explicit)):
            lstm.zero_grad()
            output, (h_n, c_n) = lstm(x, state)
            dx = lstm.backward(d_output, d_final)
            results.append([output, h_n, c_n, dx, *lstm.grad_initial_state,
                            *(p.grad.copy() for p in lstm.parameters())])
        for got, expected in zip(*results):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", RECURRENT)
@pytest.mark.parametrize("p", [0.25, 0.75])
def test_dropout_between_recurrent_layers_is_inverted_dropout(cls, p):
    """A 2-layer net in training equals layer 0, then ``x * keep / (1 - p)`` with the mask
    minidl's generator draws, then layer 1; backward likewise in reverse."""
    from minidl import backend
    net = _randomized(cls(2, 3, num_layers=2, dropout=p)).train()
    first, second = cls(2, 3).to(np.float64), cls(3, 3).to(np.float64)
    for name, param in net.named_parameters():
        layer = first if name.endswith("_l0") else second
        getattr(layer, name[:-1] + "0").data[...] = param.data
    draw = np.random.default_rng(4)
    x, d_output = draw.standard_normal((5, 2, 2)), draw.standard_normal((5, 2, 3))

    backend.seed(11)
    output, _ = net(x)
    dx = net.backward(d_output)
    backend.seed(11)
    keep = backend.rng().random((5, 2, 3), dtype=np.float64) >= p
    middle, _ = first(x)
    expected, _ = second(middle * keep / (1 - p))
    np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-14)
    expected_dx = first.backward(second.backward(d_output) * keep / (1 - p))
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-14)
    assert not keep.all() and keep.any()


def test_encoder_layer_batch_first_is_the_same_layer_on_swapped_axes():
    draw = np.random.default_rng(5)
    x = draw.standard_normal((4, 3, 8))  # (S, N, E)
    dy = draw.standard_normal((4, 3, 8))
    padding = np.zeros((3, 4), dtype=bool)
    padding[1, 2:] = True
    results = []
    for batch_first in (False, True):
        layer = _randomized(L.TransformerEncoderLayer(8, 2, 6, dropout=0.0,
                                                      batch_first=batch_first), 6)
        src, grad = (x.swapaxes(0, 1), dy.swapaxes(0, 1)) if batch_first else (x, dy)
        y = layer(src, src_key_padding_mask=padding)
        dx = layer.backward(grad)
        if batch_first:
            y, dx = y.swapaxes(0, 1), dx.swapaxes(0, 1)
        results.append((y, dx))
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_is_causal_means_the_causal_mask(norm_first):
    x = np.random.default_rng(7).standard_normal((5, 2, 4))
    make = lambda: _randomized(L.TransformerEncoderLayer(4, 2, 6, dropout=0.0,  # noqa: E731
                                                         norm_first=norm_first), 8)
    causal = make()(x, is_causal=True)
    masked = make()(x, src_mask=np.triu(np.ones((5, 5), dtype=bool), 1))
    unmasked = make()(x)
    np.testing.assert_allclose(causal, masked, rtol=1e-12, atol=1e-14)
    assert not np.allclose(causal, unmasked)
    np.testing.assert_allclose(causal[-1], unmasked[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_first", [False, True])
def test_attention_without_bias_and_with_a_float_padding_mask_matches_torch(batch_first):
    torch = pytest.importorskip("torch")
    e, h, length, source, n = 4, 2, 3, 5, 2
    mha = _randomized(L.MultiheadAttention(e, h, bias=False, batch_first=batch_first), 2)
    t = torch.nn.MultiheadAttention(e, h, bias=False, batch_first=batch_first,
                                    dtype=torch.float64)
    with torch.no_grad():
        t.in_proj_weight.copy_(torch.tensor(mha.in_proj_weight.data))
        t.out_proj.weight.copy_(torch.tensor(mha.out_proj.weight.data.T))
    draw = np.random.default_rng(3)
    shape = (lambda s: (n, s, e)) if batch_first else (lambda s: (s, n, e))
    q, k, v = draw.standard_normal(shape(length)), *(draw.standard_normal(shape(source))
                                                     for _ in range(2))
    padding = draw.standard_normal((n, source))
    attn_mask = draw.random((length, source)) < 0.3
    attn_mask[:, 0] = False
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out, weights = mha(q, k, v, key_padding_mask=padding, attn_mask=attn_mask,
                       average_attn_weights=False)
    t_out, t_weights = t(tq, tk, tv, key_padding_mask=torch.tensor(padding),
                         attn_mask=torch.tensor(attn_mask).double().masked_fill(
                             torch.tensor(attn_mask), float("-inf")),
                         average_attn_weights=False)
    dy = draw.standard_normal(out.shape)
    (t_out * torch.tensor(dy)).sum().backward()
    dq, dk, dv = mha.backward(dy)
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, t_out.detach().numpy(), **close)
    np.testing.assert_allclose(weights, t_weights.detach().numpy(), **close)
    for ours, theirs in ((dq, tq), (dk, tk), (dv, tv)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **close)
    np.testing.assert_allclose(mha.in_proj_weight.grad, t.in_proj_weight.grad.numpy(), **close)
    np.testing.assert_allclose(mha.out_proj.weight.grad, t.out_proj.weight.grad.numpy().T,
                               **close)


def _after_forward(make, x, *args):
    layer = make()
    layer(x, *args)
    return layer


X_SEQ = np.zeros((5, 2, 3), F32)
X_ATT = np.zeros((3, 2, 4), F32)

BAD_BACKWARDS = [
    # (layer after a forward, dy, error, owner, what the message must name)
    (lambda: _after_forward(lambda: L.GRU(3, 4), X_SEQ), np.zeros((5, 2, 4)), TypeError,
     "GRU.backward", "float64"),
    (lambda: _after_forward(lambda: L.LSTM(3, 4, batch_first=True), X_SEQ),
     np.zeros((2, 5, 4), F32), ValueError, "LSTM.backward", "(5, 2, 4)"),
    (lambda: _after_forward(lambda: L.RNN(3, 4, bidirectional=True), X_SEQ),
     np.zeros((5, 2, 4), F32), ValueError, "RNN.backward", "(5, 2, 8)"),
    (lambda: _after_forward(lambda: L.RNN(3, 4), X_SEQ), np.zeros((5, 2, 4)).tolist(),
     TypeError, "RNN.backward", "list"),
    (lambda: _after_forward(lambda: L.MultiheadAttention(4, 2), X_ATT),
     np.zeros((3, 2, 4)), TypeError, "MultiheadAttention.backward", "float64"),
    (lambda: _after_forward(lambda: L.MultiheadAttention(4, 2, batch_first=True), X_ATT),
     np.zeros((2, 3, 4), F32), ValueError, "MultiheadAttention.backward", "(3, 2, 4)"),
    (lambda: _after_forward(lambda: L.MultiheadAttention(4, 2), X_ATT, np.zeros((6, 2, 4), F32)),
     np.zeros((6, 2, 4), F32), ValueError, "MultiheadAttention.backward", "(3, 2, 4)"),
    (lambda: _after_forward(lambda: L.Embedding(4, 3), np.array([[0, 1]])),
     np.zeros((1, 2, 4), F32), ValueError, "Embedding.backward", "(1, 2, 3)"),
    (lambda: _after_forward(lambda: L.LayerNorm(4), X_ATT), np.zeros((3, 2, 4)), TypeError,
     "LayerNorm.backward", "float64"),
    (lambda: _after_forward(lambda: L.TransformerEncoderLayer(4, 2, 6), X_ATT),
     np.zeros((2, 3, 4), F32), ValueError, "TransformerEncoderLayer.backward", "(3, 2, 4)"),
    (lambda: L.TransformerEncoderLayer(4, 2, 6), X_ATT, RuntimeError,
     "TransformerEncoderLayer.backward", "nothing saved"),
    (lambda: L.LSTM(3, 4), X_SEQ, RuntimeError, "LSTM.backward", "nothing saved"),
    (lambda: L.Embedding(3, 4), X_SEQ, RuntimeError, "Embedding.backward", "nothing saved"),
    (lambda: L.MultiheadAttention(4, 2), X_ATT, RuntimeError, "MultiheadAttention.backward",
     "nothing saved"),
]


@pytest.mark.parametrize("make, dy, error, owner, fragment", BAD_BACKWARDS)
def test_a_bad_output_gradient_names_the_layer_and_what_is_wrong(make, dy, error, owner,
                                                                 fragment):
    layer = make()
    with pytest.raises(error) as excinfo:
        layer.backward(dy)
    message = str(excinfo.value)
    assert message.startswith(f"{owner}: ") and fragment in message, message


@pytest.mark.parametrize("make, d_state, fragment", [
    (lambda: L.GRU(3, 4), np.zeros((2, 2, 4), F32), "(1, 2, 4)"),
    (lambda: L.LSTM(3, 4), np.zeros((1, 2, 4), F32), "(h, c)"),
    (lambda: L.LSTM(3, 4), (None, np.zeros((1, 2, 4))), "state c"),
])
def test_a_bad_state_gradient_names_the_layer(make, d_state, fragment):
    layer = make()
    output, _ = layer(X_SEQ)
    with pytest.raises((TypeError, ValueError)) as excinfo:
        layer.backward(np.zeros_like(output), d_state)
    message = str(excinfo.value)
    assert message.startswith(f"{type(layer).__name__}: ") and fragment in message, message


@pytest.mark.parametrize("cls", RECURRENT)
def test_grad_initial_state_is_none_until_a_backward_through_a_given_state(cls):
    layer = cls(3, 4)
    assert layer.grad_initial_state is None
    state = np.ones((1, 2, 4), F32)
    output, _ = layer(X_SEQ, (state, state) if cls is L.LSTM else state)
    layer.backward(np.ones_like(output))
    got = layer.grad_initial_state
    assert all(g.shape == (1, 2, 4) and g.dtype == F32 for g in
               (got if cls is L.LSTM else (got,)))
    output, _ = layer(X_SEQ)
    layer.backward(np.ones_like(output))
    assert layer.grad_initial_state is None


def test_attention_keeps_the_last_weights_and_forgets_saved_values_on_drop():
    mha = L.MultiheadAttention(4, 2)
    assert mha.attn_weights is None
    _, weights = mha(X_ATT, average_attn_weights=False)
    assert mha.attn_weights is weights and weights.shape == (2, 2, 3, 3)
    mha.drop_saved()
    with pytest.raises(RuntimeError, match="^MultiheadAttention.backward: nothing saved"):
        mha.backward(np.zeros_like(X_ATT))


@pytest.mark.parametrize("make", [lambda: L.LayerNorm(4, elementwise_affine=False),
                                  lambda: L.GroupNorm(2, 4, affine=False)])
def test_overwriting_the_output_does_not_change_the_backward(make):
    """Without affine parameters y is a copy of the cached xhat, not the cache itself."""
    draw = np.random.default_rng(2)
    x, dy = draw.standard_normal((3, 4)), draw.standard_normal((3, 4))
    layer = make().to(np.float64)
    layer(x)
    expected = layer.backward(dy)
    y = layer(x)
    y[...] = 7.0
    np.testing.assert_allclose(layer.backward(dy), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make, x", [(lambda: L.MultiheadAttention(4, 2), X_ATT),
                                     (lambda: L.TransformerEncoderLayer(4, 2, 6), X_ATT)])
def test_a_second_backward_without_a_forward_is_refused(make, x):
    layer = make()
    y = layer(x)
    dy = np.ones_like(y[0] if isinstance(y, tuple) else y)
    layer.backward(dy)
    with pytest.raises(RuntimeError) as excinfo:
        layer.backward(dy)
    assert str(excinfo.value).startswith(f"{type(layer).__name__}.backward: nothing saved")


@pytest.mark.parametrize("mode", ["self", "cross"])
def test_attention_dropout_acts_in_training_only(mode):
    draw = np.random.default_rng(9)
    x, key = draw.standard_normal((3, 2, 4)), draw.standard_normal((5, 2, 4))
    args = (x,) if mode == "self" else (x, key)
    with_dropout = _randomized(L.MultiheadAttention(4, 2, dropout=0.5), 1)
    without = _randomized(L.MultiheadAttention(4, 2), 1)
    expected, _ = without(*args)
    got, _ = with_dropout.eval()(*args)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    trained, _ = with_dropout.train()(*args)
    assert not np.allclose(trained, expected)


def test_float32_attention_stays_float32_with_float64_and_boolean_masks():
    mha = L.MultiheadAttention(4, 2)
    draw = np.random.default_rng(0)
    x = draw.standard_normal((3, 2, 4)).astype(F32)
    for masks in ({"attn_mask": draw.standard_normal((3, 3))},
                  {"attn_mask": np.eye(3, dtype=bool)[::-1]},
                  {"key_padding_mask": draw.standard_normal((2, 3))},
                  {"key_padding_mask": np.array([[False, True, False], [False] * 3])}):
        out, weights = mha(x, **masks)
        assert out.dtype == F32 and weights.dtype == F32, masks
        assert mha.backward(np.ones_like(out)).dtype == F32


def test_lstm_takes_its_state_as_a_list_pair_too():
    lstm = L.LSTM(3, 4)
    draw = np.random.default_rng(0)
    x, h0, c0 = (draw.standard_normal(s).astype(F32) for s in ((5, 2, 3), (1, 2, 4), (1, 2, 4)))
    as_tuple = lstm(x, (h0, c0))
    lstm.drop_saved()
    as_list = lstm(x, [h0, c0])
    np.testing.assert_array_equal(as_list[0], as_tuple[0])
    np.testing.assert_array_equal(as_list[1][1], as_tuple[1][1])


# ------------------------------------------------------- bugs found by the mutation run
@pytest.mark.parametrize("kwargs, error, label", [
    ({"nhead": 3}, ValueError, "nhead"),
    ({"nhead": 2.0}, TypeError, "nhead"),
    ({"nhead": 2, "dropout": 1.0}, ValueError, "dropout"),
    ({"nhead": 2, "batch_first": 1}, TypeError, "batch_first"),
    ({"nhead": 2, "layer_norm_eps": 0.0}, ValueError, "layer_norm_eps"),
])
def test_encoder_layer_errors_name_the_encoder_layer_and_its_own_argument(kwargs, error, label):
    with pytest.raises(error) as excinfo:
        L.TransformerEncoderLayer(8, **kwargs)
    assert_names(excinfo, "TransformerEncoderLayer", label)


def test_layer_norm_checks_bias_without_affine_parameters_too():
    with pytest.raises(TypeError) as excinfo:
        L.LayerNorm(4, elementwise_affine=False, bias="x")
    assert_names(excinfo, "LayerNorm", "bias")

"""Embedding: float64 gradient checks of the weight (repeated indices, padding_idx, any
index shape), PyTorch agreement, errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minidl import backend
from minidl import layers as L
from minidl.gradcheck import TOLERANCES, numerical_gradient, rel_error

stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])


def check_weight_gradient(xp, layer, indices, seed):
    """Analytic dL/dweight against centered differences of L = sum(layer(indices) * dy).

    (check_layer casts its input to float64; indices are integers, so the weight is
    checked here with the same numerical_gradient and tolerances.) The padding row is
    frozen by definition (PyTorch: no gradient although the output reads it), so it is
    left out of the comparison and must get exactly zero."""
    layer.to(np.float64)
    if xp is not np:
        layer.to("gpu")
    indices = xp.asarray(indices)
    y = layer(indices)
    dy = xp.asarray(np.random.default_rng([seed, 1]).standard_normal(y.shape))
    assert layer.backward(dy) is None  # indices have no gradient
    analytic = layer.weight.grad.copy()
    host = backend.to_numpy(layer.weight.data).copy()

    def loss(values):
        layer.weight.data[...] = xp.asarray(values)
        out = float((layer(indices) * dy).sum())
        layer.drop_saved()
        return out

    numeric = numerical_gradient(loss, host.copy(), TOLERANCES[np.dtype(np.float64)]["eps"])
    tol = TOLERANCES[np.dtype(np.float64)]
    rows = np.arange(layer.num_embeddings) != layer.padding_idx
    analytic = backend.to_numpy(analytic)
    if layer.padding_idx is not None:
        assert float(abs(analytic[layer.padding_idx]).max()) == 0.0
    error = rel_error(analytic[rows], numeric[rows], tiny=tol["atol"] / tol["rtol"])
    assert error <= tol["rtol"], f"weight gradient: max relative error {error:.2e}"
    return analytic


@stateless_xp
@given(num=st.integers(1, 6), dim=st.integers(1, 4),
       shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       padding=st.one_of(st.none(), st.integers(-1, 0)), seed=st.integers(0, 2**16))
def test_embedding_gradients(xp, num, dim, shape, padding, seed):
    layer = L.Embedding(num, dim, padding_idx=padding)
    indices = np.random.default_rng(seed).integers(0, num, size=shape)
    check_weight_gradient(xp, layer, indices, seed)


def test_forward_is_a_lookup_and_repeats_accumulate():
    layer = L.Embedding(5, 3).to(np.float64)
    idx = np.array([[1, 1, 4], [0, 1, 2]])
    np.testing.assert_array_equal(layer(idx), layer.weight.data[idx])
    layer.backward(np.ones((2, 3, 3)))
    np.testing.assert_array_equal(layer.weight.grad[:, 0], [1, 3, 1, 0, 1])


def test_padding_row_starts_at_zero():
    layer = L.Embedding(4, 3, padding_idx=2)
    assert np.all(layer.weight.data[2] == 0) and np.any(layer.weight.data[1] != 0)
    assert L.Embedding(4, 3, padding_idx=-1).padding_idx == 3


def test_matches_torch():
    torch = pytest.importorskip("torch")
    layer = L.Embedding(7, 4, padding_idx=3).to(np.float64)
    t = torch.nn.Embedding(7, 4, padding_idx=3, dtype=torch.float64)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(layer.weight.data))
    idx = np.random.default_rng(0).integers(0, 7, size=(3, 5))
    dy = np.random.default_rng(1).standard_normal((3, 5, 4))
    ty = t(torch.tensor(idx))
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(layer(idx), ty.detach().numpy())
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, t.weight.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_errors():
    with pytest.raises(ValueError, match="num_embeddings"):
        L.Embedding(0, 3)
    with pytest.raises(TypeError, match="embedding_dim"):
        L.Embedding(3, 2.5)
    with pytest.raises(ValueError, match="padding_idx"):
        L.Embedding(3, 2, padding_idx=3)
    layer = L.Embedding(3, 2)
    with pytest.raises(TypeError, match="integer array of indices, got dtype float32"):
        layer(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="list"):
        layer([0, 1])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 2\], got values in \[0, 3\]"):
        layer(np.array([0, 3]))
    with pytest.raises(ValueError, match="-1"):
        layer(np.array([-1, 0]))

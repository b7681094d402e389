"""LayerNorm and GroupNorm: gradient checks on drawn shapes and affine modes, PyTorch
agreement on outputs and every gradient, normalization properties, errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minidl import layers as L
from minidl.gradcheck import assert_gradients

stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])
seeds = st.integers(0, 2**16)


def on(xp, module):
    return module.to("gpu") if xp is not np else module


def randomize(module, seed):
    draw = np.random.default_rng([seed, 9])
    for param in module.parameters():
        param.data[...] = draw.uniform(0.5, 2.0, param.shape) * draw.choice([-1, 1], param.shape)
    return module


@stateless_xp
@given(leading=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       normalized=st.lists(st.integers(1, 4), min_size=1, max_size=2),
       mode=st.sampled_from(["affine", "no_bias", "no_affine"]), seed=seeds)
def test_layer_norm_gradients(xp, leading, normalized, mode, seed):
    if int(np.prod(normalized)) == 1:
        normalized = normalized + [2]  # one value: xhat = 0, a degenerate (but valid) case
    layer = L.LayerNorm(tuple(normalized), elementwise_affine=mode != "no_affine",
                        bias=mode != "no_bias")
    x = 3 * np.random.default_rng(seed).standard_normal(tuple(leading) + tuple(normalized)) + 1
    assert_gradients(on(xp, randomize(layer, seed)), xp.asarray(x))


@stateless_xp
@given(n=st.integers(1, 3), groups_and_channels=st.sampled_from([(1, 1), (1, 3), (2, 4), (3, 6),
                                                                 (4, 4)]),
       spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2), affine=st.booleans(),
       seed=seeds)
def test_group_norm_gradients(xp, n, groups_and_channels, spatial, affine, seed):
    groups, channels = groups_and_channels
    if channels // groups * int(np.prod(spatial)) == 1:
        spatial = [2]
    layer = L.GroupNorm(groups, channels, affine=affine)
    x = 2 * np.random.default_rng(seed).standard_normal((n, channels, *spatial)) - 1
    assert_gradients(on(xp, randomize(layer, seed)), xp.asarray(x))


def test_layer_norm_normalizes_the_last_axes():
    x = np.random.default_rng(0).standard_normal((4, 3, 5)) * 7 + 2
    y = L.LayerNorm((3, 5)).to(np.float64)(x)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1, rtol=1e-4)  # eps = 1e-5


@pytest.mark.parametrize("shape,normalized,bias", [((4, 6), 6, True), ((2, 3, 4, 5), (4, 5), True),
                                                   ((3, 7), 7, False)])
def test_layer_norm_matches_torch(shape, normalized, bias):
    torch = pytest.importorskip("torch")
    layer = randomize(L.LayerNorm(normalized, bias=bias).to(np.float64), 1)
    t = torch.nn.LayerNorm(normalized, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        for name, param in layer.named_parameters():
            getattr(t, name).copy_(torch.tensor(param.data))
    draw = np.random.default_rng(2)
    x, dy = draw.standard_normal(shape), draw.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = t(tx)
    (ty * torch.tensor(dy)).sum().backward()
    y = layer(x)
    dx = layer.backward(dy)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, param in layer.named_parameters():
        np.testing.assert_allclose(param.grad, getattr(t, name).grad.numpy(), rtol=1e-10,
                                   atol=1e-12)


@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 4), 3), ((3, 4), 2), ((2, 4, 5), 1)])
def test_group_norm_matches_torch(shape, groups):
    torch = pytest.importorskip("torch")
    layer = randomize(L.GroupNorm(groups, shape[1]).to(np.float64), 1)
    t = torch.nn.GroupNorm(groups, shape[1], dtype=torch.float64)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(layer.weight.data))
        t.bias.copy_(torch.tensor(layer.bias.data))
    draw = np.random.default_rng(3)
    x, dy = draw.standard_normal(shape), draw.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = t(tx)
    (ty * torch.tensor(dy)).sum().backward()
    y = layer(x)
    dx = layer.backward(dy)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, t.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, t.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_float32_stays_float32_and_state_dict_names():
    layer = L.LayerNorm(4)
    assert layer(np.ones((2, 4), dtype=np.float32)).dtype == np.float32
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert list(L.LayerNorm(4, bias=False).state_dict()) == ["weight"]
    assert list(L.LayerNorm(4, elementwise_affine=False).state_dict()) == []
    assert list(L.GroupNorm(2, 4).state_dict()) == ["weight", "bias"]


def test_errors():
    with pytest.raises(ValueError, match="normalized_shape must be a positive integer"):
        L.LayerNorm(0)
    with pytest.raises(TypeError, match="normalized_shape"):
        L.LayerNorm("4")
    with pytest.raises(ValueError, match="eps"):
        L.LayerNorm(4, eps=0)
    with pytest.raises(ValueError, match=r"LayerNorm: expected input of shape \(\.\.\., 4\)"):
        L.LayerNorm(4)(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        L.LayerNorm(4)(np.zeros((2, 4), dtype=np.int32))
    with pytest.raises(TypeError, match="dtype"):
        L.LayerNorm(4)(np.zeros((2, 4), dtype=np.float64))
    with pytest.raises(ValueError, match="divisible"):
        L.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="channels"):
        L.GroupNorm(2, 4)(np.zeros((2, 6, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="at least 2-D"):
        L.GroupNorm(2, 4)(np.zeros((4,), dtype=np.float32))

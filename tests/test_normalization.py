"""BatchNorm1d/2d: gradient checks (train and eval), closed forms, running statistics,
PyTorch agreement, the no-scale variant, edge cases and errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
from minidl import layers as L
from minidl.gradcheck import assert_gradients

# The xp fixture only names an array module (no state), so sharing it across the
# examples of one hypothesis test is safe.
stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])

modes = st.sampled_from(["affine", "no_scale", "no_affine"])


def upstream(shape, seed):
    """A random dy from its own stream. (Drawn from x's generator, dy would equal an affine
    function of x, and BatchNorm's input gradient would vanish: a vacuous check.)"""
    return np.random.default_rng([seed, 1]).standard_normal(shape)


def make_bn(cls, channels, mode, seed):
    """A BatchNorm with random (non-trivial) weight, bias and running statistics."""
    layer = cls(channels, affine=mode != "no_affine", weight=mode != "no_scale")
    draw = np.random.default_rng(seed + 1)
    if layer.weight is not None:
        layer.weight.data[...] = draw.uniform(0.5, 2.0, channels)
    if layer.bias is not None:
        layer.bias.data[...] = draw.standard_normal(channels)
    layer.running_mean[...] = draw.standard_normal(channels)
    layer.running_var[...] = draw.uniform(0.5, 2.0, channels)
    return layer


def on(xp, layer):
    """``layer`` moved to the device of array module ``xp`` (untouched on NumPy)."""
    return layer.to("gpu") if xp is not np else layer


@stateless_xp
@given(n=st.integers(2, 5), c=st.integers(1, 4), mode=modes, training=st.booleans(),
       seed=st.integers(0, 2**16))
def test_batchnorm1d_gradients(xp, n, c, mode, training, seed):
    layer = on(xp, make_bn(L.BatchNorm1d, c, mode, seed).train(training))
    x = 2 * np.random.default_rng(seed).standard_normal((n, c)) + 1
    assert_gradients(layer, xp.asarray(x), xp.asarray(upstream(x.shape, seed)))


@stateless_xp
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       mode=modes, training=st.booleans(), seed=st.integers(0, 2**16))
def test_batchnorm2d_gradients(xp, n, c, h, w, mode, training, seed):
    if training and n * h * w < 2:
        h = 2  # train mode needs two values per channel
    layer = on(xp, make_bn(L.BatchNorm2d, c, mode, seed).train(training))
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)) - 0.5
    assert_gradients(layer, xp.asarray(x), xp.asarray(upstream(x.shape, seed)))


def test_batchnorm2d_gradients_batch_of_one_train_and_eval(xp):
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    dy = xp.asarray(upstream(x.shape, 0))
    assert_gradients(on(xp, make_bn(L.BatchNorm2d, 2, "affine", 0)), xp.asarray(x), dy)
    assert_gradients(on(xp, make_bn(L.BatchNorm2d, 2, "affine", 0).eval()), xp.asarray(x), dy)
    assert_gradients(on(xp, make_bn(L.BatchNorm1d, 3, "affine", 0).eval()),
                     xp.asarray(x[:, 0, 0, :]), xp.asarray(upstream((1, 3), 0)))


def test_larger_tensor_directional_check(xp):
    x = np.random.default_rng(1).standard_normal((8, 4, 6, 5))
    assert_gradients(on(xp, make_bn(L.BatchNorm2d, 4, "affine", 1)), xp.asarray(x),
                     xp.asarray(upstream(x.shape, 1)), directional=True)


def test_upstream_gradient_is_not_degenerate():
    """The checks above are only meaningful if dx is far from 0 (see ``upstream``)."""
    layer = make_bn(L.BatchNorm2d, 3, "affine", 2).to(np.float64)
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4))
    layer(x)
    assert np.abs(layer.backward(upstream(x.shape, 2))).mean() > 0.1


@stateless_xp
@given(n=st.integers(2, 6), c=st.integers(1, 4), h=st.integers(1, 5), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_train_output_has_zero_mean_unit_variance_per_channel(xp, n, c, h, seed, dtype):
    x = (5 * np.random.default_rng(seed).standard_normal((n, c, h, 3)) + 3).astype(dtype)
    y = on(xp, L.BatchNorm2d(c).to(dtype))(xp.asarray(x))
    assert y.dtype == dtype
    y = minidl.to_numpy(y)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=tol)
    var = x.var(axis=(0, 2, 3)).astype(np.float64)
    np.testing.assert_allclose(y.astype(np.float64).var(axis=(0, 2, 3)), var / (var + 1e-5),
                               rtol=tol)


@stateless_xp
@given(steps=st.integers(1, 4), momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       seed=st.integers(0, 2**16))
def test_running_statistics_closed_form(xp, steps, momentum, seed):
    layer = on(xp, L.BatchNorm1d(3, momentum=momentum).to(np.float64))
    draw = np.random.default_rng(seed)
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(steps):
        x = draw.standard_normal((5, 3)) * [1.0, 2.0, 3.0] + [0.0, -1.0, 4.0]
        layer(xp.asarray(x))
        mean = (1 - momentum) * mean + momentum * x.mean(axis=0)
        var = (1 - momentum) * var + momentum * x.var(axis=0, ddof=1)
    np.testing.assert_allclose(minidl.to_numpy(layer.running_mean), mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(minidl.to_numpy(layer.running_var), var, rtol=1e-12)


def test_eval_uses_running_statistics_and_does_not_update_them(xp):
    layer = on(xp, make_bn(L.BatchNorm2d, 2, "affine", 3).to(np.float64).eval())
    before = {key: minidl.to_numpy(value) for key, value in layer.state_dict().items()}
    x = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    shape = (1, 2, 1, 1)
    expected = ((x - before["running_mean"].reshape(shape))
                / np.sqrt(before["running_var"].reshape(shape) + 1e-5)
                * before["weight"].reshape(shape) + before["bias"].reshape(shape))
    np.testing.assert_allclose(minidl.to_numpy(layer(xp.asarray(x))), expected, rtol=1e-12)
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(minidl.to_numpy(value), before[key])


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("weight", [True, False])
def test_matches_torch_forward_backward_running_stats(dim, weight):
    torch = pytest.importorskip("torch")
    draw = np.random.default_rng(5)
    shape = (6, 3) if dim == 1 else (4, 3, 5, 2)
    ours = (L.BatchNorm1d if dim == 1 else L.BatchNorm2d)(3, momentum=0.3, weight=weight)
    ours.to(np.float64)
    theirs = (torch.nn.BatchNorm1d if dim == 1 else torch.nn.BatchNorm2d)(3, momentum=0.3).double()
    gamma, beta = draw.uniform(0.5, 2, 3), draw.standard_normal(3)
    if weight:
        ours.weight.data[...] = gamma
    else:
        gamma = np.ones(3)
    ours.bias.data[...] = beta
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(gamma))
        theirs.bias.copy_(torch.tensor(beta))
    for step in range(2):  # two steps: the running statistics compound
        x = 3 * draw.standard_normal(shape) + 1
        dy = draw.standard_normal(shape)
        ours.zero_grad()
        theirs.zero_grad()
        y = ours(x)
        dx = ours.backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10)
        if weight:
            np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    ours.eval()
    theirs.eval()
    x = draw.standard_normal(shape)
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


def test_no_scale_variant_has_only_bias_and_torch_like_state():
    layer = L.BatchNorm2d(4, weight=False)
    assert [name for name, _ in layer.named_parameters()] == ["bias"]
    assert list(layer.state_dict()) == ["bias", "running_mean", "running_var"]
    assert list(L.BatchNorm1d(4).state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert L.BatchNorm2d(4, affine=False).parameters() == []
    assert "weight=False" in repr(layer)


def test_zero_variance_channel_stays_finite(xp):
    x = xp.asarray(np.full((4, 2, 3, 3), 7.0, dtype=np.float32))
    layer = L.BatchNorm2d(2).to("cpu" if xp is np else "gpu")
    y = layer(x)
    dx = layer.backward(xp.asarray(np.random.default_rng(0).standard_normal(y.shape), np.float32))
    assert bool(xp.isfinite(y).all()) and bool(xp.isfinite(dx).all())
    np.testing.assert_allclose(np.asarray(y.get() if xp is not np else y), 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype, xp):
    layer = L.BatchNorm2d(3).to(dtype).to("cpu" if xp is np else "gpu")
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(dtype))
    for training in (True, False):
        layer.train(training)
        y = layer(x)
        dx = layer.backward(xp.ones_like(y))
        assert y.dtype == dtype and dx.dtype == dtype
        assert layer.running_mean.dtype == dtype and layer.running_var.dtype == dtype
        assert layer.weight.grad.dtype == dtype


@pytest.mark.parametrize("cls, x", [
    (L.BatchNorm1d, np.ones((1, 3))),
    (L.BatchNorm2d, np.ones((1, 3, 1, 1))),
])
def test_one_value_per_channel_in_train_mode_raises(cls, x):
    with pytest.raises(ValueError, match=f"{cls.__name__}: expected more than 1 value per channel"):
        cls(3).to(np.float64)(x)
    assert cls(3).to(np.float64).eval()(x).shape == x.shape  # eval mode is fine


@pytest.mark.parametrize("cls, x, error, fragment", [
    (L.BatchNorm2d, np.ones((2, 3, 4), dtype=np.float32), ValueError, "(N, C, H, W)"),
    (L.BatchNorm2d, np.ones((2, 4, 3, 3), dtype=np.float32), ValueError, "expected 3 channels"),
    (L.BatchNorm2d, np.ones((2, 3, 3, 3), dtype=np.int32), TypeError, "float32 or float64"),
    (L.BatchNorm2d, np.ones((2, 3, 3, 3), dtype=np.float64), TypeError, "parameter dtype"),
    (L.BatchNorm1d, np.ones((2, 3, 5), dtype=np.float32), ValueError, "(N, C)"),
    (L.BatchNorm1d, np.ones(3, dtype=np.float32), ValueError, "(N, C)"),
])
def test_bad_input_names_the_layer(cls, x, error, fragment):
    with pytest.raises(error, match=cls.__name__) as info:
        cls(3)(x)
    assert fragment in str(info.value)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_features": 0}, "num_features must be a positive integer"),
    ({"num_features": 2.5}, "num_features must be a positive integer, got 2.5 (float)"),
    ({"num_features": True}, "num_features must be a positive integer, got True (bool)"),
    ({"num_features": 3, "eps": 0}, "eps must be a real number in (0, inf)"),
    ({"num_features": 3, "eps": float("inf")}, "eps must be a real number in (0, inf)"),
    ({"num_features": 3, "momentum": 1.5}, "momentum must be a real number in [0, 1]"),
    ({"num_features": 3, "momentum": True}, "momentum must be a real number in [0, 1], got True"),
])
def test_constructor_validation(kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match="BatchNorm2d") as info:
        L.BatchNorm2d(**kwargs)
    assert fragment in str(info.value)


def test_backward_before_forward_and_twice():
    layer = L.BatchNorm1d(2)
    with pytest.raises(RuntimeError, match="BatchNorm1d.backward"):
        layer.backward(np.ones((3, 2), dtype=np.float32))
    layer(np.ones((3, 2), dtype=np.float32))
    layer.backward(np.ones((3, 2), dtype=np.float32))
    with pytest.raises(RuntimeError, match="BatchNorm1d.backward"):
        layer.backward(np.ones((3, 2), dtype=np.float32))


def test_backward_uses_the_mode_of_its_forward():
    layer = make_bn(L.BatchNorm1d, 2, "affine", 0).to(np.float64)
    x = np.random.default_rng(0).standard_normal((4, 2))
    dy = np.random.default_rng(1).standard_normal((4, 2))
    layer(x)
    layer.eval()  # switching mode between forward and backward must not matter
    dx = layer.backward(dy)
    layer.train()
    layer(x)
    np.testing.assert_allclose(dx, layer.backward(dy))

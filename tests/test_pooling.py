"""MaxPool2d, AvgPool2d, GlobalAvgPool2d: gradient checks, loop reference, PyTorch, errors.

Max-pool inputs are a random permutation of distinct values (spaced 0.1 apart, far
beyond the finite-difference step), so no window has a tie and the max is
differentiable at every drawn input.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
from minidl import layers as L
from minidl.gradcheck import assert_gradients
from minidl.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from minidl.naive import avg_pool2d_forward, max_pool2d_forward

# The xp fixture only names an array module (no state), so sharing it across the
# examples of one hypothesis test is safe.
stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])

POOLS = [(MaxPool2d, lambda *args: max_pool2d_forward(*args)[0]),
         (AvgPool2d, lambda *args: avg_pool2d_forward(*args)[0])]


@st.composite
def pool_configs(draw):
    """(kernel_size, stride, padding) and an input shape; stride None half the time."""
    kernel = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 3])))
    stride = draw(st.one_of(st.none(), st.tuples(st.sampled_from([1, 2, 3]),
                                                 st.sampled_from([1, 2, 3]))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    height = max(1, kernel[0] - 2 * padding[0]) + draw(st.integers(0, 4))
    width = max(1, kernel[1] - 2 * padding[1]) + draw(st.integers(0, 4))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), height, width)
    return (kernel, stride, padding), shape


def distinct_values(shape, seed):
    """A random permutation of 0, 0.1, 0.2, ...: no ties anywhere."""
    size = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(size).reshape(shape) / 10.0 - size / 20.0


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d])
@stateless_xp
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_pool_gradients(xp, pool, config, seed):
    args, shape = config
    x = xp.asarray(distinct_values(shape, seed))
    assert_gradients(pool(*args), x, seed=seed)


@stateless_xp
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5),
                       st.integers(1, 5)), seed=st.integers(0, 2**16))
def test_global_avg_pool_gradients_and_shape(xp, shape, seed):
    x = xp.asarray(np.random.default_rng(seed).standard_normal(shape))
    layer = GlobalAvgPool2d()
    assert layer(x).shape == shape[:2]
    assert_gradients(layer, x, seed=seed)


def test_max_pool_with_ties_sends_each_gradient_to_exactly_one_entry():
    x = np.zeros((2, 3, 4, 6), np.float32)  # every window is one big tie
    layer = MaxPool2d(2)
    dy = np.random.default_rng(0).standard_normal((2, 3, 2, 3)).astype(np.float32)
    layer(x)
    dx = layer.backward(dy)
    assert np.count_nonzero(dx) == dy.size
    np.testing.assert_allclose(dx[:, :, ::2, ::2], dy)  # the first entry of each window wins


# --------------------------------------------------------------------------- fast vs loops
@pytest.mark.parametrize("pool, naive", POOLS, ids=["max", "avg"])
@stateless_xp
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_pool_matches_naive_loops(xp, pool, naive, config, seed):
    args, shape = config
    x = xp.asarray(distinct_values(shape, seed))
    np.testing.assert_allclose(minidl.to_numpy(pool(*args)(x)), minidl.to_numpy(naive(x, *args)),
                               rtol=1e-12, atol=1e-12)


def test_tiling_fast_path_crops_the_remainder_and_zeroes_its_gradient():
    x = distinct_values((2, 3, 7, 5), 0).astype(np.float32)
    for pool, naive in POOLS:
        layer = pool(2)  # stride 2 = kernel, no padding: the windows tile the input
        y = layer(x)
        np.testing.assert_allclose(y, naive(x, 2), rtol=1e-6)
        dx = layer.backward(np.ones_like(y))
        assert not dx[:, :, 6:].any() and not dx[:, :, :, 4:].any()
        np.testing.assert_allclose(dx.sum(), y.size)


# --------------------------------------------------------------------------- PyTorch reference
@pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d])
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_pool_matches_pytorch_forward_and_backward(pool, config, seed):
    torch = pytest.importorskip("torch")
    (kernel, stride, padding), shape = config
    x = distinct_values(shape, seed)
    layer = pool(kernel, stride, padding)
    y = layer(x)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    dx = layer.backward(dy)
    torch_pool = (torch.nn.MaxPool2d if pool is MaxPool2d else torch.nn.AvgPool2d)(
        kernel, stride, padding)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch_pool(x_t)
    y_t.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("layer", [MaxPool2d(2), MaxPool2d(3, 2, 1), AvgPool2d(2),
                                   AvgPool2d(3, 1, 1), GlobalAvgPool2d()],
                         ids=["max", "max-padded", "avg", "avg-padded", "global"])
def test_float32_stays_float32(layer):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert dx.shape == x.shape


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make, error, message", [
    (lambda: MaxPool2d(0), ValueError, "MaxPool2d: kernel_size must be a positive int"),
    (lambda: AvgPool2d(2, stride=0), ValueError, "AvgPool2d: stride must be a positive int"),
    (lambda: MaxPool2d(2, padding=2), ValueError, "at most half the kernel"),
    (lambda: AvgPool2d(3, padding=-1), ValueError, "padding must be a non-negative int"),
    (lambda: MaxPool2d(16), ValueError, "more than 255 entries"),
    (lambda: MaxPool2d("2"), TypeError, "kernel_size must be a positive integer, got '2'"),
])
def test_constructor_validates_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("layer", [MaxPool2d(3), AvgPool2d(3), GlobalAvgPool2d()],
                         ids=["max", "avg", "global"])
def test_wrong_rank_or_dtype_gets_a_clear_error(layer):
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(N, C, H, W\)"):
        layer(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(TypeError, match=f"{name}: expected a float32 or float64"):
        layer(np.zeros((1, 3, 8, 8), np.int32))


@pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d])
def test_input_smaller_than_kernel_is_an_error(pool):
    with pytest.raises(ValueError, match=f"{pool.__name__}: input of spatial size 2x5"):
        pool(3)(np.zeros((1, 1, 2, 5), np.float32))



def test_pooling_inside_a_network_gradient_check():
    model = L.Sequential(L.Conv2d(2, 3, 3, padding=1), L.MaxPool2d(2), L.AvgPool2d(2, 1),
                         L.GlobalAvgPool2d(), L.Linear(3, 2))
    assert_gradients(model, distinct_values((2, 2, 6, 6), 1))

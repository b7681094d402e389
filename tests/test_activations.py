"""Activations: gradient checks, closed forms, tails, dtypes, PyTorch agreement, errors."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
from minidl import layers as L
from minidl.gradcheck import assert_gradients
from minidl.functional import erf, normal_cdf

# The xp fixture only names an array module (no state), so sharing it across the
# examples of one hypothesis test is safe.
stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).filter(
    lambda s: int(np.prod(s)) <= 32)

SMOOTH = [L.Sigmoid, L.Tanh, L.GELU, lambda: L.GELU(approximate="tanh")]
KINKED = [L.ReLU, lambda: L.LeakyReLU(0.2), L.ELU, lambda: L.ELU(alpha=0.5)]


def away_from_kink(shape, seed, margin=0.1):
    """Values with |x| in [margin, 2]: finite differences never straddle the kink at 0."""
    draw = np.random.default_rng(seed)
    return draw.choice([-1.0, 1.0], size=shape) * draw.uniform(margin, 2.0, size=shape)


@pytest.mark.parametrize("make", SMOOTH, ids=["Sigmoid", "Tanh", "GELU", "GELU-tanh"])
@stateless_xp
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_smooth_activation_gradients(xp, make, shape, seed):
    x = 3 * np.random.default_rng(seed).standard_normal(shape)
    # dy from another stream than x (dy = x would hide errors)
    assert_gradients(make(), xp.asarray(x), seed=seed + 1)


@pytest.mark.parametrize("make", KINKED, ids=["ReLU", "LeakyReLU", "ELU", "ELU-0.5"])
@stateless_xp
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_kinked_activation_gradients(xp, make, shape, seed):
    # dy from another stream than x (dy = x would hide errors)
    assert_gradients(make(), xp.asarray(away_from_kink(shape, seed)), seed=seed + 1)


@stateless_xp
@given(shape=shapes, seed=st.integers(0, 2**16), data=st.data())
def test_softmax_gradients_on_any_axis(xp, shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = 2 * np.random.default_rng(seed).standard_normal(shape)
    # dy from another stream than x (dy = x would hide errors)
    assert_gradients(L.Softmax(axis=axis), xp.asarray(x), seed=seed + 1)


def test_gelu_gradient_across_erf_branch_points_and_tails(xp):
    # |x| = sqrt(2) is where erf switches rational approximation; +-12 is deep in the tails.
    s = math.sqrt(2)
    x = np.array([[-12.0, -s - 1e-3, -s, -s + 1e-3, -1e-4, 0.0],
                  [1e-4, s - 1e-3, s, s + 1e-3, 6.0, 12.0]])
    assert_gradients(L.GELU(), xp.asarray(x))


def test_erf_and_normal_cdf_match_math():
    x = np.linspace(-7, 7, 4001)
    np.testing.assert_allclose(erf(x), [math.erf(v) for v in x], rtol=1e-15, atol=1e-16)
    # Relative accuracy in the lower tail too: ~1e-14 where Cephes' erfc branch is
    # designed for (|x| / sqrt 2 < 8), and still ~1e-9 far beyond (Phi(-38) ~ 1e-316).
    for low, high, rtol in ((-11.3, 15.0, 1e-13), (-38.0, -11.3, 1e-8)):
        x = np.linspace(low, high, 2001)
        expected = [0.5 * math.erfc(-v / math.sqrt(2)) for v in x]
        np.testing.assert_allclose(normal_cdf(x), expected, rtol=rtol)


def test_known_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(L.ReLU()(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(L.LeakyReLU(0.1)(x), [-0.2, -0.05, 0, 0.5, 2])
    np.testing.assert_allclose(L.ELU(2.0)(x), [2 * math.expm1(-2), 2 * math.expm1(-0.5), 0, 0.5, 2])
    np.testing.assert_allclose(L.Sigmoid()(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(L.Tanh()(x), np.tanh(x))
    np.testing.assert_allclose(L.GELU()(x), [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x],
                               rtol=1e-15, atol=1e-17)


@stateless_xp
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1.0, 100.0, 1e4]))
def test_softmax_sums_to_one_and_is_shift_invariant(xp, shape, seed, scale):
    x = xp.asarray(scale * np.random.default_rng(seed).standard_normal(shape))
    y = minidl.to_numpy(L.Softmax()(x))
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(minidl.to_numpy(L.Softmax()(x + 1234.5)), y, atol=1e-9)


ALL = [L.ReLU, L.LeakyReLU, L.ELU, L.GELU, lambda: L.GELU(approximate="tanh"), L.Sigmoid,
       L.Tanh, L.Softmax]
ALL_IDS = ["ReLU", "LeakyReLU", "ELU", "GELU", "GELU-tanh", "Sigmoid", "Tanh", "Softmax"]


@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_are_finite_without_warnings(make, dtype, xp):
    big = 1e38 if dtype == np.float32 else 1e307  # 2 * big still fits: x - max(x) is finite
    values = [-big, -1e4, -100.0, -1e-30, 0.0, 1e-30, 100.0, 1e4, big]
    x = xp.asarray(np.array([values], dtype=dtype))
    layer = make()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer(x)
        dx = layer.backward(xp.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype
    assert bool(xp.isfinite(y).all()) and bool(xp.isfinite(dx).all())


def test_tail_limits(xp):
    x = xp.asarray(np.array([-1e4, 1e4]))
    to_numpy = minidl.to_numpy
    np.testing.assert_array_equal(to_numpy(L.GELU()(x)), [0.0, 1e4])
    np.testing.assert_array_equal(to_numpy(L.Sigmoid()(x)), [0.0, 1.0])
    np.testing.assert_array_equal(to_numpy(L.ELU()(x)), [-1.0, 1e4])
    np.testing.assert_array_equal(to_numpy(L.Softmax()(xp.asarray(np.array([[-1e4, 1e4]])))),
                                  [[0.0, 1.0]])


@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
def test_float32_stays_float32(make, xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    layer = make()
    y = layer(x)
    assert y.dtype == np.float32
    assert layer.backward(xp.ones_like(y)).dtype == np.float32


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((4, 7)) * 4
    dy = np.random.default_rng(2).standard_normal((4, 7))
    layer = L.GELU(approximate=approximate)
    y = layer(x)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.gelu(xt, approximate=approximate)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name, make, torch_make", [
    ("LeakyReLU", lambda: L.LeakyReLU(0.2), lambda nn: nn.LeakyReLU(0.2)),
    ("ELU", lambda: L.ELU(0.7), lambda nn: nn.ELU(0.7)),
    ("Sigmoid", L.Sigmoid, lambda nn: nn.Sigmoid()),
    ("Softmax", lambda: L.Softmax(axis=1), lambda nn: nn.Softmax(dim=1)),
])
def test_other_activations_match_torch(name, make, torch_make):
    torch = pytest.importorskip("torch")
    x = away_from_kink((3, 5), 3)
    dy = np.random.default_rng(4).standard_normal((3, 5))
    layer = make()
    y = layer(x)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_make(torch.nn)(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("x, error, fragment", [
    (np.ones((2, 3), dtype=np.int64), TypeError, "float32 or float64"),
    (np.ones((2, 3), dtype=np.float16), TypeError, "float32 or float64"),
    ([1.0, 2.0], TypeError, "as an array"),
    (np.array(1.0), ValueError, "0-D"),
])
@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
def test_bad_input_names_the_layer(make, x, error, fragment):
    layer = make()
    with pytest.raises(error, match=type(layer).__name__) as info:
        layer(x)
    assert fragment in str(info.value)


def test_softmax_axis_out_of_range():
    with pytest.raises(ValueError, match=r"Softmax: axis 2 is out of range .*\(2, 3\)"):
        L.Softmax(axis=2)(np.ones((2, 3)))


@pytest.mark.parametrize("make, error, message", [
    (lambda: L.ELU(alpha=0.0), ValueError, r"ELU: alpha must be a real number in \(0, inf\), got 0.0"),
    (lambda: L.ELU(alpha=True), TypeError, r"ELU: alpha must be a real number .* got True \(bool\)"),
    (lambda: L.LeakyReLU(negative_slope=True), TypeError, "LeakyReLU: negative_slope must be a real"),
    (lambda: L.LeakyReLU(negative_slope=float("nan")), ValueError, "LeakyReLU: negative_slope"),
    (lambda: L.GELU(approximate="fast"), ValueError, "GELU: approximate must be one of 'none', 'tanh'"),
    (lambda: L.Softmax(axis=1.5), TypeError, "Softmax: axis must be an integer"),
])
def test_constructor_validation(make, error, message):
    """The one rule: a wrong type is a TypeError, a value out of range a ValueError."""
    with pytest.raises(error, match=message):
        make()


def test_constructors_accept_numpy_scalars():
    assert L.ELU(alpha=np.float32(0.5)).alpha == 0.5
    assert L.LeakyReLU(np.float64(0.2)).negative_slope == 0.2
    assert L.Softmax(axis=np.int64(0)).axis == 0


@pytest.mark.parametrize("make", ALL, ids=ALL_IDS)
def test_backward_before_forward_and_twice(make):
    layer = make()
    with pytest.raises(RuntimeError, match=f"{type(layer).__name__}.backward"):
        layer.backward(np.ones((1, 2)))
    layer(np.ones((1, 2)))
    layer.backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="backward once per forward"):
        layer.backward(np.ones((1, 2)))

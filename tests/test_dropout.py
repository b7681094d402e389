"""Dropout: fixed-mask gradient checks, reproducibility, eval identity, keep-rate statistics."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
from minidl import backend, layers as L
from minidl.gradcheck import assert_gradients

# The xp fixture only names an array module (no state), so sharing it across the
# examples of one hypothesis test is safe.
stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])


@stateless_xp
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).filter(
    lambda s: int(np.prod(s)) <= 32), p=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
    training=st.booleans(), seed=st.integers(0, 2**16))
def test_dropout_gradients_with_mask_held_fixed(xp, shape, p, training, seed):
    minidl.seed(seed)
    layer = L.Dropout(p).train(training)
    x = np.random.default_rng(seed).standard_normal(shape)
    # dy from another stream than x (dy = x would hide errors)
    assert_gradients(layer, xp.asarray(x), seed=seed + 1)


def test_gradcheck_sees_the_same_mask_in_every_pass():
    """check_layer restores the generator before each forward; the mask must follow it."""
    layer = L.Dropout(0.5)
    x = np.random.default_rng(0).standard_normal((6, 7))
    state = backend.get_rng_state()
    first = layer(x)
    backend.set_rng_state(state)
    second = layer(x)
    np.testing.assert_array_equal(first, second)
    assert (first == 0).any() and (first != 0).any()
    third = layer(x)  # without the reset, a fresh mask
    assert not np.array_equal(first, third)


def test_backward_uses_the_forward_mask(xp):
    layer = L.Dropout(0.3)
    x_device = xp.asarray(np.random.default_rng(0).standard_normal((50, 20)).astype(np.float32))
    y = layer(x_device)
    dx = layer.backward(xp.ones_like(y))
    x, y, dx = (minidl.to_numpy(a) for a in (x_device, y, dx))
    kept = y != 0
    np.testing.assert_array_equal(dx != 0, kept)
    np.testing.assert_allclose(dx[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)


def test_seed_makes_masks_reproducible(xp):
    x = xp.ones((8, 8), dtype=np.float32)
    minidl.seed(3)
    a = L.Dropout(0.5)(x)
    minidl.seed(3)
    b = L.Dropout(0.5)(x)
    assert bool((a == b).all())


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9])
def test_eval_is_identity(p, xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32))
    layer = L.Dropout(p).eval()
    state = backend.get_rng_state()
    y = layer(x)
    assert bool((y == x).all())
    assert bool((layer.backward(x) == x).all())
    assert backend.get_rng_state() == state  # eval draws nothing


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keep_rate_and_mean_are_preserved(p, dtype, xp):
    minidl.seed(11)
    x = xp.ones((200, 500), dtype=dtype)
    y = L.Dropout(p)(x)
    assert y.dtype == dtype
    keep_rate = float((y != 0).mean())
    # 1e5 Bernoulli draws: the standard error of the rate is below 0.0016; 5 sigma.
    assert abs(keep_rate - (1 - p)) < 5 * np.sqrt(p * (1 - p) / x.size)
    assert abs(float(y.mean()) - 1.0) < 5 * np.sqrt(p / (1 - p) / x.size)


@pytest.mark.parametrize("p, error", [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError),
                                      (float("nan"), ValueError), (10**400, ValueError),
                                      ("0.5", TypeError), (True, TypeError), (None, TypeError)])
def test_p_is_validated(p, error):
    """The one rule: a wrong type is a TypeError, a value out of range a ValueError."""
    message = r"Dropout: p \(the drop probability\) must be a real number in \[0, 1\), got "
    with pytest.raises(error, match=message):
        L.Dropout(p)


def test_p_accepts_numpy_scalars():
    assert L.Dropout(np.float32(0.25)).p == 0.25


@pytest.mark.parametrize("x, error, fragment", [
    (np.ones((2, 3), dtype=np.int64), TypeError, "float32 or float64"),
    (np.array(1.0), ValueError, "0-D"),
])
def test_bad_input(x, error, fragment):
    with pytest.raises(error, match="Dropout") as info:
        L.Dropout(0.5)(x)
    assert fragment in str(info.value)


def test_backward_before_forward_and_twice():
    layer = L.Dropout(0.5)
    with pytest.raises(RuntimeError, match="Dropout.backward"):
        layer.backward(np.ones((2, 2)))
    layer(np.ones((2, 2)))
    layer.backward(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="Dropout.backward"):
        layer.backward(np.ones((2, 2)))

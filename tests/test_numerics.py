"""Numerical safety as properties: extreme values drawn by hypothesis stay finite."""
import warnings

import numpy as np
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from minidl import layers as L, losses, optim
from minidl.module import Param

EXTREME = st.floats(-1e4, 1e4, allow_nan=False, width=32)


def logits_and_labels(classes=4):
    return st.integers(1, 5).flatmap(lambda n: st.tuples(
        arrays(np.float32, (n, classes), elements=EXTREME),
        arrays(np.int64, (n,), elements=st.integers(0, classes - 1))))


def finite(*values):
    return all(np.isfinite(np.asarray(v)).all() for v in values)


@given(logits_and_labels(), st.sampled_from(["ce", "bce", "softmargin", "huber", "mse"]))
def test_losses_and_gradients_stay_finite_for_extreme_logits(data, name):
    logits, labels = data
    loss_fn = {"ce": losses.CrossEntropyLoss(label_smoothing=0.1),
               "bce": losses.BCEWithLogitsLoss(), "softmargin": losses.SoftMarginLoss(),
               "huber": losses.HuberLoss(), "mse": losses.MSELoss()}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings either
        value = loss_fn(logits, labels)
        grad = loss_fn.backward()
    assert finite(value, grad) and value >= 0


@given(arrays(np.float32, (3, 5), elements=EXTREME))
def test_softmax_and_sigmoid_are_probabilities_for_extreme_inputs(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probabilities = L.Softmax()(x)
        sigmoid = L.Sigmoid()(x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert ((0 <= sigmoid) & (sigmoid <= 1)).all() and finite(probabilities)


@given(st.floats(-1e3, 1e3, width=32), st.integers(2, 6))
def test_batchnorm_of_a_constant_channel_is_finite(value, batch):
    layer = L.BatchNorm2d(2)
    x = np.full((batch, 2, 3, 3), value, dtype=np.float32)
    y = layer(x)
    dx = layer.backward(np.random.default_rng(batch).standard_normal(y.shape).astype(np.float32))
    # x - mean is float32 round-off (~|value| * 1e-7), amplified by 1/sqrt(eps) ~ 316
    assert finite(y, dx, layer.running_var)
    assert np.abs(y).max() <= 1e-4 * max(1.0, abs(value))


@given(st.sampled_from(["Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax"]),
       st.integers(1, 5))
def test_adaptive_optimizers_with_zero_gradients_stay_finite(name, steps):
    param = Param(np.ones(3, dtype=np.float32))
    optimizer = getattr(optim, name)([param], lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        optimizer.step()
    assert finite(param.data) and param.data.dtype == np.float32

"""Tests written to kill the mutants that survived a mutmut run over activations.py and
losses.py (see the report of issue 12): contracts the formula tests did not pin.

* Default arguments are PyTorch's: a mutant changing ``negative_slope=0.01`` to 1.01
  passed every gradient check, since those construct the layers with explicit values.
"""
import numpy as np
import pytest

from minidl import layers as L, losses

X = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]], dtype=np.float64)


@pytest.mark.parametrize("layer, expected", [
    (L.LeakyReLU(), np.where(X > 0, X, 0.01 * X)),                       # torch: 0.01
    (L.ELU(), np.where(X > 0, X, np.expm1(X))),                          # torch: alpha=1
    (L.Softmax(), np.exp(X) / np.exp(X).sum(-1, keepdims=True)),        # torch: dim=-1 here
])
def test_default_arguments_are_pytorchs(layer, expected):
    np.testing.assert_allclose(layer(X), expected, rtol=1e-12, atol=1e-15)


def test_gelu_default_is_the_exact_erf_form():
    from math import erf, sqrt
    expected = [[0.5 * v * (1 + erf(v / sqrt(2))) for v in X[0]]]
    np.testing.assert_allclose(L.GELU()(X), expected, rtol=1e-12, atol=1e-15)


def test_loss_defaults_are_pytorchs():
    pred = np.array([[0.2, -1.0, 3.0], [1.5, 0.0, -0.5]])
    target = np.array([2, 0])
    log_p = pred - np.log(np.exp(pred).sum(1, keepdims=True))
    expected = -log_p[np.arange(2), target].mean()           # label_smoothing=0
    np.testing.assert_allclose(losses.CrossEntropyLoss()(pred, target), expected, rtol=1e-12)
    dense = np.array([[0.0, 0.5, 4.0], [1.0, -1.0, 0.3]])
    r = np.abs(pred - dense)
    huber = np.where(r < 1.0, 0.5 * r ** 2, r - 0.5).mean()   # delta=1
    np.testing.assert_allclose(losses.HuberLoss()(pred, dense), huber, rtol=1e-12)

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


# * Error messages state the layout they expect: mutants rewriting "(N, ...)" to
#   "XX(N, ...)XX" or "(n, ...)" survived, since the tests matched only the class name.
@pytest.mark.parametrize("loss_fn", [losses.MSELoss(), losses.HuberLoss(),
                                     losses.SoftMarginLoss(), losses.BCEWithLogitsLoss()])
def test_loss_shape_errors_state_the_expected_layout(loss_fn):
    with pytest.raises(ValueError, match=r"expected \w+ of shape \(N, \.\.\.\), got shape \(\)"):
        loss_fn(np.float64(1.0) * np.ones(()), np.ones(()))


# * check_values is passed on: HuberLoss(check_values=False) calling
#   super().__init__(None) survived (the default checks on NumPy either way).
@pytest.mark.parametrize("make", [losses.MSELoss, losses.HuberLoss, losses.SoftMarginLoss,
                                  losses.BCEWithLogitsLoss, losses.CrossEntropyLoss])
def test_check_values_false_is_kept(make):
    assert make(check_values=False).check_values is False
    assert make(check_values=True).check_values is True
    assert make().check_values is None


# * SoftMarginLoss's backward multiplies by -t: a mutant dividing by -t survived, since
#   every test used t in {-1, +1} (where both agree). PyTorch accepts any real target.
def test_soft_margin_gradient_with_targets_other_than_plus_minus_one():
    from minidl.gradcheck import check_loss
    pred = np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]])
    target = np.array([[0.5, -2.0, 3.0], [-0.25, 1.5, -1.0]])
    result = check_loss(losses.SoftMarginLoss(), pred, target)
    assert result.passed, result


# * ELU's gradient at exactly 0 is alpha (PyTorch takes the x <= 0 branch there): the
#   mask y > 0 mutated to y >= 0 survived, since with the default alpha=1 both agree.
@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_elu_gradient_at_zero_is_alpha(alpha):
    layer = L.ELU(alpha=alpha)
    x = np.zeros((1, 3))
    layer(x)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 3))), np.full((1, 3), alpha))
    torch = pytest.importorskip("torch")
    t = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.elu(t, alpha=alpha).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), np.full((1, 3), alpha))

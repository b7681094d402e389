"""Whole networks checked end to end through their loss, input and every parameter."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minidl import layers as L, losses
from minidl.gradcheck import check_model_with_loss


def small_cnn(channels, height, width, classes):
    """conv - BN - ReLU - max-pool - linear: the family every image model is built from."""
    return L.Sequential(
        L.Conv2d(channels, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(4 * (height // 2) * (width // 2), classes))


def randomise_batchnorm(model, draw):
    """Non-trivial BN scale/shift/statistics, so no ReLU input sits exactly on its kink."""
    for layer in model:
        if isinstance(layer, L.BatchNorm2d):
            layer.weight.data[...] = draw.uniform(0.5, 1.5, layer.weight.data.shape)
            layer.bias.data[...] = draw.uniform(-0.3, 0.3, layer.bias.data.shape)
            layer.running_mean[...] = draw.normal(0, 0.1, layer.running_mean.shape)
            layer.running_var[...] = draw.uniform(0.5, 1.5, layer.running_var.shape)


@given(batch=st.integers(2, 3), height=st.integers(4, 6), width=st.integers(4, 5),
       channels=st.integers(1, 2), training=st.booleans(), smoothing=st.sampled_from([0.0, 0.1]))
def test_conv_bn_relu_pool_linear_with_cross_entropy(batch, height, width, channels, training,
                                                      smoothing):
    draw = np.random.default_rng(batch * 100 + height * 10 + width)
    model = small_cnn(channels, height, width, classes=3)
    randomise_batchnorm(model, draw)
    model.train(training)
    x = draw.standard_normal((batch, channels, height, width))
    target = draw.integers(0, 3, size=batch)
    result = check_model_with_loss(model, losses.CrossEntropyLoss(label_smoothing=smoothing),
                                   x, target)
    assert set(result.entries) == {"input", "model.0.weight", "model.0.bias", "model.1.weight",
                                   "model.1.bias", "model.5.weight", "model.5.bias"}
    assert result.passed, result.table()


@pytest.mark.parametrize("loss_fn", [losses.MSELoss(), losses.HuberLoss(0.5),
                                     losses.BCEWithLogitsLoss(), losses.SoftMarginLoss()],
                         ids=lambda loss: type(loss).__name__)
def test_mlp_with_each_classification_loss(loss_fn):
    draw = np.random.default_rng(3)
    model = L.Sequential(L.Linear(5, 6), L.Tanh(), L.Linear(6, 4))
    x = draw.standard_normal((3, 5))
    result = check_model_with_loss(model, loss_fn, x, draw.integers(0, 4, size=3))
    assert result.passed, result.table()


def test_the_check_catches_a_wrong_loss_gradient():
    class HalfGradientCE(losses.CrossEntropyLoss):
        def backward(self):
            return 0.5 * super().backward()

    draw = np.random.default_rng(0)
    model = L.Sequential(L.Linear(4, 3))
    result = check_model_with_loss(model, HalfGradientCE(), draw.standard_normal((2, 4)),
                                   np.array([0, 2]))
    assert not result.passed

"""Contracts that finite-difference checks alone do not pin.

- A second backward ACCUMULATES into ``param.grad`` (each gradient check runs one
  backward on zeroed grads, so ``=`` instead of ``+=`` would pass them).
- Gradients AT the kinks (x == 0, ties in a pooling window) equal PyTorch's; every
  finite-difference check keeps its inputs away from them.
- ``zero_grad`` reaches parameters inside nested containers.
- An empty batch (N = 0) gives empty outputs and zero parameter gradients, as in
  PyTorch; an empty feature or spatial axis is a clear error.
- The gradient checker itself is sharp enough to catch small errors.
"""
import numpy as np
import pytest

from minidl import layers as L, losses
from minidl.gradcheck import check_layer

PARAMETERISED = [
    (lambda: L.Linear(4, 3), (5, 4)),
    (lambda: L.Linear(4, 3), (2, 3, 4)),
    (lambda: L.Conv2d(2, 4, 3, padding=1), (2, 2, 5, 5)),
    (lambda: L.Conv2d(4, 6, 3, stride=2, groups=2), (2, 4, 7, 7)),
    (lambda: L.Conv2d(3, 4, 1, stride=2), (2, 3, 5, 5)),
    (lambda: L.BatchNorm1d(3), (6, 3)),
    (lambda: L.BatchNorm2d(3), (2, 3, 4, 4)),
    (lambda: L.BatchNorm2d(3, weight=False), (2, 3, 4, 4)),
]


@pytest.mark.parametrize("make, shape", PARAMETERISED)
def test_a_second_backward_accumulates_into_every_grad(make, shape):
    draw = np.random.default_rng(0)
    layer = make().to(np.float64)
    layer.train()
    x = draw.standard_normal(shape)
    y = layer(x)
    dy = draw.standard_normal(y.shape)
    layer.backward(dy)
    once = {name: p.grad.copy() for name, p in layer.named_parameters()}
    layer(x)
    layer.backward(dy)
    for name, param in layer.named_parameters():
        assert np.abs(once[name]).max() > 0, name
        np.testing.assert_allclose(param.grad, 2 * once[name], rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def test_zero_grad_reaches_nested_containers():
    model = L.Sequential(L.Linear(3, 3),
                         L.Residual(L.Sequential(L.Linear(3, 3), L.ReLU(), L.Linear(3, 3))),
                         L.Linear(3, 2))
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    y = model(x)
    model.backward(np.ones_like(y))
    assert all(np.abs(p.grad).max() > 0 for p in model.parameters())
    model.zero_grad()
    assert all(not p.grad.any() for p in model.parameters())
    assert len(model.parameters()) == 8


# --------------------------------------------------------------------------- kinks
def _torch_input_grad(torch_fn, x, dy):
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, requires_grad=True)
    torch_fn(t).backward(torch.tensor(dy))
    return t.grad.numpy()


KINKS = [
    (lambda: L.ReLU(), lambda t: __import__("torch").nn.functional.relu(t)),
    (lambda: L.LeakyReLU(0.1), lambda t: __import__("torch").nn.functional.leaky_relu(t, 0.1)),
    (lambda: L.ELU(0.5), lambda t: __import__("torch").nn.functional.elu(t, 0.5)),
    (lambda: L.GELU(), lambda t: __import__("torch").nn.functional.gelu(t)),
]


@pytest.mark.parametrize("make, torch_fn", KINKS)
def test_gradient_at_exactly_zero_equals_pytorch(make, torch_fn):
    x = np.array([[-1.0, 0.0, -0.0, 1.0]])
    dy = np.array([[0.5, 2.0, 3.0, 0.25]])
    layer = make()
    layer(x)
    np.testing.assert_allclose(layer.backward(dy), _torch_input_grad(torch_fn, x, dy),
                               rtol=1e-12)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_max_pool_ties_send_the_gradient_where_pytorch_does(kernel, stride, padding):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).integers(0, 2, size=(2, 3, 6, 6)).astype(np.float64)
    layer = L.MaxPool2d(kernel, stride, padding)
    y = layer(x)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    expected = _torch_input_grad(
        lambda t: torch.nn.functional.max_pool2d(t, kernel, stride, padding), x, dy)
    np.testing.assert_allclose(layer.backward(dy), expected, rtol=1e-12)


# --------------------------------------------------------------------------- empty batches
EMPTY_BATCH = PARAMETERISED + [
    (lambda: L.MaxPool2d(2), (0, 3, 4, 4)),
    (lambda: L.AvgPool2d(3, 1, 1), (0, 3, 4, 4)),
    (lambda: L.GlobalAvgPool2d(), (0, 3, 4, 4)),
    (lambda: L.GlobalMaxPool2d(), (0, 3, 4, 4)),
    (lambda: L.ReLU(), (0, 3)),
    (lambda: L.GELU(), (0, 3)),
    (lambda: L.Softmax(axis=0), (0, 3)),
    (lambda: L.Softmax(), (0, 3)),
    (lambda: L.Flatten(), (0, 3, 4)),
    (lambda: L.Dropout(0.5), (0, 3)),
]


@pytest.mark.parametrize("make, shape", EMPTY_BATCH)
def test_an_empty_batch_gives_empty_outputs_and_zero_gradients(make, shape):
    layer = make()
    x = np.zeros((0,) + shape[1:], dtype=np.float32)
    state = {key: value.copy() for key, value in layer.state_dict().items()}
    y = layer(x)
    assert y.shape[0] == 0 and y.dtype == np.float32
    dx = layer.backward(np.zeros_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(not p.grad.any() for p in layer.parameters())
    for key, value in layer.state_dict().items():  # running statistics untouched
        np.testing.assert_array_equal(value, state[key])


@pytest.mark.parametrize("make, shape", [
    (lambda: L.GlobalAvgPool2d(), (2, 3, 4, 0)),
    (lambda: L.Conv2d(3, 4, 1), (2, 3, 0, 4)),
    (lambda: L.BatchNorm2d(3), (2, 3, 0, 0)),
    (lambda: L.BatchNorm1d(3), (2, 0)),  # elementwise layers return an empty array instead
])
def test_an_empty_feature_or_spatial_axis_is_a_clear_error(make, shape):
    layer = make()
    with pytest.raises(ValueError, match=f"{type(layer).__name__}: .*empty axis"):
        layer(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("loss_fn, pred, target", [
    (losses.MSELoss(), np.zeros((4, 0)), np.zeros((4, 0))),
    (losses.BCEWithLogitsLoss(), np.zeros((4, 0)), np.zeros((4, 0))),
    (losses.CrossEntropyLoss(), np.zeros((0, 3)), np.zeros(0, dtype=np.int64)),
])
def test_a_loss_over_no_values_is_a_clear_error_not_nan(loss_fn, pred, target):
    with pytest.raises(ValueError, match=f"{type(loss_fn).__name__}: .* no values"):
        loss_fn(pred, target)


# --------------------------------------------------------------------------- the checker
class _Scaled(L.Linear):
    """A Linear whose weight gradient (or one entry of it) is deliberately off."""

    def __init__(self, factor=1.0, entry_error=0.0):
        super().__init__(3, 2)
        self.factor, self.entry_error = factor, entry_error

    def backward(self, dy):
        dx = super().backward(dy)
        self.weight.grad *= self.factor
        self.weight.grad[0, 0] += self.entry_error
        return dx


def test_check_layer_flags_a_tenth_of_a_percent_error_in_one_parameter():
    x = np.random.default_rng(4).standard_normal((4, 3))
    result = check_layer(_Scaled(factor=1.001), x)
    assert not result.entries["weight"]["passed"]
    assert result.entries["input"]["passed"] and result.entries["bias"]["passed"]


def test_check_layer_flags_a_small_additive_error_on_a_small_entry():
    layer = _Scaled(entry_error=1e-5)
    x = np.full((1, 3), 1e-3)  # dW = x^T dy: entries of size ~1e-3
    result = check_layer(layer, x, dy=np.ones((1, 2)))
    assert not result.entries["weight"]["passed"]


def test_check_layer_passes_a_large_gradient_matched_to_1e_8():
    draw = np.random.default_rng(5)
    x, dy = draw.standard_normal((4, 3)), draw.standard_normal((4, 2)) * 1e6  # grads ~1e6
    result = check_layer(_Scaled(factor=1 + 1e-8), x, dy=dy)
    assert result.passed, result.table()

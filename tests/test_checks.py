"""minidl.checks (one rule for every argument) and the layer input/output contracts."""
import numpy as np
import pytest

from minidl import checks, layers as L


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value, error", [
    (True, TypeError), (np.bool_(True), TypeError), (None, TypeError), ("3", TypeError),
    (2.0, TypeError), (0, ValueError), (-1, ValueError),
])
def test_positive_int_refuses(value, error):
    with pytest.raises(error, match=r"^Owner: size must be a positive integer, got "):
        checks.positive_int(value, "size", "Owner")


def test_positive_int_accepts_numpy_integers_and_returns_python_ints():
    value = checks.positive_int(np.int64(3), "size", "Owner")
    assert value == 3 and type(value) is int
    assert checks.positive_int(0, "size", "Owner", allow_zero=True) == 0


@pytest.mark.parametrize("value, error", [
    (True, TypeError), (None, TypeError), ("0.5", TypeError), ([0.5], TypeError),
    (float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError),
    (10**400, ValueError), (1.0, ValueError), (-0.1, ValueError),
])
def test_real_number_refuses(value, error):
    with pytest.raises(error, match=r"^Dropout: p must be a real number in \[0, 1\), got "):
        checks.real_number(value, "p", "Dropout", 0, 1, high_open=True)


@pytest.mark.parametrize("value", [0, 0.5, np.float32(0.25), np.float64(0.75), np.int8(0),
                                   np.array(0.5)])
def test_real_number_accepts_python_and_numpy_numbers(value):
    result = checks.real_number(value, "p", "Dropout", 0, 1, high_open=True)
    assert type(result) is float and result == float(value)


def test_real_number_open_bounds_and_message_names_the_type():
    with pytest.raises(ValueError, match=r"eps must be a real number in \(0, inf\), got 0 \(int\)"):
        checks.real_number(0, "eps", "BatchNorm2d", low=0, low_open=True)
    with pytest.raises(TypeError, match=r"got True \(bool\)"):
        checks.real_number(True, "eps", "BatchNorm2d", low=0, low_open=True)


def test_integer_choice_boolean():
    assert checks.integer(-1, "axis", "Softmax") == -1
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\], got 6"):
        checks.integer(6, "k", "Owner", 1, 5)
    assert checks.choice("tanh", "approximate", "GELU", ("none", "tanh")) == "tanh"
    with pytest.raises(ValueError, match="approximate must be one of 'none', 'tanh', got 1"):
        checks.choice(1, "approximate", "GELU", ("none", "tanh"))
    assert checks.boolean(np.bool_(False), "affine", "BatchNorm2d") is False
    with pytest.raises(TypeError, match="affine must be True or False, got 1"):
        checks.boolean(1, "affine", "BatchNorm2d")


# --------------------------------------------------------------------------- arrays
def test_array_shape_layouts():
    checks.array_shape(np.zeros((2, 3)), "X", "(N, ...)")
    checks.array_shape(np.zeros((2, 3, 4)), "X", "(..., in_features)")
    with pytest.raises(ValueError, match=r"X: expected input of shape \(N, C, H, W\) \(4-D\)"):
        checks.array_shape(np.zeros((2, 3)), "X", "(N, C, H, W)")
    with pytest.raises(ValueError, match="at least 1-D"):
        checks.array_shape(np.zeros(()), "X", "(N, ...)")


@pytest.mark.parametrize("x", [[1.0, 2.0], np.zeros(3, np.float16), np.zeros(3, np.int32),
                               np.zeros(3, np.complex128), np.zeros(3, bool)])
def test_float_array_refuses_everything_but_float32_and_float64(x):
    with pytest.raises(TypeError, match="^Layer: expected"):
        checks.float_array(x, "Layer")


# --------------------------------------------------------------------------- layer contracts
LAYERS_AND_INPUTS = [
    (lambda: L.Linear(3, 2), (4, 3)),
    (lambda: L.Linear(3, 2), (2, 5, 3)),          # any leading axes, as in PyTorch
    (lambda: L.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    (lambda: L.MaxPool2d(2), (2, 3, 4, 4)),
    (lambda: L.AvgPool2d(2), (2, 3, 4, 4)),
    (lambda: L.BatchNorm2d(3), (2, 3, 4, 4)),
    (lambda: L.BatchNorm1d(3), (4, 3)),
    (lambda: L.ReLU(), (2, 3)),
    (lambda: L.GELU(), (2, 3)),
    (lambda: L.Softmax(), (2, 3)),
    (lambda: L.Dropout(0.5), (2, 3)),
    (lambda: L.Flatten(), (2, 3, 4)),
    (lambda: L.Identity(), (2, 3)),
    (lambda: L.GlobalAvgPool2d(), (2, 3, 4, 4)),
    (lambda: L.Residual(L.Sequential(L.Linear(3, 3), L.ReLU())), (2, 3)),
    (lambda: L.LayerNorm(4), (2, 3, 4)),
    (lambda: L.GroupNorm(2, 4), (2, 4, 3)),
    (lambda: L.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True), (2, 3, 4)),
]


def _forward(make, shape):
    layer = make()
    y = layer(np.ones(shape, dtype=np.float32))
    return layer, y


@pytest.mark.parametrize("make, shape", LAYERS_AND_INPUTS)
@pytest.mark.parametrize("bad_dy, error, fragment", [
    (lambda y: y.tolist(), TypeError, "expected dy as an array"),
    (lambda y: np.ones(y.shape, dtype=np.int64), TypeError, "int64"),
    (lambda y: np.ones(y.shape, dtype=np.complex64), TypeError, "complex64"),
    (lambda y: np.ones(y.shape, dtype=np.float64), TypeError, "float64"),
    (lambda y: np.ones(y.shape + (1,), dtype=np.float32), ValueError, "expected dy of shape"),
])
def test_backward_checks_dy_before_the_layer_runs(make, shape, bad_dy, error, fragment):
    layer, y = _forward(make, shape)
    name = type(layer).__name__
    with pytest.raises(error, match=f"{name}.backward") as info:
        layer.backward(bad_dy(y))
    assert fragment in str(info.value)
    # The failed call consumed nothing: a correct dy still works, exactly once.
    dx = layer.backward(np.ones(y.shape, dtype=np.float32))
    assert dx.shape == shape and dx.dtype == np.float32
    with pytest.raises(RuntimeError, match="backward once per forward"):
        layer.backward(np.ones(y.shape, dtype=np.float32))


@pytest.mark.parametrize("make, shape", LAYERS_AND_INPUTS)
def test_every_layer_refuses_lists_and_integer_input_by_name(make, shape):
    layer = make()
    name = type(layer).__name__
    with pytest.raises(TypeError, match=f"^{name}: expected input as an array"):
        layer(np.ones(shape).tolist())
    with pytest.raises(TypeError, match=f"^{name}: expected a float32 or float64 array"):
        layer(np.ones(shape, dtype=np.int32))


def test_layers_without_saved_values_still_need_a_forward():
    with pytest.raises(RuntimeError, match="Identity.backward: nothing saved"):
        L.Identity().backward(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="Residual: body must be a Module, got int"):
        L.Residual(0)


@pytest.mark.parametrize("make, shape", [
    (lambda: L.LSTM(3, 4), (5, 2, 3)),
    (lambda: L.GRU(3, 4, batch_first=True), (2, 5, 3)),
    (lambda: L.MultiheadAttention(4, 2), (5, 2, 4)),
])
def test_layers_with_tuple_outputs_check_dy_too(make, shape):
    layer = make()
    output = layer(np.ones(shape, dtype=np.float32))[0]
    name = type(layer).__name__
    for bad, error in [(output.tolist(), TypeError), (output.astype(np.float64), TypeError),
                       (np.ones(output.shape + (1,), np.float32), ValueError)]:
        with pytest.raises(error, match=f"{name}.backward"):
            layer.backward(bad)
    assert layer.backward(np.ones_like(output)).shape == shape

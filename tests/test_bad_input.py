"""Every mistake a student can make gets a clear error: one row per mistake.

Each row builds something, feeds it bad input, and states the exception type and the
fragments the message must contain: the layer's (or loss's) name, what it expected,
and what it got.
"""
import numpy as np
import pytest

import minidl
from minidl import layers as L, losses

F32 = np.float32


def ones(*shape, dtype=F32):
    return np.ones(shape, dtype=dtype)


def _backward_twice():
    conv = L.Conv2d(3, 4, 3)
    conv(ones(1, 3, 4, 4))
    conv.backward(ones(1, 4, 2, 2))
    conv.backward(ones(1, 4, 2, 2))


def _load(edit):
    model = L.Sequential(L.Conv2d(1, 2, 3), L.BatchNorm2d(2))
    state = model.state_dict()
    edit(state)
    model.load_state_dict(state)


def _loss(loss_fn, logits, target):
    loss_fn(logits, target)


CASES = [
    # (id, action, exception, fragments of the message)
    ("conv wrong ndim", lambda: L.Conv2d(3, 4, 3)(ones(3, 8, 8)),
     ValueError, ["Conv2d", "(N, C, H, W)", "(3, 8, 8)"]),
    ("conv 1-D input", lambda: L.Conv2d(3, 4, 3)(ones(8)),
     ValueError, ["Conv2d", "(N, C, H, W)", "(8,)"]),
    ("conv wrong channels", lambda: L.Conv2d(3, 4, 3)(ones(1, 2, 8, 8)),
     ValueError, ["Conv2d", "expected 3 channels", "in_channels", "(1, 2, 8, 8)"]),
    ("conv input smaller than kernel", lambda: L.Conv2d(3, 4, 5)(ones(1, 3, 3, 3)),
     ValueError, ["Conv2d", "smaller than", "5x5"]),
    ("conv negative channels", lambda: L.Conv2d(3, -4, 3),
     ValueError, ["Conv2d", "out_channels", "-4"]),
    ("conv zero kernel", lambda: L.Conv2d(3, 4, 0),
     ValueError, ["Conv2d", "kernel_size", "0"]),
    ("conv groups do not divide", lambda: L.Conv2d(3, 4, 3, groups=2),
     ValueError, ["Conv2d", "divisible by groups"]),
    ("linear zero features", lambda: L.Linear(0, 3),
     ValueError, ["Linear", "in_features", "0"]),
    ("linear wrong width", lambda: L.Linear(4, 3)(ones(2, 5)),
     ValueError, ["Linear", "expected 4 features", "(2, 5)"]),
    ("maxpool smaller than kernel", lambda: L.MaxPool2d(3)(ones(1, 3, 2, 2)),
     ValueError, ["MaxPool2d", "smaller than the", "kernel 3x3"]),
    ("avgpool negative kernel", lambda: L.AvgPool2d(-1),
     ValueError, ["AvgPool2d", "kernel_size", "-1"]),
    ("global pool on vectors", lambda: L.GlobalAvgPool2d()(ones(2, 3)),
     ValueError, ["GlobalAvgPool2d", "(N, C, H, W)", "(2, 3)"]),
    ("batchnorm wrong channels", lambda: L.BatchNorm2d(3)(ones(2, 4, 2, 2)),
     ValueError, ["BatchNorm2d", "expected 3 channels", "(2, 4, 2, 2)"]),
    ("batchnorm batch of 1 in train", lambda: L.BatchNorm1d(3)(ones(1, 3)),
     ValueError, ["BatchNorm1d", "more than 1 value per channel", "(1, 3)"]),
    ("batchnorm zero features", lambda: L.BatchNorm2d(0),
     ValueError, ["BatchNorm2d", "num_features", "0"]),
    ("dropout p out of range", lambda: L.Dropout(1.5),
     ValueError, ["Dropout", "[0, 1)", "1.5"]),
    ("float16 input refused", lambda: L.Conv2d(3, 4, 3)(ones(1, 3, 8, 8, dtype=np.float16)),
     TypeError, ["Conv2d", "float32 or float64", "float16"]),
    ("uint8 images refused", lambda: L.Conv2d(3, 4, 3)(ones(1, 3, 8, 8, dtype=np.uint8)),
     TypeError, ["Conv2d", "float32 or float64", "uint8", "astype"]),
    ("bool input refused", lambda: L.ReLU()(ones(2, 3, dtype=bool)),
     TypeError, ["ReLU", "float32 or float64", "bool"]),
    ("int input refused", lambda: L.Linear(3, 2)(ones(2, 3, dtype=np.int64)),
     TypeError, ["Linear", "float32 or float64", "int64"]),
    ("float64 into float32 model", lambda: L.Linear(3, 2)(ones(2, 3, dtype=np.float64)),
     TypeError, ["Linear", "float64", "float32"]),
    ("NaN input", lambda: L.Sequential(L.Linear(3, 2))(np.full((2, 3), np.nan, F32)),
     ValueError, ["Sequential", "NaN or Inf"]),
    ("Inf input", lambda: L.ReLU()(np.array([[np.inf, 1.0]], F32)),
     ValueError, ["ReLU", "NaN or Inf"]),
    ("backward before forward", lambda: L.ReLU().backward(ones(2, 3)),
     RuntimeError, ["ReLU.backward", "before backward"]),
    ("backward twice", _backward_twice,
     RuntimeError, ["Conv2d.backward", "once per forward"]),
    ("backward with the wrong dy shape",
     lambda: (lambda layer: (layer(ones(2, 3)), layer.backward(ones(2, 4))))(L.Linear(3, 2)),
     ValueError, ["Linear.backward", "(2, 2)", "(2, 4)"]),
    ("state_dict missing key", lambda: _load(lambda s: s.pop("1.running_var")),
     ValueError, ["load_state_dict", "missing keys: 1.running_var"]),
    ("state_dict extra key", lambda: _load(lambda s: s.__setitem__("2.weight", np.zeros(2))),
     ValueError, ["load_state_dict", "unexpected keys: 2.weight"]),
    ("state_dict wrong shape", lambda: _load(lambda s: s.__setitem__("0.weight", np.zeros(3))),
     ValueError, ["load_state_dict", "0.weight", "(2, 1, 3, 3)", "(3,)"]),
    ("labels out of range", lambda: _loss(losses.CrossEntropyLoss(), ones(2, 3), np.array([0, 3])),
     ValueError, ["CrossEntropyLoss", "[0, 3)", "got 3"]),
    ("negative label", lambda: _loss(losses.CrossEntropyLoss(), ones(2, 3), np.array([0, -1])),
     ValueError, ["CrossEntropyLoss", "-1"]),
    ("float labels", lambda: _loss(losses.CrossEntropyLoss(), ones(2, 3), np.array([0.0, 1.0])),
     TypeError, ["CrossEntropyLoss", "float"]),
    ("batch size mismatch", lambda: _loss(losses.CrossEntropyLoss(), ones(2, 3), np.array([0, 1, 2])),
     ValueError, ["CrossEntropyLoss", "have 2 rows", "targets have 3"]),
    ("NaN logits", lambda: _loss(losses.CrossEntropyLoss(), np.full((2, 3), np.nan, F32),
                                 np.array([0, 1])),
     ValueError, ["CrossEntropyLoss", "NaN"]),
    ("MSE batch mismatch", lambda: _loss(losses.MSELoss(), ones(2, 3), ones(3, 3)),
     ValueError, ["MSELoss", "2 rows", "3"]),
    ("MSE shape mismatch", lambda: _loss(losses.MSELoss(), ones(2, 3), ones(2, 4)),
     ValueError, ["MSELoss", "(2, 3)", "(2, 4)"]),
    ("loss backward before call", lambda: losses.CrossEntropyLoss().backward(),
     RuntimeError, ["CrossEntropyLoss.backward", "call the loss"]),
]


@pytest.mark.parametrize("action, error, fragments", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(action, error, fragments):
    with pytest.raises(error) as info:
        action()
    message = str(info.value)
    missing = [fragment for fragment in fragments if fragment not in message]
    assert not missing, f"message {message!r} lacks {missing}"


@pytest.mark.skipif(not minidl.gpu_available(), reason="needs CuPy and a GPU")
def test_arrays_on_the_wrong_device():
    model = L.Sequential(L.Linear(3, 2)).to("gpu")
    with pytest.raises(ValueError, match="Linear: input is on cpu"):
        model(ones(2, 3))
    model.to("cpu")
    with pytest.raises(ValueError, match="Linear: input is on gpu"):
        model(minidl.to_device(ones(2, 3), "gpu"))

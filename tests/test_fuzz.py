"""Property-based fuzzing of the whole public API, as a new user would try it.

The rule for every call: a correct result (compared with a float64 reference, or with
the same call on a contiguous float64 copy of the input, where one exists) or a
ValueError / TypeError / RuntimeError (or one of minidl's subclasses) whose message
names the class, function or file - never another exception type, a RuntimeWarning
(warnings are errors here), a NaN or Inf from finite input, a wrong dtype or a wrong
shape.

Arguments are drawn from valid values and from the usual mistakes (0, negatives,
floats for ints, bools, None, strings, 2**63, 10**400, NaN, +-inf, tuples of the wrong
length, NumPy scalars); arrays from every dtype, 0 to 5 axes, zero-size axes,
non-contiguous and negative-stride views, nested lists, NaN and Inf. Arguments that
are the wrong *kind* (a bool, None or a string for a number, NaN for a real, a float
for an integer...) must be refused by the constructor itself.

Bounded: ``max_examples`` is small and the whole file runs in about two minutes.
"""
import math
import numbers

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
from minidl import Param, layers as L, losses, optim
from minidl.data import DataLoader, train_val_split, transforms as T
from minidl.optim import lr_scheduler as S
from minidl.train import (EarlyStopping, History, ModelCheckpoint, Trainer, accuracy,
                          confusion_matrix, load_checkpoint, load_weights, save_checkpoint,
                          save_weights, topk_correct)

from fuzzing import FUZZ, ODD_VALUES, arrays, finite, float_input, outcome, strict, wrong_kind


# ----------------------------------------------------------------------------- layers
# name -> (factory, valid kwargs, kind of each kwarg, valid input shape from the layer)
LAYERS = {
    "Linear": (L.Linear, dict(in_features=4, out_features=3, bias=True),
               dict(in_features="int", out_features="int", bias="bool"),
               lambda m: (3, m.in_features)),
    "Conv2d": (L.Conv2d, dict(in_channels=2, out_channels=4, kernel_size=3, stride=1,
                              padding=1, dilation=1, groups=2, bias=True),
               dict(in_channels="int", out_channels="int", stride=None, padding=None,
                    dilation=None, groups="int", bias="bool", kernel_size=None),
               lambda m: (2, m.in_channels, 7, 6)),
    "MaxPool2d": (L.MaxPool2d, dict(kernel_size=2, stride=None, padding=0), {},
                  lambda m: (2, 3, 6, 5)),
    "AvgPool2d": (L.AvgPool2d, dict(kernel_size=3, stride=2, padding=1), {},
                  lambda m: (2, 3, 6, 5)),
    "GlobalAvgPool2d": (L.GlobalAvgPool2d, {}, {}, lambda m: (2, 3, 4, 5)),
    "GlobalMaxPool2d": (L.GlobalMaxPool2d, {}, {}, lambda m: (2, 3, 4, 5)),
    "BatchNorm1d": (L.BatchNorm1d, dict(num_features=3, eps=1e-5, momentum=0.1, affine=True),
                    dict(num_features="int", eps="real", momentum="real", affine="bool"),
                    lambda m: (4, m.num_features)),
    "BatchNorm2d": (L.BatchNorm2d, dict(num_features=3, eps=1e-5, momentum=0.1, affine=True),
                    dict(num_features="int", eps="real", momentum="real", affine="bool"),
                    lambda m: (4, m.num_features, 3, 2)),
    "Dropout": (L.Dropout, dict(p=0.5), dict(p="real"), lambda m: (3, 5)),
    "Flatten": (L.Flatten, {}, {}, lambda m: (2, 3, 4)),
    "Identity": (L.Identity, {}, {}, lambda m: (2, 3)),
    "ReLU": (L.ReLU, {}, {}, lambda m: (2, 3, 4)),
    "LeakyReLU": (L.LeakyReLU, dict(negative_slope=0.01), dict(negative_slope="real"),
                  lambda m: (2, 5)),
    "ELU": (L.ELU, dict(alpha=1.0), dict(alpha="real"), lambda m: (2, 5)),
    "GELU": (L.GELU, dict(approximate="none"), dict(approximate=("none", "tanh")),
             lambda m: (2, 5)),
    "Sigmoid": (L.Sigmoid, {}, {}, lambda m: (2, 5)),
    "Tanh": (L.Tanh, {}, {}, lambda m: (2, 5)),
    "Softmax": (L.Softmax, dict(axis=-1), dict(axis="int"), lambda m: (2, 3, 4)),
    "Sequential": (lambda **k: L.Sequential(L.Linear(4, 3), L.ReLU()), {}, {},
                   lambda m: (2, 4)),
    "Residual": (lambda **k: L.Residual(L.Sequential(L.Linear(4, 4), L.Tanh())), {}, {},
                 lambda m: (2, 4)),
}


def owners(name):
    """Names an error may carry: the layer's, or for a container the layer inside that
    found the problem."""
    return (name, "Linear", "ReLU", "Tanh") if name in ("Sequential", "Residual") else name


def reference_output(layer, x):
    """The layer's output on a contiguous float64 copy of ``x``, from a float64 twin."""
    factory, kwargs = layer._fuzz_recipe
    twin = factory(**kwargs)
    twin.load_state_dict(layer.state_dict())
    twin.to(np.float64)
    twin.train(layer.training)
    return twin(np.ascontiguousarray(x, dtype=np.float64))


@pytest.mark.parametrize("name", sorted(LAYERS))
@FUZZ
@given(data=st.data())
def test_layer_constructors_refuse_wrong_kinds_and_what_they_accept_works(name, data):
    factory, valid, kinds, input_shape = LAYERS[name]
    kwargs = dict(valid)
    if kwargs:
        key = data.draw(st.sampled_from(sorted(kwargs)))
        kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [valid[key]]))
    else:
        key = None
    owner = owners(name)
    status, layer = outcome(owner, lambda: factory(**kwargs))
    if key is not None and wrong_kind(kinds.get(key), kwargs[key]):
        assert status == "error", f"{name}({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    x = float_input(data.draw, input_shape(layer))
    status, y = outcome(owner, lambda: layer(x))
    if status == "error":
        return
    assert y.dtype == x.dtype and finite(y)
    dy = np.ones_like(y)
    status, dx = outcome(owner, lambda: layer.backward(dy))
    assert status == "ok", dx
    assert dx.shape == x.shape and dx.dtype == x.dtype and finite(dx)
    for param in layer.parameters():
        assert param.grad.dtype == param.data.dtype and finite(param.grad)


@pytest.mark.parametrize("name", sorted(LAYERS))
@FUZZ
@given(data=st.data())
def test_layer_forward_backward_on_drawn_arrays(name, data):
    factory, valid, _, input_shape = LAYERS[name]
    minidl.seed(0)
    layer = factory(**valid)
    layer._fuzz_recipe = (factory, valid)
    if data.draw(st.booleans()):
        shape = input_shape(layer)
        if data.draw(st.booleans()):
            shape = (data.draw(st.sampled_from([0, 1])),) + tuple(shape[1:])
        x = data.draw(arrays(shape=shape))
    else:
        x = data.draw(arrays())
    if data.draw(st.booleans()):
        layer.eval()
    owner = owners(name)
    status, y = outcome(owner, lambda: layer(x))
    if status == "error":
        return
    assert isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64), \
        f"{name} accepted {type(x).__name__} {getattr(x, 'dtype', '')}"
    assert finite(x), f"{name} accepted NaN/Inf input"
    assert y.dtype == x.dtype and finite(y)
    if name != "Dropout" or not layer.training:
        expected = reference_output(layer, x)
        tolerance = 1e-4 if x.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance)
    dy = np.ones_like(y)
    dy_kind = data.draw(st.sampled_from(["good", "list", "int", "float64", "shape"]))
    if dy_kind == "list":
        dy = dy.tolist()
    elif dy_kind == "int":
        dy = dy.astype(np.int64)
    elif dy_kind == "float64" and y.dtype == np.float32:
        dy = dy.astype(np.float64)
    elif dy_kind == "shape":
        dy = np.ones(y.shape + (1,), y.dtype)
    status, dx = outcome(owner, lambda: layer.backward(dy))
    if dy_kind == "good" or (dy_kind == "float64" and y.dtype == np.float64):
        assert status == "ok", dx
        assert dx.shape == x.shape and dx.dtype == x.dtype and finite(dx)
    else:
        assert status == "error", f"{name}.backward accepted a bad dy ({dy_kind})"


# ----------------------------------------------------------------------------- losses
LOSSES = {
    "CrossEntropyLoss": (losses.CrossEntropyLoss, dict(label_smoothing=0.1),
                         dict(label_smoothing="real", check_values=("never",)), "classes"),
    "NLLLoss": (losses.NLLLoss, {}, dict(check_values=("never",)), "log_probs"),
    "BCEWithLogitsLoss": (losses.BCEWithLogitsLoss, {}, dict(check_values=("never",)),
                          "binary"),
    "MSELoss": (losses.MSELoss, {}, dict(check_values=("never",)), "same"),
    "HuberLoss": (losses.HuberLoss, dict(delta=1.0), dict(delta="real",
                                                          check_values=("never",)), "same"),
    "SoftMarginLoss": (losses.SoftMarginLoss, {}, dict(check_values=("never",)), "signs"),
}


def loss_target(kind, pred_shape, generator):
    n = pred_shape[0] if pred_shape else 0
    if kind in ("classes", "log_probs"):
        return generator.integers(0, pred_shape[1], n)
    if kind == "binary":
        return generator.integers(0, 2, pred_shape).astype(np.float32)
    if kind == "signs":
        return np.where(generator.random(pred_shape) < 0.5, -1.0, 1.0).astype(np.float32)
    return generator.standard_normal(pred_shape).astype(np.float32)


def loss_reference(name, pred, target, delta=1.0, smoothing=0.1):
    """The loss in float64, from its definition."""
    p = pred.astype(np.float64)
    if name in ("CrossEntropyLoss", "NLLLoss"):
        logp = p - np.log(np.exp(p - p.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - p.max(1, keepdims=True) if name == "CrossEntropyLoss" else p
        k = p.shape[1]
        eps = smoothing if name == "CrossEntropyLoss" else 0.0
        picked = logp[np.arange(len(p)), target]
        return float(np.mean(-(1 - eps) * picked - eps * logp.mean(1)))
    t = target.astype(np.float64)
    if name == "BCEWithLogitsLoss":
        return float(np.mean(np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))))
    if name == "MSELoss":
        return float(np.mean((p - t) ** 2))
    if name == "HuberLoss":
        r = np.abs(p - t)
        return float(np.mean(np.where(r < delta, 0.5 * r ** 2, delta * (r - 0.5 * delta))))
    return float(np.mean(np.log1p(np.exp(-t * p))))


@pytest.mark.parametrize("name", sorted(LOSSES))
@FUZZ
@given(data=st.data())
def test_losses_on_drawn_arguments_and_arrays(name, data):
    factory, valid, kinds, target_kind = LOSSES[name]
    kwargs = dict(valid)
    key = data.draw(st.sampled_from(sorted(kinds)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [valid.get(key), None]))
    status, loss_fn = outcome(name, lambda: factory(**kwargs))
    if key != "check_values" and wrong_kind(kinds[key], kwargs[key]):
        assert status == "error", f"{name}({key}={kwargs[key]!r}) was accepted"
    if key == "check_values" and kwargs[key] is not None and \
            not isinstance(kwargs[key], (bool, np.bool_)):
        assert status == "error", f"{name}(check_values={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    generator = np.random.default_rng(data.draw(st.integers(0, 100)))
    if data.draw(st.booleans()):  # a valid pair (N may be 0)
        shape = (data.draw(st.integers(0, 4)), data.draw(st.integers(1, 4)))
        pred = float_input(data.draw, shape)
        if target_kind == "log_probs":
            pred = pred - np.log(np.exp(pred).sum(1, keepdims=True)).astype(pred.dtype)
        target = loss_target(target_kind, shape, generator)
        valid_pair = True
    else:
        pred = data.draw(arrays())
        shape = np.shape(pred)
        target = data.draw(st.one_of(arrays(), st.just(
            loss_target(target_kind, shape, generator) if len(shape) == 2 and shape[1] else 0)))
        valid_pair = False
    status, value = outcome(name, lambda: loss_fn(pred, target))
    if valid_pair and shape[0] > 0:
        assert status == "ok", value
    if status == "error":
        return
    assert isinstance(pred, np.ndarray) and pred.dtype in (np.float32, np.float64)
    assert finite(pred), f"{name} accepted NaN/Inf predictions"
    assert np.asarray(value).dtype == pred.dtype and finite(value)
    if valid_pair:
        expected = loss_reference(name, pred, np.asarray(target),
                                  delta=kwargs.get("delta", 1.0),
                                  smoothing=kwargs.get("label_smoothing", 0.0))
        np.testing.assert_allclose(float(value), expected, rtol=1e-4, atol=1e-6)
    status, grad = outcome(name, loss_fn.backward)
    assert status == "ok", grad
    assert grad.shape == pred.shape and grad.dtype == pred.dtype and finite(grad)


# ----------------------------------------------------------------------------- optim
def params(dtype=np.float32):
    generator = np.random.default_rng(0)
    out = [Param(generator.standard_normal((3, 2)).astype(dtype)),
           Param(generator.standard_normal(2).astype(dtype))]
    for p in out:
        p.grad[...] = generator.standard_normal(p.data.shape)
    return out


OPTIMIZERS = {
    "SGD": (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=False,
                            weight_decay=0.0),
            dict(lr="real", momentum="real", dampening="real", nesterov="bool",
                 weight_decay="real")),
    "Adam": (optim.Adam, dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                              amsgrad=False),
             dict(lr="real", eps="real", weight_decay="real", amsgrad="bool", betas=None)),
    "AdamW": (optim.AdamW, dict(lr=1e-3, weight_decay=1e-2),
              dict(lr="real", weight_decay="real")),
    "Adamax": (optim.Adamax, dict(lr=2e-3, eps=1e-8), dict(lr="real", eps="real")),
    "Adagrad": (optim.Adagrad, dict(lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0,
                                    eps=1e-10),
                dict(lr="real", lr_decay="real", initial_accumulator_value="real",
                     eps="real")),
    "RMSprop": (optim.RMSprop, dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0,
                                    centered=False),
                dict(lr="real", alpha="real", eps="real", momentum="real", centered="bool")),
    "Adadelta": (optim.Adadelta, dict(lr=1.0, rho=0.9, eps=1e-6),
                 dict(lr="real", rho="real", eps="real")),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@FUZZ
@given(data=st.data())
def test_optimizers_on_drawn_hyperparameters(name, data):
    factory, valid, kinds = OPTIMIZERS[name]
    kwargs = dict(valid)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [valid[key], (0.5, 0.5),
                                                          (0.9, 1.0), (0.9, 0.99, 0.9)]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    group = params(dtype)
    status, optimizer = outcome(name, lambda: factory(group, **kwargs))
    if wrong_kind(kinds.get(key), kwargs[key]):
        assert status == "error", f"{name}({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    before = [p.data.copy() for p in group]
    huge = isinstance(kwargs[key], numbers.Real) and abs(float(kwargs[key])) > 1e6
    with np.errstate(over="ignore" if huge else "raise", invalid="ignore" if huge else "raise"):
        for _ in range(3):  # an lr of 2**63 may overflow float32: that is arithmetic
            status, error = outcome(name, optimizer.step)
            assert status == "ok", error
    for p in group:
        assert p.data.dtype == dtype and (huge or finite(p.data)), f"{name}({key}={kwargs[key]!r})"
    if huge:
        return
    reference = [q.astype(np.float64) for q in before]
    # float64 reference: the same steps from the same start in float64
    twin = params(np.float64)
    for q, old in zip(twin, reference):
        q.data[...] = old
    other = factory(twin, **kwargs)
    for _ in range(3):
        other.step()
    for p, q in zip(group, twin):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-3, atol=1e-5)
    # the state is all-or-nothing: a foreign or empty state is refused
    status, _ = outcome(name, lambda: optimizer.load_state_dict(data.draw(st.sampled_from(
        [{}, None, {"state": {}, "param_groups": [{}]}, [1], {"state": 1, "param_groups": 2}]))))
    assert status == "error"


@FUZZ
@given(data=st.data())
def test_optimizer_params_argument(data):
    value = data.draw(st.sampled_from(ODD_VALUES + [[], [Param(np.zeros(2))] * 2, L.Linear(2, 2),
                                                    [{"params": []}], [{"lr": 1}], {"x": 1},
                                                    [np.zeros(3)]]))
    status, _ = outcome("SGD", lambda: optim.SGD(value, lr=0.1))
    assert status == "error"


# ----------------------------------------------------------------------------- schedulers
SCHEDULERS = {
    "StepLR": (S.StepLR, dict(step_size=2, gamma=0.5), dict(step_size="int", gamma="real")),
    "MultiStepLR": (S.MultiStepLR, dict(milestones=[1, 3], gamma=0.5),
                    dict(gamma="real", milestones=None)),
    "ExponentialLR": (S.ExponentialLR, dict(gamma=0.9), dict(gamma="real")),
    "CosineAnnealingLR": (S.CosineAnnealingLR, dict(T_max=5, eta_min=0.0),
                          dict(T_max="int", eta_min="real")),
    "LinearLR": (S.LinearLR, dict(start_factor=0.5, end_factor=1.0, total_iters=3),
                 dict(start_factor="real", end_factor="real", total_iters="int")),
    "PiecewiseLinearLR": (S.PiecewiseLinearLR, dict(milestones=[0, 2, 5], factors=[0, 1, 0]),
                          dict(milestones=None, factors=None)),
    "LinearWarmupDecayLR": (S.LinearWarmupDecayLR, dict(warmup_steps=2, total_steps=6),
                            dict(warmup_steps="int", total_steps="int")),
    "OneCycleLR": (S.OneCycleLR, dict(max_lr=0.5, total_steps=12, pct_start=0.3,
                                      div_factor=25.0, final_div_factor=1e4,
                                      anneal_strategy="cos", three_phase=False),
                   dict(max_lr=None, total_steps="int", pct_start="real", div_factor="real",
                        final_div_factor="real", anneal_strategy=("cos", "linear"),
                        three_phase="bool")),
    "ReduceLROnPlateau": (S.ReduceLROnPlateau, dict(mode="min", factor=0.5, patience=1,
                                                    threshold=1e-4, cooldown=0, min_lr=0.0),
                          dict(mode=("min", "max"), factor="real", patience="int",
                               threshold="real", cooldown="int", min_lr=None)),
    "LambdaLR": (S.LambdaLR, dict(lr_lambda=lambda step: 0.9 ** step), dict(lr_lambda=None)),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@FUZZ
@given(data=st.data())
def test_schedulers_on_drawn_arguments(name, data):
    factory, valid, kinds = SCHEDULERS[name]
    kwargs = dict(valid)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [
        valid[key], [1, 1], [3, 1], [0, 2 ** 63], lambda step: float("nan"),
        lambda step: "x", lambda step: 10.0 ** (step * 100), [float("nan")]]))
    optimizer = optim.SGD(params(), lr=0.1, momentum=0.9)
    status, scheduler = outcome(name, lambda: factory(optimizer, **kwargs))
    if wrong_kind(kinds.get(key), kwargs[key]):
        assert status == "error", f"{name}({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    steps = 12 if name != "OneCycleLR" else scheduler.total_steps - 1
    for step in range(steps):
        if name == "ReduceLROnPlateau":
            metric = data.draw(st.sampled_from([1.0, 2.0, np.float32(0.5), float("nan"), "x",
                                                None, np.ones(1)]))
            status, error = outcome(name, lambda: scheduler.step(metric))
        else:
            status, error = outcome(name, scheduler.step)
        if status == "error":
            assert name in ("LambdaLR", "ReduceLROnPlateau") or "overflow" in str(error) \
                or "too large" in str(error), error
            break
        lr = optimizer.param_groups[0]["lr"]
        assert isinstance(lr, float) and math.isfinite(lr), (name, kwargs, lr)


# ----------------------------------------------------------------------------- data
TRANSFORMS = {
    "ToFloat": (T.ToFloat, dict(dtype=None), dict(dtype=None)),
    "Normalize": (T.Normalize, dict(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)),
                  dict(mean=None, std=None)),
    "RandomCrop": (T.RandomCrop, dict(size=4, padding=1, padding_mode="constant", fill=0),
                   dict(padding="int", padding_mode=("constant", "reflect", "edge"),
                        fill="real", size=None)),
    "RandomTranslate": (T.RandomTranslate, dict(max_shift=1, padding_mode="reflect", fill=0),
                        dict(max_shift="int", padding_mode=("constant", "reflect", "edge"),
                             fill="real")),
    "RandomHorizontalFlip": (T.RandomHorizontalFlip, dict(p=0.5), dict(p="real")),
    "Cutout": (T.Cutout, dict(size=2, fill=0), dict(fill="real", size=None)),
    "Compose": (T.Compose, dict(transforms=[T.RandomHorizontalFlip()]), dict(transforms=None)),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@FUZZ
@given(data=st.data())
def test_transforms_on_drawn_arguments_and_images(name, data):
    factory, valid, kinds = TRANSFORMS[name]
    kwargs = dict(valid)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [valid[key], (0.5,), (1, 2)]))
    status, transform = outcome(name, lambda: factory(**kwargs))  # noqa: B023
    if wrong_kind(kinds.get(key), kwargs[key]):
        assert status == "error", f"{name}({key}={kwargs[key]!r}) was accepted"
    if status == "error":
        return
    if data.draw(st.booleans()):
        dtype = np.uint8 if name == "ToFloat" else data.draw(
            st.sampled_from([np.float32, np.float64, np.uint8]))
        x = data.draw(arrays(shape=(data.draw(st.integers(0, 3)), 3, 5, 4), dtypes=[dtype],
                             specials=False))
    else:
        x = data.draw(arrays())
    owner = (name, "RandomHorizontalFlip") if name == "Compose" else name
    status, y = outcome(owner, lambda: transform(x, np.random.default_rng(0)))
    if status == "error" or y is x:  # Compose([]) hands back what it was given
        return
    assert isinstance(y, (np.ndarray, np.generic))
    assert np.shape(y) == np.shape(x) if name in ("ToFloat", "Compose") else (
        y.ndim == 4 and y.shape[:2] == np.shape(x)[:2])
    if name != "ToFloat" and np.asarray(x).dtype.kind == "f":
        assert y.dtype == x.dtype
    if np.asarray(x).dtype.kind in "fu" and finite(x):
        assert finite(y), f"{name} made NaN/Inf from finite images"


@FUZZ
@given(data=st.data())
def test_data_loader_and_split_on_drawn_arguments(data):
    x = data.draw(st.one_of(arrays(), st.just(np.zeros((5, 2), np.float32))))
    y = data.draw(st.one_of(arrays(), st.just(np.arange(5))))
    kwargs = dict(batch_size=2, shuffle=True, drop_last=False, seed=0)
    key = data.draw(st.sampled_from(sorted(kwargs)))
    kwargs[key] = data.draw(st.sampled_from(ODD_VALUES + [kwargs[key]]))
    status, loader = outcome("DataLoader", lambda: DataLoader(x, y, **kwargs))
    kinds = dict(batch_size="int", shuffle="bool", drop_last="bool", seed=None)
    if wrong_kind(kinds[key], kwargs[key]) or (key == "seed" and kwargs[key] is not None and
                                               wrong_kind("int", kwargs[key])):
        assert status == "error", f"DataLoader({key}={kwargs[key]!r}) was accepted"
    if status == "ok":
        batches = list(loader)
        assert sum(len(b[0]) for b in batches) <= len(x)
        for xb, yb in batches:
            assert len(xb) == len(yb)
        state = loader.state_dict()
        outcome("DataLoader", lambda: loader.load_state_dict(state))
    fraction = data.draw(st.sampled_from(ODD_VALUES + [0.2, 0.5]))
    status, parts = outcome("train_val_split", lambda: train_val_split(x, y, fraction, seed=0))
    if status == "ok":
        (xt, yt), (xv, yv) = parts
        assert len(xt) + len(xv) == len(x) and len(xt) == len(yt) and len(xv) == len(yv)


# ----------------------------------------------------------------------------- train
@FUZZ
@given(data=st.data())
def test_metrics_on_drawn_arrays(data):
    logits = data.draw(st.one_of(arrays(), st.just(np.eye(4, 5, dtype=np.float32))))
    labels = data.draw(st.one_of(arrays(), st.just(np.arange(4))))
    topk = data.draw(st.sampled_from(ODD_VALUES + [(1,), (1, 5), (1, 2)]))
    status, result = outcome("accuracy", lambda: accuracy(logits, labels, topk=topk))
    if status == "ok":
        values = result.values() if isinstance(result, dict) else np.atleast_1d(result)
        for value in values:
            assert value is None or 0.0 <= float(value) <= 1.0
    classes = data.draw(st.sampled_from(ODD_VALUES + [5]))
    status, matrix = outcome("confusion_matrix", lambda: confusion_matrix(labels, labels,
                                                                          classes))
    if status == "ok":
        assert matrix.shape == (classes, classes) and matrix.sum() == len(labels)
    outcome("topk_correct", lambda: topk_correct(logits, labels, topk=topk))


@FUZZ
@given(data=st.data())
def test_callbacks_and_history_on_drawn_arguments(data, tmp_path_factory):
    value = data.draw(st.sampled_from(ODD_VALUES + ["val_loss", "min", "auto"]))
    key = data.draw(st.sampled_from(["monitor", "patience", "mode", "min_delta",
                                     "restore_best"]))
    status, _ = outcome("EarlyStopping", lambda: EarlyStopping(**{key: value}))
    kinds = dict(patience="int", restore_best="bool", min_delta="real",
                 mode=("min", "max", "auto"), monitor=None)
    if wrong_kind(kinds[key], value):
        assert status == "error", f"EarlyStopping({key}={value!r}) was accepted"
    path = tmp_path_factory.mktemp("ckpt") / "best.npz"
    key = data.draw(st.sampled_from(["path", "save_best_only", "mode", "min_delta"]))
    kwargs = {"path": path, key: value} if key != "path" else {"path": value}
    status, _ = outcome("ModelCheckpoint", lambda: ModelCheckpoint(**kwargs))
    if key == "save_best_only" and wrong_kind("bool", value):
        assert status == "error"


@FUZZ
@given(rows=st.sampled_from(ODD_VALUES + [[{"epoch": 1, "train_loss": 0.5}]]))
def test_history_on_drawn_rows(rows):
    outcome("History", lambda: History(rows))


def tiny_setup(lr=0.1):
    minidl.seed(0)
    model = L.Sequential(L.Linear(3, 4), L.ReLU(), L.Linear(4, 2))
    return model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=lr)


@FUZZ
@given(data=st.data())
def test_trainer_on_drawn_arguments(data):
    model, loss_fn, optimizer = tiny_setup()
    kwargs = dict(scheduler_interval="epoch", quiet=True, log_interval=20)
    key = data.draw(st.sampled_from(sorted(kwargs) + ["loss_fn", "optimizer", "model"]))
    value = data.draw(st.sampled_from(ODD_VALUES + [kwargs.get(key, None)]))
    args = dict(model=model, loss_fn=loss_fn, optimizer=optimizer, **kwargs)
    args[key] = value
    args["quiet"] = True if key != "quiet" else value
    status, trainer = outcome("Trainer", lambda: Trainer(**args))
    if key in ("model", "loss_fn", "optimizer") or (key == "quiet" and wrong_kind("bool", value)):
        assert status == "error", f"Trainer({key}={value!r}) was accepted"
    if status == "error":
        return
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    loader = DataLoader(x, np.arange(6) % 2, batch_size=3, seed=0)
    epochs = data.draw(st.sampled_from([v for v in ODD_VALUES + [1, 2]  # 2**63 epochs: valid,
                                        if wrong_kind("int", v) or v < 10]))  # but endless
    status, history = outcome("Trainer", lambda: trainer.fit(loader, epochs=epochs))
    if not wrong_kind("int", epochs) and epochs > 0 and epochs < 10:
        assert status == "ok", history


@pytest.mark.parametrize("lr", [1e30, 1e10])
def test_trainer_diverging_lr_is_a_non_finite_loss_error(lr):
    model, loss_fn, optimizer = tiny_setup(lr=lr)
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32) * 10
    loader = DataLoader(x, np.arange(6) % 2, batch_size=3, seed=0)
    trainer = Trainer(model, loss_fn, optimizer, quiet=True)
    with strict():
        with pytest.raises(minidl.train.NonFiniteLossError, match="epoch"):
            trainer.fit(loader, epochs=20)


# ----------------------------------------------------------------------------- checkpoint
@FUZZ
@given(data=st.data())
def test_checkpoint_functions_on_drawn_arguments(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    model, _, optimizer = tiny_setup()
    path = folder / "c.npz"
    key = data.draw(st.sampled_from(["epoch", "extra", "history", "path", "model",
                                     "optimizer"]))
    value = data.draw(st.sampled_from(ODD_VALUES + [np.zeros(3, np.complex64),
                                                    np.array([None]), {"a": object()}]))
    args = dict(path=path, model=model, optimizer=optimizer, epoch=1, extra=None,
                history=None)
    args[key] = value
    if key == "path" and isinstance(value, str) and value:  # a valid name: inside the folder
        args["path"] = path = folder / value
    status, _ = outcome(("save_checkpoint", "c.npz"), lambda: save_checkpoint(**args))
    if key == "epoch" and wrong_kind("int", value):
        assert status == "error"
    if status == "ok":
        fresh, _, fresh_optimizer = tiny_setup(lr=0.5)
        if args["optimizer"] is None:
            fresh_optimizer = None
        status, result = outcome(("load_checkpoint", "c.npz"),
                                 lambda: load_checkpoint(path, fresh, fresh_optimizer,
                                                         restore_rng=False))
        assert status == "ok", result
    bad = data.draw(st.sampled_from([b"", b"PK\x03\x04" + bytes(40), b"\x93NUMPY" + bytes(20),
                                     b"garbage" * 10]))
    (folder / "bad.npz").write_bytes(bad)
    for load in (lambda: load_checkpoint(folder / "bad.npz", tiny_setup()[0]),
                 lambda: load_weights(folder / "bad.npz", tiny_setup()[0])):
        status, error = outcome("bad.npz", load)
        assert status == "error"
    status, _ = outcome("save_weights", lambda: save_weights(folder / "w.npz", value))
    assert status == "error"

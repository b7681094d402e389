"""Contracts of the gradient checker and the losses that the mutation run showed unpinned
(issue 12): a checker that is wrong must fail these tests, not pass every layer.

* The checker: its relative error and its floor ``atol / rtol``, its default tolerances
  and step, centered differences, a random upstream gradient, every parameter checked,
  the layer's dtype/state/mode/flags/random stream restored, the report table.
* ``ModelWithLoss`` / ``check_model_with_loss`` in process (the network tests are slow).
* The losses: the dtype of the loss and gradient, ``check_values`` kept, constructor
  errors naming the class and the argument, the layout each loss expects.
"""
import contextlib
import io

import numpy as np
import pytest

from minidl import backend, layers as L, losses
from minidl.gradcheck import (ModelWithLoss, assert_gradients, assert_loss_gradients,
                              builtin_cases, check_layer, check_loss, check_model_with_loss, main,
                              numerical_gradient, rel_error)
from minidl.module import Module, Param

DRAW = np.random.default_rng(12)


# --------------------------------------------------------------------------- test layers
class Scale(Module):
    """``y = x * weight + bias`` per feature, with deliberately wrong gradients on request.

    x: (N, F). ``*_factor`` multiplies a true gradient, ``*_offset`` is added to one entry
    (``offset_at``) of it: the errors a checker must see (or tolerate).
    """

    def __init__(self, weight, bias=None, dx_factor=1.0, dw_factor=1.0, db_factor=1.0,
                 dx_offset=0.0, dw_offset=0.0, offset_at=None):
        super().__init__()
        self.weight = Param(np.array(weight, dtype=np.float64))
        self.bias = Param(np.zeros_like(self.weight.data) if bias is None
                          else np.array(bias, dtype=np.float64))
        self.errors = dx_factor, dw_factor, db_factor, dx_offset, dw_offset, offset_at

    def forward(self, x):
        self.save_for_backward(x)
        return x * self.weight.data + self.bias.data

    def backward(self, dy):
        x = self.saved_for_backward(dy)
        dx_factor, dw_factor, db_factor, dx_offset, dw_offset, offset_at = self.errors
        self.weight.grad += dw_factor * (dy * x).sum(axis=0)
        self.bias.grad += db_factor * dy.sum(axis=0)
        dx = dx_factor * dy * self.weight.data
        if offset_at is not None:
            dx[offset_at] += dx_offset
            self.weight.grad[offset_at[-1]] += dw_offset
        return dx


class Cube(Module):
    """``y = x^3``: at x = 0 the true gradient is 0 and the centered difference eps^2 dy."""

    def forward(self, x):
        self.save_for_backward(x)
        return x ** 3

    def backward(self, dy):
        return 3 * self.saved_for_backward(dy) ** 2 * dy


class SoftmaxWithoutBackward(L.Softmax):
    """Softmax whose backward returns 0: right for an all-ones dy (rows sum to 1), wrong
    for any other dy. A checker with dy = 1 would pass it."""

    def backward(self, dy):
        return np.zeros_like(super().backward(dy))


class BatchNormWithoutInputGradient(L.BatchNorm1d):
    """dx = 0: right only when dy equals x (dy == x makes BatchNorm's dx vanish)."""

    def backward(self, dy):
        return np.zeros_like(super().backward(dy))


def _table_rows(result):
    return result.table().split("\n")


# --------------------------------------------------------------------------- rel_error
@pytest.mark.parametrize("a, b, kwargs, expected", [
    ([3.0], [1.0], {}, 0.5),                                # |3-1| / (3+1)
    ([1.0, -3.0], [1.0, 1.0], {}, 1.0),                     # the largest entry, signs count
    ([2.0, 5.0], [2.0, 5.0], {}, 0.0),
    ([0.0], [0.0], {}, 0.0),                                # 0/0 read as 0, not NaN
    ([0.0], [1e-40], {}, 1e-40 / 1e-30),                    # below the floor tiny = 1e-30
    ([0.0], [1e-40], {"tiny": 1e-50}, 1.0),
    ([[1.0, 2.0]], [[1.0, 2.5]], {}, 0.5 / 4.5),
    (np.zeros((0, 3)), np.zeros((0, 3)), {}, 0.0),
])
def test_rel_error_is_the_documented_formula(a, b, kwargs, expected):
    error = rel_error(np.array(a), np.array(b), **kwargs)
    assert type(error) is float
    assert error == pytest.approx(expected, rel=1e-12, abs=0)


def test_rel_error_computes_in_float64():
    big = np.array([3e38], dtype=np.float32)  # |a| + |b| and a - b overflow float32
    assert rel_error(big, -big) == 1.0


def test_rel_error_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"rel_error: shapes differ, \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


# --------------------------------------------------------------------------- numerical_gradient
def test_numerical_gradient_is_a_centered_difference():
    x = DRAW.uniform(0.5, 2.0, (2, 3)) * DRAW.choice([-1, 1], (2, 3))
    c = DRAW.standard_normal((2, 3))
    before = x.copy()
    calls = []

    def f(values):
        calls.append(values)
        return float((c * values ** 3).sum())

    grad = numerical_gradient(f, x)
    assert grad.shape == (2, 3) and grad.dtype == np.float64
    # centered: error ~ c eps^2 (1e-12); a one-sided difference is off by ~3 c x eps (1e-6)
    np.testing.assert_allclose(grad, 3 * c * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(x, before)  # every entry restored
    assert len(calls) == 2 * x.size and all(v is x for v in calls)  # perturbed in place


@pytest.mark.parametrize("kwargs, eps", [({}, 1e-6), ({"eps": 1e-3}, 1e-3)])
def test_numerical_gradient_step(kwargs, eps):
    # (eps^3 - (-eps)^3) / (2 eps) = eps^2: reads back the step that was taken
    grad = numerical_gradient(lambda v: float((v ** 3).sum()), np.zeros(2), **kwargs)
    np.testing.assert_allclose(grad, [eps ** 2, eps ** 2], rtol=1e-6)


def test_numerical_gradient_refuses_a_transposed_view_but_takes_an_empty_array():
    with pytest.raises(ValueError) as info:
        numerical_gradient(lambda v: 0.0, np.zeros((3, 4)).T)  # no flat view of it
    assert str(info.value).startswith("numerical_gradient: x must be a contiguous array")
    for empty in (np.zeros((0, 3)), np.zeros((3, 0)).T):
        grad = numerical_gradient(lambda v: 1 / 0, empty)  # f is never called
        assert grad.shape == empty.shape


# --------------------------------------------------------------------------- tolerances
X = DRAW.standard_normal((3, 4))
W = DRAW.uniform(0.5, 1.5, 4)


@pytest.mark.parametrize("errors, kwargs, passed", [
    # relative error |a-b| / (|a|+|b|) = r / (2 + r) for a factor 1 + r: rtol is 1e-5
    ({"dx_factor": 1 + 1.9e-5}, {}, True),
    ({"dx_factor": 1 + 2.1e-5}, {}, False),                  # max(|a|,|b|) would fail 1.9e-5
    ({"dx_factor": 1 + 1e-3}, {}, False),
    ({"dx_factor": 1 + 1e-3}, {"rtol": 1e-3}, True),
    # where the true gradient is 0 (weight 0), the test reads |a - b| <= atol = 1e-7
    ({"dx_offset": 0.9e-7}, {}, True),
    ({"dx_offset": 1e-7}, {}, True),                         # "at most": the boundary passes
    ({"dx_offset": 1.1e-7}, {}, False),
    ({"dx_offset": 0.9e-7}, {"atol": 1e-9}, False),
    ({"dx_offset": 0.9e-5}, {"atol": 1e-5}, True),
])
def test_check_layer_tolerances(errors, kwargs, passed):
    weight = W.copy()
    if "dx_offset" in errors:
        weight[2] = 0.0
        errors = dict(errors, offset_at=(1, 2))
    result = check_layer(Scale(weight, **errors), X, **kwargs)
    assert result.entries["input"]["passed"] is passed, result.table()
    assert result.passed is passed
    assert result.entries["weight"]["passed"] and result.entries["bias"]["passed"]


@pytest.mark.parametrize("kwargs, eps", [({}, 1e-6), ({"eps": 1e-3}, 1e-3)])
def test_check_layer_step_is_centered_with_eps(kwargs, eps):
    x = np.zeros((1, 3))
    result = check_layer(Cube(), x, dy=np.ones((1, 3)), **kwargs)
    numeric = [entry[2] for entry in result.entries["input"]["worst"]]
    np.testing.assert_allclose(numeric, [eps ** 2] * 3, rtol=1e-6)  # reads back the step
    assert result.passed is (eps ** 2 <= 1e-7)  # a coarse step no longer passes


def test_check_layer_reports_the_worst_entries():
    weight = W.copy()
    result = check_layer(Scale(weight, dx_offset=0.5, offset_at=(1, 2)), X)
    entry = result.entries["input"]
    assert not entry["passed"]
    assert len(entry["worst"]) == 5  # at most 5 of the 12 entries
    index, analytic, numeric = entry["worst"][0]
    assert index == (1, 2)
    assert analytic - numeric == pytest.approx(0.5, rel=1e-6)
    assert entry["max_abs_error"] == pytest.approx(0.5, rel=1e-6)
    assert entry["max_rel_error"] == pytest.approx(rel_error(analytic, numeric), rel=1e-12)
    errors = [rel_error(a, n) if abs(a) + abs(n) > 1e-2 else abs(a - n) / 1e-2
              for _, a, n in entry["worst"]]
    assert errors == sorted(errors, reverse=True)
    assert result.errors == {name: e["max_rel_error"] for name, e in result.entries.items()}


def test_check_layer_refuses_a_gradient_of_the_wrong_shape():
    class WrongShape(Cube):
        def backward(self, dy):
            return super().backward(dy)[:, :-1]

    with pytest.raises(ValueError, match=r"gradient shape \(2, 2\) differs .* \(2, 3\)"):
        check_layer(WrongShape(), np.ones((2, 3)))


def test_an_empty_batch_checks_as_zero_error():
    result = check_layer(L.Linear(3, 2), np.zeros((0, 3)))
    assert result.passed and result.errors["input"] == 0.0
    assert result.entries["input"]["max_abs_error"] == 0.0


# --------------------------------------------------------------------------- what is checked
def test_every_parameter_is_checked_and_the_wrong_one_flagged():
    model = L.Sequential(L.Linear(4, 4), L.Tanh(), Scale(W, db_factor=0.99))
    result = check_layer(model, X)
    assert set(result.entries) == {"input", "0.weight", "0.bias", "2.weight", "2.bias"}
    assert [name for name, e in result.entries.items() if not e["passed"]] == ["2.bias"]
    assert not result.passed


@pytest.mark.parametrize("errors, wrong", [({"dx_factor": 0.99}, "input"),
                                           ({"dw_factor": 0.99}, "weight"),
                                           ({"dw_offset": 1e-3, "offset_at": (0, 1)}, "weight")])
def test_a_wrong_gradient_in_any_tensor_fails_the_check(errors, wrong):
    for directional in (False, True):
        result = check_layer(Scale(W, **errors), X, directional=directional)
        assert {name for name, e in result.entries.items() if not e["passed"]} == {wrong}
        assert not result.passed


class ReversedWeightGradient(Scale):
    """The right weight-gradient entries in the wrong places: their sum is unchanged."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.weight.grad[...] = self.weight.grad[::-1].copy()
        return dx


def test_directional_check_uses_a_random_direction_per_entry():
    # along (1, 1, ..., 1) the reversed gradient would pass: a direction must vary by entry
    result = check_layer(ReversedWeightGradient(W), X, directional=True)
    assert [n for n, e in result.entries.items() if not e["passed"]] == ["weight"]


def test_directional_check_compares_one_projection_per_tensor():
    result = check_layer(Scale(W, bias=DRAW.standard_normal(4)), X, directional=True)
    assert result.passed, result.table()
    assert all(len(entry["worst"]) == 1 for entry in result.entries.values())
    # a nonlinear layer: each perturbation is undone before the next tensor is checked
    model = L.Sequential(L.Linear(4, 3), L.Tanh(), L.Linear(3, 2), L.Sigmoid())
    assert check_layer(model, X, directional=True, eps=1e-4).passed


def test_dy_is_random_not_all_ones():
    x = DRAW.standard_normal((3, 5))
    result = check_layer(SoftmaxWithoutBackward(), x)
    assert not result.passed
    assert check_layer(SoftmaxWithoutBackward(), x, dy=np.ones((3, 5))).passed  # why


def test_dy_is_not_the_input_drawn_with_the_same_seed():
    for seed in (0, 3):
        x = np.random.default_rng(seed).standard_normal((6, 3))
        assert not check_layer(BatchNormWithoutInputGradient(3), x, seed=seed).passed


def test_the_seed_draws_dy():
    layer = Scale(W, dx_factor=1.001)
    assert check_layer(layer, X).errors == check_layer(layer, X, seed=0).errors  # the default
    first, again = check_layer(layer, X, seed=1), check_layer(layer, X, seed=1)
    other = check_layer(layer, X, seed=2)
    assert first.errors == again.errors
    assert first.entries["weight"]["max_abs_error"] != other.entries["weight"]["max_abs_error"]


# --------------------------------------------------------------------------- layer restored
def test_a_float32_layer_is_checked_in_float64_and_restored():
    model = L.Sequential(L.Linear(4, 5), L.BatchNorm1d(5), L.Tanh(), L.Linear(5, 3))
    x = X.astype(np.float32)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    model.set_needs_input_grad(False)
    flags = {name: m.needs_input_grad for name, m in model.named_modules()}
    assert not all(flags.values())
    result = check_layer(model, x)
    assert result.passed, result.table()  # float32 differences would be off by ~1e-3
    after = model.state_dict()
    assert list(after) == list(state)
    for name, value in state.items():  # running statistics of the ~100 passes undone
        assert after[name].dtype == value.dtype, name
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert all(p.data.dtype == np.float32 for p in model.parameters())
    assert {name: m.needs_input_grad for name, m in model.named_modules()} == flags
    assert x.dtype == np.float32


def test_a_layer_with_buffers_only_is_restored_to_its_dtype():
    layer = L.BatchNorm1d(4, affine=False).train()
    assert not layer.parameters()
    x = X.astype(np.float32)
    assert check_layer(layer, x, dy=np.ones((3, 4), dtype=np.float32) + x).passed
    assert layer.running_mean.dtype == np.float32 and layer.running_var.dtype == np.float32
    np.testing.assert_array_equal(layer.running_mean, np.zeros(4))


@pytest.mark.parametrize("training", [True, False])
def test_the_mode_is_kept(training):
    layer = L.BatchNorm1d(4)
    layer.running_mean[...] = 0.5
    layer.running_var[...] = 2.0
    layer.train(training)
    result = check_layer(layer, X)
    assert result.passed, result.table()
    assert layer.training is training


def test_needs_input_grad_off_still_checks_the_input():
    layer = L.Linear(4, 3).set_needs_input_grad(False)
    result = check_layer(layer, X)
    assert "input" in result.entries and result.passed
    assert layer.needs_input_grad is False


def test_dropout_sees_one_mask_and_the_random_stream_is_restored():
    backend.seed(5)
    state = backend.get_rng_state()
    expected = backend.rng().standard_normal(3)
    backend.set_rng_state(state)
    layer = L.Dropout(0.5)
    result = check_layer(layer, DRAW.standard_normal((4, 6)))
    assert result.passed, result.table()
    np.testing.assert_array_equal(backend.rng().standard_normal(3), expected)


def test_a_layer_without_parameters_is_checked():
    layer = L.Tanh()
    result = check_layer(layer, X.astype(np.float32))
    assert list(result.entries) == ["input"] and result.passed


# --------------------------------------------------------------------------- the report
def test_the_table_says_fail_for_the_failing_tensor_only():
    result = check_layer(Scale(W, dw_offset=0.5, offset_at=(0, 1)), X, name="broken")
    rows = _table_rows(result)
    assert rows[0] == "gradient check of broken"
    assert rows[1].split() == ["tensor", "max", "rel", "error", "result"]
    worst = result.entries["weight"]["worst"]
    assert len(rows) == 2 + 3 + len(worst)
    by_tensor = {row.split()[0]: row.split() for row in rows[2:] if not row.startswith("    ")}
    assert set(by_tensor) == {"input", "weight", "bias"}
    for name, entry in result.entries.items():
        assert by_tensor[name][1] == f"{entry['max_rel_error']:.2e}"
        assert by_tensor[name][2] == ("ok" if entry["passed"] else "FAIL")
    assert by_tensor["weight"][2] == "FAIL" and by_tensor["input"][2] == "ok"
    at = rows.index(next(r for r in rows if r.split()[0] == "weight")) + 1
    for row, (index, analytic, numeric) in zip(rows[at:at + len(worst)], worst):
        assert all(type(i) is int for i in index)  # "(1,)", not "(np.int64(1),)"
        assert row.split()[:2] == ["at", f"{index}:"]
        assert f"analytic {analytic:+.8e}" in row and f"numeric {numeric:+.8e}" in row
    assert repr(result) == result.table()


def _print_table(monkeypatch, cases):
    import minidl.gradcheck as gradcheck
    monkeypatch.setattr(gradcheck, "builtin_cases", lambda: cases)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main()
    return info.value.code, out.getvalue().splitlines()


def test_python_m_gradcheck_marks_and_counts_a_failing_layer(monkeypatch):
    cases = [("a broken scale", Scale(W, dw_factor=1.1), X), ("fine", Scale(W), X),
             ("bad", Scale(W, dx_factor=0.9), X)]
    code, lines = _print_table(monkeypatch, cases)
    assert code == 1
    width = len("a broken scale") + 2  # the layer column fits the longest name
    assert lines[0].split() == ["layer", "tensor", "max", "rel", "error", "result"]
    assert lines[0].index("tensor") == width
    rows = lines[1:10]
    assert [row[:width].strip() for row in rows] == ["a broken scale", "", "", "fine", "", "",
                                                      "bad", "", ""]
    assert [row[width:].split()[0] for row in rows] == ["input", "weight", "bias"] * 3
    assert [row.split()[-1] for row in rows] == ["ok", "FAIL", "ok", "ok", "ok", "ok",
                                                 "FAIL", "ok", "ok"]
    result = check_layer(Scale(W, dw_factor=1.1), X)
    assert rows[1].split()[-2] == f"{result.errors['weight']:.2e}"
    assert lines[-2:] == ["", "1 of 3 layers pass; failing: a broken scale, bad"]


def test_a_passing_table_lists_no_entries():
    result = check_layer(Scale(W), X)
    rows = _table_rows(result)
    assert rows[0] == f"gradient check of {type(Scale(W)).__name__}"
    assert len(rows) == 2 + 3 and [row.split()[-1] for row in rows[2:]] == ["ok"] * 3


def test_assert_gradients_raises_with_the_table():
    with pytest.raises(AssertionError) as info:
        assert_gradients(Scale(W, db_factor=1.01), X)
    message = str(info.value)
    assert "gradient check of Scale" in message and "FAIL" in message and "bias" in message
    result = assert_gradients(Scale(W, dx_factor=1.001), X, rtol=1e-3, name="loose")
    assert result.passed and result.name == "loose"
    x = DRAW.standard_normal((2, 4))
    assert assert_gradients(SoftmaxWithoutBackward(), x, np.ones((2, 4))).passed  # dy passed on


# --------------------------------------------------------------------------- check_loss
class HalfGradientMSE(losses.MSELoss):
    def backward(self):
        return 0.5 * super().backward()


class CubeLoss(losses.Loss):
    """``sum(pred^3)``: true gradient 0 at pred = 0, centered difference eps^2."""

    def forward(self, pred, target):
        self.save_for_backward(pred)
        return (pred ** 3).sum()

    def backward(self):
        return 3 * self.saved_for_backward() ** 2


def test_check_loss_checks_in_float64_and_keeps_class_targets():
    pred = DRAW.standard_normal((3, 4)).astype(np.float32)
    target = DRAW.standard_normal((3, 4)).astype(np.float32)
    before = pred.copy()
    result = check_loss(losses.MSELoss(), pred, target)
    assert result.passed and list(result.entries) == ["input"] and result.name == "MSELoss"
    np.testing.assert_array_equal(pred, before)
    labels = np.array([0, 3, 1], dtype=np.int32)  # integer targets stay integers
    assert check_loss(losses.CrossEntropyLoss(), pred, labels, name="ce").name == "ce"


@pytest.mark.parametrize("kwargs, passed", [({}, False), ({"rtol": 0.5}, True)])
def test_check_loss_flags_a_wrong_gradient(kwargs, passed):
    pred, target = DRAW.standard_normal((2, 3)), DRAW.standard_normal((2, 3))
    result = check_loss(HalfGradientMSE(), pred, target, **kwargs)  # error 1/3
    assert result.passed is passed
    assert result.entries["input"]["max_rel_error"] == pytest.approx(1 / 3, rel=1e-6)
    if not passed:
        with pytest.raises(AssertionError, match=r"(?s)HalfGradientMSE.*input .* FAIL"):
            assert_loss_gradients(HalfGradientMSE(), pred, target, **kwargs)
    else:
        assert assert_loss_gradients(HalfGradientMSE(), pred, target, **kwargs).passed


@pytest.mark.parametrize("kwargs, eps, passed", [
    ({}, 1e-6, True), ({"eps": 1e-2}, 1e-2, False), ({"eps": 1e-2, "atol": 1e-3}, 1e-2, True)])
def test_check_loss_step_and_floor(kwargs, eps, passed):
    result = check_loss(CubeLoss(), np.zeros((1, 2)), np.zeros((1, 2)), **kwargs)
    numeric = [entry[2] for entry in result.entries["input"]["worst"]]
    np.testing.assert_allclose(numeric, [eps ** 2] * 2, rtol=1e-6)
    assert result.passed is passed


# --------------------------------------------------------------------------- whole models
def _mlp():
    return L.Sequential(L.Linear(4, 5), L.Tanh(), L.Linear(5, 3))


def test_check_model_with_loss_checks_input_and_every_parameter():
    x, target = DRAW.standard_normal((3, 4)), np.array([2, 0, 1])
    result = check_model_with_loss(_mlp(), losses.CrossEntropyLoss(), x, target)
    assert result.passed, result.table()
    assert result.name == "Sequential + CrossEntropyLoss"
    assert list(result.entries) == ["input", "model.0.weight", "model.0.bias",
                                    "model.2.weight", "model.2.bias"]
    named = check_model_with_loss(_mlp(), losses.MSELoss(), x, target, name="mlp", seed=3)
    assert named.name == "mlp" and named.passed


def test_check_model_with_loss_flags_the_wrong_parameter_and_the_wrong_loss():
    x, target = DRAW.standard_normal((3, 4)), DRAW.standard_normal((3, 4))
    model = L.Sequential(L.Linear(4, 4), L.Tanh(), Scale(W, dw_factor=1.01))
    result = check_model_with_loss(model, losses.MSELoss(), x, target)
    assert [n for n, e in result.entries.items() if not e["passed"]] == ["model.2.weight"]
    assert "FAIL" in _table_rows(result)[2 + 3].split()
    # a loss with half its gradient: every tensor is off by 1/3
    wrong = check_model_with_loss(_mlp(), HalfGradientMSE(), x[:, :4], DRAW.standard_normal((3, 3)))
    assert not any(e["passed"] for e in wrong.entries.values())
    assert check_model_with_loss(_mlp(), HalfGradientMSE(), x, DRAW.standard_normal((3, 3)),
                                 rtol=0.5).passed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_with_loss_is_a_scalar_layer(dtype):
    model = _mlp().to(dtype)
    x, target = DRAW.standard_normal((3, 4)).astype(dtype), np.array([1, 1, 0])
    reference_loss = losses.CrossEntropyLoss()
    expected = reference_loss(model(x), target)
    expected_dx = model.backward(reference_loss.backward())
    expected_grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    wrapped = ModelWithLoss(model, losses.CrossEntropyLoss(), target)
    assert [n for n, _ in wrapped.named_parameters()][0] == "model.0.weight"
    value = wrapped(x)
    assert value.shape == () and value.dtype == dtype and float(value) == float(expected)
    dx = wrapped.backward(np.array(3.0, dtype=dtype))  # dy scales every gradient
    tol = {"rtol": 1e-4, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-12}
    np.testing.assert_allclose(dx, 3 * expected_dx, **tol)
    for param, grad in zip(model.parameters(), expected_grads):
        np.testing.assert_allclose(param.grad, 3 * grad, **tol)
    with pytest.raises(RuntimeError, match="ModelWithLoss.backward: nothing saved"):
        wrapped.backward(np.array(1.0, dtype=dtype))
    wrapped(x)
    with pytest.raises(ValueError, match=r"ModelWithLoss.backward: expected dy of shape \(\)"):
        wrapped.backward(np.ones(1, dtype=dtype))


# --------------------------------------------------------------------------- the CLI table
def test_python_m_gradcheck_passes_every_builtin_layer():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["layer", "tensor", "max", "rel", "error", "result"]
    rows = [line for line in lines[1:] if line.strip() and " of " not in line]
    cases = builtin_cases()
    assert len(rows) == sum(1 + len(layer.parameters()) for _, layer, _ in cases)
    assert all(row.split()[-1] == "ok" for row in rows)
    assert lines[-1] == f"{len(cases)} of {len(cases)} layers pass"


ABBREVIATIONS = {"conv": "Conv2d", "BN": "BatchNorm2d", "ReLU": "ReLU", "pool": "MaxPool2d",
                 "linear": "Linear"}


def test_builtin_case_labels_state_the_configuration():
    """"Conv2d 3x3 s2 p2 dilation 2", "MaxPool2d 3 s2 p1", "BatchNorm2d eval": the label
    of each row of the table is what is checked."""
    cases = builtin_cases()
    assert len({name for name, _, _ in cases}) == len(cases)
    for (_, _, x), (_, _, again) in zip(cases, builtin_cases()):  # a reproducible table
        np.testing.assert_array_equal(x, again)
    for name, layer, x in cases:
        head, *words = name.split()
        cls = type(layer).__name__
        if cls == "Sequential":
            kinds = [type(m).__name__ for m in layer if type(m).__name__ != "Flatten"]
            assert [ABBREVIATIONS[word] for word in head.split("-")] == kinds, name
            continue
        assert head.split("(")[0] == cls, name
        if cls == "Residual":
            assert head == f"Residual({type(layer.body).__name__})"
        if cls == "Dropout":
            assert head == f"Dropout({layer.p})"
        config, words = {}, list(words)
        while words:
            word = words.pop(0)
            if word in ("train", "eval"):
                assert layer.training is (word == "train"), name
            elif word == "tanh":
                assert layer.approximate == "tanh", name
            elif word in ("dilation", "groups"):
                config[word] = int(words.pop(0))
            elif "x" in word:
                config["kernel_size"] = tuple(int(k) for k in word.split("x"))
            elif word.isdigit():
                config["kernel_size"] = (int(word), int(word))
            elif word[0] in "sp" and word[1:].isdigit():
                config["stride" if word[0] == "s" else "padding"] = (int(word[1:]),) * 2
            else:
                raise AssertionError(f"{name!r}: unknown word {word!r}")
        if cls in ("BatchNorm1d", "BatchNorm2d", "Dropout"):
            assert name.split()[-1] in ("train", "eval"), name
        if cls in ("Conv2d", "MaxPool2d", "AvgPool2d"):
            kernel = config["kernel_size"]
            expected = {"kernel_size": kernel, "padding": config.get("padding", (0, 0)),
                        "stride": config.get("stride", (1, 1) if cls == "Conv2d" else kernel)}
            if cls == "Conv2d":
                expected.update(dilation=(config.get("dilation", 1),) * 2,
                                groups=config.get("groups", 1))
            assert {key: getattr(layer, key) for key in expected} == expected, name
        if cls in ("MaxPool2d", "GlobalMaxPool2d"):  # no ties within a step of each other
            assert np.diff(np.sort(x.ravel())).min() > 1e-3, name
        if cls in ("ReLU", "LeakyReLU", "ELU"):  # no input near the kink at 0
            assert np.abs(x).min() >= 0.1, name
        arrays = [p.data for p in layer.parameters()] + [b for _, b in layer.named_buffers()]
        assert all(a.dtype == np.float32 for a in arrays), name  # as users build them
        if cls.startswith("BatchNorm") and not layer.training:
            assert np.abs(layer.running_mean).min() > 0 and (layer.running_var != 1).all()


# --------------------------------------------------------------------------- losses
MULTI = [(lambda **kw: losses.MultiMarginLoss(**kw), "p=1"),
         (lambda **kw: losses.MultiMarginLoss(p=2, margin=0.5, **kw), "p=2"),
         (lambda **kw: losses.MultiMarginLoss(weight=np.array([0.5, 1.0, 2.0]), **kw), "weight")]
EVERY_LOSS = [(losses.CrossEntropyLoss, "ce"), (losses.NLLLoss, "nll"),
              (losses.BCEWithLogitsLoss, "bce"), (losses.MSELoss, "mse"),
              (losses.HuberLoss, "huber"), (losses.SoftMarginLoss, "soft-margin")] + MULTI


@pytest.mark.parametrize("make", [m for m, _ in EVERY_LOSS], ids=[i for _, i in EVERY_LOSS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_and_gradient_keep_the_predictions_dtype(make, dtype):
    pred = (2 * DRAW.standard_normal((4, 3))).astype(dtype)
    loss_fn = make()
    loss = loss_fn(pred, np.array([0, 2, 1, 2]))
    grad = loss_fn.backward()
    assert loss.dtype == dtype and isinstance(loss, np.floating)
    assert grad.dtype == dtype and grad.shape == pred.shape


@pytest.mark.parametrize("make", [m for m, _ in EVERY_LOSS], ids=[i for _, i in EVERY_LOSS])
def test_check_values_is_kept(make):
    assert make(check_values=False).check_values is False
    assert make(check_values=True).check_values is True
    assert make().check_values is None
    with pytest.raises(TypeError, match=r"\w+Loss: check_values must be True or False"):
        make(check_values="yes")


@pytest.mark.parametrize("make, error, fragments", [
    (lambda: losses.MultiMarginLoss(p=3), ValueError, ["p must be an integer in [1, 2]"]),
    (lambda: losses.MultiMarginLoss(p=1.0), TypeError, ["p must be an integer"]),
    (lambda: losses.MultiMarginLoss(margin="1"), TypeError, ["margin must be a real number"]),
    (lambda: losses.MultiMarginLoss(margin=float("nan")), ValueError, ["margin must be"]),
    (lambda: losses.MultiMarginLoss(weight=[1.0, 2.0]), TypeError,
     ["expected weight as an array of shape (K,)"]),
    (lambda: losses.MultiMarginLoss(weight=np.ones(3, dtype=np.int64)), TypeError,
     ["as weight, got dtype int64"]),
    (lambda: losses.HuberLoss(delta="1"), TypeError, ["delta must be a real number"]),
    (lambda: losses.HuberLoss(delta=-1.0), ValueError, ["delta must be a real number"]),
    (lambda: losses.CrossEntropyLoss(ignore_index=1.5), TypeError, ["ignore_index must be"]),
    (lambda: losses.CrossEntropyLoss(label_smoothing=True), TypeError, ["label_smoothing"]),
    (lambda: losses.CrossEntropyLoss(label_smoothing="0.1"), TypeError, ["label_smoothing"]),
    (lambda: losses.CrossEntropyLoss(label_smoothing=1.5), ValueError,
     ["label_smoothing must be a real number in [0, 1]"]),
])
def test_constructor_errors_name_the_class_and_the_argument(make, error, fragments):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    owner = message.split(":")[0]
    assert owner in ("MultiMarginLoss", "HuberLoss", "CrossEntropyLoss"), message
    assert all(fragment in message for fragment in fragments), message


@pytest.mark.parametrize("make", [losses.NLLLoss, losses.MultiMarginLoss])
@pytest.mark.parametrize("shape", [(3,), (3, 2, 2)])
def test_class_losses_state_the_n_k_layout(make, shape):
    with pytest.raises(ValueError, match=make.__name__) as info:
        make()(np.zeros(shape), np.zeros(3, dtype=np.int64))
    assert f"of shape (N, K), got shape {shape}" in str(info.value)


def test_a_loss_subclass_must_implement_forward_and_backward():
    class Bare(losses.Loss):
        pass

    with pytest.raises(NotImplementedError, match="Bare does not implement forward"):
        Bare()(np.zeros((2, 3)), np.zeros(2, dtype=np.int64))
    with pytest.raises(NotImplementedError, match="Bare does not implement backward"):
        Bare().backward()
    assert repr(Bare()) == "Bare()"


# --------------------------------------------------------------------------- loss values
def _softplus(v):
    return np.logaddexp(0.0, v)


def _multi_margin(x, t, p=1, margin=1.0, weight=None):
    n, k = x.shape
    h = np.maximum(margin - x[np.arange(n), t][:, None] + x, 0.0)
    h[np.arange(n), t] = 0.0
    w = np.ones(n) if weight is None else weight[t]
    loss = (w[:, None] * h ** p).sum() / (n * k)
    dh = w[:, None] * (p * h ** (p - 1) * (h > 0)) / (n * k)
    grad = dh.copy()
    grad[np.arange(n), t] = -dh.sum(axis=1)
    return loss, grad


def _reference(name, x, t):
    """(loss, dL/dx) in float64 from each loss's definition, written independently."""
    n, k = x.shape
    hot = np.eye(k)[t] if t.dtype.kind in "iu" else t
    if name in ("ce", "nll"):
        lp = x - np.logaddexp.reduce(x, axis=1, keepdims=True) if name == "ce" else x
        p = np.exp(lp) if name == "ce" else 0.0
        return -(hot * lp).sum() / n, (p - hot) / n
    if name == "bce":
        return (_softplus(x) - x * hot).mean(), (1 / (1 + np.exp(-x)) - hot) / x.size
    if name == "mse":
        return ((x - hot) ** 2).mean(), 2 * (x - hot) / x.size
    if name == "huber":  # delta 0.5
        d = x - hot
        loss = np.where(np.abs(d) < 0.5, 0.5 * d ** 2, 0.5 * (np.abs(d) - 0.25)).mean()
        return loss, np.clip(d, -0.5, 0.5) / x.size
    if name == "soft-margin":
        s = 2 * hot - 1 if t.dtype.kind in "iu" else hot
        return _softplus(-s * x).mean(), -s / (1 + np.exp(s * x)) / x.size
    return _multi_margin(x, t, **{"multi p=1": {}, "multi p=2": {"p": 2, "margin": 0.5},
                                  "multi weight": {"weight": np.array([0.5, 1.0, 2.0, 4.0])}
                                  }[name])


VALUE_CASES = {
    "ce": losses.CrossEntropyLoss, "nll": losses.NLLLoss, "bce": losses.BCEWithLogitsLoss,
    "mse": losses.MSELoss, "huber": lambda: losses.HuberLoss(delta=0.5),
    "soft-margin": losses.SoftMarginLoss, "multi p=1": losses.MultiMarginLoss,
    "multi p=2": lambda: losses.MultiMarginLoss(p=2, margin=0.5),
    "multi weight": lambda: losses.MultiMarginLoss(weight=np.array([0.5, 1.0, 2.0, 4.0])),
}


@pytest.mark.parametrize("name, targets", [(name, "classes") for name in VALUE_CASES] + [
    (name, "dense") for name in ("bce", "mse", "huber", "soft-margin")])
def test_loss_values_and_gradients_match_their_definitions(name, targets):
    draw = np.random.default_rng(7)
    x = draw.standard_normal((3, 4))
    if name == "nll":
        x = x - np.logaddexp.reduce(x, axis=1, keepdims=True)
    t = np.array([3, 0, 2])
    if targets == "dense":
        t = draw.uniform(0, 1, x.shape) if name == "bce" else draw.standard_normal(x.shape)
    loss_fn = VALUE_CASES[name]()
    expected_loss, expected_grad = _reference(name, x, t)
    assert float(loss_fn(x, t)) == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(loss_fn.backward(), expected_grad, rtol=1e-10, atol=1e-15)


# --------------------------------------------------------------------------- loss errors
def _with_nan(shape=(2, 3)):
    array = np.zeros(shape)
    array[1, 2] = np.nan
    return array


PRED_NAMES = {losses.CrossEntropyLoss: "logits", losses.NLLLoss: "log-probabilities",
              losses.BCEWithLogitsLoss: "logits", losses.MSELoss: "predictions",
              losses.HuberLoss: "predictions", losses.SoftMarginLoss: "logits",
              losses.MultiMarginLoss: "scores"}
DENSE = [losses.BCEWithLogitsLoss, losses.MSELoss, losses.HuberLoss, losses.SoftMarginLoss]
Z = np.zeros((2, 3))
BAD_CALLS = [  # (losses, pred, target, error, what the message states: expected and got)
    (list(PRED_NAMES), Z, np.array([0, 1, 2]), ValueError,
     ["batch size mismatch: {pred} have 2 rows, targets have 3"]),
    (list(PRED_NAMES), Z, np.array([0, 5]), ValueError,
     ["class indices must be in [0, 3), got 5 (1 of 2 out of range)"]),
    (list(PRED_NAMES), Z, np.array([-1, 0]), ValueError, ["[0, 3), got -1"]),
    (list(PRED_NAMES), Z, [0, 1], TypeError, ["expected targets as an array, got list"]),
    (list(PRED_NAMES), Z, memoryview(np.zeros(2)), TypeError,  # a shape but no dtype
     ["expected targets as an array, got memoryview"]),
    (list(PRED_NAMES), _with_nan(), np.array([0, 1]), ValueError,
     ["{pred} contain NaN or Inf (1 of 6 values)"]),
    (list(PRED_NAMES), Z, np.array([[0], [1]]), ValueError,
     ["expected class indices of shape (N,", "got shape (2, 1)"]),
    (list(PRED_NAMES), Z, np.zeros((2, 3), dtype=bool), TypeError, ["got dtype bool"]),
    (list(PRED_NAMES), np.zeros(()), np.array(0), ValueError,
     ["expected {pred} of shape (N, ", "got shape () (0-D)"]),
    (list(PRED_NAMES), np.zeros(3), np.array([0, 1, 1]), ValueError,
     ["{pred} of shape (N, K)", "got shape (3,)"]),
    (list(PRED_NAMES), np.zeros((2, 0)), np.zeros((2, 0)), ValueError,
     ["got {pred} of shape (2, 0) with no values; the mean loss needs at least one"]),
    ([losses.CrossEntropyLoss, losses.NLLLoss, losses.MultiMarginLoss], [[0.0, 1.0]],
     np.array([0]), TypeError, ["expected {pred} as an array of shape (N, K", "got list"]),
    (list(PRED_NAMES), Z.astype(np.int64), np.array([0, 1]), TypeError,
     ["expected a float32 or float64 array as {pred}, got dtype int64"]),
    (DENSE, np.zeros(3), np.array([0, 1, 1]), ValueError,  # says what to do instead
     ["integer class targets need {pred} of shape (N, K)", "give float targets shaped like"]),
    (DENSE, Z, np.zeros(2), ValueError, ["expected targets of shape (2, 3)", "got (2,)"]),
    (DENSE, Z, np.zeros((3, 3)), ValueError,
     ["batch size mismatch: {pred} have 2 rows, targets have 3"]),
    (DENSE, Z, np.zeros((2, 2)), ValueError, ["expected targets of shape (2, 3) (like the "
                                              "{pred}), got (2, 2)"]),
    (DENSE, Z, _with_nan(), ValueError, ["targets contain NaN or Inf (1 of 6 values)"]),
    (DENSE, Z, np.zeros((2, 3), dtype=np.complex64), TypeError,
     ["expected float targets shaped like {pred} (2, 3)", "got dtype complex64"]),
    (DENSE, Z, np.zeros(3), ValueError,  # a 1-D target is still checked for its batch
     ["batch size mismatch: {pred} have 2 rows, targets have 3"]),
    (DENSE, Z, np.zeros(()), ValueError, ["expected targets of shape (2, 3)", "got ()"]),
    ([losses.CrossEntropyLoss], np.zeros((2, 3, 4)), np.zeros((3, 4), dtype=np.int64),
     ValueError, ["batch size mismatch: logits have 2 rows, targets have 3"]),
    ([losses.CrossEntropyLoss], np.zeros((2, 3, 4)), np.zeros((2, 5), dtype=np.int64),
     ValueError, ["without the class axis 1: (2, 4)), got shape (2, 5)"]),
    ([losses.CrossEntropyLoss, losses.NLLLoss, losses.MultiMarginLoss], Z,
     np.zeros((), dtype=np.int64), ValueError, ["class indices of shape (N,", "got shape ()"]),
    ([losses.CrossEntropyLoss, losses.NLLLoss, losses.MultiMarginLoss], Z, np.zeros(2),
     TypeError, ["expected integer class indices of shape (", "got dtype float64"]),
]


@pytest.mark.parametrize("makes, pred, target, error, fragments", BAD_CALLS)
def test_bad_calls_name_the_loss_what_it_expected_and_what_it_got(makes, pred, target, error,
                                                                  fragments):
    for make in makes:
        with pytest.raises(error) as info:
            make()(pred, target)
        message = str(info.value)
        assert message.startswith(f"{make.__name__}: "), message
        for fragment in fragments:
            assert fragment.format(pred=PRED_NAMES[make]) in message, message


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 3)])
def test_cross_entropy_with_smoothing_and_extra_axes_matches_its_definition(smoothing, shape):
    draw = np.random.default_rng(8)
    x = draw.standard_normal(shape)
    t = draw.integers(0, 4, (shape[0],) + shape[2:])
    t.reshape(-1)[1] = -100  # ignored: weight 0, not counted in the mean
    rows, labels = np.moveaxis(x, 1, -1).reshape(-1, 4), t.reshape(-1)
    counted = labels != -100
    q = (1 - smoothing) * np.eye(4)[np.where(counted, labels, 0)] + smoothing / 4
    lp = rows - np.logaddexp.reduce(rows, axis=1, keepdims=True)
    expected = -(q * lp).sum(axis=1)[counted].mean()
    grad_rows = (np.exp(lp) - q) * counted[:, None] / counted.sum()
    expected_grad = np.moveaxis(grad_rows.reshape((shape[0],) + shape[2:] + (4,)), -1, 1)
    loss_fn = losses.CrossEntropyLoss(label_smoothing=smoothing)
    assert float(loss_fn(x, t)) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(loss_fn.backward(), expected_grad, rtol=1e-10, atol=1e-15)


def test_cross_entropy_ignores_positions_even_with_one_class():
    loss_fn = losses.CrossEntropyLoss()  # K = 1: an ignored position must not read class 1
    assert float(loss_fn(np.zeros((2, 1)), np.array([0, -100]))) == 0.0
    np.testing.assert_array_equal(loss_fn.backward(), np.zeros((2, 1)))


def test_cross_entropy_with_nothing_counted_is_nan_without_a_warning():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 0/0 of an empty mean must stay silent, as in torch
        assert np.isnan(losses.CrossEntropyLoss()(np.zeros((2, 3)), np.full(2, -100)))

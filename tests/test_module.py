"""The layer protocol: registration, state_dict, modes, devices, summary, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
from minidl import layers as L
from minidl.gradcheck import assert_gradients, check_layer, numerical_gradient, rel_error


def small_mlp():
    return L.Sequential(L.Linear(4, 5), L.Linear(5, 3))


def test_named_parameters_match_state_dict_keys():
    model = small_mlp()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert list(model.state_dict()) == names


def test_load_state_dict_round_trip_and_copy():
    minidl.seed(1)
    a = small_mlp()
    minidl.seed(2)
    b = small_mlp()
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    b.parameters()[0].data += 1  # b holds its own copy
    assert not np.array_equal(a.parameters()[0].data, b.parameters()[0].data)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("1.bias"), "missing keys: 1.bias"),
    (lambda s: s.__setitem__("2.weight", np.zeros(3)), "unexpected keys: 2.weight"),
    (lambda s: s.__setitem__("0.weight", np.zeros((5, 4))), "0.weight: expected shape (4, 5)"),
    (lambda s: s.__setitem__("0.bias", np.zeros(5, complex)), "0.bias: expected a real-valued array"),
    (lambda s: s.__setitem__("0.bias", np.array([1, None] * 2 + [0], object)),
     "0.bias: expected a real-valued array, got object"),
    (lambda s: s.__setitem__("0.bias", [0.0] * 5), "0.bias: expected a real-valued array, got list"),
])
def test_load_state_dict_reports_every_problem(edit, message):
    model = small_mlp()
    state = model.state_dict()
    edit(state)
    with pytest.raises(ValueError, match="Sequential.load_state_dict") as info:
        model.load_state_dict(state)
    assert message in str(info.value)


def test_a_failed_load_state_dict_changes_nothing():
    """All or nothing: a bad value in the LAST key must not leave earlier keys loaded."""
    model = small_mlp()
    before = model.state_dict()
    state = {key: value + 1 for key, value in before.items()}
    last = list(state)[-1]
    state[last] = np.array(["not", "a", "number"][:1] * state[last].size).reshape(state[last].shape)
    with pytest.raises(ValueError, match=f"{last}: expected a real-valued array"):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    with pytest.raises(TypeError, match="expected a dict of arrays"):
        model.load_state_dict([("0.weight", before["0.weight"])])


def test_train_eval_propagates_to_children():
    model = small_mlp()
    model.eval()
    assert not any(m.training for _, m in model.named_modules())
    model.train()
    assert all(m.training for _, m in model.named_modules())


def test_seed_makes_init_reproducible():
    minidl.seed(7)
    first = small_mlp().state_dict()
    minidl.seed(7)
    second = small_mlp().state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_default_dtype_and_cast():
    assert small_mlp().parameters()[0].data.dtype == np.float32
    minidl.set_default_dtype(np.float64)
    assert small_mlp().parameters()[0].data.dtype == np.float64
    model = small_mlp().to(np.float32)
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32
               for p in model.parameters())


def test_backward_adds_into_grad_and_zero_grad_clears():
    layer = L.Linear(3, 2)
    x = np.ones((2, 3), dtype=np.float32)
    dy = np.ones((2, 2), dtype=np.float32)
    layer(x)
    layer.backward(dy)
    once = layer.weight.grad.copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * once)
    layer.zero_grad()
    assert not layer.weight.grad.any()


def test_backward_before_forward_and_twice_raise():
    layer = L.Linear(3, 2)
    with pytest.raises(RuntimeError, match="Linear.backward: nothing saved"):
        layer.backward(np.ones((1, 2), dtype=np.float32))
    layer(np.ones((1, 3), dtype=np.float32))
    layer.backward(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(RuntimeError, match="Linear.backward"):
        layer.backward(np.ones((1, 2), dtype=np.float32))


@pytest.mark.parametrize("x, error, fragment", [
    (np.ones((2, 3), dtype=np.int64), TypeError, "float32 or float64"),
    (np.ones((), dtype=np.float32), ValueError, "(..., in_features)"),
    (np.ones((2, 4), dtype=np.float32), ValueError, "expected 3 features"),
    (np.ones((2, 3), dtype=np.float64), TypeError, "does not match parameter dtype"),
    (np.full((2, 3), np.nan, dtype=np.float32), ValueError, "NaN or Inf"),
])
def test_bad_input_names_layer_and_expectation(x, error, fragment):
    with pytest.raises(error, match="Linear") as info:
        L.Linear(3, 2)(x)
    assert fragment in str(info.value)


def test_summary_counts_parameters_and_macs():
    lines = []
    totals = small_mlp().summary((4,), print_fn=lines.append)
    assert totals == {"params": 4 * 5 + 5 + 5 * 3 + 3, "macs": 4 * 5 + 5 * 3}
    assert "0 (Linear)" in lines[0]


def test_rel_error_and_numerical_gradient_closed_form():
    x = np.array([1.0, -2.0, 3.0])
    grad = numerical_gradient(lambda v: float(np.sum(v ** 3)), x, eps=1e-6)
    assert rel_error(grad, 3 * x ** 2) < 1e-8
    assert rel_error(np.array([1.0]), np.array([1.1])) == pytest.approx(0.1 / 2.1)


class _BrokenLinear(L.Linear):
    """A user layer with a wrong bias gradient: the check must catch it."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.bias.grad *= 2
        return dx


def test_gradcheck_catches_a_wrong_gradient_and_prints_table():
    x = np.random.default_rng(0).standard_normal((3, 4))
    result = check_layer(_BrokenLinear(4, 2), x)
    assert result.passed is False
    assert result.entries["bias"]["passed"] is False
    assert result.entries["weight"]["passed"] and result.entries["input"]["passed"]
    with pytest.raises(AssertionError, match="analytic"):
        assert_gradients(_BrokenLinear(4, 2), x)


def test_gradcheck_restores_dtype_and_values():
    layer = L.Linear(4, 2)
    before = layer.state_dict()
    assert_gradients(layer, np.random.default_rng(0).standard_normal((3, 4)))
    assert layer.weight.data.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, before["weight"])


@given(n=st.integers(1, 4), d_in=st.integers(1, 6), d_out=st.integers(1, 6),
       bias=st.booleans(), directional=st.booleans())
def test_linear_gradients(n, d_in, d_out, bias, directional):
    x = np.random.default_rng(n).standard_normal((n, d_in))
    assert_gradients(L.Linear(d_in, d_out, bias=bias), x, directional=directional)


@given(n=st.integers(1, 3), projection=st.booleans())
def test_residual_and_sequential_gradients(n, projection):
    body = L.Sequential(L.Linear(4, 4), L.Linear(4, 4))
    shortcut = L.Linear(4, 4) if projection else None
    x = np.random.default_rng(n).standard_normal((n, 4))
    assert_gradients(L.Residual(body, shortcut), x)


def test_to_device_round_trip_cpu():
    model = small_mlp().to("cpu")
    assert minidl.backend.device_of(model.parameters()[0].data) == "cpu"


@pytest.mark.skipif(not minidl.gpu_available(), reason="needs CuPy and a GPU")
def test_to_gpu_and_back_and_wrong_device_error():
    model = small_mlp().to("gpu")
    with pytest.raises(ValueError, match="is on cpu but the layer's parameters are on gpu"):
        model(np.ones((1, 4), dtype=np.float32))
    model.to("cpu")
    assert minidl.backend.device_of(model.parameters()[0].data) == "cpu"


def test_buffer_stays_registered_after_reassignment():
    layer = L.BatchNorm2d(2)
    layer.running_mean = layer.running_mean * 0.5
    layer.running_var *= 2
    assert {"running_mean", "running_var"} <= set(layer.state_dict())


def test_builtin_gradcheck_table_passes(capsys):
    from minidl import gradcheck
    with pytest.raises(SystemExit) as info:
        gradcheck.main()
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert "FAIL" not in out and "layers pass" in out


def test_needs_input_grad_skips_dx_of_the_first_parameter_layer_only():
    model = L.Sequential(L.Flatten(), L.Linear(4, 5), L.ReLU(), L.Linear(5, 3))
    model.set_needs_input_grad(False)
    assert [m.needs_input_grad for m in model] == [False, False, True, True]
    x = np.random.default_rng(0).standard_normal((2, 1, 2, 2)).astype(np.float32)
    reference = L.Sequential(L.Flatten(), L.Linear(4, 5), L.ReLU(), L.Linear(5, 3))
    reference.load_state_dict(model.state_dict())
    dy = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    model(x)
    assert model.backward(dy) is None
    reference(x)
    reference.backward(dy)
    for skipped, full in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(skipped.grad, full.grad)
    assert_gradients(model, x)  # the check turns dx back on for itself
    assert model[1].needs_input_grad is False


def test_needs_input_grad_in_conv_and_residual():
    conv = L.Conv2d(2, 3, 3, padding=1)
    block = L.Residual(L.Sequential(L.Conv2d(3, 3, 3, padding=1), L.ReLU()))
    model = L.Sequential(conv, block).set_needs_input_grad(False)
    assert conv.needs_input_grad is False and block.needs_input_grad is True
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    model(x)
    assert model.backward(np.ones((1, 3, 4, 4), dtype=np.float32)) is None
    assert conv.weight.grad.any()


def test_replacing_a_child_keeps_its_place():
    model = L.Sequential(L.Linear(3, 3), L.ReLU(), L.Linear(3, 2))
    setattr(model, "0", L.Linear(3, 3, bias=False))
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    assert model[0].bias is None

"""Losses: gradient checks, PyTorch agreement, extreme logits, dtypes, argument errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
from minidl import losses
from minidl.gradcheck import assert_loss_gradients

# The xp fixture only names an array module (no state), so sharing it across the
# examples of one hypothesis test is safe.
stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])

batches = st.integers(1, 4)
classes = st.integers(1, 5)
seeds = st.integers(0, 2**16)


def draw_logits(n, k, seed, scale=2.0):
    return scale * np.random.default_rng(seed).standard_normal((n, k))


def draw_labels(n, k, seed):
    return np.random.default_rng(seed + 1).integers(0, k, size=n)


# ------------------------------------------------------------------ gradient checks
@stateless_xp
@given(n=batches, k=classes, seed=seeds, smoothing=st.sampled_from([0.0, 0.1, 0.2, 1.0]))
def test_cross_entropy_gradients(xp, n, k, seed, smoothing):
    assert_loss_gradients(losses.CrossEntropyLoss(label_smoothing=smoothing),
                          xp.asarray(draw_logits(n, k, seed)), xp.asarray(draw_labels(n, k, seed)))


@stateless_xp
@given(n=batches, k=classes, seed=seeds)
def test_nll_gradients(xp, n, k, seed):
    log_probs = -np.abs(draw_logits(n, k, seed))
    assert_loss_gradients(losses.NLLLoss(), xp.asarray(log_probs),
                          xp.asarray(draw_labels(n, k, seed)))


def dense_targets(kind, shape, seed):
    draw = np.random.default_rng(seed + 2)
    if kind == "BCE":
        return draw.uniform(0, 1, shape)
    if kind == "SoftMargin":
        return draw.choice([-1.0, 1.0], size=shape)
    return draw.standard_normal(shape)


ELEMENTWISE = {
    "BCE": losses.BCEWithLogitsLoss,
    "MSE": losses.MSELoss,
    "Huber": lambda: losses.HuberLoss(delta=0.7),
    "SoftMargin": losses.SoftMarginLoss,
}


@pytest.mark.parametrize("kind", list(ELEMENTWISE))
@stateless_xp
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=seeds)
def test_elementwise_loss_gradients_with_float_targets(xp, kind, shape, seed):
    target = dense_targets(kind, shape, seed)
    pred = 2 * np.random.default_rng(seed).standard_normal(shape)
    if kind == "Huber":  # keep |pred - target| off the kink at delta (C1 there, not C2)
        diff = pred - target
        pred = np.where(np.abs(np.abs(diff) - 0.7) < 1e-3, pred + 0.01, pred)
    assert_loss_gradients(ELEMENTWISE[kind](), xp.asarray(pred), xp.asarray(target))


@pytest.mark.parametrize("kind", list(ELEMENTWISE))
@stateless_xp
@given(n=batches, k=classes, seed=seeds)
def test_elementwise_loss_gradients_with_class_targets(xp, kind, n, k, seed):
    assert_loss_gradients(ELEMENTWISE[kind](), xp.asarray(draw_logits(n, k, seed, scale=0.5)),
                          xp.asarray(draw_labels(n, k, seed)))


# ------------------------------------------------------------------ PyTorch agreement
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.2])
def test_cross_entropy_matches_torch(smoothing):
    torch = pytest.importorskip("torch")
    logits, labels = draw_logits(6, 5, 0, scale=3.0), draw_labels(6, 5, 0)
    loss_fn = losses.CrossEntropyLoss(label_smoothing=smoothing)
    loss, grad = loss_fn(logits, labels), loss_fn.backward()
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(logits_t, torch.tensor(labels))
    loss_t.backward()
    np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, logits_t.grad.numpy(), rtol=1e-12, atol=1e-16)


def torch_reference(torch, name, pred, target):
    """(loss, grad) from torch.nn for the same pred and dense float target."""
    modules = {"NLL": torch.nn.NLLLoss(), "BCE": torch.nn.BCEWithLogitsLoss(),
               "MSE": torch.nn.MSELoss(), "Huber": torch.nn.HuberLoss(delta=0.7),
               "SoftMargin": torch.nn.SoftMarginLoss()}
    pred_t = torch.tensor(pred, requires_grad=True)
    loss_t = modules[name](pred_t, torch.tensor(target))
    loss_t.backward()
    return loss_t.item(), pred_t.grad.numpy()


@pytest.mark.parametrize("kind", list(ELEMENTWISE))
def test_elementwise_losses_match_torch(kind):
    torch = pytest.importorskip("torch")
    pred = 2 * np.random.default_rng(3).standard_normal((5, 4))
    target = dense_targets(kind, (5, 4), 3)
    loss_fn = ELEMENTWISE[kind]()
    loss, grad = loss_fn(pred, target), loss_fn.backward()
    expected_loss, expected_grad = torch_reference(torch, kind, pred, target)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("kind, off_value", [("BCE", 0.0), ("MSE", 0.0), ("Huber", 0.0),
                                             ("SoftMargin", -1.0)])
def test_class_targets_equal_one_hot_float_targets_in_torch(kind, off_value):
    torch = pytest.importorskip("torch")
    pred, labels = draw_logits(6, 4, 5), draw_labels(6, 4, 5)
    one_hot = np.full((6, 4), off_value)
    one_hot[np.arange(6), labels] = 1.0
    loss_fn = ELEMENTWISE[kind]()
    loss, grad = loss_fn(pred, labels), loss_fn.backward()
    expected_loss, expected_grad = torch_reference(torch, kind, pred, one_hot)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-16)


def test_nll_matches_torch():
    torch = pytest.importorskip("torch")
    logits, labels = draw_logits(5, 3, 7), draw_labels(5, 3, 7)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss_fn = losses.NLLLoss()
    loss, grad = loss_fn(log_probs, labels), loss_fn.backward()
    log_probs_t = torch.tensor(log_probs, requires_grad=True)
    loss_t = torch.nn.NLLLoss()(log_probs_t, torch.tensor(labels))
    loss_t.backward()
    np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-13)
    np.testing.assert_array_equal(grad, log_probs_t.grad.numpy())


# ------------------------------------------------------------------ closed forms, tails, dtypes
def test_cross_entropy_closed_forms():
    k = 7
    loss_fn = losses.CrossEntropyLoss()
    uniform = float(loss_fn(np.zeros((3, k)), np.array([0, 3, 6])))
    assert uniform == pytest.approx(np.log(k), rel=1e-14)
    np.testing.assert_allclose(loss_fn.backward().sum(axis=1), 0.0, atol=1e-16)
    # Full smoothing: the target is uniform whatever the label.
    smooth = losses.CrossEntropyLoss(label_smoothing=1.0)
    logits = draw_logits(2, k, 1)
    first, second = smooth(logits, np.array([0, 1])), smooth(logits, np.array([5, 6]))
    assert float(first) == pytest.approx(float(second), rel=1e-14)


ALL = {  # every loss that takes logits (N, K) with integer class targets
    "CrossEntropy": losses.CrossEntropyLoss,
    "CrossEntropy-smoothed": lambda: losses.CrossEntropyLoss(label_smoothing=0.2),
    "BCE": losses.BCEWithLogitsLoss,
    "MSE": losses.MSELoss,
    "Huber": losses.HuberLoss,
    "SoftMargin": losses.SoftMarginLoss,
}


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite_without_warnings(name, dtype, xp):
    logits = xp.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype))
    labels = xp.asarray(np.array([0, 0, 1]))
    loss_fn = ALL[name]()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = loss_fn(logits, labels)
        grad = loss_fn.backward()
    assert bool(xp.isfinite(loss)) and bool(xp.isfinite(grad).all())
    assert loss.dtype == dtype and grad.dtype == dtype


def test_extreme_logits_give_the_exact_limits(xp):
    def a(values):
        return xp.asarray(np.array(values))

    ce = losses.CrossEntropyLoss()
    assert float(ce(a([[1e4, -1e4]]), a([0]))) == 0.0
    assert float(ce(a([[1e4, -1e4]]), a([1]))) == 2e4
    np.testing.assert_array_equal(minidl.to_numpy(ce.backward()), [[1.0, -1.0]])
    bce = losses.BCEWithLogitsLoss()
    assert float(bce(a([1e4, -1e4]), a([1.0, 0.0]))) == 0.0
    assert float(bce(a([1e4, -1e4]), a([0.0, 1.0]))) == 1e4
    soft = losses.SoftMarginLoss()
    assert float(soft(a([-1e4]), a([1.0]))) == 1e4


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_returns_a_scalar_of_pred_dtype(name, dtype, xp):
    logits = xp.asarray(draw_logits(4, 3, 0).astype(dtype))
    labels = xp.asarray(draw_labels(4, 3, 0).astype(np.uint8))  # any integer dtype
    loss_fn = ALL[name]()
    loss = loss_fn(logits, labels)
    assert loss.dtype == dtype and loss.shape == ()
    if xp is np:
        assert isinstance(loss, np.floating)
    grad = loss_fn.backward()
    assert grad.dtype == dtype and grad.shape == logits.shape


@pytest.mark.parametrize("loss_fn", [losses.MSELoss(), losses.HuberLoss(),
                                     losses.BCEWithLogitsLoss()])
def test_float64_targets_do_not_promote_float32_predictions(loss_fn):
    pred = np.ones((3, 2), dtype=np.float32)
    loss = loss_fn(pred, np.full((3, 2), 0.5))
    assert loss.dtype == np.float32 and loss_fn.backward().dtype == np.float32


def test_huber_is_quadratic_then_linear(xp):
    loss_fn = losses.HuberLoss(delta=2.0)
    zero = xp.asarray(np.array([0.0]))
    assert float(loss_fn(xp.asarray(np.array([1.0])), zero)) == 0.5
    assert float(loss_fn(xp.asarray(np.array([5.0])), zero)) == 2.0 * (5.0 - 1.0)
    assert float(loss_fn.backward()[0]) == 2.0


# ------------------------------------------------------------------ errors
CLASS_LOSSES = [losses.CrossEntropyLoss, losses.NLLLoss]
ANY_LOSS = CLASS_LOSSES + [losses.BCEWithLogitsLoss, losses.MSELoss, losses.HuberLoss,
                           losses.SoftMarginLoss]
logits_2x3 = np.zeros((2, 3))


@pytest.mark.parametrize("make", ANY_LOSS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("pred, target, error, fragment", [
    (np.zeros((2, 3), dtype=np.int64), np.array([0, 1]), TypeError, "float32 or float64"),
    ([[0.0, 1.0]], np.array([0]), TypeError, "as an array"),
    (logits_2x3, np.array([0, 1, 2]), ValueError, "batch size mismatch: "),
    (logits_2x3, np.array([0, 3]), ValueError, "must be in [0, 3), got 3"),
    (logits_2x3, np.array([-1, 0]), ValueError, "must be in [0, 3), got -1"),
    (logits_2x3, [0, 1], TypeError, "expected targets as an array"),
    (np.array([[0.0, np.nan, 1.0], [0.0, 0.0, np.inf]]), np.array([0, 1]), ValueError,
     "contain NaN or Inf (2 of 6 values)"),
    (np.zeros((0, 3)), np.zeros(0, dtype=np.int64), ValueError, "with no values"),
])
def test_bad_arguments_name_the_loss(make, pred, target, error, fragment):
    with pytest.raises(error, match=make.__name__) as info:
        make()(pred, target)
    assert fragment in str(info.value)


@pytest.mark.parametrize("make", CLASS_LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("pred, target, error, fragment", [
    (logits_2x3, np.array([0.0, 1.0]), TypeError, "expected integer class indices"),
    (logits_2x3, np.array([[0], [1]]), ValueError, "class indices of shape (N,)"),
    (np.zeros(3), np.array([0, 1, 2]), ValueError, "of shape (N, K)"),
])
def test_class_target_losses_refuse_float_targets_and_wrong_shapes(make, pred, target, error,
                                                                    fragment):
    with pytest.raises(error, match=make.__name__) as info:
        make()(pred, target)
    assert fragment in str(info.value)


@pytest.mark.parametrize("make", [losses.BCEWithLogitsLoss, losses.MSELoss, losses.HuberLoss,
                                  losses.SoftMarginLoss], ids=lambda c: c.__name__)
@pytest.mark.parametrize("pred, target, error, fragment", [
    (logits_2x3, np.zeros((2, 2)), ValueError, "expected targets of shape (2, 3)"),
    (logits_2x3, np.zeros((2, 3), dtype=bool), TypeError, "expected float targets"),
    (np.zeros(3), np.array([0, 1, 0]), ValueError, "integer class targets need"),
    (logits_2x3, np.array([[0.0, np.nan, 0.0], [0.0, 0.0, 0.0]]), ValueError,
     "targets contain NaN or Inf"),
])
def test_dense_target_losses_check_targets(make, pred, target, error, fragment):
    with pytest.raises(error, match=make.__name__) as info:
        make()(pred, target)
    assert fragment in str(info.value)


def test_check_values_false_skips_the_value_checks():
    loss_fn = losses.CrossEntropyLoss(check_values=False)
    assert np.isnan(loss_fn(np.array([[np.nan, 0.0]]), np.array([0])))


@pytest.mark.parametrize("make, message", [
    (lambda: losses.CrossEntropyLoss(label_smoothing=1.5), "CrossEntropyLoss: label_smoothing"),
    (lambda: losses.CrossEntropyLoss(label_smoothing=-0.1), "CrossEntropyLoss: label_smoothing"),
    (lambda: losses.HuberLoss(delta=0), "HuberLoss: delta must be a real number in \\(0, inf\\)"),
])
def test_constructor_validation(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make", ANY_LOSS, ids=lambda c: c.__name__)
def test_backward_before_call_and_twice(make):
    loss_fn = make()
    with pytest.raises(RuntimeError, match=f"{make.__name__}.backward: nothing saved"):
        loss_fn.backward()
    loss_fn(np.zeros((2, 3)), np.array([0, 2]))
    loss_fn.backward()
    with pytest.raises(RuntimeError, match="backward once per call"):
        loss_fn.backward()


def test_is_a_loss():
    assert all(issubclass(cls, losses.Loss) for cls in ANY_LOSS)

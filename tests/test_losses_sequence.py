"""CrossEntropyLoss on (N, K, d1, ...) with ignore_index, and MultiMarginLoss: gradient
checks on drawn shapes, PyTorch agreement, errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minidl import losses
from minidl.gradcheck import assert_loss_gradients

stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])
seeds = st.integers(0, 2**16)


def targets_with_ignored(shape, k, seed, ignore_index=-100):
    draw = np.random.default_rng([seed, 2])
    target = draw.integers(0, k, size=shape)
    ignored = draw.random(shape) < 0.3
    target = np.where(ignored, ignore_index, target)
    target.reshape(-1)[0] = k - 1  # one counted position (k >= 2, so also for ignore_index 0)
    return target


@stateless_xp
@given(n=st.integers(1, 3), k=st.integers(2, 4),
       extra=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       smoothing=st.sampled_from([0.0, 0.2]), ignore_index=st.sampled_from([-100, 0]),
       seed=seeds)
def test_cross_entropy_nd_gradients(xp, n, k, extra, smoothing, ignore_index, seed):
    logits = 2 * np.random.default_rng(seed).standard_normal((n, k, *extra))
    target = targets_with_ignored((n, *extra), k, seed, ignore_index)
    loss_fn = losses.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=ignore_index)
    assert_loss_gradients(loss_fn, xp.asarray(logits), xp.asarray(target))


@pytest.mark.parametrize("shape", [(4, 5), (3, 5, 4), (2, 5, 3, 2)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_nd_matches_torch(shape, smoothing):
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(0).standard_normal(shape)
    target = targets_with_ignored((shape[0],) + shape[2:], shape[1], 1)
    loss_fn = losses.CrossEntropyLoss(label_smoothing=smoothing)
    value = loss_fn(logits, target)
    grad = loss_fn.backward()
    t_logits = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(t_logits, torch.tensor(target),
                                                 label_smoothing=smoothing)
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, t_logits.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert np.all(np.moveaxis(grad, 1, -1)[target == -100] == 0)


def test_cross_entropy_sequence_equals_flattened():
    """(B, V, T) logits give the loss of the (B*T, V) rows: the GPT's loss either way."""
    logits = np.random.default_rng(1).standard_normal((2, 7, 5))
    target = np.random.default_rng(2).integers(0, 7, (2, 5))
    nd, flat = losses.CrossEntropyLoss(), losses.CrossEntropyLoss()
    rows = np.moveaxis(logits, 1, -1).reshape(-1, 7)
    np.testing.assert_allclose(nd(logits, target), flat(rows, target.reshape(-1)), rtol=1e-14)
    np.testing.assert_allclose(np.moveaxis(nd.backward(), 1, -1).reshape(-1, 7), flat.backward(),
                               rtol=1e-14)


def test_cross_entropy_nd_errors():
    loss_fn = losses.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"class indices of shape \(N,\) or \(N, d1, ...\)"):
        loss_fn(np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"must be in \[0, 3\), got -1"):
        loss_fn(np.zeros((2, 3, 4)), np.full((2, 4), -1))
    with pytest.raises(TypeError, match="ignore_index"):
        losses.CrossEntropyLoss(ignore_index=1.5)
    assert np.isnan(loss_fn(np.zeros((2, 3)), np.full(2, -100)))  # nothing counted, as torch


@stateless_xp
@given(n=st.integers(1, 4), k=st.integers(2, 5), p=st.sampled_from([1, 2]),
       margin=st.sampled_from([0.5, 1.0, 2.0]), weighted=st.booleans(), seed=seeds)
def test_multi_margin_gradients(xp, n, k, p, margin, weighted, seed):
    draw = np.random.default_rng(seed)
    # Scores on a 1/8 grid, the target's shifted by 1/16: every hinge argument is an odd
    # multiple of 1/16, far (for finite differences) from the kink at 0.
    scores = np.round(draw.standard_normal((n, k)) * 8) / 8
    target = draw.integers(0, k, n)
    scores[np.arange(n), target] += 1 / 16
    weight = xp.asarray(draw.uniform(0.5, 2.0, k)) if weighted else None
    loss_fn = losses.MultiMarginLoss(p=p, margin=margin, weight=weight)
    assert_loss_gradients(loss_fn, xp.asarray(scores), xp.asarray(target))


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_matches_torch(p, weighted):
    torch = pytest.importorskip("torch")
    draw = np.random.default_rng(3)
    scores, target = draw.standard_normal((6, 4)), draw.integers(0, 4, 6)
    weight = draw.uniform(0.5, 2.0, 4) if weighted else None
    loss_fn = losses.MultiMarginLoss(p=p, margin=0.7, weight=weight)
    value = loss_fn(scores, target)
    grad = loss_fn.backward()
    t_scores = torch.tensor(scores, requires_grad=True)
    expected = torch.nn.functional.multi_margin_loss(
        t_scores, torch.tensor(target), p=p, margin=0.7,
        weight=None if weight is None else torch.tensor(weight))
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, t_scores.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_multi_margin_is_the_cs231n_svm_loss():
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    target = np.array([0, 1, 2])
    # CS231n's example: per-sample hinge sums 2.9, 0, 12.9 (margin 1), here divided by K.
    assert float(losses.MultiMarginLoss()(scores, target)) == pytest.approx((2.9 + 12.9) / 9)


def test_multi_margin_errors():
    with pytest.raises(ValueError, match="p must be an integer in"):
        losses.MultiMarginLoss(p=3)
    with pytest.raises(ValueError, match=r"expected weight of shape \(3,\)"):
        losses.MultiMarginLoss(weight=np.ones(2))(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="MultiMarginLoss"):
        losses.MultiMarginLoss()(np.zeros((2, 3)), np.array([0, 3]))

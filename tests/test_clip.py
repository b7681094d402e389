"""clip_grad_norm_ and clip_grad_value_: the formulas, PyTorch's results, errors."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minidl import Param
from minidl.optim import clip_grad_norm_, clip_grad_value_


def params_with_grads(seed, scale, dtype=np.float64):
    draw = np.random.default_rng(seed)
    params = [Param(np.zeros(shape, dtype=dtype)) for shape in [(3, 4), (4,), (2, 2, 3)]]
    for param in params:
        param.grad[...] = scale * draw.standard_normal(param.shape)
    return params


def test_norm_is_the_norm_of_all_entries_and_direction_is_kept():
    params = params_with_grads(0, 3.0)
    before = np.concatenate([p.grad.ravel() for p in params])
    total = clip_grad_norm_(params, max_norm=1.0)
    assert total == pytest.approx(np.linalg.norm(before), rel=1e-12)
    after = np.concatenate([p.grad.ravel() for p in params])
    assert np.linalg.norm(after) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(after, before / (total + 1e-6), rtol=1e-12)


def test_small_gradients_are_left_alone():
    params = params_with_grads(1, 1e-3)
    before = [p.grad.copy() for p in params]
    clip_grad_norm_(params, max_norm=10.0)
    for param, grad in zip(params, before):
        np.testing.assert_array_equal(param.grad, grad)


def test_infinity_norm_and_single_param_and_float32():
    param = Param(np.zeros(5, dtype=np.float32))
    param.grad[...] = [1.0, -4.0, 2.0, 0.5, 3.0]
    total = clip_grad_norm_(param, max_norm=2.0, norm_type=math.inf)
    assert total == 4.0 and param.grad.dtype == np.float32
    np.testing.assert_allclose(param.grad, np.array([1.0, -4.0, 2.0, 0.5, 3.0]) * 2.0 / (4 + 1e-6),
                               rtol=1e-6)


def test_clip_value_clamps_each_entry():
    param = Param(np.zeros(4))
    param.grad[...] = [-3.0, -0.5, 0.25, 7.0]
    clip_grad_value_([param], 1.0)
    np.testing.assert_array_equal(param.grad, [-1.0, -0.5, 0.25, 1.0])


@settings(max_examples=15)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 0.5, 5.0]),
       max_norm=st.sampled_from([0.0, 0.3, 1.0, 4.0]),
       norm_type=st.sampled_from([1.0, 2.0, 3.5, math.inf]))
def test_equal_to_torch(seed, scale, max_norm, norm_type):
    torch = pytest.importorskip("torch")
    ours = params_with_grads(seed, scale)
    theirs = [torch.nn.Parameter(torch.zeros(p.shape, dtype=torch.float64)) for p in ours]
    for param, twin in zip(ours, theirs):
        twin.grad = torch.tensor(param.grad)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert total == pytest.approx(float(total_t), rel=1e-12)
    for param, twin in zip(ours, theirs):
        np.testing.assert_allclose(param.grad, twin.grad.numpy(), rtol=1e-12, atol=1e-300)
    for param, twin in zip(ours, theirs):  # the same grads again for the value clip
        twin.grad = torch.tensor(param.grad)
    torch.nn.utils.clip_grad_value_(theirs, 0.1 * scale)
    clip_grad_value_(ours, 0.1 * scale)
    for param, twin in zip(ours, theirs):
        np.testing.assert_array_equal(param.grad, twin.grad.numpy())


def test_errors():
    params = params_with_grads(0, 1.0)
    with pytest.raises(ValueError,
                       match=r"clip_grad_norm_: max_norm must be a real number in \[0, inf\)"):
        clip_grad_norm_(params, -1.0)
    with pytest.raises(ValueError, match="clip_grad_norm_: norm_type must be a real number in"):
        clip_grad_norm_(params, 1.0, norm_type=0)
    with pytest.raises(TypeError,
                       match="clip_grad_norm_: expected Params, got ndarray at position 0"):
        clip_grad_norm_([np.zeros(3)], 1.0)
    with pytest.raises(TypeError, match="clip_grad_value_: expected a Param or an iterable"):
        clip_grad_value_(3, 1.0)
    params[0].grad[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="total norm of the gradients is inf"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)

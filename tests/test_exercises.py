"""Every checker of minidl.exercises passes a correct solution and fails a broken one.

The correct solutions are written independently of minidl's layers (plain NumPy, loops
where that is the clearest), so a checker that compared against the wrong reference
would fail them. Each broken solution carries one typical student mistake.
"""
import numpy as np
import pytest

from minidl import exercises as ex


# --------------------------------------------------------------------------- solutions
def linear_backward(dout, x, w, b):
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def linear_backward_no_batch_sum(dout, x, w, b):
    return dout @ w.T, x.T @ dout, dout.mean(axis=0)  # mean instead of sum


def mse_loss(pred, target):
    diff = pred - target
    return np.mean(diff ** 2), 2 * diff / diff.size


def mse_loss_per_row(pred, target):
    diff = pred - target
    return np.mean(diff ** 2), 2 * diff / diff.shape[0]  # divides by N, not N * M


def relu_backward(dout, x):
    return dout * (x > 0)


def relu_backward_wrong_side(dout, x):
    return dout * (x < 0)


def softmax_ce(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(labels)
    dlogits = np.exp(log_p)
    dlogits[np.arange(n), labels] -= 1
    return -log_p[np.arange(n), labels].mean(), dlogits / n


def softmax_ce_unstable(logits, labels):
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # overflows at 1000
        n = len(labels)
        dlogits = p.copy()
        dlogits[np.arange(n), labels] -= 1
        return -np.log(p[np.arange(n), labels]).mean(), dlogits / n


def sigmoid_backward(dout, x):
    y = 1 / (1 + np.exp(-x))
    return dout * y * (1 - y)


def sigmoid_backward_forgot_chain(dout, x):
    y = 1 / (1 + np.exp(-x))
    return y * (1 - y)  # forgets dout


def leaky_relu_backward(dout, x, negative_slope):
    return np.where(x > 0, dout, negative_slope * dout)


def leaky_relu_backward_as_relu(dout, x, negative_slope):
    return np.where(x > 0, dout, 0.0)


def conv2d_backward(dout, x, w, b, stride, padding):
    n, c, h, width = x.shape
    c_out, _, kh, kw = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dx_pad, dw = np.zeros_like(x_pad), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            top, left = i * stride, j * stride
            window = x_pad[:, :, top:top + kh, left:left + kw]
            for o in range(c_out):
                g = dout[:, o, i, j][:, None, None, None]
                dw[o] += (g * window).sum(axis=0)
                dx_pad[:, :, top:top + kh, left:left + kw] += g * w[o]
    dx = dx_pad[:, :, padding:padding + h, padding:padding + width]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def conv2d_backward_ignores_stride(dout, x, w, b, stride, padding):
    return conv2d_backward(dout, x, w, b, 1, padding) if stride == 1 else \
        (np.zeros_like(x), np.zeros_like(w), dout.sum(axis=(0, 2, 3)))


def col2im(cols, x_shape, kernel_size, stride, padding):
    n, c, h, w = x_shape
    k, s, p = kernel_size, stride, padding
    out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    blocks = cols.reshape(n, out_h, out_w, k, k, c)
    x_pad = np.zeros((n, c, h + 2 * p, w + 2 * p))
    for i in range(k):
        for j in range(k):
            x_pad[:, :, i:i + s * out_h:s, j:j + s * out_w:s] += blocks[:, :, :, i, j].transpose(
                0, 3, 1, 2)
    return x_pad[:, :, p:p + h, p:p + w]


def col2im_assigns(cols, x_shape, kernel_size, stride, padding):
    n, c, h, w = x_shape
    k, s, p = kernel_size, stride, padding
    out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    blocks = cols.reshape(n, out_h, out_w, k, k, c)
    x_pad = np.zeros((n, c, h + 2 * p, w + 2 * p))
    for i in range(k):
        for j in range(k):  # "=" loses the overlap of neighbouring windows
            x_pad[:, :, i:i + s * out_h:s, j:j + s * out_w:s] = blocks[:, :, :, i, j].transpose(
                0, 3, 1, 2)
    return x_pad[:, :, p:p + h, p:p + w]


def _pool_backward(dout, x, k, s, share):
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += share(window) * \
                dout[:, :, i, j][:, :, None, None]
    return dx


def maxpool_backward(dout, x, kernel_size, stride):
    return _pool_backward(dout, x, kernel_size, stride,
                          lambda win: win == win.max(axis=(2, 3), keepdims=True))


def maxpool_backward_assigns(dout, x, kernel_size, stride):
    dx = np.zeros_like(x)
    k, s = kernel_size, stride
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            mask = window == window.max(axis=(2, 3), keepdims=True)
            region = dx[:, :, i * s:i * s + k, j * s:j * s + k]
            region[mask] = (mask * dout[:, :, i, j][:, :, None, None])[mask]  # = instead of +=
    return dx


def avgpool_backward(dout, x, kernel_size, stride):
    return _pool_backward(dout, x, kernel_size, stride,
                          lambda win: np.full(win.shape, 1.0 / kernel_size ** 2))


def avgpool_backward_no_division(dout, x, kernel_size, stride):
    return _pool_backward(dout, x, kernel_size, stride, lambda win: np.ones(win.shape))


def batch_norm_backward(dout, x, gamma, beta, eps):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    dgamma, dbeta = (dout * xhat).sum(axis=0), dout.sum(axis=0)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var + eps)
    return dx, dgamma, dbeta


def batch_norm_backward_constant_stats(dout, x, gamma, beta, eps):
    mu, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    # treats mean and variance as constants (the eval-mode gradient)
    return dout * gamma / np.sqrt(var + eps), (dout * xhat).sum(axis=0), dout.sum(axis=0)


def sgd_momentum_step(param, grad, velocity, lr, momentum, nesterov):
    velocity = momentum * velocity + grad
    step = grad + momentum * velocity if nesterov else velocity
    return param - lr * step, velocity


def sgd_momentum_step_no_nesterov(param, grad, velocity, lr, momentum, nesterov):
    return sgd_momentum_step(param, grad, velocity, lr, momentum, False)


def adam_step(param, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def adam_step_no_bias_correction(param, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    return param - lr * m / (np.sqrt(v) + eps), m, v


def dropout_backward(dout, keep, p):
    return dout * keep / (1 - p)


def dropout_backward_unscaled(dout, keep, p):
    return dout * keep


def weight_decay(w, weight_decay):
    return weight_decay / 2 * np.sum(w ** 2), weight_decay * w


def weight_decay_doubled(w, weight_decay):
    return weight_decay / 2 * np.sum(w ** 2), 2 * weight_decay * w


def residual_backward(dout, x, w1, w2):
    pre = x @ w1
    hidden = np.maximum(pre, 0)
    dw2 = hidden.T @ dout
    dpre = (dout @ w2.T) * (pre > 0)
    return dout + dpre @ w1.T, x.T @ dpre, dw2


def residual_backward_no_skip(dout, x, w1, w2):
    dx, dw1, dw2 = residual_backward(dout, x, w1, w2)
    return dx - dout, dw1, dw2  # forgets the gradient of the skip connection


def global_avg_pool_backward(dout, x):
    return np.broadcast_to(dout[:, :, None, None] / (x.shape[2] * x.shape[3]), x.shape)


def global_avg_pool_backward_sum(dout, x):
    return np.broadcast_to(dout[:, :, None, None], x.shape)  # the gradient of a sum


def rnn_step_backward(dh, x, h_prev, w_ih, w_hh, b):
    h = np.tanh(x @ w_ih.T + h_prev @ w_hh.T + b)
    da = dh * (1 - h ** 2)
    return da @ w_ih, da @ w_hh, da.T @ x, da.T @ h_prev, da.sum(axis=0)


def rnn_step_backward_skips_tanh_for_h_prev(dh, x, h_prev, w_ih, w_hh, b):
    dx, _, dw_ih, dw_hh, db = rnn_step_backward(dh, x, h_prev, w_ih, w_hh, b)
    return dx, dh @ w_hh, dw_ih, dw_hh, db  # forgets tanh' on the path to h_prev


def _attention_weights(q, k, causal):
    scores = np.einsum("nle,nse->nls", q, k) / np.sqrt(q.shape[-1])
    if causal:
        length, source = scores.shape[1:]
        for i in range(length):
            scores[:, i, i + 1:] = -np.inf
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def attention_backward(dout, q, k, v, causal):
    p = _attention_weights(q, k, causal)
    dv = np.einsum("nls,nlv->nsv", p, dout)
    dp = np.einsum("nlv,nsv->nls", dout, v)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    scale = 1 / np.sqrt(q.shape[-1])
    return (np.einsum("nls,nse->nle", ds, k) * scale,
            np.einsum("nls,nle->nse", ds, q) * scale, dv)


def attention_backward_no_row_sum(dout, q, k, v, causal):
    p = _attention_weights(q, k, causal)
    ds = p * np.einsum("nlv,nsv->nls", dout, v)  # the softmax Jacobian without its -P P^T
    scale = 1 / np.sqrt(q.shape[-1])
    return (np.einsum("nls,nse->nle", ds, k) * scale,
            np.einsum("nls,nle->nse", ds, q) * scale, np.einsum("nls,nlv->nsv", p, dout))


CASES = [
    (ex.check_linear_backward, linear_backward, linear_backward_no_batch_sum),
    (ex.check_mse_loss, mse_loss, mse_loss_per_row),
    (ex.check_relu_backward, relu_backward, relu_backward_wrong_side),
    (ex.check_softmax_ce, softmax_ce, softmax_ce_unstable),
    (ex.check_sigmoid_backward, sigmoid_backward, sigmoid_backward_forgot_chain),
    (ex.check_leaky_relu_backward, leaky_relu_backward, leaky_relu_backward_as_relu),
    (ex.check_conv2d_backward, conv2d_backward, conv2d_backward_ignores_stride),
    (ex.check_col2im, col2im, col2im_assigns),
    (ex.check_maxpool_backward, maxpool_backward, maxpool_backward_assigns),
    (ex.check_avgpool_backward, avgpool_backward, avgpool_backward_no_division),
    (ex.check_batch_norm_backward, batch_norm_backward, batch_norm_backward_constant_stats),
    (ex.check_sgd_momentum_step, sgd_momentum_step, sgd_momentum_step_no_nesterov),
    (ex.check_adam_step, adam_step, adam_step_no_bias_correction),
    (ex.check_dropout_backward, dropout_backward, dropout_backward_unscaled),
    (ex.check_weight_decay, weight_decay, weight_decay_doubled),
    (ex.check_residual_backward, residual_backward, residual_backward_no_skip),
    (ex.check_global_avg_pool_backward, global_avg_pool_backward, global_avg_pool_backward_sum),
    (ex.check_rnn_step_backward, rnn_step_backward, rnn_step_backward_skips_tanh_for_h_prev),
    (ex.check_attention_backward, attention_backward, attention_backward_no_row_sum),
]
IDS = [checker.__name__ for checker, _, _ in CASES]


def test_every_checker_is_tested():
    assert sorted(IDS) == sorted(ex.__all__)


@pytest.mark.parametrize("checker, correct, broken", CASES, ids=IDS)
def test_correct_solution_passes(checker, correct, broken, capsys):
    assert checker(correct) is True
    out = capsys.readouterr().out
    assert out.startswith(f"{checker.__name__}: PASS"), out


@pytest.mark.parametrize("checker, correct, broken", CASES, ids=IDS)
def test_broken_solution_fails_with_worst_entries_and_hint(checker, correct, broken, capsys):
    assert checker(broken) is False
    out = capsys.readouterr().out
    assert out.startswith(f"{checker.__name__}: FAIL on configuration"), out
    assert "Hint:" in out


@pytest.mark.parametrize("checker, correct, broken", CASES[:3], ids=IDS[:3])
def test_failure_names_the_reference_and_lists_entries(checker, correct, broken, capsys):
    checker(broken)
    out = capsys.readouterr().out
    assert "differs from finite differences" in out or "differs from minidl" in out, out
    assert "yours" in out and "index" in out


def test_stub_is_reported_as_not_written(capsys):
    def stub(dout, x, w, b):
        raise NotImplementedError

    assert ex.check_linear_backward(stub) is False
    assert "not written yet" in capsys.readouterr().out


def test_wrong_shape_and_exceptions_are_failures_not_crashes(capsys):
    assert ex.check_relu_backward(lambda dout, x: dout.sum()) is False
    assert "has shape ()" in capsys.readouterr().out
    assert ex.check_relu_backward(lambda dout, x: dout @ x) is False
    assert "raised an exception" in capsys.readouterr().out
    assert ex.check_linear_backward(lambda dout, x, w, b: (dout, x)) is False
    assert "expected 3 return values" in capsys.readouterr().out


def test_verbose_false_prints_nothing(capsys):
    assert ex.check_relu_backward(relu_backward, verbose=False) is True
    assert capsys.readouterr().out == ""


def test_other_seed_still_passes_and_inputs_are_private_copies():
    def mutating_relu_backward(dout, x):
        dx = dout * (x > 0)
        x[...] = 0  # must not corrupt the checker's arrays
        dout[...] = 0
        return dx

    assert ex.check_relu_backward(mutating_relu_backward, seed=7, verbose=False) is True


def test_checker_leaves_minidl_rng_alone():
    from minidl import backend
    state = backend.get_rng_state()
    ex.check_dropout_backward(dropout_backward, verbose=False)
    ex.check_linear_backward(linear_backward, verbose=False)
    assert backend.get_rng_state() == state


def test_not_a_function_is_a_type_error():
    with pytest.raises(TypeError, match="check_relu_backward: expected your function"):
        ex.check_relu_backward(None)


def test_attention_checker_covers_the_causal_mask(capsys):
    def ignores_mask(dout, q, k, v, causal):
        return attention_backward(dout, q, k, v, False)

    assert ex.check_attention_backward(ignores_mask) is False
    assert "causal True" in capsys.readouterr().out

"""Optimizers: closed-form steps, convergence, groups, state, dtypes, and torch.optim equality."""
import json

import numpy as np
import pytest

from minidl import Module, Param, optim

ALL_OPTIMIZERS = [optim.SGD, optim.Adam, optim.AdamW, optim.Adamax, optim.Adagrad,
                  optim.RMSprop, optim.Adadelta]


def make_param(values, dtype=np.float64):
    return Param(np.array(values, dtype=dtype))


def run_steps(opt, param, grads):
    """Apply one optimizer step per gradient in ``grads``; return the parameter after each."""
    trajectory = []
    for grad in grads:
        opt.zero_grad()
        param.grad += np.asarray(grad, dtype=param.data.dtype)
        opt.step()
        trajectory.append(param.data.copy())
    return trajectory


P0 = [1.0, -2.0]
G1, G2 = np.array([0.5, -1.0]), np.array([-0.25, 2.0])


# ---------------------------------------------------------------- closed-form steps
def test_sgd_plain_step():
    p = make_param(P0)
    (after,) = run_steps(optim.SGD([p], lr=0.1), p, [G1])
    np.testing.assert_allclose(after, [1.0 - 0.05, -2.0 + 0.1], rtol=1e-15)


def test_sgd_momentum_dampening_two_steps():
    p = make_param(P0)
    first, second = run_steps(optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5), p, [G1, G2])
    buffer1 = G1                                # first step: the buffer is the gradient
    np.testing.assert_allclose(first, np.array(P0) - 0.1 * buffer1, rtol=1e-15)
    buffer2 = 0.9 * buffer1 + 0.5 * G2          # then mu * b + (1 - dampening) * g
    np.testing.assert_allclose(second, first - 0.1 * buffer2, rtol=1e-15)


def test_sgd_nesterov_two_steps():
    p = make_param(P0)
    first, second = run_steps(optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True), p, [G1, G2])
    buffer1 = G1
    np.testing.assert_allclose(first, np.array(P0) - 0.1 * (G1 + 0.9 * buffer1), rtol=1e-15)
    buffer2 = 0.9 * buffer1 + G2
    np.testing.assert_allclose(second, first - 0.1 * (G2 + 0.9 * buffer2), rtol=1e-15)


def test_sgd_weight_decay_enters_gradient():
    p = make_param(P0)
    (after,) = run_steps(optim.SGD([p], lr=0.1, weight_decay=0.01), p, [G1])
    np.testing.assert_allclose(after, np.array(P0) - 0.1 * (G1 + 0.01 * np.array(P0)), rtol=1e-15)


def adam_reference(p, grads, lr, beta1, beta2, eps, weight_decay=0.0, amsgrad=False,
                   decoupled=False):
    """Adam written out step by step for the tests."""
    p = np.array(p, dtype=np.float64)
    m = v = v_max = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = np.maximum(v_max, v)
        second = v_max if amsgrad else v
        p = p - lr / (1 - beta1 ** t) * m / (np.sqrt(second) / np.sqrt(1 - beta2 ** t) + eps)
    return p


def test_adam_first_step_is_lr_times_sign():
    # Bias correction makes the first step lr * g / (|g| + eps): lr times the sign.
    p = make_param(P0)
    (after,) = run_steps(optim.Adam([p], lr=0.1, eps=0.0), p, [G1])
    np.testing.assert_allclose(after, np.array(P0) - 0.1 * np.sign(G1), rtol=1e-14)


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1}, {"amsgrad": True}])
def test_adam_two_steps(options):
    p = make_param(P0)
    opt = optim.Adam([p], lr=0.1, betas=(0.8, 0.9), eps=1e-3, **options)
    first, second = run_steps(opt, p, [G1, G2 * 0.1])
    np.testing.assert_allclose(first, adam_reference(P0, [G1], 0.1, 0.8, 0.9, 1e-3, **options),
                               rtol=1e-14)
    np.testing.assert_allclose(second, adam_reference(P0, [G1, G2 * 0.1], 0.1, 0.8, 0.9, 1e-3,
                                                      **options), rtol=1e-14)


def test_amsgrad_uses_the_largest_second_moment():
    # A small second gradient shrinks v but not v_max, so AMSGrad takes a smaller step.
    p, q = make_param(P0), make_param(P0)
    grads = [G1, G1 * 0.01]
    plain = run_steps(optim.Adam([p], lr=0.1), p, grads)
    ams = run_steps(optim.Adam([q], lr=0.1, amsgrad=True), q, grads)
    np.testing.assert_array_equal(ams[0], plain[0])
    assert np.all(np.abs(ams[1] - ams[0]) < np.abs(plain[1] - plain[0]))


def test_adamw_decays_the_weights_directly():
    p = make_param(P0)
    first, second = run_steps(optim.AdamW([p], lr=0.1, weight_decay=0.5), p, [G1, G2])
    expected = adam_reference(P0, [G1, G2], 0.1, 0.9, 0.999, 1e-8, weight_decay=0.5,
                              decoupled=True)
    np.testing.assert_allclose(second, expected, rtol=1e-14)
    # Step 1 by hand: p * (1 - lr * wd) then lr * sign(g) (bias-corrected first step).
    np.testing.assert_allclose(first, np.array(P0) * 0.95 - 0.1 * G1 / (np.abs(G1) + 1e-8),
                               rtol=1e-14)


def test_adamax_two_steps():
    p = make_param(P0)
    first, second = run_steps(optim.Adamax([p], lr=0.1, betas=(0.8, 0.9), eps=1e-3), p, [G1, G2])
    m1, u1 = 0.2 * G1, np.abs(G1) + 1e-3
    np.testing.assert_allclose(first, np.array(P0) - 0.1 / 0.2 * m1 / u1, rtol=1e-14)
    m2, u2 = 0.8 * m1 + 0.2 * G2, np.maximum(0.9 * u1, np.abs(G2) + 1e-3)
    np.testing.assert_allclose(second, first - 0.1 / (1 - 0.8 ** 2) * m2 / u2, rtol=1e-14)


def test_adagrad_two_steps_with_lr_decay():
    p = make_param(P0)
    opt = optim.Adagrad([p], lr=0.1, lr_decay=0.5, initial_accumulator_value=0.1, eps=1e-3)
    first, second = run_steps(opt, p, [G1, G2])
    s1 = 0.1 + G1 ** 2
    np.testing.assert_allclose(first, np.array(P0) - 0.1 * G1 / (np.sqrt(s1) + 1e-3), rtol=1e-14)
    s2 = s1 + G2 ** 2
    lr2 = 0.1 / (1 + 1 * 0.5)
    np.testing.assert_allclose(second, first - lr2 * G2 / (np.sqrt(s2) + 1e-3), rtol=1e-14)


def test_rmsprop_plain_two_steps():
    p = make_param(P0)
    first, second = run_steps(optim.RMSprop([p], lr=0.01, alpha=0.9, eps=1e-3), p, [G1, G2])
    v1 = 0.1 * G1 ** 2
    np.testing.assert_allclose(first, np.array(P0) - 0.01 * G1 / (np.sqrt(v1) + 1e-3), rtol=1e-14)
    v2 = 0.9 * v1 + 0.1 * G2 ** 2
    np.testing.assert_allclose(second, first - 0.01 * G2 / (np.sqrt(v2) + 1e-3), rtol=1e-14)


def test_rmsprop_centered_with_momentum_two_steps():
    p = make_param(P0)
    opt = optim.RMSprop([p], lr=0.01, alpha=0.9, eps=1e-3, momentum=0.5, centered=True)
    first, second = run_steps(opt, p, [G1, G2])
    v1, a1 = 0.1 * G1 ** 2, 0.1 * G1
    b1 = G1 / (np.sqrt(v1 - a1 ** 2) + 1e-3)
    np.testing.assert_allclose(first, np.array(P0) - 0.01 * b1, rtol=1e-14)
    v2, a2 = 0.9 * v1 + 0.1 * G2 ** 2, 0.9 * a1 + 0.1 * G2
    b2 = 0.5 * b1 + G2 / (np.sqrt(v2 - a2 ** 2) + 1e-3)
    np.testing.assert_allclose(second, first - 0.01 * b2, rtol=1e-14)


def test_adadelta_two_steps():
    p = make_param(P0)
    first, second = run_steps(optim.Adadelta([p], lr=0.5, rho=0.9, eps=1e-2), p, [G1, G2])
    v1 = 0.1 * G1 ** 2
    d1 = np.sqrt(0 + 1e-2) / np.sqrt(v1 + 1e-2) * G1
    np.testing.assert_allclose(first, np.array(P0) - 0.5 * d1, rtol=1e-14)
    u1 = 0.1 * d1 ** 2
    v2 = 0.9 * v1 + 0.1 * G2 ** 2
    d2 = np.sqrt(u1 + 1e-2) / np.sqrt(v2 + 1e-2) * G2
    np.testing.assert_allclose(second, first - 0.5 * d2, rtol=1e-14)


# ---------------------------------------------------------------- behaviour
QUADRATIC_SCALES = np.array([1.0, 4.0, 0.5])
QUADRATIC_MINIMUM = np.array([1.0, -2.0, 3.0])


@pytest.mark.parametrize("factory, steps", [
    (lambda ps: optim.SGD(ps, lr=0.1), 200),
    (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), 200),
    (lambda ps: optim.Adam(ps, lr=0.1), 500),
    (lambda ps: optim.Adam(ps, lr=0.1, amsgrad=True), 500),
    (lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.0), 500),
    (lambda ps: optim.Adamax(ps, lr=0.1), 500),
    (lambda ps: optim.Adagrad(ps, lr=0.5), 500),
    (lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5), 1000),
    (lambda ps: optim.Adadelta(ps, lr=10.0), 1000),
], ids=["sgd", "nesterov", "adam", "amsgrad", "adamw", "adamax", "adagrad", "rmsprop",
        "adadelta"])
def test_converges_on_a_convex_quadratic(factory, steps):
    """f(p) = sum(a * (p - c)^2) / 2 with gradient a * (p - c); the minimum is c."""
    p = make_param(np.zeros(3))
    opt = factory([p])
    for _ in range(steps):
        opt.zero_grad()
        p.grad += QUADRATIC_SCALES * (p.data - QUADRATIC_MINIMUM)
        opt.step()
    np.testing.assert_allclose(p.data, QUADRATIC_MINIMUM, atol=2e-2)


def test_param_groups_have_their_own_lr_and_weight_decay():
    a, b = make_param(P0), make_param(P0)
    opt = optim.SGD([{"params": [a], "lr": 0.5, "weight_decay": 0.1}, {"params": [b]}],
                    lr=0.1, momentum=0.0)
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[0]["params"] == [a]
    for param in (a, b):
        param.grad += G1
    opt.step()
    np.testing.assert_allclose(a.data, np.array(P0) - 0.5 * (G1 + 0.1 * np.array(P0)), rtol=1e-15)
    np.testing.assert_allclose(b.data, np.array(P0) - 0.1 * G1, rtol=1e-15)


def test_zero_grad_resets_every_gradient():
    a, b = make_param(P0), make_param([3.0])
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 1.0}])
    a.grad += 1.0
    b.grad += 2.0
    opt.zero_grad()
    assert not a.grad.any() and not b.grad.any()


def test_params_without_grad_are_skipped():
    p = make_param(P0)
    p.grad = None
    opt = optim.Adam([p], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(p.data, P0)
    assert opt.state == {}


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS)
def test_float32_params_and_state_stay_float32(cls):
    """NumPy float64 hyper-parameters must not promote float32 parameters or state."""
    p = make_param(P0, dtype=np.float32)
    kwargs = {"lr": np.float64(0.01), "weight_decay": np.float64(0.01)}
    opt = cls([p], **kwargs)
    for grad in (G1, G2):
        p.grad += grad.astype(np.float32)
        opt.step()
    assert p.data.dtype == np.float32
    for value in opt.state[p].values():
        if hasattr(value, "dtype"):
            assert value.dtype == np.float32
    assert all(type(v) in (float, int, bool, tuple) for k, v in opt.param_groups[0].items()
               if k != "params")


@pytest.mark.parametrize("factory", [
    lambda ps: optim.Adam(ps), lambda ps: optim.Adam(ps, amsgrad=True),
    lambda ps: optim.AdamW(ps), lambda ps: optim.Adamax(ps),
    lambda ps: optim.RMSprop(ps), lambda ps: optim.RMSprop(ps, centered=True, momentum=0.9),
    lambda ps: optim.Adagrad(ps), lambda ps: optim.Adadelta(ps)],
    ids=["adam", "amsgrad", "adamw", "adamax", "rmsprop", "rmsprop-centered", "adagrad",
         "adadelta"])
def test_zero_gradients_stay_finite(factory):
    p = make_param(P0, dtype=np.float32)
    opt = factory([p])
    for _ in range(3):
        opt.zero_grad()
        opt.step()
    assert np.isfinite(p.data).all()
    assert all(np.isfinite(value).all() for value in opt.state[p].values())
    # A zero gradient moves nothing, except AdamW's decoupled decay p *= 1 - lr * wd.
    shrink = (1 - 1e-3 * 1e-2) ** 3 if isinstance(opt, optim.AdamW) else 1.0
    np.testing.assert_allclose(p.data, np.array(P0) * shrink, rtol=1e-6)


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS)
def test_runs_on_the_backend(xp, cls):
    p = Param(xp.asarray(np.array(P0, dtype=np.float32)))
    opt = cls([p], lr=0.01)
    p.grad += xp.asarray(G1.astype(np.float32))
    opt.step()
    assert type(p.data) is type(p.grad) and p.data.dtype == np.float32
    assert not np.allclose(np.asarray(p.data.tolist()), P0)


# ---------------------------------------------------------------- state_dict
def to_checkpoint_form(state):
    """What a JSON + npz checkpoint gives back: string keys, lists, arrays unchanged."""
    arrays = {}

    def strip(value, path):
        if isinstance(value, np.ndarray):
            arrays[path] = value
            return {"__array__": path}
        if isinstance(value, dict):
            return {str(k): strip(v, f"{path}/{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strip(v, f"{path}/{i}") for i, v in enumerate(value)]
        return value

    def restore(value):
        if isinstance(value, dict):
            if "__array__" in value:
                return arrays[value["__array__"]]
            return {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    return restore(json.loads(json.dumps(strip(state, ""))))


@pytest.mark.parametrize("factory", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda ps: optim.Adam(ps, lr=0.05, amsgrad=True),
    lambda ps: optim.AdamW(ps, lr=0.05),
    lambda ps: optim.Adamax(ps),
    lambda ps: optim.Adagrad(ps, lr_decay=0.1),
    lambda ps: optim.RMSprop(ps, momentum=0.9, centered=True),
    lambda ps: optim.Adadelta(ps),
    lambda ps: optim.Lookahead(optim.SGD(ps, lr=0.1, momentum=0.9), k=3, alpha=0.5),
], ids=["sgd", "adam", "adamw", "adamax", "adagrad", "rmsprop", "adadelta", "lookahead"])
def test_state_dict_round_trip_continues_identically(factory):
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((10, 2, 3))
    original = [make_param(rng.standard_normal(3)), make_param(rng.standard_normal(3))]
    opt = factory([{"params": original[:1]}, {"params": original[1:], "lr": 0.01}])
    for step in range(4):
        for param, grad in zip(original, grads[step]):
            param.grad[...] = grad
        opt.step()
    saved = to_checkpoint_form(opt.state_dict())
    resumed_params = [make_param(p.data.copy()) for p in original]
    resumed = factory([{"params": resumed_params[:1]}, {"params": resumed_params[1:]}])
    resumed.load_state_dict(saved)
    assert resumed.param_groups[1]["lr"] == 0.01
    for step in range(4, 10):
        for run in ((opt, original), (resumed, resumed_params)):
            for param, grad in zip(run[1], grads[step]):
                param.grad[...] = grad
            run[0].step()
    for a, b in zip(original, resumed_params):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_is_a_snapshot_with_indices():
    a, b = make_param(P0), make_param(P0)
    opt = optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1, momentum=0.9)
    a.grad += G1
    b.grad += G2
    opt.step()
    state = opt.state_dict()
    assert [g["params"] for g in state["param_groups"]] == [[0], [1]]
    assert set(state["state"]) == {0, 1}
    np.testing.assert_array_equal(state["state"][1]["momentum_buffer"], G2)
    opt.step()  # the snapshot does not change
    np.testing.assert_array_equal(state["state"][1]["momentum_buffer"], G2)
    json.dumps(state["param_groups"])


def test_load_state_dict_casts_to_the_parameter_dtype():
    p = make_param(P0)
    opt = optim.Adam([p])
    p.grad += G1
    opt.step()
    q = make_param(P0, dtype=np.float32)
    other = optim.Adam([q])
    other.load_state_dict(opt.state_dict())
    assert other.state[q]["exp_avg"].dtype == np.float32 and other.state[q]["step"] == 1
    assert other.param_groups[0]["betas"] == (0.9, 0.999)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["param_groups"].append(dict(s["param_groups"][0])), "2 param groups"),
    (lambda s: s["param_groups"][0].update(params=[0, 1]), "param group 0 has 2 parameters"),
    (lambda s: s["state"][0].update(exp_avg=np.zeros(5)), "'exp_avg' of .* has shape"),
])
def test_load_state_dict_rejects_a_state_that_does_not_fit(edit, message):
    p = make_param(P0)
    opt = optim.Adam([p])
    p.grad += G1
    opt.step()
    state = opt.state_dict()
    edit(state)
    with pytest.raises(ValueError, match="Adam.load_state_dict: .*" + message):
        optim.Adam([make_param(P0)]).load_state_dict(state)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("build, message", [
    (lambda p: optim.SGD([p]), "SGD: param group 0 needs a value for 'lr'"),
    (lambda p: optim.SGD([p], lr=-0.1),
     r"SGD: lr must be a real number in \[0, inf\), got -0.1 \(float\) in param group 0"),
    (lambda p: optim.SGD([p], lr=0.1, momentum=-1), "SGD: momentum must be a real number"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), "SGD: Nesterov momentum requires"),
    (lambda p: optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "SGD: Nesterov momentum requires"),
    (lambda p: optim.Adam([p], betas=(1.0, 0.999)),
     r"Adam: betas\[0\] must be a real number in \[0, 1\), got 1.0"),
    (lambda p: optim.AdamW([p], betas=(0.9, -0.1)), r"AdamW: betas\[1\] must be"),
    (lambda p: optim.Adam([p], betas=(0.9, 0.99, 0.9)), "Adam: betas must be a pair"),
    (lambda p: optim.Adam([p], eps=-1e-8), "Adam: eps must be"),
    (lambda p: optim.Adamax([p], weight_decay=-1), "Adamax: weight_decay must be"),
    (lambda p: optim.Adagrad([p], lr_decay=-1), "Adagrad: lr_decay must be"),
    (lambda p: optim.RMSprop([p], alpha=-0.5), r"RMSprop: alpha must be a real number in \[0, 1\]"),
    (lambda p: optim.RMSprop([p], alpha=2), r"RMSprop: alpha must be a real number in \[0, 1\]"),
    (lambda p: optim.Adadelta([p], rho=1.5), "Adadelta: rho must be"),
    (lambda p: optim.SGD([], lr=0.1), "SGD: got an empty parameter list"),
    (lambda p: optim.SGD([p, p], lr=0.1), "SGD: a parameter appears twice"),
    (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1),
     "SGD: a parameter appears twice"),
    (lambda p: optim.SGD([{"params": [p], "weight_deacy": 0.1}], lr=0.1),
     "SGD: unknown hyper-parameter.*weight_deacy"),
    (lambda p: optim.SGD([{"params": [p], "lr": -1.0}], lr=0.1),
     "SGD: lr must be .* got -1.0 .* in param group 0"),
    (lambda p: optim.SGD([p], lr=float("nan")), "SGD: lr must be .* got nan"),
    (lambda p: optim.Adam([p], lr=float("inf")), "Adam: lr must be .* got inf"),
    (lambda p: optim.SGD([p], lr=10**400), "SGD: lr must be .*too large for a float"),
    (lambda p: optim.Lookahead(optim.SGD([p], lr=0.1), k=0), "Lookahead: k must be a positive"),
    (lambda p: optim.Lookahead(optim.SGD([p], lr=0.1), alpha=2.0),
     r"Lookahead: alpha must be a real number in \[0, 1\]"),
    (lambda p: optim.Lookahead(optim.SGD([p], lr=0.1), alpha=float("nan")), "Lookahead: alpha"),
    (lambda p: optim.ExponentialMovingAverage(TinyModel(), decay=1.5),
     r"ExponentialMovingAverage: decay must be a real number in \[0, 1\], got 1.5"),
    (lambda p: optim.ExponentialMovingAverage(TinyModel(), decay=float("nan")),
     "ExponentialMovingAverage: decay must be"),
])
def test_invalid_hyper_parameters_raise_a_clear_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build(make_param(P0))


@pytest.mark.parametrize("build, message", [
    (lambda p: optim.SGD([p], lr="fast"), r"SGD: lr must be a real number .* got 'fast' \(str\)"),
    (lambda p: optim.SGD([p], lr=True), r"SGD: lr must be a real number .* got True \(bool\)"),
    (lambda p: optim.Adam([p], lr=None), "Adam: lr must be a real number"),
    (lambda p: optim.Adam([p], betas=0.9), "Adam: betas must be a pair"),
    (lambda p: optim.Adam([p], betas=(0.9, False)), r"Adam: betas\[1\] must be a real number"),
    (lambda p: optim.RMSprop([p], alpha=True), "RMSprop: alpha must be"),
    (lambda p: optim.SGD([p], lr=0.1, momentum=0.9, nesterov="yes"),
     "SGD: nesterov must be True or False"),
    (lambda p: optim.Adam([p], amsgrad=1), "Adam: amsgrad must be True or False"),
    (lambda p: optim.SGD(None, lr=0.1), "SGD: expected a list of Param"),
    (lambda p: optim.Lookahead(optim.SGD([p], lr=0.1), k=True), "Lookahead: k must be"),
    (lambda p: optim.Lookahead(optim.SGD([p], lr=0.1), k=2.0), "Lookahead: k must be"),
    (lambda p: optim.ExponentialMovingAverage(TinyModel(), decay=True),
     r"ExponentialMovingAverage: decay must be a real number .* got True \(bool\)"),
    (lambda p: optim.ExponentialMovingAverage(TinyModel(), warmup="no"),
     "ExponentialMovingAverage: warmup must be True or False"),
])
def test_wrong_hyper_parameter_types_raise_a_clear_type_error(build, message):
    with pytest.raises(TypeError, match=message):
        build(make_param(P0))


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS)
def test_numpy_scalar_hyper_parameters_are_accepted_as_python_floats(cls):
    p = make_param(P0, np.float32)
    opt = cls([p], lr=np.float64(0.01), weight_decay=np.float32(0.0))
    assert type(opt.param_groups[0]["lr"]) is float
    p.grad += np.float32(0.5)
    opt.step()
    assert p.data.dtype == np.float32
    lookahead = optim.Lookahead(cls([make_param(P0)], lr=0.1), k=np.int64(3), alpha=np.float32(0.5))
    assert (lookahead.k, lookahead.alpha) == (3, 0.5) and type(lookahead.k) is int
    assert optim.ExponentialMovingAverage(TinyModel(), decay=np.float64(0.9)).decay == 0.9


@pytest.mark.parametrize("params", [
    lambda p: [p.data],
    lambda p: Module(),
])
def test_wrong_param_types_raise_type_error(params):
    with pytest.raises(TypeError, match="SGD: "):
        optim.SGD(params(make_param(P0)), lr=0.1)


# ---------------------------------------------------------------- Lookahead
def test_lookahead_closed_form():
    """SGD lr 0.1, k=2, alpha=0.5: after two fast steps, p = slow + 0.5 * (fast - slow)."""
    p = make_param(P0)
    opt = optim.Lookahead(optim.SGD([p], lr=0.1), k=2, alpha=0.5)
    first, second, third = run_steps(opt, p, [G1, G2, G1])
    np.testing.assert_allclose(first, np.array(P0) - 0.1 * G1, rtol=1e-15)
    fast = np.array(P0) - 0.1 * G1 - 0.1 * G2
    slow = np.array(P0) + 0.5 * (fast - np.array(P0))
    np.testing.assert_allclose(second, slow, rtol=1e-15)
    np.testing.assert_allclose(third, slow - 0.1 * G1, rtol=1e-15)
    assert opt.param_groups is opt.optimizer.param_groups


# ---------------------------------------------------------------- EMA
class TinyModel(Module):
    def __init__(self):
        super().__init__()
        self.weight = Param(np.array([1.0, 2.0]))
        self.register_buffer("running_mean", np.array([0.0, 4.0]))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))


def test_ema_update_closed_form_and_buffers():
    model = TinyModel()
    ema = optim.ExponentialMovingAverage(model, decay=0.9)
    model.weight.data[...] = [3.0, 0.0]
    model.running_mean[...] = [1.0, 1.0]
    model.num_batches_tracked[...] = 5
    ema.update()
    np.testing.assert_allclose(ema.averages["weight"], [0.9 * 1.0 + 0.1 * 3.0, 0.9 * 2.0])
    np.testing.assert_allclose(ema.averages["running_mean"], [0.1, 3.7])
    assert ema.averages["num_batches_tracked"] == 5  # integer buffers are copied
    copied = optim.ExponentialMovingAverage(TinyModel(), decay=0.9, average_buffers=False)
    copied.model.running_mean[...] = [1.0, 1.0]
    copied.update()
    np.testing.assert_array_equal(copied.averages["running_mean"], [1.0, 1.0])


def test_ema_warmup_uses_the_tensorflow_decay():
    ema = optim.ExponentialMovingAverage(TinyModel(), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(1 / 10)
    ema.update()
    assert ema.current_decay() == pytest.approx(2 / 11)


def test_ema_applied_swaps_and_restores_and_copy_to():
    model = TinyModel()
    ema = optim.ExponentialMovingAverage(model, decay=0.5)
    model.weight.data[...] = [3.0, 4.0]
    ema.update()  # average (2, 3)
    with ema.applied():
        np.testing.assert_array_equal(model.weight.data, [2.0, 3.0])
    np.testing.assert_array_equal(model.weight.data, [3.0, 4.0])
    np.testing.assert_array_equal(ema.averages["weight"], [2.0, 3.0])
    other = TinyModel()
    ema.copy_to(other)
    np.testing.assert_array_equal(other.weight.data, [2.0, 3.0])


def test_ema_state_dict_round_trip():
    model = TinyModel()
    ema = optim.ExponentialMovingAverage(model, decay=0.8)
    model.weight.data += 1.0
    ema.update()
    restored = optim.ExponentialMovingAverage(TinyModel(), decay=0.1)
    restored.load_state_dict(to_checkpoint_form(ema.state_dict()))
    assert restored.decay == 0.8 and restored.num_updates == 1
    np.testing.assert_array_equal(restored.averages["weight"], ema.averages["weight"])


def test_ema_matches_torch_averaged_model():
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    rng = np.random.default_rng(0)
    model = TinyModel()
    ema = optim.ExponentialMovingAverage(model, decay=0.9)
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    net = net.double()
    averaged = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    averaged.update_parameters(net)  # the first update copies, like the EMA's init
    for _ in range(5):
        step = rng.standard_normal(2)
        model.weight.data += step
        with torch.no_grad():
            net.weight += torch.from_numpy(step)[None]
        ema.update()
        averaged.update_parameters(net)
    np.testing.assert_allclose(ema.averages["weight"], averaged.module.weight.detach().numpy()[0],
                               rtol=1e-12)


# ---------------------------------------------------------------- equality with torch.optim
TORCH_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("Adamax", dict(lr=0.01)),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=1e-2)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=1e-2, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=1e-2)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=1e-2)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=1e-2)),
]


@pytest.mark.parametrize("name, options", TORCH_CASES,
                         ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in TORCH_CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch_optim_over_20_steps(name, options, dtype):
    """Same parameters, gradient g = A p - b + noise_t of a quadratic, two param groups."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(42)
    shapes = [(3, 4), (4,)]
    initial = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    scales = [rng.uniform(0.5, 2.0, shape) for shape in shapes]
    noise = [[rng.standard_normal(shape) * 0.1 for shape in shapes] for _ in range(20)]
    ours = [Param(x.copy()) for x in initial]
    theirs = [torch.tensor(x.copy(), requires_grad=True) for x in initial]
    second_lr = options.get("lr", 1.0) * 0.5
    opt = getattr(optim, name)([{"params": ours[:1]}, {"params": ours[1:], "lr": second_lr}],
                               **options)
    ref = getattr(torch.optim, name)([{"params": theirs[:1]}, {"params": theirs[1:],
                                                               "lr": second_lr}], **options)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for step in range(20):
        opt.zero_grad()
        ref.zero_grad()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            grad = (scales[i] * (p.data - 1.0) + noise[step][i]).astype(dtype)
            p.grad += grad
            t.grad = torch.from_numpy(grad.copy())
        opt.step()
        ref.step()
        for p, t in zip(ours, theirs):
            assert p.data.dtype == dtype
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=rtol * 1e-2,
                                       err_msg=f"step {step}")

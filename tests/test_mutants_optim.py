"""Contracts of minidl.optim that mutation testing found unpinned (issue 12, deliverable 7).

Each test states a contract a user relies on, checked against an independent reference
(a float64 formula written here, a second object built another way) or an invariant
(a state_dict round trip, an error that names the class, the method and the argument):

* EMA: ``num_updates`` counts, averages follow a model cast with ``model.to(dtype)``,
  ``copy_to()`` defaults to the tracked model, loads copy (never alias) the given arrays;
* Lookahead: default ``k``, the closure reaches the inner optimizer, state of an
  optimizer without per-parameter state, parameter indices in range;
* clipping: p-norms other than 2, empty gradients, NaN/inf handling, negative bounds;
* optimizer state: a 0-d integer ``step`` (as NumPy returns it), no aliasing;
* schedulers: every class survives state_dict -> JSON -> load_state_dict into a
  differently configured twin, and then schedules exactly as the original.

Error messages are checked for whole words (the class, the method, the argument, what
was given), never for full sentences.
"""
import copy
import json
import math
import re
import warnings

import numpy as np
import pytest

import minidl
from minidl import Param, layers as L, optim
from minidl.optim import lr_scheduler as S


def assert_error(error_type, call, *words):
    """``call()`` raises ``error_type`` whose message holds each of ``words`` as a whole
    word (case-sensitive: "XXdecayXX" or "DECAY" do not count)."""
    with pytest.raises(error_type) as info:
        call()
    message = str(info.value)
    for word in words:
        pattern = rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])"
        assert re.search(pattern, message), f"{word!r} not in: {message}"
    return message


def model_with_buffers(seed=0):
    minidl.seed(seed)
    return L.Sequential(L.Linear(3, 4), L.BatchNorm1d(4), L.Linear(4, 2))


def perturb(model, generator):
    """Change every float parameter and buffer, as a training step would."""
    for param in model.parameters():
        param.data += generator.standard_normal(param.data.shape).astype(param.data.dtype)
    for _, buffer in model.named_buffers():
        if buffer.dtype.kind == "f":
            buffer += generator.standard_normal(buffer.shape).astype(buffer.dtype)
        else:
            buffer += 1


def live_arrays(model):
    arrays = {name: param.data for name, param in model.named_parameters()}
    arrays.update(dict(model.named_buffers()))
    return arrays


# ====================================================================== EMA
EMA = optim.ExponentialMovingAverage


@pytest.mark.parametrize("warmup", [False, True])
@pytest.mark.parametrize("average_buffers", [False, True])
def test_ema_matches_a_float64_reference_over_updates(warmup, average_buffers):
    """average -= (1 - d_n) * (average - current), d_n = min(decay, (1+n)/(10+n)) with
    warmup; buffers averaged or copied; integer buffers copied; n counts the updates."""
    model = model_with_buffers()
    ema = EMA(model, decay=0.8, average_buffers=average_buffers, warmup=warmup)
    buffers = {name for name, _ in model.named_buffers()}
    reference = {name: array.astype(np.float64) for name, array in live_arrays(model).items()}
    generator = np.random.default_rng(1)
    for n in range(4):
        decay = min(0.8, (1 + n) / (10 + n)) if warmup else 0.8
        assert ema.current_decay() == pytest.approx(decay, rel=1e-15)
        perturb(model, generator)
        ema.update()
        assert ema.num_updates == n + 1
        for name, current in live_arrays(model).items():
            if current.dtype.kind != "f" or (name in buffers and not average_buffers):
                reference[name] = current.astype(np.float64)
            else:
                reference[name] = decay * reference[name] + (1 - decay) * current
    averages = ema.state_dict()["averages"]
    assert ema.state_dict()["num_updates"] == 4
    for name, expected in reference.items():
        np.testing.assert_allclose(averages[name], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("created, cast_to", [(np.float32, np.float64),
                                              (np.float64, np.float32)])
def test_ema_follows_a_model_cast_after_creation(created, cast_to):
    model = model_with_buffers().to(created)
    ema = EMA(model, decay=0.5)
    model.to(cast_to)
    start = {name: array.astype(np.float64) for name, array in ema.averages.items()}
    generator = np.random.default_rng(2)
    for _ in range(2):  # the second update uses the cast averages kept by the first
        perturb(model, generator)
        for name, current in live_arrays(model).items():
            if current.dtype.kind == "f":
                start[name] = 0.5 * start[name] + 0.5 * current
            else:
                start[name] = current.astype(np.float64)
        ema.update()
    for name, average in ema.state_dict()["averages"].items():
        assert average.dtype == live_arrays(model)[name].dtype, name
        np.testing.assert_allclose(average, start[name], rtol=1e-5, atol=1e-6)


def test_ema_copy_to_defaults_to_the_tracked_model_and_swap_round_trips():
    model = model_with_buffers()
    ema = EMA(model, decay=0.5)
    perturb(model, np.random.default_rng(3))
    ema.update()
    averaged = {name: array.copy() for name, array in ema.averages.items()}
    trained = {name: array.copy() for name, array in live_arrays(model).items()}
    with ema.applied():
        for name, array in live_arrays(model).items():
            np.testing.assert_array_equal(array, averaged[name])
    for name, array in live_arrays(model).items():
        np.testing.assert_array_equal(array, trained[name])
    ema.copy_to()
    for name, array in live_arrays(model).items():
        np.testing.assert_array_equal(array, averaged[name])


def test_ema_name_mismatch_errors_list_exactly_the_differing_names():
    model = model_with_buffers()
    ema = EMA(model)
    other = L.Sequential(L.Linear(3, 4), L.BatchNorm1d(4), L.Linear(4, 2), L.Linear(2, 2))
    message = assert_error(ValueError, lambda: ema.copy_to(other),
                           "ExponentialMovingAverage.copy_to", "3.weight", "3.bias")
    assert "0.weight" not in message  # names both sides share are not "differences"
    model.extra = Param(np.zeros(2, np.float32))
    assert_error(ValueError, ema.swap, "ExponentialMovingAverage.swap", "extra")
    state = ema.state_dict()
    state["averages"]["bogus"] = state["averages"].pop("0.bias")
    message = assert_error(ValueError, lambda: ema.load_state_dict(state),
                           "ExponentialMovingAverage.load_state_dict", "bogus", "0.bias")
    assert "0.weight" not in message


@pytest.mark.parametrize("kwargs, error, words", [
    ({"model": "net"}, TypeError, ["ExponentialMovingAverage", "Module", "str"]),
    ({"decay": 1.5}, ValueError, ["ExponentialMovingAverage", "decay"]),
    ({"decay": -0.1}, ValueError, ["ExponentialMovingAverage", "decay"]),
    ({"average_buffers": "yes"}, TypeError, ["ExponentialMovingAverage", "average_buffers"]),
    ({"warmup": 1}, TypeError, ["ExponentialMovingAverage", "warmup"]),
])
def test_ema_constructor_errors_name_class_and_argument(kwargs, error, words):
    kwargs = {"model": model_with_buffers(), **kwargs}
    assert_error(error, lambda: EMA(**kwargs), *words)


def trained_ema(**settings):
    model = model_with_buffers()
    ema = EMA(model, **settings)
    generator = np.random.default_rng(4)
    for _ in range(3):
        perturb(model, generator)
        ema.update()
    return model, ema


def test_ema_state_round_trip_restores_settings_and_copies_arrays():
    _, source = trained_ema(decay=0.9, average_buffers=False, warmup=True)
    state = source.state_dict()
    model = model_with_buffers()
    target = EMA(model)  # other settings, num_updates 0
    target.load_state_dict(state)
    loaded = target.state_dict()
    for key in ("decay", "num_updates", "average_buffers", "warmup"):
        assert loaded[key] == state[key] and type(loaded[key]) is type(state[key]), key
    for name, array in state["averages"].items():
        assert loaded["averages"][name].dtype == array.dtype
        np.testing.assert_array_equal(loaded["averages"][name], array)
        array += 100  # the caller's arrays stay theirs: no aliasing
    for name, array in target.state_dict()["averages"].items():
        np.testing.assert_array_equal(array + 100, state["averages"][name])
    # a fresh EMA (num_updates 0) round-trips too
    fresh = EMA(model_with_buffers()).state_dict()
    target.load_state_dict(fresh)
    assert target.num_updates == 0 and target.current_decay() == 0.999


def test_ema_load_casts_averages_to_the_models_dtype():
    model, ema = trained_ema()
    state = ema.state_dict()
    state["averages"] = {name: array.astype(np.float64) for name, array in
                         state["averages"].items()}
    ema.load_state_dict(state)
    for name, array in ema.state_dict()["averages"].items():
        assert array.dtype == live_arrays(model)[name].dtype, name


@pytest.mark.parametrize("change, error, words", [
    (lambda s: s.update(decay=-0.5), ValueError, ["ExponentialMovingAverage", "decay"]),
    (lambda s: s.update(decay="0.5"), TypeError, ["ExponentialMovingAverage", "decay"]),
    (lambda s: s.update(num_updates=-1), ValueError, ["ExponentialMovingAverage",
                                                       "num_updates"]),
    (lambda s: s.update(average_buffers=None), TypeError, ["ExponentialMovingAverage",
                                                           "average_buffers"]),
    (lambda s: s.update(warmup="no"), TypeError, ["ExponentialMovingAverage", "warmup"]),
    (lambda s: s.update(averages=5), TypeError, ["ExponentialMovingAverage.load_state_dict",
                                                 "averages", "5", "int"]),
    (lambda s: s["averages"].update({"0.bias": [0.0] * 4}), TypeError,
     ["ExponentialMovingAverage.load_state_dict", "0.bias", "list"]),
    (lambda s: s["averages"].update({"0.bias": np.zeros(4, np.complex64)}), TypeError,
     ["ExponentialMovingAverage.load_state_dict", "0.bias", "complex64"]),
    (lambda s: s.pop("warmup"), ValueError, ["ExponentialMovingAverage.load_state_dict",
                                             "got " + str(sorted(["averages", "decay",
                                             "average_buffers", "num_updates"]))]),
])
def test_ema_load_errors_name_class_and_entry(change, error, words):
    _, ema = trained_ema()
    state = ema.state_dict()
    change(state)
    assert_error(error, lambda: ema.load_state_dict(state), *words)


def test_ema_load_of_a_non_dict_describes_it():
    _, ema = trained_ema()
    assert_error(ValueError, lambda: ema.load_state_dict("weights.npz"),
                 "ExponentialMovingAverage.load_state_dict", "'weights.npz' (str)")


# ====================================================================== Lookahead
def lookahead_reference(theta0, grads, lr, k, alpha):
    """Lookahead around plain SGD, in float64: k fast steps, then slow += alpha*(fast-slow)."""
    theta, slow = theta0.astype(np.float64), theta0.astype(np.float64)
    for step, grad in enumerate(grads, start=1):
        theta = theta - lr * grad
        if step % k == 0:
            slow = slow + alpha * (theta - slow)
            theta = slow.copy()
    return theta


@pytest.mark.parametrize("kwargs, k, alpha", [({}, 5, 0.5), ({"k": 2, "alpha": 0.25}, 2, 0.25)])
def test_lookahead_matches_reference_with_default_k(kwargs, k, alpha):
    generator = np.random.default_rng(5)
    theta0 = generator.standard_normal(3)
    grads = generator.standard_normal((11, 3))
    param = Param(theta0.copy())
    opt = optim.Lookahead(optim.SGD([param], lr=0.1), **kwargs)
    assert (opt.k, opt.alpha) == (k, alpha)
    for count, grad in enumerate(grads, start=1):
        opt.zero_grad()
        param.grad += grad
        opt.step()
        np.testing.assert_allclose(param.data,
                                   lookahead_reference(theta0, grads[:count], 0.1, k, alpha),
                                   rtol=1e-12, atol=1e-12)


def test_lookahead_passes_the_closure_to_the_inner_optimizer():
    param = Param(np.ones(2))
    opt = optim.Lookahead(optim.SGD([param], lr=0.1))
    calls = []

    def closure():
        calls.append(1)
        param.grad[...] = 1.0
        return 3.5

    assert opt.step(closure) == 3.5
    assert calls == [1]
    np.testing.assert_allclose(param.data, [0.9, 0.9])


class _OnlyGroups:
    param_groups = []


class _OnlyStep:
    def step(self):
        pass


@pytest.mark.parametrize("inner, got", [(_OnlyGroups(), "_OnlyGroups"),
                                        (_OnlyStep(), "_OnlyStep"), (None, "NoneType")])
def test_lookahead_refuses_what_is_not_an_optimizer(inner, got):
    assert_error(TypeError, lambda: optim.Lookahead(inner), "Lookahead", got)


def stepped_lookahead(make_inner, steps=3, k=2):
    generator = np.random.default_rng(6)
    params = [Param(generator.standard_normal((2, 3))), Param(generator.standard_normal(3))]
    opt = optim.Lookahead(make_inner(params), k=k, alpha=0.3)
    for _ in range(steps):
        opt.zero_grad()
        for param in params:
            param.grad += generator.standard_normal(param.data.shape)
        opt.step()
    return params, opt


def test_lookahead_state_of_a_stateless_inner_optimizer_round_trips():
    """Plain SGD keeps no per-parameter state; the slow weights must still be saved."""
    for steps in (0, 3):
        params, opt = stepped_lookahead(lambda p: optim.SGD(p, lr=0.1), steps=steps)
        state = json.loads(json.dumps(opt.state_dict(), default=lambda a: a.tolist()))
        for entry in state["state"].values():
            entry["lookahead_slow"] = np.array(entry["lookahead_slow"])
        assert sorted(state["state"]) == ["0", "1"]
        twin = optim.Lookahead(optim.SGD(params, lr=0.5), k=7, alpha=0.9)
        twin.load_state_dict(state)
        assert (twin.k, twin.alpha, twin.step_count) == (2, 0.3, steps)
        for param in params:
            np.testing.assert_array_equal(twin.slow[param], opt.slow[param])


def test_lookahead_state_without_slow_weights_keeps_the_current_ones():
    params, opt = stepped_lookahead(lambda p: optim.SGD(p, lr=0.1, momentum=0.9))
    state = opt.state_dict()
    del state["state"][1]["lookahead_slow"]
    before = opt.slow[params[1]].copy()
    opt.load_state_dict(state)
    np.testing.assert_array_equal(opt.slow[params[1]], before)


def _slow_at(key):
    return lambda s: s["state"].update({key: {"lookahead_slow": np.zeros(3)}})


@pytest.mark.parametrize("change, error, words", [
    (_slow_at(2), ValueError, ["Lookahead.load_state_dict", "parameter index"]),
    (_slow_at(-1), ValueError, ["Lookahead.load_state_dict", "parameter index"]),
    (lambda s: s["state"][0].update(lookahead_slow=np.zeros(5)), ValueError,
     ["Lookahead.load_state_dict", "slow weights"]),
    (lambda s: s["state"].update({0: [1.0]}), TypeError,
     ["Lookahead.load_state_dict", "[1.0] (list)"]),
    (lambda s: s["lookahead"].update(k=0), ValueError, ["Lookahead", "k"]),
    (lambda s: s["lookahead"].update(alpha=1.5), ValueError, ["Lookahead", "alpha"]),
    (lambda s: s["lookahead"].update(alpha=-0.5), ValueError, ["Lookahead", "alpha"]),
    (lambda s: s["lookahead"].update(alpha="0.5"), TypeError, ["Lookahead", "alpha"]),
    (lambda s: s["lookahead"].update(step_count=-1), ValueError, ["Lookahead", "step_count"]),
    (lambda s: s.pop("lookahead"), ValueError, ["Lookahead.load_state_dict",
                                                 "(from Lookahead.state_dict())"]),
])
def test_lookahead_load_errors_name_class_and_entry(change, error, words):
    _, opt = stepped_lookahead(lambda p: optim.SGD(p, lr=0.1))
    state = opt.state_dict()
    change(state)
    assert_error(error, lambda: opt.load_state_dict(state), *words)


def test_lookahead_loads_a_fresh_state():
    params, opt = stepped_lookahead(lambda p: optim.Adam(p), steps=3)
    fresh = optim.Lookahead(optim.Adam(params), k=2, alpha=0.3).state_dict()
    opt.load_state_dict(fresh)
    assert opt.step_count == 0


# ====================================================================== clipping
def grads_params(*grads):
    params = []
    for grad in grads:
        param = Param(np.zeros_like(np.asarray(grad, dtype=np.float64)))
        param.grad[...] = grad
        params.append(param)
    return params


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, 0.5, math.inf])
def test_clip_grad_norm_matches_the_float64_p_norm(norm_type):
    generator = np.random.default_rng(7)
    grads = [generator.standard_normal((2, 3)), generator.standard_normal(4),
             np.zeros((0, 3))]  # an empty gradient adds nothing to the norm
    flat = np.concatenate([g.reshape(-1) for g in grads])
    expected = (np.abs(flat).max() if norm_type == math.inf
                else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type))
    params = grads_params(*grads)
    total = optim.clip_grad_norm_(params, max_norm=0.5 * expected, norm_type=norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(expected, rel=1e-12)
    scale = 0.5 * expected / (expected + 1e-6)
    for param, grad in zip(params, grads):
        np.testing.assert_allclose(param.grad, grad * scale, rtol=1e-12)


def test_clip_grad_norm_of_only_empty_gradients_is_zero():
    params = grads_params(np.zeros((0, 2)), np.zeros(0))
    assert optim.clip_grad_norm_(params, 1.0) == 0.0
    assert optim.clip_grad_norm_(params, 1.0, norm_type=math.inf) == 0.0


def test_clip_grad_norm_non_finite_totals():
    """NaN total: grads left as they are; error_if_nonfinite (off by default) raises."""
    for bad in (np.nan, np.inf):
        params = grads_params(np.array([bad, 1.0]))
        assert_error(RuntimeError, lambda: optim.clip_grad_norm_(
            params, 1.0, error_if_nonfinite=True), "clip_grad_norm_",
            "error_if_nonfinite=False to clip anyway")
    params = grads_params(np.array([np.nan, 1.0]))
    assert math.isnan(optim.clip_grad_norm_(params, 1.0))  # no error by default
    np.testing.assert_array_equal(params[0].grad, [np.nan, 1.0])


def test_clip_grad_norm_infinite_total_zeroes_like_torch_without_a_warning():
    torch = pytest.importorskip("torch")
    grads = [np.array([np.inf, 1.0]), np.array([-2.0, 0.5])]
    params = grads_params(*grads)
    reference = [torch.tensor(g, requires_grad=True) for g in grads]
    for tensor, grad in zip(reference, grads):
        tensor.grad = torch.tensor(grad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total = optim.clip_grad_norm_(params, 1.0)
    assert total == float(torch.nn.utils.clip_grad_norm_(reference, 1.0)) == math.inf
    for param, tensor in zip(params, reference):
        np.testing.assert_array_equal(param.grad, tensor.grad.numpy())


def test_clip_grad_norm_leaves_small_gradients_untouched():
    params = grads_params(np.array([0.3, -0.4]))
    assert optim.clip_grad_norm_(params, 1.0) == pytest.approx(0.5, rel=1e-15)
    np.testing.assert_array_equal(params[0].grad, [0.3, -0.4])


@pytest.mark.parametrize("call, error, words", [
    (lambda p: optim.clip_grad_value_(p, -1.0), ValueError, ["clip_grad_value_", "clip_value"]),
    (lambda p: optim.clip_grad_value_(p, "1"), TypeError, ["clip_grad_value_", "clip_value"]),
    (lambda p: optim.clip_grad_value_(5, 1.0), TypeError, ["clip_grad_value_", "int"]),
    (lambda p: optim.clip_grad_norm_(3.0, 1.0), TypeError, ["clip_grad_norm_", "float"]),
    (lambda p: optim.clip_grad_norm_(p, -1.0), ValueError, ["clip_grad_norm_", "max_norm"]),
    (lambda p: optim.clip_grad_norm_(p, 1.0, norm_type=0.0), ValueError,
     ["clip_grad_norm_", "norm_type"]),
])
def test_clip_errors_name_function_and_argument(call, error, words):
    params = grads_params(np.array([1.0, -2.0]))
    assert_error(error, lambda: call(params), *words)


def test_clip_grad_value_clamps_and_zero_clamps_to_zero():
    params = grads_params(np.array([-3.0, 0.5, 2.0]))
    optim.clip_grad_value_(params, 1.0)
    np.testing.assert_array_equal(params[0].grad, [-1.0, 0.5, 1.0])
    optim.clip_grad_value_(params, 0.0)
    np.testing.assert_array_equal(params[0].grad, [0.0, 0.0, 0.0])


# ====================================================================== optimizer state
def stepped_adam(steps=2):
    generator = np.random.default_rng(8)
    param = Param(generator.standard_normal(3).astype(np.float32))
    opt = optim.Adam([param], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        param.grad += generator.standard_normal(3).astype(np.float32)
        opt.step()
    return param, opt


@pytest.mark.parametrize("step", [np.array(2), np.int64(2), np.array(2, np.uint8), 2])
def test_optimizer_step_may_come_back_as_a_numpy_integer(step):
    """np.load / np.savez give the step as a 0-d integer array: it loads as an int."""
    param, opt = stepped_adam()
    state = opt.state_dict()
    state["state"][0]["step"] = step
    opt.load_state_dict(state)
    loaded = opt.state_dict()["state"][0]["step"]
    assert loaded == 2 and type(loaded) is int


def test_optimizer_load_copies_arrays_and_casts_to_the_params_dtype():
    param, opt = stepped_adam()
    state = opt.state_dict()
    given = state["state"][0]["exp_avg"]
    opt.load_state_dict(state)
    given += 1.0  # the caller's array stays theirs
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"] + 1.0, given)
    state["state"][0]["exp_avg_sq"] = state["state"][0]["exp_avg_sq"].astype(np.float64)
    opt.load_state_dict(state)
    assert opt.state[param]["exp_avg_sq"].dtype == np.float32


@pytest.mark.parametrize("entry, value, error, words", [
    ("exp_avg", [0.0, 0.0, 0.0], TypeError, ["Adam.load_state_dict", "exp_avg", "list"]),
    ("exp_avg", np.zeros(3, np.int32), TypeError, ["Adam.load_state_dict", "exp_avg", "int32"]),
    ("exp_avg", np.zeros(2, np.float32), ValueError, ["Adam.load_state_dict", "exp_avg"]),
    ("step", 1.5, TypeError, ["Adam.load_state_dict", "step"]),
    ("step", np.array(1.0), TypeError, ["Adam.load_state_dict", "step"]),
    ("step", -1, ValueError, ["Adam.load_state_dict", "step"]),
])
def test_optimizer_state_entry_errors_name_the_entry(entry, value, error, words):
    _, opt = stepped_adam()
    state = opt.state_dict()
    state["state"][0][entry] = value
    assert_error(error, lambda: opt.load_state_dict(state), *words)


def test_optimizer_foreign_state_error_suggests_another_class():
    _, opt = stepped_adam()
    state = opt.state_dict()
    state["state"][0]["momentum_buffer"] = state["state"][0].pop("exp_avg")
    assert_error(ValueError, lambda: opt.load_state_dict(state), "Adam.load_state_dict",
                 "momentum_buffer", "was it saved by another optimizer class?")


# ====================================================================== schedulers
def two_group_optimizer(kind="sgd"):
    generator = np.random.default_rng(9)
    first, second = (Param(generator.standard_normal(3)), Param(generator.standard_normal(2)))
    groups = [{"params": [first], "lr": 0.1}, {"params": [second], "lr": 0.05}]
    if kind == "adam":
        return optim.Adam(groups)
    return optim.SGD(groups, momentum=0.9) if kind == "sgd" else optim.SGD(groups)


def group_settings(optimizer):
    return [{key: value for key, value in group.items() if key != "params"}
            for group in optimizer.param_groups]


# name -> (optimizer kind, the scheduler to save, a differently configured twin to load into)
SCHEDULERS = {
    "StepLR": ("sgd", lambda o: S.StepLR(o, step_size=2, gamma=0.5),
               lambda o: S.StepLR(o, step_size=7, gamma=0.9)),
    "MultiStepLR": ("sgd", lambda o: S.MultiStepLR(o, [2, 5], gamma=0.5),
                    lambda o: S.MultiStepLR(o, [1], gamma=0.9)),
    "ExponentialLR": ("sgd", lambda o: S.ExponentialLR(o, gamma=0.8),
                      lambda o: S.ExponentialLR(o, gamma=0.5)),
    "CosineAnnealingLR": ("sgd", lambda o: S.CosineAnnealingLR(o, T_max=6, eta_min=0.01),
                          lambda o: S.CosineAnnealingLR(o, T_max=3)),
    "LinearLR-end0": ("sgd", lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.0,
                                                   total_iters=4),
                      lambda o: S.LinearLR(o)),
    "LinearLR-end1": ("sgd", lambda o: S.LinearLR(o, start_factor=0.5, total_iters=4),
                      lambda o: S.LinearLR(o, start_factor=0.9, end_factor=0.1)),
    "PiecewiseLinearLR": ("sgd", lambda o: S.PiecewiseLinearLR(o, [1, 4, 8], [0.0, 1.0, 0.2]),
                          lambda o: S.PiecewiseLinearLR(o, [0], [1.0])),
    "LinearWarmupDecayLR": ("sgd", lambda o: S.LinearWarmupDecayLR(o, 3, 9),
                            lambda o: S.LinearWarmupDecayLR(o, 1, 20)),
    "OneCycleLR": ("sgd", lambda o: S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=12),
                   lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=20, anneal_strategy="linear")),
    "OneCycleLR-three-phase": ("adam", lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=12,
                                                              three_phase=True),
                               lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=20)),
    "OneCycleLR-no-momentum": ("plain", lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=12,
                                                               cycle_momentum=False),
                               lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=20,
                                                      cycle_momentum=False)),
}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_resumes_from_json_state_into_a_differently_built_twin(name):
    """Checkpoint resume: build, load the optimizer state, then the scheduler state; the
    twin then reports the same state and schedules the same lrs (and momenta)."""
    kind, build, build_twin = SCHEDULERS[name]
    optimizer = two_group_optimizer(kind)
    scheduler = build(optimizer)
    for _ in range(3):
        scheduler.step()
    twin_optimizer = two_group_optimizer(kind)
    twin = build_twin(twin_optimizer)
    twin_optimizer.load_state_dict(optimizer.state_dict())
    state = json.loads(json.dumps(scheduler.state_dict()))
    twin.load_state_dict(state)
    assert twin.state_dict() == scheduler.state_dict()
    assert twin.get_last_lr() == scheduler.get_last_lr()
    assert group_settings(twin_optimizer) == group_settings(optimizer)
    for _ in range(6):
        scheduler.step()
        twin.step()
        assert twin.get_last_lr() == scheduler.get_last_lr()
        assert group_settings(twin_optimizer) == group_settings(optimizer)


def test_multistep_load_sorts_the_milestones():
    optimizer = two_group_optimizer()
    reference = S.MultiStepLR(two_group_optimizer(), [2, 6], gamma=0.5)
    scheduler = S.MultiStepLR(optimizer, [1], gamma=0.5)
    state = reference.state_dict()
    state["milestones"] = [6, 2]
    scheduler.load_state_dict(state)
    assert scheduler.milestones == [2, 6]
    for _ in range(8):
        reference.step()
        scheduler.step()
        assert scheduler.get_last_lr() == reference.get_last_lr()


def onecycle(kind="sgd", **options):
    optimizer = two_group_optimizer(kind)
    return optimizer, S.OneCycleLR(optimizer, max_lr=1.0, total_steps=10, **options)


def _set_phase(index, key, value):
    return lambda s: s["phases"][index].update({key: value})


@pytest.mark.parametrize("options, change, error, words", [
    ({}, lambda s: s.update(phases=s["phases"] * 2), ValueError,
     ["OneCycleLR.load_state_dict", "start_lr", "end_lr", "start_momentum", "end_momentum",
      "(list)"]),
    ({}, _set_phase(0, "end_step", "3"), TypeError,
     ["OneCycleLR.load_state_dict", "phases[0].end_step"]),
    ({}, _set_phase(1, "start_momentum", "bogus"), ValueError,
     ["OneCycleLR.load_state_dict", "phases[1].start_momentum", "'bogus' (str)",
      "['base_momentum', 'max_momentum']"]),
    ({}, _set_phase(0, "end_momentum", "max_lr"), ValueError,  # an lr is no momentum
     ["OneCycleLR.load_state_dict", "phases[0].end_momentum", "'max_lr' (str)"]),
    ({}, _set_phase(1, "end_lr", "max_momentum"), ValueError,
     ["OneCycleLR.load_state_dict", "phases[1].end_lr", "'max_momentum' (str)",
      "['initial_lr', 'max_lr', 'min_lr']"]),
    ({"cycle_momentum": False}, _set_phase(0, "start_lr", "bogus"), ValueError,
     ["OneCycleLR.load_state_dict", "phases[0].start_lr", "'bogus' (str)",
      "initial_lr", "max_lr", "min_lr"]),
    ({"cycle_momentum": False}, _set_phase(1, "end_lr", "max_momentum"), ValueError,
     ["OneCycleLR.load_state_dict", "phases[1].end_lr"]),
    ({}, lambda s: s.update(cycle_momentum="yes"), TypeError,
     ["OneCycleLR.load_state_dict", "cycle_momentum"]),
    ({}, lambda s: s.update(anneal_strategy="exp"), ValueError,
     ["OneCycleLR.load_state_dict", "anneal_strategy", "'exp' (str)"]),
    ({}, lambda s: s.update(total_steps=0), ValueError,
     ["OneCycleLR.load_state_dict", "total_steps"]),
])
def test_onecycle_load_errors_name_the_entry(options, change, error, words):
    _, scheduler = onecycle("sgd" if options.get("cycle_momentum", True) else "plain",
                            **options)
    state = copy.deepcopy(scheduler.state_dict())
    change(state)
    assert_error(error, lambda: scheduler.load_state_dict(state), *words)


def test_onecycle_without_momentum_ignores_momentum_names_on_load():
    """With cycle_momentum=False the momentum entries of the phases are never used."""
    _, scheduler = onecycle("plain", cycle_momentum=False)
    state = scheduler.state_dict()
    state["phases"][0]["start_momentum"] = "unused"
    scheduler.load_state_dict(state)


@pytest.mark.parametrize("missing", ["max_lr", "initial_lr", "max_momentum"])
def test_onecycle_load_needs_the_groups_of_the_optimizer_state(missing):
    optimizer, scheduler = onecycle()
    state = scheduler.state_dict()
    del optimizer.param_groups[1][missing]
    assert_error(ValueError, lambda: scheduler.load_state_dict(state),
                 "OneCycleLR.load_state_dict", "param group 1", f"['{missing}']",
                 "load the optimizer's state_dict first")


def test_piecewise_load_error_shows_the_milestones():
    optimizer = two_group_optimizer()
    scheduler = S.PiecewiseLinearLR(optimizer, [1, 4], [0.5, 1.0])
    state = scheduler.state_dict()
    state["milestones"] = [5, 1]
    message = assert_error(ValueError, lambda: scheduler.load_state_dict(state),
                           "PiecewiseLinearLR.load_state_dict", "milestones", "factors")
    assert "got [5, 1] and [0.5, 1.0]" in message


@pytest.mark.parametrize("key, value, error", [
    ("start_factor", 0.0, ValueError), ("start_factor", 1.5, ValueError),
    ("end_factor", -0.1, ValueError), ("end_factor", 1.01, ValueError),
    ("end_factor", "1", TypeError), ("total_iters", 0, ValueError),
])
def test_linear_lr_load_errors_name_the_entry(key, value, error):
    scheduler = S.LinearLR(two_group_optimizer())
    state = scheduler.state_dict()
    state[key] = value
    assert_error(error, lambda: scheduler.load_state_dict(state),
                 "LinearLR.load_state_dict", key)


# ---------------------------------------------------------------- ReduceLROnPlateau
def plateau_run(scheduler, metrics):
    lrs = []
    for metric in metrics:
        scheduler.step(metric)
        lrs.append(scheduler.get_last_lr())
    return lrs


PLATEAU = dict(mode="max", factor=0.5, patience=1, threshold=0.1, threshold_mode="abs",
               cooldown=1, min_lr=[0.01, 0.02], eps=1e-9)
METRICS = [1.0, 1.05, 1.0, 2.0, 2.05, 1.9, 1.9, 1.8, 3.0, 2.9, 2.9, 2.9]


@pytest.mark.parametrize("seen", [0, 3])
@pytest.mark.parametrize("settings", [PLATEAU, {"mode": "min", "factor": 0.5, "patience": 1}],
                         ids=["max-abs", "min-rel"])
def test_plateau_resumes_from_json_state(settings, seen):
    """Also from a fresh state (best stored as None): the first metric then improves."""
    metrics = METRICS if settings["mode"] == "max" else [-m for m in METRICS]
    optimizer = two_group_optimizer()
    scheduler = S.ReduceLROnPlateau(optimizer, **settings)
    plateau_run(scheduler, metrics[:seen])
    twin_optimizer = two_group_optimizer()
    twin = S.ReduceLROnPlateau(twin_optimizer, mode="min" if settings["mode"] == "max"
                               else "max", factor=0.9, patience=5, threshold_mode="abs")
    twin_optimizer.load_state_dict(optimizer.state_dict())
    state = json.loads(json.dumps(scheduler.state_dict()))
    twin.load_state_dict(state)
    assert twin.state_dict() == scheduler.state_dict()
    assert twin.best == scheduler.best
    assert plateau_run(twin, metrics[seen:]) == plateau_run(scheduler, metrics[seen:])
    assert min(scheduler.get_last_lr()) < 0.05  # the run did reduce the lrs


@pytest.mark.parametrize("key, value, error", [
    ("mode", "maximum", ValueError), ("threshold_mode", "relative", ValueError),
    ("factor", 0.0, ValueError), ("factor", 1.0, ValueError), ("factor", -0.5, ValueError),
    ("threshold", -0.1, ValueError), ("eps", -1e-8, ValueError),
    ("last_lr", [0.1], ValueError), ("min_lrs", [0.1, 0.1, 0.1], ValueError),
    ("best", "1.0", TypeError), ("best", math.nan, ValueError),
    ("patience", -1, ValueError), ("num_bad_epochs", 1.0, TypeError),
])
def test_plateau_load_errors_name_the_entry(key, value, error):
    scheduler = S.ReduceLROnPlateau(two_group_optimizer(), **PLATEAU)
    plateau_run(scheduler, METRICS[:3])
    state = scheduler.state_dict()
    before = copy.deepcopy(state)
    state[key] = value
    assert_error(error, lambda: scheduler.load_state_dict(state),
                 "ReduceLROnPlateau.load_state_dict", key)
    assert scheduler.state_dict() == before


def is_better_reference(mode, threshold_mode, threshold, value, best):
    """torch.optim.lr_scheduler.ReduceLROnPlateau's rule, as its documentation states it."""
    if mode == "min":
        bound = best * (1 - threshold) if threshold_mode == "rel" else best - threshold
        return value < bound
    bound = best * (1 + threshold) if threshold_mode == "rel" else best + threshold
    return value > bound


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_plateau_is_better_matches_the_documented_rule(mode, threshold_mode):
    threshold, best = 0.5, 2.0  # bounds 1.0, 1.5, 2.5, 3.0 are exact in binary
    scheduler = S.ReduceLROnPlateau(two_group_optimizer(), mode=mode, threshold=threshold,
                                    threshold_mode=threshold_mode)
    for value in np.arange(0.0, 4.01, 0.25):  # hits every bound exactly
        expected = is_better_reference(mode, threshold_mode, threshold, value, best)
        assert scheduler.is_better(float(value), best) == expected, value


def test_plateau_skips_changes_not_larger_than_eps():
    """old_lr - new_lr == eps is not applied (torch: ``if old_lr - new_lr > eps``)."""
    optimizer = two_group_optimizer()
    for group in optimizer.param_groups:
        group["lr"] = 1.0
    scheduler = S.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, eps=0.5)
    plateau_run(scheduler, [1.0, 1.0, 1.0])
    assert scheduler.get_last_lr() == [1.0, 1.0]
    scheduler.eps = 0.25
    plateau_run(scheduler, [1.0])
    assert scheduler.get_last_lr() == [0.5, 0.5]


def test_plateau_counts_its_steps():
    scheduler = S.ReduceLROnPlateau(two_group_optimizer())
    assert scheduler.state_dict()["last_epoch"] == 0
    plateau_run(scheduler, [3.0, 2.0])
    assert scheduler.state_dict()["last_epoch"] == 2


# name -> a scheduler built with last_epoch (the same schedule each time)
RESUMABLE = {
    "StepLR": lambda o, e: S.StepLR(o, 2, gamma=0.5, last_epoch=e),
    "MultiStepLR": lambda o, e: S.MultiStepLR(o, [1, 3], gamma=0.5, last_epoch=e),
    "ExponentialLR": lambda o, e: S.ExponentialLR(o, 0.8, last_epoch=e),
    "CosineAnnealingLR": lambda o, e: S.CosineAnnealingLR(o, 6, eta_min=0.01, last_epoch=e),
    "LinearLR": lambda o, e: S.LinearLR(o, 0.25, 1.0, total_iters=6, last_epoch=e),
    "LambdaLR": lambda o, e: S.LambdaLR(o, lambda step: 1.0 / (1 + step), last_epoch=e),
    "PiecewiseLinearLR": lambda o, e: S.PiecewiseLinearLR(o, [0, 3, 8], [0.1, 1.0, 0.0],
                                                          last_epoch=e),
    "LinearWarmupDecayLR": lambda o, e: S.LinearWarmupDecayLR(o, 2, 9, last_epoch=e),
    "OneCycleLR": lambda o, e: S.OneCycleLR(o, [1.0, 0.5], total_steps=9, last_epoch=e),
}
GROUP_STATE = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


@pytest.mark.parametrize("name", RESUMABLE)
def test_scheduler_constructed_with_last_epoch_continues_the_schedule(name):
    """As torch: ``last_epoch=k`` (with the groups' initial_lr restored) then the first
    step gives the lr of step k + 1, the one a scheduler stepped k + 1 times has."""
    build = RESUMABLE[name]
    optimizer = two_group_optimizer()
    scheduler = build(optimizer, -1)
    for _ in range(4):
        scheduler.step()
    resumed_optimizer = two_group_optimizer()
    for group, saved in zip(resumed_optimizer.param_groups, optimizer.param_groups):
        group.update({key: saved[key] for key in GROUP_STATE if key in saved})
    resumed = build(resumed_optimizer, 3)
    assert resumed.last_epoch == scheduler.last_epoch == 4
    assert resumed.get_last_lr() == scheduler.get_last_lr()
    assert group_settings(resumed_optimizer) == group_settings(optimizer)


ZERO = 0.0


@pytest.mark.parametrize("build, error, words", [
    (lambda o: S.ExponentialLR(o, gamma=ZERO), ValueError, ["ExponentialLR", "gamma"]),
    (lambda o: S.ExponentialLR(o, gamma=-0.5), ValueError, ["ExponentialLR", "gamma"]),
    (lambda o: S.StepLR(o, 2, gamma=ZERO), ValueError, ["StepLR", "gamma"]),
    (lambda o: S.MultiStepLR(o, [2], gamma=ZERO), ValueError, ["MultiStepLR", "gamma"]),
    (lambda o: S.MultiStepLR(o, [2], gamma=-1.0), ValueError, ["MultiStepLR", "gamma"]),
    (lambda o: S.MultiStepLR(o, [2], gamma="0.1"), TypeError, ["MultiStepLR", "gamma"]),
    (lambda o: S.MultiStepLR(o, 5), TypeError, ["MultiStepLR", "milestones", "5 (int)"]),
    (lambda o: S.LinearLR(o, end_factor=-0.1), ValueError, ["LinearLR", "end_factor"]),
    (lambda o: S.LinearLR(o, end_factor=1.5), ValueError, ["LinearLR", "end_factor"]),
    (lambda o: S.LinearLR(o, end_factor="1"), TypeError, ["LinearLR", "end_factor"]),
    (lambda o: S.LinearLR(o, total_iters=0), ValueError, ["LinearLR", "total_iters"]),
    (lambda o: S.LinearWarmupDecayLR(o, -1, 5), ValueError,
     ["LinearWarmupDecayLR", "warmup_steps"]),
    (lambda o: S.LinearWarmupDecayLR(o, 1, 0), ValueError,
     ["LinearWarmupDecayLR", "total_steps"]),
    (lambda o: S.LambdaLR(o, 5), TypeError, ["LambdaLR", "lr_lambda", "5 (int)"]),
    (lambda o: S.PiecewiseLinearLR(o, 3, [1.0]), TypeError,
     ["PiecewiseLinearLR", "milestones", "3 (int)"]),
    (lambda o: S.PiecewiseLinearLR(o, [3], 1.0), TypeError,
     ["PiecewiseLinearLR", "factors", "1.0 (float)"]),
    (lambda o: S.PiecewiseLinearLR(o, [0, -3], [1.0, 0.5]), ValueError,
     ["PiecewiseLinearLR", "milestones[1]"]),
    (lambda o: S.PiecewiseLinearLR(o, [0, 3], [1.0, -0.5]), ValueError,
     ["PiecewiseLinearLR", "factors[1]"]),
    (lambda o: S.MultiStepLR(o, np.array([[2, 4]])), TypeError, ["MultiStepLR", "milestones"]),
    (lambda o: S.LambdaLR(o, lambda step: math.nan), ValueError, ["LambdaLR", "lr_lambda(0)"]),
    (lambda o: S.LambdaLR(o.param_groups, lambda step: 1.0), TypeError, ["LambdaLR", "list"]),
    (lambda o: S.ReduceLROnPlateau(o, eps=-1.0), ValueError, ["ReduceLROnPlateau", "eps"]),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="relative"), ValueError,
     ["ReduceLROnPlateau", "threshold_mode"]),
    (lambda o: S.ReduceLROnPlateau(o).step("1.0"), TypeError, ["ReduceLROnPlateau", "metric"]),
    (lambda o: S.ReduceLROnPlateau(o).step(math.nan), ValueError,
     ["ReduceLROnPlateau", "metric"]),
])
def test_scheduler_argument_errors_name_class_and_argument(build, error, words):
    assert_error(error, lambda: build(two_group_optimizer()), *words)


@pytest.mark.parametrize("torch_name, build, defaulted", [
    ("StepLR", lambda o: S.StepLR(o, 3), ["gamma"]),
    ("MultiStepLR", lambda o: S.MultiStepLR(o, [2]), ["gamma"]),
    ("CosineAnnealingLR", lambda o: S.CosineAnnealingLR(o, 4), ["eta_min"]),
    ("LinearLR", lambda o: S.LinearLR(o), ["start_factor", "end_factor", "total_iters"]),
    ("OneCycleLR", lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=10),
     ["anneal_strategy", "cycle_momentum"]),
    ("ReduceLROnPlateau", lambda o: S.ReduceLROnPlateau(o),
     ["mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps"]),
])
def test_scheduler_defaults_are_torchs(torch_name, build, defaulted):
    """Every keyword shared with torch has torch's default (read from its signature), and
    a scheduler built without them holds those values."""
    torch = pytest.importorskip("torch")
    import inspect
    theirs = inspect.signature(getattr(torch.optim.lr_scheduler, torch_name)).parameters
    scheduler = build(two_group_optimizer())
    ours = inspect.signature(type(scheduler)).parameters
    shared = [key for key in ours if key in theirs and ours[key].default is not inspect._empty]
    assert set(defaulted) <= set(shared)
    for key in shared:
        assert ours[key].default == theirs[key].default, key
    saved = scheduler.state_dict()
    for key in defaulted:
        assert saved[key] == theirs[key].default, key


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adamax", "Adagrad", "RMSprop",
                                  "Adadelta"])
def test_optimizer_defaults_are_torchs(name):
    """The hyper-parameters of a group built from defaults equal torch's (SGD's lr has no
    default in minidl: it must be given)."""
    torch = pytest.importorskip("torch")
    kwargs = {"lr": 0.1} if name == "SGD" else {}
    ours = getattr(optim, name)([Param(np.zeros(2))], **kwargs).param_groups[0]
    theirs = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)],
                                        **kwargs).param_groups[0]
    shared = [key for key in ours if key != "params" and key in theirs]
    assert len(shared) >= 3
    for key in shared:
        expected = tuple(theirs[key]) if isinstance(theirs[key], tuple) else theirs[key]
        assert ours[key] == expected, key


def test_repr_names_the_class_and_every_setting():
    optimizer = two_group_optimizer()
    lines = repr(optimizer).split("\n")  # torch's layout: one line per hyper-parameter
    assert lines[0] == "SGD (" and lines[-1] == ")"
    second = lines.index("Parameter Group 1")
    assert lines[1] == "Parameter Group 0"
    assert "    lr: 0.1" in lines[2:second] and "    lr: 0.05" in lines[second:]
    assert "    momentum: 0.9" in lines[2:second]
    assert not any("params" in line for line in lines)
    scheduler = S.StepLR(optimizer, step_size=3, gamma=0.5)
    scheduler.step()
    assert repr(scheduler) == "StepLR(step_size=3, gamma=0.5, last_epoch=1)"


def test_incomplete_subclasses_say_what_is_missing():
    class NoUpdate(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

    param = Param(np.zeros(2))
    assert_error(NotImplementedError, NoUpdate([param]).step, "NoUpdate", "_update")

    class NoSchedule(S.LRScheduler):
        pass

    assert_error(NotImplementedError, lambda: NoSchedule(two_group_optimizer()),
                 "NoSchedule", "get_lr")


# ====================================================================== hyper-parameters
# (class, keyword, bad value, error type); every error names the class, the keyword and
# the param group (index 1: the bad value sits in the second group)
BAD_HYPER = [
    (cls, key, value, error)
    for cls in ("SGD", "Adam", "AdamW", "Adamax", "Adagrad", "RMSprop", "Adadelta")
    for key, value, error in [("lr", -0.1, ValueError), ("lr", "0.1", TypeError),
                              ("weight_decay", -1.0, ValueError), ("eps", math.inf, ValueError)]
    if not (cls == "SGD" and key == "eps")
] + [
    ("SGD", "momentum", -0.5, ValueError), ("SGD", "dampening", 1.5, ValueError),
    ("SGD", "dampening", -0.5, ValueError), ("SGD", "nesterov", 1, TypeError),
    ("RMSprop", "momentum", -0.5, ValueError),
    ("RMSprop", "alpha", 1.5, ValueError), ("RMSprop", "alpha", -0.5, ValueError),
    ("RMSprop", "centered", "no", TypeError), ("Adam", "amsgrad", None, TypeError),
    ("AdamW", "amsgrad", 0, TypeError),
    ("Adagrad", "lr_decay", -1.0, ValueError),
    ("Adagrad", "initial_accumulator_value", -1.0, ValueError),
    ("Adadelta", "rho", 1.5, ValueError), ("Adadelta", "rho", -0.1, ValueError),
]


@pytest.mark.parametrize("name, key, value, error", BAD_HYPER)
def test_hyper_parameter_errors_name_class_key_and_group(name, key, value, error):
    good = Param(np.zeros(2))
    kwargs = {"lr": 0.1} if name == "SGD" else {}
    groups = [{"params": [good]}, {"params": [Param(np.zeros(3))], key: value}]
    assert_error(error, lambda: getattr(optim, name)(groups, **kwargs), name, key,
                 "in param group 1")
    assert_error(error, lambda: getattr(optim, name)([good], **{**kwargs, key: value}),
                 name, key, "in param group 0")


@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adamax"])
@pytest.mark.parametrize("betas, error, words", [
    ((0.9, 1.0), ValueError, ["betas[1]"]), ((-0.1, 0.9), ValueError, ["betas[0]"]),
    ((0.9,), ValueError, ["betas", "1 values"]), ([0.9, 0.99], None, []),
    (0.9, TypeError, ["betas", "0.9 (float)"]), ((0.9, "0.99"), TypeError, ["betas[1]"]),
])
def test_betas_must_be_a_pair_in_0_1(name, betas, error, words):
    build = lambda: getattr(optim, name)([Param(np.zeros(2))], betas=betas)  # noqa: E731
    if error is None:  # a list is taken as the pair
        assert build().param_groups[0]["betas"] == (0.9, 0.99)
        return
    assert_error(error, build, name, "in param group 0", *words)
    groups = [{"params": [Param(np.zeros(2))]}, {"params": [Param(np.zeros(2))], "betas": betas}]
    assert_error(error, lambda: getattr(optim, name)(groups), name, "in param group 1", *words)


# ====================================================================== OneCycleLR, plateau
def onecycle_curves(torch, options, momentum_key="momentum"):
    """(our lrs and momenta, torch's) over the whole cycle, on SGD with momentum."""
    curves = []
    for library in ("minidl", "torch"):
        if library == "minidl":
            optimizer = optim.SGD([Param(np.zeros(2))], lr=0.1, momentum=0.9)
            scheduler = S.OneCycleLR(optimizer, **options)
        else:
            optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1,
                                        momentum=0.9)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, **options)
        curve = []
        for step in range(options["total_steps"]):
            if step:
                optimizer.step()
                scheduler.step()
            group = optimizer.param_groups[0]
            curve.append((float(group["lr"]), float(group[momentum_key])))
        curves.append(curve)
    return curves


@pytest.mark.parametrize("options", [
    dict(max_lr=1.0, total_steps=10, pct_start=0.3),  # warm-up ends exactly at step 2
    # (0.3 - 0.03) * 1 + 0.03 is 0.30000000000000004: the end of the warm-up, not max_lr
    dict(max_lr=0.3, div_factor=10.0, total_steps=10, pct_start=0.3, anneal_strategy="linear"),
    dict(max_lr=1.0, total_steps=10, pct_start=0.3, three_phase=True),
    dict(max_lr=1.0, total_steps=10, pct_start=0.6, three_phase=True),  # third phase unused
    dict(max_lr=1.0, total_steps=8, pct_start=0.25, div_factor=4.0, final_div_factor=0.5),
], ids=["cos", "linear", "three-phase", "three-phase-pct-0.6", "small-divisors"])
def test_onecycle_equals_torch_exactly_at_phase_boundaries(options):
    """At a step where a phase ends, the lr is that phase's end value, computed as torch
    does (the next phase's start value can differ in the last bit)."""
    torch = pytest.importorskip("torch")
    ours, theirs = onecycle_curves(torch, options)
    assert ours == theirs


def test_onecycle_total_steps_limit_is_two_to_the_53():
    S.OneCycleLR(two_group_optimizer(), max_lr=1.0, total_steps=2 ** 53)
    assert_error(ValueError, lambda: S.OneCycleLR(two_group_optimizer(), max_lr=1.0,
                                                  total_steps=2 ** 53 + 1),
                 "OneCycleLR", "total_steps")


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(epochs=3), ValueError, ["OneCycleLR", "total_steps", "epochs", "steps_per_epoch"]),
    (dict(steps_per_epoch=3), ValueError, ["OneCycleLR", "total_steps", "epochs"]),
    (dict(epochs=0, steps_per_epoch=3), ValueError, ["OneCycleLR", "epochs"]),
    (dict(epochs=3, steps_per_epoch=2.0), TypeError, ["OneCycleLR", "steps_per_epoch"]),
    (dict(total_steps=10, max_lr=0.0), ValueError, ["OneCycleLR", "max_lr"]),
    (dict(total_steps=10, max_lr=[1.0, 0.0]), ValueError, ["OneCycleLR", "max_lr[1]"]),
    (dict(total_steps=10, three_phase="yes"), TypeError, ["OneCycleLR", "three_phase"]),
    (dict(total_steps=10, final_div_factor=0.0), ValueError, ["OneCycleLR", "final_div_factor"]),
    (dict(total_steps=10, max_lr=1e300, div_factor=1e-10), ValueError,
     ["OneCycleLR", "max_lr / div_factor"]),
    (dict(total_steps=10, max_lr=1e300, div_factor=1.0, final_div_factor=1e-10), ValueError,
     ["OneCycleLR", "max_lr / div_factor / final_div_factor"]),
    (dict(total_steps=10, cycle_momentum="yes"), TypeError, ["OneCycleLR", "cycle_momentum"]),
    (dict(total_steps=10, max_momentum=-0.1), ValueError, ["OneCycleLR", "max_momentum"]),
    (dict(total_steps=10, max_momentum=[0.9]), ValueError, ["OneCycleLR", "max_momentum"]),
    (dict(total_steps=10, base_momentum="0.8"), TypeError, ["OneCycleLR", "base_momentum"]),
    (dict(total_steps=10, base_momentum=[0.8, -1.0]), ValueError,
     ["OneCycleLR", "base_momentum[1]"]),
    (dict(total_steps=10, pct_start=1.0), ValueError,
     ["OneCycleLR", "pct_start=1", "change pct_start or use more steps"]),
])
def test_onecycle_argument_errors_name_the_argument(kwargs, error, words):
    kwargs = {"max_lr": 1.0, **kwargs}
    assert_error(error, lambda: S.OneCycleLR(two_group_optimizer(), **kwargs), *words)


def test_onecycle_cycle_momentum_needs_momentum_or_betas():
    assert_error(ValueError, lambda: S.OneCycleLR(optim.Adagrad([Param(np.zeros(2))]), 1.0,
                                                  total_steps=10),
                 "OneCycleLR", "pass cycle_momentum=False")
    S.OneCycleLR(optim.Adagrad([Param(np.zeros(2))]), 1.0, total_steps=10,
                 cycle_momentum=False)


def test_onecycle_accepts_a_final_div_factor_below_one():
    optimizer = two_group_optimizer()
    S.OneCycleLR(optimizer, max_lr=1.0, total_steps=10, div_factor=4.0, final_div_factor=0.5)
    assert optimizer.param_groups[0]["min_lr"] == 0.5


@pytest.mark.parametrize("build", [
    lambda o: S.StepLR(o, 2), lambda o: S.MultiStepLR(o, [2]), lambda o: S.ExponentialLR(o, 0.5),
    lambda o: S.CosineAnnealingLR(o, 3), lambda o: S.LinearLR(o),
    lambda o: S.LambdaLR(o, lambda step: 1.0), lambda o: S.PiecewiseLinearLR(o, [0], [1.0]),
    lambda o: S.LinearWarmupDecayLR(o, 1, 3), lambda o: S.OneCycleLR(o, 1.0, total_steps=5),
    lambda o: S.ReduceLROnPlateau(o),
])
def test_schedulers_refuse_what_is_not_an_optimizer(build):
    with pytest.raises(TypeError) as info:
        build([Param(np.zeros(2))])
    words = str(info.value).split(":")[0]
    assert words in S.__all__ and "list" in str(info.value)  # the class, what was given
    probe = two_group_optimizer()
    assert type(build(probe)).__name__ == words


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(cooldown=-1), ValueError, ["ReduceLROnPlateau", "cooldown"]),
    (dict(cooldown=1.0), TypeError, ["ReduceLROnPlateau", "cooldown"]),
    (dict(threshold=-0.1), ValueError, ["ReduceLROnPlateau", "threshold"]),
    (dict(patience=-1), ValueError, ["ReduceLROnPlateau", "patience"]),
    (dict(factor=1.0), ValueError, ["ReduceLROnPlateau", "factor"]),
    (dict(mode="maximum"), ValueError, ["ReduceLROnPlateau", "mode"]),
    (dict(min_lr=[0.1]), ValueError, ["ReduceLROnPlateau", "min_lr"]),
    (dict(min_lr=-0.1), ValueError, ["ReduceLROnPlateau", "min_lr"]),
    (dict(min_lr=[0.1, -0.1]), ValueError, ["ReduceLROnPlateau", "min_lr[1]"]),
])
def test_plateau_argument_errors_name_the_argument(kwargs, error, words):
    assert_error(error, lambda: S.ReduceLROnPlateau(two_group_optimizer(), **kwargs), *words)


@pytest.mark.parametrize("options", [dict(patience=0, cooldown=2, factor=0.5),
                                     dict(patience=2, cooldown=0, factor=0.5, mode="max"),
                                     dict(patience=1, cooldown=1, threshold_mode="abs",
                                          threshold=0.5, factor=0.5)])
def test_plateau_equals_torch_from_the_first_step(options):
    """A fresh scheduler has no bad epochs and no cooldown yet (torch's start)."""
    torch = pytest.importorskip("torch")
    fresh = S.ReduceLROnPlateau(two_group_optimizer(), **options).state_dict()
    assert (fresh["num_bad_epochs"], fresh["cooldown_counter"], fresh["best"]) == (0, 0, None)
    metrics = [1.0, 1.0, 2.0, 0.5, 0.5, 0.5, 3.0, 0.1, 0.1, 0.1]
    ours = S.ReduceLROnPlateau(optim.SGD([Param(np.zeros(2))], lr=1.0), **options)
    torch_optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_optimizer, **options)
    for metric in metrics:
        ours.step(metric)
        theirs.step(metric)
        assert ours.get_last_lr() == [float(g["lr"]) for g in torch_optimizer.param_groups]


# ====================================================================== update rules vs torch
# weight_decay = 1 exactly and non-default eps: values a "!= 0" / keyword slip would skip
TORCH_EDGE_CASES = [
    ("SGD", dict(lr=0.1, weight_decay=1.0)),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=1.0)),
    ("Adam", dict(lr=0.1, weight_decay=1.0, eps=0.5)),
    ("AdamW", dict(lr=0.1, weight_decay=1.0, eps=0.5)),
    ("AdamW", dict(lr=0.1, eps=0.5, amsgrad=True)),
    ("Adamax", dict(lr=0.1, weight_decay=1.0, eps=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=1.0, eps=0.5, lr_decay=1.0,
                     initial_accumulator_value=1.0)),
    ("RMSprop", dict(lr=0.1, weight_decay=1.0, eps=0.5, alpha=0.5, momentum=1.0)),
    ("RMSprop", dict(lr=0.1, weight_decay=1.0, eps=0.5, centered=True)),
    ("Adadelta", dict(lr=0.5, weight_decay=1.0, eps=0.5, rho=0.5)),
]


def stepped_beside_torch(name, options, seed, size, steps):
    """minidl's and torch's optimizer ``name`` from the same start, stepped on the same
    random grads; yields (ours, theirs, opt, reference) after each step."""
    torch = pytest.importorskip("torch")
    generator = np.random.default_rng(seed)
    start = generator.standard_normal(size)
    ours = Param(start.copy())
    theirs = torch.tensor(start.copy(), requires_grad=True)
    opt = getattr(optim, name)([ours], **options)
    reference = getattr(torch.optim, name)([theirs], **options)
    for _ in range(steps):
        grad = generator.standard_normal(size)
        opt.zero_grad()
        ours.grad += grad
        theirs.grad = torch.from_numpy(grad.copy())
        opt.step()
        reference.step()
        yield ours, theirs, opt, reference


@pytest.mark.parametrize("name, options", TORCH_EDGE_CASES,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in TORCH_EDGE_CASES])
def test_update_rules_equal_torch_at_edge_hyper_parameters(name, options):
    for ours, theirs, _, _ in stepped_beside_torch(name, options, seed=10, size=4, steps=4):
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_milestones_and_factors_may_be_1d_arrays():
    as_list = S.PiecewiseLinearLR(two_group_optimizer(), [0, 2, 5], [0.5, 1.0, 0.1])
    as_array = S.PiecewiseLinearLR(two_group_optimizer(), np.array([0, 2, 5]),
                                   np.array([0.5, 1.0, 0.1]))
    steps = S.MultiStepLR(two_group_optimizer(), np.array([4, 2]), gamma=0.5)
    assert steps.milestones == [2, 4]
    for _ in range(6):
        as_list.step()
        as_array.step()
        assert as_array.get_last_lr() == as_list.get_last_lr()


@pytest.mark.parametrize("key, value, error", [
    ("last_epoch", -2, ValueError), ("last_epoch", 1.0, TypeError),
    ("last_lr", [0.1], ValueError), ("base_lrs", [0.1, 0.1, 0.1], ValueError),
    ("base_lrs", [0.1, "0.1"], TypeError),
])
def test_scheduler_base_state_errors_name_the_entry(key, value, error):
    scheduler = S.StepLR(two_group_optimizer(), 2)
    state = scheduler.state_dict()
    before = copy.deepcopy(state)
    state[key] = value
    assert_error(error, lambda: scheduler.load_state_dict(state), "StepLR.load_state_dict", key)
    assert scheduler.state_dict() == before


@pytest.mark.parametrize("key, error, words", [
    (True, TypeError, ["load_state_dict", "True (bool)"]),
    (1.0, TypeError, ["load_state_dict", "1.0 (float)"]),
    ("x", TypeError, ["load_state_dict", "'x' (str)"]),
    (5, ValueError, ["Adam.load_state_dict", "5"]),
])
def test_optimizer_state_keys_must_be_parameter_indices(key, error, words):
    _, opt = stepped_adam()
    state = opt.state_dict()
    state["state"] = {key: state["state"][0]}
    assert_error(error, lambda: opt.load_state_dict(state), *words)


# ====================================================================== optimizer state vs torch
@pytest.mark.parametrize("name, options", TORCH_EDGE_CASES,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in TORCH_EDGE_CASES])
def test_optimizer_state_equals_torchs(name, options):
    """Same entries (names, step count, buffers) as torch.optim keeps, after 3 steps."""
    *_, (_, _, opt, reference) = stepped_beside_torch(name, options, seed=11, size=3, steps=3)
    mine = opt.state_dict()["state"].get(0, {})  # plain SGD keeps nothing
    expected = {key: value for key, value in reference.state_dict()["state"].get(0, {}).items()
                if value is not None}
    assert sorted(mine) == sorted(expected)
    for key, value in expected.items():
        if key == "step":
            assert mine[key] == int(value) == 3
        else:
            np.testing.assert_allclose(mine[key], value.numpy(), rtol=1e-12, atol=1e-15,
                                       err_msg=key)


def rmsprop_reference(start, grads, switch, lr=0.1, alpha=0.9, eps=1e-8, momentum=0.5):
    """RMSprop in float64 with momentum and centering switched on after ``switch`` steps;
    their buffers start at zero then (the docstring's rule)."""
    p, v = start.copy(), np.zeros_like(start)
    g_avg, b = np.zeros_like(start), np.zeros_like(start)
    for t, g in enumerate(grads):
        on = t >= switch
        v = alpha * v + (1 - alpha) * g * g
        if on:
            g_avg = alpha * g_avg + (1 - alpha) * g
            d = np.sqrt(v - g_avg * g_avg) + eps
            b = momentum * b + g / d
            p = p - lr * b
        else:
            p = p - lr * g / (np.sqrt(v) + eps)
    return p, v, g_avg, b


def test_rmsprop_momentum_and_centering_switched_on_later_start_from_zero():
    generator = np.random.default_rng(12)
    start, grads = generator.standard_normal(3), generator.standard_normal((5, 3))
    param = Param(start.copy())
    opt = optim.RMSprop([param], lr=0.1, alpha=0.9)
    for t, grad in enumerate(grads):
        if t == 2:
            opt.param_groups[0].update(momentum=0.5, centered=True)
        opt.zero_grad()
        param.grad += grad
        opt.step()
    p, v, g_avg, b = rmsprop_reference(start, grads, switch=2)
    state = opt.state_dict()["state"][0]
    assert state["step"] == 5
    np.testing.assert_allclose(param.data, p, rtol=1e-12)
    for key, expected in [("square_avg", v), ("grad_avg", g_avg), ("momentum_buffer", b)]:
        np.testing.assert_allclose(state[key], expected, rtol=1e-12, err_msg=key)


def test_sgd_momentum_and_adam_amsgrad_switched_on_later():
    """SGD's buffer starts as the gradient at its first use, AMSGrad's max at zero."""
    generator = np.random.default_rng(13)
    start, grads = generator.standard_normal(3), generator.standard_normal((4, 3))
    sgd_param, adam_param = Param(start.copy()), Param(start.copy())
    sgd = optim.SGD([sgd_param], lr=0.1)
    adam = optim.Adam([adam_param], lr=0.1)
    p, buffer = start.copy(), None
    m, v, v_max = np.zeros(3), np.zeros(3), np.zeros(3)
    q = start.copy()
    for t, grad in enumerate(grads, start=1):
        if t == 3:
            sgd.param_groups[0]["momentum"] = 0.9
            adam.param_groups[0]["amsgrad"] = True
        for opt, param in ((sgd, sgd_param), (adam, adam_param)):
            opt.zero_grad()
            param.grad += grad
            opt.step()
        if t >= 3:
            buffer = grad.copy() if buffer is None else 0.9 * buffer + grad
            p = p - 0.1 * buffer
        else:
            p = p - 0.1 * grad
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        if t >= 3:
            v_max = np.maximum(v_max, v)
        used = v_max if t >= 3 else v
        q = q - 0.1 / (1 - 0.9 ** t) * m / (np.sqrt(used) / np.sqrt(1 - 0.999 ** t) + 1e-8)
    np.testing.assert_allclose(sgd_param.data, p, rtol=1e-12)
    np.testing.assert_allclose(adam_param.data, q, rtol=1e-12)
    np.testing.assert_allclose(adam.state_dict()["state"][0]["max_exp_avg_sq"], v_max,
                               rtol=1e-12)


# ====================================================================== scheduler stepping
def test_scheduler_overflow_is_a_value_error_and_changes_nothing():
    optimizer = two_group_optimizer()
    scheduler = S.ExponentialLR(optimizer, gamma=1e100)  # 1e100 ** 4 overflows a float
    for _ in range(3):
        scheduler.step()
    before = (scheduler.last_epoch, scheduler.get_last_lr(), group_settings(optimizer))
    assert_error(ValueError, scheduler.step, "ExponentialLR", "the lr overflows at step 4",
                 "check gamma and the schedule's length")
    assert (scheduler.last_epoch, scheduler.get_last_lr(), group_settings(optimizer)) == before


def test_scheduler_non_finite_lr_names_group_and_step_and_changes_nothing():
    optimizer = two_group_optimizer()
    optimizer.param_groups[1]["lr"] = 10.0
    scheduler = S.ExponentialLR(optimizer, gamma=1e77)  # 10 * 1e308 = inf at step 4
    for _ in range(3):
        scheduler.step()
    before = (scheduler.last_epoch, scheduler.get_last_lr(), group_settings(optimizer))
    assert_error(ValueError, scheduler.step, "ExponentialLR", "the lr of param group 1 at step 4")
    assert (scheduler.last_epoch, scheduler.get_last_lr(), group_settings(optimizer)) == before


def test_resuming_without_initial_lr_says_what_to_do():
    assert_error(ValueError, lambda: S.StepLR(two_group_optimizer(), 2, last_epoch=3), "StepLR",
                 "param group 0", "start with last_epoch=-1")


def test_scheduler_foreign_state_lists_missing_and_unexpected_keys():
    scheduler = S.StepLR(two_group_optimizer(), 2)
    state = scheduler.state_dict()
    state["bogus"] = state.pop("gamma")
    assert_error(ValueError, lambda: scheduler.load_state_dict(state), "StepLR.load_state_dict",
                 "missing keys: ['gamma']", "unexpected keys: ['bogus']",
                 "was it saved by another scheduler?")
    del state["bogus"]
    assert_error(ValueError, lambda: scheduler.load_state_dict(state),
                 "missing keys: ['gamma']", "unexpected keys: none")
    state.update(gamma=0.5, bogus=1)
    assert_error(ValueError, lambda: scheduler.load_state_dict(state),
                 "missing keys: none", "unexpected keys: ['bogus']")
    assert_error(TypeError, lambda: scheduler.load_state_dict(5), "StepLR.load_state_dict",
                 "5 (int)")


@pytest.mark.parametrize("build, key, value, error, words", [
    (lambda o: S.MultiStepLR(o, [2]), "milestones", [2, -1], ValueError, ["milestones[1]"]),
    (lambda o: S.MultiStepLR(o, [2]), "milestones", "2", TypeError, ["milestones", "'2' (str)"]),
    (lambda o: S.StepLR(o, 2), "gamma", 0.0, ValueError, ["gamma"]),
    (lambda o: S.ExponentialLR(o, 0.5), "gamma", -1.0, ValueError, ["gamma"]),
    (lambda o: S.CosineAnnealingLR(o, 3), "eta_min", -0.1, ValueError, ["eta_min"]),
    (lambda o: S.CosineAnnealingLR(o, 3), "T_max", 0, ValueError, ["T_max"]),
    (lambda o: S.PiecewiseLinearLR(o, [0], [1.0]), "factors", [-1.0], ValueError,
     ["factors[0]"]),
])
def test_scheduler_setting_errors_on_load_name_the_entry(build, key, value, error, words):
    scheduler = build(two_group_optimizer())
    state = scheduler.state_dict()
    state[key] = value
    assert_error(error, lambda: scheduler.load_state_dict(state),
                 f"{type(scheduler).__name__}.load_state_dict", *words)


def test_plateau_zero_threshold_and_eps_round_trip():
    scheduler = S.ReduceLROnPlateau(two_group_optimizer(), threshold=0.0, eps=0.0)
    twin = S.ReduceLROnPlateau(two_group_optimizer())
    twin.load_state_dict(scheduler.state_dict())
    assert (twin.threshold, twin.eps) == (0.0, 0.0)


# ====================================================================== optimizer groups and step
def three_groups():
    params = [Param(np.full(2, float(i))) for i in range(4)]
    return params, optim.Adam([{"params": params[:1]}, {"params": params[1:3], "lr": 0.01},
                               {"params": params[3:]}], betas=(0.8, 0.9))


def test_optimizer_state_dict_numbers_parameters_across_groups_and_lists_tuples():
    """Indices continue from group to group (as torch); tuples become lists (JSON)."""
    _, opt = three_groups()
    groups = opt.state_dict()["param_groups"]
    assert [group["params"] for group in groups] == [[0], [1, 2], [3]]
    assert all(type(group["betas"]) is list for group in groups)
    assert json.loads(json.dumps(groups)) == groups


def test_optimizer_skips_params_without_grad_and_checks_grad_shapes():
    params, opt = three_groups()
    params[1].grad = None
    for param in (params[0], params[2], params[3]):
        param.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(params[1].data, [1.0, 1.0])  # no grad: unchanged
    assert params[2].data[0] < 2.0  # the next parameter of the same group still moves
    assert params[3].data[0] < 3.0
    params[3].grad = np.zeros(3)
    assert_error(RuntimeError, opt.step, "Adam", "(3,)")


@pytest.mark.parametrize("change, error, words", [
    (lambda s: s.update(state=[1]), ValueError, ["Adam.load_state_dict", "state"]),
    (lambda s: s.update(param_groups={}), ValueError, ["Adam.load_state_dict", "param_groups"]),
    (lambda s: s["param_groups"].__setitem__(1, 5), ValueError,
     ["Adam.load_state_dict", "param group 1", "5 (int)"]),
    (lambda s: s["param_groups"][2].update(lr=-1.0), ValueError,
     ["Adam", "lr", "in param group 2"]),
    (lambda s: s["state"].update({1: [1.0]}), TypeError,
     ["Adam.load_state_dict", "parameter 1", "[1.0] (list)"]),
    (lambda s: s["state"].update({2: {"step": 1}}), ValueError,
     ["Adam.load_state_dict", "parameter 2", "exp_avg"]),
])
def test_optimizer_load_errors_name_the_group_or_parameter(change, error, words):
    params, opt = three_groups()
    for param in params:
        param.grad[...] = 1.0
    opt.step()
    state = opt.state_dict()
    change(state)
    assert_error(error, lambda: opt.load_state_dict(state), *words)
    assert_error(TypeError, lambda: opt.load_state_dict(5), "Adam.load_state_dict", "5 (int)")


# ====================================================================== optimizer construction
def test_optimizer_construction_errors_say_what_was_given():
    model = L.Linear(2, 2)
    assert_error(TypeError, lambda: optim.SGD(model, lr=0.1), "SGD",
                 "got a Module; pass model.parameters()")
    assert_error(TypeError, lambda: optim.Adam(5), "Adam", "5 (int)")
    assert_error(TypeError, lambda: optim.Adam([{"params": [Param(np.zeros(2)), 3]}]),
                 "Adam", "param group 0", "int")
    opt = optim.Adam([Param(np.zeros(2))])
    assert_error(TypeError, lambda: opt.add_param_group(5), "Adam", "int")
    assert_error(ValueError, lambda: opt.add_param_group({"params": opt.param_groups[0]["params"]}),
                 "Adam", "param group 1", "each parameter must belong to exactly one group")
    assert_error(ValueError, lambda: optim.SGD([Param(np.zeros(2))]), "SGD", "'lr'",
                 "(it has no default)")


def test_optimizer_unknown_group_keys_list_each_name():
    param = Param(np.zeros(2))
    assert_error(ValueError, lambda: optim.SGD([{"params": [param], "lrr": 0.1, "foo": 1}],
                                               lr=0.1),
                 "SGD", "foo", "lrr", "param group 0", "lr", "momentum", "dampening",
                 "nesterov", "weight_decay")


def test_optimizer_takes_a_single_param_and_keeps_group_names():
    first, second = Param(np.zeros(2)), Param(np.zeros(3))
    opt = optim.SGD(first, lr=0.1)
    opt.add_param_group({"params": second, "name": "biases", "lr": 0.5})
    assert [group["params"] for group in opt.param_groups] == [[first], [second]]
    assert opt.param_groups[1]["name"] == "biases"
    assert "name" not in opt.param_groups[0]


@pytest.mark.parametrize("lr", [np.array(0.5), np.float32(0.5), np.float64(0.5), 0.5])
def test_numpy_hyper_parameters_become_python_floats(lr):
    """So that float32 parameters stay float32 and the state stays JSON-serialisable."""
    param = Param(np.ones(2, np.float32))
    opt = optim.SGD([param], lr=lr, momentum=np.array(0.5))
    group = opt.param_groups[0]
    assert type(group["lr"]) is float and type(group["momentum"]) is float
    param.grad[...] = 1.0
    opt.step()
    assert param.data.dtype == np.float32
    np.testing.assert_array_equal(param.data, [0.5, 0.5])
    json.dumps(opt.state_dict()["param_groups"])

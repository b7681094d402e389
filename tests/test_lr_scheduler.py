"""LR schedules: closed forms, torch.optim.lr_scheduler curves, resume, validation."""
import json
import math
import warnings

import numpy as np
import pytest

from minidl import Param, optim
from minidl.optim import lr_scheduler as S

BASE_LRS = (0.1, 0.04)


def make_optimizer(cls=optim.SGD, **options):
    """Two param groups with different base lrs."""
    groups = [{"params": [Param(np.zeros(2))], "lr": BASE_LRS[0]},
              {"params": [Param(np.zeros(3))], "lr": BASE_LRS[1]}]
    options.setdefault("lr", 1.0)
    return cls(groups, **options)


def lr_curve(scheduler, steps):
    """The lrs of step 0 (set by the constructor) to ``steps - 1``, one list per step."""
    curve = [scheduler.get_last_lr()]
    for _ in range(steps - 1):
        scheduler.step()
        curve.append(scheduler.get_last_lr())
    return np.array(curve)


def expected(factor_of_step, steps):
    return np.array([[base * factor_of_step(t) for base in BASE_LRS] for t in range(steps)])


# ---------------------------------------------------------------- closed forms
@pytest.mark.parametrize("build, factor", [
    (lambda o: S.StepLR(o, step_size=3, gamma=0.5), lambda t: 0.5 ** (t // 3)),
    (lambda o: S.MultiStepLR(o, milestones=[7, 2], gamma=0.1),
     lambda t: 0.1 ** ((t >= 2) + (t >= 7))),
    (lambda o: S.ExponentialLR(o, gamma=0.9), lambda t: 0.9 ** t),
    (lambda o: S.CosineAnnealingLR(o, T_max=10), lambda t: (1 + math.cos(math.pi * t / 10)) / 2),
    (lambda o: S.LinearLR(o, start_factor=0.25, total_iters=4),
     lambda t: 0.25 + 0.75 * min(t, 4) / 4),
    (lambda o: S.LambdaLR(o, lambda t: 1 / (1 + t)), lambda t: 1 / (1 + t)),
    (lambda o: S.PiecewiseLinearLR(o, milestones=[2, 6, 10], factors=[0.5, 1.0, 0.0]),
     lambda t: float(np.interp(t, [2, 6, 10], [0.5, 1.0, 0.0]))),
    (lambda o: S.LinearWarmupDecayLR(o, warmup_steps=4, total_steps=12),
     lambda t: float(np.interp(t, [0, 4, 12], [0.0, 1.0, 0.0]))),
    (lambda o: S.LinearWarmupDecayLR(o, warmup_steps=0, total_steps=5, end_factor=0.2),
     lambda t: float(np.interp(t, [0, 5], [1.0, 0.2]))),
], ids=["step", "multistep", "exponential", "cosine", "linear", "lambda", "piecewise",
        "warmup-decay", "decay-only"])
def test_closed_form(build, factor):
    optimizer = make_optimizer()
    curve = lr_curve(build(optimizer), 16)
    np.testing.assert_allclose(curve, expected(factor, 16), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([g["lr"] for g in optimizer.param_groups], curve[-1])
    assert [g["initial_lr"] for g in optimizer.param_groups] == list(BASE_LRS)


def test_warmup_decay_written_out():
    """Warm-up 0 -> peak over 4 steps, then linear decay to 0 at step 8, held at 0."""
    optimizer = optim.SGD([Param(np.zeros(1))], lr=0.4, momentum=0.9, nesterov=True)
    curve = lr_curve(S.LinearWarmupDecayLR(optimizer, warmup_steps=4, total_steps=8), 10)[:, 0]
    np.testing.assert_allclose(curve, [0.0, 0.1, 0.2, 0.3, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0],
                               atol=1e-15)


def test_reduce_on_plateau_written_out():
    """patience 1, cooldown 1: lr drops after 2 non-improving epochs, then one is ignored."""
    optimizer = make_optimizer()
    sched = S.ReduceLROnPlateau(optimizer, factor=0.5, patience=1, cooldown=1, min_lr=0.015)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85]
    lrs = []
    for metric in metrics:
        sched.step(metric)
        lrs.append(sched.get_last_lr()[0])
    # Two bad epochs -> halve (epochs 4, 7, 10); the epoch after each drop is not counted;
    # the third drop stops at min_lr (0.0125 -> 0.015).
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.015, 0.015, 0.015]
    assert sched.get_last_lr()[1] == 0.015  # second group: 0.04 -> 0.02 -> 0.015 (min_lr)


def test_onecycle_endpoints():
    optimizer = optim.SGD([Param(np.zeros(1))], lr=1.0, momentum=0.9)
    sched = S.OneCycleLR(optimizer, max_lr=0.5, total_steps=20, pct_start=0.25)
    curve = lr_curve(sched, 20)[:, 0]
    assert curve[0] == pytest.approx(0.5 / 25)
    assert curve[4] == pytest.approx(0.5)              # end of warm-up: pct_start * 20 - 1
    assert curve[-1] == pytest.approx(0.5 / 25 / 1e4)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.95)
    assert np.all(np.diff(curve[:5]) > 0) and np.all(np.diff(curve[4:]) < 0)


# ---------------------------------------------------------------- torch equality
def torch_pair(name, **options):
    """The same two-group SGD (momentum) in minidl and torch."""
    torch = pytest.importorskip("torch")
    ours = make_optimizer(getattr(optim, name), **options)
    theirs = getattr(torch.optim, name)(
        [{"params": [torch.zeros(2, requires_grad=True)], "lr": BASE_LRS[0]},
         {"params": [torch.zeros(3, requires_grad=True)], "lr": BASE_LRS[1]}],
        **{"lr": 1.0, **options})
    return torch, ours, theirs


def torch_curve(scheduler, optimizer, steps, metrics=None):
    curve = [list(scheduler.get_last_lr())]
    momenta = [[g.get("momentum", g.get("betas", (None,))[0]) for g in optimizer.param_groups]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(steps - 1):
            optimizer.step()  # no gradients: a no-op, keeps torch's call-order check quiet
            scheduler.step(*([] if metrics is None else [metrics[step]]))
            curve.append([float(v) for v in scheduler.get_last_lr()])
            momenta.append([g.get("momentum", g.get("betas", (None,))[0])
                            for g in optimizer.param_groups])
    return np.array(curve, dtype=float), momenta


def our_curve(scheduler, optimizer, steps, metrics=None):
    curve = [scheduler.get_last_lr()]
    momenta = [[g.get("momentum", g.get("betas", (None,))[0]) for g in optimizer.param_groups]]
    for step in range(steps - 1):
        scheduler.step(*([] if metrics is None else [metrics[step]]))
        curve.append(scheduler.get_last_lr())
        momenta.append([g.get("momentum", g.get("betas", (None,))[0])
                        for g in optimizer.param_groups])
    return np.array(curve), momenta


SCHEDULE_CASES = [
    ("StepLR", dict(step_size=4, gamma=0.3)),
    ("MultiStepLR", dict(milestones=[3, 10, 10, 22], gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.93)),
    ("CosineAnnealingLR", dict(T_max=12, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=30)),
    ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=8)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.05, total_iters=25)),
]


@pytest.mark.parametrize("name, options", SCHEDULE_CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULE_CASES)])
def test_matches_torch_over_30_steps(name, options):
    torch, ours, theirs = torch_pair("SGD", momentum=0.9)
    mine, _ = our_curve(getattr(S, name)(ours, **options), ours, 30)
    reference, _ = torch_curve(getattr(torch.optim.lr_scheduler, name)(theirs, **options),
                               theirs, 30)
    np.testing.assert_allclose(mine, reference, rtol=1e-12, atol=1e-15)


def test_lambda_lr_matches_torch():
    torch, ours, theirs = torch_pair("SGD")
    schedules = [lambda t: 0.95 ** t, lambda t: 1 / (1 + 0.1 * t)]
    mine, _ = our_curve(S.LambdaLR(ours, schedules), ours, 30)
    reference, _ = torch_curve(torch.optim.lr_scheduler.LambdaLR(theirs, schedules), theirs, 30)
    np.testing.assert_allclose(mine, reference, rtol=1e-12)


ONECYCLE_CASES = [
    ("SGD", dict(momentum=0.9), dict(max_lr=0.4, total_steps=30)),
    ("SGD", dict(momentum=0.9, nesterov=True), dict(max_lr=[0.4, 0.2], epochs=3, steps_per_epoch=10,
                                                     pct_start=0.2, anneal_strategy="linear")),
    ("SGD", dict(momentum=0.9), dict(max_lr=0.4, total_steps=30, three_phase=True,
                                     div_factor=10.0, final_div_factor=100.0)),
    ("SGD", dict(), dict(max_lr=0.4, total_steps=30, cycle_momentum=False)),
    ("Adam", dict(), dict(max_lr=0.01, total_steps=30, base_momentum=0.8, max_momentum=0.9)),
]


@pytest.mark.parametrize("name, opt_options, options", ONECYCLE_CASES,
                         ids=["cos", "linear-groups", "three-phase", "no-momentum", "adam-betas"])
def test_onecycle_matches_torch(name, opt_options, options):
    torch, ours, theirs = torch_pair(name, **opt_options)
    steps = 31  # the constructor's step 0 and total_steps more
    mine, my_momenta = our_curve(S.OneCycleLR(ours, **options), ours, steps)
    reference, their_momenta = torch_curve(
        torch.optim.lr_scheduler.OneCycleLR(theirs, **options), theirs, steps)
    np.testing.assert_allclose(mine, reference, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.array(my_momenta, dtype=float),
                               np.array(their_momenta, dtype=float), rtol=1e-12)


def test_onecycle_refuses_to_step_past_total_steps():
    sched = S.OneCycleLR(make_optimizer(momentum=0.9), max_lr=0.4, total_steps=30)
    for _ in range(30):  # torch allows total_steps steps after the constructor's
        sched.step()
    with pytest.raises(ValueError, match="OneCycleLR: stepped 31 times, but total_steps is 30"):
        sched.step()


PLATEAU_METRICS = [1.0, 0.9, 0.9, 0.91, 0.89999, 0.7, 0.7, 0.7, 0.7, 0.71, 0.72, 0.5, 0.5, 0.5,
                   0.5, 0.5, 0.5, 0.5, 0.49, 0.6, 0.6, 0.6, 0.6, 0.6, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
PLATEAU_CASES = [
    dict(patience=3),
    dict(patience=1, factor=0.5),
    dict(patience=2, factor=0.5, cooldown=2, min_lr=0.02),
    dict(patience=1, threshold=0.05, threshold_mode="abs", min_lr=[0.01, 0.001]),
    dict(patience=0, threshold=0.1, factor=0.7),
    dict(mode="max", patience=1, factor=0.5),
    dict(mode="max", patience=1, threshold=0.05, threshold_mode="abs", cooldown=1),
]


@pytest.mark.parametrize("options", PLATEAU_CASES, ids=[str(i) for i in range(len(PLATEAU_CASES))])
def test_reduce_on_plateau_matches_torch(options):
    torch, ours, theirs = torch_pair("SGD", momentum=0.9)
    steps = len(PLATEAU_METRICS) + 1
    mine, _ = our_curve(S.ReduceLROnPlateau(ours, **options), ours, steps, PLATEAU_METRICS)
    reference, _ = torch_curve(torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **options),
                               theirs, steps, PLATEAU_METRICS)
    np.testing.assert_allclose(mine, reference, rtol=1e-12)
    assert len(np.unique(mine[:, 0])) > 1  # the script does reduce the lr


# ---------------------------------------------------------------- resume
RESUME_CASES = [
    lambda o: S.StepLR(o, step_size=3, gamma=0.5),
    lambda o: S.MultiStepLR(o, milestones=[4, 8]),
    lambda o: S.ExponentialLR(o, gamma=0.9),
    lambda o: S.CosineAnnealingLR(o, T_max=12),
    lambda o: S.LinearLR(o, start_factor=0.2, total_iters=6),
    lambda o: S.LambdaLR(o, lambda t: 0.9 ** t),
    lambda o: S.LinearWarmupDecayLR(o, warmup_steps=3, total_steps=12),
    lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=12),
]


@pytest.mark.parametrize("build", RESUME_CASES, ids=["step", "multistep", "exponential", "cosine",
                                                     "linear", "lambda", "warmup", "onecycle"])
def test_state_dict_resume_continues_identically(build):
    optimizer = make_optimizer(momentum=0.9)
    sched = build(optimizer)
    for _ in range(5):
        sched.step()
    saved_opt = json.loads(json.dumps(optimizer.state_dict()))  # no arrays before a step
    saved = json.loads(json.dumps(sched.state_dict()))
    uninterrupted = lr_curve(sched, 8)
    resumed_opt = make_optimizer(momentum=0.9)
    resumed_opt.load_state_dict(saved_opt)
    resumed = build(resumed_opt)
    resumed.load_state_dict(saved)
    assert resumed.get_last_lr() == uninterrupted[0].tolist()
    np.testing.assert_array_equal(lr_curve(resumed, 8), uninterrupted)
    assert [g["momentum"] for g in resumed_opt.param_groups] == \
        [g["momentum"] for g in optimizer.param_groups]


def test_reduce_on_plateau_state_dict_resume():
    optimizer = make_optimizer()
    sched = S.ReduceLROnPlateau(optimizer, patience=1, factor=0.5, cooldown=1)
    metrics = PLATEAU_METRICS
    for metric in metrics[:10]:
        sched.step(metric)
    saved = json.loads(json.dumps(sched.state_dict()))
    saved_opt = json.loads(json.dumps(optimizer.state_dict()))
    resumed_opt = make_optimizer()
    resumed_opt.load_state_dict(saved_opt)
    resumed = S.ReduceLROnPlateau(resumed_opt)
    resumed.load_state_dict(saved)
    for metric in metrics[10:]:
        sched.step(metric)
        resumed.step(metric)
        assert resumed.get_last_lr() == sched.get_last_lr()
    fresh = S.ReduceLROnPlateau(make_optimizer())
    assert json.loads(json.dumps(fresh.state_dict()))["best"] is None  # inf is not JSON


def test_resume_with_last_epoch_needs_initial_lr():
    with pytest.raises(ValueError, match="StepLR: resuming with last_epoch=4 needs 'initial_lr'"):
        S.StepLR(make_optimizer(), step_size=2, last_epoch=4)


def test_schedulers_drive_lookahead():
    inner = make_optimizer(momentum=0.9)
    opt = optim.Lookahead(inner, k=2)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    assert [g["lr"] for g in inner.param_groups] == [0.05, 0.02]


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("build, message", [
    (lambda o: S.StepLR(o, step_size=0),
     r"StepLR: step_size must be a positive integer, got 0 \(int\)"),
    (lambda o: S.StepLR(o, step_size=2, gamma=0),
     r"StepLR: gamma must be a real number in \(0, inf\), got 0"),
    (lambda o: S.MultiStepLR(o, milestones=[2, -1]),
     r"MultiStepLR: milestones\[1\] must be a non-negative integer, got -1"),
    (lambda o: S.CosineAnnealingLR(o, T_max=0), "CosineAnnealingLR: T_max"),
    (lambda o: S.CosineAnnealingLR(o, T_max=5, eta_min=float("nan")),
     r"CosineAnnealingLR: eta_min must be a real number in \[0, inf\), got nan"),
    (lambda o: S.LinearLR(o, start_factor=0.0),
     r"LinearLR: start_factor must be a real number in \(0, 1\]"),
    (lambda o: S.LambdaLR(o, [lambda t: 1.0]), "LambdaLR: expected a function or 2"),
    (lambda o: S.PiecewiseLinearLR(o, [0, 5, 5], [0, 1, 0]), "milestones must increase"),
    (lambda o: S.PiecewiseLinearLR(o, [0, 5], [1.0]), "as many milestones as factors"),
    (lambda o: S.PiecewiseLinearLR(o, [0, 5], [1.0, float("inf")]), r"factors\[1\] must be"),
    (lambda o: S.LinearWarmupDecayLR(o, 10, 10), "total_steps \\(10\\) must exceed warmup_steps"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1), "OneCycleLR: give total_steps"),
    (lambda o: S.OneCycleLR(o, max_lr=[0.1], total_steps=10), "OneCycleLR: expected 2 values"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"),
     "anneal_strategy must be one of 'cos', 'linear'"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5),
     r"OneCycleLR: pct_start must be a real number in \[0, 1\]"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=0.1),
     "OneCycleLR: pct_start=0.1 of total_steps=10 leaves a phase of the cycle without steps"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.0),
     "OneCycleLR: pct_start=1 of total_steps=10 leaves a phase"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, div_factor=0),
     r"OneCycleLR: div_factor must be a real number in \(0, inf\)"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, final_div_factor=0),
     "OneCycleLR: final_div_factor must be"),
    (lambda o: S.OneCycleLR(o, max_lr=float("nan"), total_steps=10), "OneCycleLR: max_lr must be"),
    (lambda o: S.OneCycleLR(optim.Adagrad(o.param_groups[0]["params"]), max_lr=0.1,
                            total_steps=10), "cycle_momentum needs an optimizer"),
    (lambda o: S.ReduceLROnPlateau(o, mode="lowest"), "ReduceLROnPlateau: mode must be one of"),
    (lambda o: S.ReduceLROnPlateau(o, factor=1.0),
     r"ReduceLROnPlateau: factor must be a real number in \(0, 1\)"),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode"),
    (lambda o: S.ReduceLROnPlateau(o, patience=-1), "patience must be a non-negative integer"),
    (lambda o: S.ReduceLROnPlateau(o, min_lr=[0.1]), "expected 2 values of min_lr"),
    (lambda o: S.ReduceLROnPlateau(o, min_lr=[0.1, -1.0]), r"min_lr\[1\] must be"),
    (lambda o: S.ExponentialLR(o, gamma=10**400), "ExponentialLR: gamma .*too large for a float"),
    (lambda o: S.StepLR(o, step_size=2, last_epoch=-2), "StepLR: last_epoch must be an integer"),
])
def test_invalid_arguments_raise_a_clear_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build(make_optimizer())


@pytest.mark.parametrize("build, message", [
    (lambda o: S.StepLR(o, step_size=True),
     r"StepLR: step_size must be a positive integer, got True"),
    (lambda o: S.StepLR(o, step_size=2.0), "StepLR: step_size must be a positive integer"),
    (lambda o: S.StepLR(o, step_size=2, gamma=False), r"StepLR: gamma must be a real number"),
    (lambda o: S.ExponentialLR(o, gamma="0.9"), "ExponentialLR: gamma must be a real number"),
    (lambda o: S.CosineAnnealingLR(o, T_max=5, eta_min=None), "CosineAnnealingLR: eta_min"),
    (lambda o: S.LambdaLR(o, 0.5), "LambdaLR: lr_lambda must be a function"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=True), "OneCycleLR: total_steps"),
    (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=True), "pct_start"),
    (lambda o: S.ReduceLROnPlateau(o, patience=1.5), "patience must be a non-negative integer"),
    (lambda o: S.ReduceLROnPlateau(o, threshold=None), "ReduceLROnPlateau: threshold must be"),
])
def test_wrong_argument_types_raise_a_clear_type_error(build, message):
    with pytest.raises(TypeError, match=message):
        build(make_optimizer())


def test_numpy_scalar_arguments_are_accepted_as_python_numbers():
    sched = S.StepLR(make_optimizer(), step_size=np.int64(2), gamma=np.float32(0.5))
    assert (sched.step_size, sched.gamma) == (2, 0.5) and type(sched.gamma) is float
    cosine = S.CosineAnnealingLR(make_optimizer(), T_max=np.int32(4), eta_min=np.float64(0.01))
    assert type(cosine.eta_min) is float and type(cosine.T_max) is int
    one_cycle = S.OneCycleLR(make_optimizer(), max_lr=np.float64(0.5), total_steps=np.int64(20),
                             pct_start=np.float32(0.25), div_factor=np.int64(10))
    assert one_cycle.get_last_lr() == pytest.approx([0.05, 0.05])
    plateau = S.ReduceLROnPlateau(make_optimizer(), factor=np.float64(0.5), patience=np.int64(0))
    assert (plateau.factor, plateau.patience) == (0.5, 0)


def test_not_an_optimizer_raises_type_error():
    with pytest.raises(TypeError, match="StepLR: expected a minidl optimizer"):
        S.StepLR([Param(np.zeros(1))], step_size=1)

"""State is all or nothing: a failed load_state_dict / load_checkpoint changes nothing.

Every object is stepped into a non-trivial state, its state_dict is copied, a bad state
is loaded (a foreign class's state, a missing or extra key, a wrong type, shape or
dtype, a bad value in the LAST entry so that earlier ones would already be assigned by
a key-by-key copy), and the state afterwards must equal the copy exactly.
"""
import copy
import json

import numpy as np
import pytest

import minidl
from minidl import layers as L, optim
from minidl.data import DataLoader
from minidl.optim import lr_scheduler as S
from minidl.train import CheckpointError, load_checkpoint, save_checkpoint

OPTIMIZERS = {
    "SGD": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
    "Adam": lambda p: optim.Adam(p, lr=0.01, amsgrad=True),
    "Adamax": lambda p: optim.Adamax(p),
    "Adagrad": lambda p: optim.Adagrad(p),
    "RMSprop": lambda p: optim.RMSprop(p, momentum=0.5, centered=True),
    "Adadelta": lambda p: optim.Adadelta(p),
}


def mlp():
    return L.Sequential(L.Linear(4, 5), L.ReLU(), L.Linear(5, 3))


def stepped(make_optimizer, steps=2, seed=0):
    minidl.seed(seed)
    model = mlp()
    optimizer = make_optimizer(model.parameters())
    generator = np.random.default_rng(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        x = generator.standard_normal((6, 4)).astype(np.float32)
        model.backward(generator.standard_normal(model(x).shape).astype(np.float32))
        optimizer.step()
    return model, optimizer


def assert_equal_nested(a, b):
    """Equal values, types, shapes and dtypes, recursively (arrays compared exactly)."""
    if hasattr(a, "dtype") and hasattr(a, "shape"):
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            assert_equal_nested(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal_nested(x, y)
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), (a, b)


def assert_refused_unchanged(target, state, match, errors=(ValueError, TypeError)):
    before = copy.deepcopy(target.state_dict())
    with pytest.raises(errors, match=match):
        target.load_state_dict(state)
    assert_equal_nested(target.state_dict(), before)


# ---------------------------------------------------------------- optimizers
@pytest.mark.parametrize("source", sorted(OPTIMIZERS))
@pytest.mark.parametrize("target", sorted(OPTIMIZERS))
def test_optimizer_refuses_another_classes_state(source, target):
    if source == target:
        return
    _, other = stepped(OPTIMIZERS[source])
    _, optimizer = stepped(OPTIMIZERS[target], seed=1)
    assert_refused_unchanged(optimizer, other.state_dict(), type(optimizer).__name__)


def _last(state):
    return state["state"][max(state["state"])]


BAD_OPTIMIZER_STATES = [
    (lambda s: s["param_groups"][0].pop("params"), "'params' list"),
    (lambda s: s["param_groups"][0].pop("betas"), "lacks betas"),
    (lambda s: s["param_groups"][0].update(lr=float("nan")), "lr must be"),
    (lambda s: s["param_groups"][0].update(lr="0.1"), "lr must be"),
    (lambda s: s["param_groups"][0].update(betas=(0.9,)), "pair"),
    (lambda s: s["param_groups"][0].update(params=[0, 0, 1, 2]), "twice"),
    (lambda s: s["state"].update({"x": {}}), "integers"),
    (lambda s: s["state"].update({7: {}}), "which no param group lists"),
    (lambda s: s["state"].update({3: [1, 2]}), "must be a dict"),
    (lambda s: _last(s).update(step=-1), "non-negative integer"),
    (lambda s: _last(s).update(step=2.5), "non-negative integer"),
    (lambda s: _last(s).update(step=None), "non-negative integer"),
    (lambda s: _last(s).update(exp_avg=_last(s)["exp_avg"].astype(np.complex64)), "real float"),
    (lambda s: _last(s).update(exp_avg=_last(s)["exp_avg"].astype(np.int64)), "real float"),
    (lambda s: _last(s).update(exp_avg=[0.0, 0.0, 0.0]), "real float"),
    (lambda s: _last(s).update(exp_avg=np.zeros(7, np.float32)), "has shape"),
    (lambda s: _last(s).update(momentum_buffer=_last(s)["exp_avg"]), "entries"),
    (lambda s: _last(s).pop("exp_avg_sq"), "entries"),
]


@pytest.mark.parametrize("damage, match", BAD_OPTIMIZER_STATES)
def test_optimizer_bad_state_changes_nothing(damage, match):
    _, optimizer = stepped(OPTIMIZERS["Adam"])
    state = copy.deepcopy(optimizer.state_dict())
    damage(state)
    assert_refused_unchanged(optimizer, state, match)


def test_optimizer_bad_state_literal_none_and_empty():
    _, optimizer = stepped(OPTIMIZERS["SGD"])
    assert_refused_unchanged(optimizer, None, "SGD.load_state_dict: expected a dict")
    assert_refused_unchanged(optimizer, {}, "SGD.load_state_dict")
    assert_refused_unchanged(optimizer, [], "SGD.load_state_dict")
    assert_refused_unchanged(optimizer, {"state": {}, "param_groups": []}, "0 param groups")


def test_optimizer_good_state_round_trips_through_json_keys():
    _, source = stepped(OPTIMIZERS["RMSprop"])
    _, target = stepped(OPTIMIZERS["RMSprop"], seed=3)
    state = source.state_dict()
    state["state"] = {str(k): v for k, v in state["state"].items()}
    target.load_state_dict(state)
    assert_equal_nested(target.state_dict(), source.state_dict())


def test_sgd_from_adam_names_the_class_not_a_key_error():
    _, adam = stepped(OPTIMIZERS["Adam"])
    _, sgd = stepped(OPTIMIZERS["SGD"])
    with pytest.raises(ValueError, match="SGD.load_state_dict: param group 0 lacks "
                                         "momentum, dampening, nesterov"):
        sgd.load_state_dict(adam.state_dict())


# ---------------------------------------------------------------- schedulers
def scheduler_pair(make):
    _, optimizer = stepped(OPTIMIZERS["SGD"])
    scheduler = make(optimizer)
    for _ in range(3):
        scheduler.step()
    return optimizer, scheduler


SCHEDULERS = {
    "StepLR": lambda o: S.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[1, 4]),
    "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "LinearLR": lambda o: S.LinearLR(o, start_factor=0.5, total_iters=4),
    "PiecewiseLinearLR": lambda o: S.PiecewiseLinearLR(o, [0, 5, 9], [0.0, 1.0, 0.0]),
    "LinearWarmupDecayLR": lambda o: S.LinearWarmupDecayLR(o, 2, 10),
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=20),
    "LambdaLR": lambda o: S.LambdaLR(o, lambda step: 0.9 ** step),
}


def assert_scheduler_refused(optimizer, scheduler, state, match):
    groups_before = copy.deepcopy(optimizer.state_dict())
    assert_refused_unchanged(scheduler, state, match)
    assert_equal_nested(optimizer.state_dict(), groups_before)


@pytest.mark.parametrize("source", sorted(SCHEDULERS))
@pytest.mark.parametrize("target", sorted(SCHEDULERS))
def test_scheduler_refuses_another_classes_state(source, target):
    same_keys = {"PiecewiseLinearLR", "LinearWarmupDecayLR"}
    if source == target or {source, target} <= same_keys:
        return
    _, other = scheduler_pair(SCHEDULERS[source])
    optimizer, scheduler = scheduler_pair(SCHEDULERS[target])
    assert_scheduler_refused(optimizer, scheduler, other.state_dict(), type(scheduler).__name__)


@pytest.mark.parametrize("name, key, value, match", [
    ("StepLR", "step_size", 0, "step_size must be"),
    ("StepLR", "gamma", float("nan"), "gamma must be"),
    ("StepLR", "gamma", "0.5", "gamma must be"),
    ("StepLR", "last_epoch", 1.5, "last_epoch must be"),
    ("StepLR", "base_lrs", [0.1, 0.1], "one per param group"),
    ("StepLR", "last_lr", 0.1, "last_lr must be a list"),
    ("StepLR", "last_lr", [float("nan")], "last_lr"),
    ("CosineAnnealingLR", "T_max", 2.0, "T_max must be"),
    ("CosineAnnealingLR", "eta_min", None, "eta_min must be"),
    ("MultiStepLR", "milestones", [1, -4], "milestones"),
    ("MultiStepLR", "milestones", 3, "milestones must be a list"),
    ("LinearLR", "start_factor", 0.0, "start_factor"),
    ("PiecewiseLinearLR", "factors", [0.0, 1.0], "as many factors"),
    ("PiecewiseLinearLR", "milestones", [0, 5, 5], "strictly increasing"),
    ("OneCycleLR", "anneal_strategy", "cosine", "anneal_strategy"),
    ("OneCycleLR", "phases", [], "phases"),
    ("OneCycleLR", "phases", [{"end_step": 1}] * 2, "phases"),
    ("OneCycleLR", "cycle_momentum", 1, "cycle_momentum"),
])
def test_scheduler_bad_value_changes_nothing(name, key, value, match):
    optimizer, scheduler = scheduler_pair(SCHEDULERS[name])
    state = copy.deepcopy(scheduler.state_dict())
    state[key] = value
    assert_scheduler_refused(optimizer, scheduler, state, match or name)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_missing_extra_or_no_dict(name):
    optimizer, scheduler = scheduler_pair(SCHEDULERS[name])
    state = scheduler.state_dict()
    assert_scheduler_refused(optimizer, scheduler, {**state, "surprise": 1}, "unexpected keys")
    state.pop("last_lr")
    assert_scheduler_refused(optimizer, scheduler, state, "missing keys")
    assert_scheduler_refused(optimizer, scheduler, None, f"{name}.load_state_dict")


def test_scheduler_round_trip_still_works():
    optimizer, scheduler = scheduler_pair(SCHEDULERS["OneCycleLR"])
    state = json.loads(json.dumps(scheduler.state_dict()))
    other_optimizer, other = scheduler_pair(SCHEDULERS["OneCycleLR"])
    other.step()
    other.load_state_dict(state)
    assert other.state_dict() == scheduler.state_dict()


def plateau():
    _, optimizer = stepped(OPTIMIZERS["SGD"])
    scheduler = S.ReduceLROnPlateau(optimizer, patience=1)
    for metric in (1.0, 2.0, 3.0, 4.0):
        scheduler.step(metric)
    return optimizer, scheduler


@pytest.mark.parametrize("key, value, match", [
    ("mode", "minimum", "mode"), ("factor", 1.0, "factor"), ("patience", -1, "patience"),
    ("best", "low", "best"), ("best", float("inf"), "best"), ("min_lrs", [0.0, 0.0], "min_lrs"),
    ("last_lr", None, "last_lr"), ("num_bad_epochs", True, "num_bad_epochs"),
])
def test_plateau_bad_value_changes_nothing(key, value, match):
    optimizer, scheduler = plateau()
    state = copy.deepcopy(scheduler.state_dict())
    state[key] = value
    assert_scheduler_refused(optimizer, scheduler, state, match)
    assert_scheduler_refused(optimizer, scheduler, {}, "ReduceLROnPlateau.load_state_dict")


# ---------------------------------------------------------------- EMA and Lookahead
def ema():
    minidl.seed(0)
    model = L.Sequential(L.Linear(4, 5), L.BatchNorm1d(5), L.Linear(5, 2))
    average = optim.ExponentialMovingAverage(model, decay=0.9)
    for param in model.parameters():
        param.data += 1.0
    average.update()
    return average


@pytest.mark.parametrize("damage, match", [
    (lambda s: s.pop("warmup"), "expected a dict with keys"),
    (lambda s: s.update(decay=1.5), "decay must be"),
    (lambda s: s.update(num_updates=-2), "num_updates"),
    (lambda s: s.update(warmup="yes"), "warmup"),
    (lambda s: s.update(averages=[1, 2]), "averages"),
    (lambda s: s["averages"].pop("2.bias"), "differ"),
    (lambda s: s["averages"].update({"2.bias": np.zeros(3, np.float32)}), "has shape"),
    (lambda s: s["averages"].update({"2.bias": np.zeros(2, np.complex64)}), "real-valued"),
    (lambda s: s["averages"].update({"2.bias": "zeros"}), "real-valued"),
])
def test_ema_bad_state_changes_nothing(damage, match):
    average = ema()
    state = copy.deepcopy(average.state_dict())
    damage(state)
    assert_refused_unchanged(average, state, match)
    assert_refused_unchanged(average, None, "ExponentialMovingAverage.load_state_dict")


def lookahead():
    return stepped(lambda p: optim.Lookahead(optim.Adam(p, lr=0.01), k=2), steps=3)[1]


@pytest.mark.parametrize("damage, match", [
    (lambda s: s.pop("lookahead"), "'lookahead' entry"),
    (lambda s: s["lookahead"].update(k=0), "k must be"),
    (lambda s: s["lookahead"].pop("alpha"), "alpha"),
    (lambda s: s["lookahead"].update(step_count=-1), "step_count"),
    (lambda s: _last(s).update(lookahead_slow=np.zeros(2, np.float32)), "has shape"),
    (lambda s: _last(s).update(lookahead_slow=_last(s)["lookahead_slow"].astype(complex)),
     "real float"),
    (lambda s: s["state"].update({9: {"lookahead_slow": np.zeros(3, np.float32)}}),
     "parameter index"),
    (lambda s: _last(s).update(step=-1), "Adam.load_state_dict"),  # inner part fails last
    (lambda s: s["param_groups"][0].update(lr=None), "lr must be"),
])
def test_lookahead_bad_state_changes_nothing(damage, match):
    optimizer = lookahead()
    state = copy.deepcopy(optimizer.state_dict())
    damage(state)
    before_slow = {id(p): w.copy() for p, w in optimizer.slow.items()}
    assert_refused_unchanged(optimizer, state, match)
    for param, weight in optimizer.slow.items():
        np.testing.assert_array_equal(weight, before_slow[id(param)])


# ---------------------------------------------------------------- DataLoader
def loader():
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    data = DataLoader(x, np.arange(10), batch_size=3, seed=0)
    data.open_epoch = iter(data)  # kept open: the loader stays part-way through the epoch
    next(data.open_epoch)
    return data


@pytest.mark.parametrize("damage, match", [
    (lambda s: s.pop("rng"), "expected keys"),
    (lambda s: s.update(epoch=-1), "epoch"),
    (lambda s: s.update(epoch=1.0), "epoch"),
    (lambda s: s.update(batch=99), "out of range"),
    (lambda s: s.update(in_epoch=1), "in_epoch"),
    (lambda s: s.update(rng={"bit_generator": "MT19937", "state": {}}), "rng"),
    (lambda s: s.update(rng=None), "rng"),
    (lambda s: s.update(epoch_start_rng=None), "epoch_start_rng"),  # needed mid-epoch
    (lambda s: s.update(epoch_start_rng=[1, 2]), "epoch_start_rng"),
])
def test_loader_bad_state_changes_nothing(damage, match):
    data = loader()
    state = copy.deepcopy(data.state_dict())
    damage(state)
    assert_refused_unchanged(data, state, match)
    # the loader still continues its epoch with the batch an untouched one yields
    np.testing.assert_array_equal(next(data.open_epoch)[0], next(loader().open_epoch)[0])


# ---------------------------------------------------------------- checkpoints
def run():
    model, optimizer = stepped(OPTIMIZERS["Adam"], seed=2)
    scheduler = S.StepLR(optimizer, step_size=2)
    scheduler.step()
    return model, optimizer, scheduler, loader()


def forge(path, change):
    """Rewrite a checkpoint's JSON metadata with ``change(meta)`` applied."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["__meta__"][()]))
    change(meta)
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def snapshot(*objects):
    return [copy.deepcopy(obj.state_dict()) for obj in objects]


@pytest.mark.parametrize("change, match", [
    (lambda m: m.pop("epoch"), "incomplete metadata.*epoch"),
    (lambda m: m.pop("rng_state"), "incomplete metadata.*rng_state"),
    (lambda m: m.update(epoch=-3), "epoch"),
    (lambda m: m.update(epoch="3"), "epoch"),
    (lambda m: m.update(rng_state={"bit_generator": "PCG64"}), "corrupt metadata"),
    (lambda m: m.update(history={"__ndarray__": "nowhere"}), "corrupt metadata"),
    (lambda m: m.update(loaders=[1]), "corrupt metadata"),
    (lambda m: m["optimizer"]["state"].update({"__items__": 5}), "corrupt"),
    (lambda m: m["optimizer"]["param_groups"][0].update(lr=-1.0), "optimizer state.*lr"),
    (lambda m: m["scheduler"].update(gamma="half"), "scheduler state.*gamma"),
    (lambda m: m["loaders"]["train"].update(batch=99), "'train' data loader.*out of range"),
])
def test_forged_checkpoint_changes_nothing(tmp_path, change, match):
    path = tmp_path / "run.npz"
    model, optimizer, scheduler, data = run()
    save_checkpoint(path, model, optimizer, scheduler, epoch=4, loaders={"train": data})
    forge(path, change)
    model, optimizer, scheduler, data = run()
    for param in model.parameters():  # differs from the file: a load would show
        param.data *= 2.0
    before = snapshot(model, optimizer, scheduler, data)
    rng_before = copy.deepcopy(minidl.backend.get_rng_state())
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, model, optimizer, scheduler, loaders={"train": data})
    assert str(path) in str(info.value)
    assert_equal_nested(snapshot(model, optimizer, scheduler, data), before)
    assert minidl.backend.get_rng_state() == rng_before

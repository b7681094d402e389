"""Learning rate schedules with PyTorch's semantics.

A scheduler sets ``group["lr"]`` of every parameter group of an optimizer. It is
stepped after the optimizer, once per epoch or once per batch::

    sched = StepLR(opt, step_size=30, gamma=0.1)   # sets the lr of step 0 now
    for epoch in range(epochs):
        train_one_epoch(...)                       # opt.step() per batch
        sched.step()                               # lr of the next epoch

As in PyTorch, constructing a scheduler (``last_epoch=-1``) stores each group's lr as
``group["initial_lr"]`` (the ``base_lrs``) and applies the value of step 0;
``sched.last_epoch`` counts the ``step()`` calls since. Every schedule here is computed
in closed form from ``base_lrs`` and ``last_epoch``; the values equal torch's
(which updates the lr recursively) while this scheduler is the only one changing it.
``state_dict()`` / ``load_state_dict()`` hold JSON-serialisable values only.
"""
import bisect
import math

from .. import checks


def _check_optimizer(optimizer, name):
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"{name}: expected a minidl optimizer, got {type(optimizer).__name__}")


def _per_group(value, optimizer, label, name, low=0.0, low_open=False):
    """A real number >= ``low`` for every group: one for all, or one value per group."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(f"{name}: expected {groups} values of {label} "
                             f"(one per param group), got {len(value)}")
        return [checks.real_number(v, f"{label}[{i}]", name, low, low_open=low_open)
                for i, v in enumerate(value)]
    return [checks.real_number(value, label, name, low, low_open=low_open)] * groups


def _sequence(value, label, name):
    """``value`` as a list, if it is a list, tuple or 1-D array; else a TypeError."""
    if isinstance(value, (list, tuple)) or (checks.is_array(value) and value.ndim == 1):
        return list(value)
    raise TypeError(f"{name}: {label} must be a list, got {checks.describe(value)}")


def _int_at_least(low):
    return lambda value, label, name: checks.integer(value, label, name, low=low)


def _real_at_least(low, low_open=False):
    return lambda value, label, name: checks.real_number(value, label, name, low,
                                                          low_open=low_open)


def _real_between(low, high, low_open=False, high_open=False):
    return lambda value, label, name: checks.real_number(value, label, name, low, high,
                                                          low_open=low_open, high_open=high_open)


def _list_of(check, length=None):
    """A list (or tuple) whose items all pass ``check``; of ``length`` items if given."""
    def checked(value, label, name):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name}: {label} must be a list, got {checks.describe(value)}")
        if length is not None and len(value) != length:
            raise ValueError(f"{name}: {label} must hold {length} values (one per param "
                             f"group), got {len(value)}")
        return [check(item, f"{label}[{i}]", name) for i, item in enumerate(value)]
    return checked


def _reals_per_group(groups):
    return _list_of(_real_at_least(None), groups)


def _one_of(*options):
    return lambda value, label, name: checks.choice(value, label, name, options)


def _flag(value, label, name):
    return checks.boolean(value, label, name)


def _checked_state(state_dict, checkers, name):
    """The checked values of a scheduler state: exactly the keys of ``checkers``."""
    where = f"{name}.load_state_dict"
    if not isinstance(state_dict, dict):
        raise TypeError(f"{where}: expected a dict (from state_dict()), got "
                        f"{checks.describe(state_dict)}")
    missing = sorted(set(checkers) - set(state_dict))
    unexpected = sorted(map(str, set(state_dict) - set(checkers)))
    if missing or unexpected:
        raise ValueError(f"{where}: the state does not fit a {name} (missing keys: "
                         f"{missing or 'none'}; unexpected keys: {unexpected or 'none'}); was "
                         "it saved by another scheduler?")
    return {key: check(state_dict[key], key, where) for key, check in checkers.items()}


class LRScheduler:
    """Base class: subclasses implement :meth:`get_lr` (the lrs at ``self.last_epoch``).

    ``_state_keys`` lists the attributes saved by :meth:`state_dict` besides
    ``last_epoch``, ``base_lrs`` and the last lrs.
    """

    _state_keys = ()
    # key -> check(value, label, owner) returning the value to load (see load_state_dict)
    _state_checks = {}

    def __init__(self, optimizer, last_epoch=-1):
        _check_optimizer(optimizer, self._name)
        last_epoch = checks.integer(last_epoch, "last_epoch", self._name, low=-1)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(f"{self._name}: resuming with last_epoch={last_epoch} needs "
                                     f"'initial_lr' in param group {i}; restore the optimizer's "
                                     "state_dict first, or start with last_epoch=-1")
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self.step()

    @property
    def _name(self):
        return type(self).__name__

    def get_lr(self):
        """The learning rate of every group at step ``self.last_epoch``."""
        raise NotImplementedError(f"{self._name} does not implement get_lr")

    def step(self):
        """Advance one step (epoch or batch) and set every group's lr.

        An lr that overflows or is not a finite number (a gamma > 1 over
        many steps, a lambda returning NaN) is an error, and no group is changed.
        """
        self.last_epoch += 1
        try:
            lrs = [checks.real_number(lr, f"the lr of param group {i} at step "
                                          f"{self.last_epoch}", self._name)
                   for i, lr in enumerate(self.get_lr())]
        except OverflowError:
            self.last_epoch -= 1
            raise ValueError(f"{self._name}: the lr overflows at step {self.last_epoch + 1} "
                             "(too large to be a float); check gamma and the schedule's "
                             "length") from None
        except BaseException:
            self.last_epoch -= 1
            raise
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The lrs set by the last :meth:`step` (one float per group)."""
        return list(self._last_lr)

    def state_dict(self):
        state = {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
                 "last_lr": list(self._last_lr)}
        for key in self._state_keys:
            value = getattr(self, key)
            state[key] = list(value) if isinstance(value, tuple) else value
        return state

    def load_state_dict(self, state_dict):
        """Restore the position in the schedule and re-apply its last lrs to the optimizer.

        All or nothing: every key is checked (names, types, ranges, one lr per param
        group) before anything is assigned.
        """
        groups = len(self.optimizer.param_groups)
        checkers = {"last_epoch": _int_at_least(-1), "base_lrs": _reals_per_group(groups),
                    "last_lr": _reals_per_group(groups)}
        checkers.update({key: self._state_checks[key] for key in self._state_keys})
        state = _checked_state(state_dict, checkers, self._name)
        self._check_loaded(state)
        self.last_epoch = state.pop("last_epoch")
        self.base_lrs = state.pop("base_lrs")
        self._last_lr = state.pop("last_lr")
        for key, value in state.items():
            setattr(self, key, value)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def _check_loaded(self, state):
        """Checks across keys of a state about to be loaded (subclasses extend this)."""

    def __repr__(self):
        settings = ", ".join(f"{key}={getattr(self, key)!r}" for key in self._state_keys)
        return f"{self._name}({settings}, last_epoch={self.last_epoch})"


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(step)``; ``lr_lambda`` is one function or one per group.

    The functions are not saved by :meth:`state_dict` (pass them again when resuming).
    """

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        _check_optimizer(optimizer, "LambdaLR")
        lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else \
            [lr_lambda] * len(optimizer.param_groups)
        if not all(map(callable, lambdas)):
            raise TypeError(f"LambdaLR: lr_lambda must be a function or a list of functions, "
                            f"got {checks.describe(lr_lambda)}")
        if len(lambdas) != len(optimizer.param_groups):
            raise ValueError(f"LambdaLR: expected a function or {len(optimizer.param_groups)} "
                             f"functions (one per param group), got {len(lambdas)}")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        factors = [checks.real_number(fn(self.last_epoch), f"lr_lambda({self.last_epoch})",
                                      "LambdaLR") for fn in self.lr_lambdas]
        return [base_lr * factor for base_lr, factor in zip(self.base_lrs, factors)]


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (step // step_size)``."""

    _state_keys = ("step_size", "gamma")
    _state_checks = {"step_size": _int_at_least(1), "gamma": _real_at_least(0.0, low_open=True)}

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = checks.positive_int(step_size, "step_size", "StepLR")
        self.gamma = checks.real_number(gamma, "gamma", "StepLR", 0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size)
                for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= step)``; milestones are step indices."""

    _state_keys = ("milestones", "gamma")
    _state_checks = {"milestones": _list_of(_int_at_least(0)), "gamma": _real_at_least(0.0, low_open=True)}

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        milestones = _sequence(milestones, "milestones", "MultiStepLR")
        self.milestones = sorted(checks.positive_int(m, f"milestones[{i}]", "MultiStepLR",
                                                     allow_zero=True)
                                 for i, m in enumerate(milestones))
        self.gamma = checks.real_number(gamma, "gamma", "MultiStepLR", 0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def _check_loaded(self, state):
        state["milestones"] = sorted(state["milestones"])

    def get_lr(self):
        passed = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** step``."""

    _state_keys = ("gamma",)
    _state_checks = {"gamma": _real_at_least(0.0, low_open=True)}

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = checks.real_number(gamma, "gamma", "ExponentialLR", 0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2``.

    Reaches ``eta_min`` at ``step = T_max`` (and, as in torch, rises again after it).
    """

    _state_keys = ("T_max", "eta_min")
    _state_checks = {"T_max": _int_at_least(1), "eta_min": _real_at_least(0.0)}

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803 (torch's name)
        self.T_max = checks.positive_int(T_max, "T_max", "CosineAnnealingLR")
        self.eta_min = checks.real_number(eta_min, "eta_min", "CosineAnnealingLR", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cosine = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear ramp of the factor from ``start_factor`` to ``end_factor`` over ``total_iters``.

    ``lr = base_lr * (start + (end - start) * min(step, total_iters) / total_iters)``;
    the usual linear warm-up is ``LinearLR(opt, start_factor=0.1, total_iters=warmup)``.
    """

    _state_keys = ("start_factor", "end_factor", "total_iters")
    _state_checks = {"start_factor": _real_between(0.0, 1.0, low_open=True),
                     "end_factor": _real_between(0.0, 1.0), "total_iters": _int_at_least(1)}

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        self.start_factor = checks.real_number(start_factor, "start_factor", "LinearLR", 0.0, 1.0,
                                               low_open=True)
        self.end_factor = checks.real_number(end_factor, "end_factor", "LinearLR", 0.0, 1.0)
        self.total_iters = checks.positive_int(total_iters, "total_iters", "LinearLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        progress = min(self.last_epoch, self.total_iters) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


class PiecewiseLinearLR(LRScheduler):
    """``lr = base_lr * factor(step)``, the factor interpolated linearly between knots.

    ``milestones``: increasing step indices; ``factors``: the factor at each of them.
    Before the first and after the last milestone the factor is held constant. For a
    per-batch schedule, use steps = batches: e.g. warm-up to the peak over 5 epochs then
    linear decay to 0 at epoch 24 with ``n`` batches per epoch::

        PiecewiseLinearLR(opt, milestones=[0, 5 * n, 24 * n], factors=[0.0, 1.0, 0.0])
    """

    _state_keys = ("milestones", "factors")
    _state_checks = {"milestones": _list_of(_int_at_least(0)),
                     "factors": _list_of(_real_at_least(0.0))}

    def __init__(self, optimizer, milestones, factors, last_epoch=-1):
        name = type(self).__name__
        milestones = [checks.positive_int(m, f"milestones[{i}]", name, allow_zero=True)
                      for i, m in enumerate(_sequence(milestones, "milestones", name))]
        factors = [checks.real_number(f, f"factors[{i}]", name, 0.0) for i, f in enumerate(_sequence(factors, "factors", name))]
        if len(milestones) != len(factors) or not milestones:
            raise ValueError(f"{name}: expected as many milestones as factors "
                             f"(at least one), got {len(milestones)} and {len(factors)}")
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"{name}: milestones must increase strictly, got {milestones}")
        self.milestones, self.factors = milestones, factors
        super().__init__(optimizer, last_epoch)

    def _check_loaded(self, state):
        milestones, factors = state["milestones"], state["factors"]
        if len(milestones) != len(factors) or not milestones or \
                any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"{self._name}.load_state_dict: expected strictly increasing "
                             "milestones and as many factors (at least one), got "
                             f"{milestones} and {factors}")

    def factor(self, step):
        """The interpolated factor at ``step``."""
        knots = self.milestones
        if step <= knots[0]:
            return self.factors[0]
        if step >= knots[-1]:
            return self.factors[-1]
        right = bisect.bisect_right(knots, step)
        left = right - 1
        fraction = (step - knots[left]) / (knots[right] - knots[left])
        return self.factors[left] + (self.factors[right] - self.factors[left]) * fraction

    def get_lr(self):
        factor = self.factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]


class LinearWarmupDecayLR(PiecewiseLinearLR):
    """Linear warm-up from ``start_factor * base_lr`` to ``base_lr`` over ``warmup_steps``,
    then linear decay to ``end_factor * base_lr`` at ``total_steps`` (held after it).

    The per-batch schedule of the fast CIFAR-10 recipes: step it after every batch.
    """

    def __init__(self, optimizer, warmup_steps, total_steps, start_factor=0.0, end_factor=0.0,
                 last_epoch=-1):
        warmup_steps = checks.positive_int(warmup_steps, "warmup_steps", "LinearWarmupDecayLR",
                                           allow_zero=True)
        total_steps = checks.positive_int(total_steps, "total_steps", "LinearWarmupDecayLR")
        if total_steps <= warmup_steps:
            raise ValueError(f"LinearWarmupDecayLR: total_steps ({total_steps}) must exceed "
                             f"warmup_steps ({warmup_steps})")
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        if warmup_steps == 0:
            milestones, factors = [0, total_steps], [1.0, end_factor]
        else:
            milestones, factors = [0, warmup_steps, total_steps], [start_factor, 1.0, end_factor]
        super().__init__(optimizer, milestones, factors, last_epoch)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin), exactly as torch.optim.lr_scheduler.OneCycleLR.

    Stepped once per batch, ``total_steps`` (or ``epochs * steps_per_epoch``) times.
    The lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of the steps, then anneals to ``initial_lr / final_div_factor``
    (``three_phase``: back to the initial lr first, then down to the minimum).
    ``anneal_strategy`` is "cos" or "linear". With ``cycle_momentum`` the momentum (or
    Adam's beta1) moves inversely between ``max_momentum`` and ``base_momentum``.
    The groups store ``initial_lr``, ``max_lr``, ``min_lr`` (and the momentum bounds).
    """

    _state_keys = ("total_steps", "anneal_strategy", "cycle_momentum", "use_beta1", "phases")
    _state_checks = {"total_steps": _int_at_least(1), "anneal_strategy": _one_of("cos", "linear"),
                     "cycle_momentum": _flag, "use_beta1": _flag,
                     "phases": lambda value, label, name: value}  # see _check_loaded

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False,
                 last_epoch=-1):
        _check_optimizer(optimizer, "OneCycleLR")
        name = "OneCycleLR"
        if total_steps is not None:
            self.total_steps = checks.positive_int(total_steps, "total_steps", name)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (checks.positive_int(epochs, "epochs", name)
                                * checks.positive_int(steps_per_epoch, "steps_per_epoch", name))
        else:
            raise ValueError("OneCycleLR: give total_steps, or both epochs and steps_per_epoch")
        if self.total_steps > 2 ** 53:  # beyond exact float step positions
            raise ValueError(f"OneCycleLR: total_steps must be at most 2**53, got "
                             f"{self.total_steps}")
        pct_start = checks.real_number(pct_start, "pct_start", name, 0.0, 1.0)
        self.anneal_strategy = checks.choice(anneal_strategy, "anneal_strategy", name,
                                             ("cos", "linear"))
        div_factor = checks.real_number(div_factor, "div_factor", name, 0.0, low_open=True)
        final_div_factor = checks.real_number(final_div_factor, "final_div_factor", name, 0.0,
                                              low_open=True)
        three_phase = checks.boolean(three_phase, "three_phase", name)
        warmup_end = float(pct_start * self.total_steps) - 1
        if three_phase:
            self.phases = [
                {"end_step": warmup_end, "start_lr": "initial_lr", "end_lr": "max_lr",
                 "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
                {"end_step": float(2 * pct_start * self.total_steps) - 2, "start_lr": "max_lr",
                 "end_lr": "initial_lr", "start_momentum": "base_momentum",
                 "end_momentum": "max_momentum"},
                {"end_step": self.total_steps - 1, "start_lr": "initial_lr", "end_lr": "min_lr",
                 "start_momentum": "max_momentum", "end_momentum": "max_momentum"}]
        else:
            self.phases = [
                {"end_step": warmup_end, "start_lr": "initial_lr", "end_lr": "max_lr",
                 "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
                {"end_step": self.total_steps - 1, "start_lr": "max_lr", "end_lr": "min_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"}]
        self._check_phases(pct_start)
        max_lrs = _per_group(max_lr, optimizer, "max_lr", "OneCycleLR", low_open=True)
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, max_lrs):
                initial = checks.real_number(peak / div_factor, "max_lr / div_factor", name)
                group["initial_lr"] = initial
                group["max_lr"] = peak
                group["min_lr"] = checks.real_number(
                    initial / final_div_factor, "max_lr / div_factor / final_div_factor", name)
        self.cycle_momentum = checks.boolean(cycle_momentum, "cycle_momentum", name)
        self.use_beta1 = "betas" in optimizer.defaults
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and not self.use_beta1:
                raise ValueError("OneCycleLR: cycle_momentum needs an optimizer with momentum or "
                                 "betas; pass cycle_momentum=False")
            if last_epoch == -1:
                highs = _per_group(max_momentum, optimizer, "max_momentum", "OneCycleLR")
                lows = _per_group(base_momentum, optimizer, "base_momentum", "OneCycleLR")
                for group, high, low in zip(optimizer.param_groups, highs, lows):
                    self._set_momentum(group, high)
                    group["max_momentum"], group["base_momentum"] = high, low
        super().__init__(optimizer, last_epoch)

    def _check_loaded(self, state):
        """The phases must be 2 or 3 dicts naming lr/momentum keys the groups hold."""
        phases, where = state["phases"], f"{self._name}.load_state_dict"
        names = ("start_lr", "end_lr", "start_momentum", "end_momentum")
        if not isinstance(phases, (list, tuple)) or len(phases) not in (2, 3) or not all(
                isinstance(p, dict) and set(p) == {"end_step", *names} for p in phases):
            raise ValueError(f"{where}: 'phases' must be 2 or 3 dicts with keys end_step, "
                             f"{', '.join(names)}; got {checks.describe(phases)}")
        lr_keys = {"initial_lr", "max_lr", "min_lr"}
        momentum_keys = {"max_momentum", "base_momentum"} if state["cycle_momentum"] else set()
        needed = lr_keys | momentum_keys
        state["phases"] = []
        for i, phase in enumerate(phases):
            checked = {"end_step": checks.real_number(phase["end_step"],
                                                      f"phases[{i}].end_step", where)}
            for name in names:
                # an lr entry names an lr key, a momentum entry (if used) a momentum key
                allowed = lr_keys if "lr" in name else momentum_keys
                if phase[name] not in allowed and (state["cycle_momentum"] or "lr" in name):
                    raise ValueError(f"{where}: phases[{i}].{name} must name one of "
                                     f"{sorted(allowed)}, got {checks.describe(phase[name])}")
                checked[name] = phase[name]
            state["phases"].append(checked)
        for i, group in enumerate(self.optimizer.param_groups):
            if not needed <= set(group):
                raise ValueError(f"{where}: param group {i} lacks {sorted(needed - set(group))}; "
                                 "load the optimizer's state_dict first")

    def _check_phases(self, pct_start):
        """Refuse a phase of no steps that a step would land in (it would divide by zero):
        a warm-up ending exactly at step 0, or a last phase starting where it ends."""
        first, last = self.phases[0]["end_step"], self.phases[-1]["end_step"]
        before_last = self.phases[-2]["end_step"]
        if first == 0 or (before_last >= last and before_last < self.total_steps):
            raise ValueError(f"OneCycleLR: pct_start={pct_start:g} of total_steps="
                             f"{self.total_steps} leaves a phase of the cycle without steps; "
                             "change pct_start or use more steps")

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value,) + tuple(group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step} times, but total_steps is "
                             f"{self.total_steps}; size the schedule to the whole run")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self.phases):
                end_step = phase["end_step"]
                if step <= end_step or i == len(self.phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct))
                    break
                start_step = end_step
        return lrs


class ReduceLROnPlateau:
    """Divide the lr by ``1 / factor`` when a metric stops improving (torch's semantics).

    ``sched.step(metric)`` after each validation. A metric is an improvement when it beats
    the best so far by ``threshold`` (``threshold_mode`` "rel": relative to the best,
    "abs": absolute) in direction ``mode`` ("min" or "max"). After more than
    ``patience`` epochs without improvement every group's lr becomes
    ``max(lr * factor, min_lr)`` (changes smaller than ``eps`` are skipped), and the
    next ``cooldown`` epochs are not counted.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        name = "ReduceLROnPlateau"
        _check_optimizer(optimizer, name)
        self.optimizer = optimizer
        self.mode = checks.choice(mode, "mode", name, ("min", "max"))
        self.threshold_mode = checks.choice(threshold_mode, "threshold_mode", name, ("rel", "abs"))
        self.factor = checks.real_number(factor, "factor", name, 0.0, 1.0,
                                         low_open=True, high_open=True)
        self.threshold = checks.real_number(threshold, "threshold", name, 0.0)
        self.eps = checks.real_number(eps, "eps", name, 0.0)
        self.patience = checks.positive_int(patience, "patience", name, allow_zero=True)
        self.cooldown = checks.positive_int(cooldown, "cooldown", name, allow_zero=True)
        self.min_lrs = _per_group(min_lr, optimizer, "min_lr", name)
        self.best = math.inf if mode == "min" else -math.inf  # any first value is better
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [float(group["lr"]) for group in optimizer.param_groups]

    def is_better(self, value, best):
        """Whether ``value`` beats ``best`` by more than the threshold."""
        relative = self.threshold_mode == "rel"
        if self.mode == "min":
            return value < (best * (1.0 - self.threshold) if relative else best - self.threshold)
        return value > (best * (1.0 + self.threshold) if relative else best + self.threshold)

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def step(self, metric):
        """Record one value of the monitored metric (a number or a 0-d array)."""
        value = checks.real_number(metric, "metric", "ReduceLROnPlateau")
        self.last_epoch += 1
        if self.is_better(value, self.best):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                old_lr = float(group["lr"])
                new_lr = max(old_lr * self.factor, min_lr)
                if old_lr - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    _state_keys = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
                   "min_lrs", "eps", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def state_dict(self):
        """JSON-serialisable: an infinite ``best`` (no value seen yet) is stored as None."""
        state = {key: getattr(self, key) for key in self._state_keys}
        state["best"] = self.best if math.isfinite(self.best) else None
        state["last_lr"] = list(self._last_lr)
        return state

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict`; every key is checked before anything is assigned."""
        groups = len(self.optimizer.param_groups)
        count = _int_at_least(0)
        checkers = {"mode": _one_of("min", "max"), "threshold_mode": _one_of("rel", "abs"),
                    "factor": _real_between(0.0, 1.0, low_open=True, high_open=True),
                    "threshold": _real_at_least(0.0), "eps": _real_at_least(0.0),
                    "patience": count, "cooldown": count, "num_bad_epochs": count,
                    "cooldown_counter": count, "last_epoch": count,
                    "min_lrs": _reals_per_group(groups), "last_lr": _reals_per_group(groups),
                    "best": lambda value, label, name: (
                        None if value is None else checks.real_number(value, label, name))}
        state = _checked_state(state_dict, checkers, "ReduceLROnPlateau")
        best, self._last_lr = state.pop("best"), state.pop("last_lr")
        for key, value in state.items():
            setattr(self, key, value)
        worst = math.inf if self.mode == "min" else -math.inf
        self.best = worst if best is None else best

    def __repr__(self):
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, "
                f"patience={self.patience}, best={self.best}, bad_epochs={self.num_bad_epochs})")


__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "LambdaLR", "LinearLR",
           "LinearWarmupDecayLR", "MultiStepLR", "OneCycleLR", "PiecewiseLinearLR",
           "ReduceLROnPlateau", "StepLR"]

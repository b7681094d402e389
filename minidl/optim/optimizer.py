"""The optimizer base class: parameter groups, per-parameter state, state_dict.

An optimizer updates every :class:`~minidl.module.Param` it was given from the
gradient accumulated in ``param.grad``::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    model.backward(loss_fn.backward())
    opt.step()

Parameters can be split into groups with their own hyper-parameters (as in PyTorch),
e.g. no weight decay on biases and normalisation parameters::

    opt = SGD([{"params": weights, "weight_decay": 5e-4},
               {"params": biases_and_bn, "weight_decay": 0.0}], lr=0.1, momentum=0.9)

``opt.param_groups`` is the list of these groups: dicts holding ``"params"`` and every
hyper-parameter (missing ones are filled from the constructor's arguments). Learning
rate schedulers change ``group["lr"]`` between steps.

Subclasses implement :meth:`Optimizer._init_state` and :meth:`Optimizer._update`, the
update of ONE parameter, written exactly as the torch.optim documentation states it.
Updates are in place on ``param.data``; state arrays are created with
``xp.zeros_like(param.data)``, so they live on the parameter's device with its dtype,
and hyper-parameters enter the arithmetic as Python floats, so float32 stays float32.
"""
import contextlib
import numbers

import numpy as np

from .. import backend, checks
from ..module import Module, Param

# Marks a hyper-parameter without a default (SGD's learning rate).
required = object()

# A group key that is not a hyper-parameter of the update rule: a label for the user.
# (Schedulers add their own keys, such as "initial_lr", to existing groups.)
_EXTRA_GROUP_KEYS = ("name",)


@contextlib.contextmanager
def _in_group(index):
    """Add "in param group i" to the TypeError/ValueError of a check."""
    try:
        yield
    except (TypeError, ValueError) as error:
        raise type(error)(f"{error} in param group {index}") from None


def _plain(value):
    """A hyper-parameter as a plain Python value (float, int, bool, tuple), never NumPy.

    NumPy float64 scalars would promote float32 arrays to float64; Python floats do not.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) or (hasattr(value, "ndim") and value.ndim == 0):
        return float(value)
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    return value


def _state_index(key):
    """A parameter index of state_dict (an int, or its string after a JSON round trip)."""
    if isinstance(key, str) and key.isdigit():
        return int(key)
    if checks.is_bool(key) or not isinstance(key, numbers.Integral):
        raise TypeError(f"load_state_dict: parameter indices must be integers, got "
                        f"{checks.describe(key)}")
    return int(key)


def array_like_param(value, param, what, where):
    """A new copy of ``value`` on ``param``'s device with its dtype, after checking it is a
    real float array shaped like the parameter (for loading optimizer state)."""
    if not checks.is_array(value) or value.dtype.kind != "f":
        raise TypeError(f"{where}: {what} must be a real float array, got "
                        f"{getattr(value, 'dtype', type(value).__name__)}")
    if tuple(value.shape) != tuple(param.data.shape):
        raise ValueError(f"{where}: {what} has shape {tuple(value.shape)}, expected "
                         f"{tuple(param.data.shape)}")
    value = backend.to_device(value, backend.device_of(param.data))
    return value.astype(param.data.dtype, copy=True)


class Optimizer:
    """Base class of every optimizer.

    ``params``: a list of :class:`Param`, or a list of dicts ``{"params": [...], **hyper}``
    (parameter groups). ``defaults``: every hyper-parameter of the subclass with its
    default value (``required`` if the user must give it).

    ``state`` maps each Param to a dict of its state (arrays shaped like the parameter,
    and the integer ``"step"`` where the rule needs it). It is created at the first step.
    Create the optimizer after moving the model to its device (``model.to("gpu")``):
    the state lives on the device the parameters had at the first step.
    """

    # State entries that are numbers, not arrays shaped like the parameter.
    _scalar_state_keys = ("step",)
    # State entries the rule creates only when needed (SGD's momentum buffer).
    _optional_state_keys = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        if isinstance(params, Module):
            raise TypeError(f"{self._name}: expected a list of Param or of param-group dicts, "
                            "got a Module; pass model.parameters()")
        if isinstance(params, (Param, dict)):
            params = [params]
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{self._name}: expected a list of Param or of param-group dicts, "
                            f"got {checks.describe(params)}") from None
        if not params:
            raise ValueError(f"{self._name}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self):
        return type(self).__name__

    # ------------------------------------------------------------------ groups
    def add_param_group(self, group):
        """Append a parameter group; its missing hyper-parameters come from the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{self._name}: a parameter group must be a dict with a 'params' "
                            f"entry, got {type(group).__name__}")
        index = len(self.param_groups)
        params = group["params"]
        params = [params] if isinstance(params, Param) else list(params)
        for param in params:
            if not isinstance(param, Param):
                raise TypeError(f"{self._name}: param group {index} must hold Param objects, "
                                f"got {type(param).__name__}")
        if not params:
            raise ValueError(f"{self._name}: param group {index} has no parameters")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(f"{self._name}: a parameter appears twice (in param group {index}); "
                             "each parameter must belong to exactly one group")
        unknown = sorted(set(group) - set(self.defaults) - {"params", *_EXTRA_GROUP_KEYS})
        if unknown:
            raise ValueError(f"{self._name}: unknown hyper-parameter(s) {', '.join(unknown)} in "
                             f"param group {index}; expected some of {', '.join(self.defaults)}")
        filled = {"params": params}
        for key, default in self.defaults.items():
            value = group.get(key, default)
            if value is required:
                raise ValueError(f"{self._name}: param group {index} needs a value for {key!r} "
                                 "(it has no default)")
            filled[key] = _plain(value)
        for key in _EXTRA_GROUP_KEYS:
            if key in group:
                filled[key] = group[key]
        self._check_group(filled, index)
        self.param_groups.append(filled)

    def _check_group(self, group, index):
        """Raise TypeError/ValueError for an invalid hyper-parameter. Subclasses extend this."""
        for key in ("lr", "eps", "weight_decay", "momentum"):
            if key in group:
                self._check_range(group, index, key, low=0.0)

    def _check_range(self, group, index, key, low=None, high=None, high_open=False):
        """Check that ``group[key]`` is a real number in ``[low, high]`` (``high)`` when
        ``high_open``); the error names the param group."""
        with _in_group(index):
            checks.real_number(group[key], key, self._name, low, high, high_open=high_open)

    def _check_flag(self, group, index, key):
        with _in_group(index):
            checks.boolean(group[key], key, self._name)

    def _check_betas(self, group, index):
        betas = group["betas"]
        with _in_group(index):
            if not isinstance(betas, tuple):
                raise TypeError(f"{self._name}: betas must be a pair (beta1, beta2), "
                                f"got {checks.describe(betas)}")
            if len(betas) != 2:
                raise ValueError(f"{self._name}: betas must be a pair (beta1, beta2), "
                                 f"got {len(betas)} values")
            for i, beta in enumerate(betas):
                checks.real_number(beta, f"betas[{i}]", self._name, 0.0, 1.0, high_open=True)

    # ------------------------------------------------------------------ stepping
    def zero_grad(self):
        """Reset every parameter's gradient to zero (backward adds into it)."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.fill(0)

    def step(self, closure=None):
        """Update every parameter once from its ``grad``.

        ``closure`` (optional, as in PyTorch) recomputes the loss; its value is returned.
        Parameters whose ``grad`` is None are skipped.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            hyper = {key: _plain(value) for key, value in group.items() if key != "params"}
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.shape != param.data.shape:
                    raise RuntimeError(f"{self._name}: gradient of {param!r} has shape "
                                       f"{tuple(param.grad.shape)}, expected the parameter's")
                state = self.state.get(param)
                if state is None:
                    state = self.state[param] = self._init_state(param, hyper)
                self._update(param, param.grad, state, hyper)
        return loss

    def _init_state(self, param, hyper):
        """The state dict of a parameter before its first update."""
        return {}

    def _update(self, param, grad, state, hyper):
        """Update ``param.data`` in place from ``grad``; ``hyper`` holds Python numbers."""
        raise NotImplementedError(f"{self._name} does not implement _update")

    # ------------------------------------------------------------------ state
    def _indexed_params(self):
        """Every parameter in group order; its position is its index in state_dict."""
        return [param for group in self.param_groups for param in group["params"]]

    def state_dict(self):
        """A snapshot ``{"state": {index: {name: array or number}}, "param_groups": [...]}``.

        Parameters are numbered in group order (as in PyTorch). Arrays are copies and
        stay on their device; everything else is JSON-serialisable (tuples become lists).
        """
        index = {id(param): i for i, param in enumerate(self._indexed_params())}
        groups, start = [], 0
        for group in self.param_groups:
            packed = {key: list(value) if isinstance(value, tuple) else value
                      for key, value in group.items() if key != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(packed)
        state = {}
        for param, entries in self.state.items():
            state[index[id(param)]] = {
                key: value.copy() if hasattr(value, "shape") else value
                for key, value in entries.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and state saved by :meth:`state_dict`.

        All or nothing: the groups (same sizes as this optimizer's, every hyper-parameter
        of this class present and valid) and every state entry (the names this rule uses,
        real-float arrays shaped like their parameter, a non-negative integer ``step``)
        are checked before anything is assigned; on an error the optimizer is unchanged.
        Arrays are copied to each parameter's device and dtype; integer keys may come
        back as strings (JSON).
        """
        where = f"{self._name}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{where}: expected a dict with 'state' and 'param_groups' (from "
                            f"state_dict()), got {checks.describe(state_dict)}")
        saved_groups, saved_state = state_dict.get("param_groups"), state_dict.get("state")
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError(f"{where}: expected a dict with 'state' (a dict) and "
                             f"'param_groups' (a list), as state_dict() returns; got keys "
                             f"{sorted(map(str, state_dict))}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{where}: the state has {len(saved_groups)} param groups, "
                             f"this optimizer has {len(self.param_groups)}")
        by_index, new_groups = {}, []
        for i, (saved, current) in enumerate(zip(saved_groups, self.param_groups)):
            group = self._restore_group(saved, current, i, by_index)
            new_groups.append(group)
        new_state = {}
        for key, entries in saved_state.items():
            index = _state_index(key)
            if index not in by_index:
                raise ValueError(f"{where}: state for parameter {key!r}, which no param "
                                 "group lists")
            param, hyper = by_index[index]
            if not isinstance(entries, dict):
                raise TypeError(f"{where}: the state of parameter {key} must be a dict, got "
                                f"{checks.describe(entries)}")
            self._check_state_names(entries, param, hyper, key)
            new_state[param] = {name: self._restore_entry(name, value, param)
                                for name, value in entries.items()}
        self.param_groups = new_groups
        self.state = new_state

    def _restore_group(self, saved, current, index, by_index):
        """A checked copy of a saved group holding this optimizer's parameters; fills
        ``by_index`` (state index -> (param, hyper-parameters))."""
        where = f"{self._name}.load_state_dict"
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
            raise ValueError(f"{where}: param group {index} must be a dict with a 'params' "
                             f"list, got {checks.describe(saved)}")
        if len(saved["params"]) != len(current["params"]):
            raise ValueError(f"{where}: param group {index} has {len(saved['params'])} "
                             f"parameters in the state, {len(current['params'])} here")
        missing = [key for key in self.defaults if key not in saved]
        if missing:
            raise ValueError(f"{where}: param group {index} lacks {', '.join(missing)} (was "
                             f"the state saved by another optimizer class?)")
        group = {key: _plain(value) for key, value in saved.items() if key != "params"}
        group["params"] = current["params"]
        self._check_group(group, index)
        for key, param in zip(saved["params"], current["params"]):
            position = _state_index(key)
            if position in by_index:
                raise ValueError(f"{where}: parameter index {key} appears twice in the groups")
            by_index[position] = (param, group)
        return group

    def _check_state_names(self, entries, param, hyper, key):
        """The entries must be those this rule keeps (optional ones may be absent)."""
        initial = set(self._init_state(param, hyper))
        allowed = initial | set(self._optional_state_keys)
        needed = initial - set(self._optional_state_keys)
        names = set(entries)
        if not names <= allowed or not needed <= names:
            raise ValueError(f"{self._name}.load_state_dict: the state of parameter {key} has "
                             f"entries {sorted(map(str, names))}, expected "
                             f"{sorted(needed)} (optionally {sorted(allowed - needed)}); "
                             "was it saved by another optimizer class?")

    def _restore_entry(self, name, value, param):
        where = f"{self._name}.load_state_dict"
        if name in self._scalar_state_keys:
            if checks.is_array(value) and value.ndim == 0 and value.dtype.kind in "iu":
                value = value.item()
            return checks.positive_int(value, f"state {name!r} of {param!r}", where,
                                       allow_zero=True)
        return array_like_param(value, param, f"state {name!r} of {param!r}", where)

    def __repr__(self):
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {value}" for key, value in group.items() if key != "params"]
        return "\n".join(lines + [")"])


__all__ = ["Optimizer", "required"]

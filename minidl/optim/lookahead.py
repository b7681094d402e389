"""Lookahead: k fast steps of an inner optimizer, then pull back towards slow weights."""
from .. import checks
from .optimizer import array_like_param


def _index(key, count):
    """A parameter index of the state (an int, or its string after JSON) below ``count``."""
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    index = checks.integer(key, "parameter index", "Lookahead.load_state_dict", 0, count - 1)
    return index


class Lookahead:
    r"""Lookahead (Zhang et al., 2019) around any minidl optimizer.

    Every ``k`` steps of the inner optimizer, with ``phi`` the slow weights kept here
    and ``theta`` the fast (model) weights::

        phi = phi + alpha * (theta - phi)
        theta = phi

    ``alpha`` may be changed between steps (some recipes schedule it).
    ``param_groups`` is the inner optimizer's, so learning rate schedulers work
    unchanged. State: the slow weights (``"lookahead_slow"`` per parameter in
    :meth:`state_dict`) and the step counter.
    """

    def __init__(self, optimizer, k=5, alpha=0.5):
        if not hasattr(optimizer, "param_groups") or not hasattr(optimizer, "step"):
            raise TypeError("Lookahead: expected a minidl optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.k = checks.positive_int(k, "k", "Lookahead")
        self.alpha = checks.real_number(alpha, "alpha", "Lookahead", 0.0, 1.0)
        self.step_count = 0
        self.slow = {param: param.data.copy() for param in self._params()}

    def _params(self):
        return [param for group in self.optimizer.param_groups for param in group["params"]]

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def defaults(self):
        return self.optimizer.defaults

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self, closure=None):
        """One inner step; every k-th also moves the slow weights and resets the fast ones."""
        loss = self.optimizer.step(closure)
        self.step_count += 1
        if self.step_count % self.k == 0:
            for param, slow in self.slow.items():
                slow += self.alpha * (param.data - slow)
                param.data[...] = slow
        return loss

    def state_dict(self):
        """The inner optimizer's state dict plus the slow weights and the counter."""
        state = self.optimizer.state_dict()
        for index, param in enumerate(self._params()):
            state["state"].setdefault(index, {})["lookahead_slow"] = self.slow[param].copy()
        state["lookahead"] = {"k": self.k, "alpha": self.alpha, "step_count": self.step_count}
        return state

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict`: all or nothing (the inner optimizer's state, the slow
        weights and the settings are all checked before anything is assigned)."""
        where = "Lookahead.load_state_dict"
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("lookahead"), dict) \
                or not isinstance(state_dict.get("state"), dict):
            raise ValueError(f"{where}: expected a dict with 'state' and a 'lookahead' entry "
                             "(from Lookahead.state_dict())")
        meta = state_dict["lookahead"]
        if set(meta) != {"k", "alpha", "step_count"}:
            raise ValueError(f"{where}: 'lookahead' must hold k, alpha and step_count, got "
                             f"{sorted(map(str, meta))}")
        k = checks.positive_int(meta["k"], "k", "Lookahead")
        alpha = checks.real_number(meta["alpha"], "alpha", "Lookahead", 0.0, 1.0)
        step_count = checks.positive_int(meta["step_count"], "step_count", "Lookahead",
                                         allow_zero=True)
        params = self._params()
        inner_state, slow_weights = {}, {}
        for key, entries in state_dict["state"].items():
            if not isinstance(entries, dict):
                raise TypeError(f"{where}: the state of parameter {key} must be a dict, got "
                                f"{checks.describe(entries)}")
            entries = dict(entries)
            slow = entries.pop("lookahead_slow", None)
            if slow is not None:
                index = _index(key, len(params))
                param = params[index]
                slow_weights[param] = array_like_param(slow, param,
                                                       f"slow weights of {param!r}", where)
            if entries:
                inner_state[key] = entries
        # The inner optimizer checks its part first and changes nothing if it fails.
        self.optimizer.load_state_dict({"state": inner_state,
                                        "param_groups": state_dict.get("param_groups")})
        self.slow.update(slow_weights)
        self.k, self.alpha, self.step_count = k, alpha, step_count

    def __repr__(self):
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"


__all__ = ["Lookahead"]

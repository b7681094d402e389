"""Lookahead: k fast steps of an inner optimizer, then pull back towards slow weights."""
from .. import backend, checks


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
        if "lookahead" not in state_dict:
            raise ValueError("Lookahead.load_state_dict: no 'lookahead' entry; the state was "
                             "not saved by Lookahead.state_dict()")
        params = self._params()
        inner_state = {}
        for key, entries in state_dict["state"].items():
            entries = dict(entries)
            slow = entries.pop("lookahead_slow", None)
            param = params[int(key)]
            if slow is not None:
                if tuple(slow.shape) != tuple(param.data.shape):
                    raise ValueError(f"Lookahead.load_state_dict: slow weights of {param!r} "
                                     f"have shape {tuple(slow.shape)}, expected "
                                     f"{tuple(param.data.shape)}")
                slow = backend.to_device(slow, backend.device_of(param.data))
                self.slow[param] = slow.astype(param.data.dtype, copy=True)
            if entries:
                inner_state[key] = entries
        self.optimizer.load_state_dict({"state": inner_state,
                                        "param_groups": state_dict["param_groups"]})
        meta = state_dict["lookahead"]
        self.k, self.alpha = int(meta["k"]), float(meta["alpha"])
        self.step_count = int(meta["step_count"])

    def __repr__(self):
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"


__all__ = ["Lookahead"]

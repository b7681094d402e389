"""Adagrad: per-coordinate learning rates from the sum of squared gradients."""
from .. import backend
from .optimizer import Optimizer


class Adagrad(Optimizer):
    r"""Adagrad, exactly as torch.optim.Adagrad documents it.

    For each parameter p with gradient g, at step t = 1, 2, ...::

        g = g + weight_decay * p
        lr_t = lr / (1 + (t - 1) * lr_decay)
        s = s + g**2                    (s starts at initial_accumulator_value)
        p = p - lr_t * g / (sqrt(s) + eps)

    State per parameter: ``"step"``, ``"sum"`` (s).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    def _check_group(self, group, index):
        super()._check_group(group, index)
        self._check_range(group, index, "lr_decay", low=0.0)
        self._check_range(group, index, "initial_accumulator_value", low=0.0)

    def _init_state(self, param, hyper):
        xp = backend.get_array_module(param.data)
        return {"step": 0,
                "sum": xp.full_like(param.data, hyper["initial_accumulator_value"])}

    def _update(self, param, grad, state, hyper):
        xp = backend.get_array_module(param.data)
        state["step"] += 1
        if hyper["weight_decay"] != 0:
            grad = grad + hyper["weight_decay"] * param.data
        lr = hyper["lr"] / (1.0 + (state["step"] - 1) * hyper["lr_decay"])
        state["sum"] += grad * grad
        param.data -= lr * grad / (xp.sqrt(state["sum"]) + hyper["eps"])


__all__ = ["Adagrad"]

"""Adadelta: step sizes from running averages of squared gradients and squared updates."""
from .. import backend
from .optimizer import Optimizer


class Adadelta(Optimizer):
    r"""Adadelta, exactly as torch.optim.Adadelta documents it.

    For each parameter p with gradient g::

        g = g + weight_decay * p
        v = rho * v + (1 - rho) * g**2
        dx = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * dx**2
        p = p - lr * dx

    State per parameter: ``"step"``, ``"square_avg"`` (v), ``"acc_delta"`` (u).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def _check_group(self, group, index):
        super()._check_group(group, index)
        self._check_range(group, index, "rho", low=0.0, high=1.0)

    def _init_state(self, param, hyper):
        xp = backend.get_array_module(param.data)
        return {"step": 0, "square_avg": xp.zeros_like(param.data),
                "acc_delta": xp.zeros_like(param.data)}

    def _update(self, param, grad, state, hyper):
        xp = backend.get_array_module(param.data)
        rho, eps = hyper["rho"], hyper["eps"]
        state["step"] += 1
        if hyper["weight_decay"] != 0:
            grad = grad + hyper["weight_decay"] * param.data
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg *= rho
        square_avg += (1.0 - rho) * (grad * grad)
        delta = xp.sqrt(acc_delta + eps) / xp.sqrt(square_avg + eps) * grad
        acc_delta *= rho
        acc_delta += (1.0 - rho) * (delta * delta)
        param.data -= hyper["lr"] * delta


__all__ = ["Adadelta"]

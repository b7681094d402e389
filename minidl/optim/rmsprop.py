"""RMSprop: divide the gradient by a running root mean square of recent gradients."""
from .. import backend
from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop, exactly as torch.optim.RMSprop documents it.

    For each parameter p with gradient g (``mu`` = momentum)::

        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g**2
        g_avg = alpha * g_avg + (1 - alpha) * g          (centered)
        d = sqrt(v - g_avg**2) + eps   (centered)   or   d = sqrt(v) + eps
        b = mu * b + g / d;  p = p - lr * b              if momentum > 0
        p = p - lr * g / d                               otherwise

    State per parameter: ``"step"``, ``"square_avg"`` (v), ``"grad_avg"`` (centered),
    ``"momentum_buffer"`` (momentum > 0). A zero gradient gives a zero step (eps > 0).
    """

    _optional_state_keys = ("momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _check_group(self, group, index):
        super()._check_group(group, index)
        # alpha > 1 would make the running mean of g**2 negative: sqrt of it is NaN.
        self._check_range(group, index, "alpha", low=0.0, high=1.0)
        self._check_flag(group, index, "centered")

    def _init_state(self, param, hyper):
        xp = backend.get_array_module(param.data)
        state = {"step": 0, "square_avg": xp.zeros_like(param.data)}
        if hyper["momentum"] > 0:
            state["momentum_buffer"] = xp.zeros_like(param.data)
        if hyper["centered"]:
            state["grad_avg"] = xp.zeros_like(param.data)
        return state

    def _update(self, param, grad, state, hyper):
        xp = backend.get_array_module(param.data)
        alpha, momentum = hyper["alpha"], hyper["momentum"]
        state["step"] += 1
        if hyper["weight_decay"] != 0:
            grad = grad + hyper["weight_decay"] * param.data
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1.0 - alpha) * (grad * grad)
        if hyper["centered"]:
            if "grad_avg" not in state:
                state["grad_avg"] = xp.zeros_like(param.data)
            grad_avg = state["grad_avg"]
            grad_avg *= alpha
            grad_avg += (1.0 - alpha) * grad
            denom = xp.sqrt(square_avg - grad_avg * grad_avg) + hyper["eps"]
        else:
            denom = xp.sqrt(square_avg) + hyper["eps"]
        if momentum > 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = xp.zeros_like(param.data)
            buffer = state["momentum_buffer"]
            buffer *= momentum
            buffer += grad / denom
            param.data -= hyper["lr"] * buffer
        else:
            param.data -= hyper["lr"] * grad / denom


__all__ = ["RMSprop"]

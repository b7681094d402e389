"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""
from .optimizer import Optimizer, required


class SGD(Optimizer):
    r"""SGD, exactly as torch.optim.SGD documents it.

    For each parameter p with gradient g, at step t (``mu`` = momentum,
    ``tau`` = dampening, ``lambda`` = weight_decay)::

        g = g + lambda * p                       if weight_decay != 0
        b = g                                    at the first step
        b = mu * b + (1 - tau) * g               afterwards            if momentum != 0
        g = g + mu * b   (nesterov)   or   g = b
        p = p - lr * g

    State per parameter: ``"momentum_buffer"`` (only when momentum != 0).
    Nesterov momentum needs momentum > 0 and dampening = 0.
    """

    _optional_state_keys = ("momentum_buffer",)

    def __init__(self, params, lr=required, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def _check_group(self, group, index):
        super()._check_group(group, index)
        self._check_range(group, index, "dampening", low=0.0, high=1.0)
        self._check_flag(group, index, "nesterov")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum requires momentum > 0 and dampening = 0, "
                             f"got momentum={group['momentum']}, dampening={group['dampening']} "
                             f"in param group {index}")

    def _update(self, param, grad, state, hyper):
        momentum, weight_decay = hyper["momentum"], hyper["weight_decay"]
        if weight_decay != 0:
            grad = grad + weight_decay * param.data
        if momentum != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                # Copy: param.grad is zeroed before the next backward.
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                buffer += (1.0 - hyper["dampening"]) * grad
            grad = grad + momentum * buffer if hyper["nesterov"] else buffer
        param.data -= hyper["lr"] * grad


__all__ = ["SGD"]

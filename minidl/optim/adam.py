"""Adam (with AMSGrad), AdamW (decoupled weight decay) and Adamax."""
import math

from .. import backend
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam, exactly as torch.optim.Adam documents it.

    For each parameter p with gradient g, at step t = 1, 2, ...::

        g = g + weight_decay * p                       (L2 penalty; AdamW decouples it)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        v_max = max(v_max, v)                          (amsgrad; then v_max replaces v)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    State per parameter: ``"step"`` (int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and,
    with amsgrad, ``"max_exp_avg_sq"``. A zero gradient gives a zero step (eps > 0).
    """

    _optional_state_keys = ("max_exp_avg_sq",)

    # AdamW sets this: weight decay shrinks p directly instead of entering g.
    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check_group(self, group, index):
        super()._check_group(group, index)
        self._check_betas(group, index)
        self._check_flag(group, index, "amsgrad")

    def _init_state(self, param, hyper):
        xp = backend.get_array_module(param.data)
        state = {"step": 0, "exp_avg": xp.zeros_like(param.data),
                 "exp_avg_sq": xp.zeros_like(param.data)}
        if hyper["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(param.data)
        return state

    def _update(self, param, grad, state, hyper):
        xp = backend.get_array_module(param.data)
        lr, (beta1, beta2), weight_decay = hyper["lr"], hyper["betas"], hyper["weight_decay"]
        state["step"] += 1
        step = state["step"]
        if weight_decay != 0:
            if self._decoupled_weight_decay:
                param.data *= 1.0 - lr * weight_decay
            else:
                grad = grad + weight_decay * param.data
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * (grad * grad)
        if hyper["amsgrad"]:
            if "max_exp_avg_sq" not in state:  # amsgrad switched on after the first step
                state["max_exp_avg_sq"] = xp.zeros_like(param.data)
            xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]
        bias_correction1 = 1.0 - beta1 ** step
        bias_correction2 = 1.0 - beta2 ** step
        denom = xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + hyper["eps"]
        param.data -= (lr / bias_correction1) * exp_avg / denom


class AdamW(Adam):
    r"""Adam with decoupled weight decay, as torch.optim.AdamW documents it.

    Same as :class:`Adam` except that weight decay multiplies the parameter before the
    Adam step instead of adding to the gradient: ``p = p * (1 - lr * weight_decay)``.
    Default weight_decay is 1e-2 (as in PyTorch).
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


class Adamax(Optimizer):
    r"""Adamax (Adam with the infinity norm), as torch.optim.Adamax documents it.

    For each parameter p with gradient g, at step t = 1, 2, ...::

        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        u = max(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1**t) * m / u

    State per parameter: ``"step"``, ``"exp_avg"`` (m), ``"exp_inf"`` (u).
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_group(self, group, index):
        super()._check_group(group, index)
        self._check_betas(group, index)

    def _init_state(self, param, hyper):
        xp = backend.get_array_module(param.data)
        return {"step": 0, "exp_avg": xp.zeros_like(param.data),
                "exp_inf": xp.zeros_like(param.data)}

    def _update(self, param, grad, state, hyper):
        xp = backend.get_array_module(param.data)
        beta1, beta2 = hyper["betas"]
        state["step"] += 1
        if hyper["weight_decay"] != 0:
            grad = grad + hyper["weight_decay"] * param.data
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * grad
        exp_inf *= beta2
        xp.maximum(exp_inf, xp.abs(grad) + hyper["eps"], out=exp_inf)
        step_size = hyper["lr"] / (1.0 - beta1 ** state["step"])
        param.data -= step_size * exp_avg / exp_inf


__all__ = ["Adam", "AdamW", "Adamax"]

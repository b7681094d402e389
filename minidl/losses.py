"""Loss functions, mean-reduced like PyTorch's defaults.

Every loss is used the same way::

    loss_fn = CrossEntropyLoss()
    loss = loss_fn(pred, target)   # a scalar: np.float32/np.float64 on NumPy, 0-d array on CuPy
    dpred = loss_fn.backward()     # dL/dpred, shaped like pred, same dtype

``loss`` is a NumPy scalar (``float(loss)`` works) or, on the GPU, a 0-d CuPy array, so
computing it does not wait for the device. The call caches what ``backward`` needs;
``backward`` frees it (a second ``backward`` without a new call is an error).

Checks (each error names the loss): pred must be a float32/float64 array of the right
number of axes; targets must have the right dtype and batch size and live on pred's
device; value checks also refuse NaN/Inf in pred or in float targets, and integer
class targets outside ``[0, K)``. Those cost one reduction per call and, on the GPU, a
wait for the device, so ``check_values=None`` (the default) runs them on NumPy only;
``True`` forces them everywhere, ``False`` skips them.

Classification with the regression-style losses: :class:`BCEWithLogitsLoss`,
:class:`MSELoss`, :class:`HuberLoss` and :class:`SoftMarginLoss` take, besides float
targets shaped like pred, integer class indices ``(N,)`` with scores ``(N, K)``; the
indices are one-hot encoded (off value 0, or -1 for SoftMarginLoss), so each of them
can train a K-class classifier in place of cross-entropy.
"""

import numpy as np

from . import checks
from .backend import device_of, get_array_module
from .checks import float_array, integer, real_number
from .functional import log_softmax, sigmoid, softplus


class Loss:
    """Base class: argument checks, the cache between call and backward.

    Subclasses implement ``forward(pred, target) -> loss`` (saving with
    :meth:`save_for_backward`) and ``backward() -> dpred`` (taking it back with
    :meth:`saved_for_backward`). ``pred_name`` names pred in error messages.
    """

    pred_name = "predictions"

    def __init__(self, check_values=None):
        self.check_values = None if check_values is None else \
            checks.boolean(check_values, "check_values", type(self).__name__)
        self._saved = None

    @property
    def name(self):
        return type(self).__name__

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def forward(self, pred, target):
        raise NotImplementedError(f"{self.name} does not implement forward")

    def backward(self):
        raise NotImplementedError(f"{self.name} does not implement backward")

    def save_for_backward(self, *values):
        self._saved = values

    def saved_for_backward(self):
        """What the last call saved; freed, so backward runs once per call."""
        if self._saved is None:
            raise RuntimeError(f"{self.name}.backward: nothing saved; call the loss "
                               "(loss = loss_fn(pred, target)) before backward, and backward "
                               "once per call")
        saved, self._saved = self._saved, None
        return saved if len(saved) != 1 else saved[0]

    def __repr__(self):
        return f"{self.name}()"

    # ------------------------------------------------------------------ checks
    def _check_pred(self, pred, expected):
        """pred must be a float array; ``expected`` "(N, K)" fixes 2-D, "(N, ...)" allows any."""
        float_array(pred, self.name, expected, what=self.pred_name)
        fixed_ndim = "..." not in expected
        ndim = len(expected.strip("()").split(","))
        if (fixed_ndim and pred.ndim != ndim) or pred.ndim < 1:
            raise ValueError(f"{self.name}: expected {self.pred_name} of shape {expected}, "
                             f"got shape {tuple(pred.shape)} ({pred.ndim}-D)")
        if 0 in pred.shape:  # a mean over no values has no value (PyTorch returns NaN)
            raise ValueError(f"{self.name}: got {self.pred_name} of shape "
                             f"{tuple(pred.shape)} with no values; the mean loss needs at least "
                             "one")

    def _check_target_array(self, pred, target):
        if not hasattr(target, "shape") or not hasattr(target, "dtype"):
            raise TypeError(f"{self.name}: expected targets as an array, "
                            f"got {type(target).__name__}")
        if device_of(target) != device_of(pred):
            raise ValueError(f"{self.name}: targets are on {device_of(target)} but "
                             f"{self.pred_name} are on {device_of(pred)}; move them with "
                             "minidl.to_device")

    def _class_targets(self, pred, target):
        """Check integer class indices ``(N,)`` for pred ``(N, K)``; return them as int64."""
        self._check_target_array(pred, target)
        if target.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: expected integer class indices of shape (N,), got "
                            f"dtype {target.dtype}; convert labels with .astype(np.int64)")
        if target.ndim != 1:
            raise ValueError(f"{self.name}: expected class indices of shape (N,), got shape "
                             f"{tuple(target.shape)}")
        if target.shape[0] != pred.shape[0]:
            raise ValueError(f"{self.name}: batch size mismatch: {self.pred_name} have "
                             f"{pred.shape[0]} rows, targets have {target.shape[0]}")
        return target.astype(get_array_module(pred).int64, copy=False)

    def _check_values(self, pred, target=None, num_classes=None):
        """NaN/Inf in pred (and float targets); class indices in [0, num_classes).

        One combined flag, so the GPU is waited for once; details only on failure.
        """
        xp = get_array_module(pred)
        if self.check_values is False or (self.check_values is None and xp is not np):
            return
        ok = xp.isfinite(pred).all()
        if num_classes is not None:
            ok = ok & (target.min() >= 0) & (target.max() < num_classes)
        elif target is not None:
            ok = ok & xp.isfinite(target).all()
        if bool(ok):
            return
        bad = ~xp.isfinite(pred)
        if bool(bad.any()):
            raise ValueError(f"{self.name}: {self.pred_name} contain NaN or Inf "
                             f"({int(bad.sum())} of {pred.size} values)")
        if num_classes is not None:
            outside = target[(target < 0) | (target >= num_classes)]
            raise ValueError(f"{self.name}: target class indices must be in [0, {num_classes}), "
                             f"got {int(outside[0])} ({outside.size} of {target.size} "
                             "out of range)")
        raise ValueError(f"{self.name}: targets contain NaN or Inf "
                         f"({int((~xp.isfinite(target)).sum())} of {target.size} values)")

    def _dense_targets(self, pred, target, off_value=0.0):
        """Float targets shaped like pred (cast to pred's dtype), or class indices one-hot.

        Integer targets ``(N,)`` with pred ``(N, K)`` become a one-hot ``(N, K)`` array
        with ``1`` at the class and ``off_value`` elsewhere.
        """
        self._check_target_array(pred, target)
        xp = get_array_module(pred)
        if target.dtype.kind in "iu":
            if pred.ndim != 2:
                raise ValueError(f"{self.name}: integer class targets need {self.pred_name} of "
                                 f"shape (N, K), got shape {tuple(pred.shape)}; otherwise give "
                                 "float targets shaped like them")
            indices = self._class_targets(pred, target)
            self._check_values(pred, indices, num_classes=pred.shape[1])
            hot = xp.arange(pred.shape[1]) == indices[:, None]
            dense = hot.astype(pred.dtype)
            if off_value != 0.0:
                dense = dense * (1.0 - off_value) + off_value
            return dense
        if target.dtype.kind != "f":
            raise TypeError(f"{self.name}: expected float targets shaped like {self.pred_name} "
                            f"{tuple(pred.shape)} (or integer class indices (N,) with (N, K) "
                            f"{self.pred_name}), got dtype {target.dtype}")
        if tuple(target.shape) != tuple(pred.shape):
            if target.ndim >= 1 and target.shape[0] != pred.shape[0]:
                raise ValueError(f"{self.name}: batch size mismatch: {self.pred_name} have "
                                 f"{pred.shape[0]} rows, targets have {target.shape[0]}")
            raise ValueError(f"{self.name}: expected targets of shape {tuple(pred.shape)} (like "
                             f"the {self.pred_name}), got {tuple(target.shape)}")
        target = target.astype(pred.dtype, copy=False)
        self._check_values(pred, target)
        return target


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits ``(N, K)`` or ``(N, K, d1, ...)`` with integer class
    targets ``(N,)`` or ``(N, d1, ...)``, as ``torch.nn.CrossEntropyLoss``.

    ``L = mean over counted positions of [ -(1 - s) log p[t] - s/K sum_k log p[k] ]``,
    p = softmax over the class axis 1, s = ``label_smoothing`` (PyTorch's: the target
    distribution is ``(1 - s) onehot + s / K``). Positions whose target equals
    ``ignore_index`` (default -100) are not counted (every position ignored: NaN, as in
    PyTorch). The log-softmax subtracts each row's maximum first. Caches p (classes
    last) and the targets. Gradient: ``dlogits = (p - q) / count`` at counted
    positions, 0 at ignored ones, q the target distribution.
    """

    pred_name = "logits"

    def __init__(self, label_smoothing=0.0, ignore_index=-100, check_values=None):
        super().__init__(check_values)
        self.label_smoothing = real_number(label_smoothing, "label_smoothing",
                                           "CrossEntropyLoss", 0.0, 1.0)
        self.ignore_index = integer(ignore_index, "ignore_index", "CrossEntropyLoss")

    def _targets(self, logits, target):
        """Integer targets shaped like logits without the class axis, as int64."""
        self._check_target_array(logits, target)
        expected = (logits.shape[0],) + tuple(logits.shape[2:])
        if target.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: expected integer class indices of shape {expected}, "
                            f"got dtype {target.dtype}; convert labels with .astype(np.int64)")
        if target.ndim >= 1 and target.shape[0] != logits.shape[0]:
            raise ValueError(f"{self.name}: batch size mismatch: logits have {logits.shape[0]} "
                             f"rows, targets have {target.shape[0]}")
        if tuple(target.shape) != expected:
            raise ValueError(f"{self.name}: expected class indices of shape (N,) or (N, d1, ...) "
                             f"(the logits' shape without the class axis 1: {expected}), got "
                             f"shape {tuple(target.shape)}")
        return target.astype(get_array_module(logits).int64, copy=False).reshape(-1)

    def forward(self, logits, target):
        self._check_pred(logits, "(N, K, ...)")
        if logits.ndim < 2:
            raise ValueError(f"{self.name}: expected logits of shape (N, K) or (N, K, d1, ...), "
                             f"got shape {tuple(logits.shape)} (1-D)")
        target = self._targets(logits, target)
        xp = get_array_module(logits)
        k = logits.shape[1]
        rows = logits if logits.ndim == 2 else xp.moveaxis(logits, 1, -1).reshape(-1, k)
        counted = target != self.ignore_index
        target = xp.where(counted, target, 0)  # any class: the row is weighted by 0
        self._check_values(rows, target, num_classes=k)
        log_probs, probs = log_softmax(rows, axis=1)
        per_row = -xp.take_along_axis(log_probs, target[:, None], axis=1)[:, 0]
        if self.label_smoothing > 0.0:
            s = self.label_smoothing
            per_row = (1.0 - s) * per_row - s * log_probs.mean(axis=1)
        weight = counted.astype(rows.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: NaN, no warning
            weight /= weight.sum()
        self.save_for_backward(probs, target, weight, logits.shape)
        return (per_row * weight).sum()

    def backward(self):
        probs, target, weight, shape = self.saved_for_backward()
        xp = get_array_module(probs)
        grad = probs  # the cache is ours alone: reuse its memory
        grad[xp.arange(grad.shape[0]), target] -= 1.0 - self.label_smoothing
        if self.label_smoothing > 0.0:
            grad -= self.label_smoothing / shape[1]
        grad *= weight[:, None]
        if len(shape) == 2:
            return grad
        return xp.moveaxis(grad.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],)), -1, 1)

    def __repr__(self):
        return (f"CrossEntropyLoss(label_smoothing={self.label_smoothing}, "
                f"ignore_index={self.ignore_index})")


class NLLLoss(Loss):
    """Negative log-likelihood on log-probabilities ``(N, K)`` with class targets ``(N,)``.

    ``L = -mean_n logp[n, t_n]`` (use after a log-softmax). Caches the targets and shape.
    Gradient: ``-1/N`` at each sample's target class, 0 elsewhere.
    """

    pred_name = "log-probabilities"

    def forward(self, log_probs, target):
        self._check_pred(log_probs, "(N, K)")
        target = self._class_targets(log_probs, target)
        self._check_values(log_probs, target, num_classes=log_probs.shape[1])
        xp = get_array_module(log_probs)
        self.save_for_backward(target, log_probs.shape, log_probs.dtype)
        return -xp.take_along_axis(log_probs, target[:, None], axis=1).mean()

    def backward(self):
        target, shape, dtype = self.saved_for_backward()
        xp = get_array_module(target)
        grad = xp.zeros(shape, dtype=dtype)
        grad[xp.arange(shape[0]), target] = -1.0 / shape[0]
        return grad


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits, ``L = mean[ -t log s(z) - (1 - t) log(1 - s(z)) ]``.

    z: logits ``(N, ...)``; t: float targets in [0, 1] of the same shape, or integer class
    indices ``(N,)`` with z ``(N, K)`` (one-hot encoded: K independent sigmoid outputs).
    Stable form ``max(z, 0) - z t + log(1 + e^-|z|)``. Caches z and t.
    Gradient: ``dz = (sigmoid(z) - t) / z.size``.
    """

    pred_name = "logits"

    def forward(self, logits, target):
        self._check_pred(logits, "(N, ...)")
        target = self._dense_targets(logits, target)
        xp = get_array_module(logits)
        self.save_for_backward(logits, target)
        return (xp.maximum(logits, 0.0) - logits * target
                + xp.log1p(xp.exp(-xp.abs(logits)))).mean()

    def backward(self):
        logits, target = self.saved_for_backward()
        grad = sigmoid(logits)
        grad -= target
        grad *= 1.0 / logits.size
        return grad


class MSELoss(Loss):
    """Mean squared error ``L = mean((pred - t)^2)`` over every element.

    pred ``(N, ...)``; t float of the same shape, or integer class indices ``(N,)`` with
    pred ``(N, K)`` (one-hot encoded). Caches ``pred - t``. Gradient: ``2 (pred - t) / size``.
    """

    def forward(self, pred, target):
        self._check_pred(pred, "(N, ...)")
        diff = pred - self._dense_targets(pred, target)
        self.save_for_backward(diff)
        return (diff * diff).mean()

    def backward(self):
        diff = self.saved_for_backward()
        return diff * (2.0 / diff.size)


class HuberLoss(Loss):
    """Huber loss: quadratic for ``|d| < delta``, linear beyond (PyTorch's HuberLoss).

    ``l(d) = d^2 / 2`` if ``|d| < delta`` else ``delta (|d| - delta / 2)``, d = pred - t,
    mean over every element; computed branch-free as ``q^2/2 + delta (|d| - q)`` with
    ``q = min(|d|, delta)``. Targets as for :class:`MSELoss`. Caches d.
    Gradient: ``clip(d, -delta, delta) / size``.
    """

    def __init__(self, delta=1.0, check_values=None):
        super().__init__(check_values)
        # a positive real number (bools, None, strings, NaN, inf and 10**400 refused)
        self.delta = checks.real_number(delta, "delta", "HuberLoss", 0.0, low_open=True)

    def forward(self, pred, target):
        self._check_pred(pred, "(N, ...)")
        xp = get_array_module(pred)
        diff = pred - self._dense_targets(pred, target)
        magnitude = xp.abs(diff)
        quadratic = xp.minimum(magnitude, self.delta)
        self.save_for_backward(diff)
        return (0.5 * quadratic * quadratic + self.delta * (magnitude - quadratic)).mean()

    def backward(self):
        diff = self.saved_for_backward()
        xp = get_array_module(diff)
        return xp.clip(diff, -self.delta, self.delta) * (1.0 / diff.size)

    def __repr__(self):
        return f"HuberLoss(delta={self.delta})"


class SoftMarginLoss(Loss):
    """Two-class logistic loss ``L = mean(log(1 + exp(-t z)))`` with targets t in {-1, +1}.

    z ``(N, ...)``; t float of the same shape, or integer class indices ``(N,)`` with
    z ``(N, K)``, one-hot encoded as +1 at the class and -1 elsewhere. Stable softplus.
    Caches z and t. Gradient: ``dz = -t sigmoid(-t z) / size``.
    """

    pred_name = "logits"

    def forward(self, logits, target):
        self._check_pred(logits, "(N, ...)")
        target = self._dense_targets(logits, target, off_value=-1.0)
        self.save_for_backward(logits, target)
        return softplus(-target * logits).mean()

    def backward(self):
        logits, target = self.saved_for_backward()
        grad = sigmoid(-target * logits)
        grad *= -target
        grad *= 1.0 / logits.size
        return grad


class MultiMarginLoss(Loss):
    """The multi-class hinge loss of CS231n's SVM, as ``torch.nn.MultiMarginLoss``.

    scores x ``(N, K)``, integer targets y ``(N,)``::

        L = mean_n  sum_{i != y_n} w[y_n] * max(0, margin - x[n, y_n] + x[n, i])^p / K

    ``MultiMarginLoss(p=1, margin=1.0, weight=None)``: p is 1 or 2; ``weight`` (K,)
    optionally scales each sample's terms by the weight of its class. Caches the
    margins' active part. Gradient: each active term adds ``w p h^(p-1) / (N K)`` to
    ``x[n, i]`` and subtracts it from ``x[n, y_n]`` (h the term inside the max).
    """

    pred_name = "scores"

    def __init__(self, p=1, margin=1.0, weight=None, check_values=None):
        super().__init__(check_values)
        self.p = integer(p, "p", "MultiMarginLoss", 1, 2)
        self.margin = real_number(margin, "margin", "MultiMarginLoss")
        if weight is not None:
            float_array(weight, "MultiMarginLoss", "(K,)", what="weight")
            if weight.ndim != 1 or (get_array_module(weight) is np
                                    and not bool(np.isfinite(weight).all())):
                raise ValueError(f"MultiMarginLoss: expected weight as finite numbers of shape "
                                 f"(K,), got shape {tuple(weight.shape)}")
        self.weight = weight

    def forward(self, scores, target):
        self._check_pred(scores, "(N, K)")
        target = self._class_targets(scores, target)
        n, k = scores.shape
        self._check_values(scores, target, num_classes=k)
        if self.weight is not None and tuple(self.weight.shape) != (k,):
            raise ValueError(f"{self.name}: expected weight of shape ({k},), got "
                             f"{tuple(self.weight.shape)}")
        xp = get_array_module(scores)
        if abs(self.margin) > float(xp.finfo(scores.dtype).max):
            raise ValueError(f"{self.name}: margin {self.margin:g} is beyond the range of "
                             f"{scores.dtype} scores")
        correct = xp.take_along_axis(scores, target[:, None], axis=1)
        hinge = xp.maximum(self.margin - correct + scores, 0.0)
        hinge[xp.arange(n), target] = 0.0  # the sum skips i = y
        scale = xp.full((n, 1), 1.0 / (n * k), dtype=scores.dtype)
        if self.weight is not None:
            scale = scale * self.weight.astype(scores.dtype)[target][:, None]
        self.save_for_backward(hinge, target, scale)
        return ((hinge if self.p == 1 else hinge * hinge) * scale).sum()

    def backward(self):
        hinge, target, scale = self.saved_for_backward()
        xp = get_array_module(hinge)
        grad = (hinge > 0) * scale if self.p == 1 else 2.0 * hinge * scale
        grad = grad.astype(hinge.dtype, copy=False)
        grad[xp.arange(grad.shape[0]), target] = -grad.sum(axis=1)
        return grad

    def __repr__(self):
        return f"MultiMarginLoss(p={self.p}, margin={self.margin})"


__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "Loss", "MSELoss",
           "MultiMarginLoss", "NLLLoss", "SoftMarginLoss"]

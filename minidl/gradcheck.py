"""Finite-difference gradient checks for layers and losses.

The analytic gradient of a layer is compared with centered differences of the scalar
``L = sum(layer(x) * dy)`` for a *random* upstream gradient ``dy`` (an all-ones ``dy``
hides errors in BatchNorm and softmax, whose rows sum to constants)::

    dL/dx_i  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

Everything runs in float64; the layer is cast for the check and restored afterwards
(parameters, buffers, dtype). Random layers (Dropout) see the same random draws in
every forward pass of a check, because the generator state is reset before each pass.

Errors are relative: ``|a - b| / max(|a| + |b|, tiny)`` and a tensor passes when its
largest error is at most ``rtol``. The floor ``tiny = atol / rtol`` keeps entries that
are zero in exact arithmetic (where both sides are round-off) from dividing noise by
noise: for them the test reads ``|a - b| <= atol``. Tolerances live in :data:`TOLERANCES`.

Run ``python -m minidl.gradcheck`` for a table of every built-in layer's errors.
"""
import numpy as np

from . import backend
from .module import Module

#: Tolerances, in one place. Checks always run in float64 (the layer is cast for the
#: check), where eps=1e-6 leaves truncation error ~eps^2 and round-off
#: ~1e-16 * |L| / eps ~ 1e-9 for the small tensors of the tests: both far below these.
#: (float32 is far too coarse for finite differences; examples/gradcheck_eps.py shows why.)
TOLERANCES = {
    np.dtype(np.float64): {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-7},
}
TINY = 1e-30


def rel_error(a, b, tiny=TINY):
    """Largest elementwise ``|a - b| / max(|a| + |b|, tiny)`` (a float)."""
    a, b = backend.to_numpy(a).astype(np.float64), backend.to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), tiny)))


def numerical_gradient(f, x, eps=1e-6):
    """Centered-difference gradient of the scalar function ``f(x)`` at ``x``.

    ``x`` is perturbed in place one entry at a time and restored; returns an array
    shaped like ``x``. Costs 2 * x.size evaluations of ``f``.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: x must be contiguous
    if not np.shares_memory(flat, x) and x.size > 0:
        raise ValueError("numerical_gradient: x must be a contiguous array")
    for i in range(flat.size):
        original = flat[i].item()
        flat[i] = original + eps
        f_plus = float(f(x))
        flat[i] = original - eps
        f_minus = float(f(x))
        flat[i] = original
        grad.reshape(-1)[i] = (f_plus - f_minus) / (2 * eps)
    return grad


class GradcheckResult:
    """Per-tensor comparison of analytic and numerical gradients.

    ``entries`` maps "input" and each parameter name to a dict with ``max_rel_error``,
    ``passed`` and ``worst`` (a few (index, analytic, numeric) triples).
    """

    def __init__(self, name, entries):
        self.name = name
        self.entries = entries

    @property
    def passed(self):
        return all(entry["passed"] for entry in self.entries.values())

    @property
    def errors(self):
        return {key: entry["max_rel_error"] for key, entry in self.entries.items()}

    def table(self):
        lines = [f"gradient check of {self.name}",
                 f"  {'tensor':<24}{'max rel error':>15}  result"]
        for key, entry in self.entries.items():
            lines.append(f"  {key:<24}{entry['max_rel_error']:>15.2e}  "
                         f"{'ok' if entry['passed'] else 'FAIL'}")
            if not entry["passed"]:
                for index, analytic, numeric in entry["worst"]:
                    lines.append(f"      at {index}: analytic {analytic:+.8e}  numeric {numeric:+.8e}")
        return "\n".join(lines)

    def __repr__(self):
        return self.table()


def _compare(analytic, numeric, rtol, atol, worst=5):
    analytic = backend.to_numpy(analytic).astype(np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"gradient shape {analytic.shape} differs from the tensor's {numeric.shape}")
    diff = np.abs(analytic - numeric)
    errors = diff / np.maximum(np.abs(analytic) + np.abs(numeric), atol / rtol)
    max_error = float(errors.max()) if errors.size else 0.0
    order = np.argsort(-errors, axis=None)[:worst]
    return {
        "max_rel_error": max_error,
        "max_abs_error": float(diff.max()) if diff.size else 0.0,
        "passed": max_error <= rtol,
        "worst": [(tuple(int(j) for j in np.unravel_index(i, analytic.shape)),
                   float(analytic.flat[i]), float(numeric.flat[i])) for i in order],
    }


def _tolerances(eps, rtol, atol):
    defaults = TOLERANCES[np.dtype(np.float64)]
    return (defaults["eps"] if eps is None else eps,
            defaults["rtol"] if rtol is None else rtol,
            defaults["atol"] if atol is None else atol)


class _Float64Check:
    """Cast a module to float64 for a check, then restore its state and dtype."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        arrays = [p.data for p in self.module.parameters()] + [
            b for _, b in self.module.named_buffers() if b.dtype.kind == "f"]
        self.dtype = arrays[0].dtype if arrays else None
        self.state = self.module.state_dict()
        self.rng_state = backend.get_rng_state()
        self.input_grad_flags = [(m, m.needs_input_grad) for _, m in self.module.named_modules()]
        self.module.to(np.float64)
        self.module.set_needs_input_grad(True)  # the check compares dx too
        return self

    def __exit__(self, *exc):
        if self.dtype is not None:
            self.module.to(self.dtype)
        self.module.load_state_dict(self.state)
        for module, flag in self.input_grad_flags:
            object.__setattr__(module, "needs_input_grad", flag)
        backend.set_rng_state(self.rng_state)


def check_layer(layer, x, dy=None, eps=None, rtol=None, atol=None, seed=0,
                directional=False, name=None):
    """Compare ``layer.backward`` with finite differences for the input and every parameter.

    x: input array (any float dtype; cast to float64). dy: upstream gradient, shaped like
    the output; default a seeded standard normal. ``directional=True`` replaces the
    full Jacobian check by one random direction per tensor (two forward passes per
    tensor instead of 2 * size): compares ``<grad, d>`` with
    ``(L(t + eps d) - L(t - eps d)) / (2 eps)``. Returns a :class:`GradcheckResult`.
    """
    eps, rtol, atol = _tolerances(eps, rtol, atol)
    xp = backend.get_array_module(x)
    # A stream of its own, so dy never equals an input drawn with the same seed
    # (dy == x would make BatchNorm's input gradient vanish and the check vacuous).
    draw = np.random.default_rng([seed, 1])
    name = name or type(layer).__name__
    with _Float64Check(layer):
        x = xp.array(x, dtype=np.float64)  # a private, contiguous copy
        rng_state = backend.get_rng_state()

        def forward(inp):
            backend.set_rng_state(rng_state)  # same dropout mask in every pass
            return layer(inp)

        y = forward(x)
        if dy is None:
            dy = xp.asarray(draw.standard_normal(y.shape))
        dy = xp.asarray(dy, dtype=np.float64)
        layer.zero_grad()
        dx = layer.backward(dy)

        def loss(_=None):
            out = forward(x)
            layer.drop_saved()
            return float(xp.sum(out * dy))

        tensors = [("input", x, dx)] + [(pname, p.data, p.grad.copy())
                                         for pname, p in layer.named_parameters()]
        entries = {}
        for tname, tensor, analytic in tensors:
            if directional:
                direction = xp.asarray(draw.standard_normal(tensor.shape))
                tensor += eps * direction
                plus = loss()
                tensor -= 2 * eps * direction
                minus = loss()
                tensor += eps * direction
                numeric = np.array([(plus - minus) / (2 * eps)])
                analytic = np.array([float(xp.sum(analytic * direction))])
            elif xp is np:
                numeric = numerical_gradient(loss, tensor, eps)
            else:  # perturb a host copy and upload it: slow, but checks run on tiny tensors
                host = backend.to_numpy(tensor).copy()

                def loss_at(values, tensor=tensor):
                    tensor[...] = xp.asarray(values)
                    return loss()

                numeric = numerical_gradient(loss_at, host, eps)
                tensor[...] = xp.asarray(host)
            entries[tname] = _compare(analytic, numeric, rtol, atol)
    return GradcheckResult(name, entries)


def check_loss(loss_fn, pred, target, eps=None, rtol=None, atol=None, name=None):
    """Gradient check of a loss: ``loss_fn.backward()`` against finite differences."""
    eps, rtol, atol = _tolerances(eps, rtol, atol)
    xp = backend.get_array_module(pred)
    pred = xp.array(pred, dtype=np.float64)
    if hasattr(target, "dtype") and target.dtype.kind == "f":
        target = xp.asarray(target, dtype=np.float64)
    loss_fn(pred, target)
    analytic = loss_fn.backward()
    host = backend.to_numpy(pred).copy()
    numeric = numerical_gradient(lambda values: loss_fn(xp.asarray(values), target), host, eps)
    return GradcheckResult(name or type(loss_fn).__name__,
                           {"input": _compare(analytic, numeric, rtol, atol)})


class ModelWithLoss(Module):
    """A model followed by its loss, as one layer with a scalar output.

    forward: ``L = loss_fn(model(x), target)`` (a 0-d array); backward:
    ``dx = model.backward(dy * loss_fn.backward())``. Parameters are named "model.*".
    """

    def __init__(self, model, loss_fn, target):
        super().__init__()
        self.model, self.loss_fn, self.target = model, loss_fn, target

    def forward(self, x):
        value = self.loss_fn(self.model(x), self.target)
        return backend.get_array_module(x).asarray(value, dtype=x.dtype).reshape(())

    def backward(self, dy):
        self.saved_for_backward(dy)
        return self.model.backward(self.loss_fn.backward() * dy)


def check_model_with_loss(model, loss_fn, x, target, **kwargs):
    """Gradient check of a whole network end to end through its loss.

    Compares ``model.backward(loss_fn.backward())`` with finite differences of the
    scalar ``loss_fn(model(x), target)`` for the input and every parameter (names
    prefixed "model."). ``target`` is used as given (integer class labels stay integers).
    """
    kwargs.setdefault("name", f"{type(model).__name__} + {type(loss_fn).__name__}")
    return check_layer(ModelWithLoss(model, loss_fn, target), x, **kwargs)


def assert_gradients(layer, x, dy=None, **kwargs):
    """Run :func:`check_layer` and raise AssertionError with the table if any tensor fails."""
    result = check_layer(layer, x, dy, **kwargs)
    if not result.passed:
        raise AssertionError(result.table())
    return result


def assert_loss_gradients(loss_fn, pred, target, **kwargs):
    """Run :func:`check_loss` and raise AssertionError with the table on failure."""
    result = check_loss(loss_fn, pred, target, **kwargs)
    if not result.passed:
        raise AssertionError(result.table())
    return result


def builtin_cases():
    """(name, layer, input) for every built-in layer: the table of ``python -m minidl.gradcheck``."""
    from . import layers as L

    draw = np.random.default_rng(2024)
    image = draw.standard_normal((2, 3, 7, 6))
    # Tie-free, kink-free inputs: distinct values spaced well beyond eps.
    distinct = (draw.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) - 126.0) / 50.0
    vector = draw.standard_normal((3, 5))
    away_from_zero = np.sign(vector) * (np.abs(vector) + 0.1)

    def batchnorm_eval():
        layer = L.BatchNorm2d(3)
        layer.running_mean = draw.standard_normal(3).astype(np.float32)
        layer.running_var = draw.uniform(0.5, 2.0, 3).astype(np.float32)
        return layer.eval()

    return [
        ("Linear", L.Linear(5, 4), vector),
        ("Conv2d 3x3 s1 p1", L.Conv2d(3, 4, 3, padding=1), image),
        ("Conv2d 3x3 s2 p2 dilation 2", L.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2), image),
        ("Conv2d 1x1 groups 3", L.Conv2d(3, 6, 1, groups=3), image),
        ("MaxPool2d 2", L.MaxPool2d(2), distinct),
        ("MaxPool2d 3 s2 p1", L.MaxPool2d(3, stride=2, padding=1), distinct),
        ("AvgPool2d 2", L.AvgPool2d(2), image),
        ("GlobalAvgPool2d", L.GlobalAvgPool2d(), image),
        ("GlobalMaxPool2d", L.GlobalMaxPool2d(), distinct),
        ("BatchNorm1d train", L.BatchNorm1d(5), vector),
        ("BatchNorm2d train", L.BatchNorm2d(3), image),
        ("BatchNorm2d eval", batchnorm_eval(), image),
        ("Dropout(0.5) train", L.Dropout(0.5), vector),
        ("ReLU", L.ReLU(), away_from_zero),
        ("LeakyReLU", L.LeakyReLU(0.1), away_from_zero),
        ("ELU", L.ELU(), away_from_zero),
        ("GELU", L.GELU(), vector),
        ("GELU tanh", L.GELU(approximate="tanh"), vector),
        ("Sigmoid", L.Sigmoid(), vector),
        ("Tanh", L.Tanh(), vector),
        ("Softmax", L.Softmax(), vector),
        ("Flatten", L.Flatten(), image),
        ("Residual(Linear)", L.Residual(L.Linear(5, 5)), vector),
        ("conv-BN-ReLU-pool-linear", L.Sequential(
            L.Conv2d(3, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2),
            L.Flatten(), L.Linear(4 * 3 * 3, 3)), image),
    ]


def main():
    """Print the gradient-check table of every built-in layer; exit 1 if any fails."""
    import sys

    rows = []
    for name, layer, x in builtin_cases():
        result = check_layer(layer, x, name=name)
        rows.append((name, result))
    width = max(len(name) for name, _ in rows) + 2
    print(f"{'layer':<{width}}{'tensor':<14}{'max rel error':>14}  result")
    for name, result in rows:
        for tensor, entry in result.entries.items():
            print(f"{name:<{width}}{tensor:<14}{entry['max_rel_error']:>14.2e}  "
                  f"{'ok' if entry['passed'] else 'FAIL'}")
            name = ""
    failed = [result.name for _, result in rows if not result.passed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} layers pass"
          + (f"; failing: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

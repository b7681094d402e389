"""Finite-difference gradient checks for layers and losses.

The analytic gradient of a layer is compared with centered differences of the scalar
``L = sum(layer(x) * dy)`` for a *random* upstream gradient ``dy`` (an all-ones ``dy``
hides errors in BatchNorm and softmax, whose rows sum to constants)::

    dL/dx_i  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

Everything runs in float64; the layer is cast for the check and restored afterwards
(parameters, buffers, dtype). Random layers (Dropout) see the same random draws in
every forward pass of a check, because the generator state is reset before each pass.

Errors are relative: ``|a - b| / max(|a| + |b|, tiny)``. An entry passes when
``|a - b| <= atol + rtol * (|a| + |b|)``: the atol term forgives the round-off of
entries that are zero in exact arithmetic. Tolerances live in :data:`TOLERANCES`.

Run ``python -m minidl.gradcheck`` for a table of every built-in layer's errors.
"""
import numpy as np

from . import backend

#: Tolerances per dtype, in one place. float64 with eps=1e-6 leaves truncation error
#: ~eps^2 and round-off ~1e-16 / eps relative to L: both far below these.
TOLERANCES = {
    np.dtype(np.float64): {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-8},
    np.dtype(np.float32): {"eps": 1e-2, "rtol": 1e-2, "atol": 1e-3},
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
    scale = np.abs(analytic) + np.abs(numeric)
    bad = diff > atol + rtol * scale
    order = np.argsort(-(diff - rtol * scale), axis=None)[:worst]
    return {
        "max_rel_error": rel_error(analytic, numeric),
        "max_abs_error": float(diff.max()) if diff.size else 0.0,
        "passed": not bool(bad.any()),
        "worst": [(np.unravel_index(i, analytic.shape), analytic.flat[i], numeric.flat[i])
                  for i in order],
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
        params = self.module.parameters()
        self.dtype = params[0].data.dtype if params else None
        self.state = self.module.state_dict()
        self.rng_state = backend.get_rng_state()
        self.module.to(np.float64)
        return self

    def __exit__(self, *exc):
        if self.dtype is not None:
            self.module.to(self.dtype)
        self.module.load_state_dict(self.state)
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
    draw = np.random.default_rng(seed)
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
            layer.saved_for_backward(dy)  # drop the cache: checks do not leak memory
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

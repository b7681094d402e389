"""Checkers for the exercises at the end of each tutorial (``tutorials/NN_topic.ipynb``).

Each checker takes *your* function, runs it on a few configurations drawn from a seeded
NumPy generator (odd sizes, a batch of 1, strides and paddings, ...), and compares what
it returns with two references:

* **finite differences** of the forward pass, ``(L(t + eps) - L(t - eps)) / (2 eps)`` for
  ``L = sum(forward(...) * dout)`` in float64 (see :mod:`minidl.gradcheck`), and
* **minidl's own layer** (or loss, or optimizer) on the same arrays.

It prints ``PASS`` or, for the first configuration that fails, the worst entries and a
hint, and returns True or False. Every array it passes you is float64 and a private copy
(writing into it changes nothing); return NumPy arrays of the shapes stated below::

    from minidl.exercises import check_linear_backward

    def linear_backward(dout, x, w, b):
        return dout @ w.T, x.T @ dout, dout.sum(axis=0)

    check_linear_backward(linear_backward)      # prints "check_linear_backward: PASS ..."

The optimizer checkers (:func:`check_sgd_momentum_step`, :func:`check_adam_step`) have no
gradient to differentiate: they compare several consecutive steps with
:mod:`minidl.optim`. A function that raises ``NotImplementedError`` (the stubs in the
notebooks) is reported as not written yet.

Checkers, the function each expects, and the tutorial whose exercise it grades:

- 01 ``check_linear_backward``: ``fn(dout, x, w, b) -> (dx, dw, db)``
- 01 ``check_mse_loss``: ``fn(pred, target) -> (loss, dpred)``
- 02 ``check_relu_backward``: ``fn(dout, x) -> dx``
- 02 ``check_softmax_ce``: ``fn(logits, labels) -> (loss, dlogits)``
- 03 ``check_sigmoid_backward``: ``fn(dout, x) -> dx``
- 03 ``check_leaky_relu_backward``: ``fn(dout, x, negative_slope) -> dx``
- 04 ``check_conv2d_backward``: ``fn(dout, x, w, b, stride, padding) -> (dx, dw, db)``
- 04 ``check_col2im``: ``fn(cols, x_shape, kernel_size, stride, padding) -> x``
- 05 ``check_maxpool_backward``: ``fn(dout, x, kernel_size, stride) -> dx``
- 05 ``check_avgpool_backward``: ``fn(dout, x, kernel_size, stride) -> dx``
- 05 ``check_batch_norm_backward``: ``fn(dout, x, gamma, beta, eps) -> (dx, dgamma, dbeta)``
- 06 ``check_sgd_momentum_step``:
  ``fn(param, grad, velocity, lr, momentum, nesterov) -> (param, velocity)``
- 06 ``check_adam_step``: ``fn(param, grad, m, v, t, lr, beta1, beta2, eps) -> (param, m, v)``
- 07 ``check_dropout_backward``: ``fn(dout, keep, p) -> dx``
- 07 ``check_weight_decay``: ``fn(w, weight_decay) -> (penalty, dw)``
- 08 ``check_residual_backward``: ``fn(dout, x, w1, w2) -> (dx, dw1, dw2)``
- 08 ``check_global_avg_pool_backward``: ``fn(dout, x) -> dx``
- 09 ``check_rnn_step_backward``:
  ``fn(dh, x, h_prev, w_ih, w_hh, b) -> (dx, dh_prev, dw_ih, dw_hh, db)``
- 09 ``check_attention_backward``: ``fn(dout, q, k, v, causal) -> (dq, dk, dv)``

Every checker takes ``(fn, seed=0, verbose=True)``: ``seed`` draws other configurations,
``verbose=False`` prints nothing (the return value still says PASS or not).

Each checker's docstring gives the shapes and the exact formula of the forward pass.
"""
import traceback

import numpy as np

from . import backend, functional, losses, optim
from . import layers as L
from .gradcheck import TOLERANCES, numerical_gradient
from .module import Param

_TOL = TOLERANCES[np.dtype(np.float64)]
RTOL, ATOL, EPS = _TOL["rtol"], _TOL["atol"], _TOL["eps"]
#: How close your result must be to minidl's own (same formula, round-off apart).
REFERENCE_RTOL = 1e-6


# --------------------------------------------------------------------------- the grader
class _NotWritten(Exception):
    pass


class _Failure(Exception):
    """One configuration failed; ``str`` is the report."""


def _rel_errors(mine, other):
    """Elementwise ``|a - b| / max(|a| + |b|, atol / rtol)``: the rule of minidl.gradcheck."""
    return np.abs(mine - other) / np.maximum(np.abs(mine) + np.abs(other), ATOL / RTOL)


def _as_result(value, name, shape):
    """Your return value as a float64 array of ``shape``, or a _Failure saying why not."""
    if value is None:
        raise _Failure(f"{name} is None; return an array of shape {shape}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise _Failure(f"{name} is not an array of numbers ({type(value).__name__}: {error})")
    if array.shape != tuple(shape):
        raise _Failure(f"{name} has shape {array.shape}, expected {tuple(shape)}")
    if not np.all(np.isfinite(array)):
        raise _Failure(f"{name} contains NaN or Inf")
    return array


def _worst_table(mine, references, rtol, count=4):
    """The (at most ``count``) entries of ``mine`` that differ most from the first
    reference and by more than ``rtol``, one per line, with every reference beside them."""
    errors = _rel_errors(mine, references[0][1])
    order = [flat for flat in np.argsort(-errors, axis=None)[:count]
             if errors.reshape(-1)[flat] > rtol]
    widths = [max(16, len(label) + 2) for label, _ in references]
    lines = [f"    {'index':<16}{'yours':>16}"
             + "".join(f"{label:>{width}}" for (label, _), width in zip(references, widths))]
    for flat in order:
        index = np.unravel_index(flat, mine.shape) if mine.ndim else ()
        row = f"    {str(tuple(int(i) for i in index)):<16}{mine[index]:>+16.6e}"
        row += "".join(f"{ref[index]:>+{width}.6e}"
                       for (_, ref), width in zip(references, widths))
        lines.append(row)
    return "\n".join(lines)


def _compare(name, mine, numeric, reference, reference_label):
    """Raise _Failure unless ``mine`` matches finite differences and minidl's value."""
    checks = []
    if numeric is not None:
        checks.append(("finite differences", numeric, RTOL))
    if reference is not None:
        checks.append((reference_label, reference, REFERENCE_RTOL))
    worst = {}
    for label, other, rtol in checks:
        error = float(_rel_errors(mine, other).max()) if mine.size else 0.0
        worst[label] = error
        if error > rtol:
            table = _worst_table(mine, [(label, other)] + [
                (lab, oth) for lab, oth, _ in checks if lab != label], rtol)
            raise _Failure(f"{name} differs from {label}: max relative error {error:.2e} "
                           f"(allowed {rtol:.0e})\n{table}")
    return worst


class _Grader:
    """Runs a student's function over configurations and prints one verdict."""

    def __init__(self, checker, fn, hint, verbose=True):
        if not callable(fn):
            raise TypeError(f"{checker}: expected your function, got {type(fn).__name__}")
        self.checker, self.fn, self.hint, self.verbose = checker, fn, hint, verbose
        self.worst = {}

    def call(self, *args, **kwargs):
        """Call the student's function with private copies of every array."""
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        try:
            return self.fn(*copies, **kwargs)
        except NotImplementedError:
            raise _NotWritten() from None
        except Exception as error:  # report any bug in the student's code as a failure
            frames = traceback.format_exception(type(error), error, error.__traceback__)
            raise _Failure("your function raised an exception:\n"
                           + "".join(frames[-3:]).rstrip()) from None

    def record(self, worst):
        for label, error in worst.items():
            self.worst[label] = max(self.worst.get(label, 0.0), error)

    def run(self, configs, check_one):
        """``check_one(config)`` raises _Failure or returns {reference: max error}."""
        for number, config in enumerate(configs, 1):
            try:
                self.record(check_one(config))
            except _NotWritten:
                return self._say(f"{self.checker}: not written yet (your function raises "
                                 "NotImplementedError); fill it in and run the check again",
                                 False)
            except _Failure as failure:
                return self._say(f"{self.checker}: FAIL on configuration {number} of "
                                 f"{len(configs)} ({config['desc']})\n  {failure}\n"
                                 f"  Hint: {self.hint}", False)
        errors = ", ".join(f"{error:.1e} vs {label}" for label, error in self.worst.items())
        return self._say(f"{self.checker}: PASS ({len(configs)} configurations; "
                         f"max relative error {errors})", True)

    def _say(self, message, passed):
        if self.verbose:
            print(message)
        return passed


def _numeric_grads(forward, dout, tensors):
    """Finite differences of ``sum(forward() * dout)`` for each named array in ``tensors``
    (perturbed in place, so ``forward`` must read them)."""
    def loss(_):
        return float(np.sum(forward() * dout))
    return {name: numerical_gradient(loss, tensor, EPS) for name, tensor in tensors.items()}


def _float64_layer(layer, **params):
    """``layer`` cast to float64, its parameters overwritten with ``params``."""
    layer.to(np.float64)
    for name, value in params.items():
        getattr(layer, name).data[...] = value
    return layer


class _MinidlRng:
    """Leave minidl's global generator as it was (building layers draws from it)."""

    def __enter__(self):
        self.state = backend.get_rng_state()

    def __exit__(self, *exc):
        backend.set_rng_state(self.state)


def _check_layer_exercise(grader, configs, make_layer, student_args, names, label):
    """Shared body of the checkers of a layer's backward.

    make_layer(config) -> (layer, inputs: dict name -> array, params: dict name -> Param);
    student_args(config) -> positional arguments after dout; ``names`` orders your outputs.
    """
    def check_one(config):
        with _MinidlRng():
            layer, x, params = make_layer(config)
            rng_state = backend.get_rng_state()

            def forward():
                backend.set_rng_state(rng_state)  # the same dropout mask in every pass
                out = layer(x)
                layer.drop_saved()
                return out

            out = forward()
            dout = config["rng"].standard_normal(out.shape)
            layer.zero_grad()
            backend.set_rng_state(rng_state)
            layer(x)
            reference = {"dx": layer.backward(dout)}
            reference.update({f"d{name}": p.grad.copy() for name, p in params.items()})
            numeric = _numeric_grads(forward, dout, {"dx": x, **{
                f"d{name}": p.data for name, p in params.items()}})
        answer = grader.call(dout, *student_args(config))
        answer = answer if len(names) > 1 else (answer,)
        return _worst_errors(answer, names, numeric, reference, label)

    return grader.run(configs, check_one)


def _worst_errors(answer, names, numeric, reference, label):
    """The student's outputs, in ``names`` order, against the numeric and minidl's
    gradients: the worst error of each kind (a _Failure if the count is wrong)."""
    if not isinstance(answer, (tuple, list)) or len(answer) != len(names):
        raise _Failure(f"expected {len(names)} return values ({', '.join(names)}), got "
                       f"{len(answer) if isinstance(answer, (tuple, list)) else 1}")
    worst = {}
    for name, value in zip(names, answer):
        mine = _as_result(value, name, reference[name].shape)
        for key, error in _compare(name, mine, numeric[name], reference[name], label).items():
            worst[key] = max(worst.get(key, 0.0), error)
    return worst


def _configs(seed, specs):
    """Each spec (a dict with "desc") gets its own generator, derived from ``seed``."""
    return [dict(spec, rng=np.random.default_rng([seed, index]))
            for index, spec in enumerate(specs)]


def _away_from_zero(rng, shape, margin=0.05):
    """Standard normal entries pushed at least ``margin`` away from 0 (no kink in reach)."""
    values = rng.standard_normal(shape)
    return np.sign(values) * (np.abs(values) + margin)


def _distinct(rng, shape):
    """Entries all different and spaced 0.02 apart (no ties for a max within eps)."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) - size / 2) * 0.02


# --------------------------------------------------------------------------- 01 backprop
def check_linear_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x, w, b) -> (dx, dw, db)``, the backward of ``y = x @ w + b``.

    x ``(N, D)``, w ``(D, M)`` (minidl's layout, in-features first), b ``(M,)``,
    dout = dL/dy ``(N, M)``; return dx ``(N, D)``, dw ``(D, M)``, db ``(M,)``.
    Reference: :class:`minidl.layers.Linear`.
    """
    grader = _Grader("check_linear_backward", fn,
                     "y[n, m] = sum_d x[n, d] w[d, m] + b[m]: dw = x.T @ dout, "
                     "db = dout summed over the batch axis, dx = dout @ w.T", verbose)
    configs = _configs(seed, [{"desc": f"x ({n}, {d}), w ({d}, {m})", "shape": (n, d, m)}
                              for n, d, m in [(4, 5, 3), (1, 3, 2), (7, 2, 6), (3, 1, 1)]])

    def make(config):
        n, d, m = config["shape"]
        rng = config["rng"]
        config["x"], config["w"], config["b"] = (rng.standard_normal(s) for s in
                                                 ((n, d), (d, m), (m,)))
        layer = _float64_layer(L.Linear(d, m), weight=config["w"], bias=config["b"])
        return layer, config["x"].copy(), {"w": layer.weight, "b": layer.bias}

    return _check_layer_exercise(grader, configs, make,
                                 lambda c: (c["x"], c["w"], c["b"]), ("dx", "dw", "db"),
                                 "minidl.layers.Linear")


def _check_loss_exercise(grader, configs, make, loss_fn, label):
    """Shared body of the loss checkers: fn(pred, target) -> (loss, dpred)."""
    def check_one(config):
        pred, target = make(config)
        ref_loss = float(loss_fn(pred.copy(), target))
        ref_grad = loss_fn.backward()
        numeric = numerical_gradient(lambda p: float(loss_fn(p, target)), pred.copy(), EPS)
        answer = grader.call(pred, target)
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise _Failure("expected 2 return values (loss, dpred)")
        loss = _as_result(answer[0], "loss", ())
        worst = _compare("loss", loss, None, np.asarray(ref_loss), label)
        worst.update(_compare("dpred", _as_result(answer[1], "dpred", pred.shape), numeric,
                              ref_grad, label))
        return worst

    return grader.run(configs, check_one)


def check_mse_loss(fn, seed=0, verbose=True):
    """Check ``fn(pred, target) -> (loss, dpred)`` for ``loss = mean((pred - target)**2)``.

    pred and target: float arrays of the same shape ``(N, M)``; the mean runs over all
    N * M entries (PyTorch's default). loss: a number; dpred: shaped like pred.
    Reference: :class:`minidl.losses.MSELoss`.
    """
    grader = _Grader("check_mse_loss", fn,
                     "mean over ALL entries, so dpred = 2 (pred - target) / pred.size", verbose)
    configs = _configs(seed, [{"desc": f"pred {shape}", "shape": shape}
                              for shape in [(4, 3), (1, 1), (5, 1), (2, 7)]])

    def make(config):
        rng = config["rng"]
        return rng.standard_normal(config["shape"]), rng.standard_normal(config["shape"])

    return _check_loss_exercise(grader, configs, make, losses.MSELoss(), "minidl.losses.MSELoss")


# --------------------------------------------------------------------------- 02 MLP
def _check_elementwise(checker, fn, layer_factory, label, hint, seed, verbose, extra=None):
    """Checkers of ``fn(dout, x[, extra]) -> dx`` for elementwise layers."""
    grader = _Grader(checker, fn, hint, verbose)
    configs = _configs(seed, [{"desc": f"x {shape}", "shape": shape}
                              for shape in [(4, 5), (1, 3), (2, 3, 4, 5)]])

    def make(config):
        config["x"] = _away_from_zero(config["rng"], config["shape"])
        return _float64_layer(layer_factory()), config["x"].copy(), {}

    args = (lambda c: (c["x"],)) if extra is None else (lambda c: (c["x"], extra))
    return _check_layer_exercise(grader, configs, make, args, ("dx",), label)


def check_relu_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x) -> dx`` for ``y = max(x, 0)``, x any shape.

    Reference: :class:`minidl.layers.ReLU` (inputs are kept away from the kink at 0).
    """
    return _check_elementwise("check_relu_backward", fn, L.ReLU, "minidl.layers.ReLU",
                              "the gradient passes where x > 0 and is zero elsewhere: "
                              "dx = dout * (x > 0)", seed, verbose)


def check_softmax_ce(fn, seed=0, verbose=True):
    """Check ``fn(logits, labels) -> (loss, dlogits)`` for softmax cross-entropy.

    logits ``(N, K)`` floats, labels ``(N,)`` int64 in ``0..K-1``;
    ``loss = -mean_n log softmax(logits)[n, labels[n]]`` (a number) and dlogits ``(N, K)``.
    Some configurations have logits of size 1000: subtract each row's maximum first.
    Reference: :class:`minidl.losses.CrossEntropyLoss`.
    """
    grader = _Grader("check_softmax_ce", fn,
                     "p = softmax(logits) row by row (subtract the row maximum before exp); "
                     "dlogits = (p - onehot(labels)) / N", verbose)
    specs = [{"desc": f"logits ({n}, {k}) x {scale}", "shape": (n, k), "scale": scale}
             for n, k, scale in [(4, 5, 1.0), (1, 3, 1.0), (6, 10, 3.0), (3, 4, 1000.0)]]

    def make(config):
        rng = config["rng"]
        n, k = config["shape"]
        logits = rng.standard_normal((n, k)) * config["scale"]
        return logits, rng.integers(0, k, n).astype(np.int64)

    return _check_loss_exercise(grader, _configs(seed, specs), make, losses.CrossEntropyLoss(),
                                "minidl.losses.CrossEntropyLoss")


# --------------------------------------------------------------------------- 03 init/activations
def check_sigmoid_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x) -> dx`` for ``y = 1 / (1 + exp(-x))``, x any shape.

    Reference: :class:`minidl.layers.Sigmoid`.
    """
    return _check_elementwise("check_sigmoid_backward", fn, L.Sigmoid, "minidl.layers.Sigmoid",
                              "sigma'(x) = sigma(x) (1 - sigma(x)), so dx = dout * y * (1 - y)",
                              seed, verbose)


def check_leaky_relu_backward(fn, seed=0, verbose=True, negative_slope=0.1):
    """Check ``fn(dout, x, negative_slope) -> dx`` for ``y = x if x > 0 else slope * x``.

    Reference: :class:`minidl.layers.LeakyReLU` (called with ``negative_slope=0.1``).
    """
    return _check_elementwise("check_leaky_relu_backward", fn,
                              lambda: L.LeakyReLU(negative_slope), "minidl.layers.LeakyReLU",
                              "dx = dout where x > 0 and negative_slope * dout elsewhere",
                              seed, verbose, extra=negative_slope)


# --------------------------------------------------------------------------- 04 convolution
_CONV_SPECS = [  # (N, C_in, H, W, C_out, k, stride, padding)
    (2, 3, 5, 5, 4, 3, 1, 1), (1, 2, 6, 7, 3, 3, 2, 0), (2, 1, 4, 5, 2, 2, 1, 0),
    (1, 2, 7, 6, 2, 3, 2, 2), (2, 3, 3, 3, 1, 1, 1, 0)]


def check_conv2d_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x, w, b, stride, padding) -> (dx, dw, db)`` for a 2-D convolution.

    x ``(N, C_in, H, W)``, w ``(C_out, C_in, kh, kw)``, b ``(C_out,)``, ``stride`` and
    ``padding`` ints (zero padding); the forward is PyTorch's cross-correlation
    ``y[n, o, i, j] = b[o] + sum_{c,p,q} w[o, c, p, q] x_pad[n, c, i*s + p, j*s + q]``,
    dout ``(N, C_out, H_out, W_out)``. Return dx, dw, db shaped like x, w, b.
    Reference: :class:`minidl.layers.Conv2d`.
    """
    grader = _Grader("check_conv2d_backward", fn,
                     "each output pixel is a dot product of w with one input window: add "
                     "dout[n, o, i, j] * window into dw[o], dout[n, o, i, j] * w[o] into the "
                     "window of dx_pad, then drop the padding; db sums dout over n, i, j",
                     verbose)
    specs = [{"desc": f"x ({n}, {c}, {h}, {w}), {o} filters {k}x{k}, stride {s}, padding {p}",
              "spec": (n, c, h, w, o, k, s, p)} for n, c, h, w, o, k, s, p in _CONV_SPECS]

    def make(config):
        n, c, h, w, o, k, s, p = config["spec"]
        rng = config["rng"]
        config["x"] = rng.standard_normal((n, c, h, w))
        config["w"], config["b"] = rng.standard_normal((o, c, k, k)), rng.standard_normal(o)
        layer = _float64_layer(L.Conv2d(c, o, k, stride=s, padding=p), weight=config["w"],
                               bias=config["b"])
        return layer, config["x"].copy(), {"w": layer.weight, "b": layer.bias}

    return _check_layer_exercise(
        grader, _configs(seed, specs), make,
        lambda c: (c["x"], c["w"], c["b"], c["spec"][6], c["spec"][7]), ("dx", "dw", "db"),
        "minidl.layers.Conv2d")


def check_col2im(fn, seed=0, verbose=True):
    """Check ``fn(cols, x_shape, kernel_size, stride, padding) -> x``, the adjoint of im2col.

    ``cols`` is shaped like ``minidl.layers.im2col(x, kernel_size, stride, padding)``:
    ``(N * H_out * W_out, C * k * k)``, rows ordered (n, ho, wo) and columns (i, j, c)
    (kernel row, kernel column, channel). Return an array of shape ``x_shape`` =
    (N, C, H, W) where every entry of cols is *added* to the pixel it was copied from
    (entries that came from the padding are dropped). ``kernel_size``, ``stride``,
    ``padding``: ints. Checked by the adjoint identity
    ``<im2col(x), cols> == <x, col2im(cols)>`` for random x (the transpose is what
    finite differences of ``<im2col(x), cols>`` give) and against
    :func:`minidl.layers.col2im`.
    """
    grader = _Grader("check_col2im", fn,
                     "loop over the kernel offsets (i, j): the column block of offset (i, j) "
                     "holds x_pad[:, :, i + s*ho, j + s*wo]; add it back there with +=, not =, "
                     "since windows overlap", verbose)
    specs = [{"desc": f"x ({n}, {c}, {h}, {w}), kernel {k}, stride {s}, padding {p}",
              "spec": (n, c, h, w, k, s, p)} for n, c, h, w, _, k, s, p in _CONV_SPECS]

    def check_one(config):
        n, c, h, w, k, s, p = config["spec"]
        rng = config["rng"]
        x = rng.standard_normal((n, c, h, w))
        cols_shape = L.im2col(x, k, s, p).shape
        cols = rng.standard_normal(cols_shape)
        reference = L.col2im(cols, x.shape, k, s, p)
        # d/dx <im2col(x), cols> = col2im(cols): the adjoint, by finite differences.
        numeric = numerical_gradient(lambda t: float(np.sum(L.im2col(t, k, s, p) * cols)),
                                     x.copy(), EPS)
        mine = _as_result(grader.call(cols, (n, c, h, w), k, s, p), "x", x.shape)
        worst = _compare("col2im(cols)", mine, numeric, reference, "minidl.layers.col2im")
        lhs, rhs = float(np.sum(L.im2col(x, k, s, p) * cols)), float(np.sum(x * mine))
        if abs(lhs - rhs) > RTOL * max(abs(lhs) + abs(rhs), 1.0):
            raise _Failure(f"adjoint identity fails: <im2col(x), cols> = {lhs:+.6e} but "
                           f"<x, col2im(cols)> = {rhs:+.6e}")
        return worst

    return grader.run(_configs(seed, specs), check_one)


# --------------------------------------------------------------------------- 05 pooling, BN
_POOL_SPECS = [(2, 3, 4, 4, 2, 2), (1, 2, 5, 7, 3, 2), (2, 1, 5, 5, 2, 1), (1, 1, 6, 5, 3, 3)]


def _check_pool(checker, fn, layer_class, hint, seed, verbose):
    grader = _Grader(checker, fn, hint, verbose)
    specs = [{"desc": f"x ({n}, {c}, {h}, {w}), kernel {k}, stride {s}", "spec": (n, c, h, w, k, s)}
             for n, c, h, w, k, s in _POOL_SPECS]

    def make(config):
        n, c, h, w, k, s = config["spec"]
        config["x"] = _distinct(config["rng"], (n, c, h, w))
        return _float64_layer(layer_class(k, stride=s)), config["x"].copy(), {}

    return _check_layer_exercise(grader, _configs(seed, specs), make,
                                 lambda c: (c["x"], c["spec"][4], c["spec"][5]), ("dx",),
                                 f"minidl.layers.{layer_class.__name__}")


def check_maxpool_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x, kernel_size, stride) -> dx`` for max-pooling without padding.

    x ``(N, C, H, W)``; ``y[n, c, i, j] = max`` of the ``k x k`` window at
    ``(i*stride, j*stride)``; dout ``(N, C, H_out, W_out)``, H_out = (H - k) // stride + 1.
    Windows may overlap (stride < k). Inputs have no ties.
    Reference: :class:`minidl.layers.MaxPool2d`.
    """
    return _check_pool("check_maxpool_backward", fn, L.MaxPool2d,
                       "each dout goes to the position of its window's maximum only; when "
                       "windows overlap, add (+=) into dx", seed, verbose)


def check_avgpool_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x, kernel_size, stride) -> dx`` for average pooling, no padding.

    Same shapes as :func:`check_maxpool_backward`; ``y`` is the window's mean.
    Reference: :class:`minidl.layers.AvgPool2d`.
    """
    return _check_pool("check_avgpool_backward", fn, L.AvgPool2d,
                       "every entry of a window gets dout / (k * k); add (+=) where windows "
                       "overlap", seed, verbose)


def check_batch_norm_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x, gamma, beta, eps) -> (dx, dgamma, dbeta)``: BatchNorm, train mode.

    x ``(N, D)``; per feature d, with the batch mean mu and the *biased* variance var:
    ``y = gamma * (x - mu) / sqrt(var + eps) + beta``; gamma, beta ``(D,)``.
    Return dx ``(N, D)``, dgamma ``(D,)``, dbeta ``(D,)``.
    Reference: :class:`minidl.layers.BatchNorm1d` in train mode.
    """
    grader = _Grader("check_batch_norm_backward", fn,
                     "mu and var depend on every x in the batch: dx = gamma / sqrt(var + eps) "
                     "* (dout - mean(dout) - xhat * mean(dout * xhat)), means over the batch",
                     verbose)
    specs = [{"desc": f"x ({n}, {d}), eps {eps}", "shape": (n, d), "eps": eps}
             for n, d, eps in [(4, 3, 1e-5), (2, 5, 1e-5), (7, 1, 1e-3), (5, 4, 0.5)]]

    def make(config):
        n, d = config["shape"]
        rng = config["rng"]
        config["x"] = rng.standard_normal((n, d)) * 2 + 1
        config["gamma"], config["beta"] = rng.standard_normal(d), rng.standard_normal(d)
        layer = _float64_layer(L.BatchNorm1d(d, eps=config["eps"]), weight=config["gamma"],
                               bias=config["beta"])
        return layer, config["x"].copy(), {"gamma": layer.weight, "beta": layer.bias}

    return _check_layer_exercise(
        grader, _configs(seed, specs), make,
        lambda c: (c["x"], c["gamma"], c["beta"], c["eps"]), ("dx", "dgamma", "dbeta"),
        "minidl.layers.BatchNorm1d")


# --------------------------------------------------------------------------- 06 optimizers
def _check_optimizer(grader, configs, make_optimizer, student_step, state_names, steps=5):
    """Run ``steps`` steps of minidl's optimizer and of yours from the same gradients."""
    def check_one(config):
        rng = config["rng"]
        shape = config["shape"]
        start = rng.standard_normal(shape)
        grads = [rng.standard_normal(shape) for _ in range(steps)]
        param = Param(start.copy())
        optimizer = make_optimizer(param, config)
        mine = [start.copy()] + [np.zeros(shape) for _ in state_names]
        worst = {}
        for t, grad in enumerate(grads, 1):
            param.grad[...] = grad
            optimizer.step()
            answer = grader.call(*student_step(mine, grad, t, config))
            if not isinstance(answer, (tuple, list)) or len(answer) != 1 + len(state_names):
                raise _Failure(f"expected {1 + len(state_names)} return values "
                               f"(param, {', '.join(state_names)})")
            mine = [_as_result(value, name, shape)
                    for value, name in zip(answer, ("param",) + state_names)]
            try:
                errors = _compare("param", mine[0], None, param.data,
                                  f"minidl.optim.{type(optimizer).__name__}")
            except _Failure as failure:
                raise _Failure(f"after step {t}: {failure}") from None
            for key, error in errors.items():
                worst[key] = max(worst.get(key, 0.0), error)
        return worst

    return grader.run(configs, check_one)


def check_sgd_momentum_step(fn, seed=0, verbose=True):
    """Check ``fn(param, grad, velocity, lr, momentum, nesterov) -> (param, velocity)``.

    One step of SGD with momentum as PyTorch defines it (no dampening)::

        velocity = momentum * velocity + grad          (velocity starts at zeros)
        param = param - lr * (grad + momentum * velocity)   if nesterov
        param = param - lr * velocity                       otherwise

    Arrays: any shape, all the same. Called for 5 consecutive steps with your returned
    param and velocity fed back. Reference: :class:`minidl.optim.SGD`.
    """
    grader = _Grader("check_sgd_momentum_step", fn,
                     "update the velocity first, then step along it (Nesterov: along "
                     "grad + momentum * velocity); lr multiplies the whole step", verbose)
    specs = [{"desc": f"shape {shape}, lr {lr}, momentum {mu}, nesterov {nest}", "shape": shape,
              "lr": lr, "momentum": mu, "nesterov": nest}
             for shape, lr, mu, nest in [((3,), 0.1, 0.9, False), ((2, 3), 0.05, 0.5, True),
                                         ((4,), 0.3, 0.0, False), ((1, 1), 0.01, 0.99, True)]]

    def make(param, config):
        return optim.SGD([param], lr=config["lr"], momentum=config["momentum"],
                         nesterov=config["nesterov"])

    def step(mine, grad, t, c):
        return (mine[0], grad, mine[1], c["lr"], c["momentum"], c["nesterov"])

    return _check_optimizer(grader, _configs(seed, specs), make, step, ("velocity",))


def check_adam_step(fn, seed=0, verbose=True):
    """Check ``fn(param, grad, m, v, t, lr, beta1, beta2, eps) -> (param, m, v)``.

    One Adam step (t = 1, 2, ... counts the steps; m and v start at zeros)::

        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        m_hat = m / (1 - beta1**t);  v_hat = v / (1 - beta2**t)
        param = param - lr * m_hat / (sqrt(v_hat) + eps)

    Called for 5 consecutive steps with your param, m and v fed back.
    Reference: :class:`minidl.optim.Adam`.
    """
    grader = _Grader("check_adam_step", fn,
                     "both moments need the bias correction 1 - beta**t with the step number t "
                     "(from 1); eps goes outside the square root", verbose)
    specs = [{"desc": f"shape {shape}, lr {lr}, betas ({b1}, {b2}), eps {eps}", "shape": shape,
              "lr": lr, "betas": (b1, b2), "eps": eps}
             for shape, lr, b1, b2, eps in [((3,), 1e-3, 0.9, 0.999, 1e-8),
                                            ((2, 2), 0.1, 0.8, 0.99, 1e-8),
                                            ((5,), 0.01, 0.5, 0.9, 0.1)]]

    def make(param, config):
        return optim.Adam([param], lr=config["lr"], betas=config["betas"], eps=config["eps"])

    def step(mine, grad, t, c):
        return (mine[0], grad, mine[1], mine[2], t, c["lr"], c["betas"][0], c["betas"][1],
                c["eps"])

    return _check_optimizer(grader, _configs(seed, specs), make, step, ("m", "v"))


# --------------------------------------------------------------------------- 07 regularisation
def check_dropout_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, keep, p) -> dx`` for inverted dropout in training mode.

    The forward was ``y = x * keep / (1 - p)``, with ``keep`` a boolean array shaped like
    x (True where the entry survived) and ``p`` the drop probability.
    Reference: :class:`minidl.layers.Dropout` (its own mask is handed to you as ``keep``).
    """
    grader = _Grader("check_dropout_backward", fn,
                     "the mask is fixed: dx = dout * keep / (1 - p), the same scale as the "
                     "forward (inverted dropout)", verbose)
    specs = [{"desc": f"x {shape}, p {p}", "shape": shape, "p": p}
             for shape, p in [((4, 6), 0.5), ((1, 5), 0.2), ((2, 3, 4), 0.8)]]

    def make(config):
        config["x"] = _away_from_zero(config["rng"], config["shape"])
        layer = L.Dropout(config["p"])
        state = backend.get_rng_state()
        config["keep"] = layer(config["x"].copy()) != 0  # the mask the checked passes will draw
        layer.drop_saved()
        backend.set_rng_state(state)
        return layer, config["x"].copy(), {}

    return _check_layer_exercise(grader, _configs(seed, specs), make,
                                 lambda c: (c["keep"], c["p"]), ("dx",), "minidl.layers.Dropout")


def check_weight_decay(fn, seed=0, verbose=True):
    """Check ``fn(w, weight_decay) -> (penalty, dw)`` for the L2 penalty.

    ``penalty = weight_decay / 2 * sum(w**2)`` (a number) and dw = its gradient, shaped
    like w. Reference: the update of :class:`minidl.optim.SGD` with ``weight_decay``
    (PyTorch's coupled weight decay adds exactly this gradient).
    """
    grader = _Grader("check_weight_decay", fn,
                     "the 1/2 cancels the 2 of the square: dw = weight_decay * w", verbose)
    specs = [{"desc": f"w {shape}, weight_decay {wd}", "shape": shape, "wd": wd}
             for shape, wd in [((3, 4), 1e-2), ((5,), 0.5), ((2, 1, 3, 3), 5e-4)]]

    def check_one(config):
        w = config["rng"].standard_normal(config["shape"])
        wd = config["wd"]
        penalty = wd / 2 * float(np.sum(w * w))
        numeric = numerical_gradient(lambda t: wd / 2 * float(np.sum(t * t)), w.copy(), EPS)
        param = Param(w.copy())
        optim.SGD([param], lr=1.0, weight_decay=wd).step()  # grad 0: p <- p - wd * p
        reference = w - param.data
        answer = grader.call(w, wd)
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise _Failure("expected 2 return values (penalty, dw)")
        worst = _compare("penalty", _as_result(answer[0], "penalty", ()), None,
                         np.asarray(penalty), "the formula")
        worst.update(_compare("dw", _as_result(answer[1], "dw", w.shape), numeric, reference,
                              "minidl.optim.SGD(weight_decay)"))
        return worst

    return grader.run(_configs(seed, specs), check_one)


# --------------------------------------------------------------------------- 08 residual
def check_residual_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x, w1, w2) -> (dx, dw1, dw2)`` for ``y = x + relu(x @ w1) @ w2``.

    x ``(N, D)``, w1 ``(D, H)``, w2 ``(H, D)`` (no biases). Return dx ``(N, D)``,
    dw1 ``(D, H)``, dw2 ``(H, D)``. Reference: :class:`minidl.layers.Residual` around
    ``Sequential(Linear(D, H, bias=False), ReLU(), Linear(H, D, bias=False))``.
    """
    grader = _Grader("check_residual_backward", fn,
                     "a sum sends its gradient to both branches unchanged: dx = dout (the "
                     "skip) + the gradient through the body (Linear, ReLU, Linear)", verbose)
    specs = [{"desc": f"x ({n}, {d}), hidden {h}", "shape": (n, d, h)}
             for n, d, h in [(3, 4, 5), (1, 2, 3), (5, 3, 2)]]

    def make(config):
        n, d, h = config["shape"]
        rng = config["rng"]
        while True:  # redraw until no pre-activation sits near ReLU's kink
            x, w1, w2 = (rng.standard_normal(s) for s in ((n, d), (d, h), (h, d)))
            if np.abs(x @ w1).min() > 1e-3:
                break
        config.update(x=x, w1=w1, w2=w2)
        body = L.Sequential(L.Linear(d, h, bias=False), L.ReLU(), L.Linear(h, d, bias=False))
        layer = _float64_layer(L.Residual(body))
        body[0].weight.data[...], body[2].weight.data[...] = w1, w2
        return layer, x.copy(), {"w1": body[0].weight, "w2": body[2].weight}

    return _check_layer_exercise(grader, _configs(seed, specs), make,
                                 lambda c: (c["x"], c["w1"], c["w2"]), ("dx", "dw1", "dw2"),
                                 "minidl.layers.Residual")


def check_global_avg_pool_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, x) -> dx`` for global average pooling.

    The forward is ``y[n, c] = mean over h, w of x[n, c, h, w]``.

    x ``(N, C, H, W)``, dout ``(N, C)``, dx shaped like x.
    Reference: :class:`minidl.layers.GlobalAvgPool2d`.
    """
    grader = _Grader("check_global_avg_pool_backward", fn,
                     "every pixel of channel c gets dout[n, c] / (H * W); broadcast with "
                     "dout[:, :, None, None]", verbose)
    specs = [{"desc": f"x {shape}", "shape": shape} for shape in
             [(2, 3, 4, 4), (1, 1, 3, 5), (3, 2, 1, 1)]]

    def make(config):
        config["x"] = config["rng"].standard_normal(config["shape"])
        return _float64_layer(L.GlobalAvgPool2d()), config["x"].copy(), {}

    return _check_layer_exercise(grader, _configs(seed, specs), make, lambda c: (c["x"],),
                                 ("dx",), "minidl.layers.GlobalAvgPool2d")


# --------------------------------------------------------------------------- 09 attention
def _check_function_exercise(grader, configs, make, names):
    """Shared body of the checkers with several inputs.

    make(config) -> (forward, reference, tensors, args, label): ``forward()`` the output
    (reads the arrays of ``tensors``, a dict name -> array, which are perturbed in place);
    ``reference(dout)`` minidl's gradients, a dict name -> array; ``args`` your
    arguments after dout; ``names`` orders your outputs.
    """
    def check_one(config):
        with _MinidlRng():
            forward, reference, tensors, args, label = make(config)
            dout = config["rng"].standard_normal(forward().shape)
            expected = reference(dout)
            numeric = _numeric_grads(forward, dout, tensors)
        answer = grader.call(dout, *args)
        return _worst_errors(answer, names, numeric, expected, label)

    return grader.run(configs, check_one)


def check_rnn_step_backward(fn, seed=0, verbose=True):
    """Check ``fn(dh, x, h_prev, w_ih, w_hh, b) -> (dx, dh_prev, dw_ih, dw_hh, db)``.

    One step of a tanh RNN, ``h = tanh(x @ w_ih.T + h_prev @ w_hh.T + b)``, with x
    ``(N, D)``, h_prev ``(N, H)``, w_ih ``(H, D)``, w_hh ``(H, H)`` (PyTorch's layout, as
    in minidl's RNN), b ``(H,)``; dh = dL/dh ``(N, H)``. Return the gradients shaped like
    x, h_prev, w_ih, w_hh and b. Reference: :class:`minidl.layers.RNN` run for one step
    from ``hx = h_prev`` (its ``grad_initial_state`` is dh_prev).
    """
    grader = _Grader("check_rnn_step_backward", fn,
                     "first da = dh * (1 - h**2) (tanh' in terms of its output), then the "
                     "Linear rules: dx = da @ w_ih, dh_prev = da @ w_hh, dw_ih = da.T @ x, "
                     "dw_hh = da.T @ h_prev, db = da summed over the batch", verbose)
    specs = [{"desc": f"x ({n}, {d}), hidden {h}", "shape": (n, d, h)}
             for n, d, h in [(3, 4, 5), (1, 2, 3), (4, 3, 1), (2, 1, 4)]]

    def make(config):
        n, d, h = config["shape"]
        rng = config["rng"]
        x, h_prev = rng.standard_normal((n, d)), rng.standard_normal((n, h))
        w_ih, w_hh = rng.standard_normal((h, d)) * 0.6, rng.standard_normal((h, h)) * 0.6
        b = rng.standard_normal(h) * 0.5
        layer = L.RNN(d, h).to(np.float64)
        for name, value in [("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh),
                            ("bias_ih_l0", b), ("bias_hh_l0", np.zeros(h))]:
            getattr(layer, name).data[...] = value
        xs, hs = x[None].copy(), h_prev[None].copy()

        def forward():
            out = layer(xs, hs)[0][0]
            layer.drop_saved()
            return out

        def reference(dout):
            layer.zero_grad()
            layer(xs, hs)
            dx = layer.backward(dout[None])[0]
            return {"dx": dx, "dh_prev": layer.grad_initial_state[0],
                    "dw_ih": layer.weight_ih_l0.grad.copy(),
                    "dw_hh": layer.weight_hh_l0.grad.copy(),
                    "db": layer.bias_ih_l0.grad.copy()}

        tensors = {"dx": xs[0], "dh_prev": hs[0], "dw_ih": layer.weight_ih_l0.data,  # views
                   "dw_hh": layer.weight_hh_l0.data, "db": layer.bias_ih_l0.data}
        return forward, reference, tensors, (x, h_prev, w_ih, w_hh, b), "minidl.layers.RNN"

    return _check_function_exercise(grader, _configs(seed, specs), make,
                                    ("dx", "dh_prev", "dw_ih", "dw_hh", "db"))


def check_attention_backward(fn, seed=0, verbose=True):
    """Check ``fn(dout, q, k, v, causal) -> (dq, dk, dv)`` for scaled dot-product attention.

    ``out = softmax(q @ k^T / sqrt(E) + M) @ v`` per batch entry, softmax over the last
    axis; q ``(N, L, E)``, k ``(N, S, E)``, v ``(N, S, Ev)``, out and dout ``(N, L, Ev)``.
    M is 0, or with ``causal`` (then L == S) -inf above the diagonal (query i sees keys
    j <= i). Return dq, dk, dv shaped like q, k, v. Reference:
    :func:`minidl.functional.scaled_dot_product_attention_backward`.
    """
    grader = _Grader("check_attention_backward", fn,
                     "with P the softmax weights: dv = P^T dout, dP = dout v^T, dS = P * (dP - "
                     "sum over keys of dP * P), dq = dS k / sqrt(E), dk = dS^T q / sqrt(E); "
                     "masked entries have P = 0 and need no special case", verbose)
    specs = [{"desc": f"q ({n}, {l}, {e}), k ({n}, {s}, {e}), v ({n}, {s}, {ev}), causal {c}",
              "shape": (n, l, s, e, ev), "causal": c}
             for n, l, s, e, ev, c in [(2, 3, 4, 5, 2, False), (1, 4, 4, 3, 3, True),
                                       (3, 1, 2, 2, 4, False), (2, 5, 5, 4, 1, True)]]

    def make(config):
        n, length, source, e, ev = config["shape"]
        rng = config["rng"]
        q, k, v = (rng.standard_normal(shape) for shape in
                   ((n, length, e), (n, source, e), (n, source, ev)))
        causal = config["causal"]
        tensors = {"dq": q.copy(), "dk": k.copy(), "dv": v.copy()}

        def forward():
            return functional.scaled_dot_product_attention(
                tensors["dq"], tensors["dk"], tensors["dv"], is_causal=causal)[0]

        def reference(dout):
            _, weights, _ = functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
            dq, dk, dv = functional.scaled_dot_product_attention_backward(dout, q, k, v, weights)
            return {"dq": dq, "dk": dk, "dv": dv}

        return (forward, reference, tensors, (q, k, v, causal),
                "minidl.functional.scaled_dot_product_attention_backward")

    return _check_function_exercise(grader, _configs(seed, specs), make, ("dq", "dk", "dv"))


__all__ = [
    "check_adam_step", "check_attention_backward", "check_avgpool_backward",
    "check_batch_norm_backward", "check_col2im", "check_conv2d_backward",
    "check_dropout_backward", "check_global_avg_pool_backward", "check_leaky_relu_backward",
    "check_linear_backward", "check_maxpool_backward", "check_mse_loss", "check_relu_backward",
    "check_residual_backward", "check_rnn_step_backward", "check_sgd_momentum_step",
    "check_sigmoid_backward", "check_softmax_ce", "check_weight_decay",
]

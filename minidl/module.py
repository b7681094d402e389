"""The layer protocol: :class:`Param` and :class:`Module`.

Every layer is a ``Module`` with a hand-written ``forward`` and ``backward``::

    y = layer(x)             # forward; caches what backward needs
    dx = layer.backward(dy)  # returns dL/dx and ADDS dL/dparam into param.grad

Attributes that are :class:`Param` or ``Module`` instances are registered
automatically (as in PyTorch), so ``parameters()``, ``state_dict()``, ``train()``,
``to()`` and ``summary()`` walk the tree without per-layer code. Buffers (arrays that
are state but not trained, such as BatchNorm's running statistics) are registered
with :meth:`Module.register_buffer`.
"""
import functools
from collections import OrderedDict

import numpy as np

from . import backend
from .checks import array_shape, float_array, is_array, positive_int  # noqa: F401 (re-exported)


class Param:
    """A trainable array and the gradient accumulated into it.

    ``data`` and ``grad`` have the same shape, dtype and device. ``backward`` adds
    into ``grad``; ``zero_grad()`` (or the optimizer's) resets it to zero.
    """

    def __init__(self, data, name=""):
        self.name = name
        self.data = data
        self.grad = backend.get_array_module(data).zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    def zero_grad(self):
        self.grad.fill(0)

    def __repr__(self):
        return f"Param({self.name!r}, shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class OutOfMemoryError(RuntimeError, MemoryError):
    """A layer's parameters or a forward's arrays do not fit in memory (names the layer)."""


class _SizesTooLarge(ValueError):
    """Sizes beyond any memory (a ValueError naming the layer)."""


def _too_large(name, err):
    """The error for sizes NumPy cannot allocate, naming the layer; None if ``err`` is
    not about sizes (NumPy says "Maximum allowed dimension exceeded" or "array is too big"
    for sizes beyond any memory, MemoryError for sizes beyond this machine's)."""
    if isinstance(err, (OutOfMemoryError, _SizesTooLarge)):
        return None  # already names the innermost layer
    if isinstance(err, MemoryError):
        return OutOfMemoryError(f"{name}: not enough memory ({err}); use smaller sizes")
    if isinstance(err, (OverflowError, ZeroDivisionError)) or (
            isinstance(err, ValueError) and ("Maximum allowed dimension" in str(err)
                                             or "array is too big" in str(err))):
        return _SizesTooLarge(f"{name}: the sizes are too large to allocate ({err})")
    return None


def _naming_size_errors(init):
    """Wrap a Module subclass's __init__: allocation failures name the class."""
    @functools.wraps(init)
    def checked_init(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except (MemoryError, OverflowError, ZeroDivisionError, ValueError) as err:
            better = _too_large(type(self).__name__, err)
            if better is None:
                raise
            raise better from err
    return checked_init


class _SummaryRecorder:
    """Collects (module, input shape, output shape) for every leaf call during summary()."""
    active = None

    def __init__(self):
        self.rows = []


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(x)`` and ``backward(dy)``. A forward stores what
    backward needs with :meth:`save_for_backward`; backward takes it back with
    :meth:`saved_for_backward`, which frees it and raises a clear error when there is
    nothing to take (backward before forward, or backward called twice).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # Linear(10**6, 10**6): an error naming Linear
            cls.__init__ = _naming_size_errors(cls.__init__)

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_saved", None)
        object.__setattr__(self, "_output", None)  # (shape, dtype, device) of the last forward

    # ------------------------------------------------------------------ registry
    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        if name in self._buffers and hasattr(value, "shape"):
            object.__setattr__(self, name, value)  # still a buffer (e.g. running_mean *= m)
            return
        if isinstance(value, Module) and name in self._modules:
            self._modules[name] = value  # replaced in place: a Sequential keeps its order
            object.__setattr__(self, name, value)
            return
        for registry in (self._params, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Param):
            value.name = value.name or name
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """Register a non-trained array (saved in state_dict, moved by ``to()``)."""
        self._buffers[name] = True
        object.__setattr__(self, name, array)

    def children(self):
        return list(self._modules.values())

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix=""):
        """(dotted name, Param) pairs; the names are the state_dict keys."""
        for module_name, module in self.named_modules(prefix):
            for name, param in module._params.items():
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self):
        return [param for _, param in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name in module._buffers:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    def num_parameters(self):
        return int(sum(int(np.prod(p.data.shape)) for p in self.parameters()))

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for param in self.parameters():
            param.zero_grad()

    # ------------------------------------------------------------------ devices and dtypes
    def to(self, target):
        """Move parameters and buffers: ``to("gpu")``, ``to("cpu")``, or cast: ``to(np.float64)``.

        Gradients are reset to zero; cached forward values are dropped.
        """
        if isinstance(target, str):
            convert = lambda a: backend.to_device(a, target)  # noqa: E731
        else:
            dtype = np.dtype(target)
            if dtype.kind != "f":
                raise ValueError(f"{type(self).__name__}.to: expected 'cpu', 'gpu' or a float "
                                 f"dtype, got {target!r}")
            convert = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a  # noqa: E731
        for _, module in self.named_modules():
            for param in module._params.values():
                param.data = convert(param.data)
                param.grad = backend.get_array_module(param.data).zeros_like(param.data)
            for name in module._buffers:
                object.__setattr__(module, name, convert(getattr(module, name)))
        self.drop_saved()
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Copies of every parameter and buffer, by dotted name ("0.weight", "block1.bn.running_var")."""
        state = OrderedDict()
        for name, param in self.named_parameters():
            state[name] = param.data.copy()
        for name, buffer in self.named_buffers():
            state[name] = buffer.copy()
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into this module's parameters and buffers.

        All or nothing: the names (missing or unexpected keys), every shape and every
        dtype (real numbers only: no object, complex, string or bool arrays) are checked,
        and every array is moved to this module's device and cast to its dtype, before
        anything is assigned; one ValueError lists every problem and leaves the module
        as it was.
        """
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a dict of arrays "
                            f"(as state_dict() returns), got {type(state).__name__}")
        own = OrderedDict()
        for name, param in self.named_parameters():
            own[name] = ("param", param)
        for module_name, module in self.named_modules():
            for name in module._buffers:
                own[f"{module_name}.{name}" if module_name else name] = ("buffer", (module, name))
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = []
        for key, (kind, target) in own.items():
            if key in state:
                current = target.data if kind == "param" else getattr(*target)
                value = state[key]
                if not is_array(value) or getattr(value, "dtype", np.dtype(object)).kind not in "fiu":
                    mismatched.append(f"{key}: expected a real-valued array, got "
                                      f"{getattr(value, 'dtype', type(value).__name__)}")
                elif tuple(value.shape) != tuple(current.shape):
                    mismatched.append(f"{key}: expected shape {tuple(current.shape)}, "
                                      f"got {tuple(value.shape)}")
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        problems += mismatched
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state does not fit this "
                             "model:\n  " + "\n  ".join(problems))
        staged = []
        for key, (kind, target) in own.items():
            if key in state:
                current = target.data if kind == "param" else getattr(*target)
                value = backend.to_device(state[key], backend.device_of(current))
                staged.append((current, value.astype(current.dtype, copy=False)))
        for current, value in staged:
            # Written into the existing arrays, so references held elsewhere (an
            # optimizer, a user's variable) see the loaded values.
            current[...] = value

    # ------------------------------------------------------------------ forward / backward
    _call_depth = 0  # > 0 while inside another module's forward
    needs_input_grad = True

    def set_needs_input_grad(self, needed):
        """Say whether the caller uses ``dx``, the gradient w.r.t. this module's input.

        The input of a model is data, whose gradient nobody uses (PyTorch: an input that
        does not require grad). ``model.set_needs_input_grad(False)`` lets the first layer
        with parameters skip its ``dx`` (for a Linear, a third of its backward GEMMs) and
        return None; containers pass the flag on to the layers before their first
        parameter. The Trainer does this; gradient checks turn it back on.
        """
        object.__setattr__(self, "needs_input_grad", bool(needed))
        return self


    def __call__(self, x, *args, **kwargs):
        """Check ``x`` against the layer's declared contract, then run ``forward``."""
        if Module._call_depth == 0:
            self._check_finite(x)
        if self.input_shape is not None:
            self.check_input(x)
        object.__setattr__(self, "_saved", ())  # a forward ran: backward may now run once
        Module._call_depth += 1
        try:
            y = self.forward(x, *args, **kwargs)
        except (MemoryError, OverflowError, ValueError) as err:
            shape = tuple(getattr(x, "shape", ()))
            better = _too_large(f"{type(self).__name__} (input shape {shape})", err)
            if better is None:
                raise
            raise better from err
        finally:
            Module._call_depth -= 1
        output = (tuple(y.shape), y.dtype, backend.device_of(y)) if is_array(y) else None
        object.__setattr__(self, "_output", output)
        recorder = _SummaryRecorder.active
        if recorder is not None and not self._modules:
            recorder.rows.append((self, tuple(x.shape), tuple(y.shape)))
        return y

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def save_for_backward(self, *values):
        """Keep ``values`` until the next backward (which frees them)."""
        object.__setattr__(self, "_saved", values)

    def saved_for_backward(self, dy):
        """Return what forward saved and free it, after checking ``dy``.

        ``dy`` must be an array shaped like the forward's output, with its dtype and on
        its device (a float64 ``dy`` into a float32 layer would silently up-cast).
        """
        saved = self._saved
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward: nothing saved from a forward pass; "
                               "call forward before backward, and backward once per forward")
        if self._output is not None:
            self._check_output_gradient(dy, *self._output)
        object.__setattr__(self, "_saved", None)
        return saved if len(saved) != 1 else saved[0]

    def _check_output_gradient(self, dy, shape, dtype, device):
        name = f"{type(self).__name__}.backward"
        if not is_array(dy):
            raise TypeError(f"{name}: expected dy as an array of shape {shape} (the forward "
                            f"output), got {type(dy).__name__}")
        if tuple(dy.shape) != shape:
            raise ValueError(f"{name}: expected dy of shape {shape} (the forward output), "
                             f"got {tuple(dy.shape)}")
        if dy.dtype != dtype:
            raise TypeError(f"{name}: expected dy of dtype {dtype} (the forward output's), "
                            f"got {dy.dtype}")
        if backend.device_of(dy) != device:
            raise ValueError(f"{name}: dy is on {backend.device_of(dy)} but the forward ran on "
                             f"{device}; use minidl.to_device(dy, {device!r})")

    def drop_saved(self):
        """Forget what forward saved, here and in every child (frees it after an
        evaluation-only forward, and before a move to another device or dtype).
        Layers with scratch buffers of their own extend this."""
        object.__setattr__(self, "_saved", None)
        for child in self._modules.values():
            child.drop_saved()

    # ------------------------------------------------------------------ input checks
    #: The input contract, checked by ``__call__`` before ``forward``: the layout of x
    #: (``"(N, C, H, W)"``; ``...`` stands for any number of axes; None: no check), and
    #: the name of the attribute fixing the size of axis ``input_axis`` (None: any size).
    input_shape = None
    input_axis_size = None
    input_axis = 1

    def check_input(self, x):
        """Raise a clear error unless ``x`` fits the declared input contract.

        x must be a float32/float64 array with the layout ``input_shape``; axis
        ``input_axis`` must have the size ``getattr(self, input_axis_size)``; and the layer's
        own state (parameters and float buffers) fixes the dtype and device x must have.
        """
        name = type(self).__name__
        float_array(x, name, self.input_shape)
        array_shape(x, name, self.input_shape)
        # Layers that reduce over fixed axes (conv, pooling, BatchNorm) cannot do so over an
        # empty one; elementwise layers ("(N, ...)") just return an empty array.
        if self.input_shape.startswith("(N,") and "..." not in self.input_shape \
                and 0 in x.shape[1:]:
            raise ValueError(f"{name}: got input of shape {tuple(x.shape)} with an empty axis; "
                             f"only the batch axis N of {self.input_shape} may be 0")
        if self.input_axis_size is not None:
            size = getattr(self, self.input_axis_size)
            if x.shape[self.input_axis] != size:
                noun = "channels" if self.input_axis == 1 else "features"
                raise ValueError(f"{name}: expected {size} {noun} ({self.input_axis_size}, axis "
                                 f"{self.input_axis} of {self.input_shape}), got input of shape "
                                 f"{tuple(x.shape)}")
        state = [p.data for p in self._params.values()] + [
            getattr(self, b) for b in self._buffers if getattr(self, b).dtype.kind == "f"]
        for array in state:
            if backend.device_of(array) != backend.device_of(x):
                raise ValueError(f"{name}: input is on {backend.device_of(x)} but the layer's "
                                 f"state is on {backend.device_of(array)}; use "
                                 f"model.to({backend.device_of(x)!r}) or minidl.to_device(x)")
            if array.dtype != x.dtype:
                raise TypeError(f"{name}: input dtype {x.dtype} does not match parameter dtype "
                                f"{array.dtype}; cast the input or call model.to(np.{x.dtype})")

    def _check_finite(self, x):
        """Refuse NaN/Inf at the model's entry (one reduction per step, not per layer).

        NumPy only: on the GPU, reading the answer back would stall the device every
        step; there the Trainer's check of the loss at logging intervals catches NaNs.
        """
        if hasattr(x, "dtype") and x.dtype.kind == "f" and backend.get_array_module(x) is np:
            if not bool(np.isfinite(x).all()):
                raise ValueError(f"{type(self).__name__}: input contains NaN or Inf "
                                 f"({int((~np.isfinite(x)).sum())} of {x.size} values)")

    # ------------------------------------------------------------------ summary
    def macs(self, input_shape, output_shape):
        """Multiply-adds of one forward pass for ONE sample; layers with GEMMs override."""
        return 0

    def summary(self, input_shape, print_fn=print):
        """Print per layer: output shape, parameters, multiply-adds; return the totals.

        ``input_shape`` excludes the batch dimension, e.g. ``(1, 28, 28)``.
        A forward pass on zeros (batch of 2, eval mode) records the shapes.
        """
        first = next(iter(self.parameters()), None)
        xp = backend.get_array_module(first.data) if first is not None else np
        dtype = first.data.dtype if first is not None else backend.default_dtype()
        modes = [(module, module.training) for _, module in self.named_modules()]
        recorder = _SummaryRecorder()
        _SummaryRecorder.active = recorder
        try:
            self.eval()
            self(xp.zeros((2,) + tuple(input_shape), dtype=dtype))
        finally:
            _SummaryRecorder.active = None
            for module, training in modes:
                object.__setattr__(module, "training", training)
            self.drop_saved()
        names = {id(module): name for name, module in self.named_modules()}
        rows = [(f"{names.get(id(module), '?') or '(model)'} ({type(module).__name__})",
                 str(("N",) + out_shape[1:]), module.num_parameters(),
                 int(module.macs(in_shape[1:], out_shape[1:])))
                for module, in_shape, out_shape in recorder.rows]
        width = max([len("layer")] + [len(row[0]) for row in rows]) + 2
        header = f"{'layer':<{width}}{'output shape':<22}{'params':>12}{'mult-adds':>16}"
        lines = [header, "-" * len(header)]
        total_params = self.num_parameters()
        total_macs = sum(row[3] for row in rows)
        for label, shape, params, macs in rows:
            lines.append(f"{label:<{width}}{shape:<22}{params:>12,}{macs:>16,}")
        lines += ["-" * len(header),
                  f"total parameters: {total_params:,}",
                  f"total mult-adds per sample: {total_macs:,}"]
        print_fn("\n".join(lines))
        return {"params": total_params, "macs": total_macs}

    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({name}): " + repr(child).replace("\n", "\n  ")
                         for name, child in self._modules.items())
        return f"{type(self).__name__}(\n{body}\n)"

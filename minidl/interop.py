"""Move weights and gradients between minidl and PyTorch, as dicts of NumPy arrays.

minidl's state_dict names already follow PyTorch's ("0.weight", "3.running_mean",
"weight_hh_l0_reverse"); what differs is a few layouts and tensors only one side has::

    sd = minidl.interop.torch_state_dict(model)              # {torch name: array}
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})

    minidl.interop.load_torch_state_dict(model, {k: v.numpy() for k, v in
                                                 torch_model.state_dict().items()})

No torch import here: callers convert tensors (``.numpy()``, ``torch.from_numpy``).

What is converted is kept per layer class in two registries, so a new layer with a
torch counterpart adds one line (layers not listed map name for name, unchanged):

- :data:`CONVERSIONS`: ``{class name: {minidl name: (torch name, to_torch, from_torch)}}``
  (``Linear.weight`` is ``(in, out)`` in minidl and ``(out, in)`` in torch);
- :data:`TORCH_ONLY`: ``{class name: {torch name: make(module)}}`` for tensors torch
  keeps and minidl does not (BatchNorm's ``num_batches_tracked``): written by
  :func:`torch_state_dict`, accepted and ignored by :func:`load_torch_state_dict`.

Layers whose parameters already match torch's names and layouts one-to-one (Conv2d,
BatchNorm1d/2d weight, bias and running statistics, RNN/LSTM/GRU) need no entry; nor
do containers, whose children's names are the dotted prefixes ("0.", "lstm.", ...),
so a layer built from Linears (an attention block's ``out_proj``) converts through
the Linear entry.
"""
from collections import OrderedDict

import numpy as np

from . import checks
from .backend import to_numpy
from .module import Module


def _transpose(array):
    return np.ascontiguousarray(array.T)


def _no_batches_tracked(module):
    # minidl's BatchNorm always uses its momentum, so torch's counter is not needed:
    # torch reads it only when momentum=None (a cumulative average).
    return np.array(0, dtype=np.int64)


CONVERSIONS = {
    "Linear": {"weight": ("weight", _transpose, _transpose)},
}

TORCH_ONLY = {
    "BatchNorm1d": {"num_batches_tracked": _no_batches_tracked},
    "BatchNorm2d": {"num_batches_tracked": _no_batches_tracked},
}


def _lookup(registry, module):
    """The registry entry of the module's class or of its nearest base class."""
    for cls in type(module).__mro__:
        if cls.__name__ in registry:
            return registry[cls.__name__]
    return {}


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _entries(module):
    """(minidl name, torch name, to_torch, from_torch, kind) for every tensor of the model,
    kind being "param" or "buffer"; the names are full dotted names."""
    keep = lambda array: array  # noqa: E731
    for prefix, child in module.named_modules():
        conversions = _lookup(CONVERSIONS, child)
        local = [(name, "param") for name in child._params] + [
            (name, "buffer") for name in child._buffers]
        for name, kind in local:
            torch_name, to_torch, from_torch = conversions.get(name, (name, keep, keep))
            yield _join(prefix, name), _join(prefix, torch_name), to_torch, from_torch, kind


def _check_module(module, owner):
    if not isinstance(module, Module):
        raise TypeError(f"{owner}: expected a minidl Module, got {type(module).__name__}")


def _as_array(value, key, owner):
    """A NumPy array of ``value`` (an array, a nested list, a detached CPU tensor)."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:  # ragged, bfloat16, requires_grad
        raise TypeError(f"{owner}: {key}: cannot convert {type(value).__name__} to a NumPy "
                        f"array ({error}); pass tensor.detach().cpu().float().numpy()") from None


def torch_state_dict(module, grads=False):
    """The model's state as PyTorch names and layouts: ``{torch name: NumPy array}``.

    ``grads=False``: parameters and buffers, plus torch-only buffers (what
    ``torch_model.load_state_dict`` expects). ``grads=True``: the gradients of the
    parameters instead, keyed like ``torch_model.named_parameters()`` (to compare with
    ``{name: p.grad.numpy()}`` after a backward pass in both libraries).
    """
    _check_module(module, "torch_state_dict")
    grads = checks.boolean(grads, "grads", "torch_state_dict")
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    state = OrderedDict()
    for name, torch_name, to_torch, _, kind in _entries(module):
        if grads and kind == "param":
            state[torch_name] = to_torch(to_numpy(params[name].grad).copy())
        elif not grads:
            array = params[name].data if kind == "param" else buffers[name]
            state[torch_name] = to_torch(to_numpy(array).copy())
    if not grads:
        for prefix, child in module.named_modules():
            for torch_name, make in _lookup(TORCH_ONLY, child).items():
                state[_join(prefix, torch_name)] = make(child)
    return state


def load_torch_state_dict(module, state_dict, strict=True):
    """Load a PyTorch state_dict (``{torch name: array}``) into a minidl model.

    Layouts are converted (a torch Linear weight (out, in) becomes minidl's (in, out));
    torch-only tensors (``num_batches_tracked``) are skipped. Missing or unexpected
    keys and wrong shapes raise one ValueError listing them (see
    :meth:`Module.load_state_dict`); ``strict=False`` allows missing and unexpected keys.
    Returns the module.
    """
    owner = "load_torch_state_dict"
    _check_module(module, owner)
    if not isinstance(state_dict, dict):
        raise TypeError(f"{owner}: expected a dict of arrays, got {type(state_dict).__name__}")
    strict = checks.boolean(strict, "strict", owner)
    torch_only = {_join(prefix, name) for prefix, child in module.named_modules()
                  for name in _lookup(TORCH_ONLY, child)}
    converted, used = OrderedDict(), set()
    for name, torch_name, _, from_torch, _ in _entries(module):
        if torch_name in state_dict:
            converted[name] = from_torch(_as_array(state_dict[torch_name], torch_name, owner))
            used.add(torch_name)
    unexpected = [str(key) for key in state_dict if key not in used and key not in torch_only]
    if strict and unexpected:
        raise ValueError(f"{owner}: state does not fit this {type(module).__name__}:\n  "
                         "unexpected keys: " + ", ".join(unexpected))
    module.load_state_dict(converted, strict=strict)
    return module


__all__ = ["CONVERSIONS", "TORCH_ONLY", "load_torch_state_dict", "torch_state_dict"]

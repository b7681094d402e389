"""Checkpoints and weight files: one ``.npz`` each, written atomically, never pickled.

A checkpoint holds everything a run needs to continue exactly where it stopped::

    model/<name>            every parameter and buffer (model.state_dict()), as arrays
    optimizer/..., ...      every array inside the optimizer/scheduler/extra states
    __meta__                one JSON string (a NumPy unicode array) with every other
                            value: epoch, history, optimizer hyper-parameters, scheduler
                            state, the minidl RNG state, the data loaders' generator states

Arrays stay arrays (exact bits, any size); everything else is JSON, so a checkpoint is
readable with nothing but ``np.load(path, allow_pickle=False)`` and ``json.loads``.

Writes go to a temporary file in the target directory, are flushed to disk, and only
then renamed over the target with ``os.replace`` (atomic on POSIX and Windows): a crash
or Ctrl-C in the middle of a save leaves the previous checkpoint intact.

Reads check everything before changing anything: a truncated or corrupt file, a file
that is not a minidl checkpoint, or one saved from another architecture raises
:class:`CheckpointError` naming the file (and the keys that do not fit).
"""
import contextlib
import json
import os
import uuid
import zipfile
import zlib

import numpy as np

from .. import backend, checks

FORMAT = "minidl.checkpoint"
VERSION = 1
META_KEY = "__meta__"

# Tags of the JSON encoding of nested state (see _encode): chosen so that they cannot
# collide with the keys of an optimizer or scheduler state.
_ARRAY, _SCALAR, _ITEMS, _TUPLE = "__ndarray__", "__npscalar__", "__items__", "__tuple__"


class CheckpointError(ValueError):
    """A checkpoint or weight file that cannot be read or does not fit the model."""


# --------------------------------------------------------------------------- atomic files
def atomic_write(path, write):
    """Write a file atomically: ``write(binary_file)`` fills a temp file, then it is renamed.

    The temp file lives in the target's directory (``os.replace`` is only atomic within
    one file system) and is removed if anything fails, including KeyboardInterrupt.
    Missing parent directories are created. Returns ``path``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    _fsync_directory(directory)
    return path


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- nested state
def _encode(value, key, arrays):
    """Return a JSON-able copy of ``value`` with every array moved into ``arrays``.

    Arrays (NumPy or CuPy) become ``{"__ndarray__": key}`` and NumPy scalars
    ``{"__npscalar__": key}`` (their dtype survives the round trip); dicts whose keys
    are not all strings (optimizer state is keyed by parameter index) become
    ``{"__items__": [[k, v], ...]}`` and tuples ``{"__tuple__": [...]}``.
    """
    if key in arrays:
        raise TypeError(f"save_checkpoint: two values would be stored under {key!r} "
                        "(a key containing '/', or both 0 and '0' in one dict)")
    if checks.is_array(value):
        _check_storable(value, key, "save_checkpoint")
    if isinstance(value, np.generic):
        arrays[key] = np.asarray(value)
        return {_SCALAR: key}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arrays[key] = backend.to_numpy(value)
        return {_ARRAY: key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, f"{key}/{k}", arrays) for k, v in value.items()}
        for k in value:
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"save_checkpoint: cannot store a dict key of type "
                                f"{type(k).__name__} (at {key!r})")
        return {_ITEMS: [[k, _encode(v, f"{key}/{k}", arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"save_checkpoint: cannot store a value of type {type(value).__name__} "
                    f"(at {key!r}); use arrays, numbers, strings, lists and dicts")


def _check_path(path, caller):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{caller}: path must be a file path (str or os.PathLike), got "
                        f"{checks.describe(path)}")
    if not os.fspath(path):
        raise ValueError(f"{caller}: path is empty; give a file name such as 'run.npz'")
    return path


def _check_model(model, caller):
    if not (hasattr(model, "state_dict") and hasattr(model, "load_state_dict")):
        raise TypeError(f"{caller}: expected a minidl Module as model, got "
                        f"{checks.describe(model)}")


def _check_stateful(caller, **objects):
    """Each given object (optimizer, scheduler, loader) must have state_dict methods."""
    for role, value in objects.items():
        if value is not None and not (hasattr(value, "state_dict")
                                      and hasattr(value, "load_state_dict")):
            raise TypeError(f"{caller}: {role} must be a minidl object with state_dict() "
                            f"(or None), got {checks.describe(value)}")


def _check_storable(array, key, caller):
    """Refuse arrays a checkpoint does not hold: Python objects (np.savez would pickle
    them, and a checkpoint is never pickled) and complex numbers (minidl is real-valued)."""
    dtype = np.dtype(array.dtype)
    if dtype.hasobject or dtype.kind == "c":
        what = "Python objects" if dtype.hasobject else "complex numbers"
        raise TypeError(f"{caller}: cannot store an array of {what} (dtype {dtype}, at "
                        f"{key!r}); use real numeric arrays, or lists and dicts")


def _model_arrays(model, caller, prefix=""):
    """The model's state_dict as NumPy arrays keyed ``prefix + name``, each checked."""
    if not hasattr(model, "state_dict"):
        raise TypeError(f"{caller}: expected a minidl Module as model, got "
                        f"{checks.describe(model)}")
    arrays = {}
    for name, value in model.state_dict().items():
        _check_storable(value, prefix + name, caller)
        arrays[prefix + name] = backend.to_numpy(value)
    return arrays


def _decode(value, arrays):
    """Inverse of :func:`_encode` (arrays come back as NumPy arrays on the CPU)."""
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, content), = value.items()
            if tag == _ARRAY:
                return arrays[content]
            if tag == _SCALAR:
                return arrays[content][()]
            if tag == _ITEMS:
                return {k: _decode(v, arrays) for k, v in content}
            if tag == _TUPLE:
                return tuple(_decode(v, arrays) for v in content)
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _loader_state(loader):
    """A loader's ``state_dict()``, or the value itself when it is already a state."""
    return loader.state_dict() if hasattr(loader, "state_dict") else loader


# --------------------------------------------------------------------------- reading
def _read_npz(path, caller):
    """Every array of the .npz at ``path``, read eagerly so corruption shows up here.

    Every error of the zip and .npy layers (a bad CRC, a truncated member, an unknown
    zip version or compression, an "encrypted" flag, a header that pickles) becomes a
    CheckpointError naming the file; the file is always closed.
    """
    try:
        with open(path, "rb") as handle:
            data = np.load(handle, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single .npy array, not an .npz archive")
            with data:
                return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile,
            zlib.error, NotImplementedError, RuntimeError, MemoryError) as err:
        # zipfile raises NotImplementedError for an unknown version or compression and
        # RuntimeError for an encrypted member; a forged .npy header can ask for any size.
        raise CheckpointError(
            f"{caller}: cannot read {os.fspath(path)!r}: the file is truncated or corrupt, or "
            f"not a NumPy .npz archive ({type(err).__name__}: {err}). If a save was "
            "interrupted, use an earlier checkpoint; otherwise save the weights again.") from err


def _read_meta(path, arrays, caller):
    if META_KEY not in arrays:
        raise CheckpointError(f"{caller}: {os.fspath(path)!r} is not a minidl checkpoint (it has "
                              f"no {META_KEY!r} entry); a file written by save_weights is "
                              "read with load_weights")
    try:
        meta = json.loads(str(arrays[META_KEY][()]))
    except ValueError as err:
        raise CheckpointError(f"{caller}: {os.fspath(path)!r} has a corrupt {META_KEY!r} "
                              f"entry ({err})") from err
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != FORMAT:
        raise CheckpointError(f"{caller}: {os.fspath(path)!r} is not a minidl checkpoint "
                              f"(format {found!r})")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{caller}: {os.fspath(path)!r} was written by a newer minidl "
                              f"(checkpoint version {meta['version']}, this one reads up to "
                              f"{VERSION}); upgrade minidl")
    return meta


def _load_model_state(path, model, state, caller, saved_from=None):
    """``model.load_state_dict`` with an error that names the file and the architectures."""
    try:
        model.load_state_dict(state)
    except ValueError as err:
        origin = f" (saved from a {saved_from})" if saved_from else ""
        raise CheckpointError(f"{caller}: {os.fspath(path)!r}{origin} does not fit this "
                              f"{type(model).__name__}; was it saved from another "
                              f"architecture?\n{err}") from err


def _check_optimizer_fits(path, optimizer, saved):
    """Compare parameter groups and sizes before anything is loaded."""
    saved_groups = saved.get("param_groups", []) if isinstance(saved, dict) else None
    if not isinstance(saved_groups, list) or not all(
            isinstance(group, dict) and isinstance(group.get("params", []), list)
            for group in saved_groups):
        raise CheckpointError(f"load_checkpoint: the optimizer state in {os.fspath(path)!r} "
                              "is corrupt (its param groups are not a list of dicts)")
    own_groups = optimizer.param_groups
    saved_sizes = [len(group.get("params", [])) for group in saved_groups]
    own_sizes = [len(group["params"]) for group in own_groups]
    if saved_sizes != own_sizes:
        raise CheckpointError(f"load_checkpoint: the optimizer state in {os.fspath(path)!r} has "
                              f"parameter groups of sizes {saved_sizes}, this "
                              f"{type(optimizer).__name__} has {own_sizes}")
    params = [param for group in own_groups for param in group["params"]]
    state = saved.get("state", {})
    if not isinstance(state, dict) or not all(isinstance(entries, dict)
                                              for entries in state.values()):
        raise CheckpointError(f"load_checkpoint: the optimizer state in {os.fspath(path)!r} "
                              "is corrupt (its 'state' is not a dict of dicts)")
    for index, entries in state.items():
        if not str(index).isdigit() or not 0 <= int(index) < len(params):
            raise CheckpointError(f"load_checkpoint: the optimizer state in {os.fspath(path)!r} "
                                  f"refers to parameter {index}, the optimizer has {len(params)}")
        for name, value in entries.items():
            if hasattr(value, "shape") and value.ndim and value.shape != params[int(index)].shape:
                raise CheckpointError(
                    f"load_checkpoint: the optimizer state {name!r} of parameter {index} in "
                    f"{os.fspath(path)!r} has shape {value.shape}, the parameter has "
                    f"{tuple(params[int(index)].shape)}")


def _state_to_param_devices(saved, optimizer):
    """Move each optimizer state array to the device of the parameter it belongs to."""
    params = [param for group in optimizer.param_groups for param in group["params"]]
    state = {}
    for index, entries in saved.get("state", {}).items():
        device = backend.device_of(params[int(index)].data)
        state[index] = {name: backend.to_device(value, device) if isinstance(value, np.ndarray)
                        else value for name, value in entries.items()}
    return dict(saved, state=state)


# --------------------------------------------------------------------------- public API
def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=0, history=None,
                    extra=None, loaders=None):
    """Save a resumable training state to ``path`` (one .npz, written atomically).

    ``history`` is a :class:`~minidl.train.History` or a dict; ``extra`` any nest of
    dicts, lists, numbers, strings and arrays; ``loaders`` a dict name -> DataLoader
    (its ``state_dict()`` is stored) or name -> an already taken loader state. The
    minidl RNG state is always stored. Returns ``path``.
    """
    _check_path(path, "save_checkpoint")
    _check_model(model, "save_checkpoint")
    _check_stateful("save_checkpoint", optimizer=optimizer, scheduler=scheduler)
    epoch = checks.positive_int(epoch, "epoch", "save_checkpoint", allow_zero=True)
    arrays = _model_arrays(model, "save_checkpoint", prefix="model/")
    if history is not None and hasattr(history, "to_dict"):
        history = history.to_dict()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "epoch": epoch,
        "optimizer": (None if optimizer is None
                      else _encode(optimizer.state_dict(), "optimizer", arrays)),
        "optimizer_class": None if optimizer is None else type(optimizer).__name__,
        "scheduler": (None if scheduler is None
                      else _encode(scheduler.state_dict(), "scheduler", arrays)),
        "scheduler_class": None if scheduler is None else type(scheduler).__name__,
        "history": _encode(history, "history", arrays),
        "rng_state": _encode(backend.get_rng_state(), "rng", arrays),
        "loaders": {name: _encode(_loader_state(loader), f"loaders/{name}", arrays)
                    for name, loader in (loaders or {}).items() if loader is not None},
        "extra": _encode(extra, "extra", arrays),
    }
    arrays[META_KEY] = np.array(json.dumps(meta))
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_checkpoint(path, model, optimizer=None, scheduler=None, loaders=None, restore_rng=True):
    """Restore a state saved by :func:`save_checkpoint` into the given objects.

    Everything is read and checked first: a truncated/corrupt file, a file from another
    architecture, or a missing optimizer/scheduler state raises :class:`CheckpointError`
    naming the file, and nothing is modified. Then the model, optimizer, scheduler and
    ``loaders`` (dict name -> DataLoader) are restored, and, unless ``restore_rng`` is
    False, the minidl RNG (so dropout masks continue as in the interrupted run).

    Returns a dict: ``epoch``, ``history`` (dict or None), ``extra``, ``loaders`` (the
    stored loader states by name), ``model_class`` and ``path``.
    """
    caller = "load_checkpoint"
    _check_path(path, caller)
    _check_model(model, caller)
    restore_rng = checks.boolean(restore_rng, "restore_rng", caller)
    if loaders is not None and not isinstance(loaders, dict):
        raise TypeError(f"{caller}: loaders must be a dict name -> DataLoader, got "
                        f"{checks.describe(loaders)}")
    loaders = {name: loader for name, loader in (loaders or {}).items() if loader is not None}
    _check_stateful(caller, optimizer=optimizer, scheduler=scheduler,
                    **{f"loaders[{name!r}]": loader for name, loader in loaders.items()})
    arrays = _read_npz(path, caller)
    meta = _read_meta(path, arrays, caller)
    model_state = {key[len("model/"):]: value for key, value in arrays.items()
                   if key.startswith("model/")}
    for role, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        saved_class = meta.get(f"{role}_class")
        if target is not None and saved_class and saved_class != type(target).__name__:
            raise CheckpointError(f"{caller}: {os.fspath(path)!r} holds the state of a "
                                  f"{saved_class}, not of this {type(target).__name__} "
                                  f"({role}); nothing was loaded")
    content = _read_content(path, meta, arrays, optimizer, scheduler, loaders, restore_rng)
    if optimizer is not None:
        _check_optimizer_fits(path, optimizer, content["optimizer"])

    # Everything that can be checked without loading is checked; each load below checks
    # its own part before assigning, and a failure rolls back the objects already loaded.
    targets = [("model", model, model_state)]
    if optimizer is not None:
        targets.append(("optimizer", optimizer,
                        _state_to_param_devices(content["optimizer"], optimizer)))
    if scheduler is not None:
        targets.append(("scheduler", scheduler, content["scheduler"]))
    targets += [(f"{name!r} data loader", loader, content["loaders"][name])
                for name, loader in loaders.items()]
    _load_all_or_nothing(path, meta, targets, caller)
    if restore_rng:
        backend.set_rng_state(content["rng_state"])
    return {"epoch": content["epoch"], "history": content["history"],
            "extra": content["extra"], "loaders": content["loaders"],
            "model_class": meta.get("model_class"), "path": os.fspath(path)}


def _read_content(path, meta, arrays, optimizer, scheduler, loaders, restore_rng):
    """Decode and check every part of the metadata that load_checkpoint needs."""
    caller, name = "load_checkpoint", os.fspath(path)
    required = {"epoch", "rng_state", "history", "extra", "loaders", "optimizer", "scheduler"}
    missing = sorted(required - set(meta))
    if missing:
        raise CheckpointError(f"{caller}: {name!r} has incomplete metadata (no "
                              f"{', '.join(missing)}); the file is corrupt or was not "
                              "written by save_checkpoint. Use another checkpoint.")
    try:
        content = {key: _decode(meta[key], arrays) for key in sorted(required)}
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise CheckpointError(f"{caller}: {name!r} has corrupt metadata ({type(err).__name__}: "
                              f"{err}); use another checkpoint") from err
    try:
        content["epoch"] = checks.positive_int(content["epoch"], "the stored epoch", caller,
                                               allow_zero=True)
        if not isinstance(content["loaders"], dict):
            raise TypeError(f"{caller}: the stored loader states must be a dict, got "
                            f"{checks.describe(content['loaders'])}")
        if restore_rng:
            probe = np.random.default_rng()
            probe.bit_generator.state = content["rng_state"]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{caller}: {name!r} has corrupt metadata ({err}); use another "
                              "checkpoint") from err
    for role, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is not None and content[role] is None:
            raise CheckpointError(f"{caller}: {name!r} holds no {role} state")
    for key in loaders:
        if key not in content["loaders"]:
            raise CheckpointError(f"{caller}: {name!r} holds no state for the {key!r} data "
                                  f"loader (it has {sorted(content['loaders'])})")
    return content


def _load_all_or_nothing(path, meta, targets, caller):
    """``load_state_dict`` each (role, object, state); on a failure, put back the
    snapshots of the objects already loaded and raise CheckpointError naming the file."""
    done = []
    try:
        for role, target, state in targets:
            snapshot = target.state_dict()
            if role == "model":
                _load_model_state(path, target, state, caller, saved_from=meta.get("model_class"))
            else:
                try:
                    target.load_state_dict(state)
                except (ValueError, TypeError, KeyError, IndexError) as err:
                    saved = meta.get(f"{role}_class")
                    origin = f" (saved from a {saved})" if saved else ""
                    raise CheckpointError(
                        f"{caller}: the {role} state in {os.fspath(path)!r}{origin} does not fit "
                        f"this {type(target).__name__}; nothing was loaded: {err}") from err
            done.append((target, snapshot))
    except BaseException:
        for target, snapshot in reversed(done):
            target.load_state_dict(snapshot)
        raise


def save_weights(path, model):
    """Save only the model's parameters and buffers: an .npz keyed by state_dict names."""
    _check_path(path, "save_weights")
    state = _model_arrays(model, "save_weights")
    return atomic_write(path, lambda handle: np.savez(handle, **state))


def load_weights(path, model):
    """Load weights saved by :func:`save_weights` (or the model part of a checkpoint)."""
    caller = "load_weights"
    _check_path(path, caller)
    _check_model(model, caller)
    arrays = _read_npz(path, caller)
    saved_from = None
    if META_KEY in arrays:  # a full checkpoint: take its model entries
        saved_from = _read_meta(path, arrays, caller).get("model_class")
        arrays = {key[len("model/"):]: value for key, value in arrays.items()
                  if key.startswith("model/")}
    _load_model_state(path, model, arrays, caller, saved_from=saved_from)
    return model


__all__ = ["CheckpointError", "atomic_write", "load_checkpoint", "load_weights",
           "save_checkpoint", "save_weights"]

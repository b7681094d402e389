"""Exponential moving average (EMA) of a model's parameters and buffers."""
import contextlib

from .. import backend, checks
from ..module import Module


class ExponentialMovingAverage:
    r"""Keep ``average = decay * average + (1 - decay) * current`` for every parameter.

    Call :meth:`update` after each optimizer step; evaluate with the averaged weights
    inside ``with ema.applied(): ...`` (swapped in, then swapped back), or write them
    into the model for good with :meth:`copy_to`.

    Buffers (BatchNorm running statistics) are averaged the same way when
    ``average_buffers`` is True (torch's ``AveragedModel(use_buffers=True)``), else
    copied; integer buffers (``num_batches_tracked``) are always copied.

    ``warmup``: use ``min(decay, (1 + n) / (10 + n))`` at the n-th update (the
    TensorFlow rule), so that early averages are not dominated by the random init.
    The averages start as a copy of the model, which equals torch's AveragedModel.
    """

    def __init__(self, model, decay=0.999, average_buffers=True, warmup=False):
        if not isinstance(model, Module):
            raise TypeError("ExponentialMovingAverage: expected a Module, "
                            f"got {type(model).__name__}")
        name = "ExponentialMovingAverage"
        self.model = model
        self.decay = checks.real_number(decay, "decay", name, 0.0, 1.0)
        self.average_buffers = checks.boolean(average_buffers, "average_buffers", name)
        self.warmup = checks.boolean(warmup, "warmup", name)
        self.num_updates = 0
        self.averages = {name: array.copy() for name, array in self._current(model).items()}

    @staticmethod
    def _current(model):
        """Name -> the model's live array for every parameter and buffer."""
        arrays = {name: param.data for name, param in model.named_parameters()}
        arrays.update(dict(model.named_buffers()))
        return arrays

    def current_decay(self):
        """The decay used by the next update (smaller early on with ``warmup``)."""
        if self.warmup:
            return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        return self.decay

    def update(self):
        """Move every average towards the model's current value."""
        decay = self.current_decay()
        buffer_names = {name for name, _ in self.model.named_buffers()}
        for name, current in self._current(self.model).items():
            average = self.averages[name]
            device = backend.device_of(current)
            if backend.device_of(average) != device or average.dtype != current.dtype:
                # The model was moved or cast (model.to) after the EMA was created.
                average = backend.to_device(average, device).astype(current.dtype)
                self.averages[name] = average
            if current.dtype.kind != "f" or (name in buffer_names and not self.average_buffers):
                average[...] = current
            else:
                average -= (1.0 - decay) * (average - current)
        self.num_updates += 1

    def copy_to(self, model=None):
        """Write the averages into ``model`` (default: the tracked model), in place."""
        model = self.model if model is None else model
        current = self._current(model)
        self._check_names(current, "copy_to")
        for name, array in current.items():
            array[...] = backend.to_device(self.averages[name], backend.device_of(array))

    def swap(self):
        """Exchange the model's values and the averages (a second swap undoes it)."""
        current = self._current(self.model)
        self._check_names(current, "swap")
        for name, array in current.items():
            live = backend.to_device(array.copy(), backend.device_of(self.averages[name]))
            array[...] = backend.to_device(self.averages[name], backend.device_of(array))
            self.averages[name][...] = live

    @contextlib.contextmanager
    def applied(self):
        """``with ema.applied(): evaluate(model)`` runs with the averaged weights."""
        self.swap()
        try:
            yield self.model
        finally:
            self.swap()

    def _check_names(self, current, method):
        if set(current) != set(self.averages):
            missing = sorted(set(self.averages) ^ set(current))
            raise ValueError(f"ExponentialMovingAverage.{method}: the model's parameters and "
                             f"buffers differ from the averaged ones: {', '.join(missing)}")

    def state_dict(self):
        """``{"decay", "num_updates", "average_buffers", "warmup", "averages": {name: array}}``."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "average_buffers": self.average_buffers, "warmup": self.warmup,
                "averages": {name: array.copy() for name, array in self.averages.items()}}

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict`. All or nothing: the keys, every average's name,
        shape and dtype (real numbers) and the settings are checked first."""
        name, where = "ExponentialMovingAverage", "ExponentialMovingAverage.load_state_dict"
        expected = {"decay", "num_updates", "average_buffers", "warmup", "averages"}
        if not isinstance(state_dict, dict) or set(state_dict) != expected:
            got = (sorted(map(str, state_dict)) if isinstance(state_dict, dict)
                   else checks.describe(state_dict))
            raise ValueError(f"{where}: expected a dict with keys {sorted(expected)} (from "
                             f"state_dict()), got {got}")
        averages = state_dict["averages"]
        if not isinstance(averages, dict):
            raise TypeError(f"{where}: 'averages' must be a dict of arrays, got "
                            f"{checks.describe(averages)}")
        self._check_names(averages, "load_state_dict")
        for key, array in self.averages.items():
            value = averages[key]
            if not checks.is_array(value) or value.dtype.kind not in "fiu":
                raise TypeError(f"{where}: the average of {key} must be a real-valued array, "
                                f"got {getattr(value, 'dtype', type(value).__name__)}")
            if tuple(value.shape) != tuple(array.shape):
                raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, expected "
                                 f"{tuple(array.shape)}")
        decay = checks.real_number(state_dict["decay"], "decay", name, 0.0, 1.0)
        num_updates = checks.positive_int(state_dict["num_updates"], "num_updates", name,
                                          allow_zero=True)
        average_buffers = checks.boolean(state_dict["average_buffers"], "average_buffers", name)
        warmup = checks.boolean(state_dict["warmup"], "warmup", name)
        self.averages = {key: backend.to_device(averages[key], backend.device_of(array))
                         .astype(array.dtype, copy=True) for key, array in self.averages.items()}
        self.decay, self.num_updates = decay, num_updates
        self.average_buffers, self.warmup = average_buffers, warmup

    def __repr__(self):
        return (f"ExponentialMovingAverage(decay={self.decay}, num_updates={self.num_updates}, "
                f"average_buffers={self.average_buffers}, warmup={self.warmup})")


__all__ = ["ExponentialMovingAverage"]

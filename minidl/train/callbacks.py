"""Callbacks: code the Trainer calls at fixed points of a run.

Hooks (override any; ``trainer`` is the running :class:`~minidl.train.Trainer`)::

    on_train_begin(trainer)                  before the first epoch (also on resume)
    on_epoch_begin(trainer, epoch)           epoch: 1-based number
    on_batch_begin(trainer, step)            step: 1-based index within the epoch
    on_batch_end(trainer, step, logs)        logs: {"loss": ..., "batch_size": n}
    on_epoch_end(trainer, epoch, logs)       logs: the epoch's History row
    on_train_end(trainer)                    after the last epoch (not after an exception)

``logs["loss"]`` in ``on_batch_end`` is the raw loss value: a float on the CPU, a 0-d
device array on the GPU (convert with ``float()`` only when needed: it waits for the GPU).
A callback stops training with ``trainer.stop_training = True``. Callbacks with state
implement ``state_dict()`` / ``load_state_dict()``, so that a resumed run continues
with their counters (the Trainer stores them in its checkpoints).
"""
import math
import os

from .. import checks


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, trainer):
        pass

    def on_train_end(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_batch_begin(self, trainer, step):
        pass

    def on_batch_end(self, trainer, step, logs):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _resolve_mode(caller, monitor, mode):
    mode = checks.choice(mode, "mode", caller, ("min", "max", "auto"))
    if mode == "auto":
        return "max" if "top" in monitor or "acc" in monitor else "min"
    return mode


def _monitored_value(caller, monitor, logs):
    value = logs.get(monitor)
    if value is None:
        available = sorted(key for key, v in logs.items() if v is not None)
        hint = " (pass val_loader to fit)" if monitor.startswith("val_") else ""
        raise ValueError(f"{caller}: monitored metric {monitor!r} is not available{hint}; "
                         f"the epoch has {available}")
    return float(value)


class _Monitor:
    """Tracks the best value of a metric: ``improved(value)`` with a ``min_delta`` margin."""

    def __init__(self, caller, monitor, mode, min_delta):
        if not isinstance(monitor, str):
            raise TypeError(f"{caller}: monitor must be a History column name (str), "
                            f"got {checks.describe(monitor)}")
        self.caller, self.monitor = caller, monitor
        self.min_delta = checks.real_number(min_delta, "min_delta", caller, 0.0)
        self.mode = _resolve_mode(caller, monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode``: "min" (losses), "max" (accuracies) or "auto" (max for names with "top" or
    "acc"). With ``restore_best=True`` the model gets the weights of its best epoch back
    when training ends. Attributes after the run: ``best``, ``best_epoch``,
    ``stopped_epoch`` (None if it never stopped the run).
    """

    def __init__(self, monitor="val_loss", patience=5, mode="auto", min_delta=0.0,
                 restore_best=False):
        self.patience = checks.positive_int(patience, "patience", "EarlyStopping", allow_zero=True)
        self.restore_best = checks.boolean(restore_best, "restore_best", "EarlyStopping")
        self._tracker = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.mode = monitor, self._tracker.mode
        self.wait, self.best_epoch, self.stopped_epoch, self.best_weights = 0, None, None, None

    @property
    def best(self):
        return self._tracker.best

    def on_train_begin(self, trainer):
        self.stopped_epoch = None

    def on_epoch_end(self, trainer, epoch, logs):
        value = _monitored_value("EarlyStopping", self.monitor, logs)
        if self._tracker.improved(value):
            self._tracker.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_weights = trainer.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            if not trainer.quiet:
                trainer.log(f"EarlyStopping: {self.monitor} has not improved for "
                            f"{self.wait} epochs (best {self.best:.6g} at epoch "
                            f"{self.best_epoch}); stopping after epoch {epoch}")

    def on_train_end(self, trainer):
        if self.restore_best and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self._tracker.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.best_weights = state["wait"], state["best_weights"]


class ModelCheckpoint(Callback):
    """Save a full, resumable checkpoint at the end of epochs.

    ``path`` may contain format fields from the epoch's History row, e.g.
    ``"runs/epoch{epoch:03d}-{val_loss:.3f}.npz"``. With ``save_best_only=True`` a file
    is written only when ``monitor`` improves (``mode`` as in :class:`EarlyStopping`).
    ``last_path`` is the file written most recently. A Ctrl-C during ``fit`` writes
    ``interrupted.npz`` next to these files unless the Trainer names another path.
    """

    def __init__(self, path, monitor="val_loss", mode="auto", save_best_only=False,
                 min_delta=0.0):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"ModelCheckpoint: path must be a file path (str or os.PathLike), "
                            f"got {checks.describe(path)}")
        self.path = os.fspath(path)
        self._tracker = _Monitor("ModelCheckpoint", monitor, mode, min_delta)
        self.monitor, self.mode = monitor, self._tracker.mode
        self.save_best_only = checks.boolean(save_best_only, "save_best_only", "ModelCheckpoint")
        self.last_path = None

    @property
    def best(self):
        return self._tracker.best

    @property
    def interrupt_path(self):
        """Where the Trainer saves on Ctrl-C: ``interrupted.npz`` in this callback's directory."""
        return os.path.join(os.path.dirname(self.path), "interrupted.npz")

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best_only:
            value = _monitored_value("ModelCheckpoint", self.monitor, logs)
            if not self._tracker.improved(value):
                return
            self._tracker.best = value
        try:
            path = self.path.format(**logs)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"ModelCheckpoint: cannot fill the path {self.path!r} from the "
                             f"epoch's metrics {sorted(logs)} ({err})") from err
        trainer.save_checkpoint(path)
        self.last_path = path

    def state_dict(self):
        return {"best": self.best, "last_path": self.last_path}

    def load_state_dict(self, state):
        self._tracker.best, self.last_path = state["best"], state["last_path"]


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda t, e, logs: ...)``."""

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_batch_begin", "on_batch_end")

    def __init__(self, **hooks):
        unknown = sorted(set(hooks) - set(self._HOOKS))
        if unknown:
            raise ValueError(f"LambdaCallback: unknown hooks {unknown}; "
                             f"expected {list(self._HOOKS)}")
        for name, function in hooks.items():
            if not callable(function):
                raise TypeError(f"LambdaCallback: {name} must be callable, "
                                f"got {checks.describe(function)}")
            setattr(self, name, function)


__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "ModelCheckpoint"]

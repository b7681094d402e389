"""The training loop: :class:`Trainer`.

::

    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1),
                      scheduler=StepLR(...), callbacks=[ModelCheckpoint("runs/last.npz")])
    history = trainer.fit(train_loader, val_loader, epochs=10)
    history = trainer.fit(train_loader, val_loader, epochs=20, resume="runs/last.npz")

One training step is ``forward -> loss -> zero_grad -> backward -> optimizer.step``
(then ``scheduler.step()`` when ``scheduler_interval="batch"``). At the end of an
epoch: validation, ``scheduler.step()`` (``ReduceLROnPlateau``: ``step(metric)``), a
History row, then the callbacks' ``on_epoch_end``.

No device sync per step: loss and accuracy are summed as arrays on the device and
turned into Python floats only every ``log_interval`` steps and at the end of an epoch.
A NaN/Inf model output or loss stops training with :class:`NonFiniteLossError` naming
the epoch, step and learning rate (on the CPU it is caught before the step updates the
weights; on the GPU at the next log point, with the exact step it occurred at).

Exact resume: a checkpoint written by :meth:`Trainer.save_checkpoint` (what
ModelCheckpoint and Ctrl-C write) holds the model, optimizer, scheduler, History, the
callbacks' state, the minidl RNG and the data loaders' generators, and the position in
the run. ``fit(..., resume=path)`` continues so that the weights at the end are
bit-identical to those of an uninterrupted run (on the CPU; on the GPU dropout masks
come from CuPy's generator, which minidl does not save). A checkpoint from the middle
of an epoch stores the loaders' states from the start of that epoch; the resumed run
draws (and augments) the batches already trained on again and skips them, which puts
every generator exactly where it was.

Ctrl-C during ``fit`` is deferred to the end of the current step (so the state is never
half-updated), a checkpoint is written, and KeyboardInterrupt is raised again. A
second Ctrl-C interrupts at once.

Under ``mpiexec`` (with :mod:`minidl.distributed` initialised, the model wrapped in
``DataParallel``, the loaders sharding themselves): the loss and accuracies of every
epoch, of validation and of ``evaluate`` are summed over the ranks, so every rank
holds the same History and takes the same decisions (schedulers, early stopping);
only rank 0 prints and writes checkpoints (every rank holds the same state). A
checkpoint resumes with the world size that wrote it.
"""
import copy
import math
import os
import time

import numpy as np
from tqdm import tqdm

from .. import backend, checks, distributed, threads
from ..module import Module
from ..optim.lr_scheduler import ReduceLROnPlateau
from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .history import History
from .interrupt import DeferredInterrupt, save_on_interrupt
from .meter import EpochMeter, batch_hits


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf."""


def _loader_length(loader):
    try:
        return len(loader)
    except TypeError:
        return None


class Trainer:
    """Fit a model with a loss and an optimizer; evaluate and predict.

    model: a :class:`~minidl.Module`; loss_fn: ``loss = loss_fn(pred, target)`` and
    ``dpred = loss_fn.backward()``; optimizer: a :mod:`minidl.optim` optimizer over the
    model's parameters; scheduler: optional lr scheduler, stepped once per epoch or,
    with ``scheduler_interval="batch"``, after every optimizer step.
    ``ReduceLROnPlateau`` is stepped per epoch with ``plateau_monitor`` (a History
    column, default ``"val_loss"``). callbacks: :class:`~minidl.train.Callback` objects.
    device: "cpu"/"gpu" to move the model there; batches always follow the model.
    quiet: no progress bar or messages. log_interval: steps between progress updates
    (each one waits for the device once). interrupt_checkpoint: where Ctrl-C saves a
    resumable checkpoint (default: ``interrupted.npz`` next to a ModelCheckpoint's files;
    nothing is saved without either).

    Attributes: ``history`` (:class:`History`), ``epoch`` (completed epochs),
    ``global_step``, ``stop_training`` (set by callbacks), ``interrupted_checkpoint``.
    """

    def __init__(self, model, loss_fn, optimizer, scheduler=None, callbacks=(), device=None,
                 scheduler_interval="epoch", quiet=False, log_interval=20,
                 interrupt_checkpoint=None, plateau_monitor="val_loss"):
        if not isinstance(model, Module):
            raise TypeError(f"Trainer: model must be a minidl Module, got {type(model).__name__}")
        if not callable(loss_fn) or not hasattr(loss_fn, "backward"):
            raise TypeError(f"Trainer: loss_fn must be callable and have backward(), e.g. "
                            f"minidl.losses.CrossEntropyLoss(); got {type(loss_fn).__name__}")
        for method in ("step", "zero_grad", "state_dict", "load_state_dict"):
            if not hasattr(optimizer, method) or not hasattr(optimizer, "param_groups"):
                raise TypeError(f"Trainer: optimizer must be a minidl.optim optimizer (with "
                                f"param_groups and {method}()), got {type(optimizer).__name__}")
        scheduler_interval = checks.choice(scheduler_interval, "scheduler_interval", "Trainer",
                                           ("epoch", "batch"))
        if isinstance(scheduler, ReduceLROnPlateau) and scheduler_interval == "batch":
            raise ValueError("Trainer: ReduceLROnPlateau steps on an epoch metric; use "
                             "scheduler_interval='epoch'")
        log_interval = checks.positive_int(log_interval, "log_interval", "Trainer")
        quiet = checks.boolean(quiet, "quiet", "Trainer")
        if not isinstance(plateau_monitor, str):
            raise TypeError(f"Trainer: plateau_monitor must be a History column name (str), "
                            f"got {checks.describe(plateau_monitor)}")
        if interrupt_checkpoint is not None and not isinstance(interrupt_checkpoint,
                                                               (str, os.PathLike)):
            raise TypeError(f"Trainer: interrupt_checkpoint must be a path (str or "
                            f"os.PathLike) or None, got {checks.describe(interrupt_checkpoint)}")
        callbacks = list(callbacks)
        for index, callback in enumerate(callbacks):
            if not isinstance(callback, Callback):
                raise TypeError(f"Trainer: callbacks[{index}] must be a minidl.train.Callback, "
                                f"got {type(callback).__name__}")
        if device is not None:
            model.to(device)
        # The model's input is data: its first layer need not compute dx (as in PyTorch).
        # This stays set on the model; model.set_needs_input_grad(True) undoes it.
        model.set_needs_input_grad(False)
        self.model, self.loss_fn = model, loss_fn
        self.optimizer, self.scheduler = optimizer, scheduler
        self.callbacks, self.scheduler_interval = callbacks, scheduler_interval
        self.quiet = quiet or distributed.rank() != 0  # one rank speaks for all
        self.log_interval = log_interval
        self.interrupt_checkpoint, self.plateau_monitor = interrupt_checkpoint, plateau_monitor
        self.history = History()
        self.epoch = self.global_step = 0
        self.stop_training = False
        self.interrupted_checkpoint = None
        # The position inside a running epoch, for mid-epoch checkpoints.
        self._train_loader = self._val_loader = None
        self._in_epoch, self._step_in_epoch, self._meter = False, 0, None
        self._epoch_lr, self._epoch_started, self._epoch_start_states = None, None, {}
        self._consistent = True
        self._interrupt = DeferredInterrupt(
            on_interrupt=lambda: save_on_interrupt(self),
            message="Trainer: Ctrl-C - stopping after this step (press again to abort now)")

    # ------------------------------------------------------------------ small helpers
    @property
    def device(self):
        """The model's device ("cpu" or "gpu"); batches are moved there."""
        params = self.model.parameters()
        return backend.device_of(params[0].data) if params else backend.current_device()

    @property
    def lr(self):
        """Current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def log(self, message):
        """Print a message without breaking the progress bar (silent when quiet)."""
        if not self.quiet:
            tqdm.write(message)

    def _callbacks(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader, val_loader=None, epochs=1, resume=None):
        """Train until ``epochs`` epochs are complete; return the :class:`History`.

        ``epochs`` counts from the start of the run, so ``fit(..., epochs=10,
        resume=path)`` on a checkpoint written after epoch 4 trains epochs 5 to 10.
        ``train_loader``/``val_loader`` yield ``(x, y)`` batches (a DataLoader, or any
        iterable; only loaders with ``state_dict()`` resume with the same order).
        """
        epochs = checks.positive_int(epochs, "epochs", "Trainer.fit")
        self._train_loader, self._val_loader = train_loader, val_loader
        start_step, progress = 0, None
        if resume is not None:
            start_step, progress = self._restore(resume)
        else:
            self.history, self.epoch, self.global_step = History(), 0, 0
        self.stop_training, self.interrupted_checkpoint = False, None
        self._consistent = True
        self._callbacks("on_train_begin")
        with self._interrupt:  # Ctrl-C: end the step, save a checkpoint, re-raise
            for epoch in range(self.epoch + 1, epochs + 1):
                self._run_epoch(epoch, epochs, start_step, progress)
                start_step, progress = 0, None
                if self._interrupt.requested:
                    raise KeyboardInterrupt
                if self.stop_training:
                    break
        self._callbacks("on_train_end")
        return self.history

    def _run_epoch(self, epoch, epochs, skip_steps, progress):
        """One epoch; a resumed one starts after ``skip_steps`` with the saved ``progress``."""
        self._begin_epoch(epoch, skip_steps, progress)
        device, total = self.device, _loader_length(self._train_loader)
        with tqdm(total=total, initial=skip_steps, desc=f"epoch {epoch}/{epochs}", unit="batch",
                  disable=self.quiet, dynamic_ncols=True, leave=True) as bar:
            batches = self._skip_replayed_batches(iter(self._train_loader), skip_steps, epoch)
            for x_batch, y_batch in batches:
                step = self._step_in_epoch + 1
                self._callbacks("on_batch_begin", step)
                self._consistent = False
                threads.adapt_to_load()  # fewer BLAS threads while other programs use the cores
                loss, batch_size = self._train_step(x_batch, y_batch, device, epoch, step, total)
                if self.scheduler is not None and self.scheduler_interval == "batch":
                    self.scheduler.step()
                self._step_in_epoch, self.global_step = step, self.global_step + 1
                self._consistent = True
                self._callbacks("on_batch_end", step, {"loss": loss, "batch_size": batch_size})
                bar.update(1)
                if step % self.log_interval == 0:
                    self._show_progress(bar, epoch, total)
                if self._interrupt.requested:
                    raise KeyboardInterrupt
            self._end_epoch(bar, epoch, total)

    def _begin_epoch(self, epoch, skip_steps, progress):
        """Note where the loaders start, start the meter (restored when resuming), train mode."""
        # A mid-epoch checkpoint stores these generator states and the step count; a
        # resumed run replays the loader from them up to that step.
        self._epoch_start_states = {
            name: copy.deepcopy(loader.state_dict())
            for name, loader in (("train", self._train_loader), ("val", self._val_loader))
            if hasattr(loader, "state_dict")}
        self._meter = EpochMeter()
        if progress is not None:
            self._meter.load_state_dict(progress["meter"], self.device)
            self._epoch_lr = progress["lr"]
            self._epoch_started = time.perf_counter() - progress["seconds"]
        else:
            self._epoch_lr, self._epoch_started = self.lr, time.perf_counter()
        self._in_epoch, self._step_in_epoch = True, skip_steps
        self._callbacks("on_epoch_begin", epoch)
        self.model.train()

    @staticmethod
    def _skip_replayed_batches(batches, skip_steps, epoch):
        """Draw and drop the ``skip_steps`` batches a resumed epoch already trained on, so
        the loader's generators (order, augmentation) stand where the interrupted run left
        them. Returns the iterator, positioned at the first batch still to train on."""
        for skipped in range(skip_steps):
            if next(batches, None) is None:
                raise ValueError(f"Trainer.fit: the checkpoint stopped at step {skip_steps} "
                                 f"of epoch {epoch}, but the train loader has only "
                                 f"{skipped} batches per epoch")
        return batches

    def _end_epoch(self, bar, epoch, total):
        """Validate, close the bar with the epoch's summary, step the scheduler, append the
        History row, then the callbacks' ``on_epoch_end``. Returns the row."""
        train_stats = self._show_progress(bar, epoch, total)
        if train_stats["loss"] is None:
            raise ValueError("Trainer.fit: the train loader yielded no batches")
        images_per_second = self._meter.samples / max(
            time.perf_counter() - self._epoch_started, 1e-9)
        val_stats = self._evaluate(self._val_loader) if self._val_loader is not None else {}
        row = {"epoch": epoch, "lr": self._epoch_lr,
               "seconds": time.perf_counter() - self._epoch_started,
               **{f"train_{key}": value for key, value in train_stats.items()},
               **{f"val_{key}": value for key, value in val_stats.items()}}
        bar.set_postfix_str(f"{self._summary(row)} {images_per_second:.0f} img/s", refresh=True)
        bar.close()
        self._consistent = False
        self._step_scheduler_at_epoch_end(row)
        self.history.append(row)
        self.epoch, self._in_epoch, self._step_in_epoch = epoch, False, 0
        self._consistent = True
        self._callbacks("on_epoch_end", epoch, self.history[-1])
        return row

    def _train_step(self, x_batch, y_batch, device, epoch, step, total):
        """forward -> loss -> zero_grad -> backward -> optimizer step; (loss, batch size)."""
        x_batch, y_batch = backend.to_device(x_batch, device), backend.to_device(y_batch, device)
        # Diverging weights overflow in the forward: no RuntimeWarning, the check below
        # turns the resulting Inf/NaN into a NonFiniteLossError with epoch and step.
        with np.errstate(over="ignore", invalid="ignore"):
            logits = self.model(x_batch)
        # On the CPU the checks are free: stop before the bad step touches the weights.
        if isinstance(logits, np.ndarray) and not np.isfinite(logits).all():
            raise NonFiniteLossError(self._non_finite_message(
                "the model's output contains NaN or Inf", epoch, step, total))
        loss = self.loss_fn(logits, y_batch)
        if backend.get_array_module(loss) is np and not math.isfinite(loss):
            raise NonFiniteLossError(self._non_finite_message(
                f"the training loss is {float(loss)}", epoch, step, total))
        hits, ks = batch_hits(logits, y_batch)
        self.optimizer.zero_grad()
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step()
        batch_size = int(x_batch.shape[0])
        self._meter.add(loss, batch_size, hits, ks, step)
        return loss, batch_size

    def _non_finite_message(self, what, epoch, step, total):
        of = f" of {total}" if total else ""
        return (f"Trainer: {what} at epoch {epoch}, step {step}{of} (lr {self.lr:.3g}); "
                "training stopped. Usual causes: a learning rate too high for the model "
                "(lower it, or add warm-up), inputs containing NaN/Inf, or a custom loss "
                "taking log(0).")

    def _show_progress(self, bar, epoch, total):
        """Read the running sums (one device sync), check them, update the bar."""
        stats, first_bad = self._meter.read()
        if first_bad:
            raise NonFiniteLossError(
                self._non_finite_message("the training loss is nan or inf", epoch, first_bad,
                                         total))
        if stats["loss"] is not None and not bar.disable:
            elapsed = max(time.perf_counter() - self._epoch_started, 1e-9)
            postfix = {"loss": f"{stats['loss']:.4f}"}
            if stats["top1"] is not None:
                postfix["top1"] = f"{100 * stats['top1']:.2f}%"
            postfix["lr"] = f"{self.lr:.3g}"
            postfix["img/s"] = f"{self._meter.samples / elapsed:.0f}"
            bar.set_postfix(postfix, refresh=False)
        return stats

    @staticmethod
    def _summary(row):
        parts = []
        for key in ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5"):
            if row.get(key) is not None:
                value = row[key]
                parts.append(f"{key}={value:.4f}" if key.endswith("loss") else
                             f"{key}={100 * value:.2f}%")
        parts.append(f"lr={row['lr']:.3g}")
        parts.append(f"{row['seconds']:.1f}s")
        return " ".join(parts)

    def _step_scheduler_at_epoch_end(self, row):
        if self.scheduler is None or self.scheduler_interval != "epoch":
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            value = row.get(self.plateau_monitor)
            if value is None:
                available = sorted(k for k, v in row.items() if v is not None)
                raise ValueError(f"Trainer: ReduceLROnPlateau monitors {self.plateau_monitor!r}, "
                                 f"which this epoch does not have ({available}); pass a "
                                 "val_loader to fit or choose Trainer(plateau_monitor=...)")
            self.scheduler.step(value)
        else:
            self.scheduler.step()

    # ------------------------------------------------------------------ evaluate / predict
    def evaluate(self, loader):
        """Mean loss and top-1/top-5 accuracy over ``loader`` in eval mode.

        Returns ``{"loss": float, "top1": float or None, "top5": float or None}`` (top-5
        only with more than 5 classes). The model's train/eval mode is restored after.
        """
        return self._evaluate(loader)

    def _evaluate(self, loader):
        was_training = self.model.training
        self.model.eval()
        meter = EpochMeter()
        device = self.device
        try:
            for step, (x_batch, y_batch) in enumerate(loader, start=1):
                x_batch = backend.to_device(x_batch, device)
                y_batch = backend.to_device(y_batch, device)
                logits = self.model(x_batch)
                loss = self.loss_fn(logits, y_batch)
                meter.add(loss, int(x_batch.shape[0]), *batch_hits(logits, y_batch), step)
                if self._interrupt.requested:
                    raise KeyboardInterrupt
        finally:
            self.model.train(was_training)
        stats, _ = meter.read()
        if stats["loss"] is None:
            raise ValueError("Trainer.evaluate: the loader yielded no batches")
        return stats

    def predict(self, x, batch_size=256):
        """Model outputs for ``x`` (N, ...) in eval mode, ``batch_size`` rows at a time.

        Returns (N, ...) on the model's device; the train/eval mode is restored after.
        """
        batch_size = checks.positive_int(batch_size, "batch_size", "Trainer.predict")
        if not hasattr(x, "shape") or len(x.shape) == 0 or x.shape[0] == 0:
            raise ValueError(f"Trainer.predict: expected a non-empty array (N, ...), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        was_training = self.model.training
        self.model.eval()
        device = self.device
        try:
            outputs = [self.model(backend.to_device(x[start:start + batch_size], device))
                       for start in range(0, x.shape[0], batch_size)]
        finally:
            self.model.train(was_training)
        return backend.get_array_module(outputs[0]).concatenate(outputs, axis=0)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path, extra=None):
        """Write a resumable checkpoint of the run as it is now (mid-epoch or between epochs).

        ``extra`` is stored as well and comes back in ``load_checkpoint(...)["extra"]["user"]``.
        Under ``mpiexec`` only rank 0 writes; the others return ``path`` at once.
        """
        if distributed.rank() != 0:
            return path
        trainer_state = {
            "world_size": distributed.world_size(),
            "global_step": self.global_step,
            "step": self._step_in_epoch if self._in_epoch else 0,
            "in_epoch": None,
            "callbacks": [{"class": type(cb).__name__, "state": cb.state_dict()}
                          for cb in self.callbacks],
        }
        if self._in_epoch:
            loaders = self._epoch_start_states
            trainer_state["in_epoch"] = {
                "meter": self._meter.state_dict(), "lr": self._epoch_lr,
                "seconds": time.perf_counter() - self._epoch_started}
        else:
            loaders = {name: loader for name, loader in
                       (("train", self._train_loader), ("val", self._val_loader))
                       if hasattr(loader, "state_dict")}
        return save_checkpoint(path, self.model, self.optimizer, self.scheduler,
                               epoch=self.epoch, history=self.history, loaders=loaders,
                               extra={"trainer": trainer_state, "user": extra})

    def _restore(self, path):
        """Load a checkpoint into everything the run holds; return the position in the epoch."""
        info = load_checkpoint(path, self.model, self.optimizer, self.scheduler)
        extra = info["extra"] if isinstance(info["extra"], dict) else {}
        state = extra.get("trainer") or {}
        saved_world = state.get("world_size", 1)
        if saved_world != distributed.world_size():
            raise ValueError(f"Trainer.fit: {path!r} was written by a run of {saved_world} "
                             f"process(es), this one has {distributed.world_size()}; resume "
                             "with the same world size (the loaders' shards depend on it)")
        for name, loader in (("train", self._train_loader), ("val", self._val_loader)):
            if name in info["loaders"] and hasattr(loader, "load_state_dict"):
                loader.load_state_dict(info["loaders"][name])
            elif name == "train" and hasattr(loader, "state_dict"):
                self.log(f"Trainer: {path!r} holds no train loader state; the resumed run "
                         "will not draw the same batches as an uninterrupted one")
        self.history = History.from_dict(info["history"]) if info["history"] else History()
        self.epoch = int(info["epoch"])
        self.global_step = int(state.get("global_step", 0))
        saved_callbacks = state.get("callbacks", [])
        for callback, saved in zip(self.callbacks, saved_callbacks):
            if saved["class"] == type(callback).__name__:
                callback.load_state_dict(saved["state"])
        return int(state.get("step", 0)), state.get("in_epoch")


__all__ = ["NonFiniteLossError", "Trainer"]

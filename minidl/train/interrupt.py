"""Ctrl-C during training: finish the current step, then stop (and save) cleanly.

::

    with DeferredInterrupt(on_interrupt=save) as interrupt:
        for batch in batches:
            train_step(batch)
            if interrupt.requested:
                raise KeyboardInterrupt

The first Ctrl-C only sets ``interrupt.requested``; the loop raises KeyboardInterrupt at
a point where the state is whole. ``on_interrupt()`` then runs (e.g. writes a
checkpoint) before the KeyboardInterrupt leaves the ``with``. A second Ctrl-C
interrupts at once. :func:`save_on_interrupt` is what the Trainer does then.
"""
import os
import signal
import sys
import threading

from .callbacks import ModelCheckpoint


class DeferredInterrupt:
    """Turn the first Ctrl-C into a request that the loop honours after the current step.

    Only in the main thread and only over Python's default handler (a custom SIGINT
    handler, e.g. a notebook's, is left alone; then a KeyboardInterrupt can land
    mid-step, which ``on_interrupt`` must cope with). ``message``: printed to stderr
    on the first Ctrl-C.
    """

    def __init__(self, on_interrupt=None,
                 message="Ctrl-C - stopping after this step (press again to abort now)"):
        self.on_interrupt, self.message = on_interrupt, message
        self.requested = False
        self._installed = False

    def _request_stop(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one aborts
        print(f"\n{self.message}", file=sys.stderr)

    def __enter__(self):
        self.requested = False
        self._installed = (threading.current_thread() is threading.main_thread()
                           and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self._installed:
            signal.signal(signal.SIGINT, self._request_stop)
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) \
                    and self.on_interrupt is not None:
                self.on_interrupt()
        finally:
            if self._installed:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            self.requested, self._installed = False, False
        return False  # the KeyboardInterrupt goes on


def interrupt_path(trainer):
    """Where a Ctrl-C saves: ``Trainer(interrupt_checkpoint=...)``, else ``interrupted.npz``
    next to the files of the first ModelCheckpoint callback, else nowhere (None)."""
    if trainer.interrupt_checkpoint is not None:
        return os.fspath(trainer.interrupt_checkpoint)
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            return callback.interrupt_path
    return None


def save_on_interrupt(trainer):
    """The Trainer's ``on_interrupt``: write a resumable checkpoint if there is a path and
    the state is whole (the interrupt did not land in the middle of an update); say which."""
    path = interrupt_path(trainer)
    position = (f"epoch {trainer.epoch + 1}, step {trainer._step_in_epoch}" if trainer._in_epoch
                else f"the end of epoch {trainer.epoch}")
    if path is None:
        message = ("no checkpoint written (give Trainer(interrupt_checkpoint=path) or a "
                   "ModelCheckpoint callback to get one)")
    elif not trainer._consistent:
        message = ("no checkpoint written: the interrupt came in the middle of an update, "
                   "so the state is not consistent; resume from the last epoch's checkpoint")
    else:
        trainer.interrupted_checkpoint = trainer.save_checkpoint(path)
        message = f"saved {path!r}; continue with fit(..., resume={path!r})"
    print(f"Trainer: interrupted at {position}; {message}", file=sys.stderr)


__all__ = ["DeferredInterrupt", "interrupt_path", "save_on_interrupt"]

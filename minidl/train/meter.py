"""Per-batch metrics and the running sums of an epoch, kept on the device.

No device sync per step: :class:`EpochMeter` adds each batch's loss and top-k counts as
arrays where the loss lives, and turns them into Python floats only in :meth:`read`
(every ``log_interval`` steps and at the end of an epoch). Under ``mpiexec`` (when
:mod:`minidl.distributed` is initialised) ``read`` sums the counts of every rank first,
so every rank reads the metrics of the whole epoch.
"""
import numpy as np

from .. import backend, distributed
from .metrics import topk_correct


def _is_classification(logits, labels):
    """Integer labels (N,) against scores (N, C): accuracy is meaningful."""
    return (getattr(logits, "ndim", 0) == 2 and getattr(labels, "ndim", 0) == 1
            and labels.dtype.kind in "iu")


def _ks(num_classes):
    """Top-1 always; top-5 only where it says something (more than 5 classes)."""
    return (1, 5) if num_classes > 5 else (1,)


def batch_hits(logits, labels):
    """``(hits, ks)``: top-k correct counts of one batch (a device array) for each k in
    ``ks``; ``(None, None)`` when the batch is not a classification."""
    if not _is_classification(logits, labels):
        return None, None
    ks = _ks(logits.shape[1])
    return topk_correct(logits, labels, ks), ks


class EpochMeter:
    """Running sums over an epoch, kept where the loss lives; floats only on ``read()``.

    ``loss_sum`` = sum over batches of (mean batch loss * batch size); ``hits`` = top-k
    correct counts; ``samples`` = host-side count. On the GPU a non-finite loss is not
    checked per step (that would wait for the device) but its step is recorded on the
    device in ``first_bad_step`` (0 = none yet; steps are 1-based).
    """

    def __init__(self):
        self.loss_sum, self.hits, self.ks, self.samples = 0.0, None, None, 0
        self.first_bad_step = 0

    def add(self, loss, batch_size, hits, ks, step):
        """Add one batch: its mean ``loss``, size, and ``(hits, ks)`` from :func:`batch_hits`."""
        if hasattr(loss, "astype"):  # sum in float64 whatever the model's dtype
            loss = loss.astype(np.float64)
        self.loss_sum = self.loss_sum + loss * batch_size
        self.samples += batch_size
        if hits is not None:
            self.hits = hits if self.hits is None else self.hits + hits
            self.ks = ks
        xp = backend.get_array_module(loss)
        if xp is not np:
            bad_here = xp.where(xp.isfinite(loss), 0, step)
            if isinstance(self.first_bad_step, int):
                self.first_bad_step = bad_here
            else:
                self.first_bad_step = xp.where(self.first_bad_step == 0, bad_here,
                                               self.first_bad_step)

    def read(self):
        """Mean loss, top-1, top-5 (None where not measured), and the first bad step (or 0)."""
        samples, loss_sum, hits, first_bad_step = self._totals()
        if samples == 0:
            return {"loss": None, "top1": None, "top5": None}, 0
        stats = {"loss": loss_sum / samples, "top1": None, "top5": None}
        if hits is not None:
            for k, count in zip(self.ks, hits):
                stats[f"top{k}"] = count / samples
        return stats, first_bad_step

    def _totals(self):
        """(samples, loss sum, top-k hits or None, first bad step) as host numbers, summed
        over the ranks (the earliest bad step of any) when distributed is initialised."""
        hits = [] if self.hits is None else backend.to_numpy(self.hits).tolist()
        sums = np.array([self.samples, float(self.loss_sum), *hits], dtype=np.float64)
        first_bad = np.array([int(self.first_bad_step)], dtype=np.int64)
        if distributed.is_initialized():
            distributed.all_reduce(sums)
            # Any rank's bad step stops every rank: the earliest one (0 means none).
            no_bad_step = np.iinfo(np.int64).max
            first_bad[first_bad == 0] = no_bad_step
            distributed.all_reduce(first_bad, "min")
            first_bad[first_bad == no_bad_step] = 0
        return (int(sums[0]), float(sums[1]), None if self.hits is None else sums[2:].tolist(),
                int(first_bad[0]))

    def state_dict(self):
        return {"loss_sum": self.loss_sum, "hits": self.hits, "ks": self.ks,
                "samples": self.samples, "first_bad_step": self.first_bad_step}

    def load_state_dict(self, state, device):
        def place(value):
            return backend.to_device(value, device) if isinstance(value, np.ndarray) else value
        self.loss_sum, self.hits = place(state["loss_sum"]), place(state["hits"])
        self.ks = None if state["ks"] is None else tuple(state["ks"])
        self.samples, self.first_bad_step = int(state["samples"]), place(state["first_bad_step"])


__all__ = ["EpochMeter", "batch_hits"]

"""Classification metrics: top-k accuracy and the confusion matrix.

Top-k without sorting: the *rank* of the true class is the number of classes that
score strictly higher, plus those that tie with it at a lower index (the tie-break of
``argmax``). A sample is top-k correct when ``rank < k``. That costs O(N * C), works
for every k at once, and is the same on NumPy and CuPy.
"""
import numpy as np

from .. import checks
from ..backend import get_array_module


def _check_logits_and_labels(caller, logits, labels):
    if not hasattr(logits, "ndim") or logits.ndim != 2:
        raise ValueError(f"{caller}: expected logits of shape (N, num_classes), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    if not hasattr(labels, "ndim") or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise TypeError(f"{caller}: expected integer class labels of shape (N,), got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)} array of shape "
                        f"{getattr(labels, 'shape', None)}")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{caller}: {logits.shape[0]} rows of logits but {labels.shape[0]} labels")


def _check_topk(caller, topk):
    for i, k in enumerate(topk):
        checks.positive_int(k, f"topk[{i}]", caller)


def true_class_rank(logits, labels):
    """Rank of the true class in each row (0 = predicted by argmax). Shape (N,), on the device.

    logits: (N, C) floats; labels: (N,) ints in [0, C). No validation, no device sync.
    """
    xp = get_array_module(logits)
    rows = xp.arange(logits.shape[0])
    true_score = logits[rows, labels][:, None]
    classes = xp.arange(logits.shape[1])[None, :]
    ahead = (logits > true_score) | ((logits == true_score) & (classes < labels[:, None]))
    return ahead.sum(axis=1)


def topk_correct(logits, labels, topk=(1, 5)):
    """Number of top-k correct samples for each k in ``topk``: an int array on the device.

    The fast path for training loops: no device sync (the caller sums these counts over
    many batches and converts to floats once); the checks read shapes only.
    """
    _check_logits_and_labels("topk_correct", logits, labels)
    topk = (topk,) if np.ndim(topk) == 0 else tuple(topk)
    _check_topk("topk_correct", topk)
    xp = get_array_module(logits)
    rank = true_class_rank(logits, labels)
    return xp.stack([(rank < k).sum() for k in topk])


def accuracy(logits, labels, topk=(1, 5)):
    """Top-k accuracy as fractions in [0, 1]: a tuple with one float per k in ``topk``.

    logits: (N, C); labels: (N,) integers in [0, C). ``topk`` may be one int, then one
    float is returned. A k >= C always scores 1.0 (every class is among the top k).
    Ties count in favour of the lower class index, as with ``argmax``.
    """
    single = np.ndim(topk) == 0
    topk = (topk,) if single else tuple(topk)
    _check_logits_and_labels("accuracy", logits, labels)
    _check_topk("accuracy", topk)
    xp = get_array_module(logits)
    labels = xp.asarray(labels)
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"accuracy: labels must lie in [0, {logits.shape[1]}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    if logits.shape[0] == 0:
        raise ValueError("accuracy: got an empty batch (0 samples)")
    counts = topk_correct(logits, labels, topk).tolist()
    fractions = tuple(count / logits.shape[0] for count in counts)
    return fractions[0] if single else fractions


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts ``M[i, j]`` of samples of true class i predicted as class j: (C, C) int64.

    y_true: (N,) integer labels. y_pred: (N,) predicted labels, or (N, C) scores whose
    argmax is taken. Rows sum to the class frequencies, the trace counts the correct
    predictions. Computed with one ``bincount`` of ``C * true + pred`` (no Python loop).
    """
    num_classes = checks.positive_int(num_classes, "num_classes", "confusion_matrix")
    xp = get_array_module(y_pred)
    if getattr(y_pred, "ndim", None) == 2:
        y_pred = y_pred.argmax(axis=1)
    y_true, y_pred = xp.asarray(y_true), xp.asarray(y_pred)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise TypeError(f"confusion_matrix: {name} must be integer labels of shape (N,), "
                            f"got {labels.dtype} array of shape {tuple(labels.shape)}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must lie in [0, {num_classes}), got "
                             f"values in [{int(labels.min())}, {int(labels.max())}]")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: y_true has {y_true.shape[0]} labels, y_pred "
                         f"{y_pred.shape[0]}")
    flat = y_true.astype(xp.int64) * num_classes + y_pred.astype(xp.int64)
    return xp.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes).astype(xp.int64)


__all__ = ["accuracy", "confusion_matrix", "topk_correct", "true_class_rank"]

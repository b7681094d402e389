"""accuracy (top-k) and confusion_matrix against closed forms and a sorting reference."""
import numpy as np
import pytest

from minidl.backend import to_numpy
from minidl.train import accuracy, confusion_matrix, topk_correct
from minidl.train.metrics import true_class_rank

# 4 samples, 6 classes. True classes 2, 0, 5, 1; their ranks (classes scoring higher) are
# sample 0: class 2 is highest            -> rank 0 (top-1 correct)
# sample 1: 0.5 > 0.4 > 0.3 ahead of 0.2  -> rank 3 (top-5 only)
# sample 2: five classes ahead of 0.0     -> rank 5 (not even top-5)
# sample 3: 0.9 is ahead of class 1       -> rank 1 (top-5 only)
LOGITS = np.array([[0.1, 0.2, 0.9, 0.0, 0.3, 0.4],
                   [0.2, 0.5, 0.4, 0.3, 0.1, 0.0],
                   [0.1, 0.2, 0.3, 0.4, 0.5, 0.0],
                   [0.9, 0.8, 0.1, 0.2, 0.3, 0.4]])
LABELS = np.array([2, 0, 5, 1])


def test_accuracy_closed_form(xp):
    logits, labels = xp.asarray(LOGITS), xp.asarray(LABELS)
    np.testing.assert_array_equal(to_numpy(true_class_rank(logits, labels)), [0, 3, 5, 1])
    assert accuracy(logits, labels) == (1 / 4, 3 / 4)
    assert accuracy(logits, labels, topk=(1, 2, 4, 6)) == (1 / 4, 2 / 4, 3 / 4, 1.0)
    assert accuracy(logits, labels, topk=1) == 0.25          # one k -> one float


def test_topk_correct_counts_stay_on_device(xp):
    counts = topk_correct(xp.asarray(LOGITS), xp.asarray(LABELS), (1, 5))
    assert isinstance(counts, xp.ndarray) and counts.dtype.kind == "i"
    assert counts.tolist() == [1, 3]


def test_ties_break_towards_the_lower_index_like_argmax():
    logits = np.zeros((4, 3))
    labels = np.array([0, 1, 2, 0])
    # argmax of a constant row is class 0: only the samples of class 0 are correct
    assert accuracy(logits, labels, topk=(1, 2, 3)) == (0.5, 0.75, 1.0)


def test_k_at_least_the_number_of_classes_scores_one():
    logits = np.random.default_rng(0).standard_normal((10, 3))
    labels = np.random.default_rng(1).integers(0, 3, 10)
    assert accuracy(logits, labels, topk=(3, 5)) == (1.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_matches_a_sorting_reference(xp, seed):
    generator = np.random.default_rng(seed)
    logits = generator.standard_normal((50, 10)).astype(np.float32)
    labels = generator.integers(0, 10, 50)
    order = np.argsort(-logits, axis=1, kind="stable")
    expected = tuple(float(np.mean([labels[i] in order[i, :k] for i in range(50)]))
                     for k in (1, 3, 5))
    got = accuracy(xp.asarray(logits), xp.asarray(labels), topk=(1, 3, 5))
    assert got == pytest.approx(expected, abs=0)


@pytest.mark.parametrize("logits, labels, topk, error, message", [
    (np.zeros(5), np.zeros(5, dtype=int), (1,), ValueError, r"shape \(N, num_classes\)"),
    (np.zeros((5, 3)), np.zeros(5), (1,), TypeError, "integer class labels"),
    (np.zeros((5, 3)), np.zeros(4, dtype=int), (1,), ValueError, "5 rows of logits but 4 labels"),
    (np.zeros((2, 3)), np.array([0, 3]), (1,), ValueError, r"labels must lie in \[0, 3\)"),
    (np.zeros((2, 3)), np.array([0, 1]), (0,), ValueError,
     r"accuracy: topk\[0\] must be a positive integer, got 0 \(int\)"),
    (np.zeros((2, 3)), np.array([0, 1]), (1, True), TypeError,
     r"accuracy: topk\[1\] must be a positive integer, got True \(bool\)"),
    (np.zeros((2, 3)), np.array([0, 1]), 2.5, TypeError, "accuracy: topk.* must be a positive"),
    (np.zeros((2, 3)), np.array([0, 1]), float("nan"), TypeError, "accuracy: topk"),
])
def test_accuracy_rejects_bad_input(logits, labels, topk, error, message):
    with pytest.raises(error, match=message):
        accuracy(logits, labels, topk)


def test_confusion_matrix_closed_form(xp):
    y_true = xp.asarray([0, 0, 1, 2, 2, 2])
    y_pred = xp.asarray([0, 1, 1, 2, 0, 2])
    matrix = confusion_matrix(y_true, y_pred, num_classes=4)
    expected = np.array([[1, 1, 0, 0],
                         [0, 1, 0, 0],
                         [1, 0, 2, 0],
                         [0, 0, 0, 0]])
    assert matrix.dtype == np.int64 and isinstance(matrix, xp.ndarray)
    np.testing.assert_array_equal(matrix.tolist(), expected)


def test_confusion_matrix_of_scores_uses_argmax_and_sums_right():
    generator = np.random.default_rng(0)
    scores = generator.standard_normal((100, 5))
    y_true = generator.integers(0, 5, 100)
    matrix = confusion_matrix(y_true, scores, 5)
    assert matrix.sum() == 100
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(y_true, minlength=5))
    assert np.trace(matrix) == np.sum(scores.argmax(axis=1) == y_true)
    assert np.trace(matrix) / 100 == accuracy(scores, y_true, topk=1)


@pytest.mark.parametrize("y_true, y_pred, classes, error, message", [
    ([0, 1], [0, 2], 2, ValueError, r"y_pred must lie in \[0, 2\)"),
    ([0, -1], [0, 1], 2, ValueError, r"y_true must lie in \[0, 2\)"),
    ([0.0, 1.0], [0, 1], 2, TypeError, "y_true must be integer labels"),
    ([0, 1, 1], [0, 1], 2, ValueError, "y_true has 3 labels, y_pred 2"),
    ([0, 1], [0, 1], 0, ValueError, "num_classes must be a positive integer"),
    ([0, 1], [0, 1], 2.0, TypeError, r"num_classes must be a positive integer, got 2.0 \(float\)"),
    ([0, 1], [0, 1], True, TypeError, "num_classes must be a positive integer, got True"),
])
def test_confusion_matrix_rejects_bad_input(y_true, y_pred, classes, error, message):
    with pytest.raises(error, match=message):
        confusion_matrix(np.array(y_true), np.array(y_pred), classes)


def test_numpy_integer_arguments_are_accepted():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    labels = np.array([1, 2])
    assert accuracy(scores, labels, topk=np.int64(1)) == 0.5
    assert accuracy(scores, labels, topk=(np.int32(1), 3)) == (0.5, 1.0)
    matrix = confusion_matrix(labels, scores, np.int64(3))
    assert matrix.shape == (3, 3) and matrix.sum() == 2

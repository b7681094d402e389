"""History: one row of metrics per epoch, saved as JSON or CSV.

Columns (missing values are ``None``; in CSV an empty cell)::

    epoch       1-based epoch number
    train_loss  mean training loss over the epoch's samples
    train_top1  training top-1 accuracy (fraction in [0, 1])
    train_top5  training top-5 accuracy (None when there are 5 classes or fewer)
    val_loss, val_top1, val_top5   the same on the validation set (None without one)
    lr          learning rate of the first parameter group when the epoch began
    seconds     wall-clock time of the epoch (training and validation)

``history["val_loss"]`` is a column as a list; ``history[-1]`` (an int) is a row as a dict.
"""
import csv
import io
import json
import os

from .. import checks
from .checkpoint import atomic_write

COLUMNS = ("epoch", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
           "val_top5", "lr", "seconds")


def _clean(column, value):
    """Plain Python numbers (not NumPy scalars or 0-d arrays), so JSON and CSV stay simple."""
    if value is None:
        return None
    return int(value) if column == "epoch" else float(value)


class History:
    """Per-epoch training metrics. ``append`` adds a row; rows are dicts keyed by COLUMNS."""

    columns = COLUMNS

    def __init__(self, rows=()):
        if isinstance(rows, (dict, str)) or not hasattr(rows, "__iter__"):
            raise TypeError(f"History: expected a list of rows (dicts of metrics), got "
                            f"{type(rows).__name__}")
        self.rows = []
        for row in rows:
            self.append(row)

    def append(self, row):
        """Add one epoch's metrics (a dict; keys must be among :data:`COLUMNS`)."""
        if not isinstance(row, dict):
            raise TypeError(f"History.append: expected a dict of metrics, got "
                            f"{type(row).__name__}")
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"History.append: unknown columns {unknown}; expected some of "
                             f"{list(COLUMNS)}")
        self.rows.append({column: _clean(column, row.get(column)) for column in COLUMNS})

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in COLUMNS:
                raise KeyError(f"History: no column {key!r}; columns are {list(COLUMNS)}")
            return [row[key] for row in self.rows]
        return dict(self.rows[key])

    def __eq__(self, other):
        return isinstance(other, History) and self.rows == other.rows

    def __repr__(self):
        return f"History({len(self)} epochs)"

    def has(self, column):
        """True when at least one epoch has a value in ``column``."""
        return any(value is not None for value in self[column])

    def best(self, column, mode="auto"):
        """The row with the best value of ``column`` ("min"/"max"; "auto": max for accuracy)."""
        mode = checks.choice(mode, "mode", "History.best", ("min", "max", "auto"))
        if mode == "auto":
            mode = "max" if "top" in column else "min"
        rows = [row for row in self.rows if row[column] is not None]
        if not rows:
            raise ValueError(f"History.best: column {column!r} has no values")
        pick = min if mode == "min" else max
        return dict(pick(rows, key=lambda row: row[column]))

    # ------------------------------------------------------------------ dict / JSON
    def to_dict(self):
        """Column-oriented: ``{"epoch": [1, 2, ...], "train_loss": [...], ...}``."""
        return {column: self[column] for column in COLUMNS}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict` (missing columns are filled with None)."""
        unknown = sorted(set(data) - set(COLUMNS))
        lengths = {len(values) for values in data.values()}
        if unknown or len(lengths) > 1:
            raise ValueError(f"History.from_dict: expected columns {list(COLUMNS)} of equal "
                             f"length, got {sorted(data)} with lengths {sorted(lengths)}")
        count = lengths.pop() if lengths else 0
        return cls({column: values[i] for column, values in data.items()} for i in range(count))

    def to_json(self, path=None):
        """The history as a JSON string; also written (atomically) to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
        return text

    @classmethod
    def from_json(cls, path):
        """Read a history written by :meth:`to_json`."""
        with open(path, encoding="utf-8") as handle:
            try:
                data = json.load(handle)
            except ValueError as err:
                raise ValueError(f"History.from_json: {os.fspath(path)!r} is not valid JSON "
                                 f"({err})") from err
        return cls.from_dict(data)

    # ------------------------------------------------------------------ CSV
    def to_csv(self, path=None):
        """The history as CSV text (header = COLUMNS; None -> empty cell); written to ``path``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow(["" if row[column] is None else repr(row[column])
                             for column in COLUMNS])
        text = buffer.getvalue()
        if path is not None:
            atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
        return text

    @classmethod
    def from_csv(cls, path):
        """Read a history written by :meth:`to_csv` (floats round-trip exactly)."""
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [{column: (None if text == "" else
                              int(text) if column == "epoch" else float(text))
                     for column, text in row.items()} for row in reader]
        history = cls()
        for row in rows:
            history.append(row)
        return history


__all__ = ["COLUMNS", "History"]

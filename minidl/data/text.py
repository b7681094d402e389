"""Character-level text: Tiny Shakespeare, a character vocabulary, random windows.

The data of Karpathy's char-rnn and of nanoGPT's ``shakespeare_char``::

    text = load_tiny_shakespeare()              # 1,115,394 characters
    vocab = CharVocab(text)                     # 65 characters, sorted
    train_ids, val_ids = split_text(vocab.encode(text))      # first 90 % / last 10 %
    batches = BlockSampler(train_ids, block_size=64, batch_size=12, seed=0)
    x, y = batches.sample()                     # int64 (12, 64) each; y is x shifted by one

The file is looked for, and downloaded to, where :mod:`minidl.data.datasets` puts the
image data sets (``root``, else ``$MINIDL_DATA``, else ``~/.cache/minidl``; directly or
in ``tinyshakespeare/``), with the same verified download (SHA-256, temporary file
renamed into place only when complete).
"""
import sys

import numpy as np

from .. import checks
from .datasets import DatasetError, DatasetSpec, RemoteFile, _locate

TINY_SHAKESPEARE = DatasetSpec(
    name="tinyshakespeare", loader="load_tiny_shakespeare",
    mirrors=("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",),
    files={"text": RemoteFile(
        "input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")})
TINY_SHAKESPEARE_CHARACTERS = 1_115_394


def load_tiny_shakespeare(root=None, download=True):
    """The Tiny Shakespeare corpus (char-rnn's ``input.txt``) as one ``str``.

    A local file is accepted if it decodes as UTF-8 and has the corpus' 1,115,394
    characters; anything else raises :class:`DatasetError` naming the file.
    """
    path = _locate(TINY_SHAKESPEARE, root, download)["text"]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 text ({error}); replace it with a fresh copy "
                           "of char-rnn's data/tinyshakespeare/input.txt") from None
    if len(text) != TINY_SHAKESPEARE_CHARACTERS:
        raise DatasetError(f"{path}: expected {TINY_SHAKESPEARE_CHARACTERS:,} characters, got "
                           f"{len(text):,}; the file is damaged or another text: delete it to "
                           "re-download it, or replace it with a fresh copy")
    return text


class CharVocab:
    """The sorted set of characters of a text, and the maps between them and integers.

    ``encode(str) -> int64 array``, ``decode(ints) -> str``; ``len(vocab)`` = vocabulary
    size. Ids follow sorted character order, as in nanoGPT's ``prepare.py``.
    """

    def __init__(self, text):
        if not isinstance(text, str) or not text:
            raise TypeError(f"CharVocab: expected a non-empty str, got {checks.describe(text)}")
        self.chars = "".join(sorted(set(text)))
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        if not isinstance(text, str):
            raise TypeError(f"CharVocab.encode: expected a str, got {checks.describe(text)}")
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"CharVocab.encode: characters not in the vocabulary: "
                             f"{unknown[:10]!r}")
        return np.array([self.stoi[ch] for ch in text], dtype=np.int64)

    def decode(self, ids):
        ids = _integer_ids(ids, "CharVocab.decode").reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"CharVocab.decode: ids must lie in [0, {len(self.chars) - 1}], "
                             f"got values in [{ids.min()}, {ids.max()}]")
        return "".join(self.chars[i] for i in ids.tolist())

    def __repr__(self):
        return f"CharVocab({len(self)} characters)"


def _integer_ids(ids, owner):
    """``ids`` as an integer array (an empty list is an empty one); else a TypeError."""
    try:
        array = np.asarray(ids)
    except (TypeError, ValueError):  # ragged lists
        array = np.asarray(None)
    if array.size == 0 and array.dtype.kind == "f":
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{owner}: expected integer token ids, got {checks.describe(ids)}"
                        + (f" of dtype {array.dtype}" if array.dtype != object else ""))
    return array


def split_text(ids, val_fraction=0.1):
    """``(train, val)``: the first ``1 - val_fraction`` of the ids and the rest, in order
    (nanoGPT's ``prepare.py``: ``n = len(data); train = data[:int(n * 0.9)]``)."""
    val_fraction = checks.real_number(val_fraction, "val_fraction", "split_text", 0.0, 1.0,
                                      low_open=True, high_open=True)
    if not hasattr(ids, "__len__") or getattr(ids, "ndim", 1) != 1:
        raise TypeError(f"split_text: expected a sequence of token ids (a 1-D array, list or "
                        f"str), got {checks.describe(ids)}")
    cut = int(len(ids) * (1.0 - val_fraction))
    return ids[:cut], ids[cut:]


class BlockSampler:
    """Random windows of a token sequence, as nanoGPT's ``get_batch``.

    ``sample()`` returns ``(x, y)``, int64 ``(batch_size, block_size)`` each: for
    starts ``i`` drawn uniformly from ``[0, len(ids) - block_size)``,
    ``x[b] = ids[i_b : i_b + block_size]`` and ``y[b] = ids[i_b + 1 : i_b + 1 + block_size]``
    (the next token at every position). ``seed`` seeds the sampler's own generator.
    """

    def __init__(self, ids, block_size, batch_size, seed=None):
        self.ids = _integer_ids(ids, "BlockSampler")
        if self.ids.ndim != 1:
            raise TypeError(f"BlockSampler: expected a 1-D integer array of token ids, got "
                            f"{self.ids.dtype} {self.ids.shape}")
        self.block_size = checks.positive_int(block_size, "block_size", "BlockSampler")
        self.batch_size = checks.positive_int(batch_size, "batch_size", "BlockSampler")
        if len(self.ids) <= self.block_size:
            raise ValueError(f"BlockSampler: need more than block_size={self.block_size} "
                             f"tokens, got {len(self.ids)}")
        if self.batch_size * (self.block_size + 1) > sys.maxsize // 8:  # one int64 batch
            raise ValueError(f"BlockSampler: batch_size={self.batch_size} windows of "
                             f"{self.block_size + 1} tokens are too large to allocate")
        if seed is not None:
            seed = checks.integer(seed, "seed", "BlockSampler", 0)
        self.rng = np.random.default_rng(seed)
        self._offsets = np.arange(self.block_size + 1)

    def sample(self):
        starts = self.rng.integers(0, len(self.ids) - self.block_size, size=self.batch_size)
        windows = self.ids[starts[:, None] + self._offsets]  # (B, block_size + 1)
        return windows[:, :-1].astype(np.int64), windows[:, 1:].astype(np.int64)


__all__ = ["BlockSampler", "CharVocab", "TINY_SHAKESPEARE", "load_tiny_shakespeare",
           "split_text"]

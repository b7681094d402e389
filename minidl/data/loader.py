"""Mini-batches from in-memory arrays: :class:`DataLoader` and :func:`train_val_split`."""
import copy
import math

import numpy as np

from .. import backend, checks, distributed
from .sharding import shard_order, shard_size


def _take(array, indices):
    """``array[indices]`` with the NumPy ``indices`` moved to ``array``'s device."""
    return array[backend.get_array_module(array).asarray(indices)]


def _check_samples(x, y, owner):
    """``x`` and ``y``: arrays ``(N, ...)`` with the same N."""
    for label, array in (("x", x), ("y", y)):
        if not checks.is_array(array) or array.ndim == 0:
            raise TypeError(f"{owner}: {label} must be an array of shape (N, ...), "
                            f"got {checks.describe(array)}")
    if len(x) != len(y):
        raise ValueError(f"{owner}: x and y must hold the same number of samples, "
                         f"got {len(x)} and {len(y)}")


def _check_seed(seed, owner):
    return None if seed is None else checks.positive_int(seed, "seed", owner, allow_zero=True)


def _shard_position(shard, num_samples):
    """(rank, world size) whose share of the data this loader yields; (0, 1) unsharded."""
    if shard is None:
        shard = distributed.is_initialized()
    if not checks.boolean(shard, "shard", "DataLoader"):
        return 0, 1
    if not distributed.is_initialized():
        raise RuntimeError("DataLoader: shard=True needs minidl.distributed.init() first")
    sizes = distributed.all_gather_text(str(num_samples))
    if len(set(sizes)) > 1:  # the shards would overlap, and the ranks' batch counts differ
        raise ValueError(f"DataLoader: every rank must hold the same data set to shard it, "
                         f"got {', '.join(sizes)} samples on ranks 0..{len(sizes) - 1}")
    return distributed.rank(), distributed.world_size()


def _seed_of_rank_0(seed):
    """Rank 0's seed (drawn from minidl's rng if None) on every rank: the epochs' orders
    must be the same everywhere for the shards to be disjoint."""
    if seed is None:
        seed = int(backend.rng().integers(2**63))
    return int(distributed.broadcast(np.array([seed], dtype=np.int64))[0])


def _new_generator(seed):
    """A generator of its own, seeded from ``seed`` or, if None, from minidl's rng."""
    if seed is None:
        seed = int(backend.rng().integers(2**63))
    return np.random.default_rng(seed)


class DataLoader:
    """Iterate over ``(x, y)`` in mini-batches, optionally shuffled and augmented.

    ``x``: ``(N, ...)`` (e.g. uint8 images ``(N, C, H, W)``), ``y``: ``(N, ...)``; NumPy,
    or CuPy to keep a whole data set on the GPU. Each iteration is one epoch and yields
    ``(xb, yb)``; ``len(loader)`` is the number of batches per epoch (the last, smaller
    batch is dropped when ``drop_last``).

    Per batch: gather the rows, move them with :func:`minidl.backend.to_device` when
    ``device`` is given, then apply ``transform(xb, rng)`` (see
    :mod:`minidl.data.transforms`). Transforms that define ``set_batch(epoch, indices)``
    are told the epoch and the batch's row indices first.

    Randomness: the loader owns one ``numpy.random.Generator`` (from ``seed``, or drawn
    from :func:`minidl.backend.rng` when None) used for the shuffle permutation and passed
    to the transform. :meth:`state_dict` captures it together with the position in the
    current epoch, so a loader restored with :meth:`load_state_dict` yields exactly the
    batches - order and augmentation draws - the original would have yielded next.

    Sharding (``shard``: None = when :mod:`minidl.distributed` is initialised): rank r of
    p yields only its share of each epoch's order, by PyTorch's ``DistributedSampler``
    rule (:mod:`minidl.data.sharding`): every rank draws the same permutation (rank 0's
    seed), reshuffled every epoch, and takes every p-th entry from position r; the order
    is first padded by repeating its start (``drop_last=False``: ceil(N/p) samples per
    rank) or cut (``drop_last=True``: floor(N/p), and the last partial batch dropped),
    so every rank yields the same number of batches. ``batch_size`` is per rank.
    Transforms draw from the shared generator, so they must draw the same amount on
    every rank (minidl's draw per batch size): the generators then stay equal.
    """

    def __init__(self, x, y, batch_size, shuffle=True, drop_last=False, transform=None,
                 seed=None, device=None, shard=None):
        _check_samples(x, y, "DataLoader")
        if len(x) == 0:
            raise ValueError("DataLoader: the data set is empty")
        batch_size = checks.positive_int(batch_size, "batch_size", "DataLoader")
        shuffle = checks.boolean(shuffle, "shuffle", "DataLoader")
        drop_last = checks.boolean(drop_last, "drop_last", "DataLoader")
        seed = _check_seed(seed, "DataLoader")
        self.rank, self.world_size = _shard_position(shard, len(x))
        samples = shard_size(len(x), self.world_size, drop_last)
        if drop_last and batch_size > samples:
            per_rank = f" per rank ({self.world_size} ranks)" if self.world_size > 1 else ""
            raise ValueError(f"DataLoader: batch_size {batch_size} with drop_last=True "
                             f"leaves no batch from {samples} samples{per_rank}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got "
                            f"{checks.describe(transform)}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform, self.device = transform, device
        # A loader that draws nothing (no shuffle, no transform) takes nothing from
        # minidl's generator, so creating an evaluation loader shifts no other draw.
        needs_randomness = shuffle or transform is not None or seed is not None
        if needs_randomness and self.world_size > 1:
            seed = _seed_of_rank_0(seed)
        self.rng = _new_generator(seed) if needs_randomness else np.random.default_rng(0)
        self.epoch = 0               # the epoch being iterated, or the next one
        self._batch = 0              # batches already yielded in the current epoch
        self._in_epoch = False
        self._epoch_start_state = None  # rng state before this epoch's permutation
        self._resume = False         # set by load_state_dict: continue, do not restart
        self._abandoned = False      # the current epoch's iterator was closed early

    def __len__(self):
        samples = shard_size(len(self.x), self.world_size, self.drop_last)
        if self.drop_last:
            return samples // self.batch_size
        return math.ceil(samples / self.batch_size)

    def __iter__(self):
        if self._resume:
            self._resume = False
            order = self._order(np.random.default_rng())
        else:
            if self._in_epoch:  # the previous epoch was abandoned part-way: it counts
                self.epoch += 1
            self._epoch_start_state = copy.deepcopy(self.rng.bit_generator.state)
            self._batch, self._in_epoch = 0, True
            order = self._order(self.rng)
        return self._batches(order)

    def _order(self, generator):
        """This epoch's sample order. On resume ``generator`` is rewound to the epoch's
        start, so it draws the same permutation without disturbing ``self.rng``."""
        if not self.shuffle:
            order = np.arange(len(self.x))
        else:
            generator.bit_generator.state = copy.deepcopy(self._epoch_start_state)
            order = generator.permutation(len(self.x))
        if self.world_size > 1:
            order = shard_order(order, self.rank, self.world_size, self.drop_last)
        return order

    def _batches(self, order):
        try:
            yield from self._epoch_batches(order)
        except GeneratorExit:  # the caller stopped early (e.g. peeked one batch)
            self._abandoned = True
            raise

    def _epoch_batches(self, order):
        self._abandoned = False
        while self._batch < len(self):
            start = self._batch * self.batch_size
            indices = order[start:start + self.batch_size]
            xb, yb = _take(self.x, indices), _take(self.y, indices)
            if self.device is not None:
                xb = backend.to_device(xb, self.device)
                yb = backend.to_device(yb, self.device)
            if self.transform is not None:
                if hasattr(self.transform, "set_batch"):
                    self.transform.set_batch(self.epoch, indices)
                xb = self.transform(xb, self.rng)
            # Count the batch before handing it out: a checkpoint taken while the caller
            # works on it resumes with the next one.
            self._batch += 1
            yield xb, yb
        self._in_epoch, self._batch = False, 0
        self.epoch += 1

    def state_dict(self):
        """JSON-able position: epoch, batches done in it, and the generator's states.

        An epoch the caller abandoned part-way (its iterator was closed) is over: the state
        then describes the start of the next epoch, which is what the next ``iter`` does.
        """
        if self._in_epoch and self._abandoned:
            return {"epoch": self.epoch + 1, "batch": 0, "in_epoch": False,
                    "rng": copy.deepcopy(self.rng.bit_generator.state), "epoch_start_rng": None}
        return {
            "epoch": self.epoch,
            "batch": self._batch,
            "in_epoch": self._in_epoch,
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "epoch_start_rng": copy.deepcopy(self._epoch_start_state) if self._in_epoch else None,
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`. The next ``iter`` yields the rest of the epoch that
        was interrupted (possibly nothing, if every batch had been handed out), the ones
        after it start new epochs as usual."""
        where = "DataLoader.load_state_dict"
        expected = {"epoch", "batch", "in_epoch", "rng", "epoch_start_rng"}
        if not isinstance(state, dict) or set(state) != expected:
            got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{where}: expected keys {sorted(expected)}, got {got}")
        epoch = checks.positive_int(state["epoch"], "epoch", where, allow_zero=True)
        batch = checks.positive_int(state["batch"], "batch", where, allow_zero=True)
        in_epoch = checks.boolean(state["in_epoch"], "in_epoch", where)
        if in_epoch and batch > len(self):
            raise ValueError(f"{where}: batch {batch} is out of range for {len(self)} batches "
                             "per epoch (another data set or batch size?)")
        rng_state = self._checked_rng_state(state["rng"], "rng")
        start_state = state["epoch_start_rng"]
        if start_state is not None or (in_epoch and self.shuffle):
            start_state = self._checked_rng_state(start_state, "epoch_start_rng")
        self.rng.bit_generator.state = rng_state
        self.epoch, self._batch, self._in_epoch = epoch, batch, in_epoch
        self._epoch_start_state = start_state
        self._resume, self._abandoned = self._in_epoch, False

    def _checked_rng_state(self, value, label):
        """A copy of a bit-generator state, tried on a spare generator of this loader's kind."""
        probe = type(self.rng.bit_generator)()
        try:
            probe.state = copy.deepcopy(value)
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise ValueError(f"DataLoader.load_state_dict: {label} is not a state of a "
                             f"{type(probe).__name__} generator ({type(err).__name__}: "
                             f"{err})") from None
        return copy.deepcopy(value)

    def __repr__(self):
        shard = f", shard {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        return (f"DataLoader({len(self.x)} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"transform={self.transform!r}{shard})")


def train_val_split(x, y, val_fraction=0.1, seed=None):
    """Split into ``(x_train, y_train), (x_val, y_val)`` at random.

    ``round(N * val_fraction)`` samples go to validation; which ones is fixed by
    ``seed`` (None: drawn from :func:`minidl.backend.rng`). Both parts keep the original
    relative order.
    """
    _check_samples(x, y, "train_val_split")
    val_fraction = checks.real_number(val_fraction, "val_fraction", "train_val_split", 0.0, 1.0,
                                      low_open=True, high_open=True)
    seed = _check_seed(seed, "train_val_split")
    n = len(x)
    n_val = int(round(n * val_fraction))
    if not 0 < n_val < n:
        raise ValueError(f"train_val_split: val_fraction {val_fraction} of {n} samples "
                         f"leaves an empty split ({n - n_val} train, {n_val} validation)")
    order = _new_generator(seed).permutation(n)
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
    return ((_take(x, train_rows), _take(y, train_rows)),
            (_take(x, val_rows), _take(y, val_rows)))


__all__ = ["DataLoader", "train_val_split"]

"""Batch-vectorised data augmentation and preprocessing.

A transform is a callable ``t(x, rng) -> x``: ``x`` is a whole batch ``(N, C, H, W)``
(NumPy or CuPy), ``rng`` a ``numpy.random.Generator``. Random parameters (one per
sample: crop offsets, flip decisions, cutout positions) are drawn with ``rng`` on the
CPU, so a run is reproducible and resumable from the generator's state alone on either
backend; they are then applied to the whole batch at once with ``xp`` operations
(fancy indexing, ``xp.where``) - there is no Python loop over samples. Transforms never
modify their input; they return a new array.

Deterministic transforms (:class:`ToFloat`, :class:`Normalize`) take ``rng`` too, but
ignore it and may be called as ``t(x)``.

Transforms that need to know *which* samples are in the batch and which epoch it is
(:class:`AlternatingFlip`) also define ``set_batch(epoch, indices)``; the
:class:`~minidl.data.DataLoader` calls it before every batch (:class:`Compose` passes it
on to its members).
"""
import numpy as np

from .. import backend, checks

_PADDING_MODES = ("constant", "reflect", "edge")


def _check_batch(name, x):
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{name}: expected a batch of images (N, C, H, W), got "
                         f"{type(x).__name__} of shape {getattr(x, 'shape', '?')}")


def _check_floating(name, x):
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name}: expected floating-point images, got {x.dtype}; "
                        "apply ToFloat() first")


def _pair(name, label, value):
    """``value`` as (height, width) of positive ints: an int means a square."""
    if not isinstance(value, (tuple, list)):
        size = checks.positive_int(value, label, name)
        return size, size
    if len(value) != 2:
        raise ValueError(f"{name}: {label} must be an int or a pair (h, w), "
                         f"got {checks.describe(value)}")
    return tuple(checks.positive_int(v, f"{label}[{i}]", name) for i, v in enumerate(value))


def _per_channel(name, label, values):
    """``values`` (a number, or one per channel) as a 1-d float64 array of finite numbers."""
    if not isinstance(values, (tuple, list)) and getattr(values, "ndim", 0) == 0:
        return np.array([checks.real_number(values, label, name)])
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name}: {label} must be a number or a sequence of numbers (one per "
                        f"channel), got {checks.describe(values)}")
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: {label} must be a number or a non-empty 1-d sequence of "
                         f"finite numbers, got {checks.describe(values)}")
    return array.astype(np.float64)


def _mirror_where(xp, flip, x):
    """``x`` with the samples where ``flip`` (a NumPy bool (N,)) is True mirrored left-right."""
    return xp.where(xp.asarray(flip)[:, None, None, None], x[..., ::-1], x)


class Compose:
    """Apply ``transforms`` in order: ``Compose([ToFloat(), Normalize(m, s)])``."""

    def __init__(self, transforms):
        if not isinstance(transforms, (list, tuple)):
            raise TypeError(f"Compose: transforms must be a list of callables, "
                            f"got {checks.describe(transforms)}")
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transforms[{i}] must be callable, "
                                f"got {checks.describe(t)}")

    def __call__(self, x, rng=None):
        for t in self.transforms:
            x = t(x, rng)
        return x

    def set_batch(self, epoch, indices):
        for t in self.transforms:
            if hasattr(t, "set_batch"):
                t.set_batch(epoch, indices)

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class ToFloat:
    """uint8 images in 0..255 -> floating point in [0, 1] (``x / 255``, as torch's
    ``ToTensor``). ``dtype`` defaults to :func:`minidl.default_dtype` (float32)."""

    def __init__(self, dtype=None):
        if dtype is not None:
            if isinstance(dtype, (np.generic, np.ndarray)):  # a value, not a type
                raise TypeError(f"ToFloat: dtype must be float32 or float64, "
                                f"got {checks.describe(dtype)}")
            try:
                dtype = np.dtype(dtype)
            except TypeError:
                raise TypeError(f"ToFloat: dtype must be float32 or float64, "
                                f"got {checks.describe(dtype)}") from None
            if dtype not in checks.FLOAT_DTYPES:
                raise ValueError(f"ToFloat: dtype must be float32 or float64, got {dtype}")
        self.dtype = dtype

    def __call__(self, x, rng=None):
        if not checks.is_array(x):
            raise TypeError(f"ToFloat: expected uint8 images (an array), got "
                            f"{type(x).__name__}")
        if x.dtype != np.uint8:
            raise TypeError(f"ToFloat: expected uint8 images (0..255), got {x.dtype}; "
                            "is ToFloat applied twice?")
        out = x.astype(self.dtype if self.dtype is not None else backend.default_dtype())
        out /= 255
        return out

    def __repr__(self):
        return f"ToFloat(dtype={self.dtype})"


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]`` for floating images ``(N, C, H, W)``.

    ``mean``/``std``: one value per channel, or a single value for all channels; in the
    units of ``x`` (e.g. ``CIFAR10_MEAN`` for images scaled to [0, 1] by ToFloat).
    """

    def __init__(self, mean, std):
        self.mean = _per_channel("Normalize", "mean", mean)
        self.std = _per_channel("Normalize", "std", std)
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has "
                             f"{len(self.std)}")
        if not np.all(self.std > 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.tolist()}")

    def __call__(self, x, rng=None):
        _check_batch("Normalize", x)
        _check_floating("Normalize", x)
        channels = x.shape[1]
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(f"Normalize: {label} has {len(values)} values, but the "
                                 f"images have {channels} channels")
        xp = backend.get_array_module(x)
        # Cast the statistics to x's dtype so float32 batches stay float32.
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _check_fill(name, fill, dtype):
    """``fill`` must be a value of the images' dtype (no silent wrap-around or overflow)."""
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    if not info.min <= fill <= info.max or (dtype.kind in "iu" and fill != int(fill)):
        raise ValueError(f"{name}: fill {fill!r} is not a value of the images' dtype {dtype}")


def _pad(x, padding, mode, fill):
    xp = backend.get_array_module(x)
    widths = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    if mode == "constant":
        return xp.pad(x, widths, mode="constant", constant_values=fill)
    return xp.pad(x, widths, mode=mode)


def _crop_at(x, top, left, height, width):
    """Crop ``x[n, :, top[n]:top[n]+height, left[n]:left[n]+width]`` for every n at once.

    ``top``/``left`` are NumPy int arrays (N,). One gather with broadcast index arrays
    (N,1,1,1) x (1,C,1,1) x (N,1,h,1) x (N,1,1,w) -> (N, C, h, w).
    """
    xp = backend.get_array_module(x)
    n, c = x.shape[:2]
    rows = xp.asarray(top)[:, None] + xp.arange(height)[None, :]    # (N, h)
    cols = xp.asarray(left)[:, None] + xp.arange(width)[None, :]    # (N, w)
    return x[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]


class RandomCrop:
    """Pad every side by ``padding`` pixels, then crop a random ``size`` window per image.

    ``size``: int or (h, w). ``padding_mode``: "constant" (``fill``, default 0; torch's
    default), "reflect" (mirror without repeating the edge pixel, as torch and airbench)
    or "edge" (repeat the edge pixel, torch's "replicate"). The window's top-left corner
    is uniform over all positions that keep it inside the padded image, independently
    per image. ``(N, C, H, W) -> (N, C, h, w)``, dtype kept.
    """

    def __init__(self, size, padding=0, padding_mode="constant", fill=0):
        name = type(self).__name__
        self.size = _pair(name, "size", size)
        self.padding = checks.positive_int(padding, "padding", name, allow_zero=True)
        self.padding_mode = checks.choice(padding_mode, "padding_mode", name, _PADDING_MODES)
        self.fill = checks.real_number(fill, "fill", name)

    def __call__(self, x, rng):
        _check_batch(type(self).__name__, x)
        return self._crop(x, rng, self.size)

    def _crop(self, x, rng, size):
        name = type(self).__name__
        height, width = x.shape[2] + 2 * self.padding, x.shape[3] + 2 * self.padding
        if size[0] > height or size[1] > width:
            raise ValueError(f"{name}: crop {size} is larger than the padded image "
                             f"({height}, {width})")
        if self.padding > max(*size, *x.shape[2:]):
            raise ValueError(f"{name}: padding {self.padding} is larger than both the crop "
                             f"{tuple(size)} and the images {tuple(x.shape[2:])}: most windows "
                             "would hold nothing but padding")
        if self.padding_mode == "reflect" and self.padding >= min(x.shape[2:]):
            raise ValueError(f"{name}: reflect padding {self.padding} needs images larger "
                             f"than the padding, got {x.shape[2:]}")
        if self.padding:
            if self.padding_mode == "constant":
                _check_fill(name, self.fill, x.dtype)
            x = _pad(x, self.padding, self.padding_mode, self.fill)
        n = x.shape[0]
        top = rng.integers(0, height - size[0] + 1, size=n)
        left = rng.integers(0, width - size[1] + 1, size=n)
        return _crop_at(x, top, left, *size)

    def __repr__(self):
        return (f"{type(self).__name__}(size={self.size}, padding={self.padding}, "
                f"padding_mode={self.padding_mode!r})")


class RandomTranslate(RandomCrop):
    """Shift each image by a random (dy, dx) in ``[-max_shift, max_shift]``, filling the
    uncovered border by reflection (airbench's "translate"): a :class:`RandomCrop` back
    to the input size after padding by ``max_shift``. Shape and dtype are kept."""

    def __init__(self, max_shift=2, padding_mode="reflect", fill=0):
        self.max_shift = checks.positive_int(max_shift, "max_shift", "RandomTranslate")
        super().__init__(1, padding=self.max_shift, padding_mode=padding_mode, fill=fill)
        self.size = None  # crops back to each batch's own (H, W)

    def __call__(self, x, rng):
        _check_batch("RandomTranslate", x)
        return self._crop(x, rng, tuple(x.shape[2:]))

    def __repr__(self):
        return f"RandomTranslate(max_shift={self.max_shift}, padding_mode={self.padding_mode!r})"


class RandomHorizontalFlip:
    """Mirror each image left-right independently with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = checks.real_number(p, "p", "RandomHorizontalFlip", 0.0, 1.0)

    def __call__(self, x, rng):
        _check_batch("RandomHorizontalFlip", x)
        flip = rng.random(x.shape[0]) < self.p
        return _mirror_where(backend.get_array_module(x), flip, x)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class AlternatingFlip:
    """airbench's alternating flip: every image is seen mirrored every other epoch.

    A fixed random half of the data set (drawn once from ``seed``) is mirrored in even
    epochs (0, 2, ...), the other half in odd epochs, so each image appears in both
    orientations over any two consecutive epochs - less redundant than flipping a coin
    for each image in each epoch. ``num_samples`` is the data set's size; the
    :class:`~minidl.data.DataLoader` tells the transform the epoch and the data set
    indices of the batch through ``set_batch(epoch, indices)`` before every batch. To
    use it outside a loader, call ``set_batch`` yourself. ``seed=None`` draws the half
    from :func:`minidl.backend.rng` (reproducible under ``minidl.seed``).
    """

    def __init__(self, num_samples, seed=None):
        self.num_samples = checks.positive_int(num_samples, "num_samples", "AlternatingFlip")
        if seed is None:
            seed = int(backend.rng().integers(2**63))
        seed = checks.positive_int(seed, "seed", "AlternatingFlip", allow_zero=True)
        self.seed = seed
        self.flip_in_even_epochs = np.random.default_rng(seed).random(self.num_samples) < 0.5
        self._epoch = None
        self._indices = None

    def set_batch(self, epoch, indices):
        indices = np.asarray(backend.to_numpy(indices))
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise ValueError(f"AlternatingFlip: batch indices must lie in "
                             f"[0, {self.num_samples}), got {indices.min()}..{indices.max()}")
        self._epoch, self._indices = int(epoch), indices

    def __call__(self, x, rng=None):
        _check_batch("AlternatingFlip", x)
        if self._indices is None:
            raise RuntimeError("AlternatingFlip: no batch information; use it inside a "
                               "DataLoader, or call set_batch(epoch, indices) first")
        if len(self._indices) != x.shape[0]:
            raise ValueError(f"AlternatingFlip: set_batch was given {len(self._indices)} "
                             f"indices for a batch of {x.shape[0]} images")
        flip = self.flip_in_even_epochs[self._indices]
        if self._epoch % 2 == 1:
            flip = ~flip
        return _mirror_where(backend.get_array_module(x), flip, x)

    def __repr__(self):
        return f"AlternatingFlip(num_samples={self.num_samples}, seed={self.seed})"


class Cutout:
    """Set a random ``size`` x ``size`` square of each image to ``fill`` (DeVries & Taylor
    2017; 8x8 in the ResNet-9 recipe).

    As in the ResNet-9 DAWNBench code, the square lies fully inside the image: its
    top-left corner is uniform over ``[0, H - size] x [0, W - size]``, so exactly
    ``size**2`` pixels per channel are cut. Applied after normalisation, ``fill=0`` is
    the data set's mean colour.
    """

    def __init__(self, size, fill=0):
        self.size = _pair("Cutout", "size", size)
        self.fill = checks.real_number(fill, "fill", "Cutout")

    def __call__(self, x, rng):
        _check_batch("Cutout", x)
        (n, _, height, width), (cut_h, cut_w) = x.shape, self.size
        if cut_h > height or cut_w > width:
            raise ValueError(f"Cutout: square {self.size} is larger than the images "
                             f"({height}, {width})")
        _check_fill("Cutout", self.fill, x.dtype)
        xp = backend.get_array_module(x)
        top = xp.asarray(rng.integers(0, height - cut_h + 1, size=n))[:, None]
        left = xp.asarray(rng.integers(0, width - cut_w + 1, size=n))[:, None]
        rows, cols = xp.arange(height)[None, :], xp.arange(width)[None, :]
        in_rows = (rows >= top) & (rows < top + cut_h)        # (N, H)
        in_cols = (cols >= left) & (cols < left + cut_w)      # (N, W)
        inside = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (N, 1, H, W)
        return xp.where(inside, xp.asarray(self.fill, dtype=x.dtype), x)

    def __repr__(self):
        return f"Cutout(size={self.size}, fill={self.fill})"


__all__ = ["AlternatingFlip", "Compose", "Cutout", "Normalize", "RandomCrop",
           "RandomHorizontalFlip", "RandomTranslate", "ToFloat"]

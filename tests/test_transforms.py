"""Batch transforms: shapes, dtypes, exact values against per-sample references, and
the statistics of the random draws."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minidl import backend
from minidl.data import (AlternatingFlip, Compose, Cutout, Normalize, RandomCrop,
                         RandomHorizontalFlip, RandomTranslate, ToFloat)


def images(n=8, c=3, h=6, w=7, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, c, h, w)).astype(dtype)


def numpy_of(x):
    return backend.to_numpy(x)


# ------------------------------------------------------------------ deterministic
def test_to_float_scales_uint8_to_unit_interval(xp):
    x = images()
    x[0, 0, 0, :2] = (0, 255)
    out = ToFloat()(xp.asarray(x))
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(numpy_of(out), x / 255.0, rtol=1e-6)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert ToFloat(np.float64)(xp.asarray(x)).dtype == np.float64


def test_to_float_refuses_non_uint8_input(xp):
    with pytest.raises(TypeError, match="ToFloat: expected uint8 images .* got float32"):
        ToFloat()(xp.asarray(images(dtype=np.float32)))


def test_normalize_gives_zero_mean_unit_std_per_channel(xp):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((400, 3, 4, 4)) * [[[[2.0]], [[0.5]], [[3.0]]]]
         + [[[[1.0]], [[-2.0]], [[0.25]]]]).astype(np.float32)
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    out = Normalize(mean, std)(xp.asarray(x))
    assert out.dtype == np.float32
    out = numpy_of(out)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], (x[:, 1] - mean[1]) / std[1], rtol=1e-5, atol=1e-6)


def test_normalize_single_value_applies_to_every_channel(xp):
    x = images(dtype=np.float64)
    np.testing.assert_allclose(numpy_of(Normalize(10.0, 2.0)(xp.asarray(x))), (x - 10) / 2)


@pytest.mark.parametrize("x, error, message", [
    (images(c=3, dtype=np.float32), ValueError, "mean has 2 values, but the images have 3"),
    (images(c=2), TypeError, "expected floating-point images, got uint8"),
    (np.zeros((2, 4, 4), np.float32), ValueError, r"expected a batch of images \(N, C, H, W\)"),
])
def test_normalize_rejects_mismatched_input(x, error, message):
    with pytest.raises(error, match=f"Normalize: {message}"):
        Normalize((0.5, 0.5), (0.2, 0.2))(x)


@pytest.mark.parametrize("make, message", [
    (lambda: Normalize((0.5,), (0.0,)), "Normalize: std must be positive"),
    (lambda: Normalize((0.1, 0.2, 0.3), (1.0, 1.0)), "Normalize: mean has 3 values but std has 2"),
    (lambda: Normalize(float("nan"), 1.0), r"Normalize: mean must be a real number .* got nan"),
    (lambda: Normalize((0.5, float("inf")), 1.0), "Normalize: mean must be .*finite numbers"),
    (lambda: Normalize([], 1.0), "Normalize: mean must be a number or a non-empty"),
    (lambda: RandomCrop(0), r"RandomCrop: size must be a positive integer, got 0 \(int\)"),
    (lambda: RandomCrop((4, 4, 4)), "RandomCrop: size must be an int or a pair"),
    (lambda: RandomCrop(4, padding=-1), "RandomCrop: padding must be a non-negative"),
    (lambda: RandomCrop(4, padding_mode="wrap"), "RandomCrop: padding_mode must be one of"),
    (lambda: RandomCrop(4, fill=float("inf")), "RandomCrop: fill must be a real number"),
    (lambda: RandomTranslate(0), "RandomTranslate: max_shift must be a positive integer"),
    (lambda: RandomTranslate(2, padding_mode="wrap"), "RandomTranslate: padding_mode must be"),
    (lambda: RandomHorizontalFlip(1.5),
     r"RandomHorizontalFlip: p must be a real number in \[0, 1\], got 1.5"),
    (lambda: RandomHorizontalFlip(float("nan")), "RandomHorizontalFlip: p must be"),
    (lambda: Cutout(-2), "Cutout: size must be a positive integer"),
    (lambda: Cutout(4, fill=float("nan")), "Cutout: fill must be a real number"),
    (lambda: AlternatingFlip(0), "AlternatingFlip: num_samples must be a positive integer"),
    (lambda: AlternatingFlip(4, seed=-1), "AlternatingFlip: seed must be a non-negative integer"),
    (lambda: ToFloat(np.uint8), "ToFloat: dtype must be float32 or float64"),
])
def test_constructors_refuse_out_of_range_values_with_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make, message", [
    (lambda: Normalize(None, 1), r"Normalize: mean must be a real number .* got None \(NoneType\)"),
    (lambda: Normalize((0.5, None), 1), "Normalize: mean must be a number or a sequence"),
    (lambda: Normalize(0.5, "1"), "Normalize: std must be a real number"),
    (lambda: Normalize(True, 1), "Normalize: mean must be a real number"),
    (lambda: RandomCrop(4.0), "RandomCrop: size must be a positive integer"),
    (lambda: RandomCrop((4, True)), r"RandomCrop: size\[1\] must be a positive integer"),
    (lambda: RandomCrop(4, padding=True), "RandomCrop: padding must be"),
    (lambda: RandomTranslate(2.5), "RandomTranslate: max_shift must be a positive integer"),
    (lambda: RandomTranslate(2, fill=None), "RandomTranslate: fill must be a real number"),
    (lambda: RandomHorizontalFlip(True), r"RandomHorizontalFlip: p must be .* got True \(bool\)"),
    (lambda: Cutout(4, fill=None), r"Cutout: fill must be a real number .* got None"),
    (lambda: AlternatingFlip(10, seed=""), "AlternatingFlip: seed must be a non-negative integer"),
    (lambda: Compose([ToFloat(), 3]), r"Compose: transforms\[1\] must be callable"),
    (lambda: Compose(5), "Compose: transforms must be a list of callables, got 5"),
    (lambda: ToFloat("foo"), "ToFloat: dtype must be float32 or float64"),
])
def test_constructors_refuse_wrong_types_with_type_error(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_constructors_accept_numpy_scalars():
    assert RandomCrop(np.int64(4), padding=np.int32(1)).size == (4, 4)
    assert RandomTranslate(np.int64(2)).max_shift == 2
    flip = RandomHorizontalFlip(np.float32(0.25))
    assert flip.p == 0.25 and type(flip.p) is float
    assert Cutout(np.int64(2), fill=np.float64(0.5)).fill == 0.5
    normalize = Normalize(np.float32(0.5), np.array([0.25, 0.5]))
    x = np.ones((1, 2, 2, 2), np.float32)
    np.testing.assert_allclose(normalize(x)[:, :, 0, 0], [[2.0, 1.0]])
    assert normalize(x).dtype == np.float32
    assert AlternatingFlip(np.int64(6), seed=np.int64(1)).num_samples == 6


# ------------------------------------------------------------------ random crop
def reference_crops(padded, size):
    """Every window of ``size`` in each padded image, as {(top, left): window}."""
    _, _, height, width = padded.shape
    return {(top, left): padded[:, :, top:top + size[0], left:left + size[1]]
            for top in range(height - size[0] + 1) for left in range(width - size[1] + 1)}


@given(n=st.integers(1, 6), h=st.integers(3, 7), w=st.integers(3, 7),
       padding=st.integers(0, 2), mode=st.sampled_from(["constant", "reflect", "edge"]),
       shrink=st.integers(0, 2))
def test_random_crop_each_output_is_a_window_of_the_padded_image(n, h, w, padding, mode,
                                                                 shrink):
    x = images(n=n, c=2, h=h, w=w)
    size = (h - shrink, w - shrink)
    out = RandomCrop(size, padding=padding, padding_mode=mode)(x, np.random.default_rng(0))
    assert out.shape == (n, 2) + size and out.dtype == np.uint8
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode)
    windows = reference_crops(padded, size)
    for i in range(n):
        assert any(np.array_equal(out[i], window[i]) for window in windows.values())


def test_random_crop_offsets_are_uniform_over_the_whole_range(xp):
    # Every pixel value is distinct, so each window of the padded image is unique and
    # the offset of every crop can be read off by matching it against all windows.
    n, size, padding = 4000, 4, 2
    x = np.broadcast_to(np.arange(1, size * size + 1).reshape(size, size), (n, 1, size, size))
    out = numpy_of(RandomCrop(size, padding=padding)(xp.asarray(x), np.random.default_rng(0)))
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = reference_crops(padded, (size, size))
    offsets = np.array(list(windows))
    matches = np.stack([np.all(out == window, axis=(1, 2, 3)) for window in windows.values()])
    assert np.all(matches.sum(axis=0) == 1)  # every crop is exactly one window
    counts = matches.sum(axis=1)  # crops per offset (top, left) in [0, 2p]^2
    assert offsets.min() == 0 and offsets.max() == 2 * padding and len(offsets) == 25
    expected = n / 25
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_random_crop_constant_padding_fills_with_fill_value(xp):
    x = np.full((50, 1, 3, 3), 7, np.uint8)
    out = numpy_of(RandomCrop(3, padding=3, fill=1)(xp.asarray(x), np.random.default_rng(0)))
    assert set(np.unique(out)) <= {1, 7} and (out == 1).any()


def test_random_translate_keeps_shape_and_reflects(xp):
    x = images(n=64, h=8, w=8, dtype=np.float32)
    out = RandomTranslate(2)(xp.asarray(x), np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), "reflect")
    windows = reference_crops(padded, (8, 8))
    out = numpy_of(out)
    for i in range(len(x)):
        assert any(np.array_equal(out[i], window[i]) for window in windows.values())
    assert not np.array_equal(out, x)


@pytest.mark.parametrize("transform, shape, message", [
    (RandomCrop(8), (2, 1, 5, 5), r"crop \(8, 8\) is larger than the padded image \(5, 5\)"),
    (RandomCrop(5, padding=5, padding_mode="reflect"), (2, 1, 5, 5), "reflect padding 5"),
    (Cutout(6), (2, 1, 5, 5), r"square \(6, 6\) is larger than the images"),
    (RandomHorizontalFlip(), (5, 5), r"expected a batch of images \(N, C, H, W\)"),
])
def test_random_transforms_reject_impossible_input(transform, shape, message):
    with pytest.raises(ValueError, match=f"{type(transform).__name__}: {message}"):
        transform(np.zeros(shape, np.float32), np.random.default_rng(0))


# ------------------------------------------------------------------ flips
def flipped_mask(x, out):
    mirrored = np.all(out == x[..., ::-1], axis=(1, 2, 3))
    assert np.all(mirrored | np.all(out == x, axis=(1, 2, 3)))  # nothing else happened
    return mirrored


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_horizontal_flip_mirrors_with_probability_p(xp, p):
    n = 4000
    x = images(n=n, c=1, h=2, w=3)
    x[:, 0, 0, 0], x[:, 0, 0, 2] = 0, 1  # asymmetric, so a flip is always visible
    out = RandomHorizontalFlip(p)(xp.asarray(x), np.random.default_rng(0))
    assert out.dtype == np.uint8
    flips = flipped_mask(x, numpy_of(out)).sum()
    assert abs(flips - p * n) <= 5 * np.sqrt(n * p * (1 - p))


def test_alternating_flip_flips_complementary_halves_in_even_and_odd_epochs(xp):
    n = 2000
    x = images(n=n, c=1, h=2, w=3)
    x[:, 0, 0, 0], x[:, 0, 0, 2] = 0, 1
    flip = AlternatingFlip(n, seed=3)
    masks = []
    for epoch in range(3):
        flip.set_batch(epoch, np.arange(n))
        masks.append(flipped_mask(x, numpy_of(flip(xp.asarray(x)))))
    np.testing.assert_array_equal(masks[1], ~masks[0])
    np.testing.assert_array_equal(masks[2], masks[0])
    assert abs(masks[0].sum() - n / 2) <= 5 * np.sqrt(n / 4)


def test_alternating_flip_follows_the_dataset_indices_of_the_batch():
    flip = AlternatingFlip(10, seed=0)
    x = images(n=10, c=1, h=2, w=3)
    x[:, 0, 0, 0], x[:, 0, 0, 2] = 0, 1
    flip.set_batch(0, np.arange(10))
    whole = flipped_mask(x, flip(x))
    rows = np.array([7, 2, 9])
    flip.set_batch(0, rows)
    np.testing.assert_array_equal(flipped_mask(x[rows], flip(x[rows])), whole[rows])


def test_alternating_flip_needs_batch_information():
    flip = AlternatingFlip(10, seed=0)
    with pytest.raises(RuntimeError, match="AlternatingFlip: no batch information"):
        flip(images(n=2))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        flip.set_batch(0, np.array([3, 10]))
    flip.set_batch(0, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="given 3 indices for a batch of 2 images"):
        flip(images(n=2))


# ------------------------------------------------------------------ cutout
def test_cutout_zeroes_exactly_one_square_inside_each_image(xp):
    n, size = 3000, 3
    x = np.ones((n, 2, 6, 7), np.float32)
    out = numpy_of(Cutout(size)(xp.asarray(x), np.random.default_rng(0)))
    assert out.dtype == np.float32
    cut = out == 0
    np.testing.assert_array_equal(cut[:, 0], cut[:, 1])  # same square in every channel
    assert np.all(cut.sum(axis=(2, 3)) == size * size)
    cut_rows, cut_cols = cut[:, 0].any(axis=2), cut[:, 0].any(axis=1)
    assert np.all(cut_rows.sum(axis=1) == size) and np.all(cut_cols.sum(axis=1) == size)
    tops, lefts = cut_rows.argmax(axis=1), cut_cols.argmax(axis=1)  # first cut row/col
    # size rows x size cols holding size**2 cut pixels: one solid square
    np.testing.assert_array_equal(np.bincount(tops, minlength=4) > 0, [True] * 4)
    np.testing.assert_array_equal(np.bincount(lefts, minlength=5) > 0, [True] * 5)
    assert tops.max() == 6 - size and lefts.max() == 7 - size


def test_cutout_fill_and_dtype(xp):
    x = images(n=20)
    out = Cutout(2, fill=255)(xp.asarray(x), np.random.default_rng(0))
    assert out.dtype == np.uint8
    changed = numpy_of(out) != x
    assert np.all(numpy_of(out)[changed] == 255)


# ------------------------------------------------------------------ composition
def test_compose_applies_in_order_and_forwards_set_batch(xp):
    x = images(n=6)
    flip = AlternatingFlip(6, seed=0)
    pipeline = Compose([flip, ToFloat(), Normalize(0.5, 0.25)])
    pipeline.set_batch(1, np.arange(6))
    out = pipeline(xp.asarray(x), np.random.default_rng(0))
    flip.set_batch(1, np.arange(6))
    expected = (flip(x).astype(np.float32) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(numpy_of(out), expected, rtol=1e-6)
    assert out.dtype == np.float32
    assert "AlternatingFlip" in repr(pipeline)


@pytest.mark.parametrize("transform", [
    RandomCrop(5, padding=2, padding_mode="reflect"), RandomTranslate(1),
    RandomHorizontalFlip(), Cutout(2),
])
def test_random_transforms_are_reproducible_and_leave_input_untouched(xp, transform):
    x = xp.asarray(images(n=16))
    before = numpy_of(x).copy()
    first = transform(x, np.random.default_rng(4))
    second = transform(x, np.random.default_rng(4))
    np.testing.assert_array_equal(numpy_of(first), numpy_of(second))
    np.testing.assert_array_equal(numpy_of(x), before)
    assert backend.get_array_module(first) is xp


def test_augmentation_pipeline_on_a_large_batch_keeps_float32():
    pipeline = Compose([RandomCrop(32, padding=4, padding_mode="reflect"),
                        RandomHorizontalFlip(), ToFloat(), Normalize((0.5,) * 3, (0.25,) * 3),
                        Cutout(8)])
    out = pipeline(images(n=256, h=32, w=32), np.random.default_rng(0))
    assert out.shape == (256, 3, 32, 32) and out.dtype == np.float32

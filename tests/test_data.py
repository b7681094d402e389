"""Data sets (idx / CIFAR-binary files written here), downloads, DataLoader, splits.

No network and no shared data: every file is built in ``tmp_path``; downloads come
from ``file://`` mirrors or a patched ``urlopen``.
"""
import dataclasses
import gzip
import hashlib
import io
import json
import struct
import tarfile
import urllib.error

import numpy as np
import pytest

import minidl
from minidl.data import (AlternatingFlip, Compose, Cutout, DataLoader, DatasetError,
                         RandomCrop, RandomHorizontalFlip, datasets, load_cifar10,
                         load_fashion_mnist, load_mnist, train_val_split)

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
N_TRAIN, N_TEST = 12, 5


# ------------------------------------------------------------------------- file builders
def idx_bytes(array):
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as file:
        file.write(payload)


def make_idx_dataset(folder, seed=0):
    """Four small idx files; returns the arrays they hold."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_gz(folder / name, idx_bytes(array))
    return arrays


CIFAR_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def cifar_records(rng, count):
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    return labels, images, np.concatenate([labels[:, None], images.reshape(count, -1)], 1)


def write_cifar_tar(path, members):
    """A tar.gz with ``cifar-10-batches-bin/<name>`` for each (name, bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def make_cifar_dataset(path, seed=0):
    rng = np.random.default_rng(seed)
    members, train, test = {}, [], None
    for name in CIFAR_BATCHES:
        labels, images, records = cifar_records(rng, 3 if name != "test_batch.bin" else 4)
        members[name] = records.tobytes()
        if name == "test_batch.bin":
            test = (images, labels)
        else:
            train.append((images, labels))
    members["batches.meta.txt"] = b"airplane\n"
    write_cifar_tar(path, members)
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return (x_train, y_train), test


# ------------------------------------------------------------------------- loading
@pytest.mark.parametrize("subfolder", ["", "mnist"])
def test_load_mnist_reads_idx_files_from_root_or_its_subfolder(tmp_path, subfolder):
    arrays = make_idx_dataset(tmp_path / subfolder)
    (x_train, y_train), (x_test, y_test) = load_mnist(root=tmp_path, download=False)
    assert x_train.shape == (N_TRAIN, 1, 28, 28) and x_test.shape == (N_TEST, 1, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train[:, 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(x_test[:, 0], arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert x_train.flags.writeable


def test_root_defaults_to_minidl_data_environment_variable(tmp_path, monkeypatch):
    arrays = make_idx_dataset(tmp_path / "fashion_mnist")
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path))
    (_, y_train), _ = load_fashion_mnist(download=False)
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte.gz"])
    assert datasets.data_root() == tmp_path


def test_load_cifar10_reads_binary_records_as_rgb_planes(tmp_path):
    (x_expected, y_expected), (xt_expected, yt_expected) = make_cifar_dataset(
        tmp_path / "cifar10" / "cifar-10-binary.tar.gz")
    (x_train, y_train), (x_test, y_test) = load_cifar10(root=tmp_path, download=False)
    assert x_train.shape == (15, 3, 32, 32) and x_test.shape == (4, 3, 32, 32)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train, x_expected)
    np.testing.assert_array_equal(y_train, y_expected)
    np.testing.assert_array_equal(x_test, xt_expected)
    np.testing.assert_array_equal(y_test, yt_expected)


def test_missing_files_without_download_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message
    assert all(name in message for name in IDX_NAMES)
    assert "MINIDL_DATA" in message


def test_missing_cifar_archive_names_the_binary_version(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-binary.tar.gz"):
        load_cifar10(root=tmp_path, download=False)


# ------------------------------------------------------------------------- damaged files
def _truncate(path):
    path.write_bytes(path.read_bytes()[:-40])


def _not_gzip(path):
    path.write_bytes(b"<html>404 Not Found</html>")


def _rewrite(name_payload):
    def edit(path):
        write_gz(path, name_payload)
    return edit


_IMAGES = np.zeros((N_TRAIN, 28, 28), np.uint8)


@pytest.mark.parametrize("filename, damage, problem", [
    ("train-images-idx3-ubyte.gz", _truncate, "cannot be decompressed"),
    ("t10k-labels-idx1-ubyte.gz", _not_gzip, "cannot be decompressed"),
    ("train-images-idx3-ubyte.gz", _rewrite(b"\x00\x00\x08"), "shorter than"),
    ("train-images-idx3-ubyte.gz",
     _rewrite(b"\x00\x00\x0d\x03" + idx_bytes(_IMAGES)[4:]), "magic number"),
    ("train-images-idx3-ubyte.gz", _rewrite(idx_bytes(_IMAGES[:, :27])), "shape (27, 28)"),
    ("train-images-idx3-ubyte.gz", _rewrite(idx_bytes(_IMAGES)[:-100]), "announces"),
    ("train-labels-idx1-ubyte.gz", _rewrite(idx_bytes(np.full(N_TRAIN, 10))), "label 10"),
    ("train-labels-idx1-ubyte.gz", _rewrite(idx_bytes(np.zeros(N_TRAIN - 1))), "11 labels"),
], ids=["truncated-gzip", "not-gzip", "short-header", "bad-magic", "bad-dims",
        "short-payload", "label-range", "count-mismatch"])
def test_damaged_idx_file_raises_naming_the_file_and_the_fix(tmp_path, filename, damage,
                                                              problem):
    make_idx_dataset(tmp_path)
    damage(tmp_path / filename)
    with pytest.raises(DatasetError) as info:
        load_mnist(root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / filename) in message
    assert problem in message
    assert "delete it" in message and "re-download" in message


def _cifar_members(seed=0):
    rng = np.random.default_rng(seed)
    return {name: cifar_records(rng, 2)[2].tobytes() for name in CIFAR_BATCHES}


def _without(name):
    members = _cifar_members()
    del members[name]
    return members


def _changed(name, payload):
    members = _cifar_members()
    members[name] = payload
    return members


_BAD_LABEL = np.zeros((2, 3073), np.uint8)
_BAD_LABEL[1, 0] = 10


@pytest.mark.parametrize("members, problem", [
    (_without("data_batch_3.bin"), "lacks data_batch_3.bin"),
    (_changed("test_batch.bin", b"\x01" * 3000), "not a positive multiple"),
    (_changed("data_batch_1.bin", _BAD_LABEL.tobytes()), "label 10"),
], ids=["missing-member", "bad-record-size", "label-range"])
def test_damaged_cifar_archive_raises_naming_the_file(tmp_path, members, problem):
    path = tmp_path / "cifar-10-binary.tar.gz"
    write_cifar_tar(path, members)
    with pytest.raises(DatasetError) as info:
        load_cifar10(root=tmp_path, download=False)
    assert str(path) in str(info.value) and problem in str(info.value)
    assert "delete it" in str(info.value)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.999])
def test_truncated_cifar_archive_raises_naming_the_file(tmp_path, keep_fraction):
    path = tmp_path / "cifar-10-binary.tar.gz"
    make_cifar_dataset(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])
    with pytest.raises(DatasetError, match="cannot be read as a tar.gz") as info:
        load_cifar10(root=tmp_path, download=False)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------- downloads
@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A file:// mirror holding small MNIST files, registered as the only MNIST mirror
    with the files' true SHA-256; no delays between retries."""
    server = tmp_path / "server"
    arrays = make_idx_dataset(server)
    files = {role: dataclasses.replace(remote, sha256=hashlib.sha256(
                 (server / remote.filename).read_bytes()).hexdigest())
             for role, remote in datasets.DATASETS["mnist"].files.items()}
    spec = dataclasses.replace(datasets.DATASETS["mnist"], mirrors=(server.as_uri() + "/",),
                               files=files)
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)
    monkeypatch.setattr(datasets, "RETRY_DELAY_S", 0.0)
    return spec, arrays


def test_download_fetches_verifies_and_places_files(tmp_path, mirror):
    _, arrays = mirror
    root = tmp_path / "root"
    (_, y_train), _ = load_mnist(root=root, download=True)
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte.gz"])
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(IDX_NAMES)


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path, mirror, monkeypatch):
    spec, _ = mirror
    bad = dict(spec.files, train_labels=dataclasses.replace(spec.files["train_labels"],
                                                            sha256="0" * 64))
    monkeypatch.setitem(datasets.DATASETS, "mnist", dataclasses.replace(spec, files=bad))
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as info:
        load_mnist(root=root, download=True)
    message = str(info.value)
    assert "SHA-256 mismatch" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(root / "mnist") in message  # and where to put the file by hand
    assert "train-labels-idx1-ubyte.gz" not in [p.name for p in (root / "mnist").iterdir()]
    assert not list((root / "mnist").glob("*.part"))


def test_download_falls_back_to_the_next_mirror(tmp_path, mirror, monkeypatch):
    spec, _ = mirror
    dead = (tmp_path / "no-such-mirror").as_uri() + "/"
    monkeypatch.setitem(datasets.DATASETS, "mnist",
                        dataclasses.replace(spec, mirrors=(dead,) + spec.mirrors))
    load_mnist(root=tmp_path / "root", download=True)
    assert len(list((tmp_path / "root" / "mnist").iterdir())) == 4


def test_network_errors_are_retried(tmp_path, mirror, monkeypatch):
    real_urlopen, calls = datasets.urlopen, []

    def flaky(request, timeout):
        calls.append(request.full_url)
        if len(calls) == 1:
            raise urllib.error.URLError("connection reset")
        return real_urlopen(request, timeout=timeout)

    monkeypatch.setattr(datasets, "urlopen", flaky)
    load_mnist(root=tmp_path / "root", download=True)
    assert len(calls) == 5 and calls[0] == calls[1]  # first file tried twice


def test_no_network_error_lists_attempts_and_where_to_put_files(tmp_path, mirror,
                                                                 monkeypatch):
    def offline(request, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(datasets, "urlopen", offline)
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as info:
        load_mnist(root=root, download=True)
    message = str(info.value)
    assert f"attempt {datasets.RETRIES_PER_MIRROR}/{datasets.RETRIES_PER_MIRROR}" in message
    assert "Name or service not known" in message
    assert f"into {root / 'mnist'}" in message and all(n in message for n in IDX_NAMES)


def test_interrupted_download_leaves_no_partial_file(tmp_path, mirror, monkeypatch):
    class DiesHalfway(io.BytesIO):
        headers = {"Content-Length": "2000000"}

        def read(self, size=-1):
            if self.tell() >= 1000:
                raise KeyboardInterrupt
            return super().read(1000)

    monkeypatch.setattr(datasets, "urlopen", lambda request, timeout: DiesHalfway(b"x" * 4000))
    root = tmp_path / "root"
    with pytest.raises(KeyboardInterrupt):
        load_mnist(root=root, download=True)
    assert list((root / "mnist").iterdir()) == []


def test_official_checksums_are_well_formed():
    for spec in datasets.DATASETS.values():
        assert spec.mirrors and all(m.endswith("/") for m in spec.mirrors)
        for remote in spec.files.values():
            assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0


# ------------------------------------------------------------------------- DataLoader
def make_arrays(n=10, shape=(1, 4, 4)):
    x = np.arange(n * int(np.prod(shape)), dtype=np.float32).reshape((n,) + shape)
    return x, np.arange(n, dtype=np.int64)


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (10, 4, False, [4, 4, 2]),
    (10, 4, True, [4, 4]),
    (8, 4, True, [4, 4]),
    (3, 5, False, [3]),
])
def test_batches_sizes_and_len(n, batch_size, drop_last, sizes):
    x, y = make_arrays(n)
    loader = DataLoader(x, y, batch_size, shuffle=True, drop_last=drop_last, seed=0)
    assert len(loader) == len(sizes)
    batches = list(loader)
    assert [len(xb) for xb, _ in batches] == sizes
    seen = np.concatenate([yb for _, yb in batches])
    assert len(np.unique(seen)) == len(seen)  # no sample twice in an epoch
    for xb, yb in batches:  # x and y stay paired
        np.testing.assert_array_equal(xb, x[yb])


def test_without_shuffle_order_is_the_data_order():
    x, y = make_arrays(10)
    loader = DataLoader(x, y, 3, shuffle=False)
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate([yb for _, yb in loader]), y)


def test_shuffle_is_reproducible_by_seed_and_changes_between_epochs():
    x, y = make_arrays(50)

    def orders(seed):
        loader = DataLoader(x, y, 7, seed=seed)
        return [np.concatenate([yb for _, yb in loader]) for _ in range(2)]

    first, again, other = orders(3), orders(3), orders(4)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])
    np.testing.assert_array_equal(np.sort(first[1]), y)


def test_seed_none_follows_minidl_seed():
    x, y = make_arrays(30)
    minidl.seed(5)
    first = np.concatenate([yb for _, yb in DataLoader(x, y, 4)])
    minidl.seed(5)
    second = np.concatenate([yb for _, yb in DataLoader(x, y, 4)])
    np.testing.assert_array_equal(first, second)


def augmenting_loader(x, y, seed):
    augment = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip(), Cutout(2)])
    return DataLoader(x, y, 3, transform=augment, seed=seed)


def drain(iterator):
    return [(xb.copy(), yb.copy()) for xb, yb in iterator]


def assert_same_batches(expected, actual):
    assert len(expected) == len(actual)
    for (xe, ye), (xa, ya) in zip(expected, actual):
        np.testing.assert_array_equal(ye, ya)
        np.testing.assert_array_equal(xe, xa)


@pytest.mark.parametrize("batches_done", [0, 2, 4])
def test_state_dict_resume_gives_the_same_order_and_augmentations(batches_done):
    x, y = make_arrays(11)
    original = augmenting_loader(x, y, seed=1)
    drain(original)  # one full epoch first, so the epoch counter matters too
    iterator = iter(original)
    for _ in range(batches_done):
        next(iterator)
    state = json.loads(json.dumps(original.state_dict()))  # must survive JSON
    expected = drain(iterator) + drain(original)  # rest of this epoch, then the next

    resumed = augmenting_loader(x, y, seed=99)
    resumed.load_state_dict(state)
    actual = drain(resumed) + drain(resumed)
    assert_same_batches(expected, actual)
    assert resumed.epoch == original.epoch == 3


def test_state_dict_between_epochs_resumes_with_the_next_epoch():
    x, y = make_arrays(9)
    original = augmenting_loader(x, y, seed=2)
    drain(original)
    state = original.state_dict()
    assert state["in_epoch"] is False and state["epoch"] == 1
    expected = drain(original)
    resumed = augmenting_loader(x, y, seed=3)
    resumed.load_state_dict(state)
    assert_same_batches(expected, drain(resumed))


def test_abandoned_epoch_counts_and_a_new_iteration_starts_afresh():
    x, y = make_arrays(9)
    loader = DataLoader(x, y, 3, seed=0)
    next(iter(loader))
    assert len(drain(loader)) == 3 and loader.epoch == 2


def test_load_state_dict_rejects_a_foreign_state():
    x, y = make_arrays(9)
    loader = DataLoader(x, y, 3, seed=0)
    with pytest.raises(ValueError, match="DataLoader.load_state_dict: expected keys"):
        loader.load_state_dict({"epoch": 0})
    state = DataLoader(*make_arrays(90), 3, seed=0).state_dict()
    state.update(in_epoch=True, batch=20)
    with pytest.raises(ValueError, match="batch 20 is out of range for 3 batches"):
        loader.load_state_dict(state)


def test_loader_drives_alternating_flip_through_its_epoch_counter():
    x = np.random.default_rng(0).integers(0, 256, (20, 1, 3, 5), dtype=np.uint8)
    y = np.arange(20)
    flip = AlternatingFlip(len(x), seed=0)
    loader = DataLoader(x, y, 6, transform=flip, seed=0)
    flipped_per_epoch = []
    for _ in range(3):
        flipped = np.zeros(len(x), bool)
        for xb, yb in loader:
            mirrored = np.all(xb == x[yb][..., ::-1], axis=(1, 2, 3))
            assert np.all(mirrored | np.all(xb == x[yb], axis=(1, 2, 3)))
            flipped[yb] = mirrored
        flipped_per_epoch.append(flipped)
    np.testing.assert_array_equal(flipped_per_epoch[1], ~flipped_per_epoch[0])
    np.testing.assert_array_equal(flipped_per_epoch[2], flipped_per_epoch[0])
    assert 0 < flipped_per_epoch[0].sum() < len(x)


def test_loader_keeps_batches_on_the_data_backend_and_applies_device(xp):
    x, y = make_arrays(8)
    on_backend = DataLoader(xp.asarray(x), xp.asarray(y), 4, seed=0,
                            transform=lambda xb, rng: xb * 2)
    xb, yb = next(iter(on_backend))
    assert minidl.get_array_module(xb) is xp and minidl.get_array_module(yb) is xp
    moved = DataLoader(xp.asarray(x), xp.asarray(y), 4, seed=0, device="cpu")
    xb, yb = next(iter(moved))
    assert isinstance(xb, np.ndarray) and isinstance(yb, np.ndarray)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(x=np.zeros((4, 1)), y=np.zeros(3), batch_size=2), ValueError, "same number"),
    (dict(x=np.zeros((0, 1)), y=np.zeros(0), batch_size=2), ValueError, "empty"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=0), ValueError, "positive integer"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=2.5), TypeError,
     r"batch_size must be a positive integer, got 2.5 \(float\)"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=True), TypeError,
     r"batch_size must be a positive integer, got True \(bool\)"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=5, drop_last=True), ValueError,
     "leaves no batch"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=2, transform=3), TypeError,
     "callable"),
    (dict(x=None, y=np.zeros(4), batch_size=2), TypeError,
     r"x must be an array of shape \(N, ...\), got None"),
    (dict(x=np.zeros((4, 1)), y=[0, 1, 2, 3], batch_size=2), TypeError, "y must be an array"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=2, seed=""), TypeError,
     "seed must be a non-negative integer, got ''"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=2, seed=-1), ValueError,
     "seed must be a non-negative integer"),
    (dict(x=np.zeros((4, 1)), y=np.zeros(4), batch_size=2, shuffle="yes"), TypeError,
     "shuffle must be True or False"),
])
def test_loader_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=f"DataLoader: .*{message}"):
        DataLoader(**kwargs)


# ------------------------------------------------------------------------- splitting
def test_train_val_split_sizes_disjoint_and_deterministic():
    x, y = make_arrays(50)
    (x_train, y_train), (x_val, y_val) = train_val_split(x, y, 0.2, seed=0)
    assert len(y_val) == 10 and len(y_train) == 40
    assert set(y_train).isdisjoint(y_val) and set(y_train) | set(y_val) == set(y)
    np.testing.assert_array_equal(x_val, x[y_val])
    assert np.all(np.diff(y_train) > 0)  # original relative order kept
    (_, again), (_, again_val) = train_val_split(x, y, 0.2, seed=0)
    np.testing.assert_array_equal(again_val, y_val)
    (_, _), (_, other_val) = train_val_split(x, y, 0.2, seed=1)
    assert not np.array_equal(other_val, y_val)


@pytest.mark.parametrize("n, fraction, message", [
    (10, 0.0, r"val_fraction must be a real number in \(0, 1\), got 0.0"),
    (10, 1.0, r"in \(0, 1\)"), (10, float("nan"), r"in \(0, 1\), got nan"),
    (10, 0.01, "empty split"), (10, 0.99, "empty split"),
])
def test_train_val_split_rejects_bad_fractions(n, fraction, message):
    x, y = make_arrays(n)
    with pytest.raises(ValueError, match=f"train_val_split: .*{message}"):
        train_val_split(x, y, fraction, seed=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(val_fraction=True), r"val_fraction must be a real number .* got True \(bool\)"),
    (dict(val_fraction="0.2"), "val_fraction must be a real number"),
    (dict(val_fraction=0.2, seed=""), "seed must be a non-negative integer"),
])
def test_train_val_split_refuses_wrong_types(kwargs, message):
    x, y = make_arrays(10)
    with pytest.raises(TypeError, match=f"train_val_split: {message}"):
        train_val_split(x, y, **kwargs)
    with pytest.raises(TypeError, match="train_val_split: x must be an array"):
        train_val_split(None, y, 0.2)


def test_loader_and_split_accept_numpy_scalars():
    x, y = make_arrays(10)
    loader = DataLoader(x, y, np.int64(4), seed=np.int64(3))
    assert loader.batch_size == 4 and type(loader.batch_size) is int and len(loader) == 3
    (train, _), (val, _) = train_val_split(x, y, np.float32(0.2), seed=np.int32(0))
    assert (len(train), len(val)) == (8, 2)


def test_state_after_a_peek_resumes_like_the_original():
    """Peeking one batch abandons that epoch: the saved state is the next epoch's start."""
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    original = DataLoader(x, y, batch_size=4, shuffle=True, seed=5)
    next(iter(original))  # a peek, as a student checking shapes would do
    state = json.loads(json.dumps(original.state_dict()))
    restored = DataLoader(x, y, batch_size=4, shuffle=True, seed=99)
    restored.load_state_dict(state)
    first, second = list(original), list(restored)
    assert len(first) == len(second) == 5
    for (xa, ya), (xb, yb) in zip(first, second):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert original.epoch == restored.epoch == 2


@pytest.mark.parametrize("call, message", [
    (lambda root: load_mnist(root, download="no"), "load_mnist: download must be True or False"),
    (lambda root: load_cifar10(5), r"load_cifar10: root must be a folder .* got 5 \(int\)"),
    (lambda root: load_fashion_mnist(root, download=0), "load_fashion_mnist: download must be"),
])
def test_loaders_refuse_wrong_argument_types(tmp_path, call, message):
    with pytest.raises(TypeError, match=message):
        call(tmp_path)

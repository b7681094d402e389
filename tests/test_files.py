"""Files: nothing that needs pickle is written, and every damaged file is a clear error.

The damaged files are made here: a small checkpoint, gzip and tar.gz files written by
the test, then single bytes flipped or zip header fields forged. The rule for every
damage: the loader raises CheckpointError/DatasetError naming the file, or (the byte
was in a field nothing depends on, such as a timestamp) returns exactly the original.
"""
import gzip
import io
import struct
import tarfile
import warnings

import numpy as np
import pytest

import minidl
from minidl import Param, layers as L, optim
from minidl.data import datasets
from minidl.train import CheckpointError, load_checkpoint, load_weights, save_checkpoint, \
    save_weights


def mlp():
    return L.Sequential(L.Linear(4, 5), L.ReLU(), L.Linear(5, 3))


# ---------------------------------------------------------------- what is never written
@pytest.mark.parametrize("value", [
    np.array([1, None], dtype=object),
    np.array([1 + 2j, 3j]),
    np.complex64(1j),
    {"nested": [np.zeros(2, np.complex128)]},
], ids=["object", "complex", "complex-scalar", "nested-complex"])
def test_save_checkpoint_refuses_object_and_complex_arrays(tmp_path, value):
    path = tmp_path / "run.npz"
    with pytest.raises(TypeError, match="save_checkpoint: cannot store an array of"):
        save_checkpoint(path, mlp(), extra={"x": value})
    assert not path.exists() and not list(tmp_path.iterdir())  # no temp file left either


def test_save_weights_refuses_a_complex_parameter(tmp_path):
    model = mlp()
    model[0].bias = Param(np.zeros(5, np.complex64))
    for save in (save_weights, lambda p, m: save_checkpoint(p, m)):
        with pytest.raises(TypeError, match="cannot store an array of complex numbers.*bias"):
            save(tmp_path / "w.npz", model)
    assert not list(tmp_path.iterdir())


def test_a_pickled_member_is_never_read(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"model/0.weight": np.array([1, None], dtype=object)})
    with pytest.raises(CheckpointError, match="evil.npz"):
        load_weights(path, mlp())


# ---------------------------------------------------------------- damaged checkpoints
@pytest.fixture
def checkpoint(tmp_path):
    minidl.seed(0)
    model = mlp()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    path = tmp_path / "run.npz"
    save_checkpoint(path, model, optimizer, epoch=3, extra={"note": np.arange(3.0)})
    return path, model


def _central_directory_offsets(data):
    """Offsets of every central-directory header (signature PK\\x01\\x02) in a zip."""
    offsets, start = [], 0
    while (found := data.find(b"PK\x01\x02", start)) >= 0:
        offsets.append(found)
        start = found + 4
    return offsets


def _forge(path, field_offset, value):
    """Set a 2-byte field of every central-directory header of the zip at ``path``."""
    data = bytearray(path.read_bytes())
    for offset in _central_directory_offsets(data):
        data[offset + field_offset:offset + field_offset + 2] = struct.pack("<H", value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("field, value, words", [
    (6, 0x00FF, "NotImplementedError"),   # "version needed to extract" byte far too high
    (8, 0x0001, "encrypted"),             # general purpose flag: encrypted
    (10, 99, "NotImplementedError"),      # unknown compression method
])
def test_forged_zip_header_is_a_checkpoint_error_naming_the_file(checkpoint, field, value,
                                                                  words):
    path, _ = checkpoint
    _forge(path, field, value)
    for load in (lambda: load_checkpoint(path, mlp(), restore_rng=False),
                 lambda: load_weights(path, mlp())):
        with pytest.raises(CheckpointError, match=words) as info:
            load()
        assert str(path) in str(info.value) and "corrupt" in str(info.value)


def test_every_flipped_byte_of_a_checkpoint_is_caught_or_harmless(checkpoint):
    path, saved_model = checkpoint
    data = path.read_bytes()
    outcomes = {"error": 0, "same": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unclosed file would be a ResourceWarning
        for position in range(0, len(data), 3):
            damaged = bytearray(data)
            damaged[position] ^= 0x81
            path.write_bytes(bytes(damaged))
            model = mlp()
            try:
                result = load_checkpoint(path, model, optim.Adam(model.parameters()),
                                         restore_rng=False)
            except CheckpointError as error:
                assert str(path) in str(error)
                outcomes["error"] += 1
                continue
            assert result["epoch"] == 3
            np.testing.assert_array_equal(result["extra"]["note"], np.arange(3.0))
            for key, value in saved_model.state_dict().items():
                np.testing.assert_array_equal(model.state_dict()[key], value)
            outcomes["same"] += 1
    assert outcomes["error"] > outcomes["same"] > 0  # zip timestamps and the like are free


# ---------------------------------------------------------------- damaged data files
def _idx_gzip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    payload = bytes((0, 0, 8, 3)) + struct.pack(">3I", 3, 28, 28) + images.tobytes()
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as file:
        file.write(payload)
    return path, images


def test_gzip_crc_and_length_are_checked(tmp_path):
    path, images = _idx_gzip(tmp_path)
    data = path.read_bytes()
    caught = same = 0
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path.write_bytes(bytes(damaged))
        try:
            loaded = datasets._read_idx(path, ndim=3, item_shape=(28, 28))
        except datasets.DatasetError as error:
            assert str(path) in str(error)
            caught += 1
            continue
        np.testing.assert_array_equal(loaded, images)  # e.g. the gzip header's mtime
        same += 1
    assert caught > 0.9 * len(data)
    # the last 8 bytes are the CRC-32 and the length: a flip in either is caught
    for position in range(len(data) - 8, len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(datasets.DatasetError, match="cannot be decompressed"):
            datasets._read_idx(path, ndim=3, item_shape=(28, 28))


def _cifar_archive(tmp_path, sizes=None):
    """A tiny cifar-10-binary.tar.gz: one record per batch file (random pixels).

    ``sizes``: member name -> the size its tar header announces (default: the truth).
    """
    rng = np.random.default_rng(1)
    members = {}
    for name in datasets._CIFAR_BATCHES:
        record = np.concatenate([rng.integers(0, 10, 1), rng.integers(0, 256, 3072)])
        members[name] = record.astype(np.uint8).tobytes()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    raw = tar_bytes.getvalue()
    for name, size in (sizes or {}).items():  # rewrite the size field, fix the checksum
        header = raw.index(f"cifar-10-batches-bin/{name}".encode())
        block = bytearray(raw[header:header + 512])
        block[124:136] = f"{size:011o}\0".encode()
        block[148:156] = b" " * 8
        block[148:156] = f"{sum(block):06o}\0 ".encode()
        raw = raw[:header] + bytes(block) + raw[header + 512:]
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(gzip.compress(raw))
    return path


def test_cifar_flipped_bytes_are_caught_or_harmless(tmp_path):
    path = _cifar_archive(tmp_path)
    original = datasets._read_cifar10_archive(path)
    data = path.read_bytes()
    caught = 0
    positions = list(range(0, 40)) + list(range(40, len(data), 97)) + \
        list(range(len(data) - 12, len(data)))
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x04
        path.write_bytes(bytes(damaged))
        try:
            loaded = datasets._read_cifar10_archive(path)
        except datasets.DatasetError as error:
            assert str(path) in str(error)
            caught += 1
            continue
        for (x, y), (x0, y0) in zip(loaded, original):
            np.testing.assert_array_equal(x, x0)
            np.testing.assert_array_equal(y, y0)
    assert caught > 0.8 * len(positions)


def test_cifar_member_size_beyond_the_archive_is_caught(tmp_path):
    path = _cifar_archive(tmp_path, sizes={"test_batch.bin": 10 * 3073})
    with pytest.raises(datasets.DatasetError) as info:
        datasets._read_cifar10_archive(path)
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_cifar_member_size_not_a_record_multiple_is_caught(tmp_path):
    path = _cifar_archive(tmp_path, sizes={"data_batch_3.bin": 3000})
    with pytest.raises(datasets.DatasetError, match=str(path)):
        datasets._read_cifar10_archive(path)

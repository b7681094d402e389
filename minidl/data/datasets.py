"""MNIST, Fashion-MNIST and CIFAR-10 from their canonical files, downloaded if needed.

Every loader returns ``(x_train, y_train), (x_test, y_test)``: images as uint8
``(N, C, H, W)`` (NCHW, values 0..255) and labels as int64 ``(N,)``.

Where files are looked for (the *root*): the ``root`` argument, else the environment
variable ``MINIDL_DATA``, else ``~/.cache/minidl``. A file is accepted directly in the
root or in ``root/<dataset name>/`` (``mnist``, ``fashion_mnist``, ``cifar10``);
downloads go to the latter.

Only the canonical files are read:

* MNIST and Fashion-MNIST: the four gzipped idx files ``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz``;
* CIFAR-10: the *binary version* ``cifar-10-binary.tar.gz`` (records of 1 label byte
  + 3072 pixel bytes), read with :mod:`tarfile` and NumPy. The "python version" of
  CIFAR-10 is a pickle and is never read: unpickling a downloaded file can run code.

Downloads try each mirror in turn, retry network errors, show a progress bar, check
the SHA-256 of the archive against the official value, and write to a temporary
name that is renamed into place only when complete, so an interrupted or failed
download never leaves a partial file behind.

Local files are validated by structure - idx magic number, dimensions, payload size,
label range; CIFAR record size - rather than by checksum, so a lossless re-encoding of
the same data (a different gzip stream) is accepted. A damaged file raises
:class:`DatasetError` naming the file and how to fix it.
"""
import gzip
import hashlib
import os
import posixpath
import struct
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

import numpy as np
from tqdm import tqdm  # plain bars: tqdm.auto in a notebook wants ipywidgets

from .. import checks

# Per-channel statistics of the training sets, in [0, 1] units, for Normalize.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

# Network behaviour; module attributes so tests (and impatient users) can change them.
RETRIES_PER_MIRROR = 3
RETRY_DELAY_S = 2.0  # doubled after every failed attempt on the same mirror
TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


class DatasetError(RuntimeError):
    """A data set file is damaged or incomplete, or could not be downloaded."""


@dataclass(frozen=True)
class RemoteFile:
    """One canonical file: its name and the SHA-256 of the official archive."""
    filename: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set's files come from and how they are called."""
    name: str          # folder under the root, e.g. "mnist"
    loader: str        # public function name, for messages
    mirrors: tuple     # base URLs ending in "/", tried in order
    files: dict        # role -> RemoteFile


# SHA-256 of the official archives (the values TensorFlow Datasets, torchvision and
# others verify; the data sets' own pages publish only MD5s).
_IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(*sha256s):
    """The four idx files, given their SHA-256s in the order of ``_IDX_NAMES``."""
    return {role: RemoteFile(name, sha256)
            for role, name, sha256 in zip(_IDX_ROLES, _IDX_NAMES, sha256s)}


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist", loader="load_mnist",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        files=_idx_files("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist", loader="load_fashion_mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                 "data/fashion/"),
        files=_idx_files("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                         "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5")),
    "cifar10": DatasetSpec(
        name="cifar10", loader="load_cifar10",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files={"archive": RemoteFile(
            "cifar-10-binary.tar.gz",
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd")}),
}


# ---------------------------------------------------------------------- public loaders
def load_mnist(root=None, download=True):
    """MNIST digits: ``(x_train, y_train), (x_test, y_test)``.

    x: uint8 ``(N, 1, 28, 28)`` (60000 train, 10000 test), y: int64 ``(N,)`` in 0..9.
    """
    return _load_idx_dataset(DATASETS["mnist"], root, download)


def load_fashion_mnist(root=None, download=True):
    """Fashion-MNIST (Zalando): same layout as :func:`load_mnist`, classes in
    ``FASHION_MNIST_CLASSES``."""
    return _load_idx_dataset(DATASETS["fashion_mnist"], root, download)


def load_cifar10(root=None, download=True):
    """CIFAR-10 from ``cifar-10-binary.tar.gz``: ``(x_train, y_train), (x_test, y_test)``.

    x: uint8 ``(N, 3, 32, 32)`` RGB (50000 train from data_batch_1..5 in order, 10000
    test), y: int64 ``(N,)`` in 0..9, names in ``CIFAR10_CLASSES``.
    """
    spec = DATASETS["cifar10"]
    path = _locate(spec, root, download)["archive"]
    return _read_cifar10_archive(path)


def data_root(root=None):
    """The folder data sets live in: ``root``, else ``$MINIDL_DATA``, else ~/.cache/minidl."""
    _check_root(root, "data_root")
    if root is None:
        root = os.environ.get("MINIDL_DATA") or Path.home() / ".cache" / "minidl"
    return Path(root).expanduser()


def _check_root(root, owner):
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{owner}: root must be a folder (a str or os.PathLike) or None, "
                        f"got {checks.describe(root)}")


# ---------------------------------------------------------------------- locating files
def _locate(spec, root, download):
    """Path of every file of ``spec``, downloading the missing ones if allowed."""
    checks.boolean(download, "download", spec.loader)
    _check_root(root, spec.loader)
    root = data_root(root)
    found, missing = {}, []
    for role, remote in spec.files.items():
        for candidate in (root / remote.filename, root / spec.name / remote.filename):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(role)
    if not missing:
        return found
    if not download:
        raise FileNotFoundError(_where_to_put(spec, root, missing,
                                              "and download=False was given"))
    failures = []
    for role in missing:
        remote = spec.files[role]
        try:
            found[role] = _download(remote, spec.mirrors, root / spec.name)
        except DatasetError as error:
            failures.append(str(error))
    if failures:
        raise DatasetError("\n".join(failures) + "\n\n"
                           + _where_to_put(spec, root, [r for r in missing if r not in found],
                                           "and the download failed"))
    return found


def _where_to_put(spec, root, roles, reason):
    files = [spec.files[role].filename for role in roles]
    sources = "\n".join(f"  {spec.mirrors[0]}{name}" for name in files)
    return (f"{spec.loader}: {', '.join(files)} not found in {root} or {root / spec.name} "
            f"({reason}). Put the file(s), unchanged (still compressed), into "
            f"{root / spec.name}/ - they can be fetched from\n{sources}\n"
            f"or call {spec.loader}(download=True) on a machine with network access. "
            f"The folder is chosen by {spec.loader}(root=...), else the MINIDL_DATA "
            "environment variable, else ~/.cache/minidl.")


# ---------------------------------------------------------------------- downloading
def _download(remote, mirrors, folder):
    """Fetch ``remote`` into ``folder`` from the first mirror that serves it intact.

    Network errors are retried (with growing delays); a checksum mismatch moves on to
    the next mirror at once, since that mirror serves a different file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    destination = folder / remote.filename
    problems = []
    for mirror in mirrors:
        url = mirror + remote.filename
        delay = RETRY_DELAY_S
        for attempt in range(1, RETRIES_PER_MIRROR + 1):
            try:
                _fetch_verified(url, remote.sha256, destination)
                return destination
            except _ChecksumMismatch as error:
                problems.append(f"  {url}: {error}")
                break
            except (OSError, EOFError) as error:  # URLError, timeouts, resets are OSErrors
                problems.append(f"  {url} (attempt {attempt}/{RETRIES_PER_MIRROR}): {error}")
                if attempt < RETRIES_PER_MIRROR:
                    time.sleep(delay)
                    delay *= 2
    raise DatasetError(f"could not download {remote.filename}; tried:\n" + "\n".join(problems))


class _ChecksumMismatch(Exception):
    pass


def _fetch_verified(url, sha256, destination):
    """Stream ``url`` to a temporary file beside ``destination``, hashing as it goes;
    rename it into place only if the SHA-256 matches. The temporary file is removed on
    any failure, including KeyboardInterrupt."""
    handle, temporary = tempfile.mkstemp(dir=destination.parent,
                                         prefix=f".{destination.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        request = Request(url, headers={"User-Agent": "minidl"})  # some mirrors refuse urllib's
        with os.fdopen(handle, "wb") as out, urlopen(request, timeout=TIMEOUT_S) as response:
            size = response.headers.get("Content-Length")
            with tqdm(total=int(size) if size else None, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=destination.name, disable=None) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise _ChecksumMismatch(f"SHA-256 mismatch: expected {sha256}, "
                                    f"got {digest.hexdigest()}; file discarded")
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


# ---------------------------------------------------------------------- reading files
def _corrupt(path, problem):
    return DatasetError(f"{path}: {problem}. The file is damaged or incomplete (an "
                        "interrupted copy?): delete it and run again to re-download it, "
                        "or replace it with a fresh copy of the original file.")


def _load_idx_dataset(spec, root, download):
    paths = _locate(spec, root, download)
    splits = []
    for split in ("train", "test"):
        images = _read_idx(paths[f"{split}_images"], ndim=3, item_shape=(28, 28))
        labels = _read_idx(paths[f"{split}_labels"], ndim=1, item_shape=())
        if len(images) != len(labels):
            raise _corrupt(paths[f"{split}_labels"],
                           f"holds {len(labels)} labels but {paths[f'{split}_images'].name} "
                           f"holds {len(images)} images")
        _check_labels(paths[f"{split}_labels"], labels)
        splits.append((images[:, None], labels.astype(np.int64)))
    return tuple(splits)


def _read_idx(path, ndim, item_shape):
    """An idx file of unsigned bytes (LeCun's format) as an array of shape ``dims``.

    Header: two zero bytes, the type code 0x08 (uint8), the number of dimensions, then
    each dimension as a big-endian uint32; the payload is ``prod(dims)`` bytes.
    """
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error, ValueError) as error:  # gzip checks the CRC at EOF
        raise _corrupt(path, f"cannot be decompressed as gzip ({type(error).__name__}: "
                             f"{error})") from None
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise _corrupt(path, f"is {len(data)} bytes after decompression, shorter than "
                             f"the {header_bytes}-byte idx header")
    magic = data[:4]
    if magic != bytes((0, 0, 0x08, ndim)):
        raise _corrupt(path, f"has idx magic number 0x{magic.hex()}, expected "
                             f"0x000008{ndim:02x} (unsigned bytes, {ndim} dimension(s))")
    dims = struct.unpack(f">{ndim}I", data[4:header_bytes])
    if tuple(dims[1:]) != item_shape:
        raise _corrupt(path, f"has items of shape {tuple(dims[1:])}, expected {item_shape}")
    expected = int(np.prod(dims))
    if len(data) - header_bytes != expected:
        raise _corrupt(path, f"holds {len(data) - header_bytes} data bytes, but its header "
                             f"{dims} announces {expected}")
    # copy() gives a writable array that does not keep the decompressed bytes alive.
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(dims).copy()


def _check_labels(path, labels, num_classes=10):
    if len(labels) and labels.max() >= num_classes:
        raise _corrupt(path, f"holds label {int(labels.max())}, expected 0..{num_classes - 1}")


_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


def _read_cifar10_archive(path):
    """Read the six batch files out of the tar.gz in memory (nothing is extracted).

    The gzip stream is read to its end, so that gzip checks its CRC-32 and length
    trailer (tarfile alone stops at the end-of-archive block and never reads it), and
    every member must hold as many bytes as its header announces.
    """
    contents = {}
    try:
        with gzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r:") as archive:
            for member in archive:
                name = posixpath.basename(member.name)
                if member.isfile() and name in _CIFAR_BATCHES:
                    contents[name] = archive.extractfile(member).read()
                    if len(contents[name]) != member.size:
                        raise _corrupt(path, f"member {name} holds {len(contents[name])} "
                                             f"bytes, its header announces {member.size}")
            while stream.read(_CHUNK_BYTES):  # to the end: checks the CRC and length
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, struct.error) as error:
        raise _corrupt(path, f"cannot be read as a tar.gz archive ({type(error).__name__}: "
                             f"{error})") from None
    absent = [name for name in _CIFAR_BATCHES if name not in contents]
    if absent:
        raise _corrupt(path, f"lacks {', '.join(absent)} (expected cifar-10-batches-bin/ "
                             "with data_batch_1..5.bin and test_batch.bin - the binary "
                             "version of CIFAR-10, not the python or matlab one)")
    splits = {"train": [], "test": []}
    for name in _CIFAR_BATCHES:
        raw = contents[name]
        if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
            raise _corrupt(path, f"member {name} is {len(raw)} bytes, not a positive "
                                 f"multiple of the {_CIFAR_RECORD}-byte record")
        records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
        labels = records[:, 0].astype(np.int64)
        if labels.max() >= 10:
            raise _corrupt(path, f"member {name} holds label {int(labels.max())}, "
                                 "expected 0..9")
        images = records[:, 1:].reshape(-1, 3, 32, 32)  # R, G, B planes, row-major
        splits["test" if name == "test_batch.bin" else "train"].append((images, labels))
    return tuple((np.concatenate([images for images, _ in parts]),
                  np.concatenate([labels for _, labels in parts]))
                 for parts in (splits["train"], splits["test"]))


__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "DatasetError",
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "MNIST_CLASSES",
    "MNIST_MEAN", "MNIST_STD", "data_root", "load_cifar10", "load_fashion_mnist",
    "load_mnist",
]

"""Shared plumbing of the CIFAR-10 examples: CLI, data, normalisation, outputs.

Every CIFAR script accepts the flags of :func:`common.parser` (``--epochs --batch-size
--lr --data-dir --device --seed --out --smoke --quiet``) plus ``--subset N`` (train on N
images) and ``--test-subset M`` (evaluate on M test images), so that a short run on this
2-core CPU finishes in minutes. ``--smoke`` replaces CIFAR-10 by small synthetic
CIFAR-shaped data (for the test suite): nothing is downloaded and nothing is read.

Images stay ``uint8`` until they are batched (a quarter of float32's memory): the data
set is put on the device once, and per batch :func:`normalize` scales it to [0, 1] and
standardises each channel with the CIFAR-10 training-set mean and std, then the random
augmentations run, all on the device.

Outputs of a run named ``NAME`` in ``--out``: ``NAME_history.json``, ``NAME_history.csv``,
``NAME_curves.png`` (loss, top-1 and top-5 accuracy per epoch), ``NAME_result.json`` and
``NAME_result.txt`` (one line: test top-1 and top-5, epochs, seconds, device), and
``NAME_weights.npz`` (for ``visualize.py --weights``).
"""
import os
import time

import numpy as np

import common
import minidl
from minidl import data, layers, losses
from minidl import distributed as dist
from minidl.train import Trainer, save_weights

CLASSES = data.CIFAR10_CLASSES
#: Per-channel mean and std of the 50,000 CIFAR-10 training images, pixel values in [0, 1].
MEAN, STD = data.CIFAR10_MEAN, data.CIFAR10_STD


def parser(description, epochs, batch_size, lr, out, distributed=False):
    """The shared CLI (see :func:`common.parser`) plus the CIFAR subset flags."""
    p = common.parser(description, epochs=epochs, batch_size=batch_size, lr=lr, out=out,
                      distributed=distributed)
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="train on N randomly chosen training images (default: all)")
    p.add_argument("--test-subset", type=int, default=None, metavar="M",
                   help="evaluate on M randomly chosen test images (default: all 10,000)")
    return p


def setup(args):
    """Seed, select the device, create the output folder (see :func:`common.setup`)."""
    for flag in ("subset", "test_subset"):
        value = getattr(args, flag, None)
        if value is not None and value <= 0:
            raise SystemExit(f"--{flag.replace('_', '-')} must be a positive number of images, "
                             f"got {value}")
    common.setup(args)


def synthetic_cifar10(n_train=256, n_test=128, seed=0):
    """CIFAR-shaped data a small net starts to learn in a few steps: uint8 (N, 3, 32, 32),
    int64 labels (N,).

    Each class has its own colour, painted with noise into a centred 16x16 square of a
    noisy background; the class survives random crops (up to 8 px) and horizontal flips,
    so the augmentations of the real recipes can run unchanged on it.
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 256, size=(10, 3))

    def make(n):
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 80, size=(n, 3, 32, 32))
        square = palette[labels][:, :, None, None] - rng.integers(0, 40, size=(n, 3, 16, 16))
        images[:, :, 8:24, 8:24] = np.clip(square, 0, 255)
        return images.astype(np.uint8), labels.astype(np.int64)

    return make(n_train), make(n_test)


def _random_subset(x, y, size, seed):
    if size is None or size >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:size])
    return x[keep], y[keep]


def cifar10_splits(args, val_size=5000, smoke_sizes=(128, 64)):
    """(train, val, test) as ``(uint8 (N, 3, 32, 32), int64 (N,))`` pairs; val may be None.

    ``val_size`` images of the training set (a fixed seeded split) become the validation
    set that early stopping / ReduceLROnPlateau watch; 0 trains on all of it. ``--subset``
    then thins the rest, ``--test-subset`` the test set; the test images only give the
    final numbers. ``--smoke``: synthetic data of ``smoke_sizes`` (train, test) images.
    """
    if args.smoke:
        (x_train, y_train), (x_test, y_test) = synthetic_cifar10(*smoke_sizes, seed=args.seed)
        val_size = min(val_size, smoke_sizes[0] // 4)
    else:
        (x_train, y_train), (x_test, y_test) = common.load_dataset("cifar10", args)
    val = None
    if val_size:
        (x_train, y_train), val = data.train_val_split(
            x_train, y_train, val_fraction=val_size / len(x_train), seed=args.seed)
    train = _random_subset(x_train, y_train, args.subset, args.seed)
    test = _random_subset(x_test, y_test, args.test_subset, args.seed + 1)
    # What the result line reports (see data_description).
    args.split_sizes = (len(train[0]), 0 if val is None else len(val[0]), len(test[0]))
    return train, val, test


def normalize():
    """uint8 batch -> float32 in [0, 1] -> per-channel ``(x - MEAN) / STD``."""
    return data.Compose([data.ToFloat(), data.Normalize(MEAN, STD)])


def normalize_array(x):
    """The whole uint8 array ``x`` (N, 3, H, W), normalised like :func:`normalize` (float32)."""
    return normalize()(x, np.random.default_rng(0))


def standard_augmentation(padding=4, cutout=0):
    """The usual CIFAR training transform: normalise, random 32x32 crop of the image padded
    by ``padding`` px (reflect), horizontal flip with probability 1/2, and optionally a
    ``cutout``-px square of zeros (zero = the mean colour after normalisation)."""
    steps = [data.ToFloat(), data.Normalize(MEAN, STD),
             data.RandomCrop(32, padding=padding, padding_mode="reflect"),
             data.RandomHorizontalFlip(0.5)]
    if cutout:
        steps.append(data.Cutout(cutout))
    return data.Compose(steps)


def on_device(split):
    """``(x, y)`` moved to the current device (a whole uint8 CIFAR-10 is 150 MB)."""
    return None if split is None else tuple(minidl.to_device(a) for a in split)


def make_loaders(args, train, val, test, train_transform, eval_batch_size=500, drop_last=False):
    """DataLoaders: shuffled augmented train, plain (normalised) val/test.

    The uint8 images are put on the current device once, so on the GPU a batch is
    gathered, normalised and augmented there without a host-to-device copy per step.
    """
    train_loader = data.DataLoader(*on_device(train), batch_size=args.batch_size, shuffle=True,
                                   drop_last=drop_last, transform=train_transform, seed=args.seed)

    def plain(split):
        if split is None:
            return None
        return data.DataLoader(*on_device(split), batch_size=eval_batch_size, shuffle=False,
                               transform=normalize())

    return train_loader, plain(val), plain(test)


def run(args, model, optimizer, name, train_loader, val_loader, test_loader, scheduler=None,
        loss_fn=None, scheduler_interval="epoch", callbacks=(), epochs=None, extra=None,
        plot=True, save=True):
    """Fit with :class:`~minidl.train.Trainer`, evaluate on the test set, write the outputs
    (see :func:`report`) and, if ``save``, the trained weights (``NAME_weights.npz``).

    Returns the result dict (also written as ``NAME_result.json``; ``extra`` entries are
    added to it) with the history's columns under ``"history"``.
    """
    model.to(minidl.current_device())
    bare_model = model
    if getattr(args, "distributed", False):
        # Batch statistics over all ranks: the run is then one big batch split up.
        bare_model = layers.convert_sync_batchnorm(model)  # keeps the optimizer's Params
        model = dist.DataParallel(bare_model)
    loss_fn = losses.CrossEntropyLoss() if loss_fn is None else loss_fn
    trainer = Trainer(model, loss_fn, optimizer, scheduler=scheduler,
                      scheduler_interval=scheduler_interval,
                      **common.progress_options(args, callbacks))
    epochs = args.epochs if epochs is None else epochs
    start = time.perf_counter()
    history = trainer.fit(train_loader, val_loader, epochs=epochs)
    seconds = time.perf_counter() - start
    test_metrics = trainer.evaluate(test_loader)
    if save and dist.rank() == 0:
        save_weights(os.path.join(args.out, f"{name}_weights.npz"), bare_model)
    result = report(args, name, history, test_metrics, seconds, model, extra=extra, plot=plot)
    result["history"] = history.to_dict()
    return result


def report(args, name, history, test_metrics, seconds, model, extra=None, plot=True):
    """Write history (JSON, CSV), curves (unless ``plot`` is False) and the result files;
    print the result line. ``test_metrics``: ``{"loss", "top1", "top5"}``."""
    epochs = len(history)
    result = {
        "experiment": name, "epochs": epochs, "data": data_description(args),
        "test_top1": float(test_metrics["top1"]), "test_top5": float(test_metrics["top5"]),
        "test_loss": float(test_metrics["loss"]),
        "best_val_top1": (history.best("val_top1")["val_top1"] if history.has("val_top1")
                          else None),
        # train_seconds: what the caller timed (run(): fit, per-epoch validation included).
        "params": model.num_parameters(), "train_seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / max(epochs, 1), 2),
        "device": minidl.current_device(), "machine": common.machine_description(),
    }
    # test_acc: the key every example's result.json shares (the smoke tests read it).
    result["test_acc"] = result["test_top1"]
    result.update(extra or {})
    top5 = result["test_top5"]
    line = (f"{name}: test top-1 {100 * result['test_top1']:.2f} %, top-5 {100 * top5:.2f} % "
            f"(top-5 error {100 * (1 - top5):.2f} %), {epochs} epochs in {seconds:.0f} s "
            f"({result['seconds_per_epoch']} s/epoch) on {result['machine']}, {result['data']}")
    common.write_outputs(args.out, name, history, result, line, plot=plot)
    return result


machine_description = common.machine_description  # the scripts' one-stop import


def data_description(args):
    """E.g. "CIFAR-10 (45,000 train / 5,000 val / 10,000 test images)", from the sizes
    :func:`cifar10_splits` recorded (every script calls it first)."""
    if args.smoke:
        return "synthetic smoke data"
    train, val, test = args.split_sizes
    val_text = f" / {val:,} val" if val else ""
    return f"CIFAR-10 ({train:,} train{val_text} / {test:,} test images)"


def markdown_table(header, rows):
    """A GitHub markdown table as a string: ``header`` is a list of column titles."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)

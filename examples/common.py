"""Shared plumbing for the example scripts: CLI, data, training run, outputs.

Every example accepts ``--epochs --batch-size --lr --data-dir --device --seed --out``
and ``--smoke`` (a few steps on synthetic data, for the test suite), and writes
``NAME_history.json``, ``NAME_history.csv``, ``NAME_curves.png``, ``NAME_result.txt`` and
``NAME_result.json`` into ``--out``.

``--distributed`` (mnist_mlp, mnist_cnn, cifar10_resnet): data-parallel training over
the processes ``mpiexec`` starts
(``mpiexec -n 2 python examples/mnist_mlp.py --distributed``): the model is wrapped in
``minidl.distributed.DataParallel``, the loaders shard the data, ``--batch-size`` is per
rank, and only rank 0 prints and writes the outputs.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import minidl
from minidl import data, losses, optim
from minidl import distributed as dist
from minidl.train import Trainer, plot_history


def parser(description, epochs, batch_size, lr, out, distributed=False):
    """The shared CLI; ``distributed``: the script trains through :func:`train_and_report`
    or ``cifar_common.run`` only, so it can offer ``--distributed``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--data-dir", default=None,
                   help="folder with the canonical files (default: $MINIDL_DATA or ~/.cache/minidl)")
    p.add_argument("--device", default=None, choices=["cpu", "gpu"],
                   help="default: $MINIDL_DEVICE or cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--smoke", action="store_true",
                   help="a few steps on small synthetic data (used by the tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if distributed:
        p.add_argument("--distributed", action="store_true",
                       help="data-parallel over mpiexec's processes (batch size per rank)")
    return p


def setup(args):
    """Seed, select the device, create the output folder; join the other ranks."""
    if args.device:
        minidl.use_device(args.device)
    if getattr(args, "distributed", False):
        dist.init()
        if dist.rank() != 0:  # one rank speaks for all (errors still reach stderr)
            sys.stdout = open(os.devnull, "w")
    # Per-rank dropout draws; the weights are rank 0's (DataParallel broadcasts them),
    # and the data split and shuffles use args.seed itself, the same on every rank.
    minidl.seed(args.seed + dist.rank())
    os.makedirs(args.out, exist_ok=True)


def synthetic_mnist(n_train=256, n_test=64, seed=0):
    """MNIST-shaped uint8 images whose class is written into a bright 4x4 block."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, size=n)
        x = rng.integers(0, 60, size=(n, 1, 28, 28), dtype=np.uint8)
        for k in range(10):
            row, col = divmod(k, 5)
            x[y == k, 0, 4 + 8 * row:8 + 8 * row, 2 + 5 * col:6 + 5 * col] = 255
        return x, y.astype(np.int64)

    return make(n_train), make(n_test)


def mnist_splits(args, val_size=10_000):
    """(train, val, test) as float32 NCHW in [0, 1] with int64 labels.

    The 60k training images are split 50k/10k (train/val) with a fixed seed; the
    10k test images are only used for the final number.
    """
    if args.smoke:
        (x_train, y_train), (x_test, y_test) = synthetic_mnist()
        val_size = 64
    else:
        (x_train, y_train), (x_test, y_test) = data.load_mnist(root=args.data_dir)
        if x_train.mean() > 127:
            # Canonical MNIST has a black background (mean pixel 33). Some re-encoded
            # copies store 255 - pixel; invert them back so that results and the
            # usual normalisation constants mean what they say.
            print("note: these MNIST files have inverted colours (white background); "
                  "using 255 - x")
            x_train, x_test = 255 - x_train, 255 - x_test
    (x_train, y_train), (x_val, y_val) = data.train_val_split(
        x_train, y_train, val_fraction=val_size / len(x_train), seed=args.seed)
    to_float = data.ToFloat()
    return [(to_float(x), y) for x, y in
            ((x_train, y_train), (x_val, y_val), (x_test, y_test))]


def loaders(args, train, val, test, transform=None):
    device = minidl.current_device()
    return (data.DataLoader(*train, batch_size=args.batch_size, shuffle=True,
                            transform=transform, seed=args.seed, device=device),
            data.DataLoader(*val, batch_size=1000, shuffle=False, device=device),
            data.DataLoader(*test, batch_size=1000, shuffle=False, device=device))


def train_and_report(args, model, optimizer, name, train, val, test, make_scheduler=None,
                     loss_fn=None, transform=None, epochs=None):
    """Fit, evaluate on the test set, write history/curves/result; return the results dict.

    ``make_scheduler(optimizer, epochs, steps_per_epoch)``, if given, builds a per-step
    learning-rate schedule.
    """
    model.to(minidl.current_device())
    if getattr(args, "distributed", False):
        model = dist.DataParallel(model)  # same Params: the optimizer built before still fits
    train_loader, val_loader, test_loader = loaders(args, train, val, test, transform)
    epochs = args.epochs if epochs is None else epochs
    if args.smoke:
        epochs = min(epochs, 1)
    scheduler = (make_scheduler(optimizer, epochs, len(train_loader))
                 if make_scheduler is not None else None)
    trainer = Trainer(model, loss_fn or losses.CrossEntropyLoss(), optimizer,
                      scheduler=scheduler, scheduler_interval="batch", quiet=args.quiet)
    start = time.perf_counter()
    history = trainer.fit(train_loader, val_loader, epochs=epochs)
    seconds = time.perf_counter() - start
    train_metrics = trainer.evaluate(train_loader)
    test_metrics = trainer.evaluate(test_loader)
    result = {
        "experiment": name, "epochs": epochs,
        "train_acc": train_metrics["top1"],
        "val_acc": history[-1]["val_top1"] if len(history) else None,
        "test_acc": test_metrics["top1"], "test_loss": test_metrics["loss"],
        "params": model.num_parameters(), "train_seconds": round(seconds, 1),
        "device": minidl.current_device(), "machine": machine_description(),
    }
    line = (f"{name}: test {100 * result['test_acc']:.2f} % "
            f"(train {100 * result['train_acc']:.2f} %, val "
            f"{100 * (result['val_acc'] or 0):.2f} %), {epochs} epochs in {seconds:.0f} s "
            f"on {result['machine']}")
    write_outputs(args.out, name, history, result, line)
    return result


def write_outputs(out, name, history, result, line, plot=True):
    """Write ``NAME_history.json/csv``, ``NAME_curves.png`` (if ``plot``) and the
    one-line result as ``NAME_result.txt`` and ``NAME_result.json``; print the line.
    Under mpiexec only rank 0 writes."""
    if dist.rank() != 0:
        return
    history.to_json(os.path.join(out, f"{name}_history.json"))
    history.to_csv(os.path.join(out, f"{name}_history.csv"))
    if plot:
        plot_history(history, os.path.join(out, f"{name}_curves.png"), title=name)
    print(line, flush=True)
    with open(os.path.join(out, f"{name}_result.txt"), "w") as f:
        f.write(line + "\n")
    with open(os.path.join(out, f"{name}_result.json"), "w") as f:
        json.dump(result, f, indent=2)


def machine_description():
    if minidl.current_device() == "gpu":
        xp = minidl.backend.cupy_module()
        props = xp.cuda.runtime.getDeviceProperties(0)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def sgd(model, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    return optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                     weight_decay=weight_decay, nesterov=nesterov)


def load_history(path):
    """A history JSON as a dict of per-epoch lists ("train_loss", "val_top1", ...)."""
    with open(path) as f:
        return json.load(f)

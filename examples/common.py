"""Shared plumbing for the example scripts: CLI, data, training run, outputs.

Every example accepts ``--epochs --batch-size --lr --data-dir --device --seed --out``
and ``--smoke`` (a few steps on synthetic data, for the test suite), and writes
``NAME_history.json``, ``NAME_history.csv``, ``NAME_curves.png``, ``NAME_result.txt`` and
``NAME_result.json`` into ``--out``; :func:`cli` runs a script's ``main`` and then says
where the files went.

Progress: a tqdm bar per epoch on a terminal; when stdout or stderr is not a terminal
(a log file, CI) one plain line per epoch instead (:func:`progress_options`).

A data set that is neither on disk nor downloadable stops the script at once with the
fix (:func:`load_dataset`), not after every download retry.

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
import socket
import sys
import time
import urllib.parse
import urllib.request

import numpy as np

import minidl
from minidl import data, losses, optim
from minidl import distributed as dist
from minidl.data.datasets import DATASETS
from minidl.train import Callback, Trainer, plot_history


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` keeps the docstring's layout (its command examples) and shows each
    option's default; ``None`` and ``False`` defaults (flags, "chosen per model") are left
    to the option's own help text."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or "%(default)" in text):
            return text
        return super()._get_help_string(action)


def parser(description, epochs, batch_size, lr, out, distributed=False):
    """The shared CLI; ``distributed``: the script trains through :func:`train_and_report`
    or ``cifar_common.run`` only, so it can offer ``--distributed``."""
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    per_model = " (default: chosen per model or recipe)"
    p.add_argument("--epochs", type=int, default=epochs,
                   help="training epochs" + ("" if epochs is not None else per_model))
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help="training batch size" + ("" if batch_size is not None else per_model))
    p.add_argument("--lr", type=float, default=lr,
                   help="(peak) learning rate" + ("" if lr is not None else per_model))
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the canonical data set files (default: $MINIDL_DATA, "
                        "else ~/.cache/minidl, where missing files are downloaded)")
    p.add_argument("--device", default=None, choices=["cpu", "gpu"],
                   help="where to train (default: $MINIDL_DEVICE, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order and splits")
    p.add_argument("--out", default=out, metavar="DIR", help="output folder")
    p.add_argument("--smoke", action="store_true",
                   help="a few steps on small synthetic data (used by the tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    if distributed:
        p.add_argument("--distributed", action="store_true",
                       help="data-parallel over mpiexec's processes (batch size per rank)")
    return p


_OUTPUT_FOLDER = None  # set by setup(); cli() lists what the run wrote there


def setup(args):
    """Seed, select the device, create the output folder; join the other ranks."""
    global _OUTPUT_FOLDER
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
    _OUTPUT_FOLDER = args.out


def cli(main):
    """Run a script's ``main()``; then print the folder its files went to and their names."""
    started = time.time()
    main()
    if _OUTPUT_FOLDER is None or not os.path.isdir(_OUTPUT_FOLDER):
        return
    written = sorted(entry.name for entry in os.scandir(_OUTPUT_FOLDER)
                     if entry.is_file() and entry.stat().st_mtime >= started - 1)
    if written:
        print(f"wrote {len(written)} files to {os.path.abspath(_OUTPUT_FOLDER)}/: "
              + ", ".join(written), flush=True)


# ---------------------------------------------------------------------- data sets
def load_dataset(name, args):
    """``minidl.data.load_<name>(root=args.data_dir)``, failing fast with the fix first.

    Files on disk are used as they are. If they are missing and the download server's
    name does not even resolve (no network), the script stops at once with what to do,
    instead of working through every mirror and retry first. A failed download or a
    damaged file also stops it with the fix first and the loader's details after.
    """
    spec = DATASETS[name]
    loader = getattr(data, spec.loader)
    try:
        return loader(root=args.data_dir, download=False)
    except FileNotFoundError:
        pass
    except data.DatasetError as error:  # a damaged file: the message names it and the fix
        raise SystemExit(f"{os.path.basename(sys.argv[0])}: {error}")
    root = data.data_root(args.data_dir)
    offline = _no_network_reason(spec.mirrors[0])
    if offline:
        raise SystemExit(_fix_for_missing(spec, root, f"and cannot be downloaded: {offline}"))
    print(f"{spec.name}: not found in {root}; downloading it to {root / spec.name}/", flush=True)
    try:
        return loader(root=args.data_dir, download=True)
    except data.DatasetError as error:
        raise SystemExit(_fix_for_missing(spec, root, "and the download failed")
                         + f"\n\ndetails:\n{error}")


def _no_network_reason(url):
    """Why ``url`` cannot be reached (its host name does not resolve), or None.

    Behind a proxy the proxy resolves names, so nothing is checked there."""
    if urllib.request.getproxies():
        return None
    host = urllib.parse.urlsplit(url).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError as error:
        return f"{host} does not resolve ({error})"
    return None


def _fix_for_missing(spec, root, reason):
    script = os.path.basename(sys.argv[0]) or "the example"
    files = "\n".join(f"    {remote.filename}" for remote in spec.files.values())
    return (f"{script}: the {spec.name} files are not in {root}, {reason}.\n"
            f"Fix: put these files, unchanged (still compressed), into a folder:\n{files}\n"
            f"and point the example at it:\n"
            f"    MINIDL_DATA=/path/to/{spec.name} python examples/{script}\n"
            f"(or --data-dir /path/to/{spec.name}); or run once with network access, which "
            f"downloads them to {root / spec.name}/.")


# ---------------------------------------------------------------------- progress
class EpochLines(Callback):
    """One plain line per epoch (for logs, where a progress bar would print every update)."""

    def on_epoch_end(self, trainer, epoch, logs):
        parts = [f"epoch {epoch}"]
        for key in ("train_loss", "train_top1", "val_loss", "val_top1"):
            value = logs.get(key)
            if value is not None:
                parts.append(f"{key} {value:.4f}" if key.endswith("loss")
                             else f"{key} {100 * value:.2f} %")
        parts.append(f"lr {logs['lr']:.3g}, {logs['seconds']:.1f} s")
        print(", ".join(parts), flush=True)

    def on_train_end(self, trainer):
        if trainer.stop_training:
            print(f"stopped early after epoch {trainer.epoch}", flush=True)


def progress_options(args, callbacks=()):
    """``Trainer`` keyword arguments for the progress display: a tqdm bar on a terminal,
    :class:`EpochLines` when stdout or stderr (where tqdm draws) is redirected, nothing
    with ``--quiet``."""
    callbacks = list(callbacks)
    if args.quiet:
        return {"quiet": True, "callbacks": callbacks}
    if sys.stdout.isatty() and sys.stderr.isatty():
        return {"quiet": False, "callbacks": callbacks}
    return {"quiet": True, "callbacks": callbacks + [EpochLines()]}


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
        (x_train, y_train), (x_test, y_test) = load_dataset("mnist", args)
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
                      scheduler=scheduler, scheduler_interval="batch", **progress_options(args))
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

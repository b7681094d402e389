"""The MNIST MLP trained from three initialisations: zeros, normal(0, 1), Glorot.

Zero init stays at chance (every hidden unit gets the same - zero - gradient, so
nothing but the last bias learns); normal and Glorot learn. One figure with the
three training-loss curves: ``init_comparison.png``.
"""
import os

import common
import minidl
from minidl.models import mlp
from minidl.train import new_figure

INITIALIZERS = {
    "zeros": "zeros",
    "normal": lambda shape, dtype=None: minidl.init.normal(shape, dtype, std=1.0),
    "glorot": "glorot_uniform",
}


def main(argv=None):
    p = common.parser(__doc__, epochs=10, batch_size=100, lr=0.01, out="runs/mnist_init")
    args = p.parse_args(argv)
    common.setup(args)
    train, val, test = common.mnist_splits(args)
    histories = {}
    for name, init in INITIALIZERS.items():
        minidl.seed(args.seed)
        model = mlp([784, 512, 512, 10], init=init)
        common.train_and_report(args, model, common.sgd(model, args.lr), f"init_{name}", train, val, test)
        histories[name] = common.load_history(os.path.join(args.out, f"init_{name}_history.json"))
    plot(histories, os.path.join(args.out, "init_comparison.png"))


def plot(histories, path):
    fig = new_figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = range(1, len(history["train_loss"]) + 1)
        ax_loss.plot(epochs, history["train_loss"], marker="o", label=name)
        ax_acc.plot(epochs, [100 * a for a in history["val_top1"]], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="MLP 784-512-512-10: initialisation")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    common.cli(main)

"""MNIST CNNs: the 570,436-parameter CNN (reported 98.59 % test in 10 epochs) and a
tiny CNN of about 2,000 parameters (reported 97.1 %).

    python examples/mnist_cnn.py                 # the 570k CNN: SGD 0.01, momentum 0.9, batch 64
    python examples/mnist_cnn.py --model tiny    # tiny CNN: one-cycle to lr 0.1, batch 100

The model summary (output shapes, parameters, multiply-adds) is printed first.
"""
import common
from minidl import optim
from minidl.models import mnist_cnn, tiny_cnn


def main(argv=None):
    p = common.parser(__doc__, epochs=10, batch_size=None, lr=None, out="runs/mnist_cnn",
                      distributed=True)
    p.add_argument("--model", choices=["cnn", "tiny"], default="cnn",
                   help="the 570k-parameter CNN or the 2k-parameter tiny one")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    args = p.parse_args(argv)
    tiny = args.model == "tiny"
    # Per-model defaults: the tiny net needs a larger, scheduled lr to learn in 10 epochs.
    if args.batch_size is None:
        args.batch_size = 100 if tiny else 64
    if args.lr is None:
        args.lr = 0.1 if tiny else 0.01
    common.setup(args)
    train, val, test = common.mnist_splits(args)
    model = tiny_cnn() if tiny else mnist_cnn()
    model.summary((1, 28, 28))
    optimizer = common.sgd(model, args.lr, momentum=args.momentum)
    one_cycle = (lambda opt, epochs, steps: optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=epochs, steps_per_epoch=steps)) if tiny else None
    return common.train_and_report(args, model, optimizer, args.model, train, val, test,
                                   make_scheduler=one_cycle)


if __name__ == "__main__":
    common.cli(main)

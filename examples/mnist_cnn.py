"""MNIST CNNs: the 570,436-parameter CNN (reported 98.59 % test in 10 epochs) and a
tiny CNN of about 2,000 parameters (reported 97.1 %).

    python examples/mnist_cnn.py                 # the 570k CNN, 10 epochs
    python examples/mnist_cnn.py --model tiny    # the tiny CNN

The model summary (output shapes, parameters, multiply-adds) is printed first.
"""
import common
from minidl.models import mnist_cnn, tiny_cnn


def main(argv=None):
    p = common.parser(__doc__, epochs=10, batch_size=64, lr=0.01, out="runs/mnist_cnn")
    p.add_argument("--model", choices=["cnn", "tiny"], default="cnn")
    p.add_argument("--momentum", type=float, default=0.9)
    args = p.parse_args(argv)
    common.setup(args)
    train, val, test = common.mnist_splits(args)
    model = mnist_cnn() if args.model == "cnn" else tiny_cnn()
    model.summary((1, 28, 28))
    optimizer = common.sgd(model, args.lr, momentum=args.momentum)
    return common.train_and_report(args, model, optimizer, f"{args.model}", train, val, test)


if __name__ == "__main__":
    main()

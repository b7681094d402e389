"""MNIST MLP 784-512-512-10 (ReLU, Glorot init, plain SGD lr 0.01, batch 100, 60 epochs).

Reproduces the IFT6135 assignment-1 MLP (reported 97.33 % test) and, with
``--hidden``, its width variants::

    python examples/mnist_mlp.py                       # the reference run
    python examples/mnist_mlp.py --hidden 256 256      # a variant
    mpiexec -n 2 python examples/mnist_mlp.py --distributed   # 2 ranks x batch 100
"""
import common
import minidl
from minidl.models import mlp


def main(argv=None):
    p = common.parser(__doc__, epochs=60, batch_size=100, lr=0.01, out="runs/mnist_mlp",
                      distributed=True)
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 512], metavar="SIZE",
                   help="hidden layer sizes")
    p.add_argument("--init", default="glorot_uniform", choices=sorted(minidl.init.INITIALIZERS),
                   metavar="INIT", help="weight initialiser of every Linear, one of "
                   + ", ".join(sorted(minidl.init.INITIALIZERS)))
    args = p.parse_args(argv)
    common.setup(args)
    train, val, test = common.mnist_splits(args)
    model = mlp([784, *args.hidden, 10], init=args.init)
    name = "mlp_" + "_".join(map(str, args.hidden))
    return common.train_and_report(args, model, common.sgd(model, args.lr), name, train, val, test)


if __name__ == "__main__":
    common.cli(main)

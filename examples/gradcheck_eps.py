"""Gradient validation: finite differences against backprop as the step shrinks.

For the MNIST MLP (trained for ``--epochs`` first), take one training example and
compare the analytic gradient of the loss w.r.t. the first 10 weights of the second
layer with centered differences ``(L(w + eps) - L(w - eps)) / 2 eps`` for
``eps = 1/N``, ``N = k * 10^i``. The maximum difference shrinks like eps^2 until
round-off takes over: early in float32 (~1e-7 relative precision), much later in
float64. Writes ``gradcheck_eps.png`` and ``gradcheck_eps.json``.
"""
import json
import os

import numpy as np

import common
import minidl
from minidl import layers as L, losses
from minidl.models import mlp
from minidl.train import new_figure

N_VALUES = [k * 10 ** i for i in range(6) for k in (1, 5)]


def max_difference(model, x, y, n_weights=10):
    """{N: max |analytic - numeric|} over the first ``n_weights`` weights of layer 2."""
    loss_fn = losses.CrossEntropyLoss()
    weight = [layer for layer in model if isinstance(layer, L.Linear)][1].weight
    model.zero_grad()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    analytic = minidl.to_numpy(weight.grad).reshape(-1)[:n_weights].astype(np.float64)
    flat = weight.data.reshape(-1)
    differences = {}
    for n in N_VALUES:
        eps = 1.0 / n
        numeric = np.empty(n_weights)
        for i in range(n_weights):
            original = flat[i].item()
            flat[i] = original + eps
            plus = float(loss_fn(model(x), y))
            flat[i] = original - eps
            minus = float(loss_fn(model(x), y))
            flat[i] = original
            numeric[i] = (plus - minus) / (2 * eps)
        differences[n] = float(np.max(np.abs(analytic - numeric)))
    return differences


def main(argv=None):
    p = common.parser(__doc__, epochs=1, batch_size=100, lr=0.01, out="runs/gradcheck_eps")
    args = p.parse_args(argv)
    common.setup(args)
    train, val, test = common.mnist_splits(args)
    model = mlp([784, 512, 512, 10], init="glorot_uniform")
    if args.epochs > 0:
        common.train_and_report(args, model, common.sgd(model, args.lr), "mlp", train, val, test)
    model.to("cpu").eval()
    x, y = train[0][:1], train[1][:1]
    results = {}
    for dtype in (np.float32, np.float64):
        model.to(dtype)
        results[np.dtype(dtype).name] = max_difference(model, x.astype(dtype), y)
        for n, diff in results[np.dtype(dtype).name].items():
            print(f"{np.dtype(dtype).name}  N={n:>7}  eps={1 / n:.1e}  max|diff|={diff:.3e}")
    with open(os.path.join(args.out, "gradcheck_eps.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot(results, os.path.join(args.out, "gradcheck_eps.png"))
    return results


def plot(results, path):
    fig = new_figure(6, 4)
    ax = fig.subplots()
    for dtype, differences in results.items():
        ax.loglog(list(differences), list(differences.values()), marker="o", label=dtype)
    ax.set(xlabel="N (eps = 1/N)", ylabel="max |analytic - finite difference|",
           title="Gradient check, first 10 weights of layer 2")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    common.cli(main)

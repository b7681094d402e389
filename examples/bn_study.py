"""How does batch normalisation help optimisation? VGG-A with and without BatchNorm, after
Santurkar, Tsipras, Ilyas & Madry, "How Does Batch Normalization Help Optimization?"
(NeurIPS 2018), Figure 4.

Both networks train with plain SGD (``--lrs``, default 0.1), batch 128. Every
``--probe-every`` steps, at the current weights ``w`` and on the current batch, with
``g = grad L(w)``, the script steps along the gradient by each of the step sizes
``--step-sizes`` (default ``eta`` in 0.05 ... 0.4, the paper's range) and measures

- **loss landscape**: ``L(w - eta g)``; the band between its smallest and largest value
  over the step sizes shows how much the loss changes along the gradient direction;
- **gradient predictiveness**: ``||grad L(w) - grad L(w - eta g)||_2``, band over the step
  sizes: how well the gradient here predicts the gradient a step away;
- **effective beta-smoothness**: ``max_eta ||grad L(w) - grad L(w - eta g)|| / ||eta g||``,
  the largest gradient change per unit distance moved (a local Lipschitz constant of
  the gradient).

The paper's finding: with BatchNorm all three are smaller and vary less (narrower
bands), i.e. the landscape is smoother, so larger steps are safe.

    python examples/bn_study.py --subset 5000 --val-size 1000 --epochs 3             # CPU
    python examples/bn_study.py --lrs 0.1 0.05 --epochs 25 --device gpu

Writes ``bn_loss_landscape.png``, ``bn_gradient_predictiveness.png``,
``bn_beta_smoothness.png``, ``bn_training.png`` (training loss per step, validation
accuracy per epoch), ``bn_study.json`` (every probe) and ``bn_study_result.json``.
A configuration whose loss becomes NaN/Inf is reported as diverged and its curves end there.
The images are normalised but not augmented, so that consecutive probes see the same
kind of batch.
"""
import json
import math
import os

import numpy as np

import cifar_common
import minidl
from minidl import losses, models, optim
from minidl.train import Trainer, new_figure


def global_norm(arrays):
    """``sqrt(sum of squares)`` over a list of arrays, as a Python float."""
    return math.sqrt(sum(float((a * a).sum()) for a in arrays))


def probe(model, loss_fn, xb, yb, step_sizes):
    """Measure the landscape along ``-grad`` from the current weights (see the module doc).

    Call after ``model.backward`` and before ``optimizer.step``: the gradients in
    ``param.grad`` define the direction. Weights, BatchNorm statistics and gradients are
    restored afterwards, so training continues exactly as without the probe.
    Returns ``{"losses": [...], "grad_changes": [...], "beta": float}`` (lists per step size).
    """
    params = model.parameters()
    saved_state = model.state_dict()          # weights and BatchNorm running statistics
    gradient = [p.grad.copy() for p in params]
    gradient_norm = global_norm(gradient)
    weights = [p.data.copy() for p in params]
    losses_along, changes = [], []
    for eta in step_sizes:
        for param, w, g in zip(params, weights, gradient):
            param.data[...] = w - eta * g
        model.zero_grad()
        loss = loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        losses_along.append(float(loss))
        changes.append(global_norm([p.grad - g for p, g in zip(params, gradient)]))
    model.load_state_dict(saved_state)
    for param, g in zip(model.parameters(), gradient):
        param.grad[...] = g
    beta = max(change / (eta * gradient_norm) for change, eta in zip(changes, step_sizes)) \
        if gradient_norm > 0 else 0.0
    return {"losses": losses_along, "grad_changes": changes, "beta": beta}


def train_configuration(args, batch_norm, lr, train_loader, val_loader):
    """Train one VGG-A; return its per-step losses, per-epoch validation accuracy and probes."""
    minidl.seed(args.seed)  # both networks start from the same random stream
    model = models.vgg11(10, batch_norm=batch_norm, width=args.width)
    model.to(minidl.current_device())
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=args.momentum)
    loss_fn = losses.CrossEntropyLoss()
    evaluator = Trainer(model, loss_fn, optimizer, quiet=True)
    label = f"{'with' if batch_norm else 'without'} BN, lr {lr:g}"
    record = {"label": label, "batch_norm": batch_norm, "lr": lr, "train_loss": [],
              "val_top1": [], "probes": [], "diverged_at_step": None}
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for xb, yb in train_loader:
            step += 1
            loss = float(loss_fn(model(xb), yb))
            if not math.isfinite(loss):
                record["diverged_at_step"] = step
                print(f"{label}: loss {loss} at step {step}: diverged", flush=True)
                return record
            record["train_loss"].append(loss)
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            if step == 1 or step % args.probe_every == 0:
                record["probes"].append({"step": step, **probe(model, loss_fn, xb, yb,
                                                                args.step_sizes)})
            optimizer.step()
        val = evaluator.evaluate(val_loader)
        record["val_top1"].append(val["top1"])
        epoch_loss = np.mean(record["train_loss"][-len(train_loader):])
        print(f"{label}: epoch {epoch}, train loss {epoch_loss:.4f}, "
              f"val top-1 {100 * val['top1']:.2f} %", flush=True)
    return record


def _figure(columns):
    figure = new_figure(5.5 * columns, 4.2)
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, axes


def _color(record):
    return "C0" if record["batch_norm"] else "C3"


def plot_bands(records, lrs, key, ylabel, title, path, log=False):
    """One panel per learning rate: the min-max band of ``key`` over the step sizes."""
    figure, axes = _figure(len(lrs))
    for ax, lr in zip(axes, lrs):
        for record in (r for r in records if r["lr"] == lr):
            probes = record["probes"]
            if not probes:
                continue
            steps = [p["step"] for p in probes]
            low = [min(p[key]) for p in probes]
            high = [max(p[key]) for p in probes]
            ax.fill_between(steps, low, high, color=_color(record), alpha=0.35,
                            label=record["label"])
            ax.plot(steps, low, color=_color(record), linewidth=0.8)
            ax.plot(steps, high, color=_color(record), linewidth=0.8)
        ax.set(xlabel="training step", ylabel=ylabel, title=f"{title}, lr {lr:g}")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path)


def plot_beta(records, lrs, path):
    figure, axes = _figure(len(lrs))
    for ax, lr in zip(axes, lrs):
        for record in (r for r in records if r["lr"] == lr):
            points = [(p["step"], p["beta"]) for p in record["probes"]]
            if points:
                ax.plot(*zip(*points), "-", color=_color(record), label=record["label"])
        ax.set(xlabel="training step", ylabel="max ||grad change|| / ||step||",
               title=f"effective beta-smoothness, lr {lr:g}")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path)


def plot_training(records, path):
    figure, (loss_axes, acc_axes) = _figure(2)
    linestyles = ["-", "--", ":", "-."]
    lrs = sorted({r["lr"] for r in records}, reverse=True)
    for record in records:
        style = linestyles[lrs.index(record["lr"]) % len(linestyles)]
        if record["train_loss"]:
            loss_axes.plot(range(1, len(record["train_loss"]) + 1), record["train_loss"], style,
                           color=_color(record), linewidth=0.8, label=record["label"])
        if record["val_top1"]:
            acc_axes.plot(range(1, len(record["val_top1"]) + 1),
                          [100 * v for v in record["val_top1"]], style, marker="o",
                          color=_color(record), label=record["label"])
    loss_axes.set(xlabel="training step", ylabel="training loss", title="training loss")
    acc_axes.set(xlabel="epoch", ylabel="validation top-1 (%)", title="validation accuracy")
    for ax in (loss_axes, acc_axes):
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path)


def main(argv=None):
    p = cifar_common.parser(__doc__, epochs=20, batch_size=128, lr=0.1, out="runs/bn_study")
    p.add_argument("--lrs", type=float, nargs="+", default=None,
                   help="learning rates to train both networks with (default: --lr)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    p.add_argument("--width", type=int, default=64,
                   help="VGG-A first-stage width (64 in the paper; 16 for quick CPU runs)")
    p.add_argument("--step-sizes", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.4],
                   help="distances eta moved along -grad by the probes")
    p.add_argument("--probe-every", type=int, default=10, help="probe every k training steps")
    p.add_argument("--val-size", type=int, default=5000,
                   help="training images held out for validation")
    args = p.parse_args(argv)
    lrs = args.lrs or [args.lr]
    if args.smoke:
        args.epochs, args.batch_size, args.probe_every = 1, 4, 3  # one probe, at step 1
        args.width = 8
        args.step_sizes = [0.05, 0.4]
    cifar_common.setup(args)

    if args.val_size <= 0:
        p.error("--val-size must be positive: the study tracks validation accuracy")
    train, val, _ = cifar_common.cifar10_splits(args, val_size=args.val_size, smoke_sizes=(12, 8))
    # drop_last: a last batch of one or two images would make the BatchNorm statistics
    # (and so the probes) needlessly noisy.
    train_loader, val_loader, _ = cifar_common.make_loaders(args, train, val, None,
                                                            cifar_common.normalize(),
                                                            drop_last=True)
    first_epoch = train_loader.state_dict()
    records = []
    for lr in lrs:
        for batch_norm in (True, False):
            train_loader.load_state_dict(first_epoch)  # every network sees the same batches
            records.append(train_configuration(args, batch_norm, lr, train_loader, val_loader))

    out = args.out
    plot_bands(records, lrs, "losses", "loss L(w - eta g)", "loss landscape",
               os.path.join(out, "bn_loss_landscape.png"))
    plot_bands(records, lrs, "grad_changes", "||grad L(w) - grad L(w - eta g)||",
               "gradient predictiveness", os.path.join(out, "bn_gradient_predictiveness.png"))
    plot_beta(records, lrs, os.path.join(out, "bn_beta_smoothness.png"))
    plot_training(records, os.path.join(out, "bn_training.png"))
    with open(os.path.join(out, "bn_study.json"), "w") as handle:
        json.dump({"step_sizes": args.step_sizes, "data": cifar_common.data_description(args),
                   "records": records}, handle)

    summary = []
    for record in records:
        probes = record["probes"]
        summary.append({
            "label": record["label"], "diverged_at_step": record["diverged_at_step"],
            "final_val_top1": record["val_top1"][-1] if record["val_top1"] else None,
            "mean_loss_band": float(np.mean([max(p["losses"]) - min(p["losses"]) for p in probes]))
            if probes else None,
            "mean_grad_change": float(np.mean([np.mean(p["grad_changes"]) for p in probes]))
            if probes else None,
            "max_beta": max(p["beta"] for p in probes) if probes else None,
        })
        s = summary[-1]
        val_text = f"{100 * s['final_val_top1']:.2f} %" if s["final_val_top1"] is not None else "-"
        print(f"{s['label']}: final val top-1 {val_text}, mean loss band {s['mean_loss_band']}, "
              f"mean gradient change {s['mean_grad_change']}, max beta {s['max_beta']}")
    result = {"configurations": summary, "epochs": args.epochs, "step_sizes": args.step_sizes,
              "data": cifar_common.data_description(args),
              "machine": cifar_common.machine_description()}
    with open(os.path.join(out, "bn_study_result.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    cifar_common.common.cli(main)

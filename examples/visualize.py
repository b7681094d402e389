"""Look inside a trained CIFAR-10 network: first-layer filters, feature maps, top-5 error
and the confusion matrix.

    python examples/visualize.py --weights runs/cifar10_resnet/resnet18_weights.npz
    python examples/visualize.py --model airbench --weights runs/cifar10_fast/airbench_weights.npz
    python examples/visualize.py --epochs 2 --subset 5000 --test-subset 1000   # train briefly first

Without ``--weights`` the network is first trained for ``--epochs`` with the reference
recipe of ``cifar10_resnet.py`` (SGD momentum 0.9, weight decay 5e-4, crop + flip). Writes

- ``filters.png``: every filter of the first conv layer as a small RGB image (each one
  scaled to the full colour range; a ResNet's 3x3 filters show colour and edge
  detectors, airbench's 2x2 whitening filters the principal directions of patches);
- ``feature_maps.png``: one test image and the first channels of the output of each
  stage of the network, from fine high-resolution maps to coarse abstract ones;
- ``confusion_matrix.png``: true class against predicted class on the test set (colour:
  fraction of the row, number: count);
- ``visualize_result.json``: top-1 and top-5 accuracy and error, per-class accuracy.
"""
import json
import os

import numpy as np

import cifar10_resnet
import cifar_common
import minidl
from minidl import layers as L
from minidl import models, optim
from minidl.train import accuracy, confusion_matrix, load_weights, new_figure

MODELS = sorted(cifar10_resnet.REPORTED) + ["airbench", "resnet9"]


def build_model(name, width):
    if name == "airbench":
        return models.airbench(10)
    if name == "resnet9":
        return models.resnet9(10, width=width)
    return cifar10_resnet.build_model(name, width)


def train_briefly(args, model, splits):
    """The reference recipe for ``args.epochs`` (airbench: whitening init first)."""
    params = model.parameters()
    if isinstance(model, models.Airbench):
        images = minidl.to_device(cifar_common.normalize_array(splits[0][0][:5000]))
        models.whitening_init(model.whiten, images)
        params = [p for p in params if p is not model.whiten.weight]  # stays frozen
    optimizer = optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    loaders = cifar_common.make_loaders(args, *splits, cifar_common.standard_augmentation())
    cifar_common.run(args, model, optimizer, "visualize_model", *loaders)


def first_conv(model):
    for _, module in model.named_modules():
        if isinstance(module, L.Conv2d):
            return module
    raise ValueError(f"visualize: {type(model).__name__} has no Conv2d layer")


def plot_filters(conv, path, max_filters=64):
    """Each filter ``(3, kh, kw)`` of the first conv as an RGB image, min-max scaled on its own."""
    weight = minidl.to_numpy(conv.weight.data)[:max_filters]
    count, in_channels = weight.shape[:2]
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    figure = new_figure(columns * 0.9, rows * 0.9 + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= count:
            continue
        kernel = weight[index]
        low, high = kernel.min(), kernel.max()
        kernel = (kernel - low) / (high - low) if high > low else np.zeros_like(kernel)
        # RGB filters as colour images; any other channel count as the mean over channels.
        image = kernel.transpose(1, 2, 0) if in_channels == 3 else kernel.mean(axis=0)
        ax.imshow(image, cmap=None if in_channels == 3 else "gray", interpolation="nearest")
    figure.suptitle(f"first layer: {count} filters of shape {tuple(weight.shape[1:])}")
    figure.savefig(path)


def stage_outputs(model, x):
    """Feature maps after the first activation and at the end of every run of top-level
    layers with the same output shape: ``[(name, (C, H, W) array)]`` for one image ``x``.

    The model must be a Sequential (every zoo model is): its top-level children are run
    one after the other in eval mode and their 4-D outputs recorded.
    """
    if not isinstance(model, L.Sequential):
        raise TypeError(f"visualize: feature maps need a Sequential model, got "
                        f"{type(model).__name__}")
    children = [(name, module) for name, module in model.named_modules()
                if name and "." not in name]
    model.eval()
    outputs = []
    for name, module in children:
        x = module(x)
        if x.ndim == 4:
            outputs.append((name, module, minidl.to_numpy(x[0])))
    model.train()
    chosen = []
    first_activation = next((o for o in outputs if isinstance(
        o[1], (L.ReLU, L.GELU, L.ELU, L.LeakyReLU))), None)
    if first_activation is not None:
        chosen.append(first_activation)
    for index, output in enumerate(outputs):
        is_last_of_run = (index + 1 == len(outputs)
                          or outputs[index + 1][2].shape != output[2].shape)
        if is_last_of_run and all(output[0] != c[0] for c in chosen):
            chosen.append(output)
    return [(name, array) for name, _, array in chosen]


def plot_feature_maps(image_uint8, label, stages, path, channels=8):
    rows = len(stages) + 1
    figure = new_figure(channels * 1.2, rows * 1.35)
    axes = figure.subplots(rows, channels, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(image_uint8.transpose(1, 2, 0), interpolation="nearest")
    axes[0, 0].set_title(f"input: {label}", fontsize=8, loc="left")
    for row, (name, maps) in enumerate(stages, start=1):
        for column in range(min(channels, maps.shape[0])):
            axes[row, column].imshow(maps[column], cmap="viridis", interpolation="nearest")
        axes[row, 0].set_title(f"{name}: {maps.shape[0]} x {maps.shape[1]} x {maps.shape[2]}",
                               fontsize=8, loc="left")
    figure.tight_layout()
    figure.savefig(path)


def plot_confusion(matrix, path, classes):
    figure = new_figure(7.5, 6.5)
    ax = figure.subplots()
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shown = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(shown, ax=ax, label="fraction of the true class")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"confusion matrix, {matrix.sum()} test images, "
                 f"top-1 {100 * np.trace(matrix) / max(matrix.sum(), 1):.2f} %")
    figure.tight_layout()
    figure.savefig(path)


def test_logits(model, x_test, batch_size=500):
    """Logits ``(N, 10)`` of the uint8 test images, in eval mode, on the host."""
    model.eval()
    normalize = cifar_common.normalize()
    outputs = [minidl.to_numpy(model(normalize(minidl.to_device(x_test[i:i + batch_size]))))
               for i in range(0, len(x_test), batch_size)]
    model.train()
    return np.concatenate(outputs)


def main(argv=None):
    p = cifar_common.parser(__doc__, epochs=2, batch_size=128, lr=0.01, out="runs/visualize")
    p.add_argument("--model", choices=MODELS, default="resnet18", help="network")
    p.add_argument("--width", type=int, default=64, help="first-stage channels (ResNets)")
    p.add_argument("--weights", default=None,
                   help=".npz from save_weights or a checkpoint (default: train for --epochs)")
    p.add_argument("--image", type=int, default=0, help="test image shown in feature_maps.png")
    p.add_argument("--val-size", type=int, default=5000,
                   help="training images held out for validation")
    args = p.parse_args(argv)
    if args.smoke:
        args.epochs, args.batch_size, args.width = 1, 32, 8
    cifar_common.setup(args)

    model = build_model(args.model, args.width)
    model.to(minidl.current_device())
    splits = cifar_common.cifar10_splits(args, val_size=args.val_size)
    if args.weights:
        load_weights(args.weights, model)
        print(f"loaded {args.weights}")
    else:
        train_briefly(args, model, splits)
    x_test, y_test = splits[2]
    classes = cifar_common.CLASSES

    plot_filters(first_conv(model), os.path.join(args.out, "filters.png"))
    index = min(args.image, len(x_test) - 1)
    image = minidl.to_device(cifar_common.normalize_array(x_test[index:index + 1]))
    plot_feature_maps(x_test[index], classes[int(y_test[index])], stage_outputs(model, image),
                      os.path.join(args.out, "feature_maps.png"))

    logits = test_logits(model, x_test)
    top1, top5 = accuracy(logits, y_test, topk=(1, 5))
    matrix = minidl.to_numpy(confusion_matrix(y_test, logits, num_classes=10))
    plot_confusion(matrix, os.path.join(args.out, "confusion_matrix.png"), classes)
    per_class = {name: float(matrix[k, k] / max(matrix[k].sum(), 1))
                 for k, name in enumerate(classes)}
    result = {"model": args.model, "weights": args.weights,
              "data": cifar_common.data_description(args),
              "test_top1": top1, "test_top5": top5, "top1_error": 1 - top1, "top5_error": 1 - top5,
              "per_class_top1": per_class, "test_acc": top1}
    print(f"{args.model}: test top-1 error {100 * (1 - top1):.2f} %, top-5 error "
          f"{100 * (1 - top5):.2f} % on {len(y_test)} images")
    for name, value in per_class.items():
        print(f"  {name:>10}: {100 * value:6.2f} %")
    with open(os.path.join(args.out, "visualize_result.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    cifar_common.common.cli(main)

"""VGG-A (VGG-11) for 32x32 images, with or without BatchNorm (the BN study of the issue)."""
from .. import checks
from .. import layers as L

#: Configuration "A" of Simonyan & Zisserman (2015): conv widths, "M" = 2x2 max-pool.
VGG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg11(num_classes=10, batch_norm=True, hidden=512, dropout=0.0, in_channels=3, width=64):
    """VGG-A: eight 3x3 convs (padding 1) in five stages, each closed by a 2x2 max-pool.

    Every conv is followed by ``[BatchNorm2d ->] ReLU``. The convs keep their bias even
    with BatchNorm (where it is redundant), as torchvision's ``vgg11_bn`` does, so the two
    variants differ by the BatchNorm layers alone. The classifier is sized for
    CIFAR: after five pools a 32x32 image is ``(N, 512, 1, 1)``, flattened to 512, then
    ``Linear 512->hidden -> ReLU [-> Dropout] -> Linear hidden->hidden -> ReLU [-> Dropout]
    -> Linear hidden->num_classes``. x: ``(N, in_channels, 32, 32)`` -> ``(N, num_classes)``.

    ``width`` is the first stage's channel count (64 in the paper); every stage scales
    with it, so ``width=16`` is a 16x cheaper net for quick CPU studies.

    Weights: He normal, N(0, 2 / fan_in), for the convs and the hidden Linear layers
    (every layer a ReLU follows), PyTorch's default for the last Linear; biases 0.
    PyTorch's default everywhere would shrink the signal's second moment about 6x per
    ReLU layer (weight variance 1 / (3 fan_in)): without BatchNorm, ten such layers
    leave logits ~1e-4 and a net that does not train, which would spoil the BN study.
    (torchvision's VGG, too, sets a He init explicitly.)

    Parameters for 10 classes: 9,750,922 without BatchNorm, 9,756,426 with it (2 per
    conv channel).
    """
    num_classes = checks.positive_int(num_classes, "num_classes", "vgg11")
    batch_norm = checks.boolean(batch_norm, "batch_norm", "vgg11")
    hidden = checks.positive_int(hidden, "hidden", "vgg11")
    in_channels = checks.positive_int(in_channels, "in_channels", "vgg11")
    width = checks.positive_int(width, "width", "vgg11")
    dropout = checks.real_number(dropout, "dropout", "vgg11", 0.0, 1.0, high_open=True)
    layers = []
    channels = in_channels
    for item in VGG_A:
        if item == "M":
            layers.append(L.MaxPool2d(2))
            continue
        out_channels = max(1, item * width // 64)
        layers.append(L.Conv2d(channels, out_channels, 3, padding=1, init="he_normal"))
        if batch_norm:
            layers.append(L.BatchNorm2d(out_channels))
        layers.append(L.ReLU())
        channels = out_channels
    layers.append(L.Flatten())
    for fan_in in (channels, hidden):
        layers += [L.Linear(fan_in, hidden, init="he_normal"), L.ReLU()]
        if dropout > 0:
            layers.append(L.Dropout(dropout))
    layers.append(L.Linear(hidden, num_classes))
    return L.Sequential(*layers)


__all__ = ["VGG_A", "vgg11"]

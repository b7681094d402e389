"""Small MNIST models: the MLP, the 570k-parameter CNN and a ~2k-parameter CNN.

Each builder returns a :class:`~minidl.layers.Sequential`, so ``model.summary((1, 28, 28))``
prints one row per layer.
"""
from .. import checks
from .. import layers as L
from .blocks import make_activation


def mlp(sizes, activation="relu", init="glorot_uniform", dropout=0.0):
    """Multi-layer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` (logits out).

    ``mlp([784, 512, 512, 10])`` is the MNIST MLP of the examples. Input ``(N, ...)`` is
    flattened first, so ``(N, 1, 28, 28)`` images go in as they are. Each hidden layer is
    ``Linear -> activation [-> Dropout(dropout)]``; the last Linear has no activation.
    ``init`` is the weight initialiser of every Linear (biases start at zero).
    """
    if not isinstance(sizes, (list, tuple)):
        raise TypeError(f"mlp: sizes must be a list of layer sizes, got {checks.describe(sizes)}")
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs at least an input and an output size, got {sizes!r}")
    sizes = [checks.positive_int(s, f"sizes[{i}]", "mlp") for i, s in enumerate(sizes)]
    dropout = checks.real_number(dropout, "dropout", "mlp", 0.0, 1.0, high_open=True)
    make_activation(activation, "mlp")  # fail early on an unknown name
    layers = [L.Flatten()]
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(L.Linear(fan_in, fan_out, init=init))
        if index < len(sizes) - 2:
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(L.Dropout(dropout))
    return L.Sequential(*layers)


def mnist_cnn(num_classes=10):
    """The course-report MNIST CNN: 570,436 parameters for 10 classes.

    Shapes for a ``(N, 1, 28, 28)`` input (every conv is 3x3 with padding 1, so only
    the 2x2 max-pools shrink the image; the last pool floors 7 to 3)::

        conv 1->18   (N, 18, 28, 28)
        conv 18->36  (N, 36, 28, 28) -> pool (N, 36, 14, 14)
        conv 36->72  (N, 72, 14, 14) -> pool (N, 72, 7, 7)
        conv 72->72  (N, 72, 7, 7)   -> pool (N, 72, 3, 3)
        flatten 648 -> Linear 750 -> Linear num_classes

    Every conv and the hidden Linear are followed by ReLU.
    """
    num_classes = checks.positive_int(num_classes, "num_classes", "mnist_cnn")
    return L.Sequential(
        L.Conv2d(1, 18, 3, padding=1), L.ReLU(),
        L.Conv2d(18, 36, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(36, 72, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(72, 72, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(72 * 3 * 3, 750), L.ReLU(),
        L.Linear(750, num_classes),
    )


def tiny_cnn(num_classes=10):
    """A 2,034-parameter MNIST CNN (the report's "about 2,066") that reaches ~97 % test.

    Three 3x3 conv -> BatchNorm -> ReLU stages (1->8->8->16 channels, two 2x2 max-pools),
    global average pooling to ``(N, 16)`` and one Linear. The convs have no bias: the
    BatchNorm that follows subtracts the mean, which would cancel it. Input ``(N, 1, H, W)``
    of any size (28x28 for MNIST) thanks to the global pooling.
    """
    num_classes = checks.positive_int(num_classes, "num_classes", "tiny_cnn")

    def conv_bn_relu(in_channels, out_channels):
        return [L.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                L.BatchNorm2d(out_channels), L.ReLU()]

    return L.Sequential(
        *conv_bn_relu(1, 8),
        *conv_bn_relu(8, 8), L.MaxPool2d(2),
        *conv_bn_relu(8, 16), L.MaxPool2d(2),
        L.GlobalAvgPool2d(),
        L.Linear(16, num_classes),
    )


__all__ = ["mlp", "mnist_cnn", "tiny_cnn"]

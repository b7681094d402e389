"""Small MNIST models: the MLP, the 570k-parameter CNN and a ~2k-parameter CNN.

Each builder returns a :class:`~minidl.layers.Sequential`, so ``model.summary((1, 28, 28))``
prints one row per layer. Also here: :func:`make_activation`, the name -> layer factory the
other model builders share.
"""
from .. import layers as L
from ..module import positive_int

#: Activation names accepted by every model builder, with their layer constructors.
ACTIVATIONS = {
    "relu": lambda: L.ReLU(),
    "leaky_relu": lambda: L.LeakyReLU(0.01),
    "elu": lambda: L.ELU(1.0),
    "gelu": lambda: L.GELU(),
    "tanh": lambda: L.Tanh(),
    "sigmoid": lambda: L.Sigmoid(),
}


def make_activation(name):
    """A new activation layer from its name ("relu", "leaky_relu", "elu", "gelu", ...).

    Every call returns a fresh layer: a layer caches its own forward input for
    backward, so one instance must never be used twice in a network.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"make_activation: unknown name {name!r}; "
                         f"choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _check_positive_int(owner, label, value):
    return positive_int(value, label, owner)


def _check_probability(owner, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: dropout must be in [0, 1), got {value!r}")
    return float(value)


def mlp(sizes, activation="relu", init="glorot_uniform", dropout=0.0):
    """Multi-layer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` (logits out).

    ``mlp([784, 512, 512, 10])`` is the MNIST MLP of the examples. Input ``(N, ...)`` is
    flattened first, so ``(N, 1, 28, 28)`` images go in as they are. Each hidden layer is
    ``Linear -> activation [-> Dropout(dropout)]``; the last Linear has no activation.
    ``init`` is the weight initialiser of every Linear (biases start at zero).
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs at least an input and an output size, got {sizes!r}")
    sizes = [_check_positive_int("mlp", f"sizes[{i}]", s) for i, s in enumerate(sizes)]
    dropout = _check_probability("mlp", dropout)
    make_activation(activation)  # fail early on an unknown name
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
    num_classes = _check_positive_int("mnist_cnn", "num_classes", num_classes)
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
    num_classes = _check_positive_int("tiny_cnn", "num_classes", num_classes)

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


__all__ = ["ACTIVATIONS", "make_activation", "mlp", "mnist_cnn", "tiny_cnn"]

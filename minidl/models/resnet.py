"""Residual networks: BasicBlock, Bottleneck, ResNet-18/34/50/101 and the issue's custom ResNet.

Names of parameters follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so a student can line a minidl state_dict up with a
PyTorch one key by key (minidl's Linear weight is ``(in, out)``: the transpose of torch's).

Parameter counts equal torchvision's: ResNet-18 with 1000 classes has 11,689,512; with
the CIFAR stem (3x3 conv, stride 1, no max-pool) and 10 classes it has 11,173,962.
"""
from .. import checks
from .. import layers as L
from ..module import Module
from .blocks import make_activation


def conv3x3(in_channels, out_channels, stride=1):
    """3x3 conv with padding 1 and no bias (a BatchNorm follows and has the shift)."""
    return L.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels, out_channels, stride=1):
    """1x1 conv without bias: channel mixing, and the projection shortcut."""
    return L.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def projection(in_channels, out_channels, stride):
    """Shortcut that matches a block's output shape: 1x1 conv with stride, then BatchNorm."""
    return L.Sequential(conv1x1(in_channels, out_channels, stride), L.BatchNorm2d(out_channels))


class _ResidualBlock(Module):
    """Shared forward/backward of the two blocks: ``y = act(body(x) + shortcut(x))``.

    ``body`` is the chain of child modules named in ``self.body_names``; ``downsample`` is
    the projection shortcut, or None for the identity. Nothing is cached here: each
    child caches what its own backward needs (``saved_for_backward(dy)`` still checks
    ``dy``, and fails with a clear message naming the block without a forward).
    Backward: ``d = act'(dy)``, then ``dx = body'(d) + shortcut'(d)`` (the sum rule of
    :class:`~minidl.layers.Residual`; identity shortcut: ``shortcut'(d) = d``).
    """

    input_shape = "(N, C, H, W)"
    body_names = ()

    def _body(self):
        return [getattr(self, name) for name in self.body_names]

    def forward(self, x):
        out = x
        for layer in self._body():
            out = layer(out)
        skip = x if self.downsample is None else self.downsample(x)
        return self.act_out(out + skip)

    def backward(self, dy):
        self.saved_for_backward(dy)
        d_sum = self.act_out.backward(dy)
        dx = d_sum
        for layer in reversed(self._body()):
            dx = layer.backward(dx)
        return dx + (d_sum if self.downsample is None else self.downsample.backward(d_sum))


class BasicBlock(_ResidualBlock):
    """ResNet-18/34 block: ``act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``.

    x: ``(N, in_channels, H, W)`` -> ``(N, channels, ceil(H/stride), ceil(W/stride))``.
    conv1 is 3x3 with ``stride``; conv2 is 3x3. The shortcut is the identity when shape is
    kept, else (stride != 1 or in_channels != channels) a 1x1 conv with stride + BatchNorm.
    """

    expansion = 1
    body_names = ("conv1", "bn1", "act1", "conv2", "bn2")

    def __init__(self, in_channels, channels, stride=1, activation="relu"):
        super().__init__()
        in_channels = checks.positive_int(in_channels, "in_channels", "BasicBlock")
        channels = checks.positive_int(channels, "channels", "BasicBlock")
        stride = checks.positive_int(stride, "stride", "BasicBlock")
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = L.BatchNorm2d(channels)
        self.act1 = make_activation(activation, type(self).__name__)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = L.BatchNorm2d(channels)
        needs_projection = stride != 1 or in_channels != channels
        self.downsample = projection(in_channels, channels, stride) if needs_projection else None
        self.act_out = make_activation(activation)


class Bottleneck(_ResidualBlock):
    """ResNet-50/101 block: 1x1 reduce -> 3x3 (with stride) -> 1x1 expand by 4, plus shortcut.

    x: ``(N, in_channels, H, W)`` -> ``(N, 4 * channels, ceil(H/stride), ceil(W/stride))``.
    The stride sits on the 3x3 conv (torchvision's "ResNet v1.5"). The shortcut is a 1x1
    conv with stride + BatchNorm unless the shape is kept.
    """

    expansion = 4
    body_names = ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3")

    def __init__(self, in_channels, channels, stride=1, activation="relu"):
        super().__init__()
        in_channels = checks.positive_int(in_channels, "in_channels", "Bottleneck")
        channels = checks.positive_int(channels, "channels", "Bottleneck")
        stride = checks.positive_int(stride, "stride", "Bottleneck")
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = L.BatchNorm2d(channels)
        self.act1 = make_activation(activation, type(self).__name__)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = L.BatchNorm2d(channels)
        self.act2 = make_activation(activation)
        self.conv3 = conv1x1(channels, out_channels)
        self.bn3 = L.BatchNorm2d(out_channels)
        needs_projection = stride != 1 or in_channels != out_channels
        self.downsample = projection(in_channels, out_channels, stride) if needs_projection else None
        self.act_out = make_activation(activation)


class ResNet(L.Sequential):
    """Stem -> four stages of residual blocks -> global average pool -> [Dropout] -> Linear.

    A Sequential whose children have torchvision's names (``conv1``, ``bn1``, ``layer1`` ...
    ``fc``), run in that order. x: ``(N, 3, H, W)`` -> logits ``(N, num_classes)``.

    - ``block``: :class:`BasicBlock` or :class:`Bottleneck`; ``layers``: blocks per stage,
      e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    - ``cifar_stem=True``: 3x3 conv, stride 1, no max-pool (32x32 images keep their
      resolution into stage 1). False: ImageNet stem, 7x7 conv stride 2 + 3x3 max-pool
      stride 2.
    - ``width``: channels of stage 1 (64 standard; 128 gives the "2x filters" net); stage
      k has ``width * 2**(k-1)`` channels (times 4 at a Bottleneck's output).
    - ``dropout``: probability of a Dropout before the final Linear (0 = none).
    - ``activation``: "relu", "leaky_relu", "elu" or "gelu", used everywhere.
    """

    def __init__(self, block, layers, num_classes=10, cifar_stem=True, width=64, dropout=0.0,
                 activation="relu"):
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise ValueError(f"ResNet: block must be BasicBlock or Bottleneck, got {block!r}")
        layers = [checks.positive_int(n, f"layers[{i}]", "ResNet") for i, n in enumerate(layers)]
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give 4 stage lengths, got {layers!r}")
        num_classes = checks.positive_int(num_classes, "num_classes", "ResNet")
        width = checks.positive_int(width, "width", "ResNet")
        cifar_stem = checks.boolean(cifar_stem, "cifar_stem", "ResNet")
        dropout = checks.real_number(dropout, "dropout", "ResNet", 0.0, 1.0, high_open=True)
        make_activation(activation, "ResNet")  # fail early on an unknown name

        if cifar_stem:
            self.conv1 = conv3x3(3, width)
        else:
            self.conv1 = L.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = L.BatchNorm2d(width)
        self.act1 = make_activation(activation, type(self).__name__)
        if not cifar_stem:
            self.maxpool = L.MaxPool2d(3, stride=2, padding=1)

        in_channels = width
        for stage, num_blocks in enumerate(layers):
            channels = width * 2 ** stage
            stride = 1 if stage == 0 else 2
            blocks = []
            for index in range(num_blocks):
                blocks.append(block(in_channels, channels, stride if index == 0 else 1, activation))
                in_channels = channels * block.expansion
            setattr(self, f"layer{stage + 1}", L.Sequential(*blocks))

        self.avgpool = L.GlobalAvgPool2d()
        if dropout > 0:
            self.dropout = L.Dropout(dropout)
        self.fc = L.Linear(in_channels, num_classes)


def resnet18(num_classes=10, cifar_stem=True, width=64, dropout=0.0, activation="relu"):
    """ResNet-18: BasicBlocks (2, 2, 2, 2). CIFAR stem, 10 classes: 11,173,962 parameters."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, cifar_stem, width, dropout, activation)


def resnet34(num_classes=10, cifar_stem=True, width=64, dropout=0.0, activation="relu"):
    """ResNet-34: BasicBlocks (3, 4, 6, 3). CIFAR stem, 10 classes: 21,282,122 parameters."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, cifar_stem, width, dropout, activation)


def resnet50(num_classes=10, cifar_stem=True, width=64, dropout=0.0, activation="relu"):
    """ResNet-50: Bottlenecks (3, 4, 6, 3). CIFAR stem, 10 classes: 23,520,842 parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, cifar_stem, width, dropout, activation)


def resnet101(num_classes=10, cifar_stem=True, width=64, dropout=0.0, activation="relu"):
    """ResNet-101: Bottlenecks (3, 4, 23, 3). CIFAR stem, 10 classes: 42,512,970 parameters."""
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes, cifar_stem, width, dropout, activation)


def custom_resnet(num_classes=10, use_bn=True, use_relu=True, width=64):
    """The issue's custom ResNet (CIFAR-10, 73 % val; 40 % without ReLU, 66 % without BN).

    x: ``(N, 3, H, W)`` -> logits ``(N, num_classes)``; with ``width=64`` (the report's)::

        stem     conv3x3 3->64, 64->128, 128->256 (each conv -> BN -> ReLU), max-pool 2
        block1   BasicBlock 256->256
        block2   BasicBlock 256->512, stride 2 (projection shortcut)
        block3   BasicBlock 512->1024, stride 2 (projection shortcut)
        head     global average pool -> Linear 1024->128 -> BatchNorm1d -> ReLU -> Linear 128->classes

    Other widths scale every channel count by ``width / 64`` (small ones for tests).
    ``use_bn=False`` drops every BatchNorm (the convs then get biases, which BN made
    redundant); ``use_relu=False`` makes every activation the identity (a linear network
    apart from the max-pools), the ablations of the report.
    """
    num_classes = checks.positive_int(num_classes, "num_classes", "custom_resnet")
    width = checks.positive_int(width, "width", "custom_resnet")
    use_bn = checks.boolean(use_bn, "use_bn", "custom_resnet")
    use_relu = checks.boolean(use_relu, "use_relu", "custom_resnet")
    w1, w2, w4, w8, w16 = width, 2 * width, 4 * width, 8 * width, 16 * width

    def norm2d(channels):
        return L.BatchNorm2d(channels) if use_bn else L.Identity()

    def act():
        return L.ReLU() if use_relu else L.Identity()

    def conv(in_channels, out_channels, kernel_size=3, stride=1):
        return L.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                        padding=kernel_size // 2, bias=not use_bn)

    def block(in_channels, out_channels, stride):
        body = L.Sequential(conv(in_channels, out_channels, 3, stride), norm2d(out_channels), act(),
                            conv(out_channels, out_channels), norm2d(out_channels))
        shortcut = None
        if stride != 1 or in_channels != out_channels:
            shortcut = L.Sequential(conv(in_channels, out_channels, 1, stride), norm2d(out_channels))
        return L.Sequential(L.Residual(body, shortcut), act())

    return L.Sequential(
        conv(3, w1), norm2d(w1), act(),
        conv(w1, w2), norm2d(w2), act(),
        conv(w2, w4), norm2d(w4), act(),
        L.MaxPool2d(2),
        block(w4, w4, 1),
        block(w4, w8, 2),
        block(w8, w16, 2),
        L.GlobalAvgPool2d(),
        L.Linear(w16, w2, bias=not use_bn),
        L.BatchNorm1d(w2) if use_bn else L.Identity(),
        act(),
        L.Linear(w2, num_classes),
    )


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "conv1x1", "conv3x3", "custom_resnet",
           "projection", "resnet18", "resnet34", "resnet50", "resnet101"]

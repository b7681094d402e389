"""Small, fast CIFAR-10 networks for time-to-accuracy: ResNet-9 and an airbench-style net.

- :func:`resnet9`: David Page's DAWNBench ResNet-9 (94 % in 24 epochs),
  ``conv64 -> [conv128, pool, res-block] -> [conv256, pool] -> [conv512, pool, res-block]
  -> global max-pool -> Linear x 0.125``.
- :func:`airbench`: Keller Jordan's airbench94 layout: a frozen 2x2 patch-whitening conv
  (set by :func:`whitening_init`), three conv -> max-pool -> BN -> GELU groups of widths
  64/256/256 with BatchNorm that learns no scale, then max-pool -> Linear (no bias) x 1/9.

The heads' fixed logit scaling, :class:`Scale`, lives here too; their global max-pool is
:class:`minidl.layers.GlobalMaxPool2d`.
"""
import numpy as np

from .. import backend, checks
from .. import layers as L
from ..layers import GlobalMaxPool2d
from ..module import Module


class Scale(Module):
    """``y = multiplier * x`` for a fixed number (not trained); ``dx = multiplier * dy``.

    Scaling the logits by 0.125 or 1/9, as the fast recipes do, acts like a lower
    temperature at initialisation and a smaller effective learning rate on the head.
    The multiplier is a Python float, so float32 stays float32.
    """

    input_shape = "(N, ...)"

    def __init__(self, multiplier):
        super().__init__()
        self.multiplier = checks.real_number(multiplier, "multiplier", "Scale")
        if self.multiplier == 0:
            raise ValueError("Scale: multiplier must be a non-zero real number, got 0")

    def forward(self, x):
        return x * self.multiplier

    def backward(self, dy):
        self.saved_for_backward(dy)  # nothing saved: this checks dy and that forward ran
        return dy * self.multiplier

    def extra_repr(self):
        return f"{self.multiplier:g}"


def _conv_bn_relu(in_channels, out_channels):
    return [L.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            L.BatchNorm2d(out_channels), L.ReLU()]


class ResNet9(L.Sequential):
    """Page's ResNet-9. x: ``(N, 3, H, W)`` (32x32 for CIFAR) -> logits ``(N, num_classes)``.

    Every conv is 3x3, padding 1, no bias, followed by BatchNorm and ReLU::

        prep    conv 3->64                                         (N, 64, 32, 32)
        layer1  conv 64->128, max-pool 2, residual(conv, conv)     (N, 128, 16, 16)
        layer2  conv 128->256, max-pool 2                          (N, 256, 8, 8)
        layer3  conv 256->512, max-pool 2, residual(conv, conv)    (N, 512, 4, 4)
        head    global max-pool, Linear 512->classes (no bias), x 0.125

    The residual blocks keep the shape, so their shortcut is the identity.
    6,573,120 parameters for 10 classes.
    """

    def __init__(self, num_classes=10, width=64, head_scale=0.125):
        super().__init__()
        num_classes = checks.positive_int(num_classes, "num_classes", "ResNet9")
        width = checks.positive_int(width, "width", "ResNet9")
        w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width

        def residual(channels):
            return L.Residual(L.Sequential(*_conv_bn_relu(channels, channels),
                                           *_conv_bn_relu(channels, channels)))

        self.prep = L.Sequential(*_conv_bn_relu(3, w1))
        self.layer1 = L.Sequential(*_conv_bn_relu(w1, w2), L.MaxPool2d(2), residual(w2))
        self.layer2 = L.Sequential(*_conv_bn_relu(w2, w3), L.MaxPool2d(2))
        self.layer3 = L.Sequential(*_conv_bn_relu(w3, w4), L.MaxPool2d(2), residual(w4))
        self.pool = GlobalMaxPool2d()
        self.fc = L.Linear(w4, num_classes, bias=False)
        self.scale = Scale(head_scale)


def resnet9(num_classes=10, width=64, head_scale=0.125):
    """Page's DAWNBench ResNet-9 (see :class:`ResNet9`)."""
    return ResNet9(num_classes, width, head_scale)


def dirac_init(conv):
    """Make the first filters of an odd-sized conv copy their input channel.

    With ``k = min(out_channels, in_channels)``: ``weight[i, i, centre] = 1`` for i < k and
    the rest of those k filters zero (torch.nn.init.dirac_ on ``weight[:in_channels]``,
    as airbench does); filters k.. keep their random init. At the start of training the
    conv then passes its input through, which airbench found to speed up early training.
    """
    weight = conv.weight.data
    out_channels, in_channels, kh, kw = weight.shape
    if kh % 2 == 0 or kw % 2 == 0 or getattr(conv, "groups", 1) != 1:
        raise ValueError(f"dirac_init: needs an odd kernel and groups=1, got weight of shape "
                         f"{tuple(weight.shape)}")
    xp = backend.get_array_module(weight)
    identity = min(out_channels, in_channels)
    weight[:identity] = 0
    index = xp.arange(identity)
    weight[index, index, kh // 2, kw // 2] = 1


class ConvGroup(L.Sequential):
    """airbench block: conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU.

    x: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H // 2, W // 2)``. Convs are 3x3,
    padding 1, no bias, dirac-initialised; the BatchNorms learn a shift but no scale
    (a scale in front of the next conv is redundant: the conv weights can absorb it).
    Pooling before the BN makes the BN and the GELU run on a quarter of the pixels.
    """

    def __init__(self, in_channels, out_channels, bn_momentum=0.4, bn_eps=1e-12):
        super().__init__()
        self.conv1 = L.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = L.MaxPool2d(2)
        self.norm1 = L.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum, weight=False)
        self.act1 = L.GELU()
        self.conv2 = L.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = L.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum, weight=False)
        self.act2 = L.GELU()
        dirac_init(self.conv1)
        dirac_init(self.conv2)


class Airbench(L.Sequential):
    """airbench94-style net. x: ``(N, 3, H, W)`` (32x32) -> logits ``(N, num_classes)``::

        whiten  conv 2x2, 3->24, no padding (frozen; see whitening_init)   (N, 24, 31, 31)
        act     GELU
        block1  ConvGroup 24->64                                           (N, 64, 15, 15)
        block2  ConvGroup 64->256                                          (N, 256, 7, 7)
        block3  ConvGroup 256->256                                         (N, 256, 3, 3)
        head    global max-pool, Linear 256->classes (no bias), x 1/9

    ``whiten.weight`` is meant to stay fixed at the value :func:`whitening_init` gives it:
    leave it out of the optimizer (its bias is trained). BN momentum 0.4 in PyTorch's
    convention (airbench's "0.6" is the weight of the old running value), eps 1e-12.
    1,971,640 parameters for 10 classes.
    """

    def __init__(self, num_classes=10, widths=(64, 256, 256), bn_momentum=0.4, bn_eps=1e-12):
        super().__init__()
        num_classes = checks.positive_int(num_classes, "num_classes", "Airbench")
        widths = [checks.positive_int(w, f"widths[{i}]", "Airbench") for i, w in enumerate(widths)]
        if len(widths) != 3:
            raise ValueError(f"Airbench: widths must give 3 block widths, got {widths!r}")
        whiten_channels = 2 * 3 * 2 * 2  # +/- each eigenvector of the 12-dim patch covariance
        self.whiten = L.Conv2d(3, whiten_channels, 2, padding=0, bias=True)
        self.whiten.bias.data[...] = 0  # as airbench; it trains for the first few epochs only
        self.act = L.GELU()
        self.block1 = ConvGroup(whiten_channels, widths[0], bn_momentum, bn_eps)
        self.block2 = ConvGroup(widths[0], widths[1], bn_momentum, bn_eps)
        self.block3 = ConvGroup(widths[1], widths[2], bn_momentum, bn_eps)
        self.pool = GlobalMaxPool2d()
        self.fc = L.Linear(widths[2], num_classes, bias=False)
        self.scale = Scale(1 / 9)


def airbench(num_classes=10, widths=(64, 256, 256), bn_momentum=0.4, bn_eps=1e-12):
    """The airbench94-style network (see :class:`Airbench`); call :func:`whitening_init` next."""
    return Airbench(num_classes, widths, bn_momentum, bn_eps)


def _patches(images, kh, kw):
    """All ``kh x kw`` patches (stride 1, no padding) of ``images (N, C, H, W)``, flattened.

    Returns ``(N * H' * W', C * kh * kw)`` with the features ordered (C, kh, kw), the
    order of a conv weight ``(C_out, C, kh, kw)`` flattened per filter.
    """
    xp = backend.get_array_module(images)
    n, c, h, w = images.shape
    out_h, out_w = h - kh + 1, w - kw + 1
    shifted = [images[:, :, i:i + out_h, j:j + out_w] for i in range(kh) for j in range(kw)]
    patches = xp.stack(shifted, axis=2)  # (N, C, kh*kw, H', W')
    return patches.transpose(0, 3, 4, 1, 2).reshape(n * out_h * out_w, c * kh * kw)


def whitening_init(conv, images, eps=5e-4, chunk_size=1024):
    """Set ``conv.weight`` to a patch-whitening transform of ``images``, ± each direction.

    ``images``: ``(N, C, H, W)`` float, preprocessed as the network will see them (e.g.
    normalised training images; a few thousand suffice). With ``P`` the patches of the
    conv's kernel size flattened to ``d = C * kh * kw`` values, the (uncentred) covariance
    ``S = P^T P / len(P)`` is eigendecomposed with ``xp.linalg.eigh``: ``S = V diag(l) V^T``.
    Filter k is ``v_k / sqrt(l_k + eps)`` (largest eigenvalue first), so the conv outputs
    decorrelated, unit-variance coordinates of each patch; filters d..2d-1 are their
    negatives, so a following GELU loses nothing. Requires ``out_channels == 2 d``.
    The covariance is accumulated in float64 over chunks of ``chunk_size`` images (the
    patches of 5,000 CIFAR images would take ~0.5 GB at once); the weight keeps its dtype
    and device. Returns the eigenvalues (descending, a NumPy array) for inspection.
    """
    weight = conv.weight.data
    out_channels, in_channels, kh, kw = weight.shape
    dim = in_channels * kh * kw
    if out_channels != 2 * dim:
        raise ValueError(f"whitening_init: a {kh}x{kw} conv on {in_channels} channels needs "
                         f"2 * {dim} = {2 * dim} output channels, got {out_channels}")
    if getattr(images, "ndim", None) != 4 or images.shape[1] != in_channels:
        raise ValueError(f"whitening_init: expected images of shape (N, {in_channels}, H, W), "
                         f"got {tuple(getattr(images, 'shape', ()))}")
    if images.shape[2] < kh or images.shape[3] < kw or images.shape[0] == 0:
        raise ValueError(f"whitening_init: images of shape {tuple(images.shape)} hold no "
                         f"{kh}x{kw} patch")
    xp = backend.get_array_module(images)
    covariance = xp.zeros((dim, dim), dtype=np.float64)
    count = 0
    for start in range(0, images.shape[0], chunk_size):
        patches = _patches(images[start:start + chunk_size], kh, kw).astype(np.float64)
        covariance += patches.T @ patches
        count += patches.shape[0]
    eigenvalues, eigenvectors = xp.linalg.eigh(covariance / count)  # ascending order
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = (eigenvectors / xp.sqrt(eigenvalues + eps)).T.reshape(dim, in_channels, kh, kw)
    whitening = xp.concatenate([filters, -filters], axis=0)
    weight[...] = backend.to_device(whitening, backend.device_of(weight)).astype(weight.dtype)
    return backend.to_numpy(eigenvalues)


__all__ = ["Airbench", "ConvGroup", "ResNet9", "Scale", "airbench",
           "dirac_init", "resnet9", "whitening_init"]

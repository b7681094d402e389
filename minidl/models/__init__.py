"""The model zoo, built only from minidl layers.

Each builder returns a Module; ``model.summary(input_shape)`` prints its layers::

    from minidl import models
    net = models.resnet18(num_classes=10)          # CIFAR stem: 11,173,962 parameters
    net.summary((3, 32, 32))

- Shared (:mod:`.blocks`): :data:`ACTIVATIONS`, :func:`make_activation`.
- MNIST (:mod:`.mlp`): :func:`mlp`, :func:`mnist_cnn` (570,436 parameters), :func:`tiny_cnn`.
- ResNets (:mod:`.resnet`): :class:`BasicBlock`, :class:`Bottleneck`, :func:`resnet18`,
  :func:`resnet34`, :func:`resnet50`, :func:`resnet101`, :func:`custom_resnet`.
- GPT (:mod:`.gpt`): :func:`gpt`, nanoGPT's decoder-only Transformer (weight tying).
- VGG (:mod:`.vgg`): :func:`vgg11` (VGG-A) with ``batch_norm=True/False``.
- Fast CIFAR nets (:mod:`.fast`): :func:`resnet9`, :func:`airbench` with
  :func:`whitening_init`, and the glue layer :class:`Scale`.
"""
from .blocks import ACTIVATIONS, make_activation
from .fast import (Airbench, ConvGroup, ResNet9, Scale, airbench, dirac_init, resnet9,
                   whitening_init)
from .gpt import GPT, gpt
from .mlp import mlp, mnist_cnn, tiny_cnn
from .resnet import (BasicBlock, Bottleneck, ResNet, custom_resnet, resnet18, resnet34, resnet50,
                     resnet101)
from .vgg import VGG_A, vgg11

__all__ = [
    "ACTIVATIONS", "Airbench", "BasicBlock", "Bottleneck", "ConvGroup", "ResNet", "ResNet9",
    "Scale", "VGG_A", "airbench", "custom_resnet", "dirac_init",
    "make_activation", "mlp", "mnist_cnn", "resnet9", "resnet18", "resnet34", "resnet50",
    "resnet101", "tiny_cnn", "vgg11", "whitening_init",
    "GPT", "gpt",
]

"""Data: canonical data sets, mini-batch loading, batch-vectorised augmentation.

    (x_train, y_train), (x_test, y_test) = load_cifar10()
    augment = Compose([RandomCrop(32, padding=4, padding_mode="reflect"),
                       RandomHorizontalFlip(), ToFloat(), Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    train = DataLoader(x_train, y_train, batch_size=128, transform=augment, seed=0)
    for xb, yb in train:
        ...
"""
from .datasets import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, FASHION_MNIST_CLASSES,
                       FASHION_MNIST_MEAN, FASHION_MNIST_STD, MNIST_CLASSES, MNIST_MEAN,
                       MNIST_STD, DatasetError, data_root, load_cifar10, load_fashion_mnist,
                       load_mnist)
from .loader import DataLoader, train_val_split
from .text import BlockSampler, CharVocab, load_tiny_shakespeare, split_text
from .transforms import (AlternatingFlip, Compose, Cutout, Normalize, RandomCrop,
                         RandomHorizontalFlip, RandomTranslate, ToFloat)

__all__ = [
    "AlternatingFlip", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "Compose", "Cutout",
    "DataLoader", "DatasetError", "FASHION_MNIST_CLASSES", "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD", "MNIST_CLASSES", "MNIST_MEAN", "MNIST_STD", "Normalize",
    "RandomCrop", "RandomHorizontalFlip", "RandomTranslate", "ToFloat", "data_root",
    "load_cifar10", "load_fashion_mnist", "load_mnist", "train_val_split",
    "BlockSampler", "CharVocab", "load_tiny_shakespeare", "split_text",
]

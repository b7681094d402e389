"""The PyTorch reference of the airbench recipe (``benchmarks/airbench_torch.py``), which
README's CIFAR-10 table compares minidl with: it must whiten exactly as minidl does and
train end to end. Skipped without PyTorch (an optional reference)."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minidl import data  # noqa: E402
from minidl import layers as L  # noqa: E402
from minidl import models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "benchmarks"), os.path.join(ROOT, "examples")]
import airbench_torch  # noqa: E402
import cifar_common  # noqa: E402


def test_whitening_filters_equal_minidl_up_to_sign():
    # Distinct eigenvalues (random images), so each filter is unique up to its sign.
    images = np.random.default_rng(0).standard_normal((64, 3, 8, 8)) * [[[0.5]], [[1.0]], [[2.0]]]
    conv = L.Conv2d(3, 24, 2, bias=True)
    conv.to(np.float64)
    models.whitening_init(conv, images)
    reference = torch.nn.Conv2d(3, 24, 2, bias=True)
    airbench_torch.init_whitening(reference, torch.as_tensor(images))
    ours = conv.weight.data.reshape(24, -1)
    theirs = reference.weight.detach().double().numpy().reshape(24, -1)
    signs = np.sign(np.sum(ours * theirs, axis=1))
    assert np.all(signs != 0)
    np.testing.assert_allclose(ours, signs[:, None] * theirs, rtol=1e-4, atol=1e-5)


def test_reference_learns_the_synthetic_data(monkeypatch):
    monkeypatch.setitem(airbench_torch.HP, "batch_size", 64)
    monkeypatch.setitem(airbench_torch.HP, "whitening_images", 256)
    mean = torch.tensor(data.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.CIFAR10_STD).view(1, 3, 1, 1)

    def prepare(x, y):
        return (torch.as_tensor(x).float() / 255 - mean) / std, torch.as_tensor(y).long()

    train, test = cifar_common.synthetic_cifar10(512, 256, seed=0)
    accuracy = airbench_torch.run(0, 2, "cpu", prepare(*train), prepare(*test),
                                  widths=(16, 32, 32))
    assert accuracy > 0.4  # chance is 0.1; 16 steps reach about 0.7

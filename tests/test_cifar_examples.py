"""The CIFAR-10 example scripts: each runs end to end with ``--smoke`` (synthetic
CIFAR-shaped data, tiny widths, a few steps) and writes its outputs; plus in-process
checks of the pieces with arithmetic of their own (TTA views, airbench's lr translation,
the lookahead, the synthetic data)."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import minidl
from minidl import layers as L
from minidl import models

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import cifar10_fast  # noqa: E402  (needs the examples folder on the path)
import cifar10_resnet  # noqa: E402
import cifar_common  # noqa: E402


def run_script(script, out, *extra):
    command = [sys.executable, os.path.join(EXAMPLES, script), "--smoke", "--quiet",
               "--out", str(out), *extra]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "MINIDL_DEVICE": "cpu"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-4000:]
    return completed.stdout


def check_result(path, epochs):
    result = json.loads(path.read_text())
    assert 0.0 <= result["test_top1"] <= result["test_top5"] <= 1.0
    assert result["test_acc"] == result["test_top1"]
    assert result["epochs"] == epochs
    assert result["data"] == "synthetic smoke data"
    return result


def check_history(path, epochs):
    history = json.loads(path.read_text())
    assert history["epoch"] == list(range(1, epochs + 1))
    for column in ("train_loss", "train_top1", "train_top5", "val_top1", "val_top5"):
        assert all(value is not None and np.isfinite(value) for value in history[column]), column
    return history


# ---------------------------------------------------------------------------- scripts
@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar10_resnet")
    return out, run_script("cifar10_resnet.py", out)


def test_resnet_recipe_smoke(resnet_run):
    out, stdout = resnet_run
    for name in ("history.json", "history.csv", "curves.png", "result.txt", "weights.npz"):
        assert (out / f"resnet18_{name}").is_file(), name
    result = check_result(out / "resnet18_result.json", epochs=2)
    assert result["reported_top1"] == 94.93
    check_history(out / "resnet18_history.json", epochs=2)
    assert "resnet18: test top-1" in stdout and "top-5" in stdout


def test_visualize_loads_trained_weights(resnet_run, tmp_path):
    weights = resnet_run[0] / "resnet18_weights.npz"
    stdout = run_script("visualize.py", tmp_path, "--weights", str(weights))
    for name in ("filters.png", "feature_maps.png", "confusion_matrix.png"):
        assert (tmp_path / name).is_file(), name
    result = json.loads((tmp_path / "visualize_result.json").read_text())
    # The weights are those the ResNet run tested: same test images, same accuracy.
    trained = json.loads((resnet_run[0] / "resnet18_result.json").read_text())
    assert result["test_top1"] == pytest.approx(trained["test_top1"])
    assert result["top5_error"] == pytest.approx(1 - result["test_top5"])
    assert "top-5 error" in stdout


@pytest.mark.parametrize("recipe, tta", [("airbench", 2), ("resnet9", 1)])
def test_fast_recipes_smoke(tmp_path, recipe, tta):
    stdout = run_script("cifar10_fast.py", tmp_path, "--recipe", recipe)
    result = check_result(tmp_path / f"{recipe}_result.json", epochs=2)
    assert result["tta"] == tta
    check_history(tmp_path / f"{recipe}_history.json", epochs=2)
    assert (tmp_path / f"{recipe}_curves.png").is_file()
    assert "final test accuracy with TTA" in stdout and "94 %" in stdout


@pytest.mark.parametrize("name, has_bn, has_relu", [("custom", True, True),
                                                    ("custom_no_bn", False, True),
                                                    ("custom_no_relu", True, False)])
def test_custom_resnet_ablations_drop_what_they_name(name, has_bn, has_relu):
    kinds = {type(m) for _, m in cifar10_resnet.build_model(name, width=4).named_modules()}
    assert (L.BatchNorm2d in kinds) == has_bn
    assert (L.ReLU in kinds) == has_relu
    assert name in cifar10_resnet.REPORTED


def test_sweeps_smoke(tmp_path):
    # Two of the four sweeps: they exercise every loss and every optimizer; the
    # activation and weight-decay sweeps only change a constructor argument.
    stdout = run_script("cifar10_sweeps.py", tmp_path, "--tables", "loss,optimizer")
    summary = json.loads((tmp_path / "sweeps.json").read_text())
    assert list(summary) == ["loss", "optimizer"]
    assert sorted(summary["loss"]) == sorted(["CrossEntropy", "BCEWithLogits", "MSE", "Huber",
                                              "SoftMargin"])
    for variants in summary.values():
        for result in variants.values():
            assert 0.0 <= result["test_top1"] <= 1.0
    table = (tmp_path / "sweeps.md").read_text()
    assert "| SoftMargin | 87.3 |" in table and "| Adam | 69.6 |" in table
    assert "reported top-1" in stdout
    assert (tmp_path / "sweep_loss.png").is_file()
    # The baseline (CE + SGD) is trained once and its result shared by both tables.
    assert stdout.count("--- ") == 5 + 5
    assert "--- optimizer: SGD: same configuration as loss: CrossEntropy, result reused" in stdout
    assert summary["optimizer"]["SGD"] == summary["loss"]["CrossEntropy"]


def test_bn_study_smoke(tmp_path):
    run_script("bn_study.py", tmp_path)
    for name in ("bn_loss_landscape.png", "bn_gradient_predictiveness.png",
                 "bn_beta_smoothness.png", "bn_training.png"):
        assert (tmp_path / name).is_file(), name
    records = json.loads((tmp_path / "bn_study.json").read_text())["records"]
    assert [r["batch_norm"] for r in records] == [True, False]
    for record in records:
        assert record["probes"], record["label"]
        for probe in record["probes"]:
            assert len(probe["losses"]) == len(probe["grad_changes"]) == 2
            assert probe["beta"] >= 0


# ---------------------------------------------------------------------------- pieces
def test_synthetic_cifar10_shapes_and_classes():
    (x_train, y_train), (x_test, y_test) = cifar_common.synthetic_cifar10(64, 32, seed=3)
    assert x_train.shape == (64, 3, 32, 32) and x_train.dtype == np.uint8
    assert y_test.shape == (32,) and y_test.dtype == np.int64
    assert set(np.unique(y_train)) <= set(range(10))
    # The class colour fills the centre: equal labels give close centre means.
    centre = x_train[:, :, 8:24, 8:24].astype(float).mean(axis=(2, 3))
    same = [(i, j) for i in range(64) for j in range(i) if y_train[i] == y_train[j]]
    assert max(np.abs(centre[i] - centre[j]).max() for i, j in same) < 15


def test_tta_levels_average_the_documented_views():
    minidl.seed(0)
    model = L.Sequential(L.Flatten(), L.Linear(3 * 6 * 6, 4))
    model.to(np.float64)
    x = np.random.default_rng(1).standard_normal((5, 3, 6, 6))

    def logits(images):
        return images.reshape(len(images), -1) @ model[1].weight.data + model[1].bias.data

    def mirrored(images):
        return 0.5 * logits(images) + 0.5 * logits(images[..., ::-1])

    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    up_left, down_right = padded[:, :, :6, :6], padded[:, :, 2:, 2:]
    np.testing.assert_allclose(cifar10_fast.tta_logits(model, x, 0), logits(x))
    np.testing.assert_allclose(cifar10_fast.tta_logits(model, x, 1), mirrored(x))
    expected = 0.5 * mirrored(x) + 0.25 * mirrored(up_left) + 0.25 * mirrored(down_right)
    np.testing.assert_allclose(cifar10_fast.tta_logits(model, x, 2), expected)


def test_airbench_optimizer_translates_summed_loss_hyperparameters():
    model = models.airbench(10, widths=(8, 8, 8))
    optimizer, whiten_group = cifar10_fast.airbench_optimizer(
        model, batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0)
    weights, norm_biases, whiten_bias = optimizer.param_groups
    kilostep = 1024 * (1 + 1 / 0.15)
    # airbench: torch lr 11.5 / kilostep on a loss summed over 1024 images = 1024x that on a mean.
    assert weights["lr"] == pytest.approx(11.5 / kilostep * 1024)
    assert norm_biases["lr"] == pytest.approx(64 * weights["lr"])
    # lr * weight_decay = the decoupled decay per step, the same for every group.
    decay = 0.0153 * 1024 / kilostep
    for group in (weights, norm_biases, whiten_bias):
        assert group["lr"] * group["weight_decay"] == pytest.approx(decay)
        assert group["nesterov"] and group["momentum"] == 0.85
    assert whiten_group == 2 and whiten_bias["params"] == [model.whiten.bias]
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model.whiten.weight) not in trained
    assert len(trained) == len(model.parameters()) - 1


def test_scheduled_lookahead_pulls_towards_the_slow_weights():
    minidl.seed(0)
    model = L.Sequential(L.Linear(3, 2))
    start = model[0].weight.data.copy()
    lookahead = cifar10_fast.ScheduledLookahead(model, total_steps=10, every=5)
    model[0].weight.data += 1.0
    lookahead.after_step(3)           # not a multiple of 5: nothing happens
    np.testing.assert_allclose(model[0].weight.data, start + 1.0)
    lookahead.after_step(10)          # decay = 0.95**5 * (10/10)**3
    decay = 0.95 ** 5
    np.testing.assert_allclose(model[0].weight.data, start + (1 - decay), rtol=1e-6)
    model[0].weight.data += 5.0
    lookahead.finish()                # the final weights are the slow ones
    np.testing.assert_allclose(model[0].weight.data, start + (1 - decay), rtol=1e-6)


def test_airbench_recipe_freezes_the_whitening_bias_after_its_epochs():
    minidl.seed(0)
    args = SimpleNamespace(smoke=True, batch_size=16, lr=11.5, seed=0)
    images = cifar_common.synthetic_cifar10(32, 1)[0][0]
    recipe = cifar10_fast.airbench_recipe(args, dict(cifar10_fast.AIRBENCH), images, total_steps=20)
    model, optimizer = recipe.model, recipe.optimizer
    bias_group = optimizer.param_groups[2]
    x = cifar_common.normalize_array(images[:16])
    labels = np.arange(16) % 10

    def step():
        loss_fn = recipe.loss_fn
        loss_fn(model(x), labels)
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
        recipe.scheduler.step()

    recipe.on_epoch_start(3)           # still trained in epoch 3
    before = model.whiten.bias.data.copy()
    step()
    assert bias_group["lr"] > 0 and not np.array_equal(model.whiten.bias.data, before)
    whitening = model.whiten.weight.data.copy()
    recipe.on_epoch_start(4)           # frozen from epoch 4 on, through later scheduler steps
    before = model.whiten.bias.data.copy()
    step()
    step()
    assert bias_group["lr"] == 0.0 and optimizer.param_groups[0]["lr"] > 0
    np.testing.assert_array_equal(model.whiten.bias.data, before)
    np.testing.assert_array_equal(model.whiten.weight.data, whitening)

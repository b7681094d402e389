"""The examples: each runs end to end for a few steps on synthetic data; their --help,
progress output, output folder and missing-data messages."""
import argparse
import json
import math
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

CASES = [
    ("mnist_mlp.py", [], ["mlp_512_512_result.json", "mlp_512_512_curves.png",
                          "mlp_512_512_history.json"]),
    ("mnist_init.py", [], ["init_comparison.png", "init_zeros_result.json"]),
    ("gradcheck_eps.py", [], ["gradcheck_eps.png", "gradcheck_eps.json"]),
    ("mnist_cnn.py", [], ["cnn_result.json", "cnn_curves.png"]),
    ("mnist_cnn.py", ["--model", "tiny"], ["tiny_result.json"]),
]


@pytest.mark.parametrize("script, extra, outputs", CASES,
                         ids=[" ".join([c[0]] + c[1]) for c in CASES])
def test_example_smoke(tmp_path, script, extra, outputs):
    command = [sys.executable, os.path.join(EXAMPLES, script), "--smoke", "--quiet",
               "--out", str(tmp_path)] + extra
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "MINIDL_DEVICE": "cpu"})
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    for name in outputs:
        assert (tmp_path / name).is_file(), f"{script} did not write {name}"
    for name in outputs:
        if name.endswith("_result.json"):
            result = json.loads((tmp_path / name).read_text())
            assert 0.0 <= result["test_acc"] <= 1.0 and math.isfinite(result["test_loss"])
    if script == "gradcheck_eps.py":  # float64 centered differences agree to ~1e-10
        errors = json.loads((tmp_path / "gradcheck_eps.json").read_text())
        assert min(errors["float64"].values()) < 1e-7
    if script == "mnist_init.py":  # zero init: nothing but the last bias learns
        history = json.loads((tmp_path / "init_zeros_history.json").read_text())
        assert all(abs(loss - math.log(10)) < 0.05 for loss in history["train_loss"])


# ---------------------------------------------------------------------------- CLI and output
def _run(script, *args, env=None):
    command = [sys.executable, os.path.join(EXAMPLES, script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MINIDL_DEVICE": "cpu", **(env or {})})


def test_help_keeps_the_layout_and_shows_defaults_and_choices():
    completed = _run("mnist_mlp.py", "--help")
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    # The docstring's command examples keep their own lines and indentation.
    assert "\n    python examples/mnist_mlp.py --hidden 256 256" in text
    assert "(default: 60)" in text and "(default: runs/mnist_mlp)" in text
    assert "(default: 0)" in text  # a zero default is still shown
    assert "he_normal" in " ".join(text.split())  # --init lists its choices
    assert "(default: glorot_uniform)" in " ".join(text.split())
    assert "(default: None)" not in text and "(default: False)" not in text


def test_unknown_init_is_refused_by_the_parser():
    completed = _run("mnist_mlp.py", "--smoke", "--init", "gloroot")
    assert completed.returncode == 2
    assert "invalid choice: 'gloroot'" in completed.stderr


def test_log_output_has_one_line_per_epoch_and_says_where_the_files_are(tmp_path):
    """Captured output is not a terminal: no progress bar, one plain line per epoch."""
    completed = _run("mnist_mlp.py", "--smoke", "--epochs", "1", "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 1 and "train_loss" in epoch_lines[0] and "val_top1" in epoch_lines[0]
    assert "\r" not in completed.stderr and "batch/s" not in completed.stderr
    written = lines[-1]
    assert written.startswith(f"wrote 5 files to {tmp_path}{os.sep}:"), written
    for name in sorted(os.listdir(tmp_path)):
        assert name in written


# ---------------------------------------------------------------------------- missing data
@pytest.fixture
def common_module(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    import common
    return common


def _no_download(*args, **kwargs):
    raise AssertionError("the loader tried to download")


def test_missing_data_offline_fails_at_once_with_the_fix(common_module, monkeypatch, tmp_path):
    from minidl.data import datasets
    monkeypatch.setattr(datasets, "_download", _no_download)
    monkeypatch.setattr(common_module, "_no_network_reason", lambda url: "no network (test)")
    args = argparse.Namespace(data_dir=str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        common_module.load_dataset("mnist", args)
    message = str(stop.value.code)
    assert f"not in {tmp_path}, and cannot be downloaded: no network (test)" in message
    assert message.splitlines()[1].startswith("Fix:")
    assert "MINIDL_DATA=/path/to/mnist python examples/" in message
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in message


def test_failed_download_gives_the_fix_before_the_details(common_module, monkeypatch, tmp_path):
    from minidl.data import datasets

    def refuse(remote, mirrors, folder):
        raise datasets.DatasetError(f"could not download {remote.filename}; tried: (test)")
    monkeypatch.setattr(datasets, "_download", refuse)
    monkeypatch.setattr(common_module, "_no_network_reason", lambda url: None)
    args = argparse.Namespace(data_dir=str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        common_module.load_dataset("cifar10", args)
    message = str(stop.value.code)
    assert message.index("Fix:") < message.index("details:") < message.index("could not download")
    assert "cifar-10-binary.tar.gz" in message.split("details:")[0]


def test_damaged_file_names_it(common_module, tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not a tar file")
    args = argparse.Namespace(data_dir=str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        common_module.load_dataset("cifar10", args)
    assert "cifar-10-binary.tar.gz" in str(stop.value.code)

"""Smoke tests: every example runs end to end for a few steps on synthetic data."""
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

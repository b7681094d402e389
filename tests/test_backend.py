"""Backend: array module dispatch, devices, dtype, seeding; and the package's hygiene."""
import os
import re

import numpy as np
import pytest

import minidl
from minidl import backend

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minidl")


def test_get_array_module_numpy(xp):
    assert minidl.get_array_module(xp.zeros(3)) is xp
    assert minidl.get_array_module([1, 2]) is np


def test_to_numpy_and_to_device_round_trip(xp):
    device = "gpu" if xp is not np else "cpu"
    moved = minidl.to_device(np.arange(4.0), device)
    assert minidl.get_array_module(moved) is xp
    np.testing.assert_array_equal(minidl.to_numpy(moved), np.arange(4.0))


def test_use_device_validates_name():
    with pytest.raises(ValueError, match="device must be one of"):
        minidl.use_device("tpu")


@pytest.mark.skipif(minidl.gpu_available(), reason="checks the no-GPU message")
def test_gpu_request_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="device 'gpu' requested"):
        minidl.use_device("gpu")


def test_environment_variable_selects_device(monkeypatch):
    monkeypatch.setitem(backend._state, "device", None)
    monkeypatch.setenv("MINIDL_DEVICE", "CPU")
    assert minidl.current_device() == "cpu"


def test_default_dtype_rejects_non_float():
    with pytest.raises(ValueError, match="float32 or float64"):
        minidl.set_default_dtype(np.int32)


def test_seed_and_rng_state_round_trip():
    minidl.seed(3)
    state = backend.get_rng_state()
    first = backend.rng().random(4)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(backend.rng().random(4), first)
    minidl.seed(3)
    np.testing.assert_array_equal(backend.rng().random(4), first)


def _package_sources():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield path, f.read()


def test_no_pickle_anywhere_in_the_package():
    offenders = [path for path, text in _package_sources()
                 if re.search(r"import pickle|allow_pickle\s*=\s*True|pickle\.load", text)]
    assert offenders == []


def test_only_the_backend_imports_cupy_and_nothing_imports_a_framework():
    cupy_importers, framework_importers = [], []
    for path, text in _package_sources():
        if re.search(r"^\s*(import|from)\s+cupy\b", text, re.M) and not path.endswith("backend.py"):
            cupy_importers.append(path)
        if re.search(r"^\s*(import|from)\s+(torch|tensorflow|jax)\b", text, re.M):
            framework_importers.append(path)
    assert cupy_importers == [] and framework_importers == []

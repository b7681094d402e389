"""Shared fixtures: the array backend(s) and the hypothesis profiles.

Every test that takes ``xp`` runs on NumPy, and again on CuPy when CuPy imports and
sees a GPU (skipped with a reason otherwise).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

from minidl import backend

# CI: no deadline (the machine is shared and noisy), few enough examples that the whole
# suite runs in minutes on 2 cores. Select with HYPOTHESIS_PROFILE=dev for a deeper run.
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
# Mutation testing (tools/mutation_test.py) runs the tests once per mutant: fewer
# examples, and no shrinking (a caught mutant would otherwise spend minutes shrinking).
settings.register_profile("mutation", deadline=None, max_examples=6, derandomize=True,
                          database=None, phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _backends():
    params = [pytest.param("numpy", id="numpy")]
    reason = ("CuPy not installed" if backend.cupy_module() is None
              else "CuPy sees no GPU")
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.skipif(
        not backend.gpu_available(), reason=reason)))
    return params


@pytest.fixture(params=_backends())
def xp(request):
    """The array module under test: numpy, or cupy when a GPU is present."""
    return np if request.param == "numpy" else backend.cupy_module()


@pytest.fixture(autouse=True)
def _seeded_float32():
    """Every test starts from the same seed and the default dtype."""
    backend.seed(0)
    backend.set_default_dtype(np.float32)
    yield
    backend.set_default_dtype(np.float32)

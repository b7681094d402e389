"""The fuzzing rule and the drawn arguments and arrays shared by the fuzz tests
(``test_fuzz.py``, ``test_fuzz_sequence.py``); see test_fuzz.py's docstring for the rule.
"""
import contextlib
import math
import numbers
import warnings

import numpy as np
from hypothesis import HealthCheck, Phase, settings, strategies as st

ALLOWED = (ValueError, TypeError, RuntimeError)
# No shrinking: a failure is reported as drawn (shrinking can take minutes).
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))

ODD_VALUES = [0, -1, -3, 1.5, 2.0, True, False, None, "3", "", 2 ** 63, 10 ** 400,
              float("nan"), float("inf"), -float("inf"), (1, 2, 3), (), [2], (2,),
              np.int64(3), np.float32(0.5), np.bool_(True), np.float64("nan"), object()]


# ----------------------------------------------------------------------------- the rule
@contextlib.contextmanager
def strict():
    """Warnings are errors; so is any exception but ValueError/TypeError/RuntimeError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def outcome(owner, call):
    """Run ``call``: return ("ok", result) or ("error", exc) for an allowed exception
    whose message names ``owner``; fail the test for anything else."""
    try:
        with strict():
            return "ok", call()
    except ALLOWED as error:
        names = (owner,) if isinstance(owner, str) else owner
        assert any(name in str(error) for name in names), \
            f"{type(error).__name__} does not name {owner}: {error}"
        return "error", error


def wrong_kind(kind, value):
    """Whether ``value`` can never be a valid argument of ``kind`` (so must be refused)."""
    is_bool = isinstance(value, (bool, np.bool_))
    if kind == "int":
        return is_bool or not isinstance(value, numbers.Integral)
    if kind == "real":
        if is_bool or not isinstance(value, numbers.Real):
            return True
        try:
            return not math.isfinite(float(value))
        except OverflowError:
            return True
    if kind == "bool":
        return not is_bool
    if isinstance(kind, tuple):  # a choice among strings
        return not (isinstance(value, str) and value in kind)
    return False


def finite(array):
    return bool(np.all(np.isfinite(np.asarray(array, dtype=np.float64))))


# ----------------------------------------------------------------------------- arrays
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_,
          np.complex64, np.complex128, object, "U3"]


@st.composite
def arrays(draw, shape=None, dtypes=DTYPES, specials=True,
           layouts=("plain", "flipped", "strided", "list", "fortran")):
    """An array of any dtype and 0-5 axes (or ``shape``), possibly a strided view or a
    nested list, possibly holding NaN/Inf."""
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=5)))
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    generator = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    base = np.asarray(generator.standard_normal(shape) * 3)
    if specials and base.size and draw(st.booleans()):
        base.flat[draw(st.integers(0, base.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
    if dtype.kind in "iub":
        base = np.nan_to_num(base, nan=0, posinf=1, neginf=-1)
    if dtype.kind == "U":
        x = base.astype(str).astype(dtype)
    else:
        x = base.astype(dtype)
    layout = draw(st.sampled_from(layouts))
    if layout == "flipped" and x.ndim:
        x = x[..., ::-1]
    elif layout == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    elif layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "list":
        return x.tolist()
    return x


def float_input(draw, shape, dtype=None):
    """A finite float array of ``shape`` (float32 or float64), maybe a strided view."""
    dtype = dtype or draw(st.sampled_from([np.float32, np.float64]))
    return draw(arrays(shape=shape, dtypes=[dtype], specials=False,
                       layouts=("plain", "flipped", "strided", "fortran")))

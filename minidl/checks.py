"""Validation of arguments and input arrays, shared by every part of minidl.

One rule everywhere: a value of the wrong *type* is a ``TypeError``, a value of the
right type but out of range a ``ValueError``, and the message names the owner (a class
or function), the argument, what is allowed and what was given::

    Dropout: p must be a real number in [0, 1), got True (bool)
    Conv2d: in_channels must be a positive integer, got 0 (int)

Numbers: bools are refused wherever a number is expected (``Linear(True, 3)`` is a
mistake, not one feature); NumPy scalars are accepted like Python numbers and
returned as Python ``int``/``float`` (so a ``np.float64`` hyper-parameter never
promotes float32 arithmetic); NaN, +-inf and integers too large for a float are
refused.
"""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(value):
    """``repr`` of a value with its type, shortened: ``True (bool)``, ``'a' (str)``."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def is_bool(value):
    return isinstance(value, (bool, np.bool_))


def positive_int(value, label, owner, allow_zero=False):
    """``value`` as an int >= 1 (>= 0 with ``allow_zero``); bools and floats refused."""
    kind = "a non-negative integer" if allow_zero else "a positive integer"
    if is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {label} must be {kind}, got {describe(value)}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{owner}: {label} must be {kind}, got {describe(value)}")
    return int(value)


def integer(value, label, owner, low=None, high=None):
    """``value`` as an int in ``[low, high]`` (either bound may be None)."""
    if is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {label} must be an integer{_int_range(low, high)}, "
                        f"got {describe(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{owner}: {label} must be an integer{_int_range(low, high)}, "
                         f"got {describe(value)}")
    return int(value)


def _int_range(low, high):
    if low is None and high is None:
        return ""
    if high is None:
        return f" >= {low}"
    if low is None:
        return f" <= {high}"
    return f" in [{low}, {high}]"


def _interval(low, high, low_open, high_open):
    """``[0, 1)``, ``(0, inf)``: the mathematical notation of the allowed range."""
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"{left}{low_text}, {high_text}{right}"


def real_number(value, label, owner, low=None, high=None, *, low_open=False, high_open=False):
    """``value`` as a finite Python float within the bounds (open or closed).

    Accepts Python and NumPy ints and floats and 0-d float arrays; refuses bools, None,
    strings, NaN, +-inf and ints too large to be a float.
    """
    expected = f"a real number in {_interval(low, high, low_open, high_open)}"
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()
    if is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {label} must be {expected}, got {describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{owner}: {label} must be {expected}, got {describe(value)} "
                         "(too large for a float)") from None
    out_of_range = (not math.isfinite(number)
                    or (low is not None and (number <= low if low_open else number < low))
                    or (high is not None and (number >= high if high_open else number > high)))
    if out_of_range:
        raise ValueError(f"{owner}: {label} must be {expected}, got {describe(value)}")
    return number


def choice(value, label, owner, options):
    """``value`` if it is one of ``options`` (compared with ==), else a ValueError."""
    if isinstance(value, (str, numbers.Number)) or value is None:
        for option in options:
            if type(option) is type(value) and option == value:
                return value
    allowed = ", ".join(repr(option) for option in options)
    raise ValueError(f"{owner}: {label} must be one of {allowed}, got {describe(value)}")


def boolean(value, label, owner):
    """``value`` as a Python bool; only True/False (or NumPy bools) are accepted."""
    if not is_bool(value):
        raise TypeError(f"{owner}: {label} must be True or False, got {describe(value)}")
    return bool(value)


def is_array(x):
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim")


def float_array(x, owner, expected="(N, ...)", what="input"):
    """Raise TypeError unless ``x`` is a float32 or float64 array.

    The one dtype rule of every layer and loss: no silent casts of ints, bools, uint8,
    float16 or complex numbers, and no Python lists.
    """
    if not is_array(x):
        raise TypeError(f"{owner}: expected {what} as an array of shape {expected} (float32 "
                        f"or float64), got {type(x).__name__}")
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: expected a float32 or float64 array as {what}, got dtype "
                        f"{x.dtype}; convert first, e.g. x.astype(np.float32) / 255 for images")
    return x


def array_shape(x, owner, expected, what="input"):
    """Raise ValueError unless ``x`` has the number of axes ``expected`` describes.

    ``expected`` is a layout such as ``"(N, C, H, W)"`` (exactly 4 axes), ``"(N, ...)"``
    (at least 1) or ``"(..., in_features)"`` (at least 1): ``...`` stands for any
    number of axes.
    """
    names = [name.strip() for name in expected.strip("()").split(",")]
    fixed = len([name for name in names if name != "..."])
    if "..." in names:
        if x.ndim < fixed:
            raise ValueError(f"{owner}: expected {what} of shape {expected} (at least "
                             f"{fixed}-D), got shape {tuple(x.shape)} ({x.ndim}-D)")
    elif x.ndim != fixed:
        raise ValueError(f"{owner}: expected {what} of shape {expected} ({fixed}-D), "
                         f"got shape {tuple(x.shape)} ({x.ndim}-D)")


__all__ = ["FLOAT_DTYPES", "array_shape", "boolean", "choice", "describe", "float_array",
           "integer", "is_array", "positive_int", "real_number"]

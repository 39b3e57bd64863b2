"""Argument checks shared by every subpackage: one helper per kind of argument.

Each raises :class:`TypeError` (wrong kind) or :class:`ValueError` (right kind, bad value)
with a message that names the argument, what was given and what is accepted.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

from .backend import array_namespace, asarray, is_cupy_array

__all__ = [
    "MemoryLimitError",
    "as_float_array",
    "as_int_array",
    "check_integer",
    "check_memory",
    "check_real",
    "memory_limit",
    "resolve_dtype",
    "resolve_rng",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class MemoryLimitError(ValueError, MemoryError):
    """A request would need more memory than :func:`memory_limit` allows.

    It is a :class:`ValueError` (the arguments ask for too much) and a :class:`MemoryError`.
    """


def resolve_dtype(dtype: Any, *, name: str = "dtype", like: Any = None) -> np.dtype:
    """float32 or float64; ``None`` means float32 if ``like`` is float32, else float64."""
    if dtype is None:
        like_dtype = getattr(like, "dtype", None)
        if like_dtype is not None and np.dtype(like_dtype) == np.float32:
            return np.dtype(np.float32)
        return np.dtype(np.float64)
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64; got {dtype!r}") from exc
    if resolved not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64; got {resolved}")
    return resolved


def as_float_array(
    x: Any,
    name: str,
    *,
    dtype: Any = None,
    ndim: int | tuple[int, ...] | None = None,
    allow_nonfinite: bool = False,
    copy: bool = False,
) -> Any:
    """``x`` as a real floating array of the active backend, checked.

    Integers and booleans are promoted to float64; float32 stays float32 unless ``dtype`` says
    otherwise; complex, object and string arrays are refused.

    Parameters
    ----------
    x : array_like
    name : str
        The argument's name for error messages.
    dtype : {None, float32, float64}
    ndim : int or tuple of int, optional
        Accepted numbers of dimensions.
    allow_nonfinite : bool
        Accept NaN and infinities (default: refuse them).
    copy : bool
        Return a copy, so the caller can modify it without touching the user's array.
    """
    if isinstance(x, str | bytes):
        raise TypeError(f"{name} must be a real array_like of numbers; got {type(x).__name__}")
    arr = asarray(x, name=name)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real; got a complex array ({arr.dtype})")
    if kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}")
    target = resolve_dtype(dtype, name="dtype", like=arr)
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in accepted:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, accepted))} dimension(s); "
                f"got shape {tuple(arr.shape)}"
            )
    xp = array_namespace()
    arr = xp.array(arr, dtype=target, copy=True) if copy else arr.astype(target, copy=False)
    if not allow_nonfinite and arr.size and not bool(xp.isfinite(_distinct_elements(arr)).all()):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    return arr


def _distinct_elements(arr: Any) -> Any:
    """A view of ``arr`` without its broadcast (stride-0) axes: the same values, each once.

    Checking a ``broadcast_to`` view element by element would cost time and a temporary of the
    full broadcast size for data that occupies a few bytes.
    """
    strides = getattr(arr, "strides", None)
    if not strides:
        return arr
    return arr[
        tuple(
            slice(0, 1) if stride == 0 and size > 1 else slice(None)
            for stride, size in zip(strides, arr.shape, strict=True)
        )
    ]


def as_int_array(x: Any, name: str, *, minimum: int | None = None) -> np.ndarray:
    """``x`` as an integer NumPy array (indices, degrees, labels), checked."""
    if is_cupy_array(x):
        x = x.get()
    arr = np.asarray(x)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be integers; got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise TypeError(f"{name} must be integers; got non-integral values")
        arr = arr.astype(np.int64)
    arr = arr.astype(np.int64, copy=False)
    if minimum is not None and arr.size and arr.min() < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got minimum {arr.min()}")
    return arr


def check_integer(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """A Python ``int`` from an integral scalar (not bool, not float), within bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}")
    return value


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """A finite Python ``float`` from a real scalar, within ``[low, high]`` (or open ends)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}; got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ValueError(f"{name} must be {'<=' if high_inclusive else '<'} {high}; got {value}")
    return value


def resolve_rng(rng: Any, *, name: str = "rng") -> np.random.Generator:
    """A :class:`numpy.random.Generator` from ``None``, an int seed or a Generator."""
    if rng is None or isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"{name} must be None, an int seed or a numpy.random.Generator; got {type(rng).__name__}"
    )


def _parse_bytes(text: str) -> int:
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    stripped = text.strip().lower().replace(" ", "")
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = stripped[len(number):]
    if unit not in units or not number:
        raise ValueError(f"SCI_MEMORY_LIMIT must be a size such as '16GiB'; got {text!r}")
    return int(float(number) * units[unit])


def memory_limit() -> int:
    """Bytes one request may allocate: ``SCI_MEMORY_LIMIT`` if set, else half the RAM."""
    env = os.environ.get("SCI_MEMORY_LIMIT")
    if env:
        return _parse_bytes(env)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return total // 2


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``'1.5 GiB'``; beyond 1024 EiB in bytes, ``'4.4e+49 B'``.

    Sizes computed from absurd arguments (a degree of 10^9) stay readable: no "3.9e34 PiB".
    """
    if not math.isfinite(n):
        return f"{n} B"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        if abs(float(text.split()[0])) < 1024:  # as printed: 1023.96 MiB is "1.0 GiB"
            return text
        value /= 1024
    return f"{float(n):.1e} B"


def check_memory(nbytes: float, what: str, *, hint: str = "") -> None:
    """Refuse up front a request needing more than :func:`memory_limit` bytes, with the figure."""
    limit = memory_limit()
    if nbytes > limit:
        message = (
            f"{what} would need {format_bytes(nbytes)}, more than the limit of "
            f"{format_bytes(limit)} (set SCI_MEMORY_LIMIT to change it)"
        )
        raise MemoryLimitError(message + (f"; {hint}" if hint else ""))

"""Argument handling of :mod:`sci.generalization` on the array API.

Each public function takes its namespace and device from its array arguments
(:func:`sci.backend.array_context`), converts every argument there, and checks them all with
one reduction read back to the host: no per-argument synchronisation on a GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_float_array
from ..backend import ArrayContext, array_context, to_numpy

# What each kind of check refuses besides NaN (and infinity, except for times), and its message.
_RANGES = {
    "alpha": (lambda a: a <= 0, "alpha (examples per parameter, P/N) must be > 0"),
    "std": (lambda a: a < 0, "{name} must be a standard deviation, >= 0"),
    "tau": (lambda a: a <= 0, "{name} must be a time constant, > 0"),
    "time": (lambda a: a < 0, "t (training time) must be >= 0"),
    "eigenvalue": (lambda a: a < 0, "lam (eigenvalues) must be >= 0"),
    "real": (None, ""),
}


def context(arguments: dict[str, Any]) -> ArrayContext:
    """Where a call with these named arguments computes (TypeError naming two that differ)."""
    for name, value in arguments.items():
        if isinstance(value, str | bytes):  # before the namespace lookup, which says less
            raise TypeError(
                f"{name} must be a real array_like of numbers; got {type(value).__name__}"
            )
    return array_context(*arguments.values(), names=tuple(arguments))


def lift(x: Any, ctx: ArrayContext) -> Any:
    """``x`` as a float array of ``ctx``, unchecked.

    Lists and Python or NumPy scalars get NumPy's dtypes (a Python float is float64) rather
    than the library's default (torch makes float32 of them, losing digits of, say,
    ``0.2**0.5``).
    """
    if ctx.is_numpy or not isinstance(x, bool | int | float | list | tuple | np.generic):
        return x
    return ctx.xp.asarray(np.asarray(x), device=ctx.device)


def as_floats(ctx: ArrayContext, checks: dict[str, tuple[Any, str]]) -> list[Any]:
    """The arguments ``{name: (value, kind)}`` as float arrays of ``ctx``, checked together.

    ``kind`` is a key of ``_RANGES``. NaN is refused everywhere, infinity everywhere but in
    times. All the checks are one boolean vector read back once; only a refused call reads
    more (the minimum it reports).
    """
    xp = ctx.xp
    arrays = [as_float_array(lift(value, ctx), name, ctx=ctx, check_finite=False)
              for name, (value, _) in checks.items()]
    flags = []
    for array, (_, kind) in zip(arrays, checks.values(), strict=True):
        bad_value = xp.isnan(array) if kind == "time" else ~xp.isfinite(array)
        out_of_range = _RANGES[kind][0]
        flags.append(xp.any(bad_value))
        flags.append(xp.any(out_of_range(array)) if out_of_range else xp.any(bad_value))
    if not flags:
        return arrays
    host = to_numpy(xp.stack(flags)) if len(flags) > 1 else to_numpy(flags[0])
    if not host.any():
        return arrays
    for i, (array, (name, (_, kind))) in enumerate(zip(arrays, checks.items(), strict=True)):
        if host[2 * i]:
            if kind == "time":
                raise ValueError("t must not contain NaN")
            raise ValueError(f"{name} must be finite; it contains NaN or infinity")
        if host[2 * i + 1]:
            minimum = float(to_numpy(xp.min(array)))
            raise ValueError(f"{_RANGES[kind][1].format(name=name)}; got a minimum of {minimum}")
    raise AssertionError("unreachable")  # pragma: no cover


def result_dtype(ctx: ArrayContext, arrays: list[Any], weak: list[bool]) -> Any:
    """The float dtype of a result: that of the arguments not given as Python numbers
    (NumPy's weak scalars, NEP 50: float32 data with ``alpha=0.5`` stays float32)."""
    strong = [a.dtype for a, w in zip(arrays, weak, strict=True) if not w]
    return ctx.xp.result_type(*(strong or [a.dtype for a in arrays]))


def is_weak(x: Any) -> bool:
    """A Python number (not a bool, not a NumPy scalar): it does not decide the precision."""
    return isinstance(x, int | float) and not isinstance(x, bool | np.generic)


def full(ctx: ArrayContext, value: float, dtype: Any) -> Any:
    """A 0-d array of ``value`` on the call's device (a host constant would mix devices)."""
    return ctx.xp.asarray(value, dtype=dtype, device=ctx.device)

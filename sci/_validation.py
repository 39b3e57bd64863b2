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

from .backend import ArrayContext, array_namespace, asarray, get_backend, to_numpy

__all__ = [
    "MemoryLimitError",
    "as_complex_array",
    "as_float_array",
    "check_all_finite",
    "check_dask_rows",
    "chunk_length",
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


_ACCEPTED = "float32 or float64"


def _refuse_half(dtype: Any, name: str) -> None:
    """float16 (and bfloat16) are refused rather than upcast silently: the results' accuracy
    and the memory checks assume float32 or float64, and an upcast would hide a copy."""
    kind = getattr(dtype, "kind", None)
    if isinstance(kind, str):  # a NumPy/CuPy dtype: no string formatting on the hot path
        if kind != "f" or dtype.itemsize != 2:
            return
    text = str(dtype)
    if text.endswith(("float16", "bfloat16")) or text == "<f2":
        raise TypeError(
            f"{name} has dtype {text}, which is not supported; accepted: {_ACCEPTED} "
            f"(convert it first, e.g. {name}.astype(float32))"
        )


def resolve_dtype(dtype: Any, *, name: str = "dtype", like: Any = None) -> np.dtype:
    """float32 or float64; ``None`` means float32 if ``like`` is float32, else float64.

    float16 (as ``dtype`` or as ``like``'s dtype) raises :class:`TypeError`: it is not
    upcast silently.
    """
    if dtype is None:
        like_dtype = getattr(like, "dtype", None)
        if like_dtype is not None:
            _refuse_half(like_dtype, "the input")
        if like_dtype is not None and (
            like_dtype == np.float32 if isinstance(getattr(like_dtype, "kind", None), str)
            else str(like_dtype).endswith("float32")
        ):
            return np.dtype(np.float32)
        return np.dtype(np.float64)
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64; got {dtype!r}") from exc
    if resolved not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64; got {resolved}")
    return resolved


def _namespace_dtype(xp: Any, dtype: np.dtype) -> Any:
    """The dtype of namespace ``xp`` named like the NumPy ``dtype``."""
    return getattr(xp, np.dtype(dtype).name)


def _check_kind(arr: Any, xp: Any, name: str, *, complex_ok: bool) -> str:
    """'b', 'i', 'f' or 'c' for an array of namespace ``xp``, refusing other dtypes."""
    if xp.isdtype(arr.dtype, "bool"):
        return "b"
    if xp.isdtype(arr.dtype, "integral"):
        return "i"
    if xp.isdtype(arr.dtype, "real floating"):
        _refuse_half(arr.dtype, name)
        return "f"
    if xp.isdtype(arr.dtype, "complex floating"):
        if not complex_ok:
            raise TypeError(f"{name} must be real; got a complex array ({arr.dtype})")
        return "c"
    raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}")


def _check_finite_xp(arr: Any, xp: Any, name: str) -> None:
    """One reduction, one device-to-host read of a single boolean."""
    if arr.ndim and not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    if not arr.ndim and not bool(xp.isfinite(arr)):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")


def check_all_finite(xp: Any, arrays: dict[str, Any]) -> None:
    """Refuse NaN and infinities in several arrays with one reduction and one read from the
    device (the arguments are named only when one fails: a second look, on the error path).

    Examples
    --------
    >>> import numpy as np
    >>> from sci._validation import check_all_finite
    >>> import array_api_compat.numpy as xp
    >>> check_all_finite(xp, {"x": np.ones(2), "y": np.array([1.0, np.inf])})
    Traceback (most recent call last):
    ...
    ValueError: y must be finite; it contains NaN or infinity
    """
    present = {name: a for name, a in arrays.items() if a is not None}
    if not present:
        return
    flags = xp.stack([xp.all(xp.isfinite(a)) for a in present.values()])
    if bool(xp.all(flags)):
        return
    for name, a in present.items():
        if not bool(xp.all(xp.isfinite(a))):
            raise ValueError(f"{name} must be finite; it contains NaN or infinity")


def _in_context(x: Any, name: str, ctx: ArrayContext) -> Any:
    if isinstance(x, str | bytes):
        raise TypeError(f"{name} must be a numeric array_like; got {type(x).__name__}")
    try:
        return ctx.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array_like; got {type(x).__name__}") from exc


def as_float_array(
    x: Any,
    name: str,
    *,
    dtype: Any = None,
    ndim: int | tuple[int, ...] | None = None,
    allow_nonfinite: bool = False,
    copy: bool = False,
    ctx: ArrayContext | None = None,
    check_finite: bool = True,
) -> Any:
    """``x`` as a real floating array of the active backend (or of ``ctx``), checked.

    Integers and booleans are promoted to float64; float32 stays float32 unless ``dtype`` says
    otherwise; float16, complex, object and string arrays are refused.

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
    ctx : ArrayContext, optional
        The namespace and device of the call (:func:`sci.backend.array_context`); the result
        is an array there. Default: the switch's library (NumPy or CuPy).
    check_finite : bool
        Check for NaN and infinities (one reduction; on a GPU, one synchronisation). False
        skips it: for callers that guarantee finite input.
    """
    if ctx is not None and not ctx.is_numpy:
        return _as_float_in_context(x, name, ctx, dtype=dtype, ndim=ndim, copy=copy,
                                    check=check_finite and not allow_nonfinite)
    if isinstance(x, str | bytes):
        raise TypeError(f"{name} must be a real array_like of numbers; got {type(x).__name__}")
    arr = asarray(x, name=name)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real; got a complex array ({arr.dtype})")
    if kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}")
    if kind == "f":
        _refuse_half(arr.dtype, name)
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
    if (check_finite and not allow_nonfinite and arr.size
            and not bool(xp.isfinite(_distinct_elements(arr)).all())):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")
    return arr


def _check_ndim(arr: Any, name: str, ndim: int | tuple[int, ...] | None) -> None:
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in accepted:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, accepted))} dimension(s); "
                f"got shape {tuple(arr.shape)}"
            )


def _as_float_in_context(x, name, ctx, *, dtype, ndim, copy, check):
    """as_float_array in any array-API namespace (torch, array_api_strict, CuPy, ...)."""
    xp = ctx.xp
    arr = _in_context(x, name, ctx)
    kind = _check_kind(arr, xp, name, complex_ok=False)
    if dtype is None:
        target = arr.dtype if kind == "f" else xp.float64
    else:
        target = _namespace_dtype(xp, resolve_dtype(dtype))
    _check_ndim(arr, name, ndim)
    if copy or arr.dtype != target:
        arr = xp.astype(arr, target, copy=True)
    if check:
        _check_finite_xp(arr, xp, name)
    return arr


def as_complex_array(
    x: Any,
    name: str,
    *,
    ctx: ArrayContext | None = None,
    check_finite: bool = True,
) -> Any:
    """``x`` as a complex array (complex64 from float32, else complex128), checked finite.

    Real and integer input is promoted (float32 -> complex64, anything else -> complex128);
    complex input keeps its precision. Strings, objects and float16 are refused.

    Parameters
    ----------
    x : array_like
    name : str
        The argument's name for error messages.
    ctx : ArrayContext, optional
        Where the call computes (default: the switch's library).
    check_finite : bool
        One reduction for NaN and infinities (False skips it).

    Examples
    --------
    >>> from sci._validation import as_complex_array
    >>> as_complex_array([1.0, 2.0], "x").dtype
    dtype('complex128')
    """
    if ctx is None or ctx.is_numpy:
        if isinstance(x, str | bytes):
            raise TypeError(f"{name} must be a numeric array_like; got {type(x).__name__}")
        xp = array_namespace()
        a = asarray(x, name=name)
        if a.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be numeric; got dtype {a.dtype}")
        if a.dtype.kind == "f":
            _refuse_half(a.dtype, name)
        if a.dtype.kind != "c":
            a = a.astype(xp.complex64 if a.dtype == xp.float32 else xp.complex128)
        if check_finite and a.size and not bool(xp.isfinite(a).all()):
            raise ValueError(f"{name} must be finite; it contains NaN or infinity")
        return a
    xp = ctx.xp
    a = _in_context(x, name, ctx)
    kind = _check_kind(a, xp, name, complex_ok=True)
    if kind != "c":
        a = xp.astype(a, xp.complex64 if a.dtype == xp.float32 else xp.complex128)
    if check_finite:
        _check_finite_xp(a, xp, name)
    return a


def chunk_length(
    n_items: int,
    bytes_per_item: float,
    *,
    budget: float | None = None,
    max_items: int | None = None,
    minimum: int = 1,
) -> int:
    """How many items (rows, queries, time points) one chunk of work holds.

    As many as fit in ``budget`` bytes (default: a quarter of :func:`memory_limit`), at most
    ``n_items`` and ``max_items``, at least ``minimum`` (an item that alone exceeds the budget
    is left to the caller's up-front :func:`check_memory`).

    Examples
    --------
    >>> from sci._validation import chunk_length
    >>> chunk_length(1000, 8.0, budget=800.0)
    100
    >>> chunk_length(10, 1e12, budget=800.0)
    1
    """
    if budget is None:
        budget = memory_limit() / 4
    fit = int(budget // max(float(bytes_per_item), 1.0))
    upper = n_items if max_items is None else min(n_items, max_items)
    return max(minimum, min(upper, fit))


def check_dask_rows(
    x: Any,
    name: str,
    *,
    ndim: int,
    columns: int | None = None,
    shape: str | None = None,
    kinds: str = "biuf",
    what: str = "an array of real numbers",
    host: Any = None,
    row_chunks: Any = -1,
) -> Any:
    """A Dask array argument checked from its graph, with whole rows per block.

    A Dask ``x`` is checked for ``ndim``, ``columns`` (the size of axis 1, when given), a dtype
    of ``kinds`` and known chunk sizes, and rechunked so a block holds whole rows. Any other
    ``x`` is checked by ``host(x)`` (the eager path's validator) and wrapped as one block
    (or ``row_chunks``). The shared plumbing of every function that accepts Dask arrays.

    Parameters
    ----------
    shape : str, optional
        The accepted shape as the message writes it, e.g. ``"(M, 3)"``.
    """
    from . import _dask

    if not _dask.is_dask_array(x):
        if host is not None:
            x = host(x)
        return _dask.as_dask(x, chunks=(row_chunks,) + (-1,) * (x.ndim - 1) if x.ndim else -1)
    if x.ndim != ndim or (columns is not None and x.shape[1] != columns):
        accepted = shape or f"{ndim} dimension(s)"
        raise ValueError(f"{name} must have shape {accepted}; got {tuple(x.shape)}")
    if x.dtype.kind not in kinds:
        raise TypeError(f"{name} must be {what}; got dtype {x.dtype}")
    _dask.check_known_chunks(x, name)
    return x.rechunk({1: -1}) if ndim == 2 else x


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
    """``x`` as an integer NumPy array (indices, degrees, labels), checked.

    Integer arguments are read on the host whatever library holds them (they size and index
    the computation); arrays of any library are converted with :func:`sci.backend.to_numpy`.
    """
    if not isinstance(x, np.ndarray | list | tuple | int | np.generic):
        x = to_numpy(x)
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


def memory_limit(ctx: ArrayContext | None = None) -> int:
    """Bytes one request may allocate: ``SCI_MEMORY_LIMIT`` if set; for arrays on a GPU
    (``ctx`` on a CUDA device, or no ``ctx`` under the cupy switch) the device's free memory;
    else half the RAM."""
    env = os.environ.get("SCI_MEMORY_LIMIT")
    if env:
        return _parse_bytes(env)
    free = _device_free_memory(ctx)
    if free is not None:
        return free
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


def _device_free_memory(ctx: ArrayContext | None) -> int | None:
    """Free bytes of the GPU that ``ctx`` computes on (CuPy's pooled free blocks included), or
    ``None`` for host arrays and for libraries whose device memory is not known here."""
    if ctx is None:
        if get_backend() != "cupy":
            return None
        library, device = "cupy", None
    else:
        library, device = ctx.library, ctx.device
    if library == "cupy":
        import cupy

        with cupy.cuda.Device(device if device is not None else cupy.cuda.Device().id):
            free, _ = cupy.cuda.runtime.memGetInfo()
            return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    if library == "torch" and getattr(device, "type", "cpu") == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def check_memory(nbytes: float, what: str, *, hint: str = "",
                 ctx: ArrayContext | None = None) -> None:
    """Refuse up front a request needing more than :func:`memory_limit` bytes, with the figure
    (``ctx``: where the arrays will live; a GPU's limit is its free memory)."""
    limit = memory_limit(ctx)
    if nbytes > limit:
        message = (
            f"{what} would need {format_bytes(nbytes)}, more than the limit of "
            f"{format_bytes(limit)} (set SCI_MEMORY_LIMIT to change it)"
        )
        raise MemoryLimitError(message + (f"; {hint}" if hint else ""))

"""Validation shared by the exact and the polynomial attentions: one helper per kind of input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import as_float_array, check_all_finite, check_real

MAX_ORDER = 8
"""Largest attention order accepted (t - 1 = 7 key/value pairs): beyond it nothing is practical."""


def common_dtype(arrays: Sequence[Any]) -> np.dtype:
    """float32 only when every input is float32; otherwise float64."""
    if arrays and all(getattr(a, "dtype", None) == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def attention_inputs(
    Q: Any,
    keys: Sequence[Any],
    values: Sequence[Any],
    *,
    causal: bool,
    names: Sequence[str],
    ctx: Any = None,
) -> tuple[Any, list[Any], list[Any]]:
    """Check and convert queries, the t - 1 keys and the t - 1 values of an order-t attention.

    ``names`` are the user-facing names: queries first, then the keys, then the values.
    ``ctx`` (:func:`sci.backend.array_context` of the inputs): the arrays are checked and
    converted in its namespace, on its device; without it, NumPy (or CuPy under the switch).
    """
    if not isinstance(causal, bool | np.bool_):
        raise TypeError(f"causal must be a bool; got {type(causal).__name__} {causal!r}")
    if len(keys) != len(values):
        raise ValueError(
            f"an order-t attention takes as many keys as values; got {len(keys)} keys and "
            f"{len(values)} values"
        )
    if not 1 <= len(keys) <= MAX_ORDER - 1:
        raise ValueError(
            f"the number of key/value pairs (order - 1) must be between 1 and {MAX_ORDER - 1}; "
            f"got {len(keys)}"
        )
    raw = [Q, *keys, *values]
    if ctx is not None and not ctx.is_numpy:
        xp = ctx.xp
        arrays = [as_float_array(a, name, ndim=2, ctx=ctx, check_finite=False)
                  for a, name in zip(raw, names, strict=True)]
        # one reduction over all the inputs and one read from the device, not one per input
        check_all_finite(xp, dict(zip(names, arrays, strict=True)))
        dtype = xp.float32 if all(a.dtype == xp.float32 for a in arrays) else xp.float64
        arrays = [xp.astype(a, dtype) for a in arrays]
    else:
        arrays = [as_float_array(a, name, ndim=2) for a, name in zip(raw, names, strict=True)]
        dtype = common_dtype(arrays)
        arrays = [a.astype(dtype, copy=False) for a in arrays]
    Q, keys, values = arrays[0], arrays[1 : 1 + len(keys)], arrays[1 + len(keys) :]
    n_q, d = Q.shape
    if d < 1:
        raise ValueError(f"{names[0]} must have at least one column (the head dimension d)")
    n_k = keys[0].shape[0]
    for array, name in zip(arrays[1:], names[1:], strict=True):
        if array.shape[1] != d:
            raise ValueError(
                f"{name} must have d = {d} columns like {names[0]}; got shape {tuple(array.shape)}"
            )
        if array.shape[0] != n_k:
            raise ValueError(
                f"every key and value must have the same number of rows; {names[1]} has {n_k}, "
                f"{name} has {array.shape[0]}"
            )
    if n_k < 1:
        raise ValueError(f"{names[1]} must have at least one row (a key to attend to)")
    if causal and n_q != n_k:
        raise ValueError(
            f"a causal mask needs as many queries as keys; got {n_q} queries and {n_k} keys"
        )
    return Q, keys, values


def resolve_scale(scale: Any, d: int) -> float:
    """The logit scale ``s``: ``1/d`` by default, else a positive finite number."""
    if scale is None:
        return 1.0 / d
    return check_real(scale, "scale", low=0.0, low_inclusive=False)


def pair_names(count: int) -> list[str]:
    """``['Q', 'K1', ..., 'V1', ...]`` for ``count`` key/value pairs."""
    return ["Q", *(f"K{m + 1}" for m in range(count)), *(f"V{m + 1}" for m in range(count))]


def as_sequence(arrays: Any, name: str) -> list[Any]:
    """A list of arrays from a list or tuple (a single 2-D array is refused: it is ambiguous)."""
    if not isinstance(arrays, list | tuple):
        raise TypeError(
            f"{name} must be a list or tuple of 2-D arrays (one per key/value pair); got "
            f"{type(arrays).__name__}"
        )
    return list(arrays)

"""Validation shared by the exact and the polynomial attentions: one helper per kind of input."""

from __future__ import annotations

import math
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
) -> tuple[Any, list[Any], list[Any], tuple[int, ...]]:
    """Check and convert queries, the t - 1 keys and the t - 1 values of an order-t attention.

    Each input is ``(..., rows, columns)``: queries ``(..., n, d)``, keys ``(..., m, d)``,
    values ``(..., m, d_v)`` (one value width ``d_v`` for every value, independent of ``d``).
    The leading (batch) axes broadcast against each other as in NumPy and in torch's
    ``scaled_dot_product_attention``; the arrays come back broadcast to the common batch shape
    (views, no copy), with that shape as the fourth result.

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
        arrays = [as_float_array(a, name, ctx=ctx, check_finite=False)
                  for a, name in zip(raw, names, strict=True)]
        _check_at_least_2d(arrays, names)
        # one reduction over all the inputs and one read from the device, not one per input
        check_all_finite(xp, dict(zip(names, arrays, strict=True)))
        dtype = xp.float32 if all(a.dtype == xp.float32 for a in arrays) else xp.float64
        arrays = [xp.astype(a, dtype, copy=False) for a in arrays]  # no copy per call
    else:
        xp = None
        arrays = [as_float_array(a, name) for a, name in zip(raw, names, strict=True)]
        _check_at_least_2d(arrays, names)
        dtype = common_dtype(arrays)
        arrays = [a.astype(dtype, copy=False) for a in arrays]
    count = len(keys)
    n_q, d = arrays[0].shape[-2:]
    if d < 1:
        raise ValueError(f"{names[0]} must have at least one column (the head dimension d)")
    n_k = arrays[1].shape[-2]
    d_v = arrays[1 + count].shape[-1]
    for index, (array, name) in enumerate(zip(arrays[1:], names[1:], strict=True)):
        is_value = index >= count
        width = d_v if is_value else d
        if array.shape[-1] != width:
            if is_value:
                raise ValueError(
                    f"every value must have the same number of columns d_v (their Kronecker "
                    f"product is taken column by column); {names[1 + count]} has {d_v}, "
                    f"{name} has shape {tuple(array.shape)}"
                )
            raise ValueError(
                f"{name} must have d = {d} columns like {names[0]}; got shape {tuple(array.shape)}"
            )
        if array.shape[-2] != n_k:
            raise ValueError(
                f"every key and value must have the same number of rows; {names[1]} has {n_k}, "
                f"{name} has {array.shape[-2]}"
            )
    if n_k < 1:
        raise ValueError(f"{names[1]} must have at least one row (a key to attend to)")
    if d_v < 1:
        raise ValueError(f"{names[1 + count]} must have at least one column (the value width)")
    if causal and n_q != n_k:
        raise ValueError(
            f"a causal mask needs as many queries as keys; got {n_q} queries and {n_k} keys"
        )
    batch = batch_shape(arrays, names)
    if any(tuple(a.shape[:-2]) != batch for a in arrays):
        broadcast = np.broadcast_to if xp is None else xp.broadcast_to
        arrays = [broadcast(a, (*batch, *a.shape[-2:])) for a in arrays]
    Q, keys, values = arrays[0], arrays[1 : 1 + count], arrays[1 + count :]
    return Q, keys, values, batch


def _check_at_least_2d(arrays: Sequence[Any], names: Sequence[str]) -> None:
    for array, name in zip(arrays, names, strict=True):
        if array.ndim < 2:
            kind = "(..., n, d)" if name == names[0] else "(..., m, d) or (..., m, d_v)"
            raise ValueError(
                f"{name} must have at least 2 dimensions, {kind} (leading batch axes allowed); "
                f"got shape {tuple(array.shape)}"
            )


def batch_shape(arrays: Sequence[Any], names: Sequence[str]) -> tuple[int, ...]:
    """The broadcast of the leading (batch) axes, all but the last two, of every input.

    A ValueError names the first argument whose batch axes do not broadcast with those before.
    """
    batch: tuple[int, ...] = ()
    for index, (array, name) in enumerate(zip(arrays, names, strict=True)):
        own = tuple(int(n) for n in array.shape[:-2])
        try:
            batch = tuple(np.broadcast_shapes(batch, own))
        except ValueError:
            earlier = ", ".join(f"{nm} {tuple(a.shape[:-2])}"
                                for a, nm in zip(arrays[:index], names[:index], strict=True))
            raise ValueError(
                f"the batch axes (all but the last two) of {name}, {own}, do not broadcast with "
                f"those of {earlier} (they broadcast as in NumPy and torch's "
                "scaled_dot_product_attention: equal, or 1, or missing on the left)"
            ) from None
    return batch


def over_batch(function: Any, Q: Any, keys: Sequence[Any], values: Sequence[Any],
               batch: tuple[int, ...], xp: Any) -> Any:
    """``function(Q, keys, values)`` of 2-D arrays, applied to every batch element and stacked.

    The inputs are already broadcast to ``batch`` (views). Without batch axes the function is
    called once on the arrays themselves. Each call sees one element's 2-D arrays, so memory
    beyond the inputs and the output stays that of one 2-D call.
    """
    if not batch:
        return function(Q, list(keys), list(values))
    outputs = []
    for index in np.ndindex(*batch):
        at = (*index, ...)
        outputs.append(function(Q[at], [K[at] for K in keys], [V[at] for V in values]))
    stacked = xp.stack(outputs, axis=0)
    return xp.reshape(stacked, (*batch, *stacked.shape[1:]))


def resolve_scale(scale: Any, d: int) -> float:
    """The logit scale ``s``: ``1/d`` by default (the papers'), ``1/sqrt(d)`` for ``"sqrt"``
    (torch's ``scaled_dot_product_attention``), else a positive finite number."""
    if scale is None:
        return 1.0 / d
    if isinstance(scale, str):
        if scale == "sqrt":
            return 1.0 / math.sqrt(d)
        raise ValueError(
            f"scale must be a positive number, None (1/d, the papers' scale) or 'sqrt' "
            f"(1/sqrt(d), torch's); got {scale!r}"
        )
    return check_real(scale, "scale", low=0.0, low_inclusive=False)


def pair_names(count: int) -> list[str]:
    """``['Q', 'K1', ..., 'V1', ...]`` for ``count`` key/value pairs."""
    return ["Q", *(f"K{m + 1}" for m in range(count)), *(f"V{m + 1}" for m in range(count))]


def as_sequence(arrays: Any, name: str) -> list[Any]:
    """A list of arrays from a list or tuple (a single array is refused: it is ambiguous)."""
    if not isinstance(arrays, list | tuple):
        raise TypeError(
            f"{name} must be a list or tuple of arrays (one per key/value pair); got "
            f"{type(arrays).__name__}"
        )
    return list(arrays)

"""Memory estimates and chunk sizes shared by the curves and the simulations.

Every public function of :mod:`sci.generalization` estimates what it will allocate and calls
:func:`sci._validation.check_memory` before allocating it. The chunked work arrays (points x
quadrature nodes, trials x times x modes) are sized here so that they take at most a quarter of
the memory limit: they stay bounded whatever the number of points, and only the outputs and the
flat per-point copies grow with the request.
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_memory
from .._validation import chunk_length as _chunk_length


def chunk_length(n_items: int, bytes_per_item: float, max_items: int) -> int:
    """Items per chunk: at most ``max_items`` and ``n_items``, within a quarter of the limit
    (:func:`sci._validation.chunk_length`'s default budget)."""
    return _chunk_length(n_items, bytes_per_item, max_items=max_items)


def broadcast_points(*arrays) -> tuple[tuple[int, ...], int, int]:
    """Broadcast shape, number of points and the widest float itemsize of ``arrays``."""
    shape = tuple(int(n) for n in np.broadcast_shapes(*(tuple(a.shape) for a in arrays)))
    itemsize = max(itemsize_of(a.dtype) for a in arrays)
    return shape, math.prod(shape), itemsize


def itemsize_of(dtype) -> int:
    """Bytes per element of a dtype of any array library (torch and array_api_strict dtypes
    are not NumPy's; their names are)."""
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1]).itemsize


def check_points(what: str, shape: tuple[int, ...], itemsize: int, n_arrays: float,
                 extra_bytes: float = 0.0) -> None:
    """Refuse up front a call holding about ``n_arrays`` arrays of ``shape`` (plus extra)."""
    n = math.prod(shape)
    check_memory(
        float(n) * itemsize * n_arrays + extra_bytes,
        f"{what} on {n:,} points (broadcast shape {shape}, about {n_arrays} arrays of "
        f"{itemsize}-byte floats)",
        hint="evaluate fewer points per call",
    )

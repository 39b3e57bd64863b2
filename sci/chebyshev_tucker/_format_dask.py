"""Dask adapters of :class:`ChebTucker`: one task per block, the small core and factors
broadcast to each (see :doc:`/dask`).

Each function takes the object as ``ct`` and is called by its public method when a Dask array
(or ``chunks=``) is given; the eager paths stay in ``_format.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from .._validation import as_float_array, check_dask_rows, check_memory
from ._tucker import TuckerTensor, multi_mode_product

__all__ = ["call", "coordinates", "grid_factors", "on_grid", "to_tucker"]


def call(ct: Any, points: Any, extrapolate: bool, chunk: int):
    """``ct(points)`` for Dask ``points``: one task per block of rows."""
    from .. import _dask

    return _dask.map_rows(_evaluate_block, points, "points", ct.core.dtype, ct=ct,
                          extrapolate=extrapolate, chunk=chunk)


def coordinates(ct: Any, coords: Sequence[Any], chunks: Any):
    """The coordinates as Dask vectors, or None when none is lazy and no ``chunks`` is
    given (the eager path). ``chunks`` are those of the n1 x n2 x n3 grid (Dask's
    ``normalize_chunks``: an int, three of them, ``"auto"`` for blocks of about
    ``array.chunk-size``); without it, Dask coordinates keep their chunks and NumPy ones
    are one block."""
    from .. import _dask

    if chunks is None and not _dask.any_dask(*coords):
        return None
    out = []
    for k, c in enumerate(coords):
        name = "xyz"[k]
        out.append(check_dask_rows(
            c, name, ndim=1, shape="(n,)",
            host=lambda v, name=name: as_float_array(v, name, ndim=1),
        ))
    if chunks is not None:
        da = _dask.dask_array_module()
        shape = tuple(c.shape[0] for c in out)
        grid_chunks = da.core.normalize_chunks(chunks, shape, dtype=ct.core.dtype)
        out = [c.rechunk((grid_chunks[k],)) for k, c in enumerate(out)]
    return out


def grid_factors(ct: Any, lazy: list, extrapolate: bool) -> list:
    """The sampled factors as Dask arrays chunked like the coordinates ``lazy``."""
    from .. import _dask

    backend = _dask.task_backend(*lazy)
    return [
        c.map_blocks(
            _dask.in_backend(_factor_block, backend), ct=ct, mode=k,
            extrapolate=extrapolate, chunks=(c.chunks[0], (ct.ranks[k],)),
            new_axis=1, dtype=ct.core.dtype,
            meta=_dask.meta_array(backend, 2, ct.core.dtype),
        )
        for k, c in enumerate(lazy)
    ]


def on_grid(ct: Any, coords: list, extrapolate: bool):
    """The grid of values as a Dask array: block (a, b, c) from coordinate chunks a, b, c."""
    from .. import _dask

    da = _dask.dask_array_module()
    backend = _dask.task_backend(*coords)
    chunks = tuple(c.chunks[0] for c in coords)
    block = _dask.largest_block(chunks)
    check_memory(
        float(ct.core.dtype.itemsize) * block,
        f"the largest block ({' x '.join(str(max(c, default=0)) for c in chunks)}) of the "
        "grid of values", hint="pass smaller chunks",
    )
    with warnings.catch_warnings():
        # An outer product has (blocks of x) (blocks of y) (blocks of z) blocks: intended.
        warnings.filterwarnings("ignore", message="Increasing number of chunks")
        return da.blockwise(
            _dask.in_backend(_grid_block, backend), "ijk",
            coords[0], "i", coords[1], "j", coords[2], "k",
            dtype=ct.core.dtype, meta=_dask.meta_array(backend, 3, ct.core.dtype),
            ct=ct, extrapolate=extrapolate,
        )


def to_tucker(ct: Any, factors: list) -> TuckerTensor:
    """The Tucker tensor of Dask factors: a tall-skinny QR of each, the core lazy."""
    from dask import delayed  # dask is installed: the factors are Dask arrays

    from .. import _dask

    da = _dask.dask_array_module()
    backend = _dask.task_backend(*factors)
    qs, rs = zip(*(da.linalg.tsqr(f) for f in factors), strict=True)
    core = da.from_delayed(
        delayed(_dask.in_backend(multi_mode_product, backend))(ct.core, list(rs)),
        shape=ct.core.shape, dtype=ct.core.dtype,
        meta=_dask.meta_array(backend, 3, ct.core.dtype),
    )
    return TuckerTensor(core=core, factors=list(qs), error=ct.truncation_error)


def _evaluate_block(points: Any, *, ct: Any, extrapolate: bool, chunk: int):
    """One block of rows of a Dask ``points`` array, evaluated eagerly."""
    return ct(points, extrapolate=extrapolate, chunk=chunk)


def _factor_block(c: Any, *, ct: Any, mode: int, extrapolate: bool):
    """The sampled factor of ``mode`` at one chunk of coordinates."""
    name = "xyz"[mode]
    return ct._mode_matrix(as_float_array(c, name, ndim=1), mode, name, extrapolate)


def _grid_block(x: Any, y: Any, z: Any, *, ct: Any, extrapolate: bool):
    """Block (a, b, c) of the grid: the core times the factors sampled at its coordinates."""
    factors = [_factor_block(c, ct=ct, mode=k, extrapolate=extrapolate)
               for k, c in enumerate((x, y, z))]
    return multi_mode_product(ct.core, factors)

"""Dask arrays, recognised without importing Dask, and the chunk-wise plumbing shared by the
functions that accept them (:meth:`ChebTucker.on_grid <sci.chebyshev_tucker.ChebTucker.on_grid>`
and ``to_tucker``, :func:`~sci.chebyshev_tucker.direct_potential`,
:func:`~sci.neural_collapse.nc_metrics`).

Dask is an optional extra (``pip install 'sci-theory-results[dask]'``): ``import sci`` and
every call on NumPy or CuPy arrays never import it. A function given a Dask array builds a graph
of one task per block (or a tree reduction over blocks); no task ever holds more than a few
blocks.

The active backend is a :mod:`contextvars` value, which Dask's worker threads (and
``distributed`` workers) do not inherit: it is read once when the graph is built and every
task runs under it (:func:`in_backend`).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import numpy as np

from .backend import get_backend, is_cupy_array, use_backend

__all__ = [
    "any_dask", "dask_array_module", "in_backend", "is_dask_array", "map_rows", "task_backend",
]


def is_dask_array(x: Any) -> bool:
    """True when ``x`` is a Dask array (tested without importing Dask).

    Examples
    --------
    >>> import numpy as np
    >>> from sci._dask import is_dask_array
    >>> is_dask_array(np.zeros(3))
    False
    """
    # a Delayed or a Dask DataFrame is a Dask collection too, but has no chunks
    # (looked up on the type: a Delayed answers any attribute on the instance)
    cls = type(x)
    return (cls.__module__.split(".")[0] == "dask" and hasattr(cls, "__dask_graph__")
            and hasattr(cls, "chunks"))


def any_dask(*xs: Any) -> bool:
    """True when any of ``xs`` is a Dask array."""
    return any(is_dask_array(x) for x in xs)


def dask_array_module():
    """``dask.array``, or an :class:`ImportError` saying how to install it."""
    try:
        return importlib.import_module("dask.array")
    except ImportError as exc:  # pragma: no cover - dask is in the test extra
        raise ImportError(
            "Dask arrays need dask: pip install 'sci-theory-results[dask]' "
            "(dask[array,distributed])"
        ) from exc


def task_backend(*arrays: Any) -> str:
    """The backend the tasks of a graph built now run under: the active one.

    Blocks of CuPy arrays (a CuPy ``_meta``) under a CPU backend raise :class:`TypeError`, as
    :func:`sci.backend.asarray` does for a CuPy array: a device-to-host copy is the user's
    decision. NumPy blocks under ``"cupy"`` are moved to the device block by block.
    """
    backend = get_backend()
    if backend != "cupy":
        for x in arrays:
            if is_dask_array(x) and is_cupy_array(getattr(x, "_meta", None)):
                raise TypeError(
                    f"a Dask array with CuPy blocks was given but the active backend is "
                    f"{backend!r}; use `with sci.use_backend('cupy'):` to compute on the GPU, "
                    "or map the blocks to the host first (x.map_blocks(cupy.asnumpy))"
                )
    return backend


def _run_in_backend(backend: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    with use_backend(backend):
        return func(*args, **kwargs)


def in_backend(func: Any, backend: str) -> Any:
    """``func`` wrapped to run under ``backend`` (a picklable partial, for distributed)."""
    return functools.partial(_run_in_backend, backend, func)


def meta_array(backend: str, ndim: int, dtype: Any = np.float64) -> Any:
    """An empty array of the backend's type: the ``meta`` of a Dask result (CuPy blocks under
    ``"cupy"``), so Dask knows the block type without running a task."""
    if backend == "cupy":
        xp = importlib.import_module("cupy")
        return xp.empty((0,) * ndim, dtype=dtype)
    return np.empty((0,) * ndim, dtype=dtype)


def as_dask(x: Any, chunks: Any = "auto") -> Any:
    """``x`` itself if it is a Dask array, else wrapped with :func:`dask.array.from_array`."""
    if is_dask_array(x):
        return x
    return dask_array_module().from_array(x, chunks=chunks)


def check_known_chunks(x: Any, name: str) -> None:
    """Refuse Dask arrays of unknown chunk sizes (NaN), which the block layout needs."""
    if any(np.isnan(size) for sizes in x.chunks for size in sizes):
        raise ValueError(
            f"{name} has unknown chunk sizes (NaN); call {name}.compute_chunk_sizes() first"
        )


def largest_block(chunks: tuple[tuple[int, ...], ...]) -> int:
    """Number of elements of the largest block of a chunk layout."""
    size = 1
    for sizes in chunks:
        size *= max(sizes) if sizes else 0
    return size


def map_rows(func: Any, points: Any, name: str, dtype: Any = np.float64, **kwargs: Any) -> Any:
    """``func(block, **kwargs)`` on each block of rows of Dask ``points`` (M, 3): a Dask
    result (M,) chunked like the rows, one task per block, run under the active backend."""
    from ._validation import check_dask_rows

    # whole rows per block: memory O(rows per block)
    points = check_dask_rows(points, name, ndim=2, columns=3, shape="(M, 3)")
    backend = task_backend(points)
    return points.map_blocks(in_backend(func, backend), drop_axis=1, dtype=dtype,
                             meta=meta_array(backend, 1, dtype), **kwargs)

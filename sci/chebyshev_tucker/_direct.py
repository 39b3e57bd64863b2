"""Direct O(N M) summation of particle potentials: the oracle for the tensor formats."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._typing import Array
from .._validation import (
    _device_free_memory,
    as_float_array,
    check_all_finite,
    check_dask_rows,
    check_integer,
    chunk_length,
    memory_limit,
)
from ..backend import ArrayContext, array_context, array_namespace, implementation, register

__all__ = ["direct_potential"]

_KERNELS = ("newton", "long_range", "short_range")


def _check_particles(positions: Any, charges: Any, ctx: ArrayContext | None = None,
                     check_finite: bool = True):
    pos = as_float_array(positions, "positions", ndim=2, dtype=np.float64, ctx=ctx,
                         check_finite=check_finite)
    if pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3); got {tuple(pos.shape)}")
    q = as_float_array(charges, "charges", ndim=1, dtype=np.float64, ctx=ctx,
                       check_finite=check_finite)
    if q.shape[0] != pos.shape[0]:
        raise ValueError(
            f"charges has {q.shape[0]} entries but positions has {pos.shape[0]} particles"
        )
    return pos, q


def _check_targets(targets: Any, ctx: ArrayContext | None = None, check_finite: bool = True):
    t = as_float_array(targets, "targets", ndim=2, dtype=np.float64, ctx=ctx,
                       check_finite=check_finite)
    if t.shape[1] != 3:
        raise ValueError(f"targets must have shape (M, 3); got {tuple(t.shape)}")
    return t


def direct_potential(positions: Any, charges: Any, targets: Any, *, kernel: str = "newton",
                     exponential_sum: Any = None, cutoff: float | None = None,
                     chunk: int | None = None) -> Array:
    r"""Potential of point charges at targets by direct summation, :math:`O(NM)`.

    Parameters
    ----------
    positions : array_like, shape (N, 3)
    charges : array_like, shape (N,)
    targets : array_like, shape (M, 3)
    kernel : {"newton", "long_range", "short_range"}
        ``"newton"``: :math:`\sum_j q_j/|x-x_j|` (pairs at distance 0 are skipped, so at a
        particle this is the potential of the others). ``"long_range"``: :math:`\sum_j q_j
        \sum_k a_k e^{-t_k^2|x-x_j|^2}` with the terms of ``exponential_sum``.
        ``"short_range"``: :math:`\sum_{j:\,|x-x_j|<\text{cutoff}} q_j (1/r - \sum_k a_k
        e^{-t_k^2r^2})`, minus the long-range self term :math:`q_j\sum_k a_k` at distance 0.
    exponential_sum : ExponentialSum, optional
        Required for the ``"long_range"`` and ``"short_range"`` kernels (the long-range terms).
    cutoff : float, optional
        Required for ``"short_range"``.
    chunk : int, optional
        Targets per block in the NumPy and array implementations. Default: 2048 on the host
        (the block's ``chunk x N`` pair terms stay near the cache); on a GPU as many as a
        quarter of its free memory holds (:func:`sci._validation.chunk_length`), so the
        protein's 1e5 targets take one block: a few large launches, not one set per 2048.

    Returns
    -------
    array, shape (M,)
        float64, in the library and on the device of the inputs (NumPy ones and lists follow
        the switch). Charges in e and distances in the positions' unit give e/unit. A Dask
        array when any input is one (see Notes).

    Raises
    ------
    TypeError
        Arrays of two libraries or on two devices (the message names them).

    Notes
    -----
    Implementations: vectorised NumPy blocks (``numpy``), a parallel Numba loop over targets
    (``numba``), a CUDA kernel with one thread per target (``cupy``). Torch tensors (CPU or
    CUDA), ``array_api_strict`` and other array-API arrays take the array path: the same
    blocks written against the standard, without in-place updates, so torch's autograd
    differentiates it with respect to ``positions``, ``charges`` and ``targets`` (away from
    coincident points; the backward keeps each block's ``chunk x N`` pair terms, so
    ``O(M N)`` numbers in all).

    Dask arrays (:doc:`/dask`): Dask ``targets`` chunked along M give a result chunked the
    same way, one task per block running the kernel above against the sources. Dask
    ``positions``/``charges`` chunked along N give, for each block of targets, the per-chunk
    partial potentials summed by a tree reduction; nothing gathers all targets or all
    sources in one task. Non-finite values raise :class:`ValueError` when the graph is
    computed.

    Examples
    --------
    >>> from sci.chebyshev_tucker import direct_potential
    >>> direct_potential([[0, 0, 0], [1, 0, 0]], [1.0, -1.0], [[0, 2, 0]]).round(6).tolist()
    [0.052786]
    """
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}; got {kernel!r}")
    from .. import _dask

    if _dask.any_dask(positions, charges, targets):
        return _direct_dask(positions, charges, targets, kernel, exponential_sum, cutoff, chunk)
    ctx = array_context(positions, charges, targets, names=("positions", "charges", "targets"))
    # on a device the three finiteness checks share one reduction and one read
    together = not ctx.is_numpy
    pos, q = _check_particles(positions, charges, ctx, check_finite=not together)
    tgt = _check_targets(targets, ctx, check_finite=not together)
    if together:
        check_all_finite(ctx.xp, {"positions": pos, "charges": q, "targets": tgt})
    chunk = _chunk(chunk, tgt.shape[0], pos.shape[0], ctx)
    # the array path takes the kernel's parameters as host numbers; the kernels as arrays
    # of their own library
    host = ctx.backend == "array"
    weights, exponents, rc = _kernel_parameters(kernel, exponential_sum, cutoff, host=host)
    if pos.shape[0] == 0 or tgt.shape[0] == 0:
        if ctx.is_numpy:
            return np.zeros(tgt.shape[0])
        return ctx.xp.zeros(tgt.shape[0], dtype=ctx.xp.float64, device=ctx.device)
    code = _KERNELS.index(kernel)
    return implementation("chebyshev_tucker.direct", ctx.backend)(
        pos, q, tgt, code, weights, exponents, rc, chunk
    )


_HOST_CHUNK = 2048


def _chunk(chunk: Any, targets: int, sources: int, ctx: ArrayContext | None) -> int:
    """Targets per block: ``chunk`` checked, or by default from the memory of ``ctx``'s
    device (a few ``chunk x N`` float64 temporaries per block: differences, squares, kernel)."""
    if chunk is not None:
        return check_integer(chunk, "chunk", minimum=1)
    if ctx is None or _device_free_memory(ctx) is None:
        return _HOST_CHUNK
    return chunk_length(max(targets, 1), 8.0 * 6 * max(sources, 1),
                        budget=memory_limit(ctx) / 4)


def _kernel_parameters(kernel: str, exponential_sum: Any, cutoff: Any, *, host: bool = False):
    """(weights, squared exponents, cutoff) of the kernel's smooth part, checked (NumPy
    arrays if ``host``, else arrays of the switch's library)."""
    xp = np if host else array_namespace()
    if kernel == "newton":
        return xp.zeros(0), xp.zeros(0), 0.0
    if exponential_sum is None:
        raise ValueError(f"kernel={kernel!r} needs exponential_sum= (its long-range terms)")
    weights = xp.asarray(exponential_sum.weights, dtype=xp.float64)
    exponents = xp.asarray(exponential_sum.exponents, dtype=xp.float64) ** 2
    rc = 0.0
    if kernel == "short_range":
        if cutoff is None or not float(cutoff) > 0:
            raise ValueError(f"kernel='short_range' needs a cutoff > 0; got {cutoff!r}")
        rc = float(cutoff)
    return weights, exponents, rc


def _dask_points(x: Any, name: str, ndim: int):
    """A Dask array argument checked for shape (known from the graph), whole rows per block;
    a NumPy/CuPy one checked and wrapped as a single block."""
    if ndim == 2:
        def host(v):
            return _check_targets(v) if name == "targets" else as_float_array(v, name, ndim=2)
    else:
        def host(v):
            return as_float_array(v, name, ndim=1, dtype=np.float64)
    shape = "(M, 3)" if name == "targets" else "(N, 3)" if ndim == 2 else "(N,)"
    return check_dask_rows(x, name, ndim=ndim, columns=3 if ndim == 2 else None, shape=shape,
                           host=host)


def _direct_dask(positions, charges, targets, kernel, exponential_sum, cutoff, chunk):
    """direct_potential on Dask arrays: blocks of targets x blocks of sources, summed over
    the source blocks by a tree reduction."""
    from .. import _dask

    da = _dask.dask_array_module()
    chunk = _HOST_CHUNK if chunk is None else check_integer(chunk, "chunk", minimum=1)
    _kernel_parameters(kernel, exponential_sum, cutoff)  # refuse bad parameters up front
    tgt = _dask_points(targets, "targets", 2)
    pos = _dask_points(positions, "positions", 2)
    q = _dask_points(charges, "charges", 1)
    if q.shape[0] != pos.shape[0]:
        raise ValueError(
            f"charges has {q.shape[0]} entries but positions has {pos.shape[0]} particles"
        )
    q = q.rechunk((pos.chunks[0],))
    backend = _dask.task_backend(tgt, pos, q)
    task = _dask.in_backend(_direct_block, backend)
    options = dict(kernel=kernel, exponential_sum=exponential_sum, cutoff=cutoff, chunk=chunk)
    if pos.numblocks[0] == 1:
        return da.blockwise(task, "t", tgt, "td", pos, "sd", q, "s", dtype=np.float64,
                            meta=_dask.meta_array(backend, 1), concatenate=True, partial=False,
                            **options)
    partials = da.blockwise(task, "ts", tgt, "td", pos, "sd", q, "s", dtype=np.float64,
                            adjust_chunks={"s": 1}, meta=_dask.meta_array(backend, 2),
                            partial=True, concatenate=True, **options)
    return partials.sum(axis=1)


def _direct_block(tgt, pos, q, *, kernel, exponential_sum, cutoff, chunk, partial):
    """One block of targets against one block of sources (a column of partials if
    ``partial``)."""
    out = direct_potential(pos, q, tgt, kernel=kernel, exponential_sum=exponential_sum,
                           cutoff=cutoff, chunk=chunk)
    return out[:, None] if partial else out


def _direct_xp(pos, q, tgt, code, weights, exponents, cutoff, chunk):
    """Blocks of targets against all sources, written once for NumPy and CuPy."""
    xp = array_namespace()
    out = xp.empty(tgt.shape[0], dtype=xp.float64)
    for start in range(0, tgt.shape[0], chunk):
        block = tgt[start:start + chunk]
        diff = block[:, None, :] - pos[None, :, :]
        r2 = (diff * diff).sum(axis=2)
        out[start:start + chunk] = _pair_kernel(xp, r2, code, weights, exponents, cutoff) @ q
    return out


def _pair_kernel(xp, r2, code, weights, exponents, cutoff):
    zero = r2 == 0
    if code == 1 or code == 2:
        smooth = xp.zeros_like(r2)
        for a, t2 in zip(weights.tolist(), exponents.tolist(), strict=True):
            smooth += a * xp.exp(-t2 * r2)
    if code == 1:
        return smooth
    inv = 1.0 / xp.where(zero, 1.0, xp.sqrt(r2))
    inv = xp.where(zero, 0.0, inv)
    if code == 0:
        return inv
    inside = r2 < cutoff * cutoff
    return xp.where(inside, inv - smooth, 0.0)


register("chebyshev_tucker.direct", "numpy", _direct_xp)
# torch, array_api_strict, ...: the same blocks against the standard, differentiable
register("chebyshev_tucker.direct", "array", "sci.chebyshev_tucker._array:direct")
register("chebyshev_tucker.direct", "numba", "sci.chebyshev_tucker._cpu:direct")
register("chebyshev_tucker.direct", "cupy", "sci.chebyshev_tucker._gpu:direct")

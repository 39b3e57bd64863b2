"""CuPy kernels (imported lazily): direct summation, one CUDA thread per target, the sources
staged through shared memory a tile at a time.

Unvalidated on hardware in the session that wrote it (no GPU); the tests for it are marked
``gpu`` and compare against the NumPy implementation where a device exists.
"""

from __future__ import annotations

import functools

import cupy

from . import _gpu_source

_THREADS = _gpu_source.DIRECT_THREADS


@functools.cache
def _kernel():
    return cupy.RawKernel(_gpu_source.DIRECT, "direct_kernel")


def direct(pos, q, tgt, code, weights, exponents, cutoff, chunk):
    """CuPy entry point of ``chebyshev_tucker.direct``."""
    pos = cupy.ascontiguousarray(pos, dtype=cupy.float64)
    tgt = cupy.ascontiguousarray(tgt, dtype=cupy.float64)
    q = cupy.ascontiguousarray(q, dtype=cupy.float64)
    weights = cupy.ascontiguousarray(weights, dtype=cupy.float64)
    exponents = cupy.ascontiguousarray(exponents, dtype=cupy.float64)
    m = tgt.shape[0]
    out = cupy.empty(m, dtype=cupy.float64)
    blocks = (m + _THREADS - 1) // _THREADS
    _kernel()(
        (blocks,), (_THREADS,),
        (pos, q, tgt, cupy.int64(pos.shape[0]), cupy.int64(m), cupy.int32(code), weights,
         exponents, cupy.int32(weights.shape[0]), cupy.float64(cutoff * cutoff), out),
    )
    return out

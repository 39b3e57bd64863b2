"""Numba kernels of sci.neural_collapse (imported lazily through the dispatch table)."""

from __future__ import annotations

import numba
import numpy as np

# Columns handled by one thread: a block of a row is contiguous, so each thread streams
# through the rows once and adds into its own slice of the sums (no write conflicts).
_BLOCK = 64
# Below this many entries waking the thread pool costs more than the sum itself (measured:
# ~10 ms per call on a loaded 2-core machine against microseconds of work).
_PARALLEL_MIN_ENTRIES = 1 << 18


@numba.njit(cache=True, parallel=True)
def _class_sums_parallel(D, labels, sums):
    n, d = D.shape
    blocks = (d + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(blocks):
        lo = blk * _BLOCK
        hi = min(d, lo + _BLOCK)
        for i in range(n):
            c = labels[i]
            for j in range(lo, hi):
                sums[c, j] += D[i, j]


@numba.njit(cache=True)
def _class_sums_serial(D, labels, sums):
    n, d = D.shape
    for i in range(n):
        c = labels[i]
        for j in range(d):
            sums[c, j] += D[i, j]


def class_sums(D: np.ndarray, labels: np.ndarray, K: int) -> np.ndarray:
    """Per-class row sums of ``D`` (n, d) by ``labels`` (n,) in ``0..K-1``: shape (K, d)."""
    sums = np.zeros((K, D.shape[1]), dtype=D.dtype)
    kernel = _class_sums_parallel if D.size >= _PARALLEL_MIN_ENTRIES else _class_sums_serial
    kernel(np.ascontiguousarray(D), np.ascontiguousarray(labels, np.int64), sums)
    return sums

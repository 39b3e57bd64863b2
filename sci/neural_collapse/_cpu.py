"""Numba kernels of sci.neural_collapse (imported lazily through the dispatch table)."""

from __future__ import annotations

import numba
import numpy as np

# Columns handled by one thread: a block of a row is contiguous, so each thread streams
# through the rows once and adds into its own slice of the sums (no write conflicts).
_BLOCK = 64


@numba.njit(cache=True, parallel=True)
def _class_sums_kernel(D, labels, sums):
    n, d = D.shape
    blocks = (d + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(blocks):
        lo = blk * _BLOCK
        hi = min(d, lo + _BLOCK)
        for i in range(n):
            c = labels[i]
            for j in range(lo, hi):
                sums[c, j] += D[i, j]


def class_sums(D: np.ndarray, labels: np.ndarray, K: int) -> np.ndarray:
    """Per-class row sums of ``D`` (n, d) by ``labels`` (n,) in ``0..K-1``: shape (K, d)."""
    sums = np.zeros((K, D.shape[1]), dtype=D.dtype)
    _class_sums_kernel(np.ascontiguousarray(D), np.ascontiguousarray(labels, np.int64), sums)
    return sums

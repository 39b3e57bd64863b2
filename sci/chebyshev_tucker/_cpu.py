"""Numba kernels: direct summation of particle potentials, parallel over targets."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, parallel=True, fastmath=False)
def _direct_kernel(pos, q, tgt, code, weights, exponents, cutoff, out):
    n = pos.shape[0]
    nterms = weights.shape[0]
    cutoff2 = cutoff * cutoff
    for i in numba.prange(tgt.shape[0]):
        x, y, z = tgt[i, 0], tgt[i, 1], tgt[i, 2]
        acc = 0.0
        for j in range(n):
            dx, dy, dz = x - pos[j, 0], y - pos[j, 1], z - pos[j, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if code == 2 and r2 >= cutoff2:
                continue
            smooth = 0.0
            if code != 0:
                for k in range(nterms):
                    smooth += weights[k] * math.exp(-exponents[k] * r2)
            if code == 1:
                acc += q[j] * smooth
                continue
            inv = 0.0 if r2 == 0.0 else 1.0 / math.sqrt(r2)
            if code == 0:
                acc += q[j] * inv
            else:
                acc += q[j] * (inv - smooth)
        out[i] = acc


def direct(pos, q, tgt, code, weights, exponents, cutoff, chunk):
    """Numba entry point of ``chebyshev_tucker.direct`` (``chunk`` is unused here)."""
    out = np.empty(tgt.shape[0], dtype=np.float64)
    _direct_kernel(
        np.ascontiguousarray(pos), np.ascontiguousarray(q), np.ascontiguousarray(tgt),
        int(code), np.ascontiguousarray(weights, dtype=np.float64),
        np.ascontiguousarray(exponents, dtype=np.float64), float(cutoff), out,
    )
    return out

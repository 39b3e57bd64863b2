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


@numba.njit(cache=True)
def _cell_index(pos, lo, cutoff, dims):
    n = pos.shape[0]
    cell = np.empty(n, dtype=np.int64)
    for j in range(n):
        cx = min(int((pos[j, 0] - lo[0]) / cutoff), dims[0] - 1)
        cy = min(int((pos[j, 1] - lo[1]) / cutoff), dims[1] - 1)
        cz = min(int((pos[j, 2] - lo[2]) / cutoff), dims[2] - 1)
        cell[j] = (cx * dims[1] + cy) * dims[2] + cz
    return cell


@numba.njit(cache=True, parallel=True)
def _short_range_kernel(spos, sq, starts, lo, cell, dims, tgt, cutoff, weights, exponents,
                        self_term, out):
    cutoff2 = cutoff * cutoff
    nterms = weights.shape[0]
    for i in numba.prange(tgt.shape[0]):
        x, y, z = tgt[i, 0], tgt[i, 1], tgt[i, 2]
        cx = int(np.floor((x - lo[0]) / cell))
        cy = int(np.floor((y - lo[1]) / cell))
        cz = int(np.floor((z - lo[2]) / cell))
        acc = 0.0
        for ax in range(max(cx - 1, 0), min(cx + 2, dims[0])):
            for ay in range(max(cy - 1, 0), min(cy + 2, dims[1])):
                for az in range(max(cz - 1, 0), min(cz + 2, dims[2])):
                    c = (ax * dims[1] + ay) * dims[2] + az
                    for j in range(starts[c], starts[c + 1]):
                        dx, dy, dz = x - spos[j, 0], y - spos[j, 1], z - spos[j, 2]
                        r2 = dx * dx + dy * dy + dz * dz
                        if r2 >= cutoff2:
                            continue
                        if r2 == 0.0:
                            acc -= sq[j] * self_term
                            continue
                        smooth = 0.0
                        for k in range(nterms):
                            smooth += weights[k] * math.exp(-exponents[k] * r2)
                        acc += sq[j] * (1.0 / math.sqrt(r2) - smooth)
        out[i] = acc


def short_range(pos, q, tgt, long_sum, cutoff):
    """Numba entry point of ``chebyshev_tucker.short_range``: a cell list with cells of the
    cutoff's size, so each target visits 27 cells (O(neighbours) per target)."""
    out = np.zeros(tgt.shape[0], dtype=np.float64)
    if pos.shape[0] == 0 or tgt.shape[0] == 0:
        return out
    lo = pos.min(axis=0)
    extent = pos.max(axis=0) - lo
    # Cap the cell count: a tiny cutoff in a big box would otherwise allocate a huge table.
    cell = max(float(cutoff), float(extent.max()) / 256.0, 1e-300)
    dims = np.maximum(np.floor(extent / cell).astype(np.int64) + 1, 1)
    index = _cell_index(pos, lo, cell, dims)
    order = np.argsort(index, kind="stable")
    counts = np.bincount(index, minlength=int(np.prod(dims)))
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    weights = np.ascontiguousarray(long_sum.weights, dtype=np.float64)
    exponents = np.ascontiguousarray(long_sum.exponents, dtype=np.float64) ** 2
    # With cells larger than the cutoff (the cap), 27 cells still cover the cutoff ball.
    _short_range_kernel(np.ascontiguousarray(pos[order]), np.ascontiguousarray(q[order]),
                        starts, lo, cell, dims, np.ascontiguousarray(tgt), float(cutoff), weights,
                        exponents, float(np.sum(weights)), out)
    return out

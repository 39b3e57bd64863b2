"""Numba kernels of :mod:`sci.generalization` (registered lazily in the dispatch table)."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _mp_density(x, lower, upper):
    if lower < x < upper:
        return math.sqrt((upper - x) * (x - lower)) / (2.0 * math.pi * x)
    return 0.0


@numba.njit(cache=True)
def _mp_edges(a):
    root = math.sqrt(a)
    # (1 - sqrt a)^2 without cancellation as a -> 1, as in the array implementation.
    return ((1.0 - a) / (1.0 + root)) ** 2, (1.0 + root) ** 2


@numba.njit(cache=True, parallel=True)
def _mp_pdf_one_alpha(lam, a, out):
    lower, upper = _mp_edges(a)
    for i in numba.prange(lam.size):
        out[i] = _mp_density(lam[i], lower, upper)


@numba.njit(cache=True, parallel=True)
def _mp_pdf_flat(lam, alpha, out):
    for i in numba.prange(lam.size):
        lower, upper = _mp_edges(alpha[i])
        out[i] = _mp_density(lam[i], lower, upper)


def mp_pdf(lam: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Marchenko–Pastur density for arrays of one float dtype (see the public API)."""
    shape = np.broadcast_shapes(lam.shape, alpha.shape)
    if alpha.size == 1 and lam.shape == shape:
        # The common case (one alpha, many eigenvalues): edges computed once, no broadcast copy.
        lam_flat = np.ascontiguousarray(lam).reshape(-1)
        out = np.empty_like(lam_flat)
        _mp_pdf_one_alpha(lam_flat, alpha.reshape(()).item(), out)
        return out.reshape(shape)
    # Materialise the broadcast (writeable, contiguous) so the kernel sees flat arrays.
    lam_full = np.empty(shape, lam.dtype)
    lam_full[...] = lam
    alpha_full = np.empty(shape, lam.dtype)
    alpha_full[...] = alpha
    out = np.empty(lam_full.size, lam.dtype)
    _mp_pdf_flat(lam_full.reshape(-1), alpha_full.reshape(-1), out)
    return out.reshape(shape)

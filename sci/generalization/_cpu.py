"""Numba kernels of :mod:`sci.generalization` (registered lazily in the dispatch table)."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, parallel=True, fastmath=False)
def _mp_pdf_flat(lam, alpha, out):
    for i in numba.prange(lam.size):
        a = alpha[i]
        root = math.sqrt(a)
        lower = ((1.0 - a) / (1.0 + root)) ** 2
        upper = (1.0 + root) ** 2
        x = lam[i]
        if lower < x < upper:
            out[i] = math.sqrt((upper - x) * (x - lower)) / (2.0 * math.pi * x)
        else:
            out[i] = 0.0


def mp_pdf(lam: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Marchenko–Pastur density for arrays of one float dtype (see the public API)."""
    shape = np.broadcast_shapes(lam.shape, alpha.shape)
    # Materialise the broadcast (writeable, contiguous) so the kernel sees flat arrays.
    lam_flat = np.empty(shape, lam.dtype)
    lam_flat[...] = lam
    alpha_flat = np.empty(shape, lam.dtype)
    alpha_flat[...] = alpha
    lam_flat, alpha_flat = lam_flat.ravel(), alpha_flat.ravel()
    out = np.empty_like(lam_flat)
    _mp_pdf_flat(lam_flat, alpha_flat, out)
    return out.reshape(shape)

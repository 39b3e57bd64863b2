"""The array path of sci.chebyshev_tucker: code written once against the array API standard.

It serves every library without kernels of its own (torch on CPU or CUDA, ``array_api_strict``,
...): the dispatch key ``"array"`` of :func:`sci.backend.array_context`. NumPy keeps its
vectorised blocks and Numba kernel, CuPy its CUDA kernel (``_direct.py``, ``_cpu.py``,
``_gpu.py``).

Everything here composes standard operations without in-place updates, so torch's autograd
differentiates it as it stands. The kernel parameters (the exponential-sum weights and
exponents, the cutoff) are host numbers: they enter as Python floats, never as a device read.
"""

from __future__ import annotations

from typing import Any

import array_api_compat


def direct(pos: Any, q: Any, tgt: Any, code: int, weights: Any, exponents: Any, cutoff: float,
           chunk: int) -> Any:
    """Blocks of ``chunk`` targets against all sources (``_direct._direct_xp`` without
    in-place writes). ``weights`` and ``exponents`` are NumPy arrays (host constants)."""
    xp = array_api_compat.array_namespace(tgt, pos, q)
    terms = list(zip(weights.tolist(), exponents.tolist(), strict=True))
    blocks = []
    for start in range(0, tgt.shape[0], chunk):
        block = tgt[start:min(start + chunk, tgt.shape[0]), :]
        diff = block[:, None, :] - pos[None, :, :]
        r2 = xp.sum(diff * diff, axis=2)
        blocks.append(_pair_kernel(xp, r2, code, terms, cutoff) @ q)
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks)


def _pair_kernel(xp: Any, r2: Any, code: int, terms: list, cutoff: float) -> Any:
    zero = r2 == 0
    smooth = None
    if code in (1, 2):
        smooth = xp.zeros_like(r2)
        for a, t2 in terms:
            smooth = smooth + a * xp.exp(-t2 * r2)
    if code == 1:
        return smooth
    # sqrt is never taken at 0 (its derivative there is infinite, and autograd would carry
    # 0 * inf = NaN through the masked branch)
    inv = 1.0 / xp.sqrt(xp.where(zero, xp.ones_like(r2), r2))
    inv = xp.where(zero, xp.zeros_like(r2), inv)
    if code == 0:
        return inv
    inside = r2 < cutoff * cutoff
    return xp.where(inside, inv - smooth, xp.zeros_like(r2))

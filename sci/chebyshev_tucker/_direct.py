"""Direct O(N M) summation of particle potentials: the oracle for the tensor formats."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_float_array, check_integer
from ..backend import array_namespace, implementation, register

__all__ = ["direct_potential"]

_KERNELS = ("newton", "long_range", "short_range")


def _check_particles(positions: Any, charges: Any):
    pos = as_float_array(positions, "positions", ndim=2, dtype=np.float64)
    if pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3); got {tuple(pos.shape)}")
    q = as_float_array(charges, "charges", ndim=1, dtype=np.float64)
    if q.shape[0] != pos.shape[0]:
        raise ValueError(
            f"charges has {q.shape[0]} entries but positions has {pos.shape[0]} particles"
        )
    return pos, q


def _check_targets(targets: Any):
    t = as_float_array(targets, "targets", ndim=2, dtype=np.float64)
    if t.shape[1] != 3:
        raise ValueError(f"targets must have shape (M, 3); got {tuple(t.shape)}")
    return t


def direct_potential(positions: Any, charges: Any, targets: Any, *, kernel: str = "newton",
                     exponential_sum: Any = None, cutoff: float | None = None,
                     chunk: int = 2048):
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
    chunk : int
        Targets per block in the NumPy implementation.

    Returns
    -------
    array, shape (M,)
        Charges in e and distances in the positions' unit give e/unit.

    Notes
    -----
    Implementations: vectorised NumPy blocks (``numpy``), a parallel Numba loop over targets
    (``numba``), a CUDA kernel with one thread per target (``cupy``).

    Examples
    --------
    >>> from sci.chebyshev_tucker import direct_potential
    >>> direct_potential([[0, 0, 0], [1, 0, 0]], [1.0, -1.0], [[0, 2, 0]]).round(6).tolist()
    [0.052786]
    """
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}; got {kernel!r}")
    pos, q = _check_particles(positions, charges)
    tgt = _check_targets(targets)
    chunk = check_integer(chunk, "chunk", minimum=1)
    xp = array_namespace()
    if kernel == "newton":
        weights = exponents = xp.zeros(0)
        rc = 0.0
    else:
        if exponential_sum is None:
            raise ValueError(f"kernel={kernel!r} needs exponential_sum= (its long-range terms)")
        weights = xp.asarray(exponential_sum.weights, dtype=xp.float64)
        exponents = xp.asarray(exponential_sum.exponents, dtype=xp.float64) ** 2
        rc = 0.0
        if kernel == "short_range":
            if cutoff is None or not float(cutoff) > 0:
                raise ValueError(f"kernel='short_range' needs a cutoff > 0; got {cutoff!r}")
            rc = float(cutoff)
    if pos.shape[0] == 0 or tgt.shape[0] == 0:
        return xp.zeros(tgt.shape[0], dtype=xp.float64)
    code = _KERNELS.index(kernel)
    return implementation("chebyshev_tucker.direct")(
        pos, q, tgt, code, weights, exponents, rc, chunk
    )


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


register("chebyshev_tucker.direct", "array", _direct_xp)
register("chebyshev_tucker.direct", "numba", "sci.chebyshev_tucker._cpu:direct")
register("chebyshev_tucker.direct", "cupy", "sci.chebyshev_tucker._gpu:direct")

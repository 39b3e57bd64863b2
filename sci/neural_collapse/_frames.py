"""Simplex equiangular tight frames and orthogonal frames, and how far a matrix is from one."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._typing import Array
from .._validation import as_float_array, check_integer, check_real, resolve_rng
from ..backend import (
    array_context,
    asarray,
    cached_constant,
    creation_context,
    to_numpy,
)

__all__ = ["frame_error", "is_orthogonal_frame", "is_simplex_etf", "orthogonal_frame",
           "simplex_etf"]


def _helmert_basis(K: int) -> np.ndarray:
    """An orthonormal basis (K, K-1) of the hyperplane orthogonal to the all-ones vector.

    Column j (j = 1..K-1) is the j-th row of the Helmert matrix: (1, ..., 1, -j, 0, ...) / norm,
    exact up to rounding and deterministic, so the canonical frames need no randomness.
    """
    basis = np.zeros((K, K - 1))
    for j in range(1, K):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= np.sqrt(j * (j + 1.0))
    return basis


def _haar_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed d x d orthogonal matrix (QR of a Gaussian with the sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _embed(rows: np.ndarray, d: int, rng: Any, xp: Any = None, device: Any = None) -> Any:
    frame = np.zeros((rows.shape[0], d))
    frame[:, : rows.shape[1]] = rows
    if rng is not None:
        frame = frame @ _haar_orthogonal(d, resolve_rng(rng)).T
    if xp is None and device is None:
        return asarray(frame)
    ctx = creation_context(xp, device)
    return ctx.asarray(frame, dtype=ctx.xp.float64)


def simplex_etf(
    K: int, d: int | None = None, *, rng: Any = None, xp: Any = None, device: Any = None
) -> Array:
    """The K unit vectors of a simplex equiangular tight frame in dimension ``d``.

    Parameters
    ----------
    K : int
        Number of vectors (classes), ``K >= 2``.
    d : int, optional
        Ambient dimension, ``d >= K - 1`` (default ``K - 1``).
    rng : None, int or numpy.random.Generator
        ``None`` gives the canonical frame (spanned by the first ``K - 1`` coordinate axes);
        otherwise the frame is rotated by a Haar-random orthogonal matrix drawn from ``rng``.
    xp : module, optional
        The array library of the result (numpy, cupy, torch, array_api_strict, ...); default:
        the switch's (NumPy, or CuPy under ``use_backend("cupy")``).
    device : optional
        The device of the result in that library (default: its default device).

    Returns
    -------
    array, shape (K, d)
        One vector per row, of the active backend.

    Raises
    ------
    ValueError
        If ``K < 2`` or ``d < K - 1``.

    Notes
    -----
    The rows :math:`m_k` satisfy :math:`\\|m_k\\| = 1` and :math:`m_k\\cdot m_l = -1/(K-1)`
    for :math:`k \\neq l`; equivalently the Gram matrix is
    :math:`\\tfrac{K}{K-1}(I_K - \\tfrac{1}{K}\\mathbf{1}\\mathbf{1}^\\top)`
    :cite:p:`nc_papyan2020`. They are the rows of :math:`\\sqrt{K/(K-1)}\\,V` with :math:`V`
    an orthonormal basis of :math:`\\mathbf{1}^\\perp` (the Helmert basis).

    Examples
    --------
    >>> import numpy as np
    >>> from sci.neural_collapse import simplex_etf
    >>> M = simplex_etf(3)
    >>> np.round(M @ M.T, 12)
    array([[ 1. , -0.5, -0.5],
           [-0.5,  1. , -0.5],
           [-0.5, -0.5,  1. ]])
    """
    K = check_integer(K, "K", minimum=2)
    d = K - 1 if d is None else check_integer(d, "d", minimum=1)
    if d < K - 1:
        raise ValueError(f"a simplex ETF of K={K} vectors needs d >= K - 1 = {K - 1}; got d={d}")
    return _embed(np.sqrt(K / (K - 1.0)) * _helmert_basis(K), d, rng, xp, device)


def orthogonal_frame(
    K: int, d: int | None = None, *, rng: Any = None, xp: Any = None, device: Any = None
) -> Array:
    """K orthonormal vectors in dimension ``d >= K`` (the bias-free balanced geometry).

    Parameters
    ----------
    K : int
        Number of vectors, ``K >= 1``.
    d : int, optional
        Ambient dimension, ``d >= K`` (default ``K``).
    rng : None, int or numpy.random.Generator
        ``None``: the first ``K`` coordinate axes; otherwise Haar-randomly rotated.
    xp : module, optional
        The array library of the result (numpy, cupy, torch, array_api_strict, ...); default:
        the switch's (NumPy, or CuPy under ``use_backend("cupy")``).
    device : optional
        The device of the result in that library (default: its default device).

    Returns
    -------
    array, shape (K, d)

    Raises
    ------
    ValueError
        If ``d < K``.

    Notes
    -----
    The Gram matrix is :math:`I_K`: the global minimisers of the bias-free balanced MSE
    unconstrained-feature model have :math:`WW^\\top \\propto I_K` :cite:p:`dang2023`.

    Examples
    --------
    >>> from sci.neural_collapse import orthogonal_frame
    >>> orthogonal_frame(2, 3)
    array([[1., 0., 0.],
           [0., 1., 0.]])
    """
    K = check_integer(K, "K", minimum=1)
    d = K if d is None else check_integer(d, "d", minimum=1)
    if d < K:
        raise ValueError(f"an orthogonal frame of K={K} vectors needs d >= K; got d={d}")
    return _embed(np.eye(K), d, rng, xp, device)


_FRAME_KINDS = ("simplex_etf", "orthogonal")


def _target_gram(K: int, kind: str, xp: Any) -> Any:
    if kind == "simplex_etf":
        return (xp.eye(K) - 1.0 / K) / np.sqrt(K - 1.0)
    return xp.eye(K) / np.sqrt(K)


def frame_error(M: Any, kind: str = "simplex_etf") -> float:
    """Distance of the normalised Gram matrix of the rows of ``M`` to that of a frame.

    Parameters
    ----------
    M : array_like, shape (K, d)
        One vector per row (class means, classifier rows).
    kind : {"simplex_etf", "orthogonal"}

    Returns
    -------
    float
        :math:`\\| G/\\|G\\|_F - G^\\star/\\|G^\\star\\|_F \\|_F` with :math:`G = MM^\\top` and
        :math:`G^\\star` the Gram matrix of the frame; 0 exactly for a frame of any scale and
        any rotation. This is the NC2 "ETF error" of :cite:t:`nc_zhu2021`. Computed in the
        library and on the device of ``M`` (torch, ``array_api_strict``, CuPy, ...), with one
        read of two numbers back to the host.

    Examples
    --------
    >>> from sci.neural_collapse import frame_error, simplex_etf
    >>> frame_error(3.0 * simplex_etf(4, 6, rng=0)) < 1e-14
    True
    """
    if kind not in _FRAME_KINDS:
        raise ValueError(f"kind must be one of {_FRAME_KINDS}; got {kind!r}")
    ctx = array_context(M, names=("M",))
    M = as_float_array(M, "M", ndim=2, dtype=np.float64, ctx=ctx)
    K = M.shape[0]
    if kind == "simplex_etf" and K < 2:
        raise ValueError(f"a simplex ETF needs at least 2 rows; M has shape {tuple(M.shape)}")
    xp = ctx.xp
    target = cached_constant(("neural_collapse.target_gram", K, kind),
                             lambda: _target_gram(K, kind, np), ctx, xp.float64)
    gram = M @ M.T
    norm = xp.linalg.matrix_norm(gram)
    with np.errstate(invalid="ignore", divide="ignore"):  # M = 0 is refused just below
        error = xp.linalg.matrix_norm(gram / norm - target)
        norm_host, error_host = to_numpy(xp.stack([norm, error])).tolist()
    if norm_host == 0.0:
        raise ValueError("M is zero; its Gram matrix cannot be normalised")
    return float(error_host)


def is_simplex_etf(M: Any, *, atol: float = 1e-8) -> bool:
    """Whether the rows of ``M`` form a (scaled, rotated) simplex ETF, to ``atol``.

    The test is :func:`frame_error` ``<= atol`` plus the rows being centred
    (:math:`\\|\\sum_k m_k\\| \\le` ``atol`` times the largest row norm).

    Examples
    --------
    >>> from sci.neural_collapse import is_simplex_etf, orthogonal_frame, simplex_etf
    >>> is_simplex_etf(simplex_etf(5, 8, rng=1)), is_simplex_etf(orthogonal_frame(5))
    (True, False)
    """
    atol = check_real(atol, "atol", low=0.0)
    ctx = array_context(M, names=("M",))
    M = as_float_array(M, "M", ndim=2, dtype=np.float64, ctx=ctx)
    error = frame_error(M, "simplex_etf")  # refuses fewer than 2 rows and M = 0
    xp = ctx.xp
    scale, offset = to_numpy(xp.stack([xp.max(xp.linalg.vector_norm(M, axis=1)),
                                       xp.linalg.vector_norm(xp.sum(M, axis=0))])).tolist()
    return error <= atol and offset <= atol * scale


def is_orthogonal_frame(M: Any, *, atol: float = 1e-8) -> bool:
    """Whether the rows of ``M`` are orthogonal with equal norms, to ``atol`` (see frame_error).

    Examples
    --------
    >>> from sci.neural_collapse import is_orthogonal_frame, orthogonal_frame
    >>> is_orthogonal_frame(2.5 * orthogonal_frame(3, 7, rng=3))
    True
    """
    atol = check_real(atol, "atol", low=0.0)
    return frame_error(M, "orthogonal") <= atol

"""Tucker decompositions of 3D tensors: truncated HOSVD with epsilon-ranks, HOOI, reduced HOSVD."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import as_float_array, check_integer, check_memory, check_real
from ..backend import ArrayContext, array_context, array_namespace, creation_context, to_numpy

__all__ = ["TuckerTensor", "hooi", "hosvd", "reduced_hosvd", "reduced_hosvd_blocks"]


@dataclass
class TuckerTensor:
    r"""A Tucker tensor :math:`A = G \times_1 U_1 \times_2 U_2 \times_3 U_3`.

    Attributes
    ----------
    core : array, shape (r1, r2, r3)
    factors : list of 3 arrays, shapes (n_k, r_k), orthonormal columns
    singular_values : list of 3 NumPy arrays
        The mode-k singular values of the tensor that was decomposed (all of them, not only
        the kept ones), for plots of their decay.
    error : float
        Relative Frobenius error :math:`\|A - \tilde A\|_F / \|A\|_F`: for :func:`hosvd` the
        bound :math:`(\sum_k \|\sigma^{(k)}_{r_k+1:}\|^2)^{1/2}/\|A\|_F` (exact up to rounding
        for an orthogonal projection per mode); for :func:`hooi` the computed residual.
    """

    core: Any
    factors: list
    singular_values: list = field(default_factory=list)
    error: float = float("nan")

    @property
    def ranks(self) -> tuple[int, int, int]:
        """The Tucker ranks ``(r1, r2, r3)``."""
        return tuple(int(u.shape[1]) for u in self.factors)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(u.shape[0]) for u in self.factors)

    def to_full(self):
        """The full ``n1 x n2 x n3`` array (checked against the memory limit).

        Computed in the library and on the device of the core and factors (NumPy ones follow
        the switch: on the GPU under ``use_backend("cupy")``); a core and factors of two
        libraries or devices raise :class:`TypeError`. :meth:`to` moves a Tucker tensor.
        """
        n = self.shape
        check_memory(8.0 * n[0] * n[1] * n[2], f"a full {n[0]}x{n[1]}x{n[2]} tensor")
        return multi_mode_product(self.core, self.factors)

    def to(self, xp: Any = None, device: Any = None) -> TuckerTensor:
        """A copy with the core and factors in the array library ``xp`` on ``device`` (as
        :func:`sci.backend.creation_context` takes them; default: the switch's library).

        Arrays already there are shared; between libraries they are copied through the host.
        ``singular_values`` stay NumPy arrays (host data for plots) and ``error`` a float.

        Examples
        --------
        >>> import numpy as np, array_api_strict as strict
        >>> from sci.chebyshev_tucker import hosvd
        >>> t = hosvd(np.ones((2, 3, 4)), ranks=1).to(strict, strict.Device("device1"))
        >>> t.core.device, t.to_full().device
        (array_api_strict.Device('device1'), array_api_strict.Device('device1'))
        """
        from ._array import move

        target = creation_context(xp, device)
        return TuckerTensor(core=move(self.core, target),
                            factors=[move(u, target) for u in self.factors],
                            singular_values=list(self.singular_values), error=self.error)


def _front(mode: int) -> tuple[int, int, int]:
    """The axis order that moves axis ``mode`` of a 3-way tensor to the front."""
    return (mode,) + tuple(k for k in range(3) if k != mode)


def unfold(tensor, mode: int, xp=None):
    """Mode-``mode`` unfolding, shape ``(n_mode, prod(other sizes))`` (``xp``: the namespace
    of ``tensor``; default the switch's)."""
    if xp is None:
        xp = array_namespace()
        return xp.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)
    return xp.reshape(xp.permute_dims(tensor, _front(mode)), (tensor.shape[mode], -1))


def mode_product(tensor, matrix, mode: int, xp=None):
    """``tensor x_mode matrix``: contracts axis ``mode`` of ``tensor`` with the columns of
    ``matrix`` (shape (new, old))."""
    if xp is None:
        xp = array_namespace()
        moved = xp.moveaxis(tensor, mode, 0)
        shape = moved.shape
        out = (matrix @ moved.reshape(shape[0], -1)).reshape((matrix.shape[0],) + shape[1:])
        return xp.moveaxis(out, 0, mode)
    order = _front(mode)
    moved = xp.permute_dims(tensor, order)
    shape = tuple(moved.shape)
    out = xp.reshape(matrix @ xp.reshape(moved, (shape[0], -1)),
                     (matrix.shape[0],) + shape[1:])
    inverse = tuple(order.index(k) for k in range(3))
    return xp.permute_dims(out, inverse)


def multi_mode_product(core, factors, *, transpose: bool = False):
    """``core x_1 U1 x_2 U2 x_3 U3`` (or with the transposes) of a 3-way ``core``.

    Three matrix products, in the cheapest of the six orders (:func:`contraction_order`):
    for a grid export the last product, :math:`n_1n_2n_3` outputs times the rank it
    contracts, is nearly all the work, so the mode of least rank goes last. Each product writes
    its result in C order, so no axis is ever moved and the result is C-contiguous: mode 1 on
    the ``(a, b c)`` unfolding, mode 2 as a batched product over the first axis, mode 3 on the
    ``(a b, c)`` unfolding. (Moving axes to the front and back, as :func:`mode_product` does,
    left the n1 x n2 x n3 grid export as a strided view and cost a transposing copy of every
    intermediate.) Three array operations (and reshapes) whatever the sizes: on a GPU, three
    GEMM launches.

    Written against the array API: the namespace and device are those of ``core`` and
    ``factors`` (host arrays follow the switch), two libraries or devices raise TypeError.
    """
    ctx = array_context(core, *factors, names=("core", "factors[0]", "factors[1]", "factors[2]"))
    xp = ctx.xp
    out = ctx.asarray(core)
    mats = [ctx.asarray(u) for u in factors]
    if transpose:
        mats = [u.T for u in mats]
    for mode in contraction_order(tuple(out.shape), tuple(u.shape[0] for u in mats)):
        out = _mode_product_in_place_order(out, mats[mode], mode, xp)
    return out


def contraction_order(ranks: tuple[int, int, int], sizes: tuple[int, int, int]) -> tuple:
    """The order of the three mode products ``ranks -> sizes`` with the fewest multiply-adds
    (ties: the lower modes first).

    Examples
    --------
    >>> from sci.chebyshev_tucker._tucker import contraction_order
    >>> contraction_order((31, 35, 35), (256, 256, 256))  # the least rank last
    (1, 2, 0)
    >>> contraction_order((4, 4, 4), (9, 9, 9))
    (0, 1, 2)
    """
    def cost(order):
        shape, total = list(ranks), 0
        for mode in order:
            total += sizes[mode] * math.prod(shape)
            shape[mode] = sizes[mode]
        return total

    return min(itertools.permutations(range(3)), key=cost)


def _mode_product_in_place_order(tensor, matrix, mode: int, xp):
    """``tensor x_mode matrix`` for a C-ordered 3-way ``tensor``, written in C order with no
    axis moved (one matrix product)."""
    a, b, c = tensor.shape
    new = matrix.shape[0]
    if mode == 0:
        return xp.reshape(matrix @ xp.reshape(tensor, (a, b * c)), (new, b, c))
    if mode == 1:
        return xp.matmul(matrix, tensor)  # (new, b) @ (a, b, c) -> (a, new, c)
    return xp.reshape(xp.reshape(tensor, (a * b, c)) @ matrix.T, (a, b, new))


def epsilon_rank(singular_values: np.ndarray, threshold: float) -> int:
    r"""The least ``r`` with :math:`\|\sigma_{r+1:}\|_2 \le` ``threshold`` (at least 1)."""
    s = np.asarray(singular_values, dtype=np.float64)
    # tails[r] = ||s[r:]||, accumulated from the small end so it is accurate far below 1e-8.
    tails = np.sqrt(np.cumsum((s * s)[::-1])[::-1])
    tails = np.append(tails, 0.0)
    return max(1, int(np.argmax(tails <= threshold)))


def _check_ranks(ranks: Any, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if isinstance(ranks, int | np.integer):
        ranks = (int(ranks),) * 3
    try:
        ranks = tuple(ranks)
    except TypeError:
        raise TypeError(f"ranks must be an int or three ints; got {ranks!r}") from None
    if len(ranks) != 3:
        raise ValueError(f"ranks must be an int or three ints; got {ranks!r}")
    return tuple(
        check_integer(r, f"ranks[{k}]", minimum=1, maximum=shape[k]) for k, r in enumerate(ranks)
    )


def _check_tensor(tensor: Any, name: str = "tensor", ctx: ArrayContext | None = None):
    arr = as_float_array(tensor, name, ndim=3, ctx=ctx)
    if min(arr.shape) < 1:
        raise ValueError(f"{name} must be non-empty; got shape {tuple(arr.shape)}")
    return arr


def _left_singular(matrix, xp):
    u, s, _ = xp.linalg.svd(matrix, full_matrices=False)
    return u, s


def _norm(x, xp) -> float:
    """The Frobenius norm of ``x`` on the host (one read)."""
    return float(to_numpy(xp.linalg.vector_norm(x))) if math.prod(x.shape) else 0.0


def hosvd(tensor: Any, *, tol: float | None = None, ranks: Any = None) -> TuckerTensor:
    r"""Truncated higher-order SVD of a 3D tensor, with epsilon-ranks or fixed ranks.

    Parameters
    ----------
    tensor : array_like, shape (n1, n2, n3)
    tol : float, optional
        Relative accuracy :math:`\varepsilon`: mode ``k`` keeps the least :math:`r_k` with
        :math:`\|\sigma^{(k)}_{r_k+1:}\|_2 \le \varepsilon\|A\|_F/\sqrt 3`.
    ranks : int or (int, int, int), optional
        Fixed ranks instead (exactly one of ``tol`` and ``ranks``).

    Returns
    -------
    TuckerTensor
        With orthonormal factors, the core :math:`A\times_k U_k^T` and the relative error
        bound :math:`\le \varepsilon`; core and factors in the library and on the device of
        ``tensor`` (NumPy and lists follow the switch). Torch and other array-API arrays take
        the same algorithm through the standard (``linalg.svd``); the three mode spectra are
        read back to the host to choose the ranks.

    Raises
    ------
    ValueError
        Both or neither of ``tol`` and ``ranks``; ``tol`` outside (0, 1); ranks out of range.

    Notes
    -----
    Each factor is the leading left singular vectors of the mode-k unfolding, computed by an SVD
    of the unfolding itself (not of its Gram matrix, which would lose every singular value
    below :math:`\sqrt{\text{eps}}\,\sigma_1`). The truncation error of the three orthogonal
    projections adds in squares (De Lathauwer et al. 2000), hence the :math:`\sqrt 3`.

    References
    ----------
    .. [1] L. De Lathauwer, B. De Moor, J. Vandewalle, "A multilinear singular value
       decomposition", SIAM J. Matrix Anal. Appl. 21 (2000).
    .. [2] P. Benner, B. Khoromskij, V. Khoromskaia, B. Sun, arXiv:2503.01696 (2025).

    Examples
    --------
    >>> import numpy as np
    >>> from sci.chebyshev_tucker import hosvd
    >>> a, b, c = np.linspace(0, 1, 6), np.linspace(1, 2, 7), np.linspace(-1, 0, 8)
    >>> t = np.einsum("i,j,k->ijk", a, b, c) + np.einsum("i,j,k->ijk", a**2, b, c**3)
    >>> hosvd(t, tol=1e-10).ranks
    (2, 1, 2)
    """
    ctx = array_context(tensor, names=("tensor",))
    arr = _check_tensor(tensor, ctx=ctx)
    if (tol is None) == (ranks is None):
        raise ValueError("give exactly one of tol (epsilon-ranks) and ranks (fixed ranks)")
    xp = ctx.xp
    if tol is not None:
        tol = check_real(tol, "tol", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    else:
        ranks = _check_ranks(ranks, arr.shape)
    # the three SVDs first, then the norm and the three spectra come to the host in one read
    pairs = [_left_singular(unfold(arr, mode, xp), xp) for mode in range(3)]
    host = to_numpy(xp.astype(
        xp.concat([xp.reshape(xp.linalg.vector_norm(arr), (1,)), *(s for _, s in pairs)]),
        xp.float64))
    norm, start = float(host[0]), 1
    factors, spectra, tails = [], [], []
    for mode, (u, s) in enumerate(pairs):
        s_host = host[start:start + s.shape[0]]
        start += s.shape[0]
        r = epsilon_rank(s_host, tol * norm / math.sqrt(3.0)) if tol is not None else ranks[mode]
        factors.append(u[:, :r])
        spectra.append(s_host)
        tails.append(float(np.sum(s_host[r:] ** 2)))
    core = multi_mode_product(arr, factors, transpose=True)
    error = math.sqrt(sum(tails)) / norm if norm > 0 else 0.0
    return TuckerTensor(core=core, factors=factors, singular_values=spectra, error=error)


def _weighted_subspace_change(u_old, u_new, s_new, xp):
    """``||(I - U_old U_old^T) U_new diag(s_new)||_F``: how much of the new projection lies
    outside the old subspace (a 0-d array where the factors live). Computed as a residual, so
    it is accurate near zero, and weighted by the singular values, so directions that barely
    matter cannot stall it with rounding noise."""
    residual = (u_new - u_old @ (u_old.T @ u_new)) * s_new[None, :]
    return xp.linalg.vector_norm(residual)


def hooi(
    tensor: Any,
    ranks: Any,
    *,
    tol: float = 1e-13,
    max_iterations: int = 100,
    init: TuckerTensor | None = None,
) -> TuckerTensor:
    r"""Higher-order orthogonal iteration (ALS) for a best rank-``ranks`` Tucker approximation.

    Parameters
    ----------
    tensor : array_like, shape (n1, n2, n3)
    ranks : int or (int, int, int)
    tol : float
        Stop when, in one sweep, no factor's new projection
        :math:`U^{new}_k\Sigma^{new}_k` has more than ``tol`` (relative to
        :math:`\|A\|_F`) outside the previous subspace.
    max_iterations : int
    init : TuckerTensor, optional
        Starting factors (default: the truncated HOSVD at ``ranks``).

    Returns
    -------
    TuckerTensor
        ``error`` is the residual :math:`\|A - G\times_k U_k\|_F/\|A\|_F` computed directly.

    Notes
    -----
    Each sweep replaces :math:`U_k` by the leading left singular vectors of
    :math:`A\times_{j\ne k}U_j^T`; cost :math:`O(n^3 r)` per sweep. The stopping test measures
    :math:`\|(I-U_kU_k^T)U^{new}_k\Sigma^{new}_k\|_F/\|A\|_F` (a residual, weighted by the
    singular values) rather than :math:`\|A\|^2-\|G\|^2`, whose cancellation (TensorLy's
    criterion) makes errors below about 1e-8 invisible; for the same reason the reported error
    is the residual, not :math:`\sqrt{\|A\|^2-\|G\|^2}`.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.chebyshev_tucker import hooi, hosvd
    >>> t = np.random.default_rng(0).standard_normal((8, 8, 8))
    >>> hooi(t, 3).error <= hosvd(t, ranks=3).error
    True
    """
    ctx = array_context(tensor, names=("tensor",))
    arr = _check_tensor(tensor, ctx=ctx)
    ranks = _check_ranks(ranks, arr.shape)
    tol = check_real(tol, "tol", low=0.0, low_inclusive=False)
    max_iterations = check_integer(max_iterations, "max_iterations", minimum=1)
    xp = ctx.xp
    norm = _norm(arr, xp)
    start = hosvd(arr, ranks=ranks) if init is None else init
    factors = [u[:, :r] for u, r in zip(start.factors, ranks, strict=True)]
    for _ in range(max_iterations):
        changes = []
        for mode in range(3):
            others = [factors[j].T if j != mode else None for j in range(3)]
            y = arr
            for j, m in enumerate(others):
                if m is not None:
                    y = mode_product(y, m, j, xp)
            u, s = _left_singular(unfold(y, mode, xp), xp)
            u, s = u[:, : ranks[mode]], s[: ranks[mode]]
            changes.append(_weighted_subspace_change(factors[mode], u, s, xp))
            factors[mode] = u
        # the sweep's three subspace changes come to the host in one read
        if float(np.max(to_numpy(xp.stack(changes)))) <= tol * norm:
            break
    core = multi_mode_product(arr, factors, transpose=True)
    residual = _norm(arr - multi_mode_product(core, factors), xp)
    return TuckerTensor(
        core=core, factors=factors, singular_values=start.singular_values,
        error=residual / norm if norm > 0 else 0.0,
    )


def reduced_hosvd(
    weights: Any, factors: Any, *, tol: float, chunk: int = 4096
) -> TuckerTensor:
    r"""Reduced HOSVD (RHOSVD) of a CP tensor :math:`\sum_r \lambda_r a^1_r\otimes a^2_r\otimes
    a^3_r`, without forming it, recompressed to epsilon-ranks.

    Parameters
    ----------
    weights : array_like, shape (R,)
    factors : sequence of 3 array_like, shapes (n_k, R)
    tol : float
        Relative Frobenius accuracy of the result (HOSVD criterion of :func:`hosvd`).
    chunk : int
        Columns processed at a time (bounds the memory to ``O(n chunk)``).

    Returns
    -------
    TuckerTensor
        ``singular_values`` are the mode singular values of the (RHOSVD-projected) tensor
        (NumPy arrays), ``error`` the bound on the total relative error. The core and factors
        are in the library and on the device of ``weights`` and ``factors`` (NumPy and lists
        follow the switch), float32 when all of them are float32, else float64.

    Raises
    ------
    TypeError
        ``weights`` and ``factors`` of two libraries or devices (the message names them).

    Notes
    -----
    NumPy arrays take the NumPy code (blocks written in place, R-only QR). Torch, CuPy and
    the other array-API libraries take the same algorithm written against the standard,
    without in-place updates: torch's autograd differentiates the result with respect to the
    weights and factors through ``linalg.qr`` and ``linalg.svd`` (defined where the kept
    singular values are distinct and separated from the dropped ones; the backward keeps the
    blocks' projections, :math:`O(r^2 R)`). Reads back to the host: the norm of the weights
    and the three mode spectra in one read, one norm per pass of the rank refinement (at
    most four), and those of the final :func:`hosvd`; none per block of columns.

    With unit-norm columns, truncating the SVD :math:`A_k = Z_k S_k V_k^T` of each factor matrix
    to :math:`r_k` columns changes the tensor by at most
    :math:`\|\lambda\|_2\sum_k \sigma^{(k)}_{r_k+1}` (Khoromskij & Khoromskaia 2009). The ranks
    are chosen so that this is below :math:`\varepsilon\|A\|_F/10`, the projected core
    :math:`\sum_r\lambda_r (Z_1^Ta^1_r)\otimes(Z_2^Ta^2_r)\otimes(Z_3^Ta^3_r)` is accumulated in
    chunks (cost :math:`O(r^3R)`) and then re-truncated by :func:`hosvd` at
    :math:`0.9\,\varepsilon`. :math:`\|A\|_F` is estimated from the projected core and the
    truncation repeated if the first estimate was too optimistic.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.chebyshev_tucker import reduced_hosvd
    >>> rng = np.random.default_rng(1)
    >>> f = [rng.standard_normal((10, 3)) for _ in range(3)]
    >>> reduced_hosvd(np.ones(3), f, tol=1e-12).ranks
    (3, 3, 3)
    """
    tol = check_real(tol, "tol", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    chunk = check_integer(chunk, "chunk", minimum=1)
    if len(factors) != 3:
        raise ValueError(f"factors must be three matrices; got {len(factors)}")
    ctx = array_context(weights, *factors,
                        names=("weights", "factors[0]", "factors[1]", "factors[2]"))
    lam = as_float_array(weights, "weights", ndim=1, ctx=ctx)
    mats = [as_float_array(f, f"factors[{k}]", ndim=2, ctx=ctx) for k, f in enumerate(factors)]
    for k, a in enumerate(mats):
        if a.shape[1] != lam.shape[0]:
            raise ValueError(
                f"factors[{k}] has {a.shape[1]} columns but weights has {lam.shape[0]} entries"
            )
    if lam.shape[0] == 0:
        raise ValueError("the CP tensor has no terms (weights is empty)")
    dtype = _common_float(lam, mats, ctx)
    lam, *mats = (a if a.dtype == dtype else ctx.xp.astype(a, dtype) for a in (lam, *mats))
    return reduced_hosvd_blocks(
        lam, lambda sl: [a[:, sl] for a in mats], lam.shape[0], tol=tol, chunk=chunk, ctx=ctx
    )


def _common_float(lam, mats, ctx: ArrayContext):
    """float32 only when every input is float32 (float32 in, float32 out), else float64."""
    xp = ctx.xp
    return xp.float32 if all(a.dtype == xp.float32 for a in (lam, *mats)) else xp.float64


def reduced_hosvd_blocks(lam, blocks, total: int, *, tol: float, chunk: int,
                         ctx: ArrayContext | None = None) -> TuckerTensor:
    """:func:`reduced_hosvd` with the factor columns produced block by block.

    ``blocks(sl)`` returns the three factor blocks ``(n_k, len(sl))`` of the columns in the
    slice ``sl``; they are regenerated on every pass, so ``n_k x R`` is never held in memory
    (the multi-particle route with :math:`R = N R_l` up to millions of terms). ``ctx``: where
    ``lam`` and the blocks live (default: the switch's library); every context but NumPy's
    takes :func:`_reduced_hosvd_blocks_xp`.
    """
    if ctx is not None and not ctx.is_numpy:
        return _reduced_hosvd_blocks_xp(lam, blocks, total, tol=tol, chunk=chunk, ctx=ctx)
    xp = array_namespace()
    slices = [slice(s, min(s + chunk, total)) for s in range(0, total, chunk)]
    scaled = xp.empty(total, dtype=lam.dtype)
    carries: list = [None, None, None]

    def normalized(sl):
        mats = blocks(sl)
        norms = [xp.linalg.norm(a, axis=0) for a in mats]
        return [a / xp.where(nrm > 0, nrm, 1) for a, nrm in zip(mats, norms, strict=True)], norms

    kept = None
    for sl in slices:
        mats, norms = normalized(sl)
        scaled[sl] = lam[sl] * norms[0] * norms[1] * norms[2]
        for k, a in enumerate(mats):
            carries[k] = _tsqr_step(carries[k], a, xp)
        if len(slices) == 1:
            kept = mats  # one block: kept for the passes below instead of regenerated
    lam_norm = float(xp.linalg.norm(scaled))
    if lam_norm == 0:
        # Every term vanishes (zero charges, say): the exact answer is the zero tensor.
        factors = []
        for k in range(3):
            e = xp.zeros((carries[k].shape[1], 1), dtype=scaled.dtype)
            e[0, 0] = 1
            factors.append(e)
        zero = xp.zeros((1, 1, 1), dtype=scaled.dtype)
        spectra = [np.zeros(1), np.zeros(1), np.zeros(1)]
        return TuckerTensor(core=zero, factors=factors, singular_values=spectra, error=0.0)
    bases, spectra = [], []
    for k in range(3):
        u, s, _ = xp.linalg.svd(carries[k].T, full_matrices=False)
        bases.append(u)
        spectra.append(to_numpy(s).astype(np.float64))
    norm_estimate = lam_norm
    for _ in range(4):
        target = 0.1 * tol * norm_estimate
        ranks = [_rhosvd_rank(s, target / (3 * lam_norm)) for s in spectra]
        z = [u[:, :r] for u, r in zip(bases, ranks, strict=True)]
        core = xp.zeros((ranks[0] * ranks[1], ranks[2]), dtype=scaled.dtype)
        for sl in slices:
            mats = kept if kept is not None else normalized(sl)[0]
            core += _projected_core_block(scaled[sl], mats, z)
        core = core.reshape(ranks)
        core_norm = float(xp.linalg.norm(core.ravel()))
        bound = lam_norm * sum(
            float(s[r]) if r < s.size else 0.0 for s, r in zip(spectra, ranks, strict=True)
        )
        if bound <= 0.1 * tol * core_norm or core_norm == 0:
            break
        norm_estimate = core_norm
    inner = hosvd(core, tol=0.9 * tol) if core_norm > 0 else hosvd(core, ranks=1)
    factors_out = [zk @ uk for zk, uk in zip(z, inner.factors, strict=True)]
    error = (bound / core_norm if core_norm > 0 else 0.0) + inner.error
    return TuckerTensor(
        core=inner.core, factors=factors_out, singular_values=inner.singular_values, error=error
    )


def _reduced_hosvd_blocks_xp(lam, blocks, total: int, *, tol: float, chunk: int,
                             ctx: ArrayContext) -> TuckerTensor:
    """:func:`reduced_hosvd_blocks` written against the array API (torch, CuPy,
    ``array_api_strict``, ...): the same passes over the blocks, without in-place updates
    (torch's autograd differentiates it, through ``linalg.qr`` and ``linalg.svd``).

    ``blocks(sl)`` may return the three factor blocks stacked, one ``(3, m, len(sl))`` array
    (modes of equal length, as the long-range potential's): then the column norms, the QR
    steps and the SVDs run once for the three modes (batched), not once per mode. A single
    block is generated once and kept for the refinement passes.

    Host reads: the norm of the scaled weights and the three mode spectra in one read; then
    one norm per pass of the rank refinement (at most four, each choosing the ranks from the
    last). None inside the loops over the blocks.
    """
    xp = ctx.xp
    slices = [slice(s, min(s + chunk, total)) for s in range(0, total, chunk)]

    def normalized(sl):
        mats = blocks(sl)
        if not isinstance(mats, list | tuple):  # stacked (3, m, columns): all modes at once
            norms = xp.linalg.vector_norm(mats, axis=1)
            return mats / xp.where(norms > 0, norms, 1.0)[:, None, :], norms
        norms = [xp.linalg.vector_norm(a, axis=0) for a in mats]
        return [a / xp.where(nrm > 0, nrm, 1.0) for a, nrm in zip(mats, norms, strict=True)], norms

    scaled_parts: list = []
    carries: list | Any = [None, None, None]
    kept = None
    for sl in slices:
        mats, norms = normalized(sl)
        n1, n2, n3 = norms if isinstance(norms, list) else (norms[k, ...] for k in range(3))
        scaled_parts.append(lam[sl] * n1 * n2 * n3)
        if isinstance(mats, list):
            carries = [_tsqr_step_xp(carries[k], a, xp) for k, a in enumerate(mats)]
        else:
            carries = _tsqr_step_xp(carries if not isinstance(carries, list) else None, mats, xp)
        if len(slices) == 1:
            kept = mats  # one block: kept for the passes below instead of regenerated
    scaled = scaled_parts[0] if len(scaled_parts) == 1 else xp.concat(scaled_parts)
    dtype = scaled.dtype
    if isinstance(carries, list):
        pairs = [xp.linalg.svd(c.T, full_matrices=False)[:2] for c in carries]
        bases, spectra_xp = [u for u, _ in pairs], [s for _, s in pairs]
    else:  # the three modes' R factors in one batched SVD
        u, s, _ = xp.linalg.svd(xp.permute_dims(carries, (0, 2, 1)), full_matrices=False)
        bases = [u[k, ...] for k in range(3)]
        spectra_xp = [s[k, ...] for k in range(3)]
    # the weights' norm and the three spectra come to the host in one read
    host = to_numpy(xp.astype(xp.concat([xp.reshape(xp.linalg.vector_norm(scaled), (1,)),
                                         *spectra_xp]), xp.float64))
    lam_norm, spectra, start = float(host[0]), [], 1
    for s in spectra_xp:
        spectra.append(host[start:start + s.shape[0]])
        start += s.shape[0]
    if lam_norm == 0:
        # Every term vanishes (zero charges, say): the exact answer is the zero tensor.
        factors = [xp.eye(b.shape[0], 1, dtype=dtype, device=ctx.device) for b in bases]
        zero = xp.zeros((1, 1, 1), dtype=dtype, device=ctx.device)
        return TuckerTensor(core=zero, factors=factors,
                            singular_values=[np.zeros(1), np.zeros(1), np.zeros(1)], error=0.0)
    norm_estimate = lam_norm
    for _ in range(4):
        target = 0.1 * tol * norm_estimate
        ranks = [_rhosvd_rank(s, target / (3 * lam_norm)) for s in spectra]
        z = [u[:, :r] for u, r in zip(bases, ranks, strict=True)]
        core = None
        for sl in slices:
            mats = kept if kept is not None else normalized(sl)[0]
            modes = mats if isinstance(mats, list) else [mats[k, ...] for k in range(3)]
            block = _projected_core_block_xp(scaled[sl], modes, z, xp)
            core = block if core is None else core + block
        core = xp.reshape(core, tuple(ranks))
        core_norm = _norm(core, xp)
        bound = lam_norm * sum(
            float(s[r]) if r < s.size else 0.0 for s, r in zip(spectra, ranks, strict=True)
        )
        if bound <= 0.1 * tol * core_norm or core_norm == 0:
            break
        norm_estimate = core_norm
    inner = hosvd(core, tol=0.9 * tol) if core_norm > 0 else hosvd(core, ranks=1)
    factors_out = [zk @ uk for zk, uk in zip(z, inner.factors, strict=True)]
    error = (bound / core_norm if core_norm > 0 else 0.0) + inner.error
    return TuckerTensor(
        core=inner.core, factors=factors_out, singular_values=inner.singular_values, error=error
    )


def _tsqr_step_xp(carry, block, xp):
    """:func:`_tsqr_step` on the array API (its ``linalg.qr`` has no R-only mode); a stacked
    ``block`` (3, m, columns) takes one batched QR for the three modes."""
    stacked = _transpose_last(block, xp)
    if carry is not None:
        stacked = xp.concat([carry, stacked], axis=-2)
    if stacked.shape[-2] <= stacked.shape[-1] and carry is None:
        return stacked
    return xp.linalg.qr(stacked)[1]


def _transpose_last(a, xp):
    """``a`` with its last two axes swapped (``.T`` of a matrix, per matrix of a stack)."""
    return a.T if a.ndim == 2 else xp.permute_dims(a, (0, 2, 1))


def _projected_core_block_xp(lam, mats, z, xp):
    """:func:`_projected_core_block` on the array API."""
    r1, r2 = z[0].shape[1], z[1].shape[1]
    p1, p2, p3 = (zk.T @ a for zk, a in zip(z, mats, strict=True))
    khatri_rao = xp.reshape(p1[:, None, :] * p2[None, :, :], (r1 * r2, -1))
    return khatri_rao @ (lam[:, None] * p3.T)


def _tsqr_step(carry, block, xp):
    """One step of the tall-skinny QR of :math:`A^T`: the R factor of ``[carry; block^T]``."""
    stacked = block.T if carry is None else xp.concatenate([carry, block.T], axis=0)
    if stacked.shape[0] <= stacked.shape[1] and carry is None:
        return stacked
    return xp.linalg.qr(stacked, mode="r")


def _rhosvd_rank(s: np.ndarray, threshold: float) -> int:
    """Least r with sigma_{r+1} <= threshold * sigma-scale (spectral-norm tail)."""
    above = np.nonzero(s > threshold)[0]
    return max(1, int(above[-1]) + 1 if above.size else 1)


def left_singular_streaming(a, chunk: int):
    r"""Left singular vectors and values of a wide ``n x R`` matrix, ``chunk`` columns at a time.

    A tall-skinny QR of :math:`A^T` is accumulated block by block (``[R_prev; A_c^T] = QR``);
    :math:`A = R^TQ^T` has the left singular pairs of the small matrix :math:`R^T`. Nothing is
    squared, so singular values far below :math:`\sqrt{\text{eps}}\,\sigma_1` stay accurate.
    """
    xp = array_namespace()
    carry = None
    for start in range(0, a.shape[1], chunk):
        carry = _tsqr_step(carry, a[:, start:start + chunk], xp)
    u, s, _ = xp.linalg.svd(carry.T, full_matrices=False)
    return u, s


def _projected_core_block(lam, mats, z):
    """``sum_r lam_r (Z1^T a1_r) o (Z2^T a2_r) o (Z3^T a3_r)`` over one block, as (r1 r2, r3)."""
    r1, r2 = z[0].shape[1], z[1].shape[1]
    p1, p2, p3 = (zk.T @ a for zk, a in zip(z, mats, strict=True))
    khatri_rao = (p1[:, None, :] * p2[None, :, :]).reshape(r1 * r2, -1)
    return khatri_rao @ (lam[:, None] * p3.T)

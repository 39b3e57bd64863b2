"""The range-separated Newton kernel and multi-particle electrostatic potentials."""

from __future__ import annotations

import copy
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import (
    _device_free_memory,
    as_float_array,
    check_integer,
    check_memory,
    check_real,
    chunk_length,
    memory_limit,
)
from ..backend import (
    ArrayContext,
    array_context,
    array_namespace,
    cached_constant,
    creation_context,
    implementation,
    register,
    to_numpy,
)
from . import _array
from ._chebyshev import (
    MAX_DEGREE,
    as_box,
    chebyshev_points,
    degree_for_gaussian,
    transform_values,
)
from ._direct import _check_particles, _check_targets, direct_potential
from ._format import ChebTucker
from ._tucker import reduced_hosvd_blocks

__all__ = [
    "COULOMB_CONSTANT",
    "ExponentialSum",
    "RangeSeparatedPotential",
    "long_range_potential",
    "newton_exponential_sum",
]


def _coulomb_constant() -> float:
    from scipy import constants as c

    # e^2 / (4 pi eps0 * 1 Angstrom), per mole, in kcal: 332.0637...
    return c.e**2 / (4 * math.pi * c.epsilon_0 * c.angstrom) * c.N_A / (1000 * c.calorie)


COULOMB_CONSTANT = _coulomb_constant()
"""Coulomb's constant in kcal·Å/(mol·e²) (CODATA via :mod:`scipy.constants`), ≈ 332.0637."""

# Charges of both signs cancel in the potential but not in its interpolation error (each
# Gaussian contributes its own), so the degree resolves every Gaussian well below tol.
_DEGREE_SAFETY = 1.0 / 30.0

_UNITS = {"e/A": 1.0, "kcal/(mol*e)": COULOMB_CONSTANT}


@dataclass(frozen=True)
class ExponentialSum:
    r"""A sum of Gaussians :math:`\sum_k a_k e^{-t_k^2 r^2}`, terms ordered wide to narrow.

    Attributes
    ----------
    weights : ndarray, shape (K,)
        :math:`a_k`.
    exponents : ndarray, shape (K,)
        :math:`t_k` (the Gaussian :math:`e^{-t_k^2r^2}` has width :math:`\sim 1/t_k`).
    step : float
        The sinc-quadrature step :math:`h`.
    tol : float
        Relative accuracy :math:`\max|1 - r\,S(r)|` of the full sum on ``r_range``.
    r_range : (float, float)
    first : int
        Index of the first term in the full sum (0 for the full sum and its long-range part).
    """

    weights: np.ndarray
    exponents: np.ndarray
    step: float
    tol: float
    r_range: tuple[float, float]
    first: int = 0

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    def __call__(self, r: Any) -> Any:
        """The sum at distances ``r`` (any shape).

        An array of ``r``'s library (torch, CuPy, ``array_api_strict``, ...), on its device
        and in its float dtype (float32 stays float32; differentiable by torch's autograd);
        NumPy for NumPy arrays, lists and numbers (host data, whatever the switch).
        """
        if isinstance(r, np.ndarray | np.generic | list | tuple | int | float):
            r = np.asarray(r)
            r = r if r.dtype == np.float32 else r.astype(np.float64)
            xp = np
        else:
            ctx = array_context(r, names=("r",))
            r = as_float_array(r, "r", ctx=ctx, allow_nonfinite=True)
            xp = ctx.xp
        # The terms as Python numbers: no constant to place on r's device, and r's dtype kept.
        out = xp.zeros_like(r)
        for a, t in zip(self.weights.tolist(), self.exponents.tolist(), strict=True):
            out = out + a * xp.exp(-((t * r) ** 2))
        return out

    def _subset(self, sl: slice) -> ExponentialSum:
        return ExponentialSum(self.weights[sl].copy(), self.exponents[sl].copy(), self.step,
                              self.tol, self.r_range, self.first + (sl.start or 0))

    def long_range(self, n_long: int) -> ExponentialSum:
        """The first (widest) ``n_long`` terms: smooth, :math:`\\approx\\operatorname{erf}
        (r/\\sigma)/r`."""
        n_long = check_integer(n_long, "n_long", minimum=1, maximum=len(self))
        return self._subset(slice(0, n_long))

    def short_range(self, n_long: int) -> ExponentialSum:
        """The remaining (narrow, localised) terms after the first ``n_long``."""
        n_long = check_integer(n_long, "n_long", minimum=0, maximum=len(self) - 1)
        return self._subset(slice(n_long, None))

    def split_index(self, cutoff: float) -> int:
        r"""The least ``n_long`` whose short-range tail is below the sum's relative accuracy
        beyond ``cutoff``: :math:`r\sum_{k\ge n}a_ke^{-t_k^2r^2}\le` ``tol`` for
        :math:`r\ge` ``cutoff``."""
        cutoff = check_real(cutoff, "cutoff", low=0.0, low_inclusive=False)
        r = cutoff * np.geomspace(1.0, max(self.r_range[1] / cutoff, 1.0) + 1.0, 200)
        terms = self.weights[:, None] * np.exp(-(self.exponents[:, None] * r[None, :]) ** 2)
        tails = np.cumsum(terms[::-1], axis=0)[::-1] * r[None, :]  # tails[n] = sum_{k>=n}
        ok = np.all(tails <= self.tol, axis=1)
        return int(np.argmax(ok)) if ok.any() else len(self)

    def cutoff_for(self, n_long: int) -> float:
        """The least radius beyond which the short-range tail after ``n_long`` terms is below
        ``tol`` relative (the inverse of :meth:`split_index`)."""
        n_long = check_integer(n_long, "n_long", minimum=0, maximum=len(self))
        if n_long == len(self):
            return 0.0
        a, t = self.weights[n_long:], self.exponents[n_long:]
        r_lo, r_hi = 0.0, self.r_range[1]
        spread = _CUTOFF_SPREAD  # built once: geomspace's overhead was most of this search
        for _ in range(80):
            mid = 0.5 * (r_lo + r_hi)
            grid = mid * spread
            tail = (a[:, None] * np.exp(-(t[:, None] * grid) ** 2)).sum(axis=0) * grid
            if np.all(tail <= self.tol):
                r_hi = mid
            else:
                r_lo = mid
        return r_hi


_CUTOFF_SPREAD = np.geomspace(1.0, 4.0, 40)
_CUTOFF_SPREAD.flags.writeable = False


def _sinc_terms(h: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(count, dtype=np.float64)
    t = np.sinh(k * h)
    a = 2.0 / math.sqrt(math.pi) * h * np.cosh(k * h)
    a[0] *= 0.5
    return a, t


def _relative_error(a, t, rho) -> float:
    s = np.zeros_like(rho)
    for ak, tk in zip(a, t, strict=True):
        s += ak * np.exp(-(tk * rho) ** 2)
    return float(np.max(np.abs(s * rho - 1.0)))


def newton_exponential_sum(*, tol: float = 1e-8, r_min: float = 1e-4,
                           r_max: float = 1.0) -> ExponentialSum:
    r"""Sinc-quadrature exponential sum for the Newton kernel :math:`1/r` on
    ``[r_min, r_max]`` to relative accuracy ``tol``.

    .. math::
        \frac1r = \frac{2}{\sqrt\pi}\int_0^\infty e^{-r^2\tau^2}d\tau
        \approx \sum_{k=0}^{M} a_k e^{-t_k^2r^2},\quad t_k=\sinh(kh),\quad
        a_k=\frac{2}{\sqrt\pi}h\cosh(kh)\ (a_0\text{ halved}),

    (the trapezoidal rule after :math:`\tau=\sinh u`, scaled to ``r_max``).

    Parameters
    ----------
    tol : float
        Target :math:`\max_{r}|1 - r\,S(r)|` on the range, in ``[1e-14, 0.1]``.
    r_min, r_max : float
        The range of ``r``, ``0 < r_min < r_max``.

    Returns
    -------
    ExponentialSum
        Terms ordered wide to narrow; :meth:`ExponentialSum.long_range` /
        :meth:`ExponentialSum.short_range` split it.

    Notes
    -----
    The step is the largest :math:`h = h_0 0.97^j` whose discretisation error, measured on a
    dense logarithmic grid of the range, is below ``tol/2`` (the error is :math:`O(e^{-\pi^2/
    h})` for moderate ``r``, :math:`O(e^{-\pi^2/(hr)^2})` at the wide end, see
    :mod:`theory.chebyshev_tucker`); :math:`M` is the least count whose truncated tail keeps the
    error below ``tol`` at ``r_min``. The number of terms grows like
    :math:`O(\log(1/\text{tol})\cdot\log(r_\max/r_\min))`, the paper's
    :math:`R\approx 25`–40.

    References
    ----------
    .. [1] W. Hackbusch, B. Khoromskij, "Low-rank Kronecker-product approximation to
       multi-dimensional nonlocal operators", Computing 76 (2006).
    .. [2] P. Benner, V. Khoromskaia, B. Khoromskij, SIAM J. Sci. Comput. 40 (2018) A1034.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.chebyshev_tucker import newton_exponential_sum
    >>> s = newton_exponential_sum(tol=1e-8, r_min=1e-3, r_max=1.0)
    >>> r = np.geomspace(1e-3, 1, 1000)
    >>> bool(np.max(np.abs(s(r) * r - 1)) <= 1e-8)
    True
    """
    tol = check_real(tol, "tol", low=1e-14, high=0.1)
    r_max = check_real(r_max, "r_max", low=0.0, low_inclusive=False)
    r_min = check_real(r_min, "r_min", low=0.0, high=r_max, low_inclusive=False,
                       high_inclusive=False)
    a, t, h = _unit_sinc_sum(tol, r_min / r_max)
    return ExponentialSum(weights=a / r_max, exponents=t / r_max, step=h, tol=tol,
                          r_range=(r_min, r_max))


@functools.lru_cache(maxsize=64)
def _unit_sinc_sum(tol: float, delta: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The sinc terms for ``1/r`` on ``[delta, 1]`` (read-only host arrays), searched once per
    ``(tol, delta)``: a potential's build asks for ``delta = 1e-6`` whatever the box, so every
    build after the first skips the search (tens of ms of host time on a GPU build)."""
    per_decade = 200
    decades = max(math.log10(1.0 / delta), 1.0)
    rho = np.geomspace(delta, 1.0, int(per_decade * decades) + 1)
    # Enough terms for the integrand at rho = delta: sinh(Mh) * delta ~ sqrt(ln(1/tol)) + 2.
    u_max = math.asinh((math.sqrt(math.log(4.0 / tol)) + 2.0) / delta) + 1.0
    h = 1.0
    for _ in range(200):
        count = int(math.ceil(u_max / h)) + 1
        a, t = _sinc_terms(h, count)
        if _relative_error(a, t, rho) <= 0.5 * tol:
            break
        h *= 0.97
    else:
        raise RuntimeError(f"no sinc step reached tol={tol} (please report)")
    # Trim narrow terms that do not matter on [delta, 1] (their tail is below tol/2 there).
    while count > 2 and _relative_error(a[: count - 1], t[: count - 1], rho) <= tol:
        count -= 1
    a, t = a[:count].copy(), t[:count].copy()
    a.flags.writeable = t.flags.writeable = False
    return a, t, h


# ---------------------------------------------------------------------------------------------
# The multi-particle long-range potential in CP form -> Chebyshev-Tucker.
# ---------------------------------------------------------------------------------------------


def cube_domain(lo: np.ndarray, hi: np.ndarray, margin: float) -> tuple[tuple[float, float], ...]:
    """The smallest cube around the particles (their bounds per axis ``lo``, ``hi``, host
    vectors), widened by ``margin`` on every side."""
    centre = 0.5 * (lo + hi)
    half = 0.5 * float(np.max(hi - lo)) + margin
    if half <= 0:
        raise ValueError("all particles coincide and margin is 0: give domain= or a margin > 0")
    return tuple((float(c - half), float(c + half)) for c in centre)


# CP terms per block on the host: the blocks' memory-bound temporaries (the DCT's extension,
# the Khatri-Rao product) stay near the cache, which beats one block of all terms there.
_HOST_BLOCK = 8192


def _long_range_tucker(pos, q, long_sum: ExponentialSum, domain, degree: int, tol: float,
                       ctx: ArrayContext, chunk: int | None = None) -> ChebTucker:
    """The CP tensor sum_j q_j sum_k a_k prod_d exp(-t_k^2 (x_d - x_jd)^2) -> ChebTucker.

    Columns (particle j, term k) are generated a block of particles at a time: sampled at the
    Lobatto points of each mode and transformed by a DCT-I (values_to_coefficients), never
    held all at once beyond the memory budget (O(m * chunk) memory for any N). ``chunk``: CP
    terms per block; default as many as :func:`sci._validation.chunk_length` lets the device's
    free memory hold (all of them for a protein on a GPU: one block, generated once).
    Computed where ``pos`` and ``q`` live (``ctx``): the Lobatto points and the exponents are
    converted there once (cached constants), before the loop over the blocks.
    """
    n, k = pos.shape[0], len(long_sum)
    m = degree + 1
    # per CP term: the three modes' samples, their FFT extension and coefficients (about eight
    # m-vectors each), and a column of the projected core's Khatri-Rao product (<= m^2)
    bytes_per_term = 8.0 * (3 * 8 * m + m * m)
    if chunk is None:
        # On a GPU as many as its free memory holds (few large launches); on the host blocks
        # of at most _HOST_BLOCK terms, whose temporaries stay in cache.
        on_device = _device_free_memory(ctx) is not None
        chunk = chunk_length(n * k, bytes_per_term, budget=memory_limit(ctx) / 4,
                             max_items=None if on_device else _HOST_BLOCK)
    per_block = max(1, chunk // k)
    check_memory(bytes_per_term * per_block * k, "one block of CP factor columns", ctx=ctx)
    if ctx.is_numpy:
        xp = array_namespace()
        nodes = [chebyshev_points(m, domain=domain[d]) for d in range(3)]
        t = xp.asarray(long_sum.exponents)
        weights = (q[:, None] * xp.asarray(long_sum.weights)[None, :]).reshape(-1)

        def blocks(sl):
            # sl indexes CP terms; blocks are aligned to whole particles (chunk = per_block*k).
            first, last = sl.start // k, -(-sl.stop // k)
            out = []
            for d in range(3):
                diff = nodes[d][:, None, None] - pos[first:last, d][None, :, None]
                values = xp.exp(-(t[None, None, :] * diff) ** 2).reshape(m, -1)
                out.append(transform_values(values, (0,), ctx))
            return out

        tucker = reduced_hosvd_blocks(weights, blocks, n * k, tol=tol, chunk=per_block * k)
        return ChebTucker._from_tucker(tucker, domain)
    # torch, CuPy, array_api_strict, ...: the same columns, the three modes at once (one
    # exponential, one batched DCT-I), without in-place updates
    xp = ctx.xp
    nodes = cached_constant(
        ("chebyshev_tucker.lobatto_box", m, tuple(domain)),
        lambda: np.stack([to_numpy(chebyshev_points(m, domain=domain[d], xp=np))
                          for d in range(3)]),
        ctx, xp.float64)
    t = cached_constant(("chebyshev_tucker.exponents", long_sum.exponents.tobytes()),
                        lambda: np.asarray(long_sum.exponents, dtype=np.float64), ctx, pos.dtype)
    a = cached_constant(("chebyshev_tucker.weights", long_sum.weights.tobytes()),
                        lambda: np.asarray(long_sum.weights, dtype=np.float64), ctx, q.dtype)
    weights = xp.reshape(q[:, None] * a[None, :], (-1,))
    coordinates = xp.permute_dims(pos, (1, 0))  # (3, N)

    def blocks_xp(sl):
        first, last = sl.start // k, -(-sl.stop // k)
        diff = nodes[:, :, None, None] - coordinates[:, None, first:last, None]
        values = xp.reshape(xp.exp(-((t * diff) ** 2)), (3, m, -1))
        # finite by construction: no finiteness check (a device read) per block
        return transform_values(values, (1,), ctx)

    tucker = reduced_hosvd_blocks(weights, blocks_xp, n * k, tol=tol, chunk=per_block * k,
                                  ctx=ctx)
    return ChebTucker._from_tucker(tucker, domain)


def _choose_layout(tol, r_max, half_width, degree, cutoff, n_long, r_min):
    """(exponential sum, n_long, degree, cutoff) from whichever of them the user fixed."""
    full = newton_exponential_sum(tol=tol, r_min=r_min, r_max=r_max)
    if n_long is not None:
        n_long = check_integer(n_long, "n_long", minimum=1, maximum=len(full) - 1)
    elif cutoff is not None:
        cutoff = check_real(cutoff, "cutoff", low=0.0, low_inclusive=False)
        n_long = max(1, min(full.split_index(cutoff), len(full) - 1))
    else:
        degree = 64 if degree is None else degree
        n_long = 1
        while (n_long < len(full) - 1 and
               degree_for_gaussian(float(full.exponents[n_long]), half_width,
                                   _DEGREE_SAFETY * tol) <= degree):
            n_long += 1
    if degree is None:
        degree = degree_for_gaussian(float(full.exponents[n_long - 1]), half_width,
                                     _DEGREE_SAFETY * tol)
        degree = max(8, int(math.ceil(degree / 8.0) * 8))
    degree = check_integer(degree, "degree", minimum=1, maximum=MAX_DEGREE)
    needed = degree_for_gaussian(float(full.exponents[n_long - 1]), half_width, tol)
    if degree < needed:
        warnings.warn(
            f"degree={degree} does not resolve the narrowest of the {n_long} long-range "
            f"Gaussians to tol={tol:g} (needs about {needed}); the long-range part will be "
            "less accurate than tol. Raise the degree, or lower n_long / raise the cutoff",
            UserWarning, stacklevel=3,
        )
    if cutoff is None:
        cutoff = full.cutoff_for(n_long)
    return full, n_long, degree, cutoff


def long_range_potential(positions: Any, charges: Any, *, tol: float = 1e-6,
                         degree: int | None = None, domain: Any = None,
                         n_long: int | None = None, cutoff: float | None = None,
                         margin: float | None = None) -> ChebTucker:
    r"""The long-range part of the Coulomb potential of N charges as a Chebyshev-Tucker tensor.

    .. math::
        V_l(x) = \sum_{j=1}^N q_j\sum_{k<R_l} a_k e^{-t_k^2|x-x_j|^2},

    a CP tensor of rank :math:`N R_l` (each term is a product of three 1D Gaussians) turned
    into Chebyshev-Tucker form by 1D transforms and the reduced HOSVD, never forming
    :math:`m^3` values from the N particles.

    Parameters
    ----------
    positions : array_like, shape (N, 3)
    charges : array_like, shape (N,)
    tol : float
        Accuracy of the exponential sum and of the Tucker compression.
    degree : int, optional
        Chebyshev degree per mode; by default the least that resolves the narrowest
        long-range Gaussian to ``tol`` (rounded up to a multiple of 8), or 64 when neither
        ``n_long`` nor ``cutoff`` is given.
    domain : (a, b) or three pairs, optional
        The box; default the bounding cube of the particles plus ``margin``.
    n_long : int, optional
        Number of long-range terms :math:`R_l`; default: as many as ``degree`` resolves, or
        from ``cutoff``.
    cutoff : float, optional
        The radius beyond which the short-range part is negligible (sets ``n_long``).
    margin : float, optional
        Added around the bounding cube (default 10% of its side).

    Returns
    -------
    ChebTucker
        Its attribute ``exponential_sum`` holds the long-range terms used, ``cutoff`` the
        short-range radius. In the library and on the device of ``positions`` and
        ``charges`` (NumPy and lists follow the switch; two libraries or devices raise
        :class:`TypeError` naming them), in float64 whatever their precision (as
        :func:`direct_potential`: the sums of Gaussians of widths over decades need it).

    Notes
    -----
    Torch, CuPy and the other array-API libraries build the tensor where the charges live
    (the CP columns a block of particles at a time, the reduced HOSVD on the array API; the
    Lobatto points and the exponents are converted there once per call). Host reads: the
    particles' bounding box (one read, for the box) and those of :func:`reduced_hosvd`; none
    per block of particles. Torch's autograd differentiates the values with respect to the
    points they are evaluated at, and with respect to the charges and positions through the
    reduced HOSVD (defined where the kept singular values are separated).

    Examples
    --------
    >>> import numpy as np
    >>> from sci.chebyshev_tucker import direct_potential, long_range_potential
    >>> rng = np.random.default_rng(0)
    >>> x, q = rng.uniform(-1, 1, (50, 3)), rng.choice([-1.0, 1.0], 50)
    >>> v = long_range_potential(x, q, tol=1e-6, degree=32)
    >>> pts = rng.uniform(-1, 1, (100, 3))
    >>> ref = direct_potential(x, q, pts, kernel="long_range", exponential_sum=v.exponential_sum)
    >>> bool(np.max(np.abs(v(pts) - ref)) <= 3e-6 * np.max(np.abs(ref)))
    True
    """
    rs = RangeSeparatedPotential(positions, charges, tol=tol, degree=degree, domain=domain,
                                 n_long=n_long, cutoff=cutoff, margin=margin)
    return rs.long_range


class RangeSeparatedPotential(_array.PlacedState):
    r"""The Coulomb potential of N point charges, range-separated: a Chebyshev-Tucker tensor
    for the long-range part plus a direct neighbour sum for the short-range part.

    .. math::
        V(x) = \sum_j \frac{q_j}{|x-x_j|}
        = \underbrace{\sum_j q_j \sum_{k<R_l}a_ke^{-t_k^2|x-x_j|^2}}_{\text{Chebyshev-Tucker}}
        + \underbrace{\sum_{|x-x_j|<r_c} q_j\Big(\frac1{|x-x_j|}-\sum_{k<R_l}a_k
        e^{-t_k^2|x-x_j|^2}\Big)}_{\text{direct, O(neighbours)}} + O(\text{tol}).

    Parameters
    ----------
    positions : array_like, shape (N, 3)
        In any length unit (Å for a PQR file).
    charges : array_like, shape (N,)
        In e.
    tol : float
        Relative accuracy of the exponential sum and the Tucker compression.
    degree, domain, n_long, cutoff, margin
        As :func:`long_range_potential`.
    units : {"e/A", "kcal/(mol*e)"}
        ``"e/A"``: :math:`\sum q_j/r` as is (e per length unit); ``"kcal/(mol*e)"``: times
        :data:`COULOMB_CONSTANT` (positions must be in Å).

    Attributes
    ----------
    long_range : ChebTucker
    exponential_sum : ExponentialSum
        The full sum; ``long_range.exponential_sum`` its long-range terms.
    cutoff : float
    domain : tuple

    Notes
    -----
    The short-range kernel :math:`1/r - S_l(r)` is evaluated exactly (not by its narrow
    Gaussians), so the total is accurate at any distance from the charges; beyond the cutoff
    it is below ``tol/r`` and dropped. At a particle's own position its :math:`1/0` term is
    skipped and its long-range self term subtracted: the result is the potential of the
    other charges. Points outside the box raise :class:`ValueError` (the long-range part is
    a polynomial there).

    The potential lives in the library and on the device of ``positions`` and ``charges``
    (NumPy ones follow the switch), in float64 whatever their precision, and is evaluated
    at targets of that library and device only (lists follow it; others raise
    :class:`TypeError` naming both); :meth:`to` moves it. Torch and other array-API
    positions: the long-range tensor is built in their library and on their device (as
    :func:`long_range_potential`), and evaluation runs there on the array path (the
    Chebyshev-Tucker sum plus a brute-force short-range sum over all pairs in blocks, masked
    by the cutoff), differentiable by torch's autograd with respect to the targets, the
    positions and the charges.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.chebyshev_tucker import RangeSeparatedPotential, direct_potential
    >>> rng = np.random.default_rng(1)
    >>> x, q = rng.uniform(-5, 5, (100, 3)), rng.choice([-1.0, 1.0], 100)
    >>> v = RangeSeparatedPotential(x, q, tol=1e-6, degree=40)
    >>> pts = rng.uniform(-5, 5, (50, 3))
    >>> ref = direct_potential(x, q, pts)
    >>> bool(np.max(np.abs(v(pts) - ref) / np.abs(ref)) < 1e-4)
    True
    """

    _placed_by = "positions"

    def __init__(self, positions: Any, charges: Any, *, tol: float = 1e-6,
                 degree: int | None = None, domain: Any = None, n_long: int | None = None,
                 cutoff: float | None = None, margin: float | None = None,
                 units: str = "e/A"):
        ctx = array_context(positions, charges, names=("positions", "charges"))
        # torch, CuPy, array_api_strict, ...: checked and built in their namespace, on their
        # device, their finiteness read with the bounds below (one read for both)
        on_device = not ctx.is_numpy
        pos, q = _check_particles(positions, charges, ctx if on_device else None,
                                  check_finite=not on_device)
        if pos.shape[0] == 0:
            raise ValueError("positions is empty: a potential needs at least one particle")
        tol = check_real(tol, "tol", low=1e-13, high=0.1)
        if units not in _UNITS:
            raise ValueError(f"units must be one of {tuple(_UNITS)}; got {units!r}")
        if degree is not None:
            degree = check_integer(degree, "degree", minimum=1, maximum=MAX_DEGREE)
        # the particles' bounds per axis: the only values read back (one read), with the
        # finiteness of the inputs: NaN and infinities show in the bounds, and the number of
        # non-finite charges rides along
        xp = ctx.xp
        nonfinite = xp.sum(xp.astype(xp.logical_not(xp.isfinite(q)), pos.dtype))
        stats = to_numpy(xp.concat([xp.min(pos, axis=0), xp.max(pos, axis=0),
                                    xp.reshape(nonfinite, (1,))]))
        if not np.all(np.isfinite(stats[:6])):
            raise ValueError("positions must be finite; it contains NaN or infinity")
        if stats[6] != 0:
            raise ValueError("charges must be finite; it contains NaN or infinity")
        lo, hi = stats[0:3], stats[3:6]
        if domain is None:
            extent = float(np.max(hi - lo))
            if margin is None:
                margin = 0.1 * extent if extent > 0 else 1.0
            margin = check_real(margin, "margin", low=0.0)
            box = as_box(cube_domain(lo, hi, margin))
        else:
            box = as_box(domain)
            if (np.any(lo < np.array([b[0] for b in box]))
                    or np.any(hi > np.array([b[1] for b in box]))):
                raise ValueError("some positions lie outside domain; enlarge it")
        half_width = max(0.5 * (b[1] - b[0]) for b in box)
        r_max = 2.0 * math.sqrt(3.0) * half_width
        r_min = r_max * 1e-6
        full, n_long, degree, cutoff = _choose_layout(tol, r_max, half_width, degree, cutoff,
                                                      n_long, r_min)
        self.tol = tol
        self.units = units
        self.scale = _UNITS[units]
        self.domain = box
        self.exponential_sum = full
        self.n_long = n_long
        self.cutoff = float(cutoff)
        self.degree = degree
        self.positions = pos
        self.charges = q
        long_sum = full.long_range(n_long)
        self.long_range = _long_range_tucker(pos, q, long_sum, box, degree, tol, ctx)
        self.long_range.exponential_sum = long_sum
        self.long_range.cutoff = self.cutoff
        self._ctx = ctx

    @property
    def device(self) -> Any:
        """The device of the positions, charges and long-range tensor (``"cpu"`` for NumPy)."""
        return self._ctx.device

    def to(self, xp: Any = None, device: Any = None) -> RangeSeparatedPotential:
        """A copy in the array library ``xp`` on ``device`` (as
        :func:`sci.backend.creation_context` takes them; default: the switch's library).

        Arrays already there are shared; between libraries the positions, charges and the
        long-range tensor are copied through the host.

        Examples
        --------
        >>> import numpy as np, array_api_strict as strict
        >>> from sci.chebyshev_tucker import RangeSeparatedPotential
        >>> v = RangeSeparatedPotential([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [1.0, -1.0],
        ...                             tol=1e-6, degree=24, domain=(-2, 2))
        >>> moved = v.to(strict, strict.Device("device1"))
        >>> moved(strict.asarray([[0.0, 1.0, 0.0]], device=moved.device)).device
        array_api_strict.Device('device1')
        """
        target = creation_context(xp, device)
        out = copy.copy(self)
        out._ctx = target
        out.positions = _array.move(self.positions, target)
        out.charges = _array.move(self.charges, target)
        out.long_range = self.long_range.to(xp, device)
        return out

    def _call_context(self, arrays: tuple, names: tuple):
        return _array.bound_context("RangeSeparatedPotential", self._ctx, arrays, names)

    def __repr__(self) -> str:
        return (f"RangeSeparatedPotential(N={self.positions.shape[0]}, tol={self.tol}, "
                f"ranks={self.long_range.ranks}, degree={self.degree}, n_long={self.n_long}, "
                f"cutoff={self.cutoff:.4g})")

    def short_range(self, targets: Any):
        """The short-range part at ``targets`` (M, 3), summed over neighbours within the
        cutoff (in e per length unit, before ``units`` scaling)."""
        ctx = self._call_context((targets,), ("targets",))
        tgt = _check_targets(targets, ctx)
        return implementation("chebyshev_tucker.short_range", ctx.backend)(
            self.positions, self.charges, tgt, self.long_range.exponential_sum, self.cutoff
        )

    def __call__(self, targets: Any, *, extrapolate: bool = False):
        """The total potential at ``targets`` (M, 3), in ``units``.

        Dask ``targets`` give a Dask result chunked like their rows, one task per block
        (each builds the neighbour search over the particles for its block); see
        :doc:`/dask`.
        """
        from .. import _dask

        if _dask.is_dask_array(targets):
            return _dask.map_rows(_evaluate_block, targets, "targets", potential=self,
                                  extrapolate=extrapolate)
        ctx = self._call_context((targets,), ("targets",))
        tgt = _check_targets(targets, ctx)
        total = self.long_range(tgt, extrapolate=extrapolate) + self.short_range(tgt)
        return total * self.scale if self.scale != 1.0 else total

    def on_grid(self, x: Any, y: Any, z: Any):
        """The total potential on the grid ``x x y x z`` (a full array, memory checked)."""
        ctx = self._call_context((x, y, z), ("x", "y", "z"))
        xp = ctx.xp
        long_part = self.long_range.on_grid(x, y, z)
        gx, gy, gz = (as_float_array(c, n, ndim=1, ctx=ctx)
                      for c, n in zip((x, y, z), "xyz", strict=True))
        mesh = xp.reshape(xp.stack(xp.meshgrid(gx, gy, gz, indexing="ij"), axis=-1), (-1, 3))
        total = long_part + xp.reshape(self.short_range(mesh), tuple(long_part.shape))
        return total * self.scale if self.scale != 1.0 else total


def _evaluate_block(targets: Any, *, potential: RangeSeparatedPotential, extrapolate: bool):
    """One block of rows of Dask targets, evaluated eagerly."""
    return potential(targets, extrapolate=extrapolate)


def _short_range_tree(pos, q, tgt, long_sum: ExponentialSum, cutoff: float):
    """Neighbour pairs from a k-d tree, then the exact kernel 1/r - S_l(r) on them."""
    from scipy.spatial import cKDTree

    out = np.zeros(tgt.shape[0], dtype=np.float64)
    if pos.shape[0] == 0 or tgt.shape[0] == 0:
        return out
    source_tree = cKDTree(pos)
    target_tree = cKDTree(tgt)
    pairs = target_tree.sparse_distance_matrix(source_tree, cutoff, output_type="coo_matrix")
    i, j, r = pairs.row, pairs.col, pairs.data
    # sparse_distance_matrix drops exact zeros (coincident points): add them back.
    zero = target_tree.query_ball_tree(source_tree, 0.0)
    zi = np.repeat(np.arange(tgt.shape[0]), [len(z) for z in zero])
    zj = np.fromiter((jj for z in zero for jj in z), dtype=np.int64, count=zi.size)
    self_term = float(np.sum(long_sum.weights))
    np.add.at(out, zi, -q[zj] * self_term)
    keep = r > 0
    i, j, r = i[keep], j[keep], r[keep]
    np.add.at(out, i, q[j] * (1.0 / r - long_sum(r)))
    return out


def _short_range_xp(pos, q, tgt, long_sum: ExponentialSum, cutoff: float):
    """Brute force in blocks (CuPy): every pair, masked by the cutoff."""
    return direct_potential(pos, q, tgt, kernel="short_range", exponential_sum=long_sum,
                            cutoff=cutoff)


register("chebyshev_tucker.short_range", "numpy", _short_range_tree)
register("chebyshev_tucker.short_range", "numba", "sci.chebyshev_tucker._cpu:short_range")
register("chebyshev_tucker.short_range", "array", _short_range_xp)

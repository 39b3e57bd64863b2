"""Chebyshev coefficients from samples on a grid: Floater-Hormann rational interpolation.

Samples on an equispaced (e.g. cell-centred) grid are interpolated by the barycentric rational
interpolant of Floater & Hormann, evaluated at the Chebyshev (Lobatto) points and transformed to
coefficients. A polynomial fit to the same samples (least squares of degree ``m - 1``) is
ill-conditioned on equispaced points unless ``n ~ m**2`` (Platte, Trefethen & Kuijlaars 2011);
the rational interpolant's Lebesgue constant grows only like ``2**(d-1) log n`` for a fixed
blending degree ``d`` and its error is ``O(h**(d+1))`` (Floater & Hormann 2007; Bos, De Marchi,
Hormann & Klein 2012). This is what Chebfun's ``chebfun(values, 'equi')`` does too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import as_float_array, check_integer, check_memory
from ..backend import asarray, to_numpy

__all__ = [
    "check_grid",
    "choose_blending_degree",
    "fh_matrix",
    "floater_hormann_coefficients",
    "floater_hormann_weights",
    "select_blending_degree",
]

MAX_BLENDING_DEGREE = 20
"""Largest blending degree tried by the automatic choice: beyond it the Lebesgue constant
(``~2**(d-1)``) amplifies rounding of the samples more than the interpolation gains."""


def floater_hormann_weights(x: np.ndarray, d: int) -> np.ndarray:
    r"""Barycentric weights of the Floater-Hormann interpolant of blending degree ``d``.

    .. math::
        w_k = (-1)^{k-d}\sum_{i\in J_k}\ \prod_{j=i,\,j\ne k}^{i+d}\frac{1}{|x_k-x_j|},\qquad
        J_k = \{i : 0\le i\le n-1-d,\ k-d\le i\le k\}

    (Floater & Hormann 2007, eq. (18)), for strictly increasing nodes ``x`` (NumPy, length
    ``n > d``). The nodes are rescaled to unit mean spacing first (the interpolant does not
    change when all weights are scaled), so that ``h**-d`` cannot overflow.
    """
    n = x.shape[0]
    s = (x - x[0]) * ((n - 1) / (x[-1] - x[0]))
    w = np.zeros(n)
    windows = n - d  # windows start at i = 0 .. n-1-d
    for pos in range(d + 1):  # node k = i + pos of window i
        prod = np.ones(windows)
        for j in range(d + 1):
            if j != pos:
                prod *= np.abs(s[pos:pos + windows] - s[j:j + windows])
        w[pos:pos + windows] += 1.0 / prod
    sign = np.where((np.arange(n) - d) % 2 == 0, 1.0, -1.0)
    return sign * w


def _cauchy(nodes: np.ndarray, points: np.ndarray):
    """``1/(points_j - nodes_i)`` and the (row, node) pairs where a point is a node."""
    diff = points[:, None] - nodes[None, :]
    hit = diff == 0
    diff[hit] = 1.0
    return 1.0 / diff, hit


def _interpolate(cauchy: np.ndarray, hit: np.ndarray, w: np.ndarray, values: np.ndarray):
    """The barycentric formula (second form) ``sum_i w_i v_i/(t - x_i) / sum_i w_i/(t - x_i)``
    at every point, exact at points that are nodes."""
    weighted = cauchy * w  # (points x nodes): cheaper to scale than the samples
    out = (weighted @ values) / weighted.sum(axis=1)[:, None]
    rows, cols = np.nonzero(hit)
    out[rows] = values[cols]
    return out


def fh_matrix(nodes: np.ndarray, points: np.ndarray, d: int) -> np.ndarray:
    """The (len(points), len(nodes)) matrix mapping samples to interpolant values."""
    cauchy, hit = _cauchy(nodes, points)
    w = floater_hormann_weights(nodes, d)
    out = cauchy * w[None, :] / (cauchy @ w)[:, None]
    rows, cols = np.nonzero(hit)
    out[rows] = 0.0
    out[rows, cols] = 1.0
    return out


def select_blending_degree(nodes: np.ndarray, values: np.ndarray, points: np.ndarray,
                           column_scale: np.ndarray, max_degree: int = MAX_BLENDING_DEGREE):
    r"""Choose the blending degree from the data and estimate the interpolant's error.

    For ``d = 0, 1, ...`` the interpolants :math:`r_d` are compared at ``points``: while the
    truncation error dominates, :math:`|r_{d+1} - r_d|` is about the error of :math:`r_d`
    (the next one is :math:`O(h)` smaller); once rounding of the samples amplified by the
    Lebesgue constant dominates, the difference is about that level, which grows with ``d``.
    The chosen ``d`` minimises

    .. math:: E(d) = \frac{\sum_r c_r \max_s |r_{d+1}(s) - r_d(s)|_r}{\sum_r c_r \|v_r\|_\infty}

    (columns ``r`` weighted by ``column_scale`` :math:`c_r`); :math:`E(d)` is returned as the
    error estimate. Returns ``(d, E(d))``.
    """
    n = nodes.shape[0]
    # The last pair compared is (n - 3, n - 2): on equispaced nodes the weights of degrees
    # n - 2 and n - 1 are proportional (Pascal's rule), so those two interpolants coincide and
    # their difference (0) would pass the polynomial interpolant off as exact.
    top = min(max_degree, n - 3)
    if top < 0:  # two nodes: only the linear interpolant, no second one to estimate with
        return min(1, n - 1), float("inf")
    cauchy, hit = _cauchy(nodes, points)
    values = np.ascontiguousarray(values)
    norm = float(np.sum(column_scale * np.max(np.abs(values), axis=0)))
    if norm == 0.0:
        return min(3, n - 1), 0.0
    previous = _interpolate(cauchy, hit, floater_hormann_weights(nodes, 0), values)
    estimates = []
    for d in range(top + 1):
        current = _interpolate(cauchy, hit, floater_hormann_weights(nodes, d + 1), values)
        estimate = float(np.sum(column_scale * np.max(np.abs(current - previous), axis=0)))
        estimates.append(estimate / norm)
        if _past_optimum(estimates):
            break
        previous = current
    return _lowest_near_least(estimates)


def _past_optimum(estimates: list) -> bool:
    """Past the optimum the amplified rounding grows like ``2**d``: no later ``d`` wins."""
    d = len(estimates) - 1
    best = int(np.argmin(estimates))
    return d >= best + 4 and estimates[-1] > 16 * estimates[best]


def _lowest_near_least(estimates: list) -> tuple[int, float]:
    """Of the degrees within a factor 2 of the least estimate, the lowest (the smallest
    Lebesgue constant)."""
    d = int(np.nonzero(np.asarray(estimates) <= 2 * min(estimates))[0][0])
    return d, estimates[d]


def choose_blending_degree(estimates: Sequence[float]) -> tuple[int, float]:
    r""":func:`select_blending_degree`'s choice from all the estimates :math:`E(0), E(1),
    \dots` computed at once (the array path): the same early stop, applied to the list."""
    seen: list = []
    for e in estimates:
        seen.append(float(e))
        if _past_optimum(seen):
            break
    return _lowest_near_least(seen)


def check_grid(xn: np.ndarray, mode: int, interval: tuple[float, float], n_rows: int,
               slack: float) -> np.ndarray:
    """The coordinates ``grid[mode]`` (on the host: float64, finite, 1-D), checked: as many
    as the samples' rows, strictly increasing, inside the interval and covering it up to one
    grid step at each end (the interpolant extrapolates no further)."""
    if xn.shape[0] != n_rows:
        raise ValueError(
            f"factors[{mode}] has {n_rows} rows but grid[{mode}] has {xn.shape[0]} points"
        )
    if xn.size < 2:
        raise ValueError(f"grid[{mode}] needs at least 2 points; got {xn.size}")
    steps = np.diff(xn)
    if not np.all(steps > 0):
        raise ValueError(f"grid[{mode}] must be strictly increasing (sort it, with its samples)")
    a, b = interval
    tol = slack * (b - a)
    if xn[0] < a - tol or xn[-1] > b + tol:
        raise ValueError(
            f"grid[{mode}] spans [{xn[0]:.6g}, {xn[-1]:.6g}], outside the box [{a:.6g}, {b:.6g}]"
        )
    if xn[0] - a > steps[0] + tol or b - xn[-1] > steps[-1] + tol:
        raise ValueError(
            f"grid[{mode}] spans [{xn[0]:.6g}, {xn[-1]:.6g}] but the box is [{a:.6g}, {b:.6g}]: "
            "the interpolant would extrapolate more than one grid step; give a box the grid "
            "covers"
        )
    return xn


def floater_hormann_coefficients(samples: Any, x: np.ndarray, points: np.ndarray,
                                 blending_degree: int | None, column_scale: np.ndarray,
                                 mode: int):
    """Values of the Floater-Hormann interpolant of ``samples`` (rows at nodes ``x``) at
    ``points``, the blending degree used and the estimated relative error (NaN when a
    fixed degree is given)."""
    values = as_float_array(samples, f"factors[{mode}]", ndim=2)
    n = x.shape[0]
    # The (points x nodes) Cauchy matrix, its weighted copy and the differences held at once.
    check_memory(8.0 * points.shape[0] * (3 * n + 3 * values.shape[1]),
                 f"the Floater-Hormann evaluation of {n} grid points at {points.shape[0]} "
                 f"Lobatto points (mode {mode})", hint="lower the degree or coarsen the grid")
    vn = to_numpy(values).astype(np.float64)
    if blending_degree is None:
        d, estimate = select_blending_degree(x, vn, points, column_scale)
    else:
        d = check_integer(blending_degree, "blending_degree", minimum=0)
        if d > n - 1:
            raise ValueError(
                f"blending_degree must be at most the number of grid points minus one; got "
                f"{d} for the {n} points of grid[{mode}]"
            )
        estimate = float("nan")
    cauchy, hit = _cauchy(x, points)
    out = _interpolate(cauchy, hit, floater_hormann_weights(x, d), vn)
    return asarray(out, dtype=values.dtype), d, estimate

"""Chebyshev coefficient factors of a CP tensor from samples of its factor functions.

The three ways :meth:`ChebTucker.from_cp` takes a factor: samples at the Lobatto points, a
callable sampled there, or samples on a grid of the user's (fitted by Floater-Hormann rational
interpolation, ``_fit.py``, or by a discrete least-squares polynomial).

Where it computes: the namespace and device of the weights and the factor arrays (NumPy ones
follow the switch). Grid coordinates are host data by nature (a 1-D vector per mode, checked for
order and coverage): arrays of another library are read back once per call, all three in one
read, and the fits' matrices are built on the host from them, moved to the samples' device once
and applied there. The samples themselves never leave their device; only the per-column scales
that choose the blending degree (two numbers per column) and the blending-degree estimates come
back, each once per call.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import as_float_array, check_all_finite, check_integer, check_memory
from ..backend import ArrayContext, array_context, to_numpy
from . import _fit
from ._chebyshev import (
    BOX_SLACK,
    _vandermonde,
    chebyshev_points,
    to_reference,
    transform_values,
)

__all__ = ["FITS", "CoefficientFactors", "IllConditionedFitWarning", "coefficient_factors",
           "cp_context"]

FITS = ("floater-hormann", "least-squares")


class IllConditionedFitWarning(UserWarning):
    """A Chebyshev fit to grid samples is unreliable between the grid points to ``tol``: the
    samples are too coarse (Floater-Hormann fit), or a least-squares fit amplifies rounding
    above ``tol``."""


@dataclass
class CoefficientFactors:
    """The (m_k, R) coefficient matrices, in the call's namespace and on its device, and what
    the Floater-Hormann fit chose (``None`` when it did not run)."""

    factors: list
    blending_degrees: tuple | None = None
    fit_error_estimate: float | None = None


def cp_context(weights: Any, factors: Sequence[Any], grid: Sequence[Any] | None) -> ArrayContext:
    """Where :meth:`ChebTucker.from_cp` computes: the weights, the factor arrays and the grid
    coordinates (arrays of two libraries or devices raise :class:`TypeError` naming them)."""
    arrays, names = [weights], ["weights"]
    for k, fac in enumerate(factors):
        if not callable(fac):
            arrays.append(fac)
            names.append(f"factors[{k}]")
    if grid is not None:
        if len(grid) != 3:
            raise ValueError(f"grid must be three coordinate vectors; got {len(grid)}")
        arrays.extend(grid)
        names.extend(f"grid[{k}]" for k in range(3))
    return array_context(*arrays, names=names)


def _sample_callable(fac: Any, k: int, interval: tuple[float, float], degree: int | None,
                     ctx: ArrayContext):
    """``fac`` at the Lobatto points of mode ``k``, given as arrays of the call's library and
    device; its values must come back there (a NumPy result for torch points is refused
    rather than copied to the device behind the user's back)."""
    if degree is None:
        raise ValueError("degree is required when the factors are callables")
    nodes = chebyshev_points(degree + 1, domain=interval, xp=ctx.xp, device=ctx.device)
    out = fac(nodes)
    if not ctx.is_numpy:
        array_context(nodes, out, names=(f"the points given to factors[{k}]",
                                         f"factors[{k}](x)"))
    return as_float_array(out, f"factors[{k}](x)", ndim=2, ctx=ctx)


def coefficient_factors(weights: Any, factors: Sequence[Any], *, grid: Any, box: Any,
                        degree: int | None, tol: float, fit: str, blending_degree: int | None,
                        ctx: ArrayContext) -> CoefficientFactors:
    """The coefficient factors of ``from_cp`` (its arguments, checked by it)."""
    if grid is not None and fit == "floater-hormann":
        return _floater_hormann_factors(weights, factors, grid, box, degree, tol,
                                        blending_degree, ctx)
    out = []
    qr_cache: dict = {}  # the same grid in several modes: one QR
    host_grid = _host_grid(grid, factors, ctx) if grid is not None else None
    for k, fac in enumerate(factors):
        if callable(fac):
            samples = _sample_callable(fac, k, box[k], degree, ctx)
            out.append(transform_values(samples, (0,), ctx))
        elif grid is None:
            samples = as_float_array(fac, f"factors[{k}]", ndim=2, ctx=ctx)
            if degree is not None and samples.shape[0] != degree + 1:
                raise ValueError(
                    f"factors[{k}] has {samples.shape[0]} rows; samples at the Lobatto "
                    f"points of degree {degree} need {degree + 1} (or pass grid=)"
                )
            out.append(transform_values(samples, (0,), ctx))
        else:
            out.append(_least_squares_coefficients(fac, grid, host_grid[k], k, box[k], degree,
                                                   qr_cache, tol, ctx))
    return CoefficientFactors(out)


def _host_grid(grid: Sequence[Any], factors: Sequence[Any], ctx: ArrayContext) -> list:
    """The grid coordinates of the fitted (non-callable) modes as float64 NumPy vectors (None
    for the others): for arrays of another library, one read of all of them."""
    coords = [None if callable(fac) else
              as_float_array(grid[k], f"grid[{k}]", ndim=1, ctx=ctx,
                             check_finite=ctx.is_numpy)  # else checked on the host, below
              for k, fac in enumerate(factors)]
    if ctx.is_numpy:
        return [None if c is None else to_numpy(c).astype(np.float64) for c in coords]
    xp = ctx.xp
    present = [c for c in coords if c is not None]
    if not present:
        return coords
    host = to_numpy(xp.concat([xp.astype(c, xp.float64) for c in present]))
    out, start = [], 0
    for k, c in enumerate(coords):
        if c is None:
            out.append(None)
        else:
            out.append(host[start:start + c.shape[0]])
            start += c.shape[0]
            if not np.all(np.isfinite(out[-1])):
                raise ValueError(f"grid[{k}] must be finite; it contains NaN or infinity")
    return out


# -- the least-squares fit ------------------------------------------------------------------


def _least_squares_coefficients(samples: Any, grid: Sequence[Any], x_host: np.ndarray,
                                mode: int, interval: tuple[float, float], degree: int | None,
                                qr_cache: dict, tol: float, ctx: ArrayContext):
    values = as_float_array(samples, f"factors[{mode}]", ndim=2, ctx=ctx)
    if values.shape[0] != x_host.shape[0]:
        raise ValueError(
            f"factors[{mode}] has {values.shape[0]} rows but grid[{mode}] has "
            f"{x_host.shape[0]} points"
        )
    if degree is None:
        raise ValueError("degree is required with grid=")
    if x_host.shape[0] < degree + 1:
        raise ValueError(
            f"a least-squares fit of degree {degree} needs at least {degree + 1} grid points; "
            f"grid[{mode}] has {x_host.shape[0]}"
        )
    a, b = interval
    if (x_host.size and (float(x_host.min()) < a - BOX_SLACK * (b - a)
                         or float(x_host.max()) > b + BOX_SLACK * (b - a))):
        raise ValueError(f"grid[{mode}] leaves the box [{a}, {b}]")
    key = (interval, degree, x_host.shape[0], hash(x_host.tobytes()))
    if ctx.is_numpy:
        # the NumPy path (and CuPy under the switch): QR in the switch's namespace
        from ..backend import array_namespace

        xp = array_namespace()
        if key in qr_cache:
            q, r = qr_cache[key]
        else:
            x = as_float_array(grid[mode], f"grid[{mode}]", ndim=1)
            vander = _vandermonde(to_reference(x, a, b), degree)
            # QR-based least squares: the grid values are reproduced to rounding whenever they
            # are representable, whatever the conditioning of the equispaced Vandermonde matrix.
            q, r = xp.linalg.qr(vander)
            qr_cache[key] = (q, r)
            _warn_if_unstable_off_grid(to_numpy(q), to_numpy(r), to_reference(x_host, a, b),
                                       degree, mode, tol)
        return xp.linalg.solve(r, q.T @ values)
    # Other libraries: the (degree + 1, n) least-squares operator R^-1 Q^T from the host
    # coordinates, moved to the samples' device once and applied there (a linear map of the
    # samples: differentiable by torch).
    if key not in qr_cache:
        t = to_reference(x_host, a, b)
        q, r = np.linalg.qr(np.polynomial.chebyshev.chebvander(t, degree))
        _warn_if_unstable_off_grid(q, r, t, degree, mode, tol)
        qr_cache[key] = np.linalg.solve(r, q.T)
    return ctx.asarray(qr_cache[key], dtype=values.dtype) @ values


def _warn_if_unstable_off_grid(q: np.ndarray, r: np.ndarray, t: np.ndarray, degree: int,
                               mode: int, tol: float) -> None:
    """Warn when the discrete least-squares projection amplifies values between grid points.

    The fit maps grid values y to the polynomial V(s) R^-1 Qᵀ y; its Lebesgue constant
    max_s ||V(s) R^-1 Qᵀ||_1 bounds how much more than the best approximation error the fit
    can be off at a point s. On equispaced grids it grows exponentially unless the number of
    points is of order degree² (Platte, Trefethen & Kuijlaars 2011), while the residual on the
    grid stays small, so a good on-grid error says nothing about the points in between. It
    multiplies the best approximation error and the rounding of the samples: once rounding
    alone, amplification x eps, exceeds ``tol``, no choice of data can make the fit meet
    ``tol`` off the grid, and the user is told. The instability lives near the ends of the
    interval: midpoints there, plus a sparse sample of the interior and the box ends, are
    checked.
    """
    grid = np.unique(t)
    mids = (grid[:-1] + grid[1:]) / 2
    edge = max(1, mids.size // 10)
    points = np.concatenate([[-1.0, 1.0], mids[:edge], mids[-edge:], mids[edge:-edge:8]])
    operator = np.linalg.solve(r, q.T)  # (degree + 1, n)
    values = np.polynomial.chebyshev.chebvander(points, degree) @ operator
    amplification = float(np.abs(values).sum(axis=1).max())
    rounding_off_grid = amplification * np.finfo(np.float64).eps
    if rounding_off_grid > tol:
        warnings.warn(
            f"the least-squares fit of degree {degree} to {t.size} grid points in mode {mode} "
            f"amplifies errors between the grid points up to {amplification:.1e} times, so "
            f"rounding alone can reach {rounding_off_grid:.1e} there, above tol = {tol:g} "
            "(equispaced least squares is stable only with about degree² points): values off "
            "the grid are unreliable; use the default fit='floater-hormann', evaluate on the "
            "grid, lower the degree, or sample the factors at Chebyshev points (callables)",
            IllConditionedFitWarning,
            stacklevel=5,
        )


# -- the Floater-Hormann fit ----------------------------------------------------------------


def _floater_hormann_factors(weights, factors, grid, box, degree, tol, blending_degree,
                             ctx: ArrayContext) -> CoefficientFactors:
    """Grid samples: Floater-Hormann values at the Lobatto points, then coefficients."""
    nodes = [to_numpy(chebyshev_points(degree + 1, domain=box[k], xp=np)) for k in range(3)]
    # A callable factor is sampled at the Lobatto points (exact, as without grid=).
    # the weights and the samples given are checked for finiteness in one read
    samples = [_sample_callable(fac, k, box[k], degree, ctx) if callable(fac)
               else as_float_array(fac, f"factors[{k}]", ndim=2, ctx=ctx,
                                   check_finite=ctx.is_numpy)
               for k, fac in enumerate(factors)]
    lam = as_float_array(weights, "weights", ndim=1, ctx=ctx, check_finite=ctx.is_numpy)
    if not ctx.is_numpy:
        check_all_finite(ctx.xp, {"weights": lam, **{
            f"factors[{k}]": s for k, s in enumerate(samples) if not callable(factors[k])}})
    if any(s.shape[1] != lam.shape[0] for s in samples):
        raise ValueError(
            f"weights has {lam.shape[0]} entries but the factors have "
            f"{[int(s.shape[1]) for s in samples]} columns"
        )
    x_host = _host_grid(grid, factors, ctx)
    for k in range(3):
        if x_host[k] is not None:
            _fit.check_grid(x_host[k], k, box[k], samples[k].shape[0], BOX_SLACK)
    # Each mode's interpolation error enters the tensor weighted by |lambda_r| times the
    # sizes of the other modes' columns: the blending degree is chosen for that mix. The
    # weights and the column sizes come to the host in one read.
    w, sizes = _column_scales(lam, samples, ctx)
    if ctx.is_numpy:
        values, chosen, errors = [], [], []
        for k in range(3):
            if callable(factors[k]):
                values.append(samples[k])
                chosen.append(None)
                errors.append(float("nan"))
                continue
            scale = w * sizes[(k + 1) % 3] * sizes[(k + 2) % 3]
            v, d, err = _fit.floater_hormann_coefficients(
                samples[k], x_host[k], nodes[k], blending_degree, scale, k)
            values.append(v)
            chosen.append(d)
            errors.append(err)
    else:
        values, chosen, errors = _floater_hormann_xp(samples, factors, x_host, nodes, w, sizes,
                                                     blending_degree, ctx)
    estimate, estimated = 0.0, False  # all factors callables: nothing fitted, nothing estimated
    for err in errors:
        if err == err:  # not NaN
            # The largest over the modes: measured within a factor ~3 of the actual error
            # at random points (their sum overestimates it ~10x, see tests/test_fit.py).
            estimate = max(estimate, err)
            estimated = True
    if estimate > tol:
        difference = (
            f"differ from the next blending degree by {estimate:.1e} relative"
            if estimate < float("inf") else
            "cannot be checked against a second interpolant (two grid points)"
        )
        warnings.warn(
            f"the Floater-Hormann interpolants of the grid samples (blending degrees "
            f"{tuple(chosen)}) {difference}, above tol = {tol:g}: the samples do not "
            "resolve the factors to tol between the grid points; refine the grid or raise "
            "tol",
            IllConditionedFitWarning,
            stacklevel=4,
        )
    return CoefficientFactors(
        [transform_values(v, (0,), ctx) for v in values],
        blending_degrees=tuple(chosen),
        fit_error_estimate=(estimate if blending_degree is None and estimated
                            else float("nan")),
    )


def _column_scales(lam, samples, ctx: ArrayContext):
    """``|weights|`` and the largest magnitude of each sample column, on the host (one read)."""
    xp = ctx.xp
    parts = [xp.abs(lam)] + [xp.max(xp.abs(s), axis=0) if s.shape[0] else
                             xp.zeros(s.shape[1], dtype=s.dtype, device=ctx.device)
                             for s in samples]
    host = to_numpy(xp.concat([xp.astype(p, xp.float64) for p in parts]))
    r = lam.shape[0]
    return host[:r], [host[r * (k + 1):r * (k + 2)] for k in range(3)]


def _floater_hormann_xp(samples, factors, x_host, nodes, w, sizes, blending_degree, ctx):
    """The Floater-Hormann fit for arrays of other libraries (torch, CuPy, array_api_strict).

    The interpolation matrices of every blending degree tried are built on the host (from the
    host coordinates) and moved to the device once per mode; the interpolants are one batched
    product there, and the estimates :math:`E(d)` of all modes come back in one read. The
    choice of ``d`` is then the NumPy path's (the same early stop, applied to the list).
    """
    xp = ctx.xp
    interpolants, plans, pending = [None] * 3, [None] * 3, []
    for k in range(3):
        if callable(factors[k]):
            continue
        x, points, values = x_host[k], nodes[k], samples[k]
        n, columns = x.shape[0], values.shape[1]
        scale = w * sizes[(k + 1) % 3] * sizes[(k + 2) % 3]
        if blending_degree is not None:
            d = check_integer(blending_degree, "blending_degree", minimum=0)
            if d > n - 1:
                raise ValueError(
                    f"blending_degree must be at most the number of grid points minus one; "
                    f"got {d} for the {n} points of grid[{k}]"
                )
            degrees, plans[k] = [d], ("fixed", d)
        else:
            top = min(_fit.MAX_BLENDING_DEGREE, n - 3)
            norm = float(np.sum(scale * sizes[k]))
            if top < 0:  # two nodes: only the linear interpolant, no second one to check
                degrees, plans[k] = [min(1, n - 1)], ("fixed", min(1, n - 1), float("inf"))
            elif norm == 0.0:
                degrees, plans[k] = [min(3, n - 1)], ("fixed", min(3, n - 1), 0.0)
            else:
                degrees, plans[k] = list(range(top + 2)), ("auto", norm)
        check_memory(8.0 * len(degrees) * points.shape[0] * (n + 2 * columns),
                     f"the Floater-Hormann evaluation of {n} grid points at {points.shape[0]} "
                     f"Lobatto points, {len(degrees)} blending degrees (mode {k})",
                     hint="lower the degree, coarsen the grid or fix blending_degree", ctx=ctx)
        mats = np.stack([_fit.fh_matrix(x, points, d) for d in degrees])
        stacked = ctx.asarray(mats, dtype=values.dtype) @ values  # (degrees, m, R)
        interpolants[k] = stacked
        if plans[k][0] == "auto":
            # E(d) = sum_r c_r max_s |r_{d+1}(s) - r_d(s)| / norm, for every d at once
            change = xp.max(xp.abs(stacked[1:, ...] - stacked[:-1, ...]), axis=1)
            pending.append((k, change @ ctx.asarray(scale / plans[k][1], dtype=values.dtype)))
    estimates = {}
    if pending:
        host = to_numpy(xp.concat([xp.astype(e, xp.float64) for _, e in pending]))
        start = 0
        for k, e in pending:
            estimates[k] = [float(v) for v in host[start:start + e.shape[0]]]
            start += e.shape[0]
    values, chosen, errors = [], [], []
    for k in range(3):
        if callable(factors[k]):
            values.append(samples[k])
            chosen.append(None)
            errors.append(float("nan"))
            continue
        plan = plans[k]
        if plan[0] == "auto":
            d, err = _fit.choose_blending_degree(estimates[k])
        elif len(plan) == 3:
            d, err = plan[1], plan[2]
        else:
            d, err = 0, float("nan")  # the one matrix built is that of the fixed degree
        values.append(interpolants[k][d if plan[0] == "auto" else 0, ...])
        chosen.append(plan[1] if plan[0] == "fixed" else d)
        errors.append(err)
    return values, chosen, errors

"""The Chebyshev-Tucker format: a Tucker tensor of Chebyshev coefficients on a box.

The class, its construction and its evaluation. The coefficient factors of a CP tensor from
samples of its factors (Lobatto samples, callables, grid fits) are computed in ``_cp_fit.py``,
the Dask adapters of the evaluation and grid export live in ``_format_dask.py``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._validation import as_float_array, check_integer, check_memory, check_real
from ..backend import array_context, array_namespace, creation_context, to_numpy
from . import _array, _cp_fit
from . import _format_dask as _lazy
from ._chebyshev import (
    BOX_SLACK,
    MAX_DEGREE,
    _vandermonde,
    as_box,
    chebyshev_points,
    to_reference,
    values_to_coefficients,
)
from ._cp_fit import IllConditionedFitWarning
from ._tucker import TuckerTensor, hooi, hosvd, multi_mode_product, reduced_hosvd

__all__ = ["ChebTucker", "IllConditionedFitWarning"]


def _check_degree(degree: Any) -> int:
    degree = check_integer(degree, "degree", minimum=1, maximum=MAX_DEGREE)
    m = degree + 1
    check_memory(
        8.0 * m**3 * 3, f"the {m}x{m}x{m} coefficient tensor of degree {degree}",
        hint="lower the degree or build from CP factors (ChebTucker.from_cp)",
    )
    return degree


class ChebTucker(_array.PlacedState):
    r"""A function on a box as a Tucker tensor of Chebyshev coefficients.

    .. math::
        f(x, y, z) \approx \sum_{i,j,k} G_{ijk}\, u_i(x)\, v_j(y)\, w_k(z),\qquad
        u_i(x) = \sum_{p=0}^{m-1} U_{pi}\, T_p(\hat x),

    with :math:`\hat x` the affine image of ``x`` in ``[-1, 1]`` and :math:`U, V, W` orthonormal
    (m x r) coefficient factors. Build it with :meth:`from_function`, :meth:`from_cp` or
    :meth:`from_coefficients`; call it on points ``(M, 3)``; export it with :meth:`on_grid` or
    :meth:`to_tucker`.

    Parameters
    ----------
    core : array, shape (r1, r2, r3)
    factors : three arrays, shapes (m_k, r_k)
        Chebyshev coefficient factors (degree ``m_k - 1``, low to high degree).
    domain : (a, b) or three pairs
        The box.
    truncation_error : float
        Relative Frobenius error of the Tucker truncation of the coefficient tensor.

    Attributes
    ----------
    core, factors, domain, ranks, degrees, nbytes, truncation_error, device

    Notes
    -----
    The object lives where its core and factors do: NumPy (served by the switch's kernels),
    CuPy, torch (CPU or CUDA), ``array_api_strict``, ... The constructors build it where
    their inputs live (:meth:`from_cp`, :meth:`from_coefficients`; :meth:`from_function`,
    which has no array input, where ``xp=`` and ``device=`` say). Evaluation takes points
    of that library and device (lists follow the object) and returns arrays there; points of
    another library or device raise :class:`TypeError` naming both. :meth:`to` moves the
    object.
    Torch and other array-API libraries take the array path (code written against the
    standard, in blocks, without in-place updates): torch's autograd differentiates the
    values with respect to the points and to the core and factors.

    References
    ----------
    .. [1] P. Benner, B. Khoromskij, V. Khoromskaia, B. Sun, "A mesh-free hybrid
       Chebyshev-Tucker tensor format with applications to multi-particle modelling",
       arXiv:2503.01696 (2025).
    """

    exponential_sum = None
    """For a long-range potential: the :class:`ExponentialSum` of its long-range terms."""
    cutoff = None
    """For a long-range potential: the radius beyond which its short-range part is dropped."""
    blending_degrees = None
    """For :meth:`from_cp` on a grid (Floater-Hormann fit): the blending degree of each mode."""
    fit_error_estimate = None
    """For :meth:`from_cp` on a grid with automatic blending degrees: the estimated relative
    error of the interpolated samples between the grid points (see :meth:`from_cp`)."""

    def __init__(self, core: Any, factors: Sequence[Any], *, domain: Any,
                 truncation_error: float = 0.0, singular_values: Sequence[Any] = (),
                 _trusted: bool = False):
        if len(factors) != 3:
            raise ValueError(f"factors must be three matrices; got {len(factors)}")
        ctx = array_context(core, *factors,
                            names=("core", "factors[0]", "factors[1]", "factors[2]"))
        # _trusted: arrays this package computed (a decomposition's output), finite by
        # construction; on a device their four finiteness checks would be four reads
        core = as_float_array(core, "core", ndim=3, ctx=ctx, check_finite=not _trusted)
        factors = [as_float_array(u, f"factors[{k}]", ndim=2, ctx=ctx,
                                  check_finite=not _trusted)
                   for k, u in enumerate(factors)]
        for k, u in enumerate(factors):
            if u.shape[1] != core.shape[k]:
                raise ValueError(
                    f"factors[{k}] has {u.shape[1]} columns but the core has size "
                    f"{core.shape[k]} along mode {k}"
                )
            if u.shape[0] < 1:
                raise ValueError(f"factors[{k}] needs at least one coefficient row")
        self._ctx = ctx
        self.core = core
        self.factors = factors
        self.domain = as_box(domain)
        self.truncation_error = float(truncation_error)
        self.singular_values = [np.asarray(to_numpy(s)) for s in singular_values]

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_coefficients(cls, coefficients: Any, *, domain: Any, tol: float | None = None,
                          ranks: Any = None, refine: bool = False) -> ChebTucker:
        """Compress a full coefficient tensor (m1 x m2 x m3) by :func:`hosvd` (and :func:`hooi`
        at the same ranks when ``refine``). The result lives in the library and on the device
        of ``coefficients`` (NumPy and lists follow the switch)."""
        ctx = array_context(coefficients, names=("coefficients",))
        coefficients = as_float_array(coefficients, "coefficients", ndim=3, ctx=ctx)
        if tol is None and ranks is None:
            raise ValueError("give tol (epsilon-ranks) or ranks")
        tucker = hosvd(coefficients, tol=tol, ranks=None if tol is not None else ranks)
        if refine:
            tucker = hooi(coefficients, tucker.ranks, init=tucker)
        return cls._from_tucker(tucker, domain)

    @classmethod
    def _from_tucker(cls, tucker: TuckerTensor, domain: Any) -> ChebTucker:
        return cls(tucker.core, tucker.factors, domain=domain,
                   truncation_error=tucker.error, singular_values=tucker.singular_values,
                   _trusted=True)

    @classmethod
    def from_function(cls, f: Callable[..., Any], *, domain: Any, degree: int, tol: float,
                      refine: bool = False, vectorized: bool = True, xp: Any = None,
                      device: Any = None) -> ChebTucker:
        r"""Interpolate ``f`` at the :math:`m^3` Lobatto points, ``m = degree + 1``, and compress.

        Parameters
        ----------
        f : callable
            ``f(x, y, z)`` on broadcastable arrays (``vectorized=True``: shapes (m, 1, 1),
            (1, m, 1), (1, 1, m), arrays of the library ``xp`` on ``device``), returning real
            values of that library (or numbers); with ``vectorized=False``, ``f`` takes and
            returns Python numbers.
        domain : (a, b) or three pairs
        degree : int
            Polynomial degree per mode (``m = degree + 1`` points).
        tol : float
            :math:`\varepsilon` of the HOSVD rank criterion (spec: tail :math:`\le
            \varepsilon\|C\|_F/\sqrt3`).
        refine : bool
            Refine by HOOI at the epsilon-ranks.
        vectorized : bool
            ``False``: ``f`` is called once per point, on the host, and its :math:`m^3` values
            are copied to ``device`` once.
        xp : module, optional
            The array library the points are given to ``f`` in, and the object is built and
            lives in (numpy, cupy, torch, array_api_strict, ...; as
            :func:`sci.backend.creation_context` takes it). Default: the switch's (NumPy, or
            CuPy under ``use_backend("cupy")``). There is no array argument to take it from:
            ``f`` is written for one library, so the library is named here, as for
            :func:`chebyshev_points`.
        device : optional
            The device of that library (default: its default device).

        Returns
        -------
        ChebTucker
            In the library ``xp``, on ``device``, in the floating dtype of ``f``'s values
            (float32 values give a float32 object).

        Raises
        ------
        ValueError
            ``f`` returns the wrong shape or non-finite values; the degree does not fit in
            memory (the message says how much it needs).
        TypeError
            ``f`` returns arrays of another library or device than the points it was given
            (e.g. NumPy for torch points): they are not copied behind the user's back.

        Notes
        -----
        Cost: :math:`m^3` samples, a DCT-I along each mode (:math:`O(m^3\log m)`) and an HOSVD
        (:math:`O(m^4)`). Torch and other array-API libraries take the array path (the DCT-I
        by a real FFT, ``linalg.svd``): torch's autograd differentiates the result with respect
        to tensors that ``f`` closes over, away from ties among the kept singular values. The
        HOSVD reads the three mode spectra back to the host once to choose the ranks.

        Examples
        --------
        >>> import numpy as np
        >>> from sci.chebyshev_tucker import ChebTucker
        >>> ct = ChebTucker.from_function(lambda x, y, z: np.exp(x + 2 * y) * np.cos(z),
        ...                               domain=(-1, 1), degree=24, tol=1e-12)
        >>> ct.ranks
        (1, 1, 1)
        >>> float(abs(ct([[0.1, 0.2, 0.3]])[0] - np.exp(0.5) * np.cos(0.3))) < 1e-12
        True

        In another library, on one of its devices (``f`` gets its arrays there; torch works
        the same way, with ``xp=torch, device="cuda"``):

        >>> import array_api_strict as strict
        >>> dev = strict.Device("device1")
        >>> ct = ChebTucker.from_function(lambda x, y, z: strict.exp(x + 2 * y) * strict.cos(z),
        ...                               domain=(-1, 1), degree=24, tol=1e-12, xp=strict,
        ...                               device=dev)
        >>> ct.device, ct(strict.asarray([[0.1, 0.2, 0.3]], device=dev)).device
        (array_api_strict.Device('device1'), array_api_strict.Device('device1'))
        """
        box = as_box(domain)
        degree = _check_degree(degree)
        tol = check_real(tol, "tol", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        if not callable(f):
            raise TypeError(f"f must be callable; got {type(f).__name__}")
        ctx = creation_context(xp, device)
        m = degree + 1
        if vectorized:
            nodes = [chebyshev_points(m, domain=box[k], xp=ctx.xp, device=ctx.device)
                     for k in range(3)]
            grids = [ctx.xp.reshape(p, shape) for p, shape in
                     zip(nodes, ((m, 1, 1), (1, m, 1), (1, 1, m)), strict=True)]
            values = f(*grids)
            if not ctx.is_numpy:
                # a result of another library (NumPy for torch points, say) is refused, not
                # copied to the device behind the user's back
                array_context(grids[0], values, names=("the points given to f", "f(x, y, z)"))
        else:
            # f takes Python numbers: called point by point on the host, its values copied to
            # the device once
            nodes = [chebyshev_points(m, domain=box[k], xp=np) for k in range(3)]
            values = ctx.asarray(np.vectorize(f)(nodes[0][:, None, None],
                                                 nodes[1][None, :, None],
                                                 nodes[2][None, None, :]))
        values = as_float_array(values, "f(x, y, z)", ctx=ctx)
        values = ctx.xp.broadcast_to(values, (m, m, m))
        coefficients = values_to_coefficients(values)
        return cls.from_coefficients(coefficients, domain=box, tol=tol, refine=refine)

    @classmethod
    def from_cp(cls, weights: Any, factors: Sequence[Any], *, domain: Any, tol: float,
                degree: int | None = None, grid: Sequence[Any] | None = None,
                fit: str = "floater-hormann", blending_degree: int | None = None,
                chunk: int = 4096) -> ChebTucker:
        r"""The Chebyshev-Tucker form of a CP tensor :math:`\sum_r\lambda_r
        f^1_r(x)f^2_r(y)f^3_r(z)`, never forming the :math:`m^3` tensor.

        Parameters
        ----------
        weights : array_like, shape (R,)
        factors : three array_like or three callables
            Samples of the factor functions: shape (m, R) at the Lobatto points of each mode
            (``grid=None``), or shape (n_k, R) at the coordinates ``grid[k]``. A callable
            ``g(x)`` returns the (len(x), R) samples at the points ``x`` it is given; it is
            sampled at the Lobatto points, with ``grid=`` too (its ``grid[k]`` is unused).
        domain : (a, b) or three pairs
        tol : float
            Relative accuracy of the Tucker compression (see :func:`reduced_hosvd`).
        degree : int, optional
            Polynomial degree per mode; default ``m - 1`` from the samples' length.
        grid : three array_like, optional
            Coordinates of samples given on a grid (e.g. a cell-centred grid from a
            grid-based code), strictly increasing, covering the box up to one grid step at
            each end. How the samples become coefficients is set by ``fit``.
        fit : {"floater-hormann", "least-squares"}
            With ``grid``: ``"floater-hormann"`` (default) interpolates the samples by the
            barycentric rational interpolant of Floater and Hormann [2]_, evaluates it at the
            Lobatto points and transforms to coefficients -- stable on equispaced grids and
            accurate between the grid points; ``"least-squares"`` fits a polynomial of the
            given degree (needs ``n_k >= degree + 1``), reliable between grid points only on
            Chebyshev-like grids or with about ``degree**2`` equispaced points, otherwise
            :class:`IllConditionedFitWarning`.
        blending_degree : int, optional
            The Floater-Hormann blending degree ``d`` (``0 <= d < n_k``). Default: chosen per
            mode from the data (below).

        Returns
        -------
        ChebTucker
            In the library and on the device of ``weights``, the factor arrays and ``grid``
            (NumPy arrays and lists follow the switch; arrays of two libraries or devices
            raise :class:`TypeError` naming them). A callable factor is given the Lobatto
            points as arrays there (float64) and must return arrays there: a NumPy result for
            torch points is refused, not copied.

        Notes
        -----
        Coefficient factors come from one-dimensional transforms of each factor column
        (DCT-I, :math:`O(dRm\log m)`), then :func:`reduced_hosvd` (:math:`O(dmR\min(m,R) +
        r^3R)`).

        Torch, CuPy and the other array-API libraries take code written against the standard
        (the grid fits as matrices applied to the samples on their device): torch's autograd
        differentiates the result with respect to the weights and the samples (the blending
        degree chosen from the data is a piecewise-constant function of them: autograd
        differentiates at the degree chosen). Grid coordinates are host data by nature: the
        three vectors are read back in one read to be checked and to build the fits'
        matrices, which go to the device once per call; the Floater-Hormann choice of the
        blending degree reads back the column scales and the estimates of all degrees of all
        modes in one read each. NumPy arrays keep the NumPy code.

        Grid samples :math:`v_i = f(x_i)`, ``fit="floater-hormann"``: the interpolant

        .. math::
            r_d(x) = \frac{\sum_i w_i v_i/(x - x_i)}{\sum_i w_i/(x - x_i)},\qquad
            w_k = (-1)^{k-d}\sum_{i\in J_k}\prod_{j=i,\,j\ne k}^{i+d}\frac1{|x_k - x_j|}

        (:math:`J_k = \{i: 0\le i\le n-1-d,\ k-d\le i\le k\}`) blends the local
        interpolating polynomials of degree :math:`d`; it has no real poles, error
        :math:`O(h^{d+1})` for smooth :math:`f`, and on equispaced nodes a Lebesgue constant
        below :math:`2^{d-1}(2+\log n)` -- unlike a polynomial fit, whose amplification of
        the samples' rounding grows exponentially in the degree. Its values at the ``m``
        Lobatto points give the coefficients (DCT-I). The automatic ``d`` (up to 20, as
        Chebfun's ``chebfun(v, 'equi')`` adapts it) minimises
        :math:`E(d) = \sum_r c_r\max_s|r_{d+1}(s) - r_d(s)| / \sum_r c_r\|v_r\|_\infty` over
        the Lobatto points :math:`s`, columns weighted by :math:`c_r = |\lambda_r|` times the
        sizes of the other modes' columns: the difference is the error of :math:`r_d` while
        truncation dominates and the amplified rounding once it does not. The largest
        :math:`E(d)` over the modes is kept as :attr:`fit_error_estimate` (on equispaced grids
        seen within a factor 3 of the actual error between grid points,
        ``tests/chebyshev_tucker/test_fit.py``); :class:`IllConditionedFitWarning` says when
        it exceeds ``tol``: the samples do not resolve the factors to ``tol``. Cost
        :math:`O(20\,m\,n\,R)` per mode. On grids clustered like Chebyshev points a
        polynomial fit is well conditioned and more accurate: use ``fit="least-squares"``.

        References
        ----------
        .. [2] M. S. Floater, K. Hormann, "Barycentric rational interpolation with no poles and
           high rates of approximation", Numer. Math. 107 (2007) 315-331.

        Examples
        --------
        >>> import numpy as np
        >>> from sci.chebyshev_tucker import ChebTucker
        >>> g = lambda x: np.exp(-np.subtract.outer(x, [0.0, 0.5]) ** 2)
        >>> ct = ChebTucker.from_cp([1.0, -2.0], [g, g, g], domain=(-1, 1), degree=30,
        ...                         tol=1e-12)
        >>> ct.ranks
        (2, 2, 2)

        Samples on a cell-centred grid of 200 points, accurate between the grid points:

        >>> x = -1 + (np.arange(200) + 0.5) / 100
        >>> ct = ChebTucker.from_cp([1.0, -2.0], [g(x)] * 3, domain=(-1, 1), degree=30,
        ...                         tol=1e-12, grid=(x, x, x))
        >>> p = np.array([[0.123, -0.456, 0.789]])
        >>> exact = g(p[0]).prod(axis=0) @ [1.0, -2.0]
        >>> bool(abs(ct(p)[0] - exact) < 1e-12)
        True
        """
        box = as_box(domain)
        tol = check_real(tol, "tol", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        if len(factors) != 3:
            raise ValueError(f"factors must be three matrices or callables; got {len(factors)}")
        if degree is not None:
            degree = _check_degree(degree)
        if fit not in _cp_fit.FITS:
            raise ValueError(f"fit must be one of {_cp_fit.FITS}; got {fit!r}")
        if blending_degree is not None and (grid is None or fit != "floater-hormann"):
            raise ValueError("blending_degree applies to grid samples with "
                             "fit='floater-hormann' only")
        if grid is not None and degree is None:
            raise ValueError("degree is required with grid=")
        ctx = _cp_fit.cp_context(weights, factors, grid)
        fitted = _cp_fit.coefficient_factors(
            weights, factors, grid=grid, box=box, degree=degree, tol=tol, fit=fit,
            blending_degree=blending_degree, ctx=ctx)
        tucker = reduced_hosvd(weights, fitted.factors, tol=tol, chunk=chunk)
        ct = cls._from_tucker(tucker, box)
        if fitted.blending_degrees is not None:
            ct.blending_degrees = fitted.blending_degrees
            ct.fit_error_estimate = fitted.fit_error_estimate
        return ct

    # -- properties -------------------------------------------------------------------------

    @property
    def ranks(self) -> tuple[int, int, int]:
        """Tucker ranks ``(r1, r2, r3)``."""
        return tuple(int(u.shape[1]) for u in self.factors)

    @property
    def degrees(self) -> tuple[int, int, int]:
        """Polynomial degree per mode (``m_k - 1``)."""
        return tuple(int(u.shape[0]) - 1 for u in self.factors)

    @property
    def nbytes(self) -> int:
        """Bytes held by the core and the factors."""
        itemsize = self._ctx.xp.finfo(self.core.dtype).bits // 8
        return itemsize * sum(math.prod(a.shape) for a in (self.core, *self.factors))

    @property
    def device(self) -> Any:
        """The device of the core and factors (``"cpu"`` for NumPy)."""
        return self._ctx.device

    def to(self, xp: Any = None, device: Any = None) -> ChebTucker:
        """A copy in the array library ``xp`` on ``device`` (as
        :func:`sci.backend.creation_context` takes them; default: the switch's library and
        its default device).

        Arrays already there are shared; between libraries the core and factors are copied
        through the host (they are small: :attr:`nbytes`).

        Examples
        --------
        >>> import numpy as np, array_api_strict as strict
        >>> from sci.chebyshev_tucker import ChebTucker
        >>> ct = ChebTucker.from_function(lambda x, y, z: x * y + z, domain=(0, 1),
        ...                               degree=3, tol=1e-12)
        >>> moved = ct.to(strict, strict.Device("device1"))
        >>> moved.device
        array_api_strict.Device('device1')
        >>> points = strict.asarray([[0.5, 0.5, 0.5]], device=strict.Device("device1"))
        >>> round(float(ct(np.asarray([[0.5, 0.5, 0.5]]))[0]), 9)
        0.75
        >>> moved(points).device
        array_api_strict.Device('device1')
        """
        target = creation_context(xp, device)
        out = copy.copy(self)
        out._ctx = target
        out.core = _array.move(self.core, target)
        out.factors = [_array.move(u, target) for u in self.factors]
        return out

    def _call_context(self, arrays: tuple, names: tuple):
        return _array.bound_context("ChebTucker", self._ctx, arrays, names)

    def __repr__(self) -> str:
        return (f"ChebTucker(ranks={self.ranks}, degrees={self.degrees}, "
                f"domain={self.domain}, nbytes={self.nbytes})")

    def coefficients(self):
        """The full coefficient tensor (m1 x m2 x m3), checked against the memory limit."""
        m = [u.shape[0] for u in self.factors]
        check_memory(8.0 * m[0] * m[1] * m[2], "the full coefficient tensor")
        return multi_mode_product(self.core, self.factors)

    def error_estimate(self) -> float:
        r"""A-posteriori estimate of the relative error :math:`\|f - \tilde f\|/\|f\|`.

        The Tucker truncation error plus the Chebyshev tail: the largest relative mass, over
        the modes, of the coefficients of the two highest degrees,
        :math:`\|U_k[m-2:,:]\,G_{(k)}\|_F/\|G\|_F` (coefficients of an analytic function decay
        geometrically, so the last ones bound the aliasing and truncation error up to a
        modest factor, as Chebfun's ``standardChop`` reasons).

        Returns
        -------
        float
        """
        xp = self._ctx.xp
        norms = [xp.linalg.vector_norm(self.core)]
        for mode, u in enumerate(self.factors):
            order = (mode,) + tuple(k for k in range(3) if k != mode)
            unfolded = xp.reshape(xp.permute_dims(self.core, order), (self.core.shape[mode], -1))
            m = u.shape[0]
            norms.append(xp.linalg.vector_norm(u[max(m - 2, 0):, :] @ unfolded))
        # the core's norm and the three tail norms come to the host in one read, not four
        g_norm, *tails = (float(v) for v in to_numpy(xp.stack(norms)))
        if g_norm == 0:
            return self.truncation_error
        return self.truncation_error + max(tails) / g_norm

    # -- evaluation -------------------------------------------------------------------------

    def _check_inside(self, lo: float, hi: float, mode: int, name: str) -> None:
        a, b = self.domain[mode]
        slack = BOX_SLACK * (b - a)
        if lo < a - slack or hi > b + slack:
            raise ValueError(
                f"{name} has coordinates in [{lo:.6g}, {hi:.6g}] along axis {mode}, outside "
                f"the box [{a:.6g}, {b:.6g}]; Chebyshev series diverge quickly outside it. "
                "Build on a larger domain, or pass extrapolate=True to evaluate the "
                "polynomial anyway"
            )

    def _check_bounds(self, lo, hi, names: tuple, extrapolate: bool,
                      modes: Sequence[int] = (0, 1, 2)) -> None:
        """Finite coordinates, inside the box unless ``extrapolate``, from their least and
        largest values per mode (device arrays ``lo``, ``hi``: one read for all of them; a NaN
        or infinity anywhere shows in them)."""
        xp = self._ctx.xp
        bounds = to_numpy(xp.stack([lo, hi]))
        for i, mode in enumerate(modes):
            low, high = float(bounds[0, i]), float(bounds[1, i])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"{names[i]} must be finite; it contains NaN or infinity")
            if not extrapolate:
                self._check_inside(low, high, mode, names[i])

    def _mode_matrices_xp(self, coordinates, modes=(0, 1, 2)):
        """``T(x) U_mode`` of each coordinate vector on the array path (the box was checked by
        the caller): one Chebyshev matrix for all of them, then one product per mode."""
        return _array.mode_matrices(self._ctx.xp, list(coordinates),
                                    [self.factors[k] for k in modes],
                                    tuple(self.domain[k] for k in modes))

    def _mode_matrix(self, coordinate, mode: int, name: str, extrapolate: bool):
        """``T(x) U_mode`` for coordinates ``x`` (checked against the box)."""
        a, b = self.domain[mode]
        if _array_path(self._ctx):
            if coordinate.shape[0] and not extrapolate:
                xp = self._ctx.xp
                lo, hi = to_numpy(xp.stack([xp.min(coordinate), xp.max(coordinate)])).tolist()
                self._check_inside(lo, hi, mode, name)
            return self._mode_matrices_xp([coordinate], (mode,))[0]
        if coordinate.size and not extrapolate:
            self._check_inside(float(coordinate.min()), float(coordinate.max()), mode, name)
        u = self.factors[mode]
        t = to_reference(coordinate.astype(u.dtype, copy=False), a, b)
        return _vandermonde(t, u.shape[0] - 1) @ u

    def __call__(self, points: Any, *, extrapolate: bool = False, chunk: int = 65536):
        r"""Evaluate at scattered points, mesh-free.

        Parameters
        ----------
        points : array_like, shape (M, 3)
        extrapolate : bool
            Evaluate outside the box (a polynomial extrapolation: accurate only very close to
            the box); by default a point outside raises :class:`ValueError`.
        chunk : int
            Points per block (memory :math:`O(\text{chunk}\cdot(m + r^2))`).

        Returns
        -------
        array, shape (M,)
            In the object's library and on its device. A Dask array chunked like the rows of
            ``points`` when ``points`` is one (each block evaluated by one task; see
            :doc:`/dask`).

        Raises
        ------
        TypeError
            ``points`` of another library or device than the object's (see :meth:`to`).

        Notes
        -----
        Per point :math:`O(3mr + r^3)`: the Chebyshev polynomials of each coordinate times the
        factor, then the core contracted with the three resulting vectors. NumPy and CuPy
        write blocks in place; torch and other array-API libraries take the array path (the
        same blocks, concatenated; differentiable by torch's autograd, whose backward keeps
        each block's ``chunk x r2 x r3`` products). The box check reads two numbers per axis
        back from the device once per call.
        """
        from .. import _dask

        if _dask.is_dask_array(points):
            return _lazy.call(self, points, extrapolate, chunk)
        ctx = self._call_context((points,), ("points",))
        array_path = _array_path(ctx)
        # the array path checks finiteness and the box in one read (below)
        pts = as_float_array(points, "points", ndim=2, ctx=ctx, check_finite=not array_path)
        if pts.shape[1] != 3:
            raise ValueError(f"points must have shape (M, 3); got {tuple(pts.shape)}")
        chunk = check_integer(chunk, "chunk", minimum=1)
        if array_path:
            xp = ctx.xp
            if pts.shape[0]:
                self._check_bounds(xp.min(pts, axis=0), xp.max(pts, axis=0), ("points",) * 3,
                                   extrapolate)
            return _array.evaluate(xp, self.core, self._mode_matrices_xp, pts, chunk)
        xp = array_namespace()
        r1, r2, r3 = self.ranks
        out = xp.empty(pts.shape[0], dtype=self.core.dtype)
        core = self.core.reshape(r1, r2 * r3)
        for start in range(0, pts.shape[0], chunk):
            block = pts[start:start + chunk]
            fx, fy, fz = (self._mode_matrix(block[:, k], k, "points", extrapolate)
                          for k in range(3))
            tmp = (fx @ core).reshape(-1, r2, r3)
            out[start:start + chunk] = xp.einsum("pjk,pj,pk->p", tmp, fy, fz)
        return out

    # -- grid export ------------------------------------------------------------------------

    def grid_factors(self, x: Any, y: Any, z: Any, *, extrapolate: bool = False,
                     chunks: Any = None):
        """The sampled factors ``u_i(x)``, ``v_j(y)``, ``w_k(z)`` (shapes (n_k, r_k)).

        With Dask coordinates (or ``chunks=``) the factors are Dask arrays chunked like the
        coordinates along ``n_k``, one block along ``r_k``.
        """
        lazy = _lazy.coordinates(self, (x, y, z), chunks)
        if lazy is not None:
            return _lazy.grid_factors(self, lazy, extrapolate)
        ctx = self._call_context((x, y, z), ("x", "y", "z"))
        array_path = _array_path(ctx)
        coords = [as_float_array(c, name, ndim=1, ctx=ctx, check_finite=not array_path)
                  for c, name in zip((x, y, z), "xyz", strict=True)]
        if not array_path:
            return [self._mode_matrix(c, k, "xyz"[k], extrapolate)
                    for k, c in enumerate(coords)]
        # finiteness and the box of the three coordinates: one read
        xp = ctx.xp
        present = [k for k, c in enumerate(coords) if c.shape[0]]
        if present:
            self._check_bounds(xp.stack([xp.min(coords[k]) for k in present]),
                               xp.stack([xp.max(coords[k]) for k in present]),
                               tuple("xyz"[k] for k in present), extrapolate, modes=present)
        return self._mode_matrices_xp(coords)

    def on_grid(self, x: Any, y: Any, z: Any, *, extrapolate: bool = False, chunks: Any = None):
        r"""Values on the tensor grid ``x x y x z`` (a full array, memory checked).

        Cost :math:`O(n m r)` for the factors plus :math:`O(n^3 r)` for the mode products.

        Parameters
        ----------
        x, y, z : array_like or Dask arrays, shape (n_k,)
            Coordinates along each axis, inside the box.
        extrapolate : bool
            Allow coordinates outside the box (see :meth:`__call__`).
        chunks : int, tuple or "auto", optional
            Return a Dask array with these chunks (as :func:`dask.array.from_array` takes
            them for the n1 x n2 x n3 grid: ``"auto"`` gives blocks of about Dask's
            ``array.chunk-size``); Dask coordinates are rechunked to them.

        Returns
        -------
        array, shape (n_1, n_2, n_3)
            A Dask array when a coordinate is one or ``chunks`` is given: block ``(a, b, c)``
            is :math:`G\times_1 U(x_a)\times_2 V(y_b)\times_3 W(z_c)` computed by one task from
            the coordinate chunks ``x_a, y_b, z_c`` and the small core and factors, so the
            :math:`n^3` values are never gathered (the memory limit applies to the largest
            block, not the whole grid); chunks follow the coordinates', and blocks are CuPy
            arrays under the ``"cupy"`` backend. See :doc:`/dask`.

        Examples
        --------
        >>> import numpy as np
        >>> from sci.chebyshev_tucker import ChebTucker
        >>> ct = ChebTucker.from_function(lambda x, y, z: x * y + z, domain=(0, 1), degree=4,
        ...                               tol=1e-12)
        >>> g = np.linspace(0, 1, 3)
        >>> bool(np.allclose(ct.on_grid(g, g, g), g[:, None, None] * g[None, :, None]
        ...                  + g[None, None, :]))
        True
        """
        lazy = _lazy.coordinates(self, (x, y, z), chunks)
        if lazy is not None:
            return _lazy.on_grid(self, lazy, extrapolate)
        factors = self.grid_factors(x, y, z, extrapolate=extrapolate)
        n = [f.shape[0] for f in factors]
        check_memory(8.0 * n[0] * n[1] * n[2], f"the {n[0]}x{n[1]}x{n[2]} grid of values",
                     hint="use to_tucker() for the compressed grid tensor, or pass chunks= "
                     "for a Dask array built block by block")
        return multi_mode_product(self.core, factors)

    def to_tucker(self, x: Any, y: Any, z: Any, *, extrapolate: bool = False,
                  chunks: Any = None) -> TuckerTensor:
        r"""The algebraic Tucker tensor of the values on the grid ``x x y x z``, with
        orthonormal factors (QR of each sampled factor, R absorbed in the core).

        Cost :math:`O(n m r + n r^2 + r^4)`, never :math:`n^3`.

        With Dask coordinates (or ``chunks=``, as :meth:`on_grid`) the factors are Dask
        arrays chunked like the coordinates, orthonormalised by a tall-skinny QR
        (:func:`dask.array.linalg.tsqr`, a tree over the blocks), and the core is a lazy
        (r1, r2, r3) Dask array. See :doc:`/dask`.

        Examples
        --------
        >>> import numpy as np
        >>> from sci.chebyshev_tucker import ChebTucker
        >>> ct = ChebTucker.from_function(lambda x, y, z: np.sin(x + y + z), domain=(-1, 1),
        ...                               degree=20, tol=1e-13)
        >>> g = np.linspace(-1, 1, 50)
        >>> t = ct.to_tucker(g, g, g)
        >>> t.ranks, bool(np.allclose(t.factors[0].T @ t.factors[0], np.eye(2)))
        ((2, 2, 2), True)
        """
        factors = self.grid_factors(x, y, z, extrapolate=extrapolate, chunks=chunks)
        from .. import _dask

        if _dask.any_dask(*factors):
            return _lazy.to_tucker(self, factors)
        xp = self._ctx.xp
        qs, rs = zip(*(xp.linalg.qr(f) for f in factors), strict=True)
        core = multi_mode_product(self.core, list(rs))
        return TuckerTensor(core=core, factors=list(qs), error=self.truncation_error)


def _array_path(ctx) -> bool:
    """Whether a call takes the array path: every library but NumPy (CuPy included: its
    finiteness and box checks in one read, its Chebyshev matrices in a few large operations
    rather than one in-place write per degree)."""
    return not ctx.is_numpy

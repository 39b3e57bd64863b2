"""Chebyshev points of the second kind, value <-> coefficient transforms, boxes.

Conventions follow :mod:`numpy.polynomial.chebyshev`: coefficients run from low to high degree,
points run from -1 to 1 (``numpy.polynomial.chebyshev.chebpts2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import as_float_array, check_integer, check_real
from ..backend import (
    array_context,
    array_namespace,
    cached_constant,
    creation_context,
    implementation,
    register,
)

__all__ = [
    "chebyshev_points",
    "chebyshev_vandermonde",
    "coefficients_to_values",
    "values_to_coefficients",
]

MAX_DEGREE = 1 << 16
"""A degree beyond which every use here would be a mistake (65537 points per mode)."""

BOX_SLACK = 1e-10
"""Points this far outside the box (relative to its size) still count as inside (rounding)."""


def chebyshev_points(
    m: int,
    *,
    domain: Sequence[float] = (-1.0, 1.0),
    dtype: Any = None,
    xp: Any = None,
    device: Any = None,
) -> Array:
    r"""The ``m`` Chebyshev points of the second kind (Lobatto points), ascending.

    Parameters
    ----------
    m : int
        Number of points, ``m >= 2`` (interpolation degree ``m - 1``).
    domain : (float, float)
        The interval ``[a, b]`` the points are mapped to (affinely).
    dtype : {None, float32, float64}
    xp : module, optional
        The array library of the result (numpy, cupy, torch, array_api_strict, ...); default:
        the switch's (NumPy, or CuPy under ``use_backend("cupy")``).
    device : optional
        The device of the result in that library (default: its default device).

    Returns
    -------
    array, shape (m,)
        :math:`x_j = \tfrac{a+b}{2} - \tfrac{b-a}{2}\cos(\pi j/(m-1))`, ``j = 0..m-1``.

    Notes
    -----
    The points are computed as :math:`\sin(\pi(2j - m + 1)/(2(m-1)))` so that they are exactly
    symmetric about 0 in floating point (as ``chebpts2`` of Chebfun).

    Examples
    --------
    >>> from sci.chebyshev_tucker import chebyshev_points
    >>> chebyshev_points(3).tolist()
    [-1.0, 0.0, 1.0]
    """
    m = check_integer(m, "m", minimum=2, maximum=MAX_DEGREE + 1)
    a, b = _check_interval(domain, "domain")
    j = np.arange(m, dtype=np.float64)
    x = np.sin(np.pi * (2.0 * j - (m - 1)) / (2.0 * (m - 1)))
    mapped = 0.5 * (a + b) + 0.5 * (b - a) * x
    mapped[0], mapped[-1] = a, b
    dtype = np.float64 if dtype is None else dtype
    if xp is None and device is None:
        return array_namespace().asarray(mapped, dtype=dtype)
    ctx = creation_context(xp, device)
    return ctx.asarray(mapped, dtype=getattr(ctx.xp, np.dtype(dtype).name))


def chebyshev_vandermonde(x: Any, degree: int, *, domain: Sequence[float] = (-1.0, 1.0)) -> Array:
    r"""The matrix :math:`V_{ip} = T_p(\hat x_i)` of Chebyshev polynomials at points ``x``.

    Parameters
    ----------
    x : array_like, shape (n,)
        Points in ``domain``.
    degree : int
        Highest degree; ``V`` has ``degree + 1`` columns.
    domain : (float, float)
        ``x`` is mapped affinely from ``domain`` to ``[-1, 1]`` first.

    Returns
    -------
    array, shape (n, degree + 1)
        In the library, on the device and in the dtype of ``x``.

    Notes
    -----
    The three-term recurrence :math:`T_{p+1} = 2\hat x T_p - T_{p-1}` is stable on ``[-1, 1]``
    (as :func:`numpy.polynomial.chebyshev.chebvander`). NumPy and CuPy fill the columns in
    place; torch and the other array-API libraries stack them (differentiable by torch).

    Examples
    --------
    >>> from sci.chebyshev_tucker import chebyshev_vandermonde
    >>> chebyshev_vandermonde([0.5], 3).round(6).tolist()
    [[1.0, 0.5, -0.5, -1.0]]
    """
    degree = check_integer(degree, "degree", minimum=0, maximum=MAX_DEGREE)
    a, b = _check_interval(domain, "domain")
    ctx = array_context(x, names=("x",))
    x = as_float_array(x, "x", ndim=1, ctx=ctx)
    if ctx.backend == "array":
        from ._array import vandermonde

        return vandermonde(ctx.xp, to_reference(x, a, b), degree)
    return _vandermonde(to_reference(x, a, b), degree)


def _vandermonde(t, degree: int):
    xp = array_namespace()
    v = xp.empty((t.shape[0], degree + 1), dtype=t.dtype)
    v[:, 0] = 1
    if degree >= 1:
        v[:, 1] = t
    for p in range(2, degree + 1):
        v[:, p] = 2 * t * v[:, p - 1] - v[:, p - 2]
    return v


def to_reference(x, a: float, b: float):
    """Map ``[a, b]`` affinely onto ``[-1, 1]``."""
    return (2 * x - (a + b)) / (b - a)


def _check_interval(interval: Any, name: str) -> tuple[float, float]:
    try:
        a, b = interval
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (a, b) of reals; got {interval!r}") from None
    a, b = check_real(a, f"{name}[0]"), check_real(b, f"{name}[1]")
    if not b > a:
        raise ValueError(f"{name} must satisfy a < b; got ({a}, {b})")
    return a, b


def as_box(domain: Any, name: str = "domain") -> tuple[tuple[float, float], ...]:
    """A 3D box from one interval (used for every mode) or three intervals."""
    if domain is None:
        raise TypeError(f"{name} is required: a pair (a, b) or three pairs ((a1, b1), ...)")
    arr = np.asarray(domain, dtype=object)
    if arr.shape == (2,):
        interval = _check_interval(domain, name)
        return (interval, interval, interval)
    if arr.shape == (3, 2):
        return tuple(_check_interval(d, f"{name}[{k}]") for k, d in enumerate(domain))
    raise ValueError(
        f"{name} must be a pair (a, b) or three pairs ((a1, b1), (a2, b2), (a3, b3)); "
        f"got shape {tuple(arr.shape)}"
    )


# ---------------------------------------------------------------------------------------------
# Values at the Lobatto points <-> Chebyshev coefficients, along one axis.
#
# With x_j = cos(pi j / n) (descending), c_k = (2/n) sum''_j f_j cos(pi j k / n) (the double prime
# halves the first and last terms) and c_0, c_n are halved once more: that is a DCT-I up to
# scaling. Our points ascend, so the values are reversed first.
# ---------------------------------------------------------------------------------------------


def _dct1_scipy(values, axis: int):
    import scipy.fft

    return scipy.fft.dct(values, type=1, axis=axis)


def _dct1_fft(values, axis: int):
    """DCT-I via the real FFT of the even extension (CuPy has no DCT-I; torch and the other
    array-API libraries take it too: written against the standard, differentiable)."""
    import array_api_compat

    xp = array_api_compat.array_namespace(values)
    n = values.shape[axis] - 1
    order = tuple(k for k in range(values.ndim) if k != axis) + (axis,)
    moved = xp.permute_dims(values, order)
    extended = xp.concat([moved, xp.flip(moved[..., 1:n], axis=-1)], axis=-1)
    out = xp.astype(xp.real(xp.fft.rfft(extended, axis=-1)), values.dtype)
    return xp.permute_dims(out, tuple(order.index(k) for k in range(values.ndim)))


register("chebyshev_tucker.dct1", "numpy", _dct1_scipy)
register("chebyshev_tucker.dct1", "array", _dct1_fft)


def _axes(ndim: int, axes: Any) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int | np.integer):
        axes = (axes,)
    out = []
    for ax in axes:
        ax = check_integer(ax, "axes", minimum=-ndim, maximum=ndim - 1)
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must not repeat; got {axes!r}")
    return tuple(out)


def _edge_scale(ctx, n: int, dtype, axis: int, ndim: int, first: float, rest: float):
    """``[first, rest, ..., rest, first]`` along ``axis``: a constant, converted to the call's
    namespace, device and dtype once."""
    shape = [1] * ndim
    shape[axis] = n + 1

    def build():
        scale = np.full(n + 1, rest)
        scale[0] = scale[n] = first
        return scale.reshape(shape)

    return cached_constant(("chebyshev_tucker.edge_scale", n, axis, ndim, first, rest), build,
                           ctx, dtype)


def values_to_coefficients(values: Any, *, axes: Any = None) -> Array:
    r"""Chebyshev coefficients of the interpolant of ``values`` at the Lobatto points.

    Parameters
    ----------
    values : array_like
        Samples at :func:`chebyshev_points` (ascending) along each transformed axis; every
        transformed axis needs at least 2 points.
    axes : int or sequence of int, optional
        The axes to transform (default: all), e.g. ``axes=0`` for the columns of a matrix.

    Returns
    -------
    array, same shape
        ``c`` with :math:`f(\hat x) = \sum_p c_p T_p(\hat x)` along each axis.

    Notes
    -----
    A DCT-I along each axis, :math:`O(m\log m)` per fibre: ``scipy.fft.dct`` on the CPU
    backends, the real FFT of the even extension on CuPy (which lacks DCT-I) and on torch and
    the other array-API libraries (written against the standard; torch's autograd
    differentiates it). The result is in the library, on the device and in the dtype of
    ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.chebyshev_tucker import chebyshev_points, values_to_coefficients
    >>> x = chebyshev_points(5)
    >>> values_to_coefficients(2 * x**2 - 1).round(12).tolist()  # T_2
    [0.0, 0.0, 1.0, 0.0, 0.0]
    """
    ctx = array_context(values, names=("values",))
    arr = as_float_array(values, "values", ctx=ctx)
    return transform_values(arr, _axes(arr.ndim, axes), ctx)


def transform_values(arr: Any, axes: tuple[int, ...], ctx: Any) -> Array:
    """:func:`values_to_coefficients` of a checked float array of ``ctx`` (no validation, no
    read from the device: for callers that transform many blocks of values they computed)."""
    xp = ctx.xp
    dct1 = implementation("chebyshev_tucker.dct1", ctx.backend)
    for axis in axes:
        n = arr.shape[axis] - 1
        if n < 1:
            raise ValueError(
                f"values needs at least 2 points along axis {axis}; got shape {tuple(arr.shape)}"
            )
        arr = dct1(xp.flip(arr, axis=axis), axis)
        arr = arr * _edge_scale(ctx, n, arr.dtype, axis, arr.ndim, 1.0 / (2 * n), 1.0 / n)
    return arr


def coefficients_to_values(coefficients: Any, *, axes: Any = None) -> Array:
    r"""Values at the Lobatto points (ascending) of a Chebyshev series; inverse of
    :func:`values_to_coefficients`.

    Parameters
    ----------
    coefficients : array_like
        Chebyshev coefficients, low to high degree, along each transformed axis.
    axes : int or sequence of int, optional
        The axes to transform (default: all).

    Returns
    -------
    array, same shape

    Examples
    --------
    >>> from sci.chebyshev_tucker import coefficients_to_values
    >>> coefficients_to_values([0.0, 0.0, 1.0]).tolist()  # T_2 at -1, 0, 1
    [1.0, -1.0, 1.0]
    """
    ctx = array_context(coefficients, names=("coefficients",))
    arr = as_float_array(coefficients, "coefficients", ctx=ctx)
    xp = ctx.xp
    dct1 = implementation("chebyshev_tucker.dct1", ctx.backend)
    for axis in _axes(arr.ndim, axes):
        n = arr.shape[axis] - 1
        if n < 1:
            raise ValueError(
                f"coefficients needs at least 2 entries along axis {axis}; "
                f"got shape {tuple(arr.shape)}"
            )
        arr = arr * _edge_scale(ctx, n, arr.dtype, axis, arr.ndim, 1.0, 0.5)
        arr = xp.flip(dct1(arr, axis), axis=axis)
    return arr


def degree_for_gaussian(t: float, half_width: float, tol: float) -> int:
    r"""The least even degree whose Chebyshev interpolant of :math:`e^{-t^2x^2}` on
    ``[-half_width, half_width]`` is accurate to ``tol`` (absolute; the peak is 1).

    The coefficients are known in closed form, :math:`c_{2k} = 2(-1)^k e^{-s}I_k(s)` with
    :math:`s = (t\,\text{half\_width})^2/2` (Jacobi-Anger), and the interpolation error is at
    most twice the coefficient tail (aliasing), so the degree is the least :math:`2k` with
    :math:`4\sum_{j\ge k}e^{-s}I_j(s)\le\text{tol}`. For large ``t`` this grows like
    :math:`t\sqrt{2\ln(1/\text{tol})}` (the spec's rule of thumb).
    """
    from scipy.special import ive

    s = 0.5 * (t * half_width) ** 2
    top = int(4 * s + 20 * math.sqrt(s + 1) + 60)
    terms = ive(np.arange(top + 1), s)
    tails = np.cumsum(terms[::-1])[::-1]
    ok = np.nonzero(4.0 * tails <= tol)[0]
    k = int(ok[0]) if ok.size else top
    return max(2 * k, 1)

"""Spherical harmonics (complex and real), the flat coefficient layout, basis changes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import as_complex_array, as_float_array, check_integer, check_memory
from ..backend import array_context, array_namespace, asarray, implementation, register

__all__ = [
    "coefficient_index",
    "degree_order",
    "from_e3nn",
    "lmax_from_size",
    "real_to_complex",
    "complex_to_real",
    "spherical_harmonics",
    "to_e3nn",
]

LMAX_LIMIT = 4096
"""Degrees above this are refused outright (the tables grow as lmax^3)."""


def coefficient_index(l: Any, m: Any) -> int | Array:
    """Flat index ``l**2 + l + m`` of the coefficient of degree ``l`` and order ``m``.

    Examples
    --------
    >>> coefficient_index(2, -1)
    5
    """
    return l * l + l + m


def degree_order(lmax: int) -> tuple[np.ndarray, np.ndarray]:
    """The degree ``l`` and order ``m`` of every flat index up to ``lmax`` (NumPy arrays).

    Examples
    --------
    >>> degree_order(1)
    (array([0, 1, 1, 1]), array([ 0, -1,  0,  1]))
    """
    lmax = check_integer(lmax, "lmax", minimum=0, maximum=LMAX_LIMIT)
    l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    m = np.arange((lmax + 1) ** 2) - l * l - l
    return l, m


def lmax_from_size(size: int, name: str = "x") -> int:
    """``L`` such that ``size == (L + 1)**2``; a clear error otherwise."""
    root = math.isqrt(int(size))
    if root * root != size or size == 0:
        raise ValueError(
            f"the last axis of {name} holds spherical-harmonic coefficients and must have length "
            f"(L+1)^2 (1, 4, 9, 16, ...); got {size}"
        )
    return root - 1


def coefficient_array(x: Any, name: str, basis: str, *, ctx: Any = None,
                      check_finite: bool = True):
    """``(array, L)``: coefficient vectors on a last axis of (L+1)^2, real (float32/float64)
    for ``basis="real"``, complex for ``"complex"``, checked (finite, not a scalar)."""
    if basis == "real":
        a = as_float_array(x, name, ctx=ctx, check_finite=check_finite)
    else:
        a = as_complex_array(x, name, ctx=ctx, check_finite=check_finite)
    if a.ndim == 0:
        raise ValueError(f"{name} must have a last axis of (L+1)^2 coefficients; got a scalar")
    return a, lmax_from_size(a.shape[-1], name)


def _check_lmax(lmax: Any, name: str = "lmax") -> int:
    return check_integer(lmax, name, minimum=0, maximum=LMAX_LIMIT)


def _legendre_rows(lmax: int, cos, sin):
    """Yield (l, m, P̄_l^m) for 0 <= m <= l <= lmax: orthonormal associated Legendre functions.

    ``Y_l^m = P̄_l^m(θ) e^{imφ}`` with the Condon-Shortley phase. ``sin`` may be negative (the
    torus extension of the double Fourier sphere): the recursion then continues the functions
    analytically. The recursion (m fixed, upwards in l) is the standard stable one:
    P̄_m^m = -sqrt((2m+1)/(2m)) sin θ P̄_{m-1}^{m-1},
    P̄_l^m = a_lm (cos θ P̄_{l-1}^m - P̄_{l-2}^m / a_{l-1,m}), a_lm = sqrt((4l²-1)/(l²-m²)).
    """
    pmm = cos * 0.0 + 1.0 / math.sqrt(4.0 * math.pi)
    for m in range(lmax + 1):
        if m > 0:
            pmm = -math.sqrt((2.0 * m + 1.0) / (2.0 * m)) * sin * pmm
        yield m, m, pmm
        if m == lmax:
            break
        prev2 = pmm
        prev1 = math.sqrt(2.0 * m + 3.0) * cos * pmm
        yield m + 1, m, prev1
        a_prev = math.sqrt(2.0 * m + 3.0)
        for l in range(m + 2, lmax + 1):
            a = math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
            cur = a * (cos * prev1 - prev2 / a_prev)
            yield l, m, cur
            prev2, prev1, a_prev = prev1, cur, a


def _legendre(lmax: int, cos, sin, xp) -> Any:
    """P̄_l^m for m >= 0 at the flat index of (l, m), coefficient axis first; zero at m < 0."""
    out = xp.zeros(((lmax + 1) ** 2,) + cos.shape, dtype=cos.dtype)
    for l, m, row in _legendre_rows(lmax, cos, sin):
        out[l * l + l + m] = row
    return out


def _harmonics_first(lmax, cos, sin, phi, basis, xp):
    """Harmonics with the coefficient axis first: shape ((lmax+1)**2, ...)."""
    cdtype = xp.complex64 if cos.dtype == xp.float32 else xp.complex128
    out = xp.empty(((lmax + 1) ** 2,) + cos.shape, dtype=cos.dtype if basis == "real" else cdtype)
    root2 = math.sqrt(2.0)
    factor = None
    for l, m, row in _legendre_rows(lmax, cos, sin):
        if l == m:
            # The phi factors of order m, computed once per order.
            if basis == "real":
                factor = (root2 * xp.cos(m * phi), root2 * xp.sin(m * phi))
            else:
                e = xp.exp(1j * m * phi).astype(cdtype)
                factor = (e, ((-1) ** m) * xp.conj(e))  # Y_l^{-m} = (-1)^m conj(Y_l^m)
        base = l * l + l
        if m == 0:
            out[base] = row
        else:
            out[base + m] = row * factor[0]
            out[base - m] = row * factor[1]
    return out


def _harmonics_from_angles(lmax, cos, sin, phi, basis, xp):
    out = _harmonics_first(lmax, cos, sin, phi, basis, xp)
    return xp.ascontiguousarray(xp.moveaxis(out, 0, -1))


def _check_basis(basis: Any) -> str:
    if basis not in ("real", "complex"):
        raise ValueError(f"basis must be 'real' or 'complex'; got {basis!r}")
    return basis


def _direction_angles(v, xp):
    """cos θ, sin θ and φ of the directions of nonzero vectors ``v`` (..., 3).

    Each vector is divided by its largest absolute component first, so the sums of squares
    neither overflow (float32 beyond ~1e19, float64 beyond ~1e154) nor underflow to zero
    (float32 below ~1e-23, float64 below ~1e-162); only an exactly zero vector is refused.
    """
    scale = xp.max(xp.abs(v), axis=-1, keepdims=True)
    if v.size and bool((scale == 0).any()):
        raise ValueError("vectors must be nonzero (a direction is needed)")
    u = v / scale
    r = xp.sqrt(xp.sum(u * u, axis=-1))
    rho = xp.sqrt(u[..., 0] ** 2 + u[..., 1] ** 2)
    return u[..., 2] / r, rho / r, xp.arctan2(u[..., 1], u[..., 0])


def spherical_harmonics(
    lmax: int,
    vectors: Any = None,
    *,
    theta: Any = None,
    phi: Any = None,
    basis: str = "real",
    normalization: str = "orthonormal",
    dtype: Any = None,
) -> Array:
    r"""Spherical harmonics of every degree up to ``lmax`` at points of the sphere.

    Parameters
    ----------
    lmax : int
        Highest degree (>= 0).
    vectors : array_like, shape (..., 3), optional
        Nonzero vectors (normalised here); their directions are the points.
    theta, phi : array_like, optional
        Polar and azimuthal angles instead of ``vectors`` (broadcast together).
    basis : {"real", "complex"}
        Real harmonics :math:`Z_l^m` (sympy's ``real_gaunt`` convention) or complex
        :math:`Y_l^m` (Condon-Shortley phase, as ``scipy.special.sph_harm_y``).
    normalization : {"orthonormal", "component"}
        Orthonormal on the sphere (default), or scaled so that each degree has
        :math:`\sum_m |Y_l^m|^2 = 2l+1` (e3nn's "component").
    dtype : {None, float32, float64}
        Precision (default: that of the input, float64 for integers).

    Returns
    -------
    array, shape (..., (lmax+1)**2)
        Real (or complex) values at flat index :math:`l^2 + l + m`.

    Raises
    ------
    ValueError
        Negative or huge ``lmax``, a zero vector, NaN/inf, both or neither of ``vectors`` and
        angles, the last axis of ``vectors`` not 3.

    Notes
    -----
    :math:`Y_l^m(\theta,\varphi) = \bar P_l^m(\cos\theta)\,e^{im\varphi}` with the orthonormal
    associated Legendre functions computed by the stable recursion upward in :math:`l`
    (accurate to degrees in the thousands). Real harmonics:
    :math:`Z_l^m = \sqrt2\,\mathrm{Re}\,Y_l^{|m|}` (m > 0),
    :math:`\sqrt2\,\mathrm{Im}\,Y_l^{|m|}` (m < 0), :math:`Y_l^0` (m = 0).

    Arrays of any library (the Backends page of the docs): NumPy arrays and lists follow the
    switch (NumPy/Numba, or CuPy under ``use_backend("cupy")``); CuPy arrays stay on their GPU;
    torch tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array
    path (``sci/gaunt/_array.py``, written against the standard) and come back in their library,
    on their device. Through torch the result is differentiable: autograd differentiates the
    array path (no custom backward); the backward keeps the recursion's rows, O(points x
    (L+1)^2) numbers.

    Examples
    --------
    >>> import numpy as np
    >>> y = spherical_harmonics(1, [0.0, 0.0, 1.0])
    >>> np.round(y * np.sqrt(4 * np.pi), 6) + 0.0
    array([1.      , 0.      , 1.732051, 0.      ])
    """
    ctx = array_context(vectors, theta, phi, names=("vectors", "theta", "phi"))
    run = implementation("gaunt.spherical_harmonics", ctx.backend)
    return run(lmax, vectors, theta=theta, phi=phi, basis=basis, normalization=normalization,
               dtype=dtype, ctx=ctx)


def _spherical_harmonics_switch(
    lmax: int,
    vectors: Any = None,
    *,
    theta: Any = None,
    phi: Any = None,
    basis: str = "real",
    normalization: str = "orthonormal",
    dtype: Any = None,
    ctx: Any = None,
) -> Any:
    """spherical_harmonics on NumPy (the numpy/numba kernels) and CuPy: the measured paths."""
    lmax = _check_lmax(lmax)
    basis = _check_basis(basis)
    if normalization not in ("orthonormal", "component"):
        raise ValueError(
            f"normalization must be 'orthonormal' or 'component'; got {normalization!r}"
        )
    xp = array_namespace()
    if (vectors is None) == (theta is None and phi is None):
        raise ValueError("give either vectors or both theta= and phi=")
    if vectors is not None:
        v = as_float_array(vectors, "vectors", dtype=dtype)
        if v.ndim == 0 or v.shape[-1] != 3:
            raise ValueError(f"vectors must have shape (..., 3); got {tuple(v.shape)}")
        cos, sin, ph = _direction_angles(v, xp)
    else:
        if theta is None or phi is None:
            raise ValueError("theta= and phi= must be given together")
        th = as_float_array(theta, "theta", dtype=dtype)
        ph = as_float_array(phi, "phi", dtype=dtype)
        th, ph = xp.broadcast_arrays(th, ph)
        cos, sin = xp.cos(th), xp.sin(th)
    check_memory(
        cos.size * (lmax + 1) ** 2 * cos.dtype.itemsize * 3, "spherical harmonics table"
    )
    out = _harmonics_from_angles(lmax, cos, sin, ph, basis, xp)
    if normalization == "component":
        out = out * math.sqrt(4 * math.pi)
    return out


register("gaunt.spherical_harmonics", "numpy", _spherical_harmonics_switch)
register("gaunt.spherical_harmonics", "cupy", _spherical_harmonics_switch)
register("gaunt.spherical_harmonics", "array", "sci.gaunt._array:spherical_harmonics_entry")


def real_to_complex(x: Any) -> Array:
    r"""Complex-basis coefficients of the function with real-basis coefficients ``x``.

    :math:`f = \sum a_{lm} Z_l^m = \sum c_{lm} Y_l^m` with :math:`c = U^T a`.

    Examples
    --------
    >>> import numpy as np
    >>> c = real_to_complex([0.0, 1.0, 0.0, 0.0])
    >>> np.round(c * np.sqrt(2), 6)
    array([0.+0.j, 0.-1.j, 0.+0.j, 0.-1.j])
    """
    ctx = array_context(x, names=("x",))
    return implementation("gaunt.real_to_complex", ctx.backend)(x, ctx=ctx)


def _real_to_complex_switch(x: Any, ctx: Any = None) -> Any:
    """real_to_complex for NumPy (``"numpy"``/``"numba"`` kernels) and CuPy: the measured paths."""
    xp = array_namespace()
    a = as_float_array(x, "x")
    lmax = lmax_from_size(a.shape[-1])
    l, m = degree_order(lmax)
    cdtype = xp.complex64 if a.dtype == xp.float32 else xp.complex128
    s2 = 1.0 / math.sqrt(2.0)
    idx = l * l + l
    mirror = idx - m
    sign = np.where(m % 2 == 0, 1.0, -1.0)
    # c_{l,m} (m > 0) = (a_m - i a_{-m}) / sqrt 2 ; c_{l,-m} = (-1)^m conj(c_{l,m}).
    pos = m > 0
    c = a.astype(cdtype)
    ap = a[..., np.flatnonzero(pos)]
    an = a[..., mirror[pos]]
    cp = (ap - 1j * an) * s2
    c[..., np.flatnonzero(pos)] = cp
    c[..., mirror[pos]] = xp.asarray(sign[pos]) * xp.conj(cp)
    return c


register("gaunt.real_to_complex", "numpy", _real_to_complex_switch)
register("gaunt.real_to_complex", "cupy", _real_to_complex_switch)
register("gaunt.real_to_complex", "array", "sci.gaunt._array:real_to_complex_entry")


def complex_to_real(c: Any) -> Array:
    r"""Real-basis coefficients of the real function with complex-basis coefficients ``c``.

    The inverse of :func:`real_to_complex` (``c`` must describe a real function,
    :math:`c_{l,-m} = (-1)^m \overline{c_{lm}}`; only the m >= 0 half is read).

    Examples
    --------
    >>> import numpy as np
    >>> complex_to_real(real_to_complex([1.0, 0.5, -2.0, 3.0]))
    array([ 1. ,  0.5, -2. ,  3. ])
    """
    ctx = array_context(c, names=("c",))
    return implementation("gaunt.complex_to_real", ctx.backend)(c, ctx=ctx)


def _complex_to_real_switch(c: Any, ctx: Any = None) -> Any:
    """complex_to_real for NumPy (``"numpy"``/``"numba"`` kernels) and CuPy: the measured paths."""
    xp = array_namespace()
    c = asarray(c, name="c")
    if c.dtype.kind not in "biufc":
        raise TypeError(f"c must be numeric; got dtype {c.dtype}")
    if c.dtype.kind != "c":
        c = c.astype(xp.complex128)
    if not bool(xp.isfinite(c).all()):
        raise ValueError("c must be finite; it contains NaN or infinity")
    lmax = lmax_from_size(c.shape[-1], "c")
    l, m = degree_order(lmax)
    rdtype = xp.float32 if c.dtype == xp.complex64 else xp.float64
    out = xp.real(c).astype(rdtype)
    pos = np.flatnonzero(m > 0)
    mirror = (l * l + l - m)[pos]
    cp = c[..., pos]
    out[..., pos] = math.sqrt(2.0) * xp.real(cp)
    out[..., mirror] = -math.sqrt(2.0) * xp.imag(cp)
    return out


# e3nn's real harmonics use the axes (y, z, x) (its polar axis is y) and no Condon-Shortley
# phase. On each degree its orthonormal basis is therefore ours rotated by a fixed signed
# permutation: Y_e3nn(r)^T = Z(r)^T D(R0) with D = wigner_D (checked against e3nn in the tests).


register("gaunt.complex_to_real", "numpy", _complex_to_real_switch)
register("gaunt.complex_to_real", "cupy", _complex_to_real_switch)
register("gaunt.complex_to_real", "array", "sci.gaunt._array:complex_to_real_entry")


_E3NN_ROTATION = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])


def to_e3nn(x: Any, *, normalization: str = "integral") -> Array:
    r"""Coefficients in e3nn's real basis (``o3.spherical_harmonics``) of the same function.

    Parameters
    ----------
    x : array_like, shape (..., (L+1)**2)
        Real-basis coefficients (this package's :math:`Z_l^m`).
    normalization : {"integral", "component"}
        Which e3nn normalisation the returned coefficients refer to: with ``"integral"`` the
        e3nn harmonics are orthonormal; with ``"component"`` (e3nn's default) they are
        :math:`\sqrt{4\pi}` times larger, so the coefficients are :math:`\sqrt{4\pi}` smaller.

    Notes
    -----
    e3nn evaluates real harmonics with the axes permuted to (y, z, x) and without the
    Condon-Shortley phase. On each degree its orthonormal basis is ours rotated by a fixed
    signed permutation :math:`R_0` (rows (0,-1,0), (0,0,1), (-1,0,0)):
    :math:`Y^{e3nn}_l(r) = D^l(R_0)^T Z_l(r)` with :math:`D` from :func:`wigner_D`, so the
    coefficients map by :math:`b_l = D^l(R_0)^T a_l` (orthogonal). The test suite checks this
    against e3nn itself where e3nn is installed.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(9.0)
    >>> np.allclose(from_e3nn(to_e3nn(x)), x)
    True
    """
    return _e3nn_map(x, normalization, inverse=False)


def from_e3nn(x: Any, *, normalization: str = "integral") -> Array:
    """Coefficients in this package's real basis of a function given in e3nn's basis.

    The inverse of :func:`to_e3nn` (same ``normalization`` meaning).

    Examples
    --------
    >>> import numpy as np
    >>> np.round(from_e3nn([1.0, 0.0, 0.0, 1.0]), 12) + 0.0
    array([1., 0., 1., 0.])
    """
    return _e3nn_map(x, normalization, inverse=True)


def _e3nn_map(x, normalization, inverse):
    if normalization not in ("integral", "component"):
        raise ValueError(f"normalization must be 'integral' or 'component'; got {normalization!r}")
    ctx = array_context(x, names=("x",))
    return implementation("gaunt.e3nn_map", ctx.backend)(x, normalization, inverse, ctx)


def _e3nn_map_switch(x, normalization, inverse, ctx):
    xp = array_namespace()
    a = as_float_array(x, "x")
    lmax = lmax_from_size(a.shape[-1])
    from ._rotation import wigner_D

    scale = math.sqrt(4 * math.pi) if normalization == "component" else 1.0
    out = xp.empty_like(a)
    for l in range(lmax + 1):
        d = xp.asarray(wigner_D(l, _E3NN_ROTATION, basis="real")).astype(a.dtype)
        sl = slice(l * l, (l + 1) ** 2)
        if inverse:
            out[..., sl] = (a[..., sl] * scale) @ d.T
        else:
            out[..., sl] = (a[..., sl] @ d) / scale
    return out


register("gaunt.e3nn_map", "numpy", _e3nn_map_switch)
register("gaunt.e3nn_map", "cupy", _e3nn_map_switch)
register("gaunt.e3nn_map", "array", "sci.gaunt._array:e3nn_map_entry")

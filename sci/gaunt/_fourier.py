"""Spherical harmonics <-> 2D Fourier series on the torus (the double Fourier sphere)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import scipy.fft

from .._validation import as_complex_array, check_integer, check_memory
from ..backend import (
    array_context,
    array_namespace,
    cached_constant,
    implementation,
    register,
    switch_context,
)
from ._harmonics import LMAX_LIMIT, _check_basis, _legendre, coefficient_array

__all__ = [
    "fourier_to_sh",
    "legendre_fourier_coefficients",
    "sh_to_fourier",
]


@functools.lru_cache(maxsize=16)
def legendre_fourier_coefficients(lmax: int) -> np.ndarray:
    r"""Fourier coefficients :math:`y^{lm}_u` of the torus-extended harmonics, m >= 0.

    :math:`Y_l^m(\theta,\varphi) = \sum_{u=-l}^{l} y^{lm}_u e^{i(u\theta + m\varphi)}` on the
    double Fourier sphere (θ ∈ (π, 2π) is the point (2π − θ, φ + π)).

    Returns
    -------
    numpy.ndarray, shape (lmax+1, lmax+1, 2 lmax+1), complex
        ``p[m, l, u + lmax]``; zero for :math:`l < m`, :math:`|u| > l` and
        :math:`u \not\equiv l \pmod 2` (set exactly).

    Notes
    -----
    The extended :math:`\bar P_l^m(\theta)` is a trigonometric polynomial of degree l, so its
    samples at N >= 2l+1 equispaced θ give the coefficients exactly by an FFT; the samples come
    from the stable Legendre recursion run with the signed sin θ. This equals the closed form
    :math:`y^{lm}_u = \sqrt{(2l+1)/4\pi}\, i^{-m} \Delta^l_{um}\Delta^l_{u0}` of the paper
    (checked in the tests against exact Wigner d-matrices at π/2). :math:`y^{lm}_u` is real for
    even m, imaginary for odd m, and :math:`y^{lm}_{-u} = (-1)^m y^{lm}_u`.

    Examples
    --------
    >>> import numpy as np
    >>> p = legendre_fourier_coefficients(1)
    >>> np.round(p[0, 1] * np.sqrt(4 * np.pi / 3), 12)  # cos θ = (e^{iθ} + e^{-iθ}) / 2
    array([0.5+0.j, 0. +0.j, 0.5+0.j])
    """
    lmax = check_integer(lmax, "lmax", minimum=0, maximum=LMAX_LIMIT)
    n = 2 * lmax + 2
    theta = 2 * np.pi * np.arange(n) / n
    leg = _legendre(lmax, np.cos(theta), np.sin(theta), np)  # ((lmax+1)^2, n)
    coef = np.fft.fft(leg, axis=-1) / n  # coefficient of e^{iuθ} at column u mod n
    u = np.arange(-lmax, lmax + 1)
    p = np.zeros((lmax + 1, lmax + 1, 2 * lmax + 1), dtype=np.complex128)
    for m in range(lmax + 1):
        ls = np.arange(m, lmax + 1)
        block = coef[np.ix_(ls * ls + ls + m, u % n)]  # (l, u)
        keep = (np.abs(u)[None, :] <= ls[:, None]) & ((u[None, :] - ls[:, None]) % 2 == 0)
        block = np.where(keep, block, 0)
        # Even m: real coefficients; odd m: imaginary (cos / sin series).
        block = block.real + 0j if m % 2 == 0 else 1j * block.imag
        p[m, m:, :] = block
    p.flags.writeable = False
    return p


def _theta_integrals(k: np.ndarray) -> np.ndarray:
    r""":math:`I(k) = \int_0^\pi e^{ik\theta}\sin\theta\,d\theta`."""
    k = np.asarray(k)
    out = np.zeros(k.shape, dtype=np.complex128)
    even = k % 2 == 0
    out[even] = 2.0 / (1.0 - k[even].astype(np.float64) ** 2)
    out[k == 1] = 1j * np.pi / 2
    out[k == -1] = -1j * np.pi / 2
    return out


def _integral_transform(x: np.ndarray, degree: int, sign: int) -> np.ndarray:
    r"""out[..., u + degree] = Σ_v I(u + sign·v) x[..., v + L] for |u| <= degree (x: (..., 2L+1)).

    A Hankel (sign = +1) or Toeplitz (sign = -1) product with :math:`I(k)`, done as one linear
    convolution by FFT: :math:`O(L \log L)` per row, not the :math:`O(L \cdot \text{degree})`
    of the dense matrix (which made the tables :math:`O(L^4)`).
    """
    lmax = (x.shape[-1] - 1) // 2
    if sign > 0:  # Σ_v I(u + v) x_v = Σ_w I(u - w) x_{-w}
        x = x[..., ::-1]
    half = degree + lmax
    kernel = _theta_integrals(np.arange(-half, half + 1))  # I(k) at index k + half
    n = _fast_length(2 * half + 1 + 2 * lmax)
    conv = scipy.fft.ifft(
        scipy.fft.fft(x, n, axis=-1) * scipy.fft.fft(kernel, n), axis=-1
    )  # index (k + half) + (w + lmax) holds the term of u = k + w
    return conv[..., 2 * lmax: 2 * lmax + 2 * degree + 1]


def _table_progress(lmax: int, what: str):
    """A progress bar over the orders for the large tables only (small ones take milliseconds)."""
    from .._progress import progress_bar

    return progress_bar(range(lmax + 1), progress=None if lmax >= _PROGRESS_LMAX else False,
                        desc=what, unit="order", leave=False)


_PROGRESS_LMAX = 96
"""Tables for lmax at least this show a progress bar on a terminal (builds take seconds)."""


@functools.lru_cache(maxsize=16)
def _projection_weights(lmax: int, k: int) -> np.ndarray:
    r"""W[m, u + k, l] with c_lm = sum_u F[u, m] W[m, u, l], m >= 0, l = 0..lmax.

    :math:`z^{lm}_{u} = 2\pi \sum_{u'} \overline{y^{lm}_{u'}} I(u - u')` for |u| <= k, by
    FFT convolution, order by order: :math:`O(L^2 k \log k)` in all.
    """
    check_memory((lmax + 1) ** 2 * (2 * k + 1) * 16, "the projection weights")
    p = legendre_fourier_coefficients(lmax)  # (m, l, u')
    w = np.zeros((lmax + 1, 2 * k + 1, lmax + 1), dtype=np.complex128)
    for m in _table_progress(lmax, "projection weights"):
        w[m, :, m:] = 2 * np.pi * _integral_transform(np.conj(p[m, m:]), k, -1).T
    w.flags.writeable = False
    return w


def _fast_length(n: int) -> int:
    """An FFT length >= n that SciPy transforms fast (a product of small primes)."""
    return scipy.fft.next_fast_len(int(n))


def _switch_constant(key: tuple, build, dtype):
    """A host table as an array of the switch's library and ``dtype``, converted once per
    (library, device, dtype) and cached (CuPy: uploaded once, not per call or chunk)."""
    return cached_constant(("gaunt.switch",) + key, build, switch_context(), dtype)


def _half_spectrum_real(a, lmax, xp):
    """F[..., u + lmax, m] for m >= 0 of the real function with real-basis coefficients a."""
    batch = a.shape[:-1]
    out = implementation("gaunt.half_spectrum_real")(
        a.reshape((-1, a.shape[-1])), lmax, legendre_fourier_coefficients(lmax))
    return out.reshape(batch + out.shape[-2:])


def _half_spectrum_real_array(a, lmax, p_host):
    """Array-code version: batched matrix products over the orders (dense in l)."""
    xp = array_namespace()
    p = xp.asarray(p_host)  # (m, l, u)
    cdtype = xp.complex64 if a.dtype == xp.float32 else xp.complex128
    idx, mirror, valid, scale = _half_gather(lmax)
    negscale = np.where(np.arange(lmax + 1)[:, None] > 0, scale, 0.0)
    # c_{l m} = (a_{l m} - i a_{l,-m}) / sqrt 2 (m > 0), a_{l 0} (m = 0), zero for l < m.
    pos = a[..., idx]
    neg = a[..., mirror]
    c = pos * xp.asarray(scale) - 1j * neg * xp.asarray(negscale)
    c = xp.where(xp.asarray(valid), c, 0).astype(cdtype)  # (..., m, l)
    batch = c.shape[:-2]
    c2 = xp.ascontiguousarray(xp.moveaxis(c.reshape((-1,) + c.shape[-2:]), 1, 0))  # (m, B, l)
    out = c2 @ p.astype(cdtype)  # (m, B, u)
    out = xp.moveaxis(out, 0, -1)  # (B, u, m)
    return out.reshape(batch + out.shape[-2:])


register("gaunt.half_spectrum_real", "array", _half_spectrum_real_array)
register("gaunt.half_spectrum_real", "numba", "sci.gaunt._cpu:half_spectrum_real")


@functools.lru_cache(maxsize=32)
def _half_gather(lmax: int):
    m = np.arange(lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]
    valid = l >= m
    lc = np.maximum(l, m)
    idx = lc * lc + lc + m
    mirror = lc * lc + lc - m
    scale = np.where(m > 0, 1 / math.sqrt(2), 1.0) * np.ones_like(l)
    # m = 0 has no separate negative order: the mirror gather reads the same entry.
    mirror = np.where(m > 0, mirror, idx)
    return idx, mirror, valid, scale


def _full_spectrum_complex(c, lmax, xp):
    """F[..., u + lmax, v + lmax] of the function with complex-basis coefficients c."""
    p = _switch_constant(("legendre_fourier", lmax), lambda: legendre_fourier_coefficients(lmax),
                         c.dtype)  # (m, l, u)
    idx, mirror, valid, _ = _half_gather(lmax)
    vmask = xp.asarray(valid)
    batch = c.shape[:-1]
    cpos = xp.where(vmask, c[..., idx], 0).reshape((-1, lmax + 1, lmax + 1))
    mneg = np.arange(lmax + 1)
    sign = xp.asarray(np.where(mneg % 2 == 0, 1.0, -1.0)[:, None, None]).astype(c.dtype)
    cneg = xp.where(vmask, c[..., mirror], 0).reshape((-1, lmax + 1, lmax + 1))
    fpos = xp.moveaxis(cpos, 1, 0) @ p  # (m, B, u)
    fneg = xp.moveaxis(cneg, 1, 0) @ (sign * p)  # y^{l,-m} = (-1)^m y^{lm}
    n = 2 * lmax + 1
    out = xp.zeros((cpos.shape[0], n, n), dtype=c.dtype)
    out[..., lmax:] = xp.moveaxis(fpos, 0, -1)
    out[..., lmax::-1] = xp.moveaxis(fneg, 0, -1)  # column lmax - m; m = 0 written twice
    return out.reshape(batch + (n, n))


def sh_to_fourier(x: Any, *, basis: str = "real") -> Any:
    r"""2D Fourier coefficients on the torus of the function with harmonic coefficients ``x``.

    Parameters
    ----------
    x : array_like, shape (..., (L+1)**2)
        Coefficients: real array for ``basis="real"``; real or complex for ``"complex"``.
    basis : {"real", "complex"}

    Returns
    -------
    array, shape (..., 2L+1, 2L+1), complex
        ``F[..., u + L, v + L]`` with :math:`f(\theta,\varphi) = \sum_{u,v} F_{uv}
        e^{i(u\theta+v\varphi)}` on the double Fourier sphere.

    Notes
    -----
    :math:`F_{u v} = \sum_{l \ge |v|} c_{lv}\, y^{lv}_u` with the sparse coefficients of
    :func:`legendre_fourier_coefficients` (only :math:`u \equiv l \pmod 2`, :math:`|u| \le l`):
    :math:`O(L^3)` per function, as batched matrix products over the orders.

    Arrays of any library (the Backends page of the docs): NumPy arrays and lists follow the
    switch (NumPy/Numba, or CuPy under ``use_backend("cupy")``); CuPy arrays stay on their GPU;
    torch tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array
    path (``sci/gaunt/_array.py``, written against the standard) and come back in their library,
    on their device. Through torch the result is differentiable: autograd differentiates the
    array path (no custom backward); the backward keeps the gathered coefficients, O(rows x
    (2L+1)(L+1)) complex numbers.

    Examples
    --------
    >>> import numpy as np
    >>> F = sh_to_fourier([1.0])            # the constant Y_0^0 = 1/sqrt(4 pi)
    >>> np.round(F.real * np.sqrt(4 * np.pi), 12)
    array([[1.]])
    """
    ctx = array_context(x, names=("x",))
    return implementation("gaunt.sh_to_fourier", ctx.backend)(x, basis=basis, ctx=ctx)


def _sh_to_fourier_switch(x: Any, *, basis: str = "real", ctx: Any = None) -> Any:
    """sh_to_fourier on NumPy (the numpy/numba kernels) and CuPy: the measured paths."""
    basis = _check_basis(basis)
    xp = array_namespace()
    if basis == "real":
        a, lmax = coefficient_array(x, "x", "real")
        half = _half_spectrum_real(a, lmax, xp)  # (..., u, m >= 0)
        n = 2 * lmax + 1
        out = xp.zeros(half.shape[:-1] + (n,), dtype=half.dtype)
        out[..., lmax:] = half
        # Real function: F[-u, -v] = conj F[u, v].
        out[..., :lmax] = xp.conj(half[..., ::-1, :0:-1])
        return out
    c, lmax = coefficient_array(x, "x", "complex")
    return _full_spectrum_complex(c, lmax, xp)


register("gaunt.sh_to_fourier", "numpy", _sh_to_fourier_switch)
register("gaunt.sh_to_fourier", "cupy", _sh_to_fourier_switch)
register("gaunt.sh_to_fourier", "array", "sci.gaunt._array:sh_to_fourier_entry")


def _project(h_half, lmax, k, xp):
    """c_{lm} (m >= 0) from the Fourier coefficients H[..., u + k, m]: shape (..., m, l)."""
    w = _switch_constant(("projection", lmax, k), lambda: _projection_weights(lmax, k),
                         h_half.dtype)  # (m, u, l)
    batch = h_half.shape[:-2]
    h = h_half.reshape((-1,) + h_half.shape[-2:])  # (B, u, m)
    out = xp.moveaxis(h, -1, 0) @ w  # (m, B, l)
    out = xp.moveaxis(out, 0, 1)  # (B, m, l)
    return out.reshape(batch + out.shape[-2:])


def _half_to_real(cm, lmax, xp, dtype):
    """Real-basis coefficients from the complex ones c[..., m, l] (m >= 0) of a real function."""
    l_idx, m_idx = np.nonzero(np.arange(lmax + 1)[:, None] >= np.arange(lmax + 1)[None, :])
    vals = cm[..., m_idx, l_idx]
    out = xp.empty(cm.shape[:-2] + ((lmax + 1) ** 2,), dtype=dtype)
    base = l_idx * l_idx + l_idx
    zero = m_idx == 0
    out[..., base[zero]] = xp.real(vals[..., np.flatnonzero(zero)])
    pos = np.flatnonzero(~zero)
    out[..., (base + m_idx)[pos]] = math.sqrt(2.0) * xp.real(vals[..., pos])
    out[..., (base - m_idx)[pos]] = -math.sqrt(2.0) * xp.imag(vals[..., pos])
    return out


def _half_to_complex(cpos, cneg, lmax, xp):
    """Complex-basis coefficients from c[..., m, l] for m >= 0 and for -m."""
    l_idx, m_idx = np.nonzero(np.arange(lmax + 1)[:, None] >= np.arange(lmax + 1)[None, :])
    out = xp.empty(cpos.shape[:-2] + ((lmax + 1) ** 2,), dtype=cpos.dtype)
    base = l_idx * l_idx + l_idx
    out[..., base - m_idx] = cneg[..., m_idx, l_idx]
    out[..., base + m_idx] = cpos[..., m_idx, l_idx]
    return out


def fourier_to_sh(F: Any, lmax: int, *, basis: str = "real") -> Any:
    r"""Spherical-harmonic coefficients up to ``lmax`` of a function given on the torus.

    Parameters
    ----------
    F : array_like, shape (..., 2K+1, 2K+1), complex
        Fourier coefficients ``F[..., u + K, v + K]`` (as from :func:`sh_to_fourier`).
    lmax : int
        Highest output degree.
    basis : {"real", "complex"}
        With ``"real"`` the function is taken to be real (only v >= 0 is read) and real
        coefficients are returned.

    Returns
    -------
    array, shape (..., (lmax+1)**2)

    Notes
    -----
    :math:`c_{lm} = \int_{S^2} f\,\overline{Y_l^m}\,d\Omega = \sum_u F_{um} z^{lm}_u`,
    :math:`z^{lm}_u = 2\pi \sum_{u'} \overline{y^{lm}_{u'}}\, I(u-u')`,
    :math:`I(k) = \int_0^\pi e^{ik\theta}\sin\theta\,d\theta` = :math:`2/(1-k^2)` (k even),
    :math:`\pm i\pi/2` (k = ±1), 0 otherwise.

    Arrays of any library (the Backends page of the docs): NumPy arrays and lists follow the
    switch (NumPy/Numba, or CuPy under ``use_backend("cupy")``); CuPy arrays stay on their GPU;
    torch tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array
    path (``sci/gaunt/_array.py``, written against the standard) and come back in their library,
    on their device. Through torch the result is differentiable: autograd differentiates the
    array path (no custom backward); the backward keeps the reordered spectrum, O(rows x
    (2L+1)(2K+1)) complex numbers.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.5, -1.0, 2.0, 0.25])
    >>> np.allclose(fourier_to_sh(sh_to_fourier(x), 1), x)
    True
    """
    ctx = array_context(F, names=("F",))
    return implementation("gaunt.fourier_to_sh", ctx.backend)(F, lmax, basis=basis, ctx=ctx)


def _fourier_to_sh_switch(F: Any, lmax: int, *, basis: str = "real", ctx: Any = None):
    """fourier_to_sh on NumPy (the numpy/numba kernels) and CuPy: the measured paths."""
    basis = _check_basis(basis)
    lmax = check_integer(lmax, "lmax", minimum=0, maximum=LMAX_LIMIT)
    xp = array_namespace()
    f = as_complex_array(F, "F")
    if f.ndim < 2 or f.shape[-1] != f.shape[-2] or f.shape[-1] % 2 == 0:
        raise ValueError(
            f"F must have shape (..., 2K+1, 2K+1) (odd, square); got {tuple(f.shape)}"
        )
    k = (f.shape[-1] - 1) // 2
    mcount = min(lmax, k) + 1
    pad = lmax + 1 - mcount

    def columns(sign):
        cols = f[..., k + sign * np.arange(mcount)]
        if pad:
            cols = xp.concatenate([cols, xp.zeros(cols.shape[:-1] + (pad,), cols.dtype)], -1)
        return cols

    cpos = _project(columns(1), lmax, k, xp)
    if basis == "real":
        rdtype = xp.float32 if f.dtype == xp.complex64 else xp.float64
        return _half_to_real(cpos, lmax, xp, rdtype)
    # Negative orders: Y_l^{-m} has coefficients (-1)^m y^{lm}, so z^{l,-m} = (-1)^m z^{lm}.
    sign = xp.asarray(np.where(np.arange(lmax + 1) % 2 == 0, 1.0, -1.0)[:, None])
    cneg = _project(columns(-1), lmax, k, xp) * sign.astype(f.dtype)
    return _half_to_complex(cpos, cneg, lmax, xp)


# ----------------------------------------------------------------------------- torus grids
#
# The product pipeline composes the θ-direction DFT with the sparse conversions: the forward
# conversion followed by the inverse DFT in θ is one precomputed real matrix per order m (the
# torus-extended Legendre functions at the grid's θ nodes), and the DFT in θ followed by the
# backward conversion is another (``_torus_analysis``). Both are linear maps of the same
# O(L^3) size as the conversions, so the cost order is unchanged while the per-transform
# overhead of many short FFTs in θ disappears. The φ direction is a real FFT (or, for short
# lengths, the same DFT as a matrix product).


register("gaunt.fourier_to_sh", "numpy", _fourier_to_sh_switch)
register("gaunt.fourier_to_sh", "cupy", _fourier_to_sh_switch)
register("gaunt.fourier_to_sh", "array", "sci.gaunt._array:fourier_to_sh_entry")


_DFT_MAX = 96
"""Up to this many points in φ the DFT runs as a matrix product (faster than short FFTs)."""


@functools.lru_cache(maxsize=32)
def _torus_synthesis(lmax: int, n_theta: int, dtype: str = "float64") -> np.ndarray:
    """Pt[m, l, j] = c_m P̄_l^m(θ_j) at the torus nodes θ_j = 2πj/n (c_0 = 1, c_m = √2).

    Cached per (lmax, n_theta, dtype); refused up front if over the memory limit.
    """
    if dtype != "float64":
        return _as_readonly(_torus_synthesis(lmax, n_theta).astype(dtype))
    check_memory(synthesis_table_bytes(lmax, n_theta),
                 f"the Fourier method's synthesis table for lmax={lmax} ({n_theta} θ nodes)",
                 hint="lower the degrees (the table grows like lmax^2 x degree)")
    theta = 2 * np.pi * np.arange(n_theta) / n_theta
    leg = _legendre(lmax, np.cos(theta), np.sin(theta), np)  # ((lmax+1)^2, n)
    m = np.arange(lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]
    lc = np.maximum(l, m)
    pt = np.where((l >= m)[..., None], leg[lc * lc + lc + m], 0.0)
    pt[1:] *= math.sqrt(2.0)
    return _as_readonly(pt)


def synthesis_table_bytes(lmax: int, n_theta: int) -> int:
    """Bytes of the synthesis table (float64, its float32 copy) and of the Legendre samples."""
    return (lmax + 1) ** 2 * n_theta * (8 + 8 + 4)


def torus_table_bytes(lmax: int, n_theta: int, degree: int) -> int:
    """Bytes of the analysis table Q (float64) plus its float32 copy and the build's scratch."""
    table = (lmax + 1) * n_theta * (lmax + 1) * 8
    scratch = (lmax + 1) * (_fast_length(2 * degree + 4 * lmax + 1) + n_theta) * 16 * 3
    return table * 3 // 2 + scratch


@functools.lru_cache(maxsize=32)
def _torus_analysis(lmax: int, n_theta: int, degree: int, dtype: str = "float64") -> np.ndarray:
    """Q[m, j, l]: real coefficients from the θ samples of the order-m parts of a real function.

    For h = Σ_m Hc_m(θ) cos mφ + Hs_m(θ) sin mφ with Hc, Hs trigonometric polynomials of degree
    ``degree`` in θ sampled at n_theta >= 2 degree + 1 torus nodes:
    a_{l,m} = Σ_j Hc_m(θ_j) Q[m, j, l] and a_{l,-m} = Σ_j Hs_m(θ_j) Q[m, j, l], from
    ∫_0^π e^{ikθ} sin θ dθ = I(k) applied to the interpolating trigonometric polynomial.

    Built order by order with two FFTs per order (the convolution with I, then the DFT in θ):
    O(L^2 (degree + n_theta) log L) time, O(L^2 n_theta) memory (the table itself), refused up
    front if over the memory limit. Cached per (lmax, n_theta, degree, dtype): float32 callers
    reuse one float32 copy instead of converting the table on every call.
    """
    if dtype != "float64":
        return _as_readonly(_torus_analysis(lmax, n_theta, degree).astype(dtype))
    check_memory(
        torus_table_bytes(lmax, n_theta, degree),
        f"the Fourier method's analysis table for lmax={lmax} ({n_theta} θ nodes, "
        f"product degree {degree})",
        hint="lower the degrees (the table grows like lmax^2 x degree)",
    )
    p = legendre_fourier_coefficients(lmax)  # (m, l, u')
    u = np.arange(-degree, degree + 1)
    q = np.zeros((lmax + 1, n_theta, lmax + 1))
    for m in _table_progress(lmax, "Gaunt tables"):
        a = _integral_transform(p[m, m:], degree, +1)  # (l, u): Σ_v I(u + v) y^{lm}_v
        spread = np.zeros((lmax + 1 - m, n_theta), dtype=np.complex128)
        spread[:, u % n_theta] = a  # n_theta >= 2 degree + 1: no two u share a node
        # Σ_u a_u e^{-iuθ_j} / n_theta: the DFT in θ (one FFT per (m, l)).
        q[m, :, m:] = scipy.fft.fft(spread, axis=-1).real.T / n_theta
    scale = np.full(lmax + 1, math.pi * math.sqrt(2.0))
    scale[0] = 2 * math.pi
    q *= scale[:, None, None]
    return _as_readonly(q)


def fourier_tables_bytes(lmaxes, keep: int, degree: int, n_theta: int, basis: str) -> int:
    """Bytes of the tables the Fourier method builds for one product (checked before any work)."""
    if basis == "real":
        return (sum(synthesis_table_bytes(l, n_theta) for l in set(lmaxes))
                + torus_table_bytes(keep, n_theta, degree))
    # complex: legendre_fourier_coefficients per degree (and its Legendre samples), then W.
    return (sum((l + 1) ** 2 * (2 * l + 2) * 24 for l in set(lmaxes) | {keep})
            + (keep + 1) ** 2 * (2 * degree + 1) * 16)


def _as_readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=32)
def _phi_matrices(lmax: int, n_phi: int) -> tuple[np.ndarray, np.ndarray]:
    """E (2M, n): rows cos(mφ), sin(mφ) interleaved (row 2m + s); Eb (n, 2M): the way back."""
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    m = np.arange(lmax + 1)[:, None]
    e = np.stack([np.cos(m * phi), np.sin(m * phi)], 1).reshape(2 * (lmax + 1), n_phi)
    w = np.full((lmax + 1, 1, 1), 2.0 / n_phi)
    w[0] = 1.0 / n_phi
    eb = (e.reshape(lmax + 1, 2, n_phi) * w).reshape(2 * (lmax + 1), n_phi).T.copy()
    return e, eb


@functools.lru_cache(maxsize=32)
def _gather_pairs(lmax: int):
    """Flat indices of (l, m) and (l, -m) arranged as [m, l] (l < m points at a zero slot)."""
    m = np.arange(lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]
    lc = np.maximum(l, m)
    valid = l >= m
    zero = (lmax + 1) ** 2  # an appended zero column
    pos = np.where(valid, lc * lc + lc + m, zero)
    neg = np.where(valid & (m > 0), lc * lc + lc - m, zero)
    return pos, neg, valid


def _torus_grid_real(a, lmax, n_theta, n_phi, xp, fft):
    """Values on the n_theta x n_phi torus grid of real functions: shape (B, n_theta, n_phi)."""
    rows = a.shape[0]
    pt = _switch_constant(("torus_synthesis", lmax, n_theta),
                          lambda: _torus_synthesis(lmax, n_theta), a.dtype)  # (M, L, T)
    # One gather of the cosine parts (orders m) and sine parts (orders -m) of every row, from
    # an index table placed on the device once (not a host index uploaded per call).
    pairs = _switch_constant(("gather_pairs", lmax),
                             lambda: np.stack(_gather_pairs(lmax)[:2]), np.int64)  # (2, M, L)
    padded = xp.concatenate([a, xp.zeros((rows, 1), dtype=a.dtype)], axis=1)
    stacked = xp.take(padded, pairs.reshape(-1), axis=1)  # (B, 2 M L)
    # (M, 2B, L), contiguous: a strided batch makes matmul leave BLAS for a slow generic loop.
    stacked = xp.ascontiguousarray(xp.transpose(stacked.reshape(rows, 2, lmax + 1, lmax + 1),
                                                (2, 1, 0, 3)))
    rs = stacked.reshape(lmax + 1, 2 * rows, lmax + 1) @ pt  # (M, 2B, T)
    if n_phi <= _DFT_MAX:
        e = _switch_constant(("phi_e", lmax, n_phi), lambda: _phi_matrices(lmax, n_phi)[0],
                             a.dtype)
        coeffs = rs.reshape(2 * (lmax + 1), rows * n_theta)  # row 2m + s: no copy
        return (coeffs.T @ e).reshape(rows, n_theta, n_phi)
    rs = rs.reshape(lmax + 1, 2, rows * n_theta)
    spec = xp.zeros((rows * n_theta, n_phi // 2 + 1), dtype=xp.result_type(a.dtype, 1j))
    spec[:, : lmax + 1] = (rs[:, 0] - 1j * rs[:, 1]).T * (n_phi / 2)
    spec[:, 0] = rs[0, 0] * n_phi
    return fft.irfft(spec, n=n_phi, axis=-1).reshape(rows, n_theta, n_phi)


def _torus_coefficients_real(h, lmax, degree, xp, fft):
    """Real-basis coefficients up to lmax of real functions sampled on the torus grid."""
    rows, n_theta, n_phi = h.shape
    flat = h.reshape(rows * n_theta, n_phi)
    if n_phi <= _DFT_MAX:
        eb = _switch_constant(("phi_eb", lmax, n_phi), lambda: _phi_matrices(lmax, n_phi)[1],
                              h.dtype)
        hcs = flat @ eb  # (B*T, 2M), column 2m + s
    else:
        spec = fft.rfft(flat, axis=-1)[:, : lmax + 1] * (2.0 / n_phi)
        spec[:, 0] *= 0.5
        hcs = xp.stack([spec.real, -spec.imag], axis=-1).astype(h.dtype)
    # (M, 2B, T): per order, the cosine and sine parts as functions of θ (one transposing copy).
    both = hcs.reshape(rows, n_theta, lmax + 1, 2)
    both = xp.ascontiguousarray(xp.transpose(both, (2, 3, 0, 1))).reshape(
        lmax + 1, 2 * rows, n_theta)
    q = _switch_constant(("torus_analysis", lmax, n_theta, degree),
                         lambda: _torus_analysis(lmax, n_theta, degree), h.dtype)  # (M, T, L)
    out_ml = (both @ q).reshape(lmax + 1, 2, rows, lmax + 1)  # (M, cos/sin, B, L)
    # (B, M, cos/sin, L), then one gather of every coefficient (a device constant).
    flat = xp.ascontiguousarray(xp.transpose(out_ml, (2, 0, 1, 3))).reshape(rows, -1)
    source = _switch_constant(("coefficient_sources", lmax), lambda: _coefficient_sources(lmax),
                              np.int64)
    return xp.take(flat, source, axis=1)


@functools.lru_cache(maxsize=32)
def _coefficient_sources(lmax: int) -> np.ndarray:
    """For each flat (l, m): its position (|m|, s, l) in the (M, cos/sin, L) layout, s = 1
    (sine part) for m < 0."""
    l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    m = np.concatenate([np.arange(-k, k + 1) for k in range(lmax + 1)])
    return (np.abs(m) * 2 + (m < 0)) * (lmax + 1) + l

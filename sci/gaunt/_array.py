"""The array path of sci.gaunt: code written once against the array API standard.

It serves every library without kernels of its own (torch on CPU or CUDA, ``array_api_strict``,
...): the dispatch key ``"array"`` of :func:`sci.backend.array_context`. NumPy and CuPy keep
their measured paths (``_fourier.py``, ``_product.py``, the Numba and CUDA kernels).

Everything here is a composition of standard operations (``take``, ``matmul``, ``fft``,
elementwise arithmetic), so torch's autograd differentiates it as it stands: a torch tensor
that requires grad gives a result with a gradient, and the backward pass is autograd's (its
memory is that of the forward's intermediates, listed in each public docstring).

The constant tables (Legendre-Fourier coefficients, projection weights, gathers, quadrature
harmonics) are built on the host once and converted to the inputs' namespace, device and dtype
once (:func:`sci.backend.cached_constant`); no device value is read back inside a call except
the one reduction of the input checks.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..backend import ArrayContext, cached_constant
from ._fourier import _projection_weights, legendre_fourier_coefficients
from ._harmonics import _legendre_rows

# ----------------------------------------------------------------------------- helpers


def complex_dtype(xp: Any, real_dtype: Any) -> Any:
    return xp.complex64 if real_dtype == xp.float32 else xp.complex128


def real_dtype(xp: Any, dtype: Any) -> Any:
    return xp.float32 if dtype in (xp.float32, xp.complex64) else xp.float64


def _to_complex(xp: Any, a: Any) -> Any:
    if xp.isdtype(a.dtype, "complex floating"):
        return a
    return xp.astype(a, complex_dtype(xp, a.dtype))


def _constant(ctx: ArrayContext, key: tuple, build, dtype: Any) -> Any:
    return cached_constant(("gaunt.array",) + key, build, ctx, dtype)


def _take_last(xp: Any, a: Any, index: Any) -> Any:
    """a[..., index] for an index array of any shape (flattened gather, then reshaped)."""
    flat = xp.reshape(index, (-1,))
    out = xp.take(a, flat, axis=a.ndim - 1)
    return xp.reshape(out, tuple(a.shape[:-1]) + tuple(index.shape))


def _pad_zero(xp: Any, a: Any) -> Any:
    """``a`` with one zero appended on its last axis (the target of out-of-range gathers)."""
    zero = xp.zeros(tuple(a.shape[:-1]) + (1,), dtype=a.dtype, device=_device(a))
    return xp.concat([a, zero], axis=-1)


def _device(a: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(a)


# ------------------------------------------------------------- real <-> complex coefficients


@functools.lru_cache(maxsize=32)
def _real_to_complex_maps(lmax: int):
    """c = a[re_idx] * re_coef + i a[im_idx] * im_coef (c_{l,m} = (a_m - i a_{-m})/sqrt 2 for
    m > 0, c_{l,-m} = (-1)^m conj c_{l,m}, c_{l0} = a_{l0}): index and weight vectors."""
    l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    m = np.concatenate([np.arange(-k, k + 1) for k in range(lmax + 1)])
    base = l * l + l
    k = np.abs(m)
    s2 = 1.0 / math.sqrt(2.0)
    sign = np.where(k % 2 == 0, 1.0, -1.0)
    re_idx = base + k
    im_idx = base - k
    re_coef = np.where(m == 0, 1.0, np.where(m > 0, s2, sign * s2))
    im_coef = np.where(m == 0, 0.0, np.where(m > 0, -s2, sign * s2))
    return re_idx, im_idx, re_coef, im_coef


def real_to_complex(a: Any, lmax: int, ctx: ArrayContext) -> Any:
    xp = ctx.xp
    re_idx, im_idx, re_coef, im_coef = _real_to_complex_maps(lmax)
    rd = a.dtype
    ri = _constant(ctx, ("r2c_re_idx", lmax), lambda: re_idx, xp.int64)
    ii = _constant(ctx, ("r2c_im_idx", lmax), lambda: im_idx, xp.int64)
    rc = _constant(ctx, ("r2c_re_coef", lmax), lambda: re_coef, rd)
    ic = _constant(ctx, ("r2c_im_coef", lmax), lambda: im_coef, rd)
    re = _take_last(xp, a, ri) * rc
    im = _take_last(xp, a, ii) * ic
    return _to_complex(xp, re) + 1j * _to_complex(xp, im)


@functools.lru_cache(maxsize=32)
def _complex_to_real_maps(lmax: int):
    """From C[m >= 0, l] (flattened m * (L+1) + l): a_{l0} = Re c_{l0},
    a_{lm} = sqrt2 Re c_{lm}, a_{l,-m} = -sqrt2 Im c_{lm} (m > 0)."""
    l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    m = np.concatenate([np.arange(-k, k + 1) for k in range(lmax + 1)])
    k = np.abs(m)
    src = k * (lmax + 1) + l
    re_coef = np.where(m == 0, 1.0, np.where(m > 0, math.sqrt(2.0), 0.0))
    im_coef = np.where(m < 0, -math.sqrt(2.0), 0.0)
    return src, re_coef, im_coef


# ------------------------------------------------------------------------- Fourier basis


@functools.lru_cache(maxsize=16)
def _signed_legendre_fourier(lmax: int) -> np.ndarray:
    """P[v + L, l, u + L] = y^{l v}_u for signed orders v (y^{l,-m} = (-1)^m y^{lm})."""
    p = legendre_fourier_coefficients(lmax)  # (m, l, u)
    sign = np.where(np.arange(lmax + 1) % 2 == 0, 1.0, -1.0)[:, None, None]
    return np.concatenate([(sign * p)[:0:-1], p], axis=0)


@functools.lru_cache(maxsize=16)
def _signed_gather(lmax: int) -> np.ndarray:
    """idx[v + L, l]: the flat index of (l, v), or (L+1)^2 (a zero slot) where l < |v|."""
    v = np.arange(-lmax, lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]
    return np.where(l >= np.abs(v), l * l + l + v, (lmax + 1) ** 2)


def sh_to_fourier(a: Any, lmax: int, basis: str, ctx: ArrayContext) -> Any:
    """F[..., u + L, v + L] of coefficients ``a`` (real or complex basis): O(L^3)."""
    xp = ctx.xp
    c = real_to_complex(a, lmax, ctx) if basis == "real" else a
    cd = c.dtype
    idx = _constant(ctx, ("signed_gather", lmax), lambda: _signed_gather(lmax), xp.int64)
    p = _constant(ctx, ("signed_lf", lmax), lambda: _signed_legendre_fourier(lmax), cd)
    cv = _take_last(xp, _pad_zero(xp, c), idx)  # (..., v, l)
    f = xp.matmul(xp.expand_dims(cv, axis=-2), p)  # (..., v, 1, l) @ (v, l, u) -> (..., v, 1, u)
    f = f[..., 0, :]
    return xp.permute_dims(f, tuple(range(f.ndim - 2)) + (f.ndim - 1, f.ndim - 2))


@functools.lru_cache(maxsize=16)
def _signed_projection(lmax: int, k: int) -> np.ndarray:
    """W[v + L, u + K, l] = z^{l v}_u: c_{lv} = sum_u F[u, v] W[v, u, l] (zero for |v| > K)."""
    w = _projection_weights(lmax, k)  # (m, u, l), m >= 0
    sign = np.where(np.arange(lmax + 1) % 2 == 0, 1.0, -1.0)[:, None, None]
    full = np.concatenate([(sign * w)[:0:-1], w], axis=0)
    v = np.arange(-lmax, lmax + 1)
    full[np.abs(v) > k] = 0.0
    return full


def fourier_to_sh(f: Any, lmax: int, basis: str, ctx: ArrayContext) -> Any:
    """Coefficients up to ``lmax`` of F[..., 2K+1, 2K+1]: O(L^2 K) per function."""
    xp = ctx.xp
    k = (f.shape[-1] - 1) // 2
    w = _constant(ctx, ("signed_projection", lmax, k), lambda: _signed_projection(lmax, k),
                  f.dtype)
    # the columns v = -L..L of F (zero beyond K)
    cols = np.clip(np.arange(-lmax, lmax + 1) + k, 0, 2 * k)
    ci = _constant(ctx, ("columns", lmax, k), lambda: cols, xp.int64)
    fv = xp.take(f, ci, axis=f.ndim - 1)  # (..., u, v)
    fv = xp.permute_dims(fv, tuple(range(fv.ndim - 2)) + (fv.ndim - 1, fv.ndim - 2))
    c = xp.matmul(xp.expand_dims(fv, axis=-2), w)[..., 0, :]  # (..., v, l)
    if basis == "complex":
        gather = _constant(ctx, ("signed_to_flat", lmax), lambda: _signed_to_flat(lmax),
                           xp.int64)
        flat = xp.reshape(c, tuple(c.shape[:-2]) + (-1,))
        return xp.take(flat, gather, axis=flat.ndim - 1)
    src, re_coef, im_coef = _complex_to_real_maps(lmax)
    rd = real_dtype(xp, f.dtype)
    half = c[..., lmax:, :]  # v >= 0
    flat = xp.reshape(half, tuple(half.shape[:-2]) + (-1,))
    si = _constant(ctx, ("c2r_src", lmax), lambda: src, xp.int64)
    rc = _constant(ctx, ("c2r_re", lmax), lambda: re_coef, rd)
    ic = _constant(ctx, ("c2r_im", lmax), lambda: im_coef, rd)
    picked = xp.take(flat, si, axis=flat.ndim - 1)
    return xp.real(picked) * rc + xp.imag(picked) * ic


@functools.lru_cache(maxsize=16)
def _signed_to_flat(lmax: int) -> np.ndarray:
    """For every flat (l, m): its position (m + L) * (L+1) + l in the (v, l) layout."""
    l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    m = np.concatenate([np.arange(-k, k + 1) for k in range(lmax + 1)])
    return (m + lmax) * (lmax + 1) + l


# ------------------------------------------------------------------ spherical harmonics


def harmonics(lmax: int, cos: Any, sin: Any, phi: Any, basis: str, ctx: ArrayContext) -> Any:
    """Y[..., (L+1)^2] at the angles (the stable recursion of ``_harmonics``, stacked)."""
    xp = ctx.xp
    rows: list[Any] = [None] * (lmax + 1) ** 2
    root2 = math.sqrt(2.0)
    factor = None
    for l, m, row in _legendre_rows(lmax, cos, sin):
        if l == m:
            if basis == "real":
                factor = (root2 * xp.cos(m * phi), root2 * xp.sin(m * phi))
            else:
                e = _to_complex(xp, xp.cos(m * phi)) + 1j * _to_complex(xp, xp.sin(m * phi))
                factor = (e, ((-1) ** m) * xp.conj(e))  # Y_l^{-m} = (-1)^m conj(Y_l^m)
        base = l * l + l
        if m == 0:
            rows[base] = _to_complex(xp, row) if basis == "complex" else row
        else:
            rows[base + m] = row * factor[0]
            rows[base - m] = row * factor[1]
    return xp.stack(rows, axis=-1)


def direction_angles(v: Any, xp: Any) -> tuple[Any, Any, Any]:
    """cos θ, sin θ, φ of nonzero vectors (..., 3), scaled first (see ``_harmonics``)."""
    scale = xp.max(xp.abs(v), axis=-1, keepdims=True)
    if math.prod(v.shape) and bool(xp.any(scale == 0)):  # the one reduction of the checks
        raise ValueError("vectors must be nonzero (a direction is needed)")
    u = v / scale
    r = xp.sqrt(xp.sum(u * u, axis=-1))
    rho = xp.sqrt(u[..., 0] ** 2 + u[..., 1] ** 2)
    return u[..., 2] / r, rho / r, xp.atan2(u[..., 1], u[..., 0])


# ----------------------------------------------------------------------------- products


def _centered_to_fft(xp: Any, f: Any, n: int, axis: int) -> Any:
    """Move a centred spectrum (index u + K, |u| <= K) to FFT order of length n >= 2K+1."""
    k = (f.shape[axis] - 1) // 2
    ax = axis % f.ndim
    lo = [slice(None)] * f.ndim
    hi = [slice(None)] * f.ndim
    lo[ax] = slice(k, None)   # u = 0..K
    hi[ax] = slice(0, k)      # u = -K..-1
    shape = list(f.shape)
    shape[ax] = n - (2 * k + 1)
    zeros = xp.zeros(tuple(shape), dtype=f.dtype, device=_device(f))
    return xp.concat([f[tuple(lo)], zeros, f[tuple(hi)]], axis=ax)


def _fft_to_centered(xp: Any, g: Any, k: int, axis: int) -> Any:
    """The entries |u| <= k of an FFT-ordered spectrum, centred (index u + k)."""
    n = g.shape[axis]
    ax = axis % g.ndim
    neg = [slice(None)] * g.ndim
    pos = [slice(None)] * g.ndim
    neg[ax] = slice(n - k, n)
    pos[ax] = slice(0, k + 1)
    return xp.concat([g[tuple(neg)], g[tuple(pos)]], axis=ax)


def fourier_product(spectra: list[Any], powers: list[int], ctx: ArrayContext) -> Any:
    """The centred 2D spectrum of prod_i f_i^{p_i}: exact (zero-padded FFT convolution on a
    grid of 2K+1 points per axis, K the total degree)."""
    xp = ctx.xp
    degree = sum(((f.shape[-1] - 1) // 2) * p for f, p in zip(spectra, powers, strict=True))
    n = 2 * degree + 1
    h = None
    for f, p in zip(spectra, powers, strict=True):
        g = _centered_to_fft(xp, _centered_to_fft(xp, f, n, -1), n, -2)
        g = xp.fft.ifftn(g, axes=(-2, -1)) * float(n * n)  # values on the torus grid
        g = g**p if p != 1 else g
        h = g if h is None else h * g
    spec = xp.fft.fftn(h, axes=(-2, -1)) / float(n * n)
    return _fft_to_centered(xp, _fft_to_centered(xp, spec, degree, -1), degree, -2)


def fourier_method(inputs, lmaxes, powers, keep, basis, ctx):
    from ._product import fused_fits

    # The fused form wherever its tables fit: against this path's factored form (complex 2D
    # FFTs of the full torus spectrum) it was 5-10x faster at every L = 4..12 measured (torch
    # on one CPU core, batch 1024), and it is a handful of launches on a GPU.
    if fused_fits(tuple(lmaxes), tuple(powers), keep):
        return fused_fourier_method(inputs, lmaxes, powers, keep, basis, ctx)
    spectra = [sh_to_fourier(a, lm, basis, ctx) for a, lm in zip(inputs, lmaxes, strict=True)]
    return fourier_to_sh(fourier_product(spectra, powers, ctx), keep, basis, ctx)


def fused_fourier_method(inputs, lmaxes, powers, keep, basis, ctx):
    """The Fourier method as ``prod_i (a_i @ S_i) ** p_i @ A`` (``_product.fused_tables``):
    two operations per factor and two more, whatever the degrees; the tables are placed on
    the inputs' device once per (degrees, dtype, device)."""
    from ._product import fused_tables

    xp = ctx.xp
    key = ("fused", tuple(lmaxes), tuple(powers), keep, basis)
    h = None
    for i, (a, p) in enumerate(zip(inputs, powers, strict=True)):
        s = _constant(ctx, key + ("S", i), lambda i=i: fused_tables(
            tuple(lmaxes), tuple(powers), keep, basis)[0][i], a.dtype)
        g = xp.matmul(a, s)
        g = g**p if p != 1 else g
        h = g if h is None else h * g
    analysis = _constant(ctx, key + ("A",), lambda: fused_tables(
        tuple(lmaxes), tuple(powers), keep, basis)[1], h.dtype)
    return xp.matmul(h, analysis)


@functools.lru_cache(maxsize=16)
def _quadrature_tables(lmaxes: tuple[int, ...], keep: int, degree: int, basis: str):
    from ._harmonics import _harmonics_first
    from ._rotation import sphere_quadrature

    theta, phi, w, _, _ = sphere_quadrature(degree)
    cos, sin = np.cos(theta), np.sin(theta)
    ys = [_harmonics_first(lm, cos, sin, phi, basis, np) for lm in lmaxes]
    out = _harmonics_first(keep, cos, sin, phi, basis, np)
    proj = ((np.conj(out) if basis == "complex" else out) * w).T.copy()
    return ys, proj


def grid_method(inputs, lmaxes, powers, keep, basis, ctx):
    degree = sum(l * p for l, p in zip(lmaxes, powers, strict=True)) + keep
    ys, proj = _quadrature_tables(tuple(lmaxes), keep, degree, basis)
    h = None
    for i, (a, p) in enumerate(zip(inputs, powers, strict=True)):
        y = _constant(ctx, ("quad_y", tuple(lmaxes), keep, degree, basis, i),
                      lambda i=i: ys[i], a.dtype)
        g = xp_matmul(ctx, a, y)
        g = g**p if p != 1 else g
        h = g if h is None else h * g
    pr = _constant(ctx, ("quad_proj", tuple(lmaxes), keep, degree, basis), lambda: proj,
                   h.dtype)
    return xp_matmul(ctx, h, pr)


def xp_matmul(ctx, a, b):
    return ctx.xp.matmul(a, b)


@functools.lru_cache(maxsize=16)
def _padded_table(l1: int, l2: int, keep: int, basis: str):
    """The Gaunt table as padded segments: i1, i2 (n_out, width) and values (zero padding)."""
    from ._coefficients import gaunt_table

    return padded_segments(gaunt_table(l1, lmax2=l2, lmax_out=keep, basis=basis),
                           (keep + 1) ** 2)


def padded_segments(table, n_out: int):
    """A sparse coupling table (sorted by output) as padded segments, one row per output:
    i1, i2 (n_out, width) and the values (zero on the padding), for gathers of equal width."""
    starts = np.searchsorted(table.index3, np.arange(n_out + 1))
    counts = np.diff(starts)
    width = max(int(counts.max(initial=0)), 1)
    pos = starts[:-1, None] + np.arange(width)[None, :]
    valid = np.arange(width)[None, :] < counts[:, None]
    pos = np.where(valid, pos, 0)
    if table.nnz == 0:
        z = np.zeros((n_out, width), np.int64)
        return z, z, np.zeros((n_out, width))
    return (np.where(valid, table.index1[pos], 0), np.where(valid, table.index2[pos], 0),
            np.where(valid, table.value[pos], 0.0))


def direct_product(a, b, l1, l2, keep, basis, ctx):
    """z[k] = sum_j G_kj a[i1_kj] b[i2_kj]: the sparse Gaunt contraction as padded gathers."""
    xp = ctx.xp
    i1, i2, vals = _padded_table(l1, l2, keep, basis)
    key = ("direct", l1, l2, keep, basis)
    g1 = _constant(ctx, key + ("i1",), lambda: i1, xp.int64)
    g2 = _constant(ctx, key + ("i2",), lambda: i2, xp.int64)
    gv = _constant(ctx, key + ("v",), lambda: vals, real_dtype(xp, a.dtype))
    return xp.sum(_take_last(xp, a, g1) * _take_last(xp, b, g2) * gv, axis=-1)


def direct_power(a, lmax, nu, basis, ctx):
    """(coefficients of f^nu, their degree) by binary splitting."""
    if nu == 1:
        return a, lmax
    half, lh = direct_power(a, lmax, nu // 2, basis, ctx)
    z = direct_product(half, half, lh, lh, 2 * lh, basis, ctx)
    lz = 2 * lh
    if nu % 2:
        z = direct_product(z, a, lz, lmax, lz + lmax, basis, ctx)
        lz += lmax
    return z, lz


def degree_weights(w: Any, lmax: int, ctx: ArrayContext) -> Any:
    """Per-degree weights (..., L+1) spread over the flat coefficient axis."""
    degrees = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    idx = _constant(ctx, ("degrees", lmax), lambda: degrees, ctx.xp.int64)
    return _take_last(ctx.xp, w, idx)


def pad_output(xp: Any, z: Any, n_total: int) -> Any:
    """z with zero coefficients appended up to n_total (degrees above the product's)."""
    extra = n_total - z.shape[-1]
    if extra <= 0:
        return z
    zeros = xp.zeros(tuple(z.shape[:-1]) + (extra,), dtype=z.dtype, device=_device(z))
    return xp.concat([z, zeros], axis=-1)


# ------------------------------------------------------------------- the public entries
#
# Registered as the "array" implementations of the public functions (the wrappers in
# _fourier.py, _harmonics.py, _product.py and _rotation.py look them up by ctx.backend); the
# arguments are checked here with the shared layer, in the inputs' namespace and device.


def sh_to_fourier_entry(x, *, basis, ctx):
    from ._harmonics import _check_basis, coefficient_array

    basis = _check_basis(basis)
    a, lmax = coefficient_array(x, "x", basis, ctx=ctx)
    return sh_to_fourier(a, lmax, basis, ctx)


def fourier_to_sh_entry(F, lmax, *, basis, ctx):
    from .._validation import as_complex_array, check_integer, check_memory
    from ._harmonics import LMAX_LIMIT, _check_basis

    basis = _check_basis(basis)
    lmax = check_integer(lmax, "lmax", minimum=0, maximum=LMAX_LIMIT)
    f = as_complex_array(F, "F", ctx=ctx)
    if f.ndim < 2 or f.shape[-1] != f.shape[-2] or f.shape[-1] % 2 == 0:
        raise ValueError(
            f"F must have shape (..., 2K+1, 2K+1) (odd, square); got {tuple(f.shape)}"
        )
    k = (f.shape[-1] - 1) // 2
    check_memory((2 * lmax + 1) * (lmax + 1) * (2 * k + 1) * 16, "the projection weights",
                 ctx=ctx)
    return fourier_to_sh(f, lmax, basis, ctx)


def spherical_harmonics_entry(lmax, vectors, *, theta, phi, basis, normalization, dtype, ctx):
    from .._validation import as_float_array, check_memory
    from ._harmonics import _check_basis, _check_lmax

    lmax = _check_lmax(lmax)
    basis = _check_basis(basis)
    if normalization not in ("orthonormal", "component"):
        raise ValueError(
            f"normalization must be 'orthonormal' or 'component'; got {normalization!r}"
        )
    xp = ctx.xp
    if (vectors is None) == (theta is None and phi is None):
        raise ValueError("give either vectors or both theta= and phi=")
    if vectors is not None:
        v = as_float_array(vectors, "vectors", dtype=dtype, ctx=ctx)
        if v.ndim == 0 or v.shape[-1] != 3:
            raise ValueError(f"vectors must have shape (..., 3); got {tuple(v.shape)}")
        cos, sin, ph = direction_angles(v, xp)
    else:
        if theta is None or phi is None:
            raise ValueError("theta= and phi= must be given together")
        th = as_float_array(theta, "theta", dtype=dtype, ctx=ctx)
        ph = as_float_array(phi, "phi", dtype=dtype, ctx=ctx)
        th, ph = xp.broadcast_arrays(th, ph)
        cos, sin = xp.cos(th), xp.sin(th)
    itemsize = 4 if cos.dtype == xp.float32 else 8
    check_memory(math.prod(cos.shape) * (lmax + 1) ** 2 * itemsize * 3,
                 "spherical harmonics table", ctx=ctx)
    out = harmonics(lmax, cos, sin, ph, basis, ctx)
    if normalization == "component":
        out = out * math.sqrt(4 * math.pi)
    return out


def _weights(w, lmax, name, dtype, ctx):
    from .._validation import as_float_array

    if w is None:
        return None
    arr = as_float_array(w, name, dtype="float32" if dtype in (ctx.xp.float32, ctx.xp.complex64)
                         else "float64", ctx=ctx)
    if arr.ndim == 0 or arr.shape[-1] != lmax + 1:
        raise ValueError(
            f"{name} must have a last axis of lmax+1 = {lmax + 1} per-degree weights; got shape "
            f"{tuple(arr.shape)}"
        )
    return degree_weights(arr, lmax, ctx)


def _check_product_memory(rows_shape, n_in, n_out, work_per_row, what, ctx):
    from .._validation import check_memory

    rows = float(math.prod(rows_shape))
    check_memory(rows * (n_in + n_out + work_per_row) * 16,
                 f"{what} on the array path ({int(rows)} rows; autograd keeps the "
                 "intermediates for the backward pass)",
                 hint="process the rows in smaller batches or lower lmax_out", ctx=ctx)


def _work_per_row(method, lmaxes, powers, keep):
    degree = sum(l * p for l, p in zip(lmaxes, powers, strict=True))
    if method == "fourier":
        return (2 * degree + 1) ** 2 * (len(lmaxes) + 3) + sum(
            (2 * l + 1) ** 2 + (2 * l + 1) * (l + 1) for l in lmaxes)
    if method == "grid":
        n_points = ((degree + keep) // 2 + 1) * (degree + keep + 1)
        return n_points * (len(lmaxes) + 1)
    return (keep + 1) ** 2 * (min(lmaxes) + 1) ** 2 * 3  # padded gathers (a generous bound)


def gaunt_tensor_product_entry(x, y, *, lmax_out, method, basis, weights, ctx,
                               check_finite=True):
    from ._harmonics import _check_basis, coefficient_array
    from ._product import _method, _output_lmax, _resolve, _unpack_weights

    xp = ctx.xp
    basis = _check_basis(basis)
    method = _method(method)
    from .._validation import check_all_finite

    # one reduction for both (and one read from the device), not one per argument
    a, l1 = coefficient_array(x, "x", basis, ctx=ctx, check_finite=False)
    b, l2 = coefficient_array(y, "y", basis, ctx=ctx, check_finite=False)
    if check_finite:
        check_all_finite(xp, {"x": a, "y": b})
    try:
        batch = np.broadcast_shapes(tuple(a.shape[:-1]), tuple(b.shape[:-1]))
    except ValueError as exc:
        raise ValueError(
            "the leading (batch and channel) axes of x and y must broadcast; got x "
            f"{tuple(a.shape)} and y {tuple(b.shape)}"
        ) from exc
    dtype = xp.result_type(a.dtype, b.dtype)
    a, b = xp.astype(a, dtype, copy=False), xp.astype(b, dtype, copy=False)
    lo = _output_lmax(lmax_out, l1 + l2)
    w1, w2, w3 = _unpack_weights(weights)
    w1 = _weights(w1, l1, "weights[0]", dtype, ctx)
    w2 = _weights(w2, l2, "weights[1]", dtype, ctx)
    w3 = _weights(w3, lo, "weights[2]", dtype, ctx)
    keep = min(lo, l1 + l2)
    method = _resolve(method, "product", -(-(l1 + l2) // 2), math.prod(batch), dtype, ctx)
    _check_product_memory(batch, (l1 + 1) ** 2 + (l2 + 1) ** 2, (lo + 1) ** 2,
                          _work_per_row(method, [l1, l2], [1, 1], keep),
                          f"gaunt_tensor_product (method={method!r})", ctx)
    if w1 is not None:
        a = a * w1
    if w2 is not None:
        b = b * w2
    if method == "fourier":
        z = fourier_method([a, b], [l1, l2], [1, 1], keep, basis, ctx)
    elif method == "grid":
        z = grid_method([a, b], [l1, l2], [1, 1], keep, basis, ctx)
    else:
        z = direct_product(a, b, l1, l2, keep, basis, ctx)
    z = pad_output(xp, z, (lo + 1) ** 2)
    if w3 is not None:
        z = z * w3
    return xp.astype(z, dtype, copy=False)


def gaunt_convolution_entry(x, edge_vectors, *, lmax_edge, lmax_out, method, basis, weights,
                            ctx, check_finite=True):
    from .._validation import check_integer
    from ._harmonics import LMAX_LIMIT, _check_basis, coefficient_array

    lmax_edge = check_integer(lmax_edge, "lmax_edge", minimum=0, maximum=LMAX_LIMIT)
    basis = _check_basis(basis)
    a, _ = coefficient_array(x, "x", basis, ctx=ctx, check_finite=check_finite)
    if a.ndim < 2:
        raise ValueError(f"x must have shape (..., C, (L+1)^2); got {tuple(a.shape)}")
    rd = real_dtype(ctx.xp, a.dtype)
    y = spherical_harmonics_entry(lmax_edge, edge_vectors, theta=None, phi=None, basis=basis,
                                  normalization="orthonormal",
                                  dtype="float32" if rd == ctx.xp.float32 else "float64",
                                  ctx=ctx)
    if tuple(y.shape[:-1]) != tuple(a.shape[:-2]):
        raise ValueError(
            "edge_vectors must have one vector per row of x (shape x.shape[:-2] + (3,)); got x "
            f"{tuple(a.shape)} and edge_vectors with leading shape {tuple(y.shape[:-1])}"
        )
    return gaunt_tensor_product_entry(a, ctx.xp.expand_dims(y, axis=-2), lmax_out=lmax_out,
                                      method=method, basis=basis, weights=weights, ctx=ctx,
                                      check_finite=False)  # x checked above; Y is finite


def gaunt_power_entry(x, nu, *, lmax_out, method, basis, ctx, check_finite=True):
    from .._validation import check_integer
    from ._harmonics import LMAX_LIMIT, _check_basis, coefficient_array
    from ._product import _method, _output_lmax, _resolve

    xp = ctx.xp
    basis = _check_basis(basis)
    method = _method(method)
    nu = check_integer(nu, "nu", minimum=1, maximum=LMAX_LIMIT)
    a, lmax = coefficient_array(x, "x", basis, ctx=ctx, check_finite=check_finite)
    lo = _output_lmax(lmax_out, nu * lmax)
    if nu * lmax > LMAX_LIMIT:
        raise ValueError(f"nu * L = {nu * lmax} exceeds the degree limit {LMAX_LIMIT}")
    keep = min(lo, nu * lmax)
    method = _resolve(method, "power", lmax, math.prod(tuple(a.shape[:-1])), a.dtype, ctx,
                      nu=nu)
    _check_product_memory(tuple(a.shape[:-1]), (lmax + 1) ** 2, (lo + 1) ** 2,
                          _work_per_row(method, [lmax], [nu], keep) * max(1, nu.bit_length()),
                          f"gaunt_power (nu={nu}, method={method!r})", ctx)
    if method == "fourier":
        z = fourier_method([a], [lmax], [nu], keep, basis, ctx)
    elif method == "grid":
        z = grid_method([a], [lmax], [nu], keep, basis, ctx)
    else:
        z, _ = direct_power(a, lmax, nu, basis, ctx)
        z = z[..., : (keep + 1) ** 2]
    return pad_output(xp, z, (lo + 1) ** 2)


def rotate_entry(x, rotation, *, basis, ctx):
    from ..backend import to_numpy, use_backend
    from ._harmonics import _check_basis, coefficient_array
    from ._rotation import _check_rotation, wigner_D

    xp = ctx.xp
    basis = _check_basis(basis)
    a, lmax = coefficient_array(x, "x", basis, ctx=ctx)
    # The rotation is 9 numbers that parametrise the Wigner matrices: read on the host (an
    # explicit copy), the matrices built there and placed with the coefficients.
    with use_backend("numpy"):
        r = _check_rotation(to_numpy(rotation))
        if r.ndim != 2:
            raise ValueError(f"rotation must be one (3, 3) matrix; got shape {tuple(r.shape)}")
        blocks = [np.ascontiguousarray(wigner_D(l, r, basis=basis).T) for l in range(lmax + 1)]
    out = [xp.matmul(a[..., l * l:(l + 1) ** 2], ctx.asarray(d, dtype=a.dtype))
           for l, d in enumerate(blocks)]
    return xp.concat(out, axis=-1)


def real_to_complex_entry(x, *, ctx):
    from ._harmonics import coefficient_array

    a, lmax = coefficient_array(x, "x", "real", ctx=ctx)
    return real_to_complex(a, lmax, ctx)


def complex_to_real_entry(c, *, ctx):
    """a_{l0} = Re c_{l0}, a_{lm} = sqrt2 Re c_{lm}, a_{l,-m} = -sqrt2 Im c_{lm} (m > 0)."""
    from .._validation import as_complex_array
    from ._harmonics import lmax_from_size

    xp = ctx.xp
    c = as_complex_array(c, "c", ctx=ctx)
    if c.ndim == 0:
        raise ValueError("c must have a last axis of (L+1)^2 coefficients; got a scalar")
    lmax = lmax_from_size(c.shape[-1], "c")
    l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    m = np.concatenate([np.arange(-k, k + 1) for k in range(lmax + 1)])
    src = l * l + l + np.abs(m)
    re_coef = np.where(m == 0, 1.0, np.where(m > 0, math.sqrt(2.0), 0.0))
    im_coef = np.where(m < 0, -math.sqrt(2.0), 0.0)
    rd = real_dtype(xp, c.dtype)
    picked = _take_last(xp, c, _constant(ctx, ("c2r_flat_src", lmax), lambda: src, xp.int64))
    return (xp.real(picked) * _constant(ctx, ("c2r_flat_re", lmax), lambda: re_coef, rd)
            + xp.imag(picked) * _constant(ctx, ("c2r_flat_im", lmax), lambda: im_coef, rd))


def e3nn_map_entry(x, normalization, inverse, ctx):
    from ..backend import use_backend
    from ._harmonics import _E3NN_ROTATION, coefficient_array
    from ._rotation import wigner_D

    xp = ctx.xp
    a, lmax = coefficient_array(x, "x", "real", ctx=ctx)
    scale = math.sqrt(4 * math.pi) if normalization == "component" else 1.0
    with use_backend("numpy"):  # the fixed Wigner matrices, built on the host
        blocks = [np.asarray(wigner_D(l, _E3NN_ROTATION, basis="real")) for l in range(lmax + 1)]
    out = []
    for l, d in enumerate(blocks):
        sl = a[..., l * l:(l + 1) ** 2]
        if inverse:
            dm = _constant(ctx, ("e3nn_dT", l), lambda d=d: np.ascontiguousarray(d.T), a.dtype)
            out.append(xp.matmul(sl * scale, dm))
        else:
            dm = _constant(ctx, ("e3nn_d", l), lambda d=d: d, a.dtype)
            out.append(xp.matmul(sl, dm) / scale)
    return xp.concat(out, axis=-1)


def wigner_D_entry(l, rotation, *, basis, ctx):
    """D^l(R) by the exact quadrature of ``_rotation.wigner_D``, in the rotation's namespace:
    differentiable in R through the harmonics at the rotated nodes."""
    from .._validation import as_float_array, check_integer
    from ._harmonics import _check_basis
    from ._rotation import sphere_quadrature

    xp = ctx.xp
    l = check_integer(l, "l", minimum=0, maximum=4096)
    basis = _check_basis(basis)
    r = as_float_array(rotation, "rotation", ctx=ctx)
    precision = r.dtype  # of the result; the quadrature runs in float64
    r = xp.astype(r, xp.float64)
    if r.ndim < 2 or tuple(r.shape[-2:]) != (3, 3):
        raise ValueError(f"rotation must have shape (..., 3, 3); got {tuple(r.shape)}")
    rt = xp.matrix_transpose(r)
    eye = _constant(ctx, ("eye3",), lambda: np.eye(3), xp.float64)
    det = xp.linalg.det(r) if hasattr(xp, "linalg") else None
    bad = xp.max(xp.abs(rt @ r - eye)) > 1e-6
    if det is not None:
        bad = bad | xp.any(det < 0)
    if bool(bad):  # one read from the device
        raise ValueError("rotation must be a proper rotation matrix (orthogonal, det +1)")
    theta, phi, w, _, _ = sphere_quadrature(2 * l)
    pts_host = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                         np.cos(theta)], -1)
    pts = _constant(ctx, ("wigner_nodes", l), lambda: pts_host, xp.float64)
    sl = slice(l * l, (l + 1) ** 2)
    cos, sin, ph = direction_angles(pts, xp)
    y = harmonics(l, cos, sin, ph, basis, ctx)[..., sl]
    moved = pts @ r  # R^{-1} r = R^T r; as row vectors r @ R
    cos, sin, ph = direction_angles(moved, xp)
    yr = harmonics(l, cos, sin, ph, basis, ctx)[..., sl]
    weights = _constant(ctx, ("wigner_weights", l), lambda: w[:, None], xp.float64)
    yw = xp.conj(y) * weights if basis == "complex" else y * weights
    d = xp.matrix_transpose(yw) @ yr
    if precision == xp.float64:
        return d
    return xp.astype(d, xp.complex64 if basis == "complex" else xp.float32)

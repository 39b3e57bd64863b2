"""Numba kernels of :mod:`sci.gaunt`: the 3j recursion, Gaunt tables, the direct contraction.

The recursions are the plain-Python loops of :mod:`sci.gaunt._recursion`, compiled here; the
NumPy backend runs the same source uncompiled, so both backends compute the same numbers.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _recursion

_jit = numba.njit(cache=True)

_c_coef = _jit(_recursion._c_coef)
_d_coef = _jit(_recursion._d_coef)
_recursion_globals = {"_c_coef": _c_coef, "_d_coef": _d_coef}


def _compile(func, **extra):
    """Compile ``func`` with the module's helper functions bound to their compiled versions."""
    import types

    glb = dict(func.__globals__)
    glb.update(_recursion_globals)
    glb.update(extra)
    clone = types.FunctionType(func.__code__, glb, func.__name__, func.__defaults__)
    clone.__module__ = func.__module__
    clone.__qualname__ = func.__qualname__ + "_compiled"
    return numba.njit(cache=True)(clone)


wigner_3j_l3 = _compile(_recursion.wigner_3j_l3)
_recursion_globals["wigner_3j_l3"] = wigner_3j_l3
_u_entry = _compile(_recursion._u_entry)
_recursion_globals["_u_entry"] = _u_entry
real_selection = _compile(_recursion.real_selection)
_recursion_globals["real_selection"] = real_selection
gaunt_elements = _compile(_recursion.gaunt_elements)
real_gaunt_elements = _compile(_recursion.real_gaunt_elements)
_recursion_globals["real_gaunt_elements"] = real_gaunt_elements
complex_table = _compile(_recursion.complex_table)


# Rows along the fast axis: each table entry k is one multiply-add over a block of rows,
# contiguous in memory, so the loop runs in SIMD lanes (the row-major gather x[r, i1[k]]
# could not: 5-14x slower, ~1 % of the FLOP/s on the performance page). "contract" lets LLVM
# fuse the multiply-add; nothing is reassociated, so each row's sum keeps the table's order.
_ROW_BLOCK = 256


@numba.njit(cache=True, parallel=True, fastmath={"contract"}, error_model="numpy")
def _contract_rows_last(xt, yt, i1, i2, starts, vals, out_t, block):
    n_out = starts.shape[0] - 1
    rows = xt.shape[1]
    n_blocks = (rows + block - 1) // block
    for b in numba.prange(n_blocks):
        r0 = b * block
        r1 = min(rows, r0 + block)
        acc = np.empty(r1 - r0, dtype=out_t.dtype)
        for o in range(n_out):
            acc[:] = 0
            for k in range(starts[o], starts[o + 1]):
                v = vals[k]
                xa = xt[i1[k], r0:r1]
                yb = yt[i2[k], r0:r1]
                for r in range(r1 - r0):
                    acc[r] += v * xa[r] * yb[r]
            out_t[o, r0:r1] = acc


def direct_contract(x, y, i1, i2, starts, vals, n_out):
    """z[r, o] = sum over the entries k of output o of vals[k] x[r, i1[k]] y[r, i2[k]]."""
    dtype = np.result_type(x.dtype, y.dtype)
    xt = np.ascontiguousarray(np.asarray(x, dtype=dtype).T)  # (coefficients, rows)
    yt = np.ascontiguousarray(np.asarray(y, dtype=dtype).T)
    out_t = np.empty((n_out, xt.shape[1]), dtype=dtype)
    _contract_rows_last(xt, yt, i1, i2, starts, vals.astype(dtype), out_t, _ROW_BLOCK)
    return np.ascontiguousarray(out_t.T)


@numba.njit(cache=True, parallel=True)
def _half_spectrum_kernel(a, r, lmax, out_re, out_im):
    inv = 1.0 / np.sqrt(2.0)
    rows = a.shape[0]
    for b in numba.prange(rows):
        for m in range(lmax + 1):
            s = 1.0 if m == 0 else inv
            for ui in range(2 * lmax + 1):
                u = ui - lmax
                au = u if u >= 0 else -u
                start = max(m, au)
                # Only l of the parity of u contribute (y^{lm}_u = 0 otherwise).
                if (start - au) % 2 == 1:
                    start += 1
                pos = 0.0
                neg = 0.0
                for l in range(start, lmax + 1, 2):
                    coef = r[m, l, ui]
                    pos += a[b, l * l + l + m] * coef
                    if m > 0:
                        neg += a[b, l * l + l - m] * coef
                if m % 2 == 0:
                    out_re[b, ui, m] = s * pos
                    out_im[b, ui, m] = -s * neg
                else:
                    out_re[b, ui, m] = s * neg
                    out_im[b, ui, m] = s * pos


def half_spectrum_real(a, lmax, p):
    """F[b, u + lmax, m] (m >= 0) of real functions from real-basis coefficients, sparse in l."""
    a = np.ascontiguousarray(a)
    r = np.ascontiguousarray((p.real + p.imag).astype(a.dtype))
    shape = (a.shape[0], 2 * lmax + 1, lmax + 1)
    out_re = np.empty(shape, dtype=a.dtype)
    out_im = np.empty(shape, dtype=a.dtype)
    _half_spectrum_kernel(a, r, lmax, out_re, out_im)
    return out_re + 1j * out_im

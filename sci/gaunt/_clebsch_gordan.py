r"""The complete Clebsch-Gordan tensor product: the Gaunt (symmetric) paths and the
antisymmetric paths the Gaunt product misses, through the surface bracket.

For real functions on the sphere the Gaunt product :math:`fg` carries exactly the paths
:math:`l_1 \otimes l_2 \to l_3` with :math:`l_1 + l_2 + l_3` even. The other half is carried by
the surface bracket

.. math:: \{f, g\} = \hat r \cdot (\nabla_S f \times \nabla_S g)
          = \frac{\partial_\theta f\,\partial_\phi g - \partial_\phi f\,\partial_\theta g}
                 {\sin\theta},

bilinear, antisymmetric, rotation-invariant and odd under inversion. Its coupling
coefficients (complex harmonics, Condon-Shortley phase) vanish for :math:`l_1+l_2+l_3` even
(parity) and for :math:`l_1+l_2+l_3` odd are

.. math:: \int \overline{Y_{l_3}^{m_3}}\,\{Y_{l_1}^{m_1}, Y_{l_2}^{m_2}\}\,d\Omega
   = i\,\sqrt{\tfrac{(2l_1+1)(2l_2+1)(2l_3+1)}{4\pi}}\,\sqrt{l_1(l_1+1)\,l_2(l_2+1)}
     \begin{pmatrix} l_1 & l_2 & l_3\\ 1 & -1 & 0\end{pmatrix}
     (-1)^{m_3}\begin{pmatrix} l_1 & l_2 & l_3\\ m_1 & m_2 & -m_3\end{pmatrix},

the Gaunt coefficient with :math:`(l_1\,l_2\,l_3;\,0\,0\,0)` replaced by
:math:`i\sqrt{l_1(l_1+1)l_2(l_2+1)}\,(l_1\,l_2\,l_3;\,1\,{-1}\,0)` (with the surface
gradients in spin-weighted harmonics of spin :math:`\pm 1`, the bracket's coefficient is
proportional to :math:`(l_1\,l_2\,l_3;1\,{-1}\,0) - (l_1\,l_2\,l_3;{-1}\,1\,0)`, which is
:math:`[1 - (-1)^{l_1+l_2+l_3}]\,(l_1\,l_2\,l_3;1\,{-1}\,0)`; ``theory.gaunt.bracket_gaunt``
checks the formula and its normalisation exactly for every path with l <= 6). No
``_cpu``/``_gpu`` kernels: the fast method is batched matrix products written once against
the array API.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import check_all_finite, check_integer, check_memory, format_bytes, memory_limit
from ..backend import (
    array_context,
    cached_constant,
    implementation,
    register,
    switch_context,
)
from ._array import padded_segments
from ._coefficients import GauntTable, gaunt_table
from ._harmonics import LMAX_LIMIT, _legendre_rows, coefficient_array

__all__ = ["bracket_table", "cg_path_constant", "cg_tensor_product", "e3nn_path_factor"]

PATHS = ("all", "even", "odd")
METHODS = ("grid", "direct")
_ARGS = ("x", "y", "weights[0]", "weights[1]", "weights[2]")
_CHUNK_BYTES = 256 * 2**20  # the most working memory of one chunk of rows
_CACHE_BYTES = 4 * 2**20  # the working memory of one chunk that stays in the CPU caches


# ------------------------------------------------------------------ coupling coefficients


def _three_j(l1: int, l2: int, m1: int, m2: int, backend: str):
    """(l3min, values of (l1 l2 l3; m1 m2 -m1-m2) for l3 = l3min, l3min+1, ...)."""
    size = 2 * max(l1, l2) + 2
    buf, work = np.empty(size), np.empty(size)
    start, n = implementation("gaunt.wigner_3j_l3", backend)(l1, l2, m1, m2, buf, work)
    return start, buf[:n].copy()


def cg_path_constant(l1: int, l2: int, l3: int) -> float:
    r"""The reduced (Wigner-Eckart) constant of the path :math:`l_1 \otimes l_2 \to l_3`.

    The coupling coefficient of the complete product (:func:`cg_tensor_product`), complex
    harmonics, is this constant times the Clebsch-Gordan coefficient
    :math:`\langle l_1 m_1\, l_2 m_2 | l_3 m_3\rangle`:

    .. math::
        \int \overline{Y_{l_3}^{m_3}}\, Y_{l_1}^{m_1} Y_{l_2}^{m_2}
            = K\, \langle l_1 m_1 l_2 m_2 | l_3 m_3\rangle,\quad
        K = (-1)^{l_1-l_2}\sqrt{\tfrac{(2l_1+1)(2l_2+1)}{4\pi}}
            \begin{pmatrix} l_1 & l_2 & l_3\\ 0&0&0\end{pmatrix}

    for :math:`l_1+l_2+l_3` even (the Gaunt product), and for odd

    .. math::
        \int \overline{Y_{l_3}^{m_3}}\,\{Y_{l_1}^{m_1}, Y_{l_2}^{m_2}\}
            = i K\, \langle l_1 m_1 l_2 m_2 | l_3 m_3\rangle,\quad
        K = (-1)^{l_1-l_2}\sqrt{\tfrac{(2l_1+1)(2l_2+1)\,l_1(l_1+1)\,l_2(l_2+1)}{4\pi}}
            \begin{pmatrix} l_1 & l_2 & l_3\\ 1&-1&0\end{pmatrix}.

    Returns K (real); zero outside the triangle rule.

    Examples
    --------
    >>> round(cg_path_constant(1, 1, 1), 12)   # the cross product: sqrt(3/(2 pi))
    0.690988298942
    """
    for name, v in (("l1", l1), ("l2", l2), ("l3", l3)):
        check_integer(v, name, minimum=0, maximum=LMAX_LIMIT)
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        return 0.0
    backend = switch_context().backend
    sign = -1.0 if (l1 - l2) % 2 else 1.0
    pref = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) / (4 * math.pi))
    if (l1 + l2 + l3) % 2 == 0:
        start, vals = _three_j(l1, l2, 0, 0, backend)
        return sign * pref * float(vals[l3 - start]) if l3 >= start else 0.0
    if l1 == 0 or l2 == 0:
        return 0.0
    start, vals = _three_j(l1, l2, 1, -1, backend)
    root = math.sqrt(l1 * (l1 + 1) * l2 * (l2 + 1))
    return sign * pref * root * float(vals[l3 - start]) if l3 >= start else 0.0


def e3nn_path_factor(l1: int, l2: int, l3: int) -> float:
    r"""The factor c with e3nn's path output = c x this package's, in e3nn's basis.

    For inputs of single degrees :math:`l_1`, :math:`l_2` (coefficients ``x``, ``y`` here,
    ``to_e3nn(x)``, ``to_e3nn(y)`` in e3nn), the block :math:`l_3` of e3nn's
    ``o3.FullTensorProduct`` (its defaults: ``irrep_normalization="component"``,
    ``path_normalization="element"``) equals ``c * to_e3nn(z)[l3 block]``, z the degree-l3
    block of :func:`cg_tensor_product` (its even part for :math:`l_1+l_2+l_3` even, odd part
    otherwise), with

    .. math:: c = (-1)^{\lfloor (l_1+l_2-l_3)/2\rfloor} / K,

    K the path constant (:func:`cg_path_constant`). Both maps are equivariant V_l1 x V_l2 ->
    V_l3 with Frobenius norm :math:`|K|\sqrt{2l_3+1}` (here) and :math:`\sqrt{2l_3+1}`
    (e3nn: :math:`\sqrt{2l_3+1}` times a unit-norm Clebsch-Gordan tensor), so :math:`|c| =
    1/|K|`; the sign is that of e3nn's real Clebsch-Gordan tensors, built from the complex ones
    with the phases :math:`(-i)^l` of its basis change (checked against e3nn for every path
    with l <= 8 by the test suite). K is nonzero on every path of the triangle rule (the test
    suite checks every path with l <= 24), so every path of e3nn's product is present here.

    Examples
    --------
    >>> round(e3nn_path_factor(1, 1, 1) * cg_path_constant(1, 1, 1), 12)
    1.0
    """
    k = cg_path_constant(l1, l2, l3)
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(f"(l1, l2, l3) = ({l1}, {l2}, {l3}) is not a path: l3 must satisfy "
                         "|l1 - l2| <= l3 <= l1 + l2")
    return (-1.0 if ((l1 + l2 - l3) // 2) % 2 else 1.0) / k


def _bracket_table_bytes(lmax1: int, lmax2: int, lmax3: int) -> float:
    """Bytes of the real bracket table and its construction (an upper bound)."""
    l1 = np.arange(lmax1 + 1)[:, None]
    l2 = np.arange(lmax2 + 1)[None, :]
    n3 = np.clip(np.minimum(l1 + l2, lmax3) - np.abs(l1 - l2) + 1, 0, None)
    entries = float(((2 * l1 + 1) * (2 * l2 + 1) * n3).sum())
    return entries * 32 * 8  # up to 8 real entries per complex one, 4 arrays of 8 bytes


def bracket_table(lmax: int, *, lmax2: int | None = None, lmax_out: int | None = None,
                  basis: str = "real") -> GauntTable:
    r"""Every nonzero coefficient of the antisymmetric product, as a sparse table.

    ``basis="real"``: :math:`\int Z_{l_3}^{\mu_3}\{Z_{l_1}^{\mu_1}, Z_{l_2}^{\mu_2}\}\,d\Omega`
    (real harmonics :math:`Z`, as :func:`real_gaunt`); ``"complex"``: the imaginary part of
    :math:`\int \overline{Y_3}\{Y_1, Y_2\}` (the coefficient is purely imaginary; the table
    holds ``value`` with coefficient ``1j * value``). Only paths with :math:`l_1+l_2+l_3` odd
    appear. Built from the closed form of :func:`cg_path_constant` (3j symbols by the
    Schulten-Gordon recursion), O(L^5) entries, cached.

    Parameters
    ----------
    lmax, lmax2, lmax_out : int
        Degrees of the two factors (``lmax2`` default ``lmax``) and of the output (default
        ``lmax + lmax2 - 1``, the bracket's top degree).
    basis : {"real", "complex"}

    Raises
    ------
    ValueError
        Negative degrees, or a table too large for memory (with its size).

    Examples
    --------
    >>> t = bracket_table(1)
    >>> t.nnz, t.index1.tolist(), t.index2.tolist(), t.index3.tolist()   # Z_x, Z_y, Z_z
    (6, [2, 3, 1, 3, 1, 2], [3, 2, 3, 1, 2, 1], [1, 1, 2, 2, 3, 3])
    """
    from ._harmonics import _check_basis

    lmax = check_integer(lmax, "lmax", minimum=0, maximum=LMAX_LIMIT)
    lmax2 = lmax if lmax2 is None else check_integer(lmax2, "lmax2", minimum=0,
                                                     maximum=LMAX_LIMIT)
    lmax_out = max(lmax + lmax2 - 1, 0) if lmax_out is None else check_integer(
        lmax_out, "lmax_out", minimum=0, maximum=LMAX_LIMIT)
    basis = _check_basis(basis)
    check_memory(_bracket_table_bytes(lmax, lmax2, lmax_out), "the bracket table",
                 hint="lower lmax or use method='grid'")
    return _bracket_table_cached(lmax, lmax2, lmax_out, basis, switch_context().backend)


@functools.lru_cache(maxsize=16)
def _bracket_table_cached(lmax1, lmax2, lmax3, basis, backend) -> GauntTable:
    i1s, i2s, i3s, vals = [], [], [], []
    for l1 in range(1, lmax1 + 1):
        for l2 in range(1, lmax2 + 1):
            if abs(l1 - l2) > lmax3:
                continue
            start_k, reduced = _three_j(l1, l2, 1, -1, backend)
            pref = math.sqrt(l1 * (l1 + 1) * l2 * (l2 + 1))
            for m1 in range(-l1, l1 + 1):
                for m2 in range(-l2, l2 + 1):
                    big_m = m1 + m2
                    start, threej = _three_j(l1, l2, m1, m2, backend)
                    if threej.size == 0:
                        continue
                    phase = -1.0 if big_m % 2 else 1.0
                    for l3 in range(abs(l1 - l2) + 1, min(l1 + l2, lmax3) + 1, 2):
                        if l3 < start or l3 < start_k:
                            continue
                        root = math.sqrt((2.0 * l1 + 1) * (2.0 * l2 + 1) * (2.0 * l3 + 1)
                                         / (4.0 * math.pi))
                        i1s.append(l1 * l1 + l1 + m1)
                        i2s.append(l2 * l2 + l2 + m2)
                        i3s.append(l3 * l3 + l3 + big_m)
                        vals.append(phase * root * pref * reduced[l3 - start_k]
                                    * threej[l3 - start])
    i1 = np.asarray(i1s, np.int64)
    i2 = np.asarray(i2s, np.int64)
    i3 = np.asarray(i3s, np.int64)
    val = np.asarray(vals, np.float64)
    if basis == "real":
        i1, i2, i3, val = _imaginary_to_real_table(i1, i2, i3, val, lmax2, lmax3)
    keep = val != 0
    i1, i2, i3, val = i1[keep], i2[keep], i3[keep], val[keep]
    order = np.lexsort((i2, i1, i3))
    i1, i2, i3, val = (a[order] for a in (i1, i2, i3, val))
    for a in (i1, i2, i3, val):
        a.flags.writeable = False
    return GauntTable(i1, i2, i3, val, lmax1, lmax2, lmax3, basis)


def _imaginary_to_real_table(i1, i2, i3, val, lmax2, lmax3):
    r"""int Z3 {Z1, Z2} = sum U[r1, m1] U[r2, m2] conj(U[r3, m3]) (i val): the real table."""
    from ._coefficients import _real_rows

    if val.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0)
    r1, c1, _ = _real_rows(i1)
    r2, c2, _ = _real_rows(i2)
    r3, c3, _ = _real_rows(i3)
    coef = c1[:, :, None, None] * c2[:, None, :, None] * np.conj(c3)[:, None, None, :]
    coef = coef * (1j * val)[:, None, None, None]
    shape = coef.shape
    a = np.broadcast_to(r1[:, :, None, None], shape).ravel()
    b = np.broadcast_to(r2[:, None, :, None], shape).ravel()
    c = np.broadcast_to(r3[:, None, None, :], shape).ravel()
    coef = coef.ravel()
    nonzero = coef != 0
    a, b, c, coef = a[nonzero], b[nonzero], c[nonzero], coef[nonzero]
    n2, n3 = (lmax2 + 1) ** 2, (lmax3 + 1) ** 2
    key = (a * n2 + b) * n3 + c
    uniq, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=coef.real, minlength=uniq.size)
    a, rest = np.divmod(uniq, n2 * n3)
    b, c = np.divmod(rest, n3)
    # The exact selection rules of the real coefficients (zeros are zeros): |mu3| = |mu1| +-
    # |mu2|, and an odd number of negative orders (the bracket changes sign under the
    # reflection phi -> -phi, which flips the sine harmonics, mu < 0).
    la, lb, lc = (np.floor(np.sqrt(v + 0.5)).astype(np.int64) for v in (a, b, c))
    ma, mb, mc = a - la * la - la, b - lb * lb - lb, c - lc * lc - lc
    aa, ab, ac = np.abs(ma), np.abs(mb), np.abs(mc)
    rule = ((ac == aa + ab) | (ac == np.abs(aa - ab))) & (
        ((ma < 0).astype(int) + (mb < 0) + (mc < 0)) % 2 == 1)
    rule &= np.abs(total) > 1e-14 * max(1.0, float(np.abs(total).max(initial=0)))
    return a[rule], b[rule], c[rule], total[rule]


# ----------------------------------------------------------------------------- the grid


def _grid_sizes(l1: int, l2: int, keep: int) -> tuple[int, int, int]:
    """(degree, n_theta, n_phi) of a Gauss-Legendre x uniform grid on which every integrand
    Z_{l3} f g and Z_{l3} {f, g} (l3 <= keep) is integrated exactly."""
    degree = l1 + l2 + keep
    # 2 n_theta - 1 >= degree; n_phi > degree: the uniform rule integrates every e^{ik phi},
    # |k| <= degree, exactly
    return degree, degree // 2 + 1, degree + 1


def _grid_table_bytes(l1, l2, keep, n_theta, n_phi):
    m_in = max(l1, l2) + 1
    legendre = sum(3 * (l + 1) ** 2 * n_theta for l in (l1, l2)) + (keep + 1) ** 2 * n_theta
    fourier = 3 * 2 * m_in * n_phi * 2 + 2 * (keep + 1) * n_phi
    return float(legendre + fourier) * 8


def _nodes(n_theta):
    x, w = np.polynomial.legendre.leggauss(n_theta)
    return x, np.sqrt(1.0 - x * x), w


@functools.lru_cache(maxsize=16)
def _legendre_table(lmax: int, n_theta: int, parts: tuple[str, ...]) -> np.ndarray:
    r"""T[m, l, (part, j)]: the θ-dependence of each order m at the Gauss-Legendre nodes.

    Parts: ``"P"`` :math:`\bar P_l^m(\theta_j)`, ``"dP"`` :math:`\partial_\theta\bar P_l^m`
    (the ladder form :math:`\tfrac12[\sqrt{(l-m)(l+m+1)}\bar P_l^{m+1} -
    \sqrt{(l+m)(l-m+1)}\bar P_l^{m-1}]`, no division, stable at every degree), ``"Q"``
    :math:`m \bar P_l^m / \sin\theta_j` (the nodes avoid the poles).
    """
    cos, sin, _ = _nodes(n_theta)
    p = np.zeros((lmax + 2, lmax + 1, n_theta))  # p[m, l, j], one extra order for the ladder
    for l, m, row in _legendre_rows(lmax, cos, sin):
        p[m, l] = row
    m = np.arange(lmax + 1)[:, None, None]
    l = np.arange(lmax + 1)[None, :, None]
    up = np.sqrt(np.clip((l - m) * (l + m + 1), 0, None)) * p[1:]
    # P̄_l^{-1} = -P̄_l^1 (Condon-Shortley), so order 0 gets the same term twice
    below = np.concatenate([-p[1:2], p[:lmax]], axis=0)
    down = np.sqrt(np.clip((l + m) * (l - m + 1), 0, None)) * below
    tables = {"P": p[:lmax + 1], "dP": 0.5 * (up - down), "Q": m * p[:lmax + 1] / sin}
    return np.ascontiguousarray(np.concatenate([tables[k] for k in parts], axis=-1))


@functools.lru_cache(maxsize=16)
def _synthesis_dft(lmax: int, n_phi: int, parts: tuple[str, ...]) -> np.ndarray:
    r"""B[part, (s, m), k]: grid values from the per-order cosine (s = 0) and sine (s = 1)
    coefficients. f = sum_m c_m (C_m cos m phi + S_m sin m phi), :math:`c_0 = 1`,
    :math:`c_m = \sqrt 2` (the real harmonics); for the part ``"Q"``
    (:math:`\partial_\phi f/\sin\theta`) the derivative swaps them: :math:`m(S_m \cos m\phi -
    C_m \sin m\phi)`, the factor m being in the Legendre table."""
    m = np.arange(lmax + 1)[:, None]
    phi = 2 * np.pi * np.arange(n_phi)[None, :] / n_phi
    c = np.where(m == 0, 1.0, math.sqrt(2.0))
    cos, sin = c * np.cos(m * phi), c * np.sin(m * phi)
    out = [np.concatenate([-sin, cos]) if k == "Q" else np.concatenate([cos, sin])
           for k in parts]
    return np.ascontiguousarray(np.stack(out))


@functools.lru_cache(maxsize=16)
def _analysis_tables(keep: int, n_theta: int, n_phi: int) -> tuple[np.ndarray, np.ndarray]:
    r"""(A[k, (s, m)], W[m, j, l]): :math:`\int Z_l^{\pm m} h = c_m \sum_j w_j \bar P_l^m
    (\theta_j) \sum_k \tfrac{2\pi}{n_\phi} h(\theta_j, \phi_k) [\cos|\sin](m\phi_k)`."""
    m = np.arange(keep + 1)[None, :]
    phi = 2 * np.pi * np.arange(n_phi)[:, None] / n_phi
    c = np.where(m == 0, 1.0, math.sqrt(2.0)) * 2 * np.pi / n_phi
    dft = np.concatenate([c * np.cos(m * phi), c * np.sin(m * phi)], axis=1)
    cos, sin, w = _nodes(n_theta)
    p = np.zeros((keep + 1, n_theta, keep + 1))
    for l, mm, row in _legendre_rows(keep, cos, sin):
        p[mm, :, l] = row * w
    return np.ascontiguousarray(dft), p


@functools.lru_cache(maxsize=32)
def _order_gather(lmax: int) -> np.ndarray:
    """idx[m, s, l]: flat index of (l, m) (s = 0) or (l, -m) (s = 1), or (L+1)^2 (a zero
    slot) where l < m or (s = 1, m = 0)."""
    m = np.arange(lmax + 1)[:, None]
    l = np.arange(lmax + 1)[None, :]
    zero = (lmax + 1) ** 2
    cos = np.where(l >= m, l * l + l + m, zero)
    sin = np.where((l >= m) & (m > 0), l * l + l - m, zero)
    return np.stack([cos, sin], axis=1)


@functools.lru_cache(maxsize=32)
def _order_scatter(keep: int) -> np.ndarray:
    """For each flat (l, mu) up to ``keep``: its position in the (s, m, l) layout, flattened."""
    l = np.repeat(np.arange(keep + 1), 2 * np.arange(keep + 1) + 1)
    mu = np.arange((keep + 1) ** 2) - l * l - l
    s = (mu < 0).astype(np.int64)
    return (s * (keep + 1) + np.abs(mu)) * (keep + 1) + l


_HOST_TABLES: dict = {}


def _table(ctx, key, build, dtype):
    """``cached_constant``, with the NumPy tables also cached per dtype (``cached_constant``
    converts a NumPy table on every call: 10 MB per call at L = 64 in float32)."""
    if not ctx.is_numpy:
        return cached_constant(key, build, ctx, dtype)
    full = (key, np.dtype(dtype).name)
    value = _HOST_TABLES.get(full)
    if value is None:
        if len(_HOST_TABLES) > 64:
            _HOST_TABLES.clear()
        value = np.ascontiguousarray(build(), dtype=dtype)
        value.flags.writeable = False
        _HOST_TABLES[full] = value
    return value


def _take_last(xp, a, index):
    flat = xp.reshape(index, (-1,))
    out = xp.take(a, flat, axis=a.ndim - 1)
    return xp.reshape(out, tuple(a.shape[:-1]) + tuple(index.shape))


def _device(a):
    import array_api_compat

    return array_api_compat.device(a)


def _grid_values(a, lmax, parts, n_theta, n_phi, ctx):
    """Grid values (parts, n_theta, n_phi, rows) of the function and its surface derivatives.

    Rows last, so that both rounds are large matrix products and the large grid arrays are
    written by a matrix product in place (no transposed copy): per order m the Legendre sums,
    (parts n_theta, L+1) @ (L+1, 2 rows); then per part and node the sums over the orders,
    (n_phi, 2(L+1)) @ (2(L+1), rows). Every step is O(L^3) per row.
    """
    xp = ctx.xp
    dt = a.dtype
    n_m, n_p, rows = lmax + 1, len(parts), a.shape[0]
    key = ("gaunt.cg", lmax, n_theta, n_phi, parts)
    table = _table(ctx, key + ("T",), lambda: _legendre_table_t(lmax, n_theta, parts),
                   dt)
    dft = _table(ctx, key + ("B",), lambda: _synthesis_dft_t(lmax, n_phi, parts), dt)
    gather = _table(ctx, ("gaunt.cg.gather", lmax), lambda: _order_gather_t(lmax),
                    xp.int64)
    zero = xp.zeros((1, rows), dtype=dt, device=_device(a))
    at = xp.concat([xp.permute_dims(a, (1, 0)), zero], axis=0)  # (n + 1, rows)
    coef = xp.reshape(xp.take(at, xp.reshape(gather, (-1,)), axis=0), (n_m, n_m, 2 * rows))
    val = xp.matmul(table, coef)  # (M, parts n_theta, 2 rows): [m, (p, j), (s, r)]
    val = xp.reshape(val, (n_m, n_p, n_theta, 2, rows))
    val = xp.reshape(xp.permute_dims(val, (1, 2, 3, 0, 4)), (n_p, n_theta, 2 * n_m, rows))
    return xp.matmul(dft, val)  # (parts, 1, n_phi, 2M) @ (parts, n_theta, 2M, rows)


def _grid_project(h, keep, n_theta, n_phi, ctx):
    """Coefficients (rows, H, (keep+1)^2) of grid values h (H, n_theta, n_phi, rows): the φ
    quadrature per node, (2M, n_phi) @ (n_phi, rows), then the Gauss-Legendre sums per order,
    (L+1, n_theta) @ (n_theta, H 2 rows)."""
    xp = ctx.xp
    n_h, rows = h.shape[0], h.shape[-1]
    n_m = keep + 1
    key = ("gaunt.cg.analysis", keep, n_theta, n_phi)
    dft = _table(ctx, key + ("A",), lambda: _analysis_tables_t(keep, n_theta, n_phi)[0],
                 h.dtype)
    w = _table(ctx, key + ("W",), lambda: _analysis_tables_t(keep, n_theta, n_phi)[1],
               h.dtype)
    u = xp.matmul(dft, h)  # (H, n_theta, 2M, rows): [h, j, (s, m), r]
    u = xp.reshape(u, (n_h, n_theta, 2, n_m, rows))
    u = xp.reshape(xp.permute_dims(u, (3, 1, 0, 2, 4)), (n_m, n_theta, n_h * 2 * rows))
    z = xp.matmul(w, u)  # (M, l, H 2 rows)
    z = xp.reshape(z, (n_m, n_m, n_h, 2, rows))
    z = xp.reshape(xp.permute_dims(z, (4, 2, 3, 0, 1)), (rows, n_h, 2 * n_m * n_m))
    scatter = _table(ctx, ("gaunt.cg.scatter", keep), lambda: _order_scatter(keep),
                     xp.int64)
    return xp.take(z, scatter, axis=2)


@functools.lru_cache(maxsize=16)
def _legendre_table_t(lmax, n_theta, parts):
    """T[m, (part, j), l]: :func:`_legendre_table` with the degree last."""
    t = _legendre_table(lmax, n_theta, parts)
    return np.ascontiguousarray(np.transpose(t, (0, 2, 1)))


@functools.lru_cache(maxsize=16)
def _synthesis_dft_t(lmax, n_phi, parts):
    """B[part, 1, k, (s, m)]: :func:`_synthesis_dft` transposed, broadcasting over the nodes."""
    return np.ascontiguousarray(np.transpose(_synthesis_dft(lmax, n_phi, parts),
                                             (0, 2, 1))[:, None])


@functools.lru_cache(maxsize=16)
def _analysis_tables_t(keep, n_theta, n_phi):
    """(A[(s, m), k], W[m, l, j]): :func:`_analysis_tables` transposed."""
    dft, w = _analysis_tables(keep, n_theta, n_phi)
    return np.ascontiguousarray(dft.T), np.ascontiguousarray(np.transpose(w, (0, 2, 1)))


@functools.lru_cache(maxsize=32)
def _order_gather_t(lmax: int) -> np.ndarray:
    """idx[m, l, s]: :func:`_order_gather` with the (cos, sin) axis last."""
    return np.ascontiguousarray(np.transpose(_order_gather(lmax), (0, 2, 1)))


def _grid_method(a, b, l1, l2, keep, paths, ctx):
    """(rows, n_paths, (keep+1)^2): the even part (f g) and/or the odd part ({f, g})."""
    xp = ctx.xp
    _, n_theta, n_phi = _grid_sizes(l1, l2, keep)
    need = (("P",) if paths != "odd" else ()) + (("dP", "Q") if paths != "even" else ())
    fa = _grid_values(a, l1, need, n_theta, n_phi, ctx)
    fb = _grid_values(b, l2, need, n_theta, n_phi, ctx)
    out = []
    if paths != "odd":
        out.append(fa[0, ...] * fb[0, ...])
    if paths != "even":
        k = 1 if paths == "all" else 0
        # {f, g} = d_theta f (d_phi g / sin) - (d_phi f / sin) d_theta g
        out.append(fa[k, ...] * fb[k + 1, ...] - fa[k + 1, ...] * fb[k, ...])
    return _grid_project(xp.stack(out, axis=0), keep, n_theta, n_phi, ctx)


def _grid_row_bytes(l1, l2, keep, paths, itemsize):
    _, n_theta, n_phi = _grid_sizes(l1, l2, keep)
    n_parts = {"even": 1, "odd": 2, "all": 3}[paths]
    m = max(l1, l2, keep) + 1
    values = 2 * n_parts * n_theta * n_phi * itemsize * 2 + 3 * n_theta * n_phi * itemsize
    legendre = 2 * n_parts * n_theta * m * 2 * itemsize * 3
    return float(values + legendre)


# ----------------------------------------------------------------------- direct method


@functools.lru_cache(maxsize=32)
def _padded(l1, l2, keep, kind):
    table = (gaunt_table(l1, lmax2=l2, lmax_out=keep) if kind == "even"
             else _bracket_table_cached(l1, l2, keep, "real", switch_context().backend))
    return padded_segments(table, (keep + 1) ** 2)


def _direct_method(a, b, l1, l2, keep, paths, ctx):
    """The sparse contraction with the Gaunt and bracket tables (the reference)."""
    xp = ctx.xp
    out = []
    for kind in (("even",) if paths != "odd" else ()) + (("odd",) if paths != "even" else ()):
        i1, i2, vals = _padded(l1, l2, keep, kind)
        key = ("gaunt.cg.direct", l1, l2, keep, kind)
        g1 = _table(ctx, key + ("i1",), lambda i1=i1: i1, xp.int64)
        g2 = _table(ctx, key + ("i2",), lambda i2=i2: i2, xp.int64)
        gv = _table(ctx, key + ("v",), lambda v=vals: v, a.dtype)
        out.append(xp.sum(_take_last(xp, a, g1) * _take_last(xp, b, g2) * gv, axis=-1))
    return xp.stack(out, axis=1)


def _direct_row_bytes(l1, l2, keep, paths, itemsize):
    total = 0
    for kind in (("even",) if paths != "odd" else ()) + (("odd",) if paths != "even" else ()):
        i1, _, _ = _padded(l1, l2, keep, kind)
        total += i1.size * itemsize * 3
    return float(total)


# ------------------------------------------------------------------------------ public


def cg_tensor_product(
    x: Any,
    y: Any,
    *,
    paths: str = "all",
    lmax_out: int | None = None,
    method: str = "grid",
    weights: Any = None,
    check_finite: bool = True,
) -> Array:
    r"""The complete Clebsch-Gordan tensor product, channel-wise: every path
    :math:`l_1 \otimes l_2 \to l_3`, the Gaunt (even) ones and the antisymmetric (odd) ones.

    Parameters
    ----------
    x : array_like, shape (..., (L1+1)**2)
        Real-basis coefficients (this package's :math:`Z_l^m`; :func:`from_e3nn` maps e3nn's
        basis); the leading (batch, channel) axes broadcast with those of ``y``.
    y : array_like, shape (..., (L2+1)**2)
    paths : {"all", "even", "odd"}
        ``"even"``: the paths with :math:`l_1+l_2+l_3` even (the Gaunt product, equal to
        :func:`gaunt_tensor_product`); ``"odd"``: the antisymmetric paths, through the surface
        bracket; ``"all"``: both, on a new axis of length 2 (even first).
    lmax_out : int, optional
        Highest output degree (default ``L1 + L2``).
    method : {"grid", "direct"}
        ``"grid"``: values and surface gradients of both factors on a Gauss-Legendre (in
        :math:`\cos\theta`) x uniform (in φ) grid exact for the band-limited integrand (a
        Legendre transform per order, then the sums over the orders per node, both as large
        matrix products, :math:`O(L^3)` per row), pointwise product and bracket, projection
        back the same way; ``"direct"``: sparse
        contraction with the coefficient tables (:func:`gaunt_table`, :func:`bracket_table`),
        the reference, :math:`O(L^5)` per row.
    weights : (w1, w2, w_out), optional
        Per-degree weights as in :func:`gaunt_tensor_product`: each None or array_like with
        last axis ``L+1``, broadcasting with the leading axes; ``w1`` and ``w2`` scale the
        inputs, ``w_out`` the output (both parts).
    check_finite : bool
        Check the inputs for NaN and infinities (default; one reduction).

    Returns
    -------
    array
        ``paths="even"`` or ``"odd"``: shape (..., (lmax_out+1)**2); ``"all"``: shape
        (..., 2, (lmax_out+1)**2), ``[..., 0, :]`` the even and ``[..., 1, :]`` the odd part.
        The even part is :math:`\int Z_{l_3}^{m_3} f g`, the odd part
        :math:`\int Z_{l_3}^{m_3} \{f, g\}`, with :math:`f = \sum x_{lm} Z_l^m`,
        :math:`g = \sum y_{lm} Z_l^m`. float32 in, float32 out.

    Raises
    ------
    ValueError
        A coefficient axis that is not a square, leading axes that do not broadcast, NaN or
        infinity, an unknown ``paths`` or ``method``, malformed weights, a request (tables,
        output, working memory) too large for memory (the message gives the size).
    TypeError
        Complex or non-numeric input, arrays of different libraries or devices.

    Notes
    -----
    Path by path, the coefficient of :math:`l_1 \otimes l_2 \to l_3` is
    :func:`cg_path_constant` :math:`K` times the Clebsch-Gordan coefficient (complex basis; the
    real basis by the unitary change :math:`Z = UY`). The odd part is the coupling of the
    bracket :math:`\{f, g\} = \hat r\cdot(\nabla_S f\times\nabla_S g)`, zero on the even
    paths and on the odd ones

    .. math:: \int \overline{Y_{l_3}^{m_3}}\,\{Y_{l_1}^{m_1}, Y_{l_2}^{m_2}\}
       = i\sqrt{\tfrac{(2l_1+1)(2l_2+1)(2l_3+1)}{4\pi}}\sqrt{l_1(l_1+1)l_2(l_2+1)}
       \begin{pmatrix} l_1&l_2&l_3\\1&-1&0\end{pmatrix}(-1)^{m_3}
       \begin{pmatrix} l_1&l_2&l_3\\m_1&m_2&-m_3\end{pmatrix},

    (odd paths have :math:`l_1, l_2 \ge 1` and :math:`l_3 \le l_1+l_2-1`). So every path of
    the Clebsch-Gordan product is present (K is nonzero on each, checked for l <= 24 by the
    test suite), and each output degree is a sum over the paths that reach it (as in the Gaunt
    product; isolate one path by giving inputs of one degree). Parity: for inputs of parity
    :math:`(-1)^l` (like :math:`Y_l`, e3nn's ``"0e+1o+2e+..."``) the even part has parity
    :math:`(-1)^{l_3}` and the odd part :math:`-(-1)^{l_3}` (a pseudotensor: the bracket is odd
    under inversion). e3nn's ``FullTensorProduct`` path output equals this one, after
    :func:`to_e3nn`, times :func:`e3nn_path_factor` (modulus :math:`1/|K|`: e3nn's
    normalisation ``"component"`` is :math:`\sqrt{2l_3+1}` times a unit-norm Clebsch-Gordan
    tensor).

    The grid holds :math:`n_\theta = \lfloor D/2\rfloor + 1` Gauss-Legendre nodes and
    :math:`n_\phi = D + 1` uniform angles, :math:`D = L_1 + L_2 + L_{out}`: the integrands
    :math:`Z_{l_3} f g` and :math:`Z_{l_3}\{f, g\}` are spherical polynomials of degree at
    most D, integrated exactly. The θ-derivatives come from the ladder relation of the
    Legendre functions, :math:`\partial_\phi f/\sin\theta` from
    :math:`m\bar P_l^m/\sin\theta` at the nodes (never at a pole).

    Arrays of any library, as :func:`gaunt_tensor_product` (the code is written once against
    the array API standard); through torch, autograd differentiates it.

    References
    ----------
    Luo, Chen, Krishnapriyan, ICLR 2024, arXiv:2401.10216 (the Gaunt product).
    Xie, Daigavane, Kotak, Smidt, "The Price of Freedom: Exploring Expressivity and Runtime
    Tradeoffs in Equivariant Tensor Products", ICML 2025, arXiv:2506.13523 (the Gaunt
    product misses the antisymmetric paths; Gaunt products on a spherical grid).
    Xie, Daigavane, Kotak, Smidt, "Asymptotically Fast Clebsch-Gordan Tensor Products with
    Vector Spherical Harmonics", arXiv:2602.21466 (2026) (the missing paths from vector
    signals; a generalized Gaunt formula).

    Examples
    --------
    >>> import numpy as np
    >>> ex = np.array([0.0, 0.0, 0.0, 1.0])    # Z_1^1, proportional to -x
    >>> ey = np.array([0.0, 1.0, 0.0, 0.0])    # Z_1^-1, proportional to -y
    >>> z = cg_tensor_product(ex, ey, paths="odd")   # the cross product: along Z_1^0 (z)
    >>> np.round(z, 6) + 0.0
    array([0.      , 0.      , 0.488603, 0.      , 0.      , 0.      ,
           0.      , 0.      , 0.      ])
    >>> bool(np.allclose(z, cg_tensor_product(ex, ey, paths="odd", method="direct")))
    True
    """
    ctx = array_context(x, y, *_weight_arrays(weights), names=_ARGS)
    run = implementation("gaunt.cg_tensor_product", ctx.backend)
    return run(x, y, paths=paths, lmax_out=lmax_out, method=method, weights=weights,
               check_finite=check_finite, ctx=ctx)


def _weight_arrays(weights):
    if isinstance(weights, list | tuple) and len(weights) == 3:
        return tuple(weights)
    return ()


def _cg_tensor_product(x, y, *, paths, lmax_out, method, weights, check_finite, ctx):
    from ._array import _weights
    from ._product import _output_lmax, _unpack_weights

    if paths not in PATHS:
        raise ValueError(f"paths must be one of {', '.join(map(repr, PATHS))}; got {paths!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; "
                         f"got {method!r}")
    xp = ctx.xp
    a, l1 = coefficient_array(x, "x", "real", ctx=ctx, check_finite=False)
    b, l2 = coefficient_array(y, "y", "real", ctx=ctx, check_finite=False)
    if check_finite:
        check_all_finite(xp, {"x": a, "y": b})
    dtype = xp.result_type(a.dtype, b.dtype)
    lo = _output_lmax(lmax_out, l1 + l2)
    w1, w2, w3 = _unpack_weights(weights)
    w1 = _weights(w1, l1, "weights[0]", dtype, ctx)
    w2 = _weights(w2, l2, "weights[1]", dtype, ctx)
    w3 = _weights(w3, lo, "weights[2]", dtype, ctx)
    shapes = [tuple(a.shape[:-1]), tuple(b.shape[:-1])]
    shapes += [tuple(w.shape[:-1]) for w in (w1, w2) if w is not None]
    try:
        batch = np.broadcast_shapes(*shapes)
    except ValueError as exc:
        raise ValueError(
            "the leading (batch and channel) axes of x, y and the weights must broadcast; got "
            + ", ".join(map(str, shapes))) from exc
    if w3 is not None:
        try:
            batch = np.broadcast_shapes(batch, tuple(w3.shape[:-1]))
        except ValueError as exc:
            raise ValueError(f"weights[2] with leading shape {tuple(w3.shape[:-1])} does not "
                             f"broadcast with the batch {batch}") from exc
    keep = min(lo, l1 + l2)
    n_paths = 2 if paths == "all" else 1
    rows = math.prod(batch)
    itemsize = 4 if dtype == xp.float32 else 8
    # Refused up front: the tables, the output and the working memory of one chunk of rows.
    if method == "grid":
        _, n_theta, n_phi = _grid_sizes(l1, l2, keep)
        check_memory(_grid_table_bytes(l1, l2, keep, n_theta, n_phi),
                     f"the grid tables of cg_tensor_product for degrees {l1} x {l2} -> {keep} "
                     f"({n_theta} x {n_phi} points)", hint="lower the degrees", ctx=ctx)
        per_row = _grid_row_bytes(l1, l2, keep, paths, itemsize)
    else:
        check_memory(_bracket_table_bytes(l1, l2, keep) * 2,
                     f"the direct method's tables for degrees {l1} x {l2} -> {keep}",
                     hint="use method='grid'", ctx=ctx)
        per_row = _direct_row_bytes(l1, l2, keep, paths, itemsize)
    per_row += ((l1 + 1) ** 2 + (l2 + 1) ** 2 + n_paths * (lo + 1) ** 2 * 2) * itemsize
    out_bytes = float(rows) * n_paths * (lo + 1) ** 2 * itemsize
    budget = min(_CHUNK_BYTES, max(memory_limit(ctx) - out_bytes, 0) / 4)
    # Rows per chunk: few enough that one chunk's grids stay in the CPU caches (measured on
    # the grid method: 3-4x faster at L = 8 than one chunk of 1024 rows), at least 16 for
    # efficient matrix products, and within the memory budget.
    cache_rows = max(16, min(256, int(_CACHE_BYTES // per_row)))
    step = max(1, min(rows, cache_rows, int(budget // per_row))) if rows else 1
    check_memory(out_bytes + step * per_row,
                 f"cg_tensor_product (paths={paths!r}, method={method!r}): the output of "
                 f"{rows} rows x {n_paths} x {(lo + 1) ** 2} coefficients "
                 f"({format_bytes(out_bytes)}) plus {format_bytes(step * per_row)} of working "
                 f"memory for {step} row(s) at a time",
                 hint="process the rows in smaller batches or lower lmax_out", ctx=ctx)
    a = xp.astype(a, dtype) if a.dtype != dtype else a
    b = xp.astype(b, dtype) if b.dtype != dtype else b
    if w1 is not None:
        a = a * w1
    if w2 is not None:
        b = b * w2
    a = xp.reshape(xp.broadcast_to(a, tuple(batch) + (a.shape[-1],)), (rows, a.shape[-1]))
    b = xp.reshape(xp.broadcast_to(b, tuple(batch) + (b.shape[-1],)), (rows, b.shape[-1]))
    compute = _grid_method if method == "grid" else _direct_method
    chunks = [compute(a[s:s + step, ...], b[s:s + step, ...], l1, l2, keep, paths, ctx)
              for s in range(0, rows, step)]
    if not chunks:
        z = xp.zeros((0, n_paths, (keep + 1) ** 2), dtype=dtype, device=ctx.device)
    else:
        z = chunks[0] if len(chunks) == 1 else xp.concat(chunks, axis=0)
    n_total = (lo + 1) ** 2
    if n_total > z.shape[-1]:
        pad = xp.zeros(tuple(z.shape[:-1]) + (n_total - z.shape[-1],), dtype=z.dtype,
                       device=ctx.device)
        z = xp.concat([z, pad], axis=-1)
    z = xp.reshape(z, tuple(batch) + (n_paths, n_total))
    if paths != "all":
        z = z[..., 0, :]
    if w3 is not None:
        z = z * (xp.expand_dims(w3, axis=-2) if paths == "all" else w3)
    return xp.astype(z, dtype) if z.dtype != dtype else z


for _key in ("numpy", "numba", "cupy", "array"):
    register("gaunt.cg_tensor_product", _key, _cg_tensor_product)
del _key

"""Scalar loops shared by the NumPy backend (run as Python) and Numba (compiled in ``_cpu.py``).

The Wigner 3j symbols are computed for all admissible ``l3`` at once by the three-term
recursion of Schulten and Gordon (1975), run from both ends of the range towards the
classically allowed region (as Luscombe and Luban 1998 and SLATEC ``drc3jj`` do), so no
factorial and no alternating sum appears: the relative accuracy stays near machine precision at
degrees in the hundreds. Every function here uses only scalar arithmetic and NumPy arrays so
that the same source compiles with :func:`numba.njit`.
"""

from __future__ import annotations

import math

import numpy as np

_RESCALE = 1e150


def _c_coef(j, l1, l2, m3):
    """C(j) of the recursion in l3 = j (zero at both ends of the range)."""
    a = j * j - (l1 - l2) * (l1 - l2)
    b = (l1 + l2 + 1) * (l1 + l2 + 1) - j * j
    c = j * j - m3 * m3
    return math.sqrt(max(a * b * c, 0.0))


def _d_coef(j, l1, l2, m1, m2, m3):
    return -(2.0 * j + 1.0) * (
        l1 * (l1 + 1.0) * m3 - l2 * (l2 + 1.0) * m3 - j * (j + 1.0) * (m2 - m1)
    )


def wigner_3j_l3(l1, l2, m1, m2, out, work):
    """Fill ``out[k]`` with (l1 l2 l3; m1 m2 -m1-m2) for l3 = l3min + k; return l3min, count.

    ``out`` and ``work`` must hold at least ``2 * min(l1, l2) + 1`` values. Returns count 0 when
    every symbol vanishes (|m| > l).
    """
    m3 = -m1 - m2
    l3min = max(abs(l1 - l2), abs(m3))
    l3max = l1 + l2
    if abs(m1) > l1 or abs(m2) > l2 or l3min > l3max:
        return l3min, 0
    n = l3max - l3min + 1
    fl1 = float(l1)
    fl2 = float(l2)
    fm1 = float(m1)
    fm2 = float(m2)
    fm3 = float(m3)
    if n == 1:
        out[0] = 1.0
    else:
        # The matching index: the middle of the classically allowed (oscillatory) region,
        # where both one-sided recursions are stable; failing that, the index closest to it.
        lo = -1
        hi = -1
        best = 0
        best_val = np.inf
        for k in range(1, n - 1):
            j = float(l3min + k)
            a = j * _c_coef(j + 1.0, fl1, fl2, fm3)
            c = (j + 1.0) * _c_coef(j, fl1, fl2, fm3)
            b = _d_coef(j, fl1, fl2, fm1, fm2, fm3)
            disc = b * b - 4.0 * a * c
            if disc < 0.0:
                if lo < 0:
                    lo = k
                hi = k
            scale = 4.0 * a * c
            val = disc / scale if scale > 0.0 else np.inf
            if val < best_val:
                best_val = val
                best = k
        if n == 2:
            mid = 0
        elif lo >= 0:
            mid = (lo + hi) // 2
        else:
            mid = best
        # Forward from l3min up to index mid + 1 (into out).
        out[0] = 1.0
        j0 = float(l3min)
        if l3min == 0:
            # (l l 1; m -m 0) / (l l 0; m -m 0) = m / sqrt(l (l + 1)).
            out[1] = fm1 / math.sqrt(fl1 * (fl1 + 1.0))
        else:
            out[1] = -_d_coef(j0, fl1, fl2, fm1, fm2, fm3) / (
                j0 * _c_coef(j0 + 1.0, fl1, fl2, fm3)
            )
        top = min(mid + 1, n - 1)
        for k in range(1, top):
            j = float(l3min + k)
            num = _d_coef(j, fl1, fl2, fm1, fm2, fm3) * out[k] + (j + 1.0) * _c_coef(
                j, fl1, fl2, fm3
            ) * out[k - 1]
            out[k + 1] = -num / (j * _c_coef(j + 1.0, fl1, fl2, fm3))
            if abs(out[k + 1]) > _RESCALE:
                for q in range(k + 2):
                    out[q] /= _RESCALE
        if n > 2:
            # Backward from l3max down to index mid - 1 (into work).
            bottom = mid - 1
            work[n - 1] = 1.0
            jm = float(l3max)
            work[n - 2] = -_d_coef(jm, fl1, fl2, fm1, fm2, fm3) / (
                (jm + 1.0) * _c_coef(jm, fl1, fl2, fm3)
            )
            for k in range(n - 2, bottom, -1):
                j = float(l3min + k)
                num = j * _c_coef(j + 1.0, fl1, fl2, fm3) * work[k + 1] + _d_coef(
                    j, fl1, fl2, fm1, fm2, fm3
                ) * work[k]
                work[k - 1] = -num / ((j + 1.0) * _c_coef(j, fl1, fl2, fm3))
                if abs(work[k - 1]) > _RESCALE:
                    for q in range(k - 1, n):
                        work[q] /= _RESCALE
            # Match on the overlap (least squares over three points: robust to a zero there).
            num = 0.0
            den = 0.0
            for k in range(bottom, top + 1):
                num += out[k] * work[k]
                den += work[k] * work[k]
            s = num / den
            # Beyond the matching index the backward values are the stable ones.
            for k in range(mid + 1, n):
                out[k] = s * work[k]
    # Normalise: sum (2 l3 + 1) f^2 = 1, then fix the sign at l3max: (-1)^(l1 - l2 - m3).
    total = 0.0
    big = 0.0
    for k in range(n):
        big = max(big, abs(out[k]))
    for k in range(n):
        v = out[k] / big
        total += (2.0 * (l3min + k) + 1.0) * v * v
    norm = big * math.sqrt(total)
    sign = 1.0 if (l1 - l2 - m3) % 2 == 0 else -1.0
    if out[n - 1] * sign < 0.0:
        norm = -norm
    for k in range(n):
        out[k] = out[k] / norm
    return l3min, n


def gaunt_elements(l1, l2, l3, m1, m2, m3, out):
    """out[i] = integral of Y_l1^m1 Y_l2^m2 Y_l3^m3 (complex, sympy's ``gaunt``)."""
    size = l1.shape[0]
    lmax = 0
    for i in range(size):
        lmax = max(lmax, l1[i], l2[i])
    buf = np.empty(2 * lmax + 2)
    buf0 = np.empty(2 * lmax + 2)
    work = np.empty(2 * lmax + 2)
    for i in range(size):
        a, b, c = l1[i], l2[i], l3[i]
        out[i] = 0.0
        if m1[i] + m2[i] + m3[i] != 0 or (a + b + c) % 2 == 1:
            continue
        if c < abs(a - b) or c > a + b or abs(m1[i]) > a or abs(m2[i]) > b or abs(m3[i]) > c:
            continue
        start, n = wigner_3j_l3(a, b, m1[i], m2[i], buf, work)
        if n == 0 or c < start:
            continue
        start0, n0 = wigner_3j_l3(a, b, 0, 0, buf0, work)
        pref = math.sqrt((2.0 * a + 1.0) * (2.0 * b + 1.0) * (2.0 * c + 1.0) / (4.0 * math.pi))
        out[i] = pref * buf0[c - start0] * buf[c - start]


def _u_entry(mu, m):
    """U^mu_m of the real <- complex basis change (sympy's ``real_gaunt`` convention)."""
    s2 = 1.0 / math.sqrt(2.0)
    if mu == 0:
        return complex(1.0, 0.0) if m == 0 else complex(0.0, 0.0)
    if mu > 0:
        if m == mu:
            return complex(s2, 0.0)
        if m == -mu:
            return complex(s2 if mu % 2 == 0 else -s2, 0.0)
        return complex(0.0, 0.0)
    if m == mu:
        return complex(0.0, s2 if (-mu) % 2 == 0 else -s2)
    if m == -mu:
        return complex(0.0, -s2)
    return complex(0.0, 0.0)


def real_selection(l1, l2, l3, mu1, mu2, mu3):
    """The exact selection rules of the real Gaunt coefficient."""
    if (l1 + l2 + l3) % 2 == 1 or l3 < abs(l1 - l2) or l3 > l1 + l2:
        return False
    if abs(mu1) > l1 or abs(mu2) > l2 or abs(mu3) > l3:
        return False
    a1, a2, a3 = abs(mu1), abs(mu2), abs(mu3)
    if a3 != a1 + a2 and a3 != abs(a1 - a2):
        return False
    # Integers, not booleans: NumPy bools add as logical or.
    negatives = (1 if mu1 < 0 else 0) + (1 if mu2 < 0 else 0) + (1 if mu3 < 0 else 0)
    return negatives % 2 == 0


def real_gaunt_elements(l1, l2, l3, mu1, mu2, mu3, out):
    """out[i] = integral of Z_l1^mu1 Z_l2^mu2 Z_l3^mu3 (real harmonics, sympy's convention)."""
    size = l1.shape[0]
    lmax = 0
    for i in range(size):
        lmax = max(lmax, l1[i], l2[i])
    buf = np.empty(2 * lmax + 2)
    buf0 = np.empty(2 * lmax + 2)
    work = np.empty(2 * lmax + 2)
    for i in range(size):
        a, b, c = l1[i], l2[i], l3[i]
        out[i] = 0.0
        if not real_selection(a, b, c, mu1[i], mu2[i], mu3[i]):
            continue
        start0, n0 = wigner_3j_l3(a, b, 0, 0, buf0, work)
        pref = math.sqrt((2.0 * a + 1.0) * (2.0 * b + 1.0) * (2.0 * c + 1.0) / (4.0 * math.pi))
        pref *= buf0[c - start0]
        total = complex(0.0, 0.0)
        for s1 in range(2):
            p = abs(mu1[i]) if s1 == 0 else -abs(mu1[i])
            if s1 == 1 and p == 0:
                continue
            for s2 in range(2):
                q = abs(mu2[i]) if s2 == 0 else -abs(mu2[i])
                if s2 == 1 and q == 0:
                    continue
                r = -p - q
                if abs(r) != abs(mu3[i]):
                    continue
                u = _u_entry(mu1[i], p) * _u_entry(mu2[i], q) * _u_entry(mu3[i], r)
                start, n = wigner_3j_l3(a, b, p, q, buf, work)
                if n == 0 or c < start:
                    continue
                total += u * buf[c - start]
        out[i] = pref * total.real


def _table_count(lmax1, lmax2, lmax3):
    count = 0
    for l1 in range(lmax1 + 1):
        for l2 in range(lmax2 + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax3) + 1, 2):
                for m1 in range(-l1, l1 + 1):
                    lo = max(-l2, -l3 - m1)
                    hi = min(l2, l3 - m1)
                    if hi >= lo:
                        count += hi - lo + 1
    return count


def complex_table(lmax1, lmax2, lmax3, i1, i2, i3, val):
    """Coupling form G = int Y1 Y2 conj(Y3) for every nonzero entry, flat indices l^2+l+m.

    Returns the number of entries written (the arrays must hold ``_table_count`` entries).
    """
    size = 2 * max(lmax1, lmax2) + 2
    buf = np.empty(size)
    buf0 = np.empty(size)
    work = np.empty(size)
    k = 0
    for l1 in range(lmax1 + 1):
        for l2 in range(lmax2 + 1):
            if abs(l1 - l2) > lmax3:
                continue
            start0, n0 = wigner_3j_l3(l1, l2, 0, 0, buf0, work)
            for m1 in range(-l1, l1 + 1):
                for m2 in range(-l2, l2 + 1):
                    big_m = m1 + m2
                    start, n = wigner_3j_l3(l1, l2, m1, m2, buf, work)
                    if n == 0:
                        continue
                    phase = 1.0 if big_m % 2 == 0 else -1.0
                    first = abs(l1 - l2)
                    for l3 in range(first, min(l1 + l2, lmax3) + 1, 2):
                        if l3 < start:
                            continue
                        pref = math.sqrt(
                            (2.0 * l1 + 1.0) * (2.0 * l2 + 1.0) * (2.0 * l3 + 1.0) / (4.0 * math.pi)
                        )
                        # int Y1 Y2 conj(Y3) = (-1)^M gaunt(l1, l2, l3, m1, m2, -M).
                        i1[k] = l1 * l1 + l1 + m1
                        i2[k] = l2 * l2 + l2 + m2
                        i3[k] = l3 * l3 + l3 + big_m
                        val[k] = phase * pref * buf0[l3 - start0] * buf[l3 - start]
                        k += 1
    return k

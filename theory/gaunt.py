"""Exact and high-precision oracles for :mod:`sci.gaunt`.

* :func:`gaunt`, :func:`real_gaunt`, :func:`wigner_3j`: exact (sympy.physics.wigner), small l.
* :func:`wigner_3j_mp`, :func:`gaunt_mp`: Racah's formula summed in exact rational arithmetic
  (Python integers), one square root at the end in mpmath: correct to the requested digits at
  any degree (used for l up to a few hundred).
* :func:`wigner_small_d_half_pi`: Wigner :math:`d^l_{m'm}(\\pi/2)` exactly (Edmonds'
  convention :math:`\\langle l m'| e^{-i\\beta J_y} | l m\\rangle`), for the closed form of the
  2D Fourier coefficients of the spherical harmonics.

References
----------
Edmonds, *Angular Momentum in Quantum Mechanics* (1957), eqs. (3.7.3) and (4.1.15).
Racah, Phys. Rev. 62, 438 (1942).
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial

import mpmath


def wigner_3j(l1, l2, l3, m1, m2, m3):
    """Exact 3j symbol (sympy expression)."""
    from sympy.physics.wigner import wigner_3j as w3j

    return w3j(l1, l2, l3, m1, m2, m3)


def gaunt(l1, l2, l3, m1, m2, m3):
    """Exact ``int Y1 Y2 Y3`` (sympy expression).

    Examples
    --------
    >>> gaunt(1, 1, 2, 0, 0, 0)
    sqrt(5)/(5*sqrt(pi))
    """
    from sympy.physics.wigner import gaunt as g

    return g(l1, l2, l3, m1, m2, m3)


def real_gaunt(l1, l2, l3, m1, m2, m3):
    """Exact ``int Z1 Z2 Z3`` (sympy expression, sympy's real-harmonic convention)."""
    from sympy.physics.wigner import real_gaunt as rg

    return rg(l1, l2, l3, m1, m2, m3)


def _racah_parts(l1, l2, l3, m1, m2, m3):
    """3j = sign * sqrt(square) * total, with square and total exact rationals (or None)."""
    if m1 + m2 + m3 != 0 or l3 < abs(l1 - l2) or l3 > l1 + l2:
        return None
    if abs(m1) > l1 or abs(m2) > l2 or abs(m3) > l3:
        return None
    square = Fraction(
        factorial(l1 + l2 - l3) * factorial(l1 - l2 + l3) * factorial(-l1 + l2 + l3)
        * factorial(l1 + m1) * factorial(l1 - m1) * factorial(l2 + m2) * factorial(l2 - m2)
        * factorial(l3 + m3) * factorial(l3 - m3),
        factorial(l1 + l2 + l3 + 1),
    )
    kmin = max(0, l2 - l3 - m1, l1 - l3 + m2)
    kmax = min(l1 + l2 - l3, l1 - m1, l2 + m2)
    total = Fraction(0)
    for k in range(kmin, kmax + 1):
        den = (
            factorial(k) * factorial(l1 + l2 - l3 - k) * factorial(l1 - m1 - k)
            * factorial(l2 + m2 - k) * factorial(l3 - l2 + m1 + k) * factorial(l3 - l1 - m2 + k)
        )
        total += Fraction((-1) ** k, den)
    sign = -1 if (l1 - l2 - m3) % 2 else 1
    return sign, square, total


def wigner_3j_mp(l1, l2, l3, m1, m2, m3, dps=40):
    """3j symbol to ``dps`` digits at any degree (exact rational Racah sum).

    Examples
    --------
    >>> float(wigner_3j_mp(1, 1, 0, 1, -1, 0) ** 2)
    0.3333333333333333
    """
    parts = _racah_parts(l1, l2, l3, m1, m2, m3)
    if parts is None:
        return mpmath.mpf(0)
    sign, square, total = parts
    with mpmath.workdps(dps):
        root = mpmath.sqrt(mpmath.mpf(square.numerator) / square.denominator)
        return sign * root * (mpmath.mpf(total.numerator) / total.denominator)


def gaunt_mp(l1, l2, l3, m1, m2, m3, dps=40):
    """``int Y1 Y2 Y3`` to ``dps`` digits at any degree."""
    if (l1 + l2 + l3) % 2:
        return mpmath.mpf(0)
    with mpmath.workdps(dps):
        degeneracy = mpmath.mpf((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1))
        pref = mpmath.sqrt(degeneracy / (4 * mpmath.pi))
        zero = wigner_3j_mp(l1, l2, l3, 0, 0, 0, dps)
        return pref * zero * wigner_3j_mp(l1, l2, l3, m1, m2, m3, dps)


def wigner_small_d_half_pi(l, mp, m):
    """Exact :math:`d^l_{m' m}(\\pi/2)` as a float from exact rationals (Edmonds).

    :math:`d^l_{m'm}(\\beta) = \\sum_s (-1)^{m'-m+s}
    \\frac{\\sqrt{(l+m')!(l-m')!(l+m)!(l-m)!}}{(l+m-s)!\\,s!\\,(m'-m+s)!\\,(l-m'-s)!}
    \\cos^{2l+m-m'-2s}(\\beta/2)\\sin^{m'-m+2s}(\\beta/2)`; at :math:`\\beta=\\pi/2` every power
    of cos and sin is :math:`2^{-l}` in total.

    Examples
    --------
    >>> round(wigner_small_d_half_pi(1, 0, 0), 12)
    0.0
    >>> round(wigner_small_d_half_pi(1, 1, 0) ** 2, 12)
    0.5
    """
    total = Fraction(0)
    for s in range(max(0, m - mp), min(l + m, l - mp) + 1):
        den = factorial(l + m - s) * factorial(s) * factorial(mp - m + s) * factorial(l - mp - s)
        total += Fraction((-1) ** (mp - m + s), den)
    square = factorial(l + mp) * factorial(l - mp) * factorial(l + m) * factorial(l - m)
    with mpmath.workdps(40):
        return float(mpmath.sqrt(square) * (mpmath.mpf(total.numerator) / total.denominator)
                     / mpmath.mpf(2) ** l)


def _u_entry(mu, m):
    """U^mu_m of Z = U Y (sympy's ``real_gaunt`` convention), exact up to 1/sqrt(2)."""
    s2 = 1 / mpmath.sqrt(2)
    if mu == 0:
        return mpmath.mpc(1) if m == 0 else mpmath.mpc(0)
    if mu > 0:
        if m == mu:
            return mpmath.mpc(s2)
        return mpmath.mpc((-1) ** mu * s2) if m == -mu else mpmath.mpc(0)
    if m == mu:
        return mpmath.mpc(0, (-1) ** mu * s2)
    return mpmath.mpc(0, -s2) if m == -mu else mpmath.mpc(0)


def real_gaunt_mp(l1, l2, l3, mu1, mu2, mu3, dps=40):
    """``int Z1 Z2 Z3`` to ``dps`` digits at any degree (sum over the unitary basis change).

    Examples
    --------
    >>> float(real_gaunt_mp(1, 1, 2, -1, 1, -2) * mpmath.sqrt(mpmath.pi))  # sqrt(15)/10
    0.3872983346207417
    """
    with mpmath.workdps(dps):
        total = mpmath.mpc(0)
        for m1 in {mu1, -mu1}:
            for m2 in {mu2, -mu2}:
                m3 = -m1 - m2
                if abs(m3) != abs(mu3):
                    continue
                u = _u_entry(mu1, m1) * _u_entry(mu2, m2) * _u_entry(mu3, m3)
                total += u * gaunt_mp(l1, l2, l3, m1, m2, m3, dps)
        return total.real

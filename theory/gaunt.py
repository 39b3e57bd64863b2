"""Exact and high-precision oracles for :mod:`sci.gaunt`.

* :func:`gaunt`, :func:`real_gaunt`, :func:`wigner_3j`: exact (sympy.physics.wigner), small l.
* :func:`wigner_3j_mp`, :func:`gaunt_mp`: Racah's formula summed in exact rational arithmetic
  (Python integers), one square root at the end in mpmath: correct to the requested digits at
  any degree (used for l up to a few hundred).
* :func:`bracket_gaunt`, :func:`real_bracket_gaunt`: exact coupling coefficients of the surface
  bracket :math:`\\{f, g\\} = \\hat r\\cdot(\\nabla_S f\\times\\nabla_S g)` (the antisymmetric
  paths of the Clebsch-Gordan product), as exact polynomial integrals in sympy.
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


# ----------------------------------------------------------------- the antisymmetric product


def _legendre_parts(l, m):
    """(q, c): the orthonormal P̄_l^m(x) = sqrt(c) (1 - x^2)^{m/2} q(x), Condon-Shortley phase,
    0 <= m <= l; q a sympy Poly over the rationals, c a rational times 1/π."""
    import sympy as sp

    x = sp.Symbol("x")
    # Rodrigues: P_l^m = (-1)^m (1-x^2)^{m/2} d^{l+m}/dx^{l+m} (x^2-1)^l / (2^l l!).
    q = sp.Poly(sp.diff((x**2 - 1) ** l, x, l + m), x, domain="QQ") * sp.Rational(
        (-1) ** m, 2**l * sp.factorial(l))
    c = sp.Rational(2 * l + 1, 4) * sp.factorial(l - m) / sp.factorial(l + m) / sp.pi
    return q, c


def bracket_gaunt(l1, l2, l3, m1, m2, m3):
    r"""Exact :math:`\int \overline{Y_{l_3}^{m_3}}\,\{Y_{l_1}^{m_1}, Y_{l_2}^{m_2}\}\,d\Omega`
    with the surface bracket :math:`\{f, g\} = \hat r\cdot(\nabla_S f\times\nabla_S g)`
    (sympy expression; complex harmonics, Condon-Shortley phase).

    In spherical coordinates :math:`\{f, g\} = (\partial_\theta f\,\partial_\phi g -
    \partial_\phi f\,\partial_\theta g)/\sin\theta`. With :math:`Y_l^m = s\,\bar P_l^{|m|}
    (\cos\theta) e^{im\phi}` (:math:`s = (-1)^m` for m < 0) the φ integral gives
    :math:`2\pi\,\delta_{m_3, m_1+m_2}` and :math:`\partial_\phi Y = imY`; the :math:`1/\sin
    \theta` cancels the area element and :math:`\partial_\theta = -\sin\theta\,d/dx`
    (:math:`x = \cos\theta`) turns the θ integral into

    .. math:: 2\pi i\, s_1 s_2 s_3 \int_{-1}^{1} \bigl(m_1 P_1 P_2' - m_2 P_1' P_2\bigr)
              P_3\, dx .

    With :math:`P_j = (1-x^2)^{a_j/2} q_j` and :math:`P_j' = (1-x^2)^{a_j/2-1}(-a_j x q_j +
    (1-x^2) q_j')` the integrand is :math:`(1-x^2)^{(a_1+a_2+a_3)/2-1}` (an integer power:
    :math:`a_1+a_2+a_3` is even) times a polynomial: the integral is exact rational arithmetic,
    and the result is :math:`i` times a rational times the square root of the three
    normalisations.

    Examples
    --------
    >>> bracket_gaunt(1, 1, 1, 1, 0, 1)   # the cross product, l = 1
    sqrt(3)*I/(2*sqrt(pi))
    """
    import sympy as sp

    if m3 != m1 + m2 or max(abs(m1) - l1, abs(m2) - l2, abs(m3) - l3) > 0:
        return sp.Integer(0)
    if m1 == 0 and m2 == 0:
        return sp.Integer(0)
    x = sp.Symbol("x")
    one = sp.Poly(1 - x**2, x, domain="QQ")
    sign = 1
    parts = []
    for l, m in ((l1, m1), (l2, m2), (l3, m3)):
        if m < 0 and m % 2:
            sign = -sign
        q, c = _legendre_parts(l, abs(m))
        # r: P' = (1 - x^2)^{a/2 - 1} r
        r = sp.Poly(-abs(m) * x, x, domain="QQ") * q + one * q.diff(x)
        parts.append((q, r, c))
    (q1, r1, c1), (q2, r2, c2), (q3, _, c3) = parts
    power = (abs(m1) + abs(m2) + abs(m3)) // 2 - 1
    poly = (m1 * q1 * r2 - m2 * r1 * q2) * q3 * one**power
    antideriv = poly.integrate()
    value = antideriv.eval(1) - antideriv.eval(-1)
    return sp.simplify(2 * sp.pi * sp.I * sign * value * sp.sqrt(c1 * c2 * c3))


def real_bracket_gaunt(l1, l2, l3, mu1, mu2, mu3):
    r"""Exact :math:`\int Z_{l_3}^{\mu_3}\{Z_{l_1}^{\mu_1}, Z_{l_2}^{\mu_2}\}\,d\Omega` for the
    real harmonics of sympy's ``real_gaunt`` convention (:math:`Z = U Y`), summed over the
    unitary basis change from :func:`bracket_gaunt` (sympy expression).

    Examples
    --------
    >>> real_bracket_gaunt(1, 1, 1, 1, -1, 0)   # Z_1^1 ~ -x, Z_1^-1 ~ -y, Z_1^0 ~ z
    sqrt(3)/(2*sqrt(pi))
    """
    import sympy as sp

    minus = sp.Integer(-1)

    def u(mu, m):
        s2 = 1 / sp.sqrt(2)
        if mu == 0:
            return sp.Integer(1) if m == 0 else sp.Integer(0)
        if mu > 0:
            return s2 if m == mu else (minus**mu * s2 if m == -mu else sp.Integer(0))
        if m == mu:
            return sp.I * minus**mu * s2
        return -sp.I * s2 if m == -mu else sp.Integer(0)

    total = sp.Integer(0)
    for m1 in {mu1, -mu1}:
        for m2 in {mu2, -mu2}:
            m3 = m1 + m2
            if abs(m3) != abs(mu3):
                continue
            coef = u(mu1, m1) * u(mu2, m2) * sp.conjugate(u(mu3, m3))
            if coef != 0:
                total += coef * bracket_gaunt(l1, l2, l3, m1, m2, m3)
    return sp.simplify(sp.expand(total))

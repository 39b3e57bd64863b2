"""High-precision oracles for :mod:`sci.chebyshev_tucker`: the sinc exponential sum for 1/r
and the Chebyshev interpolation bounds.

Exponential sum
---------------
sinc_terms_mp                 -- the weights a_k and exponents t_k at any precision
exponential_sum_mp            -- sum_k a_k exp(-t_k^2 r^2) in mpmath
sinc_truncation_bound         -- erfc(r sinh(Mh))/r: the terms dropped after k = M
sinc_discretization_bound     -- Stenger's strip bound 2N(f, d)/(exp(2 pi d/h) - 1)

Chebyshev interpolation
-----------------------
lebesgue_constant_bound       -- 2/pi log(m) + 1 for Lobatto points
gaussian_ellipse_max          -- max of exp(-t^2 z^2) on the Bernstein ellipse E_rho
interpolation_error_bound     -- 4 M rho^{-n}/(rho - 1), times 1 + L + L^2 in 3D
gaussian_interpolation_bound  -- the bound for exp(-t^2 x^2), minimised over rho

References: F. Stenger, "Numerical methods based on sinc and analytic functions" (1993), Thm
3.2.1; L. N. Trefethen, "Approximation Theory and Approximation Practice" (2013), Thm 8.2 and
Thm 15.2; W. Hackbusch, B. Khoromskij, Computing 76 (2006).
"""

from __future__ import annotations

import math

import mpmath

__all__ = [
    "exponential_sum_mp",
    "gaussian_ellipse_max",
    "gaussian_interpolation_bound",
    "interpolation_error_bound",
    "lebesgue_constant_bound",
    "sinc_discretization_bound",
    "sinc_terms_mp",
    "sinc_truncation_bound",
]


def sinc_terms_mp(step, count: int, *, scale=1, dps: int = 50):
    r"""The terms of the sinc sum for :math:`1/r`, in mpmath at ``dps`` digits.

    :math:`t_k = \sinh(kh)/s`, :math:`a_k = \tfrac{2}{\sqrt\pi}h\cosh(kh)/s` (``a_0`` halved),
    ``s = scale`` (the ``r_max`` the sum was scaled to).

    Examples
    --------
    >>> from theory.chebyshev_tucker import sinc_terms_mp
    >>> a, t = sinc_terms_mp(0.5, 2)
    >>> float(a[0]), float(t[1])
    (0.28209479177387814, 0.5210953054937474)
    """
    with mpmath.workdps(dps):
        h, s = mpmath.mpf(step), mpmath.mpf(scale)
        c = 2 / mpmath.sqrt(mpmath.pi)
        a = [c * h * mpmath.cosh(k * h) / s for k in range(count)]
        a[0] /= 2
        t = [mpmath.sinh(k * h) / s for k in range(count)]
        return a, t


def exponential_sum_mp(r, weights, exponents, *, dps: int = 50):
    r""":math:`\sum_k a_k e^{-t_k^2 r^2}` evaluated in mpmath (``weights``/``exponents`` may be
    floats: each is taken exactly as given).

    Examples
    --------
    >>> from theory.chebyshev_tucker import exponential_sum_mp
    >>> float(exponential_sum_mp(1.0, [2.0], [0.0]))
    2.0
    """
    with mpmath.workdps(dps):
        r = mpmath.mpf(r)
        return mpmath.fsum(mpmath.mpf(a) * mpmath.exp(-(mpmath.mpf(t) * r) ** 2)
                           for a, t in zip(weights, exponents, strict=True))


def sinc_truncation_bound(r, step, count: int, *, scale=1) -> float:
    r"""Bound on the terms :math:`k \ge` ``count`` dropped from the sinc sum at distance ``r``:

    .. math:: \sum_{k\ge M}a_ke^{-t_k^2r^2} \le \frac{2}{\sqrt\pi}\int_{(M-1)h}^\infty
       \frac{\cosh u}{s}e^{-r^2\sinh^2u/s^2}du = \frac{\operatorname{erfc}(r\sinh((M-1)h)/s)}{r}

    valid where the integrand decreases, i.e. :math:`r\sinh((M-1)h)/s \ge 1/\sqrt2`.
    """
    with mpmath.workdps(30):
        x = mpmath.mpf(r) * mpmath.sinh((count - 1) * mpmath.mpf(step)) / mpmath.mpf(scale)
        return float(mpmath.erfc(x) / mpmath.mpf(r))


def sinc_discretization_bound(r, step, *, width=None) -> float:
    r"""Stenger's bound on the trapezoidal (sinc) error of
    :math:`\tfrac{2}{\sqrt\pi}\int_0^\infty e^{-r^2\sinh^2u}\cosh u\,du = 1/r`:

    .. math:: |E| \le \frac{N(f, d)}{\sqrt\pi\,(e^{2\pi d/h}-1)},\qquad
       N(f,d) = \int_{-\infty}^{\infty}\big(|f(u+id)|+|f(u-id)|\big)du,

    with :math:`f(u)=e^{-r^2\sinh^2u}\cosh u` (the half-line integral is half the full-line
    one). On the line :math:`\Im u = d`,
    :math:`|f| = e^{-r^2(\sinh^2u\cos 2d-\sin^2d)}\sqrt{\sinh^2u+\cos^2d}`, integrable for
    :math:`d<\pi/4`. Minimised over a few ``d`` in (0, π/4) unless ``width`` is given.
    Unscaled: ``r`` relative to the ``r_max`` of the sum.

    Examples
    --------
    >>> from theory.chebyshev_tucker import sinc_discretization_bound
    >>> sinc_discretization_bound(0.5, 0.2) < 1e-8
    True
    """
    r, h = mpmath.mpf(r), mpmath.mpf(step)

    def n_of(d):
        d = mpmath.mpf(d)
        c2, s2, cd2 = mpmath.cos(2 * d), mpmath.sin(d) ** 2, mpmath.cos(d) ** 2

        def edge(u):
            sh2 = mpmath.sinh(u) ** 2
            return mpmath.exp(-r * r * (sh2 * c2 - s2)) * mpmath.sqrt(sh2 + cd2)

        # The four half-lines (u >< 0, Im u = +-d) contribute equally.
        # Beyond u_end the integrand is below e^-100 of its scale: a finite interval keeps
        # tanh-sinh quadrature away from sinh(1e30).
        u_scale = mpmath.asinh(1 / (r * mpmath.sqrt(c2)))
        u_end = mpmath.asinh(mpmath.sqrt((100 + r * r * s2) / (r * r * c2))) + 2
        return 4 * mpmath.quad(edge, [0, u_scale, u_end])

    with mpmath.workdps(20):
        widths = [width] if width is not None else [
            float(mpmath.pi) / 4 * f for f in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
        ]
        best = min(n_of(d) / (mpmath.sqrt(mpmath.pi) * (mpmath.exp(2 * mpmath.pi * d / h) - 1))
                   for d in widths)
        return float(best)


def lebesgue_constant_bound(m: int) -> float:
    r"""Upper bound :math:`\tfrac{2}{\pi}\log(m) + 1` on the Lebesgue constant of ``m``
    Lobatto points (Trefethen, ATAP Thm 15.2, degree ``n = m - 1``: :math:`\tfrac2\pi
    \log(n+1)+1`)."""
    return 2.0 / math.pi * math.log(m) + 1.0


def gaussian_ellipse_max(t, rho) -> float:
    r"""Maximum of :math:`|e^{-t^2z^2}|` on the Bernstein ellipse :math:`E_\rho`:
    :math:`\exp(t^2(\rho-\rho^{-1})^2/4)`, at the ends of the minor axis (:math:`z = \pm
    i(\rho-\rho^{-1})/2`, where :math:`\Re z^2` is least)."""
    return math.exp(t * t * (rho - 1.0 / rho) ** 2 / 4.0)


def interpolation_error_bound(bound_m, rho, degree: int, *, dim: int = 1) -> float:
    r"""Trefethen's Thm 8.2 for the Chebyshev interpolant of degree ``n``,
    :math:`4M\rho^{-n}/(\rho-1)`, and in ``dim`` = 3 the tensor-product version
    :math:`(1+\Lambda+\Lambda^2)\,4M\rho^{-n}/(\rho-1)` (interpolate one mode at a time,
    each later step amplified by the Lebesgue constant :math:`\Lambda`)."""
    one = 4.0 * bound_m * rho ** (-degree) / (rho - 1.0)
    if dim == 1:
        return one
    lam = lebesgue_constant_bound(degree + 1)
    return sum(lam**k for k in range(dim)) * one


def gaussian_interpolation_bound(t, degree: int, *, dim: int = 1) -> float:
    r""":func:`interpolation_error_bound` for :math:`e^{-t^2x^2}` on [-1, 1] (one factor per
    mode in 3D), minimised over :math:`\rho \in (1, 50]`.

    Examples
    --------
    >>> from theory.chebyshev_tucker import gaussian_interpolation_bound
    >>> gaussian_interpolation_bound(1.0, 20) < 1e-12
    True
    """
    lam = lebesgue_constant_bound(degree + 1)
    amplification = sum(lam**k for k in range(dim))
    best = -math.inf
    for k in range(1, 4000):
        rho = 1.0 + 49.0 * (k / 4000.0) ** 2
        # log of 4 M rho^-n / (rho - 1) with M = gaussian_ellipse_max(t, rho), kept in logs.
        log_b = (t * t * (rho - 1 / rho) ** 2 / 4.0 - degree * math.log(rho)
                 + math.log(4.0 / (rho - 1.0)))
        best = log_b if best == -math.inf else min(best, log_b)
    return amplification * math.exp(best)

"""Exact and arbitrary-precision oracles for :mod:`sci.generalization`.

The Marchenko–Pastur law
------------------------
marchenko_pastur_moment      -- exact k-th moment of the bulk (sympy; Narayana polynomials)
marchenko_pastur_pdf_mp      -- the density at arbitrary precision (mpmath)
marchenko_pastur_moment_mp   -- k-th moment by tanh-sinh quadrature of the density (mpmath)
"""

from __future__ import annotations

import mpmath
import sympy


def marchenko_pastur_moment(k: int, alpha=sympy.Symbol("alpha", positive=True)):
    r"""Exact :math:`\int \lambda^k \rho(\lambda)\,d\lambda` over the bulk of the MP law.

    .. math::

        m_0 = \min(1, \alpha), \qquad
        m_k = \sum_{j=1}^{k} \frac{1}{k}\binom{k}{j}\binom{k}{j-1}\,\alpha^j \quad (k \ge 1),

    the Narayana polynomials: the free Poisson law of rate :math:`\alpha` (the law of
    :math:`XX^\top`, entries of variance :math:`1/N`) has free cumulants all equal to
    :math:`\alpha`, and its atom at zero contributes nothing for :math:`k \ge 1`.

    Parameters
    ----------
    k : int
        Order, ``k >= 0``.
    alpha : sympy expression or number
        :math:`P/N`; a positive symbol by default, so the result is a polynomial.

    Returns
    -------
    sympy.Expr

    References
    ----------
    .. [1] A. Nica, R. Speicher, *Lectures on the Combinatorics of Free Probability*,
       Cambridge University Press (2006), Lecture 12 (free Poisson law).

    Examples
    --------
    >>> from theory.generalization import marchenko_pastur_moment
    >>> marchenko_pastur_moment(3)
    alpha**3 + 3*alpha**2 + alpha
    >>> marchenko_pastur_moment(0, sympy.Rational(1, 2))
    1/2
    """
    if k < 0:
        raise ValueError(f"k must be >= 0; got {k}")
    alpha = sympy.sympify(alpha)
    if k == 0:
        return sympy.Min(1, alpha)
    return sympy.expand(
        sum(
            sympy.Rational(1, k) * sympy.binomial(k, j) * sympy.binomial(k, j - 1) * alpha**j
            for j in range(1, k + 1)
        )
    )


def marchenko_pastur_pdf_mp(lam, alpha, *, dps: int = 50):
    r"""The Marchenko–Pastur density :math:`\sqrt{(\lambda_+-\lambda)(\lambda-\lambda_-)}/(2\pi\lambda)`
    at ``dps`` significant digits (an ``mpmath.mpf``).

    Examples
    --------
    >>> from theory.generalization import marchenko_pastur_pdf_mp
    >>> print(mpmath.nstr(marchenko_pastur_pdf_mp(1, 1, dps=30), 20))
    0.27566444771089602475
    """
    with mpmath.workdps(dps):
        lam, alpha = mpmath.mpf(lam), mpmath.mpf(alpha)
        lower = (1 - mpmath.sqrt(alpha)) ** 2
        upper = (1 + mpmath.sqrt(alpha)) ** 2
        if not lower < lam < upper:
            return mpmath.mpf(0)
        return +(mpmath.sqrt((upper - lam) * (lam - lower)) / (2 * mpmath.pi * lam))


def marchenko_pastur_moment_mp(k: int, alpha, *, dps: int = 30):
    r""":math:`\int \lambda^k\rho(\lambda)\,d\lambda` by tanh-sinh quadrature at ``dps`` digits.

    An oracle independent of :func:`marchenko_pastur_moment` (it integrates the density
    itself); the square-root endpoint singularities are what tanh-sinh handles best.

    Examples
    --------
    >>> from theory.generalization import marchenko_pastur_moment_mp
    >>> print(mpmath.nstr(marchenko_pastur_moment_mp(1, 2, dps=20), 15))
    2.0
    """
    with mpmath.workdps(dps + 10):
        alpha = mpmath.mpf(alpha)
        lower = (1 - mpmath.sqrt(alpha)) ** 2
        upper = (1 + mpmath.sqrt(alpha)) ** 2
        value = mpmath.quad(
            lambda x: x**k * mpmath.sqrt((upper - x) * (x - lower)) / (2 * mpmath.pi * x),
            [lower, 1 if lower < 1 < upper else (lower + upper) / 2, upper],
        )
    with mpmath.workdps(dps):
        return +value

"""Exact and arbitrary-precision oracles for :mod:`sci.generalization`.

The Marchenko–Pastur law
------------------------
marchenko_pastur_moment      -- exact k-th moment of the bulk (sympy; Narayana polynomials)
marchenko_pastur_pdf_mp      -- the density at arbitrary precision (mpmath)
marchenko_pastur_moment_mp   -- k-th moment by tanh-sinh quadrature of the density (mpmath)

Curves of the linear student–teacher model (mpmath quadrature in lambda, any precision)
-------------------------------------------------------------------------------------
generalization_error_mp      -- E_g(t), t = inf included
training_error_mp            -- E_train(t)
generalization_slope_mp      -- dE_g/dt
optimal_stopping_mp          -- t_opt (root of dE_g/dt) and E_g(t_opt)
bayes_error_mp               -- integral of the per-mode Bayes error over the full MP law
ridge_error_exact            -- the closed-form ridge optimum as an exact sympy expression
asymptotic_generalization_exact -- the t -> infinity limit, exact (sympy)
"""

from __future__ import annotations

import mpmath
import sympy

_ALPHA = sympy.Symbol("alpha", positive=True)


def marchenko_pastur_moment(k: int, alpha=_ALPHA):
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
    r"""The Marchenko–Pastur density
    :math:`\sqrt{(\lambda_+-\lambda)(\lambda-\lambda_-)}/(2\pi\lambda)`
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


# ------------------------------------------------------------------------------------------
# Curves of the linear student–teacher model.


def _bulk_quad(f, alpha, s):
    """Integral of f(lambda) rho(lambda) over the MP bulk by tanh-sinh on a split interval.

    The interval is cut at lambda_- + W 10^-k, k = 0..k_max, down to the smallest scale of the
    integrand next to the lower edge: the decay length 1/s of e^{-lambda s}, or the distance
    lambda_- of the pole of 1/lambda (which nears the edge as alpha -> 1); tanh-sinh takes the
    square-root endpoints.
    """
    root = mpmath.sqrt(alpha)
    lower = (1 - root) ** 2
    upper = (1 + root) ** 2
    width = upper - lower
    smallest = width
    if s > 0:
        smallest = min(smallest, 1 / s)
    if lower > 0:
        smallest = min(smallest, lower)
    k_max = int(min(30, max(1, mpmath.ceil(mpmath.log10(width / smallest)) + 2)))
    points = [lower] + [lower + width * mpmath.mpf(10) ** (-k) for k in range(k_max, 0, -1)]
    points.append(upper)

    def integrand(x):
        return f(x) * mpmath.sqrt((upper - x) * (x - lower)) / (2 * mpmath.pi * x)

    return mpmath.quad(integrand, points)


def _mp_params(t, alpha, sigma_w, sigma_eps, sigma_w0, tau):
    alpha = mpmath.mpf(alpha)
    amplitude = mpmath.mpf(sigma_w) ** 2 + mpmath.mpf(sigma_w0) ** 2
    noise = mpmath.mpf(sigma_eps) ** 2
    s = mpmath.mpf(t) / mpmath.mpf(tau)
    return s, alpha, amplitude, noise


def generalization_error_mp(t, alpha, *, sigma_w=1, sigma_eps, sigma_w0=0, tau=1, dps=30):
    r"""E_g(t) of gradient flow, by mpmath quadrature at ``dps`` digits.

    .. math::

        E_g(t) = \int\rho(\lambda)\Big[A e^{-2\lambda t/\tau} + \frac{\sigma_\epsilon^2}
        {\lambda}(1-e^{-\lambda t/\tau})^2\Big]d\lambda + (1-\alpha)_+A + \sigma_\epsilon^2

    (``t = mpmath.inf`` or ``float('inf')`` gives the limit, still by quadrature).

    Examples
    --------
    >>> from theory.generalization import generalization_error_mp
    >>> print(mpmath.nstr(generalization_error_mp(1, 2, sigma_eps=mpmath.sqrt(0.2)), 6))
    0.394671
    """
    with mpmath.workdps(dps + 10):
        s, alpha, amplitude, noise = _mp_params(t, alpha, sigma_w, sigma_eps, sigma_w0, tau)
        if mpmath.isinf(s):
            bulk = _bulk_quad(lambda x: noise / x, alpha, mpmath.mpf(0))
        else:
            bulk = _bulk_quad(
                lambda x: amplitude * mpmath.exp(-2 * x * s)
                + noise * mpmath.expm1(-x * s) ** 2 / x,
                alpha,
                s,
            )
        value = bulk + max(1 - alpha, 0) * amplitude + noise
    with mpmath.workdps(dps):
        return +value


def training_error_mp(t, alpha, *, sigma_w=1, sigma_eps, sigma_w0=0, tau=1, dps=30):
    r"""E_train(t) of gradient flow by mpmath quadrature (continuous part of the MP law only).

    .. math::

        E_{train}(t) = \frac1\alpha\int\rho(\lambda)(\lambda A + \sigma_\epsilon^2)
        e^{-2\lambda t/\tau}d\lambda + \sigma_\epsilon^2(1-1/\alpha)_+

    Examples
    --------
    >>> from theory.generalization import training_error_mp
    >>> print(mpmath.nstr(training_error_mp(0, 2, sigma_eps=mpmath.sqrt(0.2)), 6))
    1.2
    """
    with mpmath.workdps(dps + 10):
        s, alpha, amplitude, noise = _mp_params(t, alpha, sigma_w, sigma_eps, sigma_w0, tau)
        floor = noise * max(1 - 1 / alpha, 0)
        if mpmath.isinf(s):
            value = floor
        else:
            bulk = _bulk_quad(lambda x: (x * amplitude + noise) * mpmath.exp(-2 * x * s), alpha, s)
            value = bulk / alpha + floor
    with mpmath.workdps(dps):
        return +value


def generalization_slope_mp(t, alpha, *, sigma_w=1, sigma_eps, sigma_w0=0, tau=1, dps=30):
    r""":math:`dE_g/dt = (2/\tau)\int\rho\,e^{-\lambda s}[\sigma_\epsilon^2(1-e^{-\lambda s})
    - \lambda A e^{-\lambda s}]d\lambda`, :math:`s = t/\tau`.

    Examples
    --------
    >>> from theory.generalization import generalization_slope_mp
    >>> generalization_slope_mp(0, 2, sigma_eps=1) == -2 * 2  # -2 A times the mean alpha
    True
    """
    with mpmath.workdps(dps + 10):
        s, alpha, amplitude, noise = _mp_params(t, alpha, sigma_w, sigma_eps, sigma_w0, tau)
        value = 2 / mpmath.mpf(tau) * _bulk_quad(
            lambda x: mpmath.exp(-x * s) * (-noise * mpmath.expm1(-x * s)
                                            - x * amplitude * mpmath.exp(-x * s)),
            alpha,
            s,
        )
    with mpmath.workdps(dps):
        return +value


def optimal_stopping_mp(alpha, *, sigma_w=1, sigma_eps, sigma_w0=0, tau=1, dps=20):
    r"""The global optimal stopping time (root of :math:`dE_g/dt`) and :math:`E_g` there.

    The root is bracketed by :math:`[\tau\ln(1+\lambda_+A/\sigma_\epsilon^2)/\lambda_+,
    \tau A/\sigma_\epsilon^2]` (the per-mode optima of the bulk's edges) and found by
    mpmath's Anderson–Björk iteration.

    Examples
    --------
    >>> from theory.generalization import optimal_stopping_mp
    >>> t_opt, error = optimal_stopping_mp(1, sigma_eps=1, dps=15)
    >>> print(mpmath.nstr(error, 6))
    1.62459
    """
    with mpmath.workdps(dps + 5):
        alpha = mpmath.mpf(alpha)
        amplitude = mpmath.mpf(sigma_w) ** 2 + mpmath.mpf(sigma_w0) ** 2
        noise = mpmath.mpf(sigma_eps) ** 2
        upper = (1 + mpmath.sqrt(alpha)) ** 2
        bracket = (mpmath.mpf(tau) * mpmath.log1p(upper * amplitude / noise) / upper,
                   mpmath.mpf(tau) * amplitude / noise)

        def slope(t):
            return generalization_slope_mp(t, alpha, sigma_w=sigma_w, sigma_eps=sigma_eps,
                                           sigma_w0=sigma_w0, tau=tau, dps=dps + 5)

        t_opt = mpmath.findroot(slope, bracket, solver="anderson")
        error = generalization_error_mp(t_opt, alpha, sigma_w=sigma_w, sigma_eps=sigma_eps,
                                        sigma_w0=sigma_w0, tau=tau, dps=dps + 5)
    with mpmath.workdps(dps):
        return +t_opt, +error


def bayes_error_mp(alpha, *, sigma_w=1, sigma_eps, dps=30):
    r"""Bayes error of the linear model, :math:`\int\rho_{full}(\lambda)\,
    \frac{\sigma_{\bar w}^2\sigma_\epsilon^2}{\lambda\sigma_{\bar w}^2 + \sigma_\epsilon^2}
    d\lambda + \sigma_\epsilon^2` by quadrature (the atom at 0 contributes
    :math:`(1-\alpha)_+\sigma_{\bar w}^2`).

    Examples
    --------
    >>> from theory.generalization import bayes_error_mp
    >>> print(mpmath.nstr(bayes_error_mp(1, sigma_eps=1), 15))
    1.61803398874989
    """
    with mpmath.workdps(dps + 10):
        alpha = mpmath.mpf(alpha)
        prior = mpmath.mpf(sigma_w) ** 2
        noise = mpmath.mpf(sigma_eps) ** 2
        bulk = _bulk_quad(lambda x: prior * noise / (x * prior + noise), alpha, mpmath.mpf(0))
        value = bulk + max(1 - alpha, 0) * prior + noise
    with mpmath.workdps(dps):
        return +value


def ridge_error_exact(alpha, *, sigma_w=1, sigma_eps):
    r"""The ridge/Bayes optimum :math:`\sigma_\epsilon^2(1+m)` as an exact sympy expression.

    .. math::

        m = \frac{(1-\alpha-\gamma) + \sqrt{(1-\alpha-\gamma)^2+4\gamma}}{2\gamma},
        \qquad \gamma = \sigma_\epsilon^2/\sigma_{\bar w}^2 .

    Examples
    --------
    >>> from theory.generalization import ridge_error_exact
    >>> ridge_error_exact(1, sigma_eps=1)
    1/2 + sqrt(5)/2
    """
    alpha, sigma_w, sigma_eps = map(sympy.nsimplify, (alpha, sigma_w, sigma_eps))
    gamma = sigma_eps**2 / sigma_w**2
    b = 1 - alpha - gamma
    m = (b + sympy.sqrt(b**2 + 4 * gamma)) / (2 * gamma)
    return sympy.simplify(sigma_eps**2 * (1 + m))


def asymptotic_generalization_exact(alpha, *, sigma_w=1, sigma_eps, sigma_w0=0):
    r"""Exact :math:`E_g(\infty)`: :math:`\sigma_\epsilon^2\alpha/(\alpha-1)` for
    :math:`\alpha>1`, :math:`\sigma_\epsilon^2/(1-\alpha) + (1-\alpha)A` for :math:`\alpha<1`,
    ``sympy.oo`` at :math:`\alpha = 1` (with noise).

    Examples
    --------
    >>> from theory.generalization import asymptotic_generalization_exact
    >>> asymptotic_generalization_exact(sympy.Rational(1, 2), sigma_eps=1)
    5/2
    """
    alpha, sigma_w, sigma_eps, sigma_w0 = map(sympy.nsimplify, (alpha, sigma_w, sigma_eps,
                                                               sigma_w0))
    noise = sigma_eps**2
    amplitude = sigma_w**2 + sigma_w0**2
    if alpha > 1:
        return noise * alpha / (alpha - 1)
    if alpha < 1:
        return noise / (1 - alpha) + (1 - alpha) * amplitude
    return sympy.oo if noise != 0 else sympy.Integer(0)

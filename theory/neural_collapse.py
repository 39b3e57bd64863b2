"""Exact and high-precision counterparts of :mod:`sci.neural_collapse` (the test oracles).

Symbolic (sympy)
----------------
collapse_threshold          -- (M-1)^((M-1)/M)/M
stationarity_equation       -- M x^(M-1)/(x^M+1)^2 = beta, the per-class critical-point equation
stationarity_peak           -- where the left side peaks and its value there
depth_one_minimizer         -- sigma_k^2, ||h_k||^2, ||w_k||^2 of the M = 1 model in closed form
minimizer_gram_matrices     -- W W^T, H^T H, W H at the minimum for given sigma_k^2
noisy_etf_nc1               -- NC1 of a simplex ETF with isotropic noise

High precision (mpmath)
-----------------------
mse_minimizer               -- sigma_k and the objective of the bias-free MSE model, any depth
ce_etf_minimizer            -- the scale of the balanced cross-entropy ETF solution

Reference: Dang et al., ICML 2023 (arXiv:2301.00437); Papyan, Han, Donoho, PNAS 2020.
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import sympy as sp

__all__ = [
    "ce_etf_minimizer",
    "collapse_threshold",
    "depth_one_minimizer",
    "minimizer_gram_matrices",
    "mse_minimizer",
    "noisy_etf_nc1",
    "stationarity_equation",
    "stationarity_peak",
]

x, beta = sp.symbols("x beta", positive=True)


def collapse_threshold(M: int) -> sp.Expr:
    """:math:`(M-1)^{(M-1)/M}/M`: class k collapses iff :math:`b/n_k` is at least this.

    It is the largest :math:`\\beta` for which :math:`\\min_{x>0} 1/(1+x^M) + \\beta x < 1`,
    attained at :math:`x^M = M - 1`.

    >>> collapse_threshold(2), collapse_threshold(3)
    (1/2, 2**(2/3)/3)
    """
    M = sp.Integer(M)
    return sp.nsimplify((M - 1) ** ((M - 1) / M) / M) if M > 1 else sp.Integer(1)


def stationarity_equation(M: int) -> sp.Eq:
    """The per-class critical-point equation :math:`Mx^{M-1}/(x^M+1)^2 = \\beta`.

    >>> stationarity_equation(2)
    Eq(2*x/(x**2 + 1)**2, beta)
    """
    return sp.Eq(M * x ** (M - 1) / (x**M + 1) ** 2, beta)


def stationarity_peak(M: int) -> tuple[sp.Expr, sp.Expr]:
    """Where :math:`Mx^{M-1}/(x^M+1)^2` peaks (:math:`x^M=(M-1)/(M+1)`) and the peak value.

    >>> xp, value = stationarity_peak(2)
    >>> xp, value, float(value)
    (sqrt(3)/3, 3*sqrt(3)/8, 0.649519052838329)
    """
    lhs = stationarity_equation(M).lhs
    xp = sp.Rational(M - 1, M + 1) ** sp.Rational(1, M)
    return sp.nsimplify(xp), sp.simplify(lhs.subs(x, xp))


def depth_one_minimizer(n_per_class: Sequence[int], lambda_W, lambda_H) -> dict[str, list]:
    """Exact :math:`\\sigma_k^2`, :math:`\\|\\bar h_k\\|^2`, :math:`\\|w_k\\|^2` for M = 1.

    :math:`\\sigma_k^2 = \\max(0, \\sqrt{n_k\\lambda_H/\\lambda_W} - N\\lambda_H)`,
    :math:`\\|\\bar h_k\\|^2 = \\sigma_k^2/(\\sigma_k^2 + N\\lambda_H)^2
    = \\sqrt{\\lambda_W/(n_k\\lambda_H)} - N\\lambda_W/n_k` when not collapsed.
    Pass rationals (``sympy.Rational(5, 1000)``) to get exact expressions.

    >>> r = depth_one_minimizer([200, 100, 50, 50], sp.Rational(1, 200), sp.Rational(1, 200))
    >>> r["sigma2"]
    [-2 + 10*sqrt(2), 8, -2 + 5*sqrt(2), -2 + 5*sqrt(2)]
    """
    N = sum(n_per_class)
    lw, lh = sp.nsimplify(lambda_W), sp.nsimplify(lambda_H)
    sigma2, h2 = [], []
    for n in n_per_class:
        s2 = sp.sqrt(sp.Integer(n) * lh / lw) - N * lh
        s2 = s2 if s2 > 0 else sp.Integer(0)
        sigma2.append(sp.simplify(s2))
        h2.append(sp.simplify(s2 / (s2 + N * lh) ** 2))
    return {"sigma2": sigma2, "feature_norm2": h2, "classifier_norm2": list(sigma2)}


def minimizer_gram_matrices(sigma2: Sequence, N, lambda_H) -> dict[str, sp.Matrix]:
    """:math:`WW^\\top`, :math:`\\bar H^\\top\\bar H`, :math:`W\\bar H` at the bias-free minimum.

    They are :math:`\\mathrm{diag}(\\sigma_k^2)`,
    :math:`\\mathrm{diag}(\\sigma_k^2/(\\sigma_k^2+N\\lambda_H)^2)` and
    :math:`\\mathrm{diag}(\\sigma_k^2/(\\sigma_k^2+N\\lambda_H))`.

    >>> minimizer_gram_matrices([3, 0], 2, sp.Rational(1, 2))["WH"]
    Matrix([
    [3/4, 0],
    [  0, 0]])
    """
    c = N * sp.nsimplify(lambda_H)
    s = [sp.nsimplify(v) for v in sigma2]
    return {
        "WWt": sp.diag(*s),
        "HtH": sp.diag(*[v / (v + c) ** 2 for v in s]),
        "WH": sp.diag(*[v / (v + c) for v in s]),
    }


def noisy_etf_nc1(noise_variance, C, R) -> sp.Expr:
    """NC1 of class means on a simplex ETF of radius R with isotropic noise of variance s^2.

    :math:`\\Sigma_B = R^2/(C-1)` on the span of the means, so
    :math:`\\mathrm{Tr}(\\Sigma_W\\Sigma_B^\\dagger)/C = s^2(C-1)^2/(CR^2)`.

    >>> noisy_etf_nc1(sp.Rational(1, 100), 4, 5)
    9/10000
    """
    s2, C, R = sp.nsimplify(noise_variance), sp.Integer(C), sp.nsimplify(R)
    return s2 * (C - 1) ** 2 / (C * R**2)


def _mse_root(b_over_n, M: int):
    """Minimiser of 1/(1+x^M) + beta x over x >= 0 at mpmath precision (0 when collapsed)."""
    beta_ = mpmath.mpf(b_over_n)
    if M == 1:
        return max(mpmath.mpf(0), 1 / mpmath.sqrt(beta_) - 1)
    peak = mpmath.mpf(M - 1) / (M + 1)
    peak = peak ** (mpmath.mpf(1) / M)

    def phi(t):
        return M * t ** (M - 1) / (1 + t**M) ** 2 - beta_

    if phi(peak) <= 0:
        return mpmath.mpf(0)
    high = 2 * max(peak, (M / beta_) ** (mpmath.mpf(1) / (M + 1)))
    # phi decreases on [peak, high] and changes sign there: bisection in log t converges
    # unconditionally to the working precision. (A secant-type solver tests |phi| against an
    # absolute tolerance, which fails when phi's scale is tiny, e.g. small lambda, deep M.)
    low_log, high_log = mpmath.log(peak), mpmath.log(high)
    while high_log - low_log > mpmath.eps * 4 * max(1, abs(high_log)):
        middle = (low_log + high_log) / 2
        if phi(mpmath.exp(middle)) > 0:
            low_log = middle
        else:
            high_log = middle
    root = mpmath.exp((low_log + high_log) / 2)
    if 1 / (1 + root**M) + beta_ * root >= 1:
        return mpmath.mpf(0)
    return root


def mse_minimizer(n_per_class: Sequence[int], M: int, lambda_W: Sequence | float, lambda_H,
                  dps: int = 40) -> dict[str, list]:
    """:math:`\\sigma_k` and the objective of the bias-free MSE model, at ``dps`` digits.

    >>> r = mse_minimizer([200, 100, 50, 50], 1, "0.005", "0.005")
    >>> mpmath.nstr(r["sigma"][0], 15)
    '3.48455673274679'
    """
    with mpmath.workdps(dps):
        lam = [mpmath.mpf(v) for v in (lambda_W if isinstance(lambda_W, Sequence)
                                          and not isinstance(lambda_W, str) else [lambda_W] * M)]
        lh = mpmath.mpf(lambda_H)
        N = sum(n_per_class)
        prod = mpmath.fprod(lam)
        b = M * N * (N * lh * prod) ** (mpmath.mpf(1) / M)
        xs = [_mse_root(b / n, M) for n in n_per_class]
        sigma = [mpmath.sqrt(N * lh * t**M) for t in xs]
        objective = mpmath.fsum(n / (1 + t**M) + b * t for n, t in zip(n_per_class, xs,
                                                                         strict=True)) / (2 * N)
        return {"sigma": sigma, "x": xs, "b": b, "objective": objective}


def ce_etf_minimizer(K: int, n: int, M: int, lambda_W, lambda_H, dps: int = 40) -> dict:
    """Scale of the balanced cross-entropy ETF solution at ``dps`` digits.

    Minimises :math:`f(z) = \\log(1+(K-1)e^{-z}) + Cz^{2/(M+1)}` over z >= 0 (z the logit
    margin), with C as in :func:`sci.neural_collapse.ufm_minimizer`; returns z, sigma and f.

    >>> r = ce_etf_minimizer(4, 10, 1, "0.005", "0.005")
    >>> mpmath.nstr(r["sigma"], 10)
    '3.600051350'
    """
    with mpmath.workdps(dps):
        lw, lh = mpmath.mpf(lambda_W), mpmath.mpf(lambda_H)
        N = K * n
        A = mpmath.mpf(M) / 2 * lw * (K - 1)
        B = lh * N * (K - 1) / (2 * mpmath.mpf(K))
        C = A * (1 + mpmath.mpf(1) / M) * (M * B / A) ** (mpmath.mpf(1) / (M + 1))
        p = mpmath.mpf(2) / (M + 1)

        def f(z):
            return mpmath.log(1 + (K - 1) * mpmath.exp(-z)) + C * z**p

        def df(z):
            e = (K - 1) * mpmath.exp(-z)
            return -e / (1 + e) + C * p * z ** (p - 1)

        zmax = (mpmath.log(K) / C) ** (1 / p)
        grid = [zmax * mpmath.mpf(10) ** (-12 + 12 * mpmath.mpf(i) / 600) for i in range(601)]
        best_z, best_f = mpmath.mpf(0), mpmath.log(K)
        for lo, hi in zip(grid[:-1], grid[1:], strict=True):
            if df(lo) < 0 <= df(hi):
                z = mpmath.findroot(df, (lo, hi), solver="anderson")
                if f(z) < best_f:
                    best_z, best_f = z, f(z)
        sigma = (M * B * best_z**2 / A) ** (mpmath.mpf(M) / (2 * (M + 1)))
        return {"z": best_z, "sigma": sigma, "objective": best_f}

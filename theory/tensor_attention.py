r"""Exact and high-precision oracles for :mod:`sci.tensor_attention`.

Counting
--------
feature_rank            C(d + g, g) as an exact integer
count_monomials         the same number by enumerating multisets (an independent count)
multinomial             the multinomial coefficient t! / Π α_l! of a multiset
taylor_coefficients     1/t! as exact rationals

Error bounds (mpmath)
---------------------
taylor_relative_error_bound      e^R R^{g+1} / (g+1)!
chebyshev_relative_error_bound   2 e^{2R} (R/2)^{g+1} / (g+1)!
max_relative_error               the largest relative error of p against exp on [-R, R]
minimum_degree                   smallest g whose bound meets 2ε/(1-ε) <= tol
error_propagation_bound          2ε/(1-ε) · ‖V1 ⊘ V2 ⊘ ...‖∞
entry_threshold                  (log n)^{1/t}: the entry bound of the phase transition

Reference values (mpmath, tiny n)
---------------------------------
attention_mpmath             the naive order-t attention, every tuple and exp in high precision
polynomial_attention_mpmath  the same with exp replaced by a polynomial p

References: J. Alman, Z. Song, arXiv:2302.13214 (NeurIPS 2023) and arXiv:2310.04064 (ICLR 2024).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import mpmath
import sympy

__all__ = [
    "attention_mpmath",
    "chebyshev_relative_error_bound",
    "count_monomials",
    "entry_threshold",
    "error_propagation_bound",
    "feature_rank",
    "max_relative_error",
    "minimum_degree",
    "multinomial",
    "polynomial_attention_mpmath",
    "taylor_coefficients",
    "taylor_relative_error_bound",
]


def feature_rank(d: int, g: int) -> int:
    """The rank :math:`\\binom{d+g}{g}` of the degree-g factorisation in dimension d.

    Examples
    --------
    >>> feature_rank(4, 6)
    210
    """
    return int(sympy.binomial(d + g, g))


def count_monomials(d: int, g: int) -> int:
    """The number of multisets of [d] of size at most g, by enumeration.

    Examples
    --------
    >>> count_monomials(3, 2)  # 1 + 3 + 6
    10
    """
    return sum(
        1 for t in range(g + 1) for _ in itertools.combinations_with_replacement(range(d), t)
    )


def multinomial(alpha: Sequence[int]) -> int:
    """:math:`|\\alpha|!/\\prod_l \\alpha_l!` for exponents ``alpha``.

    Examples
    --------
    >>> multinomial([2, 1, 0])
    3
    """
    return int(sympy.factorial(sum(alpha)) / sympy.prod([sympy.factorial(a) for a in alpha]))


def taylor_coefficients(g: int) -> list[sympy.Rational]:
    """The Taylor coefficients :math:`1/t!` of :math:`e^x`, :math:`t = 0..g`, exactly.

    Examples
    --------
    >>> taylor_coefficients(3)
    [1, 1, 1/2, 1/6]
    """
    return [sympy.Rational(1, math.factorial(t)) for t in range(g + 1)]


def taylor_relative_error_bound(R, g: int) -> mpmath.mpf:
    """:math:`e^R R^{g+1}/(g+1)!`, bounding :math:`|T_g(x) - e^x|/e^x` on :math:`[-R, R]`.

    Lagrange: :math:`e^x - T_g(x) = e^\\xi x^{g+1}/(g+1)!` with :math:`\\xi` between 0 and x,
    and :math:`e^{\\xi - x} \\le e^{R}`.

    Examples
    --------
    >>> float(taylor_relative_error_bound(1, 4))
    0.0226523485...
    """
    R = mpmath.mpf(R)
    return mpmath.e**R * R ** (g + 1) / mpmath.factorial(g + 1)


def chebyshev_relative_error_bound(R, g: int) -> mpmath.mpf:
    """:math:`2 e^{2R} (R/2)^{g+1}/(g+1)!` for interpolation at g + 1 Chebyshev points.

    The interpolation error is :math:`f^{(g+1)}(\\xi)\\,\\omega(x)/(g+1)!` with
    :math:`\\max|\\omega| = 2 (R/2)^{g+1}` on :math:`[-R, R]`; divide by :math:`e^x \\ge e^{-R}`.

    Examples
    --------
    >>> float(chebyshev_relative_error_bound(1, 4))
    0.0038484667...
    """
    R = mpmath.mpf(R)
    return 2 * mpmath.e ** (2 * R) * (R / 2) ** (g + 1) / mpmath.factorial(g + 1)


def max_relative_error(coefficients: Sequence, R, *, samples: int = 2001) -> mpmath.mpf:
    """:math:`\\max |p(x) - e^x|/e^x` over ``samples`` equispaced points of :math:`[-R, R]`.

    ``coefficients`` are monomial coefficients, low to high (floats or exact numbers).

    Examples
    --------
    >>> float(max_relative_error([1, 1, 0.5], 0.5))  # worst at x = -0.5
    0.03045...
    """
    R = mpmath.mpf(R)
    c = [mpmath.mpf(sympy.Rational(x)) if isinstance(x, sympy.Basic) else mpmath.mpf(x)
         for x in coefficients]
    worst = mpmath.mpf(0)
    for k in range(samples):
        x = -R + 2 * R * k / (samples - 1)
        p = mpmath.polyval(c[::-1], x)
        worst = max(worst, abs(p - mpmath.exp(x)) / mpmath.exp(x))
    return worst


def minimum_degree(tol, R, *, method: str = "taylor") -> int:
    """The smallest degree g whose bound ε gives :math:`2\\varepsilon/(1-\\varepsilon) \\le`
    ``tol`` (even for Taylor).

    Examples
    --------
    >>> minimum_degree(1e-6, 1)
    10
    """
    bound = {"taylor": taylor_relative_error_bound,
             "chebyshev": chebyshev_relative_error_bound}[method]
    tol = mpmath.mpf(tol)
    for g in itertools.count():
        if method == "taylor" and g % 2:
            continue
        eps = bound(R, g) if R else mpmath.mpf(0)
        if eps < 1 and 2 * eps / (1 - eps) <= tol:
            return g


def error_propagation_bound(eps, value_bound=1) -> mpmath.mpf:
    """:math:`2\\varepsilon/(1-\\varepsilon)\\,\\|V\\|_\\infty`: if :math:`|\\tilde A - A| \\le
    \\varepsilon A` entrywise, the normalised output moves by at most this.

    Examples
    --------
    >>> float(error_propagation_bound(0.01, 2))
    0.0404...
    """
    eps = mpmath.mpf(eps)
    return 2 * eps / (1 - eps) * mpmath.mpf(value_bound)


def entry_threshold(n, order: int) -> mpmath.mpf:
    """:math:`(\\log n)^{1/t}`: the entry bound B separating :math:`n^{1+o(1)}` from
    :math:`n^{t-1-o(1)}` time (t = 2: :math:`\\sqrt{\\log n}`, t = 3: :math:`(\\log n)^{1/3}`).

    Examples
    --------
    >>> float(entry_threshold(2**16, 3))
    2.230...
    """
    return mpmath.log(mpmath.mpf(n)) ** (mpmath.mpf(1) / order)


def _attention(Q, keys, values, weight, scale, causal):
    n, d = len(Q), len(Q[0])
    m = len(keys[0])
    s = mpmath.mpf(1) / d if scale is None else mpmath.mpf(scale)
    out = []
    for i in range(n):
        numerator = [mpmath.mpf(0)] * d
        denominator = mpmath.mpf(0)
        for J in itertools.product(range(m), repeat=len(keys)):
            if causal and max(J) > i:
                continue
            logit = s * mpmath.fsum(
                mpmath.mpf(Q[i][l]) * mpmath.fprod(mpmath.mpf(K[j][l]) for K, j in
                                                   zip(keys, J, strict=True))
                for l in range(d)
            )
            a = weight(logit)
            denominator += a
            for l in range(d):
                numerator[l] += a * mpmath.fprod(
                    mpmath.mpf(V[j][l]) for V, j in zip(values, J, strict=True)
                )
        out.append([x / denominator for x in numerator])
    return out


def attention_mpmath(Q, keys, values, *, scale=None, causal=False, dps: int = 40):
    """Order-t attention by its definition, in ``dps`` digits: the oracle for tiny n.

    ``Q`` is n x d, ``keys`` and ``values`` lists of t - 1 arrays m x d (nested sequences or
    NumPy arrays). Returns an n x d list of lists of mpf.

    Examples
    --------
    >>> out = attention_mpmath([[1.0]], [[[1.0], [0.0]]], [[[1.0], [0.0]]], scale=1)
    >>> mpmath.nstr(out[0][0], 12)  # e / (e + 1)
    '0.731058578630'
    """
    with mpmath.workdps(dps):
        return _attention(_rows(Q), [_rows(K) for K in keys], [_rows(V) for V in values],
                          mpmath.exp, scale, causal)


def polynomial_attention_mpmath(Q, keys, values, coefficients, *, scale=None, causal=False,
                                dps: int = 40):
    """The attention with :math:`e^x` replaced by :math:`p(x) = \\sum_t c_t x^t`, naively.

    The factored algorithm must reproduce this to rounding: it is the same number computed
    without the :math:`n \\times m^{t-1}` matrix.

    Examples
    --------
    >>> out = polynomial_attention_mpmath([[1.0]], [[[1.0], [0.0]]], [[[1.0], [0.0]]],
    ...                                   [1, 1], scale=1)
    >>> mpmath.nstr(out[0][0], 6)  # p(1) / (p(1) + p(0)) = 2/3
    '0.666667'
    """
    with mpmath.workdps(dps):
        c = [mpmath.mpf(x) for x in coefficients]
        return _attention(_rows(Q), [_rows(K) for K in keys], [_rows(V) for V in values],
                          lambda x: mpmath.polyval(c[::-1], x), scale, causal)


def _rows(X):
    return [[float(v) for v in row] for row in X]

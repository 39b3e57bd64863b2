"""Polynomials approximating exp on [-R, R], their error bounds, and the logit bound R."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import as_float_array, check_integer, check_real
from ..backend import array_context, switch_context, to_numpy
from ._inputs import as_sequence, resolve_scale

__all__ = [
    "exp_approximation_error",
    "exp_polynomial_coefficients",
    "logit_bound",
    "select_degree",
]

METHODS = ("taylor", "chebyshev", "random")
MAX_DEGREE = 200


def _check_method(method: Any, allowed: Sequence[str] = METHODS, name: str = "method") -> str:
    if method not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {method!r}")
    return method


def exp_polynomial_coefficients(
    degree: int, *, method: str = "taylor", bound: float = 1.0
) -> np.ndarray:
    r"""Monomial coefficients :math:`c_0, \dots, c_g` of a polynomial :math:`p \approx e^x`.

    Parameters
    ----------
    degree : int
        :math:`g \ge 0`.
    method : {"taylor", "chebyshev"}
        ``"taylor"``: :math:`c_t = 1/t!` (independent of ``bound``). ``"chebyshev"``: the
        interpolant of :math:`e^x` at the :math:`g + 1` Chebyshev points of :math:`[-R, R]`.
    bound : float
        :math:`R \ge 0`, the half-width of the interval (only used by Chebyshev).

    Returns
    -------
    ndarray, shape (degree + 1,)
        Low to high, as :mod:`numpy.polynomial`.

    Examples
    --------
    >>> from sci.tensor_attention import exp_polynomial_coefficients
    >>> exp_polynomial_coefficients(3)
    array([1.        , 1.        , 0.5       , 0.16666667])
    """
    degree = check_integer(degree, "degree", minimum=0, maximum=MAX_DEGREE)
    method = _check_method(method, ("taylor", "chebyshev"))
    bound = check_real(bound, "bound", low=0.0)
    if method == "taylor" or bound == 0.0:
        if method == "chebyshev":
            return np.concatenate([[1.0], np.zeros(degree)])
        return np.array([1.0 / math.factorial(t) for t in range(degree + 1)])
    interpolant = np.polynomial.Chebyshev.interpolate(np.exp, degree, domain=[-bound, bound])
    coefficients = interpolant.convert(kind=np.polynomial.Polynomial).coef
    return np.concatenate([coefficients, np.zeros(degree + 1 - coefficients.size)])


def _log_error(method: str, degree: int, bound: float) -> float:
    """log of the relative error bound (``-inf`` when exact)."""
    if bound == 0.0:
        return -math.inf
    log_tail = (degree + 1) * math.log(bound) - math.lgamma(degree + 2)
    if method == "chebyshev":
        return math.log(2.0) + 2.0 * bound - (degree + 1) * math.log(2.0) + log_tail
    return bound + log_tail


def exp_approximation_error(degree: int, bound: float, *, method: str = "taylor") -> float:
    r"""A bound on :math:`\max_{|x| \le R} |p(x) - e^x| / e^x` for the polynomials used here.

    Parameters
    ----------
    degree : int
    bound : float
        :math:`R \ge 0`.
    method : {"taylor", "chebyshev", "random"}
        ``"random"`` has the Taylor bound for its expectation (the random features are
        unbiased for the Taylor polynomial).

    Returns
    -------
    float
        :math:`\varepsilon`; ``inf`` when it overflows.

    Notes
    -----
    Taylor (Lagrange remainder, :math:`\xi` between 0 and x): the relative error is
    :math:`e^{\xi - x}|x|^{g+1}/(g+1)! \le e^{R} R^{g+1}/(g+1)!` (the spec's
    :math:`e^{2R}` is looser). Chebyshev interpolation at :math:`g+1` points: absolute error
    :math:`\le 2 (R/2)^{g+1} e^R/(g+1)!`, divided by :math:`e^x \ge e^{-R}`:
    :math:`\varepsilon \le 2 e^{2R} (R/2)^{g+1}/(g+1)!`.

    Examples
    --------
    >>> from sci.tensor_attention import exp_approximation_error
    >>> round(exp_approximation_error(4, 1.0), 6)  # e / 5!
    0.022652
    """
    degree = check_integer(degree, "degree", minimum=0)
    bound = check_real(bound, "bound", low=0.0)
    method = _check_method(method)
    log_eps = _log_error(method, degree, bound)
    return math.exp(log_eps) if log_eps < 700 else math.inf


def _tol_to_relative(tol: float) -> float:
    """The entrywise relative error eps with 2 eps / (1 - eps) = tol."""
    return tol / (2.0 + tol)


def select_degree(tol: float, bound: float, *, method: str = "taylor") -> int:
    r"""The smallest degree whose predicted output error is at most ``tol``.

    Parameters
    ----------
    tol : float
        Target for :math:`\|\widetilde{\mathrm{Att}} - \mathrm{Att}\|_\infty / \|V_1 \oslash
        \cdots\|_\infty`, in (0, 1).
    bound : float
        The logit bound :math:`R`.
    method : {"taylor", "chebyshev", "random"}
        Taylor (and random features, which are unbiased for it) round up to an even degree,
        whose Taylor polynomial is positive on the whole real line.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        ``tol`` outside (0, 1), or no degree up to 200 reaches it.

    Notes
    -----
    Needs :math:`\varepsilon(g, R) \le \varepsilon^* = \mathrm{tol}/(2 + \mathrm{tol})`, so that
    the propagation bound :math:`2\varepsilon/(1-\varepsilon) \le \mathrm{tol}`; the minimum
    degree grows about linearly in R (:math:`g \approx e^{2} R` for Taylor at large R).

    Examples
    --------
    >>> from sci.tensor_attention import select_degree
    >>> select_degree(1e-6, 1.0), select_degree(1e-6, 1.0, method="chebyshev")
    (10, 8)
    """
    tol = check_real(tol, "tol", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    bound = check_real(bound, "bound", low=0.0)
    method = _check_method(method)
    target = math.log(_tol_to_relative(tol))
    for degree in range(MAX_DEGREE + 1):
        if method != "chebyshev" and degree % 2:
            continue
        if _log_error(method, degree, bound) <= target:
            return degree
    raise ValueError(
        f"no degree up to {MAX_DEGREE} reaches tol={tol} with logit bound R={bound:.4g} "
        f"({method}); the entries are beyond the regime of the polynomial method (R grows like "
        f"B^t): use the exact attention"
    )


def logit_bound(
    Q: Any, keys: Sequence[Any], *, scale: float | None = None, kind: str = "holder"
) -> float:
    r"""A bound :math:`R \ge \max |s \sum_l Q_{il} \prod_m (K_m)_{j_m l}|` on the logits.

    Parameters
    ----------
    Q : array_like, shape (n, d)
    keys : sequence of array_like, shape (m, d)
        The :math:`t - 1` keys.
    scale : float, optional
        Default :math:`1/d`.
    kind : {"holder", "entry"}
        ``"entry"``: the worst case :math:`s\, d\, \|Q\|_\infty \prod_m \|K_m\|_\infty`
        (:math:`B^t` at the default scale when every entry is bounded by B). ``"holder"``:
        :math:`s \max_i \|q_i\|_t \prod_m \max_j \|(k_m)_j\|_t` (generalised Hölder with t
        factors), never larger.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import logit_bound
    >>> Q = K = np.ones((3, 4))
    >>> logit_bound(Q, [K, K], kind="entry"), round(logit_bound(Q, [K, K]), 12)
    (1.0, 1.0)
    """
    keys = as_sequence(keys, "keys")
    # arrays of any library: the bounds in their namespace, one stacked reduction read back
    ctx = array_context(Q, *keys, names=["Q", *(f"K{m + 1}" for m in range(len(keys)))])
    Q = as_float_array(Q, "Q", ndim=2, ctx=ctx)
    keys = [as_float_array(k, f"K{m + 1}", ndim=2, ctx=ctx) for m, k in enumerate(keys)]
    s = resolve_scale(scale, Q.shape[1])
    return _logit_bounds(Q, keys, s, ctx.xp)[_check_method(kind, ("holder", "entry"), "kind")]


def _logit_bounds(Q, keys, s: float, xp: Any = None) -> dict[str, float]:
    """Both bounds from one stacked reduction (one read from a device)."""
    if xp is None:
        xp = switch_context().xp
    order = len(keys) + 1
    d = Q.shape[1]
    if Q.shape[0] == 0 or keys[0].shape[0] == 0:
        return {"entry": 0.0, "holder": 0.0}  # no logits at all: every bound holds
    parts = []
    for X in (Q, *keys):
        a = xp.abs(X)
        parts += [xp.max(a), xp.max(xp.sum(a**order, axis=1))]
    values = [float(v) for v in to_numpy(xp.stack(parts))]
    entry = s * d * values[0]
    holder = s * values[1] ** (1.0 / order)
    for m in range(len(keys)):
        entry *= values[2 + 2 * m]
        holder *= values[3 + 2 * m] ** (1.0 / order)
    return {"entry": entry, "holder": min(holder, entry)}

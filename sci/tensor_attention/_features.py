"""The factor matrices of the polynomial method: all monomials of degree <= g, rank C(d+g, g)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import as_float_array, check_integer, check_memory, check_real
from ..backend import array_context, cached_constant

__all__ = ["feature_rank", "polynomial_features"]


def feature_rank(d: int, degree: int) -> int:
    r"""The rank :math:`r = \binom{d + g}{g}` of the degree-:math:`g` factorisation in dimension d.

    It counts the multisets :math:`\alpha` of :math:`[d]` with :math:`|\alpha| \le g` (the
    monomials of degree at most :math:`g` in :math:`d` variables), whatever the order of the
    attention.

    Examples
    --------
    >>> from sci.tensor_attention import feature_rank
    >>> feature_rank(4, 6)
    210
    """
    d = check_integer(d, "d", minimum=1)
    degree = check_integer(degree, "degree", minimum=0)
    return math.comb(d + degree, degree)


@functools.lru_cache(maxsize=64)
def _monomial_tree(d: int, degree: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """For each total degree t >= 1: (parent column in degree t-1, variable) of each monomial.

    Degree-t monomials are their degree-(t-1) parent times one variable at least as large as
    the parent's largest, which lists each multiset once, in graded lexicographic order.
    """
    levels = []
    last_var = np.zeros(1, dtype=np.int64)  # degree 0: the empty monomial
    for _ in range(degree):
        parents = np.concatenate([np.full(d - v, p) for p, v in enumerate(last_var)])
        variables = np.concatenate([np.arange(v, d) for v in last_var])
        levels.append((parents.astype(np.int64), variables.astype(np.int64)))
        last_var = variables
    return tuple(levels)


@functools.lru_cache(maxsize=64)
def _multiplicities(d: int, degree: int) -> tuple[np.ndarray, ...]:
    r"""Multinomial :math:`t!/\prod_l \alpha_l!` of each monomial, degree by degree (exact ints)."""
    mult = [np.ones(1, dtype=object)]
    run = [np.zeros(1, dtype=np.int64)]  # how many times the largest variable repeats
    for t, (parents, variables) in enumerate(_monomial_tree(d, degree), start=1):
        prev_vars = (
            _monomial_tree(d, degree)[t - 2][1] if t >= 2 else np.full(1, -1, dtype=np.int64)
        )
        repeat = np.where(prev_vars[parents] == variables, run[-1][parents] + 1, 1)
        mult.append(np.array([int(m) * t // int(c) for m, c in zip(mult[-1][parents], repeat,
                                                                   strict=True)], dtype=object))
        run.append(repeat)
    return tuple(mult)


def _column_weights(d: int, degree: int, coefficients: np.ndarray) -> np.ndarray:
    """``c_|alpha| * mult(alpha)`` for every column, as float64."""
    mult = _multiplicities(d, degree)
    return np.concatenate(
        [np.array([float(coefficients[t]) * float(m) for m in level], dtype=np.float64)
         for t, level in enumerate(mult)]
    )


def _monomials_xp(ctx, X, degree: int):
    """All monomials of the rows of X of degree <= ``degree``: ``(..., n, C(d+g, g))`` in O(n r).

    The transpose (a view) of :func:`_monomial_columns` of the transposed rows.
    """
    xp = ctx.xp
    return xp.matrix_transpose(_monomial_columns(ctx, xp.matrix_transpose(X), degree))


def _monomial_columns(ctx, XT, degree: int):
    """The monomials of degree <= ``degree`` of the columns of ``XT``, shape ``(..., d, n)``:
    ``(..., C(d+g, g), n)``, monomial by monomial (the transposed factor matrix).

    Array-API code (``ctx``: :class:`sci.backend.ArrayContext` of XT); leading axes (the
    stacked keys of the polynomial method) are computed at once. The number of array operations
    is ``2 g + 1`` whatever n: one gather of the rows of XT gives the new variable of every
    monomial of degree >= 2, then each degree is one gather of its parents and one product (a
    degree-t monomial is a degree-(t-1) one times a variable); degree 1 is XT itself. A
    monomial is a row of n numbers, so every gather copies whole rows into a new (contiguous)
    array and every product runs over contiguous rows (coalesced on a GPU, vectorised on the
    host). The gather indices are
    converted to XT's namespace and device once and cached.
    """
    xp = ctx.xp
    *lead, d, n = XT.shape
    one = xp.ones((*lead, 1, n), dtype=XT.dtype, **_on(ctx))
    if degree == 0:
        return one
    tree = _monomial_tree(d, degree)
    levels = [one, XT]  # degree 1: parent () times variable l is row l
    if degree >= 2:
        variables = cached_constant(
            ("tensor_attention.variables", d, degree),
            lambda: np.concatenate([v for _, v in tree[1:]]), ctx, xp.int64)
        factors = xp.take(XT, variables, axis=-2)  # (..., r - d - 1, n)
        start = 0
        for t in range(1, degree):
            parents = cached_constant(("tensor_attention.parents", d, degree, t),
                                      lambda a=tree[t][0]: a, ctx, xp.int64)
            stop = start + tree[t][0].shape[0]
            levels.append(xp.take(levels[-1], parents, axis=-2) * factors[..., start:stop, :])
            start = stop
    return xp.concat(levels, axis=-2)


def _on(ctx) -> dict:
    """``device=`` for creation functions (NumPy's take none before 2.0)."""
    return {} if ctx.is_numpy else {"device": ctx.device}


def polynomial_features(
    X: Any, degree: int, *, scale: float = 1.0, coefficients: Any = None
) -> Array:
    r"""The factor matrix of all monomials :math:`\prod_l (\sigma X_{il})^{\alpha_l}` of degree ≤ g.

    Parameters
    ----------
    X : array_like, shape (n, d)
    degree : int
        The largest total degree :math:`g \ge 0`.
    scale : float
        :math:`\sigma`, multiplies X first (default 1). The polynomial method uses
        :math:`s^{1/t}` on each of the :math:`t` factors.
    coefficients : array_like, shape (degree + 1,), optional
        Monomial coefficients :math:`c_0, \dots, c_g` of a polynomial :math:`p`. When given,
        column :math:`\alpha` is multiplied by :math:`c_{|\alpha|}\,\mathrm{mult}(\alpha)` with
        :math:`\mathrm{mult}(\alpha) = |\alpha|!/\prod_l \alpha_l!` (the query-side factor).

    Returns
    -------
    ndarray, shape (n, C(d + g, g))
        Columns ordered by total degree, then lexicographically (``(), (0,), (1,), ...,
        (0, 0), (0, 1), ...``).

    Raises
    ------
    ValueError
        ``degree < 0``, ``coefficients`` of the wrong length, non-finite entries, or a rank too
        large for memory (the message gives the size).

    Notes
    -----
    With :math:`U_1` built with ``coefficients`` from Q and :math:`U_2, \dots, U_t` without
    from the keys (each with ``scale`` :math:`s^{1/t}`),

    .. math::

        U_1 (U_2 \oslash \cdots \oslash U_t)^\top = p\big(s\, Q (K_1 \oslash \cdots \oslash
        K_{t-1})^\top\big)

    entrywise, by the multinomial theorem. Each degree-:math:`t` column is a degree-:math:`t-1`
    column times one entry of X, so building costs :math:`O(n r)`.

    References
    ----------
    .. [1] J. Alman, Z. Song, arXiv:2310.04064 (ICLR 2024), the polynomial method.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import polynomial_features
    >>> polynomial_features(np.array([[2.0, 3.0]]), 2)
    array([[1., 2., 3., 4., 6., 9.]])
    >>> q, k = np.array([[0.3, -0.2]]), np.array([[0.5, 0.1]])
    >>> c = [1.0, 1.0, 0.5]  # 1 + x + x^2/2
    >>> u = polynomial_features(q, 2, coefficients=c) @ polynomial_features(k, 2).T
    >>> x = float(q[0] @ k[0])
    >>> bool(np.isclose(u[0, 0], 1 + x + x**2 / 2))
    True
    """
    # arrays of any library: computed in their namespace, on their device (array-API code)
    ctx = array_context(X, names=("X",))
    X = as_float_array(X, "X", ndim=2, ctx=ctx)
    degree = check_integer(degree, "degree", minimum=0)
    scale = check_real(scale, "scale")
    n, d = X.shape
    if d < 1:
        raise ValueError("X must have at least one column")
    rank = math.comb(d + degree, degree)
    itemsize = 4 if X.dtype == ctx.xp.float32 else 8
    check_memory(
        float(rank) * max(n, 1) * itemsize, f"the factor matrix of rank {rank}",
        hint="lower the degree or use method='random' (random features)", ctx=ctx,
    )
    features = _monomials_xp(ctx, scale * X, degree)
    if coefficients is not None:
        c = np.asarray(coefficients, dtype=np.float64)
        if c.shape != (degree + 1,) or not np.all(np.isfinite(c)):
            raise ValueError(
                f"coefficients must be {degree + 1} finite numbers (c_0 .. c_{degree}); got "
                f"shape {c.shape}"
            )
        features = features * ctx.asarray(_column_weights(d, degree, c), dtype=X.dtype)
    return features

"""The Marchenko–Pastur law of the input correlation matrix XXᵀ: support, density, quadrature."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np
import scipy.linalg

from .._typing import Array
from .._validation import check_integer
from ..backend import implementation, register, to_numpy
from ._arguments import as_floats, context, is_weak, result_dtype

__all__ = [
    "marchenko_pastur_pdf",
    "marchenko_pastur_quadrature",
    "marchenko_pastur_support",
]


def _check_alpha(alpha: Any) -> tuple[Any, Any]:
    """alpha as a checked float array, and the context of the call."""
    ctx = context({"alpha": alpha})
    (alpha,) = as_floats(ctx, {"alpha": (alpha, "alpha")})
    return alpha, ctx


def _edges(alpha: Any, xp: Any) -> tuple[Any, Any]:
    # (1 - sqrt(a))^2 written as ((1 - a)/(1 + sqrt(a)))^2: no cancellation as a -> 1, where
    # the lower edge goes to zero and the density's 1/lambda matters most.
    root = xp.sqrt(alpha)
    lower = ((1.0 - alpha) / (1.0 + root)) ** 2
    upper = (1.0 + root) ** 2
    return lower, upper


def marchenko_pastur_support(alpha: Any) -> tuple[Array, Array]:
    r"""Edges :math:`\lambda_\pm = (1 \pm \sqrt{\alpha})^2` of the Marchenko–Pastur bulk.

    Parameters
    ----------
    alpha : array_like
        Examples per parameter, :math:`\alpha = P/N > 0`.

    Returns
    -------
    lower, upper : array
        :math:`\lambda_-` and :math:`\lambda_+`, shaped like ``alpha`` (0-d for a scalar),
        arrays of ``alpha``'s library on its device (NumPy, CuPy, torch, ``array_api_strict``,
        ...; lists and numbers follow the backend switch). Torch takes the array code and is
        differentiable.

    Raises
    ------
    ValueError
        If some ``alpha`` is not positive or not finite.

    Notes
    -----
    For :math:`X \in \mathbb{R}^{N\times P}` with i.i.d. entries of variance :math:`1/N`, the
    eigenvalues of :math:`XX^\top` fill :math:`[\lambda_-, \lambda_+]` as
    :math:`N, P \to \infty` with :math:`P/N = \alpha`; for :math:`\alpha < 1` a fraction
    :math:`1 - \alpha` of them sits at zero. The lower edge is evaluated as
    :math:`((1-\alpha)/(1+\sqrt\alpha))^2`, accurate to the last bit as :math:`\alpha \to 1`.

    References
    ----------
    .. [1] V. A. Marchenko, L. A. Pastur, "Distribution of eigenvalues for some sets of random
       matrices", Math. USSR-Sbornik 1(4), 457–483 (1967).
    .. [2] M. Advani, A. Saxe, H. Sompolinsky, "High-dimensional dynamics of generalization
       error in neural networks", Neural Networks 132, 428–446 (2020), Sec. 2.

    Examples
    --------
    >>> from sci.generalization import marchenko_pastur_support
    >>> lower, upper = marchenko_pastur_support(4.0)
    >>> float(lower), float(upper)
    (1.0, 9.0)
    """
    alpha, ctx = _check_alpha(alpha)
    return _edges(alpha, ctx.xp)


@register("generalization.marchenko_pastur_pdf", "array")
def _pdf_array(lam: Any, alpha: Any) -> Any:
    # Written once against the standard: NumPy (the "numpy" backend), CuPy, torch, strict.
    xp = array_api_compat.array_namespace(lam, alpha)
    lower, upper = _edges(alpha, xp)
    inside = (lam > lower) & (lam < upper)
    # Outside the open bulk the product is replaced by 1, not 0: sqrt stays away from negative
    # rounding, and autograd's derivative of the unused branch is finite (sqrt'(0) = inf
    # times a zero gradient would be NaN).
    product = xp.where(inside, (upper - lam) * (lam - lower), 1.0)
    safe_lam = xp.where(inside, lam, 1.0)
    return xp.where(inside, xp.sqrt(product) / (2.0 * math.pi * safe_lam), 0.0)


register("generalization.marchenko_pastur_pdf", "numba", "sci.generalization._cpu:mp_pdf")


def marchenko_pastur_pdf(lam: Any, alpha: Any) -> Array:
    r"""Density of the continuous part of the Marchenko–Pastur law.

    .. math::

        \rho(\lambda) = \frac{\sqrt{(\lambda_+ - \lambda)(\lambda - \lambda_-)}}{2\pi\lambda},
        \qquad \lambda \in [\lambda_-, \lambda_+],\quad \lambda_\pm = (1\pm\sqrt\alpha)^2,

    and zero elsewhere. It integrates to :math:`\min(1, \alpha)`: for :math:`\alpha < 1` the
    law also has an atom :math:`(1-\alpha)\,\delta(\lambda)`, which this density omits.

    Parameters
    ----------
    lam : array_like
        Eigenvalues :math:`\lambda` at which to evaluate.
    alpha : array_like
        :math:`\alpha = P/N > 0`; broadcast against ``lam``.

    Returns
    -------
    array
        :math:`\rho(\lambda)` with the broadcast shape, in the dtype of the inputs (float32
        stays float32), an array of the inputs' library on their device.

    Raises
    ------
    ValueError
        If ``alpha`` is not positive, or an input is NaN or infinite.
    TypeError
        If an input is complex or not numeric, or ``lam`` and ``alpha`` are arrays of two
        libraries or on two devices.

    Notes
    -----
    NumPy arrays take the Numba kernel under the ``"numba"`` backend and NumPy array code
    under ``"numpy"``; CuPy, torch and other array-API arrays take the array code written
    against the standard, on their device. Through torch it is differentiable (autograd; the
    backward keeps a few arrays of the broadcast shape); outside the bulk the gradient is 0.
    The checks are one reduction read back per call.

    This is the spectral density of :math:`XX^\top` for :math:`X` of shape
    :math:`N \times P` with entries of variance :math:`1/N` (no :math:`1/P`), the convention
    of Advani, Saxe & Sompolinsky. scikit-rmt's ``MarchenkoPasturDistribution(ratio=1/alpha)``
    describes :math:`X^\top X / \ldots` in another scaling; with
    :math:`\rho(\lambda) = \mathrm{pdf}(\lambda/\alpha)/\alpha` the two agree.

    References
    ----------
    .. [1] V. A. Marchenko, L. A. Pastur, Math. USSR-Sbornik 1(4), 457–483 (1967).
    .. [2] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 2.

    Examples
    --------
    >>> from sci.generalization import marchenko_pastur_pdf
    >>> float(marchenko_pastur_pdf(1.0, 1.0))  # sqrt(4 - 1) / (2 pi)
    0.2756644477108961
    >>> marchenko_pastur_pdf([0.5, 2.0, 10.0], 2.0)
    array([0.4210844, 0.2105422, 0.       ])
    """
    # A Python number does not decide the precision (NumPy's weak scalars, NEP 50):
    # float32 eigenvalues with alpha=0.5 stay float32.
    weak = [is_weak(lam), is_weak(alpha)]
    ctx = context({"lam": lam, "alpha": alpha})
    lam, alpha = as_floats(ctx, {"lam": (lam, "real"), "alpha": (alpha, "alpha")})
    xp = ctx.xp
    dtype = result_dtype(ctx, [lam, alpha], weak)
    return implementation("generalization.marchenko_pastur_pdf", ctx.backend)(
        xp.astype(lam, dtype, copy=False), xp.astype(alpha, dtype, copy=False)
    )


def _jacobi_matrix(alpha: float, n_nodes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Recurrence coefficients of the orthogonal polynomials of the bulk, and its mass.

    For alpha >= 1 the bulk is the free Poisson law of rate alpha: diagonal (alpha, 1 + alpha,
    1 + alpha, ...), squared off-diagonal alpha. For alpha < 1 it is alpha times the free Poisson
    law of rate 1/alpha (the nonzero spectrum of XᵀX), i.e. diagonal (1, 1 + alpha, ...), same
    off-diagonal, with mass alpha.
    """
    diagonal = np.full(n_nodes, 1.0 + alpha)
    diagonal[0] = max(alpha, 1.0)
    off_diagonal = np.full(n_nodes - 1, np.sqrt(alpha))
    return diagonal, off_diagonal, min(alpha, 1.0)


def _gauss_rule(alpha: float, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    diagonal, off_diagonal, mass = _jacobi_matrix(alpha, n_nodes)
    if n_nodes == 1:
        return diagonal.copy(), np.array([mass])
    nodes, vectors = scipy.linalg.eigh_tridiagonal(diagonal, off_diagonal)
    weights = mass * vectors[0] ** 2
    # Nodes are eigenvalues of a positive definite matrix in exact arithmetic; clip the
    # rounding so callers can divide by them.
    lower, upper = _edges(np.float64(alpha), np)
    return np.clip(nodes, lower, upper), weights


def _substitution_rule(alpha: float, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    # lambda = lower + (upper - lower) sin^2(theta/2), theta in [0, pi]: the square-root edges
    # become smooth in theta; Gauss-Legendre in theta.
    lower, upper = _edges(np.float64(alpha), np)
    width = upper - lower
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    theta = 0.5 * np.pi * (x + 1.0)
    s2 = np.sin(0.5 * theta) ** 2
    c2 = np.cos(0.5 * theta) ** 2
    nodes = lower + width * s2
    # rho(lambda) dlambda = width^2 sin^2(theta) / (8 pi lambda) dtheta, sin^2 = 4 s2 c2.
    weights = 0.5 * np.pi * w * width**2 * 4.0 * s2 * c2 / (8.0 * np.pi * nodes)
    return nodes, weights


_RULES = {"gauss": _gauss_rule, "substitution": _substitution_rule}


def marchenko_pastur_quadrature(
    alpha: Any, n_nodes: int = 400, *, rule: str = "gauss"
) -> tuple[Array, Array]:
    r"""Nodes and weights integrating against the Marchenko–Pastur bulk.

    Returns :math:`(\lambda_j, w_j)` with
    :math:`\sum_j w_j f(\lambda_j) \approx \int \rho(\lambda) f(\lambda)\,d\lambda`
    (the continuous part only: add :math:`(1-\alpha)_+ f(0)` for the atom).

    Parameters
    ----------
    alpha : array_like
        :math:`\alpha = P/N > 0`; one rule per value.
    n_nodes : int, default 400
        Number of nodes per rule.
    rule : {"gauss", "substitution"}
        ``"gauss"`` (default): the Gauss rule of the measure :math:`\rho` itself, exact for
        polynomials of degree :math:`2n-1`; its weights sum to :math:`\min(1,\alpha)` and its
        first moment is :math:`\alpha` to rounding, for every :math:`\alpha` including
        :math:`\alpha \to 1`. ``"substitution"``: :math:`\lambda = \lambda_- +
        (\lambda_+-\lambda_-)\sin^2(\theta/2)` with Gauss–Legendre in :math:`\theta`; accurate
        to 1e-12 with 400 nodes away from :math:`\alpha = 1`, but it converges slowly for
        :math:`0 < |1 - \alpha| \ll 1`, where the pole of :math:`1/\lambda` approaches the edge.

    Returns
    -------
    nodes, weights : array
        Shape ``alpha.shape + (n_nodes,)``, arrays of ``alpha``'s library on its device, in its
        float dtype (lists and numbers follow the backend switch).

    Raises
    ------
    ValueError
        If ``alpha`` is not positive and finite, ``n_nodes < 1`` or ``rule`` is unknown.

    Notes
    -----
    The bulk of the law of :math:`XX^\top` is, for :math:`\alpha \ge 1`, the free Poisson law
    of rate :math:`\alpha`, whose Jacobi matrix is known in closed form: diagonal
    :math:`(\alpha, 1+\alpha, 1+\alpha, \ldots)`, off-diagonal :math:`\sqrt\alpha`. For
    :math:`\alpha < 1` it is :math:`\alpha` times the free Poisson law of rate :math:`1/\alpha`
    (the spectrum of :math:`X^\top X`), with diagonal :math:`(1, 1+\alpha, \ldots)`, the same
    off-diagonal and mass :math:`\alpha`. The Golub–Welsch algorithm turns either into the Gauss
    rule. Both rules are checked against exact moments in :mod:`theory.generalization`.

    The rules are computed on the host (SciPy's tridiagonal eigensolver): ``alpha`` is read
    back once and the nodes and weights are copied to its device once. They carry no torch
    gradient with respect to ``alpha``.

    References
    ----------
    .. [1] G. H. Golub, J. H. Welsch, "Calculation of Gauss quadrature rules", Math. Comp. 23,
       221–230 (1969).
    .. [2] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020).

    Examples
    --------
    >>> from sci.generalization import marchenko_pastur_quadrature
    >>> nodes, weights = marchenko_pastur_quadrature(0.5, 40)
    >>> round(float(weights.sum()), 12), round(float(weights @ nodes), 12)  # mass, mean
    (0.5, 0.5)
    """
    alpha, ctx = _check_alpha(alpha)
    n_nodes = check_integer(n_nodes, "n_nodes", minimum=1, maximum=100_000)
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, _RULES))}; got {rule!r}")
    # One explicit read-back of alpha: the rules are host computations (see Notes).
    host_alpha = np.atleast_1d(to_numpy(alpha))
    nodes = np.empty(host_alpha.shape + (n_nodes,))
    weights = np.empty_like(nodes)
    for index, value in np.ndenumerate(host_alpha):
        nodes[index], weights[index] = _RULES[rule](float(value), n_nodes)
    shape = tuple(alpha.shape) + (n_nodes,)
    dtype = alpha.dtype
    return (
        ctx.xp.astype(ctx.asarray(nodes.reshape(shape)), dtype, copy=False),
        ctx.xp.astype(ctx.asarray(weights.reshape(shape)), dtype, copy=False),
    )

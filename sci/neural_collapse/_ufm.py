"""Deep linear unconstrained-feature models: the exact global minimiser and the loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import as_float_array, as_int_array, check_integer, check_real, resolve_rng
from ..backend import array_context, array_namespace, asarray, creation_context

__all__ = ["UFMMinimizer", "collapse_threshold", "ufm_minimizer", "ufm_objective"]

_LOSSES = ("mse", "ce")


# ----------------------------------------------------------------------------------------
# Argument checks shared with the trainer.
# ----------------------------------------------------------------------------------------


def _check_counts(n_per_class: Any) -> np.ndarray:
    counts = as_int_array(n_per_class, "n_per_class")
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(
            f"n_per_class must be a 1-d list of K >= 2 class sizes; got shape {counts.shape}"
        )
    if counts.min() < 1:
        raise ValueError(
            f"every class needs at least one sample; n_per_class has {counts.min()} at class "
            f"{int(np.argmin(counts))}"
        )
    return counts


def _check_lambdas(lambda_W: Any, lambda_H: Any, depth: int) -> tuple[tuple[float, ...], float]:
    if isinstance(lambda_W, Sequence | np.ndarray):
        values = list(np.asarray(lambda_W).ravel().tolist())
        if len(values) != depth:
            raise ValueError(
                f"lambda_W must be one number or one per layer (depth={depth}); got "
                f"{len(values)} values"
            )
    else:
        values = [lambda_W] * depth
    lambdas = tuple(
        check_real(v, "lambda_W", low=0.0, low_inclusive=False) for v in values
    )
    return lambdas, check_real(lambda_H, "lambda_H", low=0.0, low_inclusive=False)


def _check_loss(loss: Any) -> str:
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}; got {loss!r}")
    return loss


def collapse_threshold(depth: int) -> float:
    """The collapse threshold :math:`(M-1)^{(M-1)/M}/M` of the bias-free MSE model.

    Class k has :math:`\\sigma_k = 0` at the global minimum iff :math:`b/n_k` is at least
    this value, with :math:`b = M N (N\\lambda_H\\prod_j\\lambda_{W_j})^{1/M}`
    :cite:p:`dang2023`.

    Examples
    --------
    >>> from sci.neural_collapse import collapse_threshold
    >>> collapse_threshold(1), collapse_threshold(2)
    (1.0, 0.5)
    """
    M = check_integer(depth, "depth", minimum=1)
    return float((M - 1.0) ** ((M - 1.0) / M) / M)


# ----------------------------------------------------------------------------------------
# The scalar problems.
# ----------------------------------------------------------------------------------------


def _mse_root(beta: float, M: int) -> float:
    """Minimiser x >= 0 of g(x) = 1/(1 + x^M) + beta x (g = per-class objective / n_k).

    The stationary points solve M x^(M-1)/(1 + x^M)^2 = beta. The largest root is the only
    candidate besides x = 0; for M >= 2 zero is a local minimum too, so the two objective
    values decide (between the threshold and the peak of the left side the root exists but
    loses).
    """
    from scipy.optimize import brentq

    if M == 1:
        return max(0.0, 1.0 / np.sqrt(beta) - 1.0)

    def phi(x: float) -> float:
        return M * x ** (M - 1) / (1.0 + x**M) ** 2 - beta

    peak = ((M - 1.0) / (M + 1.0)) ** (1.0 / M)
    if phi(peak) <= 0.0:
        return 0.0
    # phi decreases from its peak like M x^(-M-1): this upper end brackets the largest root.
    high = max(2.0 * peak, 2.0 * (M / beta) ** (1.0 / (M + 1.0)))
    x = brentq(phi, peak, high, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    if 1.0 / (1.0 + x**M) + beta * x >= 1.0:
        return 0.0
    return float(x)


def _ce_scale(K: int, C: float, M: int) -> float:
    """Global minimiser z >= 0 of f(z) = log(1 + (K-1) e^-z) + C z^(2/(M+1)).

    z = sigma * t is the logit margin of the ETF solution after the weights' and features'
    scales have been optimised for fixed z (see ufm_minimizer's Notes). For M >= 2 the
    penalty is concave, so all stationary points are found on a grid and compared with z = 0.
    """
    from scipy.optimize import brentq

    p = 2.0 / (M + 1.0)

    def f(z: float) -> float:
        return float(np.log1p((K - 1.0) * np.exp(-z)) + C * z**p)

    def df(z: float) -> float:
        e = (K - 1.0) * np.exp(-z)
        return float(-e / (1.0 + e) + C * p * z ** (p - 1.0))

    # Beyond z_max the penalty alone exceeds f(0) = log K.
    z_max = (np.log(K) / C) ** (1.0 / p)
    grid = np.geomspace(min(1e-12, z_max * 1e-12), z_max, 4000)
    slopes = np.array([df(z) for z in grid])
    best_z, best_f = 0.0, float(np.log(K))
    for i in np.flatnonzero((slopes[:-1] < 0) & (slopes[1:] >= 0)):
        z = brentq(df, grid[i], grid[i + 1], xtol=1e-300, rtol=4 * np.finfo(float).eps)
        if f(z) < best_f:
            best_z, best_f = z, f(z)
    return float(best_z)


# ----------------------------------------------------------------------------------------
# The result.
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UFMMinimizer:
    """The global minimiser of a deep linear unconstrained-feature model (see ufm_minimizer).

    Arrays of shape (K,) are in class order. ``weights`` and ``features`` realise the minimum:
    ``ufm_objective(weights, features, labels, ...)`` equals ``objective``.
    """

    singular_values: np.ndarray
    """sigma_k of W = W_M ... W_1 (for the ETF solutions: K-1 equal values, then 0)."""
    feature_norms: np.ndarray
    """``||h_k||``, the norms of the class means (all samples of a class are equal)."""
    classifier_norms: np.ndarray
    """``||w_k||``, the norms of the rows of W."""
    objective: float
    collapsed: np.ndarray
    """Classes whose mean and classifier row are zero at the minimum."""
    classifier_gram: np.ndarray
    """W W^T (K, K)."""
    feature_gram: np.ndarray
    """H_bar^T H_bar (K, K): Gram matrix of the class means."""
    logits_of_means: np.ndarray
    """W H_bar + b 1^T (K, K): column k holds the output for class k."""
    layer_singular_values: np.ndarray
    """(M, r): the nonzero-direction singular values of each W_j."""
    weights: tuple[Any, ...] = field(repr=False)
    """W_1 (d, d), ..., W_M (K, d), arrays of the library asked for (``xp=``, ``device=``;
    default the switch's)."""
    features: Any = field(repr=False)
    """H as (N, d), one row per sample, classes in order."""
    labels: np.ndarray = field(repr=False)
    bias: Any = field(repr=False)
    """b (K,) or None."""
    proven_global: bool = True
    """False for cross-entropy with depth >= 2: the ETF point is a critical point, but
    lower-rank configurations can have a lower objective (see the Notes of ufm_minimizer)."""
    depth: int = 1
    loss: str = "mse"
    lambda_W: tuple[float, ...] = ()
    lambda_H: float = 0.0
    n_per_class: np.ndarray = field(default=None, repr=False)


def _frame(d: int, r: int, rng: np.random.Generator | None) -> np.ndarray:
    """d x r orthonormal columns: the first r axes, or Haar-random ones."""
    if rng is None:
        return np.eye(d)[:, :r]
    q, rr = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.sign(np.diag(rr)))[:, :r]


def _helmert(K: int) -> np.ndarray:
    from ._frames import _helmert_basis

    return _helmert_basis(K)


def ufm_minimizer(
    n_per_class: Any,
    *,
    depth: int,
    lambda_W: float | Sequence[float],
    lambda_H: float,
    loss: str = "mse",
    bias: bool = False,
    width: int | None = None,
    rng: Any = None,
    xp: Any = None,
    device: Any = None,
) -> UFMMinimizer:
    """The exact global minimiser of the deep linear unconstrained-feature model.

    Parameters
    ----------
    n_per_class : sequence of int
        :math:`n_k`, the number of samples of each of the K classes.
    depth : int
        M, the number of linear layers of the classifier.
    lambda_W : float or sequence of M floats
        Weight decay :math:`\\lambda_{W_j}` of each layer (> 0).
    lambda_H : float
        Feature decay :math:`\\lambda_H` (> 0).
    loss : {"mse", "ce"}
    bias : bool
        Whether the last layer has an unregularised bias.
    width : int, optional
        Feature dimension d and width of every hidden layer (default K). With ``width < K``
        only the ``width`` largest classes can be nonzero (bias-free MSE); the ETF solutions
        need ``width >= K - 1``.
    rng : None, int or numpy.random.Generator
        Rotates the realised frames by Haar-random orthogonal matrices (the minimiser is
        unique only up to such rotations); ``None`` uses coordinate axes.
    xp : module, optional
        The array library of the realised point ``weights``, ``features`` and ``bias``
        (numpy, cupy, torch, array_api_strict, ...); default: the switch's (NumPy, or CuPy
        under ``use_backend("cupy")``).
    device : optional
        Their device in that library (default: its default device).

    Returns
    -------
    UFMMinimizer
        ``weights``, ``features`` and ``bias`` are float64 arrays of ``xp`` on ``device``,
        each copied there once; the singular values, norms and Gram matrices are small NumPy
        arrays (the closed form is evaluated on the host, in float64, whatever ``xp`` is).

    Raises
    ------
    ValueError
        Non-positive regularisation, an empty class, imbalanced classes with a bias (MSE) or
        with CE (no closed form: use :func:`train_ufm`), too small a width.

    Notes
    -----
    The model :cite:p:`dang2023` is

    .. math::

        L = \\frac1{2N}\\|W_M\\cdots W_1H + b\\mathbf 1^\\top - Y\\|_F^2
            + \\sum_j\\frac{\\lambda_{W_j}}2\\|W_j\\|_F^2 + \\frac{\\lambda_H}2\\|H\\|_F^2.

    Eliminating H (for fixed W each optimal column is
    :math:`h = W^\\top(WW^\\top + N\\lambda_H I)^{-1}(y - b)`) and balancing the layers
    (by AM-GM the cheapest factorisation of W has layer singular values
    :math:`s_{j,k}^2 = \\Lambda\\sigma_k^{2/M}/\\lambda_{W_j}`,
    :math:`\\Lambda = (\\prod_j\\lambda_{W_j})^{1/M}`) leaves, with
    :math:`\\sigma_k^2 = N\\lambda_H x_k^M`, one scalar problem per class:

    .. math::

        L = \\frac1{2N}\\sum_k\\Big(\\frac{n_k}{1+x_k^M} + b\\,x_k\\Big),\\qquad
        b = MN(N\\lambda_H\\textstyle\\prod_j\\lambda_{W_j})^{1/M}.

    Its nonzero stationary point is the largest root of
    :math:`Mx^{M-1}/(x^M+1)^2 = b/n_k`; class k collapses (:math:`x_k = 0`) iff
    :math:`b/n_k \\ge (M-1)^{(M-1)/M}/M`, decided here by comparing objective values (for
    M >= 2 the root exists slightly above the threshold but is not the minimum). For M = 1,
    :math:`\\sigma_k^2 = \\sqrt{n_k\\lambda_H/\\lambda_W} - N\\lambda_H`. At the minimum
    :math:`WW^\\top = \\mathrm{diag}(\\sigma_k^2)`,
    :math:`\\bar H^\\top\\bar H = \\mathrm{diag}(\\sigma_k^2/(\\sigma_k^2+N\\lambda_H)^2)` and
    :math:`w_k = (\\sigma_k^2 + N\\lambda_H)\\bar h_k`.

    Balanced with a bias: :math:`b = \\mathbf 1/K` and the same scalar problem holds for each
    of the K-1 directions of :math:`\\mathbf 1^\\perp`, so
    :math:`WW^\\top = \\sigma^2(I_K - \\mathbf 1\\mathbf 1^\\top/K)` and the centred means form
    a simplex ETF. Balanced cross-entropy (with or without bias, which is then any multiple
    of :math:`\\mathbf 1`; 0 is returned): :math:`W = \\sigma Q`, :math:`\\bar h_k = t q_k`
    with :math:`QQ^\\top = I - \\mathbf 1\\mathbf 1^\\top/K`; optimising the scales for a fixed
    margin :math:`z = \\sigma t` leaves
    :math:`\\min_{z\\ge0}\\log(1+(K-1)e^{-z}) + Cz^{2/(M+1)}`,
    :math:`C = A(1+1/M)(MB/A)^{1/(M+1)}`, :math:`A = \\tfrac M2\\Lambda(K-1)`,
    :math:`B = \\lambda_H N(K-1)/(2K)`, solved numerically, with
    :math:`\\sigma^2 = (MBz^2/A)^{M/(M+1)}`.

    The MSE reductions are exact, so those minimisers are global. For cross-entropy the ETF
    is the global minimiser at depth 1 :cite:p:`nc_zhu2021`; at larger depth it is a critical
    point with the optimal scale, but the regularisation's low-rank bias can make
    lower-rank configurations better :cite:p:`nc_garrod2024`. For K = 4, n_k = 10,
    :math:`\\lambda_W=\\lambda_H = 5\\times10^{-3}` gradient descent reaches a rank-2 point
    with 0.125698 against 0.137273 for the ETF at M = 3, and with an unregularised bias
    0.160999 against 0.161730 already at M = 2 (``tests/neural_collapse/test_train.py``).
    ``proven_global`` records which case a result is.

    References
    ----------
    Dang et al., ICML 2023, Theorems 2.1, 3.1 (balanced MSE, with and without bias), 4.1
    (imbalanced MSE) and 5.1 (balanced CE) :cite:p:`dang2023`.

    Examples
    --------
    The reference values of the spec (M = 1, n = [200, 100, 50, 50]):

    >>> from sci.neural_collapse import ufm_minimizer
    >>> r = ufm_minimizer([200, 100, 50, 50], depth=1, lambda_W=5e-3, lambda_H=5e-3)
    >>> r.classifier_norms.round(5)
    array([3.48456, 2.82843, 2.2519 , 2.2519 ])
    >>> r.feature_norms.round(5)
    array([0.2464 , 0.28284, 0.31847, 0.31847])

    The realised point in another library, e.g. torch (``xp=torch, device="cuda"`` for a GPU):

    >>> import torch
    >>> r = ufm_minimizer([3, 3], depth=2, lambda_W=1e-3, lambda_H=1e-3, xp=torch)
    >>> type(r.features).__name__, r.features.dtype, tuple(r.weights[1].shape)
    ('Tensor', torch.float64, (2, 2))
    """
    ctx = creation_context(xp, device)
    counts = _check_counts(n_per_class)
    M = check_integer(depth, "depth", minimum=1)
    lambdas, lam_H = _check_lambdas(lambda_W, lambda_H, M)
    loss = _check_loss(loss)
    if not isinstance(bias, bool | np.bool_):
        raise TypeError(f"bias must be True or False; got {type(bias).__name__}")
    K, N = counts.size, int(counts.sum())
    d = K if width is None else check_integer(width, "width", minimum=1)
    balanced = bool(np.all(counts == counts[0]))
    etf = loss == "ce" or bias
    if etf and not balanced:
        raise ValueError(
            f"the closed form for loss={loss!r} with bias={bias} holds for balanced classes only; "
            f"got n_per_class={counts.tolist()} (use train_ufm for the imbalanced case)"
        )
    if etf and d < K - 1:
        raise ValueError(f"the simplex-ETF minimiser needs width >= K - 1 = {K - 1}; got {d}")
    Lambda = float(np.exp(np.mean(np.log(lambdas))))  # (prod lambda_j)^(1/M)
    frame_rng = None if rng is None else resolve_rng(rng)

    if loss == "mse":
        b_const = M * N * (N * lam_H * Lambda**M) ** (1.0 / M)
        n_dir = counts.astype(float) if not bias else np.full(K - 1, float(counts[0]))
        x = np.array([_mse_root(b_const / n, M) for n in n_dir])
        if not bias and d < K:
            # Rank <= d: keep the d largest classes (the gain n - min g grows with n).
            keep = np.argsort(-counts, kind="stable")[:d]
            x[np.setdiff1d(np.arange(K), keep)] = 0.0
        sigma_dir = np.sqrt(N * lam_H * x**M)
        objective = float(np.sum(n_dir / (1.0 + x**M) + b_const * x) / (2.0 * N))
    else:
        A = 0.5 * M * Lambda * (K - 1)
        B = lam_H * N * (K - 1) / (2.0 * K)
        C = A * (1.0 + 1.0 / M) * (M * B / A) ** (1.0 / (M + 1.0))
        z = _ce_scale(K, C, M)
        sigma = (M * B * z * z / A) ** (M / (2.0 * (M + 1.0)))
        sigma_dir = np.full(K - 1, sigma)
        objective = float(
            np.log1p((K - 1.0) * np.exp(-z)) + C * z ** (2.0 / (M + 1.0))
        )

    # Realise W = V diag(sigma) F^T layer by layer: W_1 = E diag(s_1) F^T, W_j = E diag(s_j)
    # E^T, W_M = V diag(s_M) E^T, so that every W_{j+1}^T W_{j+1} = W_j W_j^T (balanced).
    if etf:
        V = _helmert(K)
        active = np.arange(K - 1)
    else:
        active = np.flatnonzero(sigma_dir > 0.0)
        V = np.eye(K)[:, active]
    sig = sigma_dir[active]
    r = sig.size
    layer_sv = np.sqrt(Lambda * sig[None, :] ** (2.0 / M) / np.asarray(lambdas)[:, None])
    F = _frame(d, r, frame_rng)
    E = _frame(d, r, frame_rng)
    weights = []
    for j in range(M):
        left = V if j == M - 1 else E
        right = F if j == 0 else E
        weights.append((left * layer_sv[j]) @ right.T)
    W = V @ np.diag(sig) @ F.T if r else np.zeros((K, d))
    b_vec = None
    if bias:
        b_vec = np.full(K, 1.0 / K) if loss == "mse" else np.zeros(K)
    targets = np.eye(K) - (b_vec[:, None] if b_vec is not None else 0.0)
    if loss == "mse":
        means = W.T @ np.linalg.solve(W @ W.T + N * lam_H * np.eye(K), targets)  # (d, K)
    else:
        t = z / sigma if sigma > 0 else 0.0
        means = (t / sigma) * W.T if sigma > 0 else np.zeros((d, K))
    labels = np.repeat(np.arange(K), counts)
    full_sigma = np.zeros(K)
    if etf:
        full_sigma[: K - 1] = sig
    else:
        full_sigma[active] = sig
    logits = W @ means + (b_vec[:, None] if b_vec is not None else 0.0)
    feature_norms = np.linalg.norm(means, axis=0)
    return UFMMinimizer(
        singular_values=full_sigma,
        feature_norms=feature_norms,
        classifier_norms=np.linalg.norm(W, axis=1),
        objective=objective,
        collapsed=feature_norms == 0.0,
        classifier_gram=W @ W.T,
        feature_gram=means.T @ means,
        logits_of_means=logits,
        layer_singular_values=layer_sv,
        weights=tuple(ctx.asarray(w, dtype=ctx.xp.float64) for w in weights),
        features=ctx.asarray(np.ascontiguousarray(means.T[labels]), dtype=ctx.xp.float64),
        labels=labels,
        bias=None if b_vec is None else ctx.asarray(b_vec, dtype=ctx.xp.float64),
        proven_global=loss == "mse" or M == 1,
        depth=M,
        loss=loss,
        lambda_W=lambdas,
        lambda_H=lam_H,
        n_per_class=counts,
    )


# ----------------------------------------------------------------------------------------
# The loss and its gradient (batched over a leading axis of seeds).
# ----------------------------------------------------------------------------------------


def _loss_and_gradients(
    weights: list[Any], H: Any, labels: Any, b: Any, lambdas: Sequence[float], lam_H: float,
    loss: str, *, gradients: bool = True, ctx: Any = None, onehot: Any = None,
    data_only: bool = False, term_weights: Any = None,
) -> tuple[Any, list[Any] | None, Any, Any]:
    """Loss (S,) and gradients of the batched model: H (S, N, d), W_j (S, out, in), b (S, K).

    Returns (loss, [dW_1..dW_M], dH, db); gradients are None when not asked for. ``ctx``: the
    array context of a call on the array API (default: the switch's NumPy or CuPy).
    ``onehot``: the (1, N, K) class indicators in Z's dtype, when the caller holds them (a
    training loop: not rebuilt each step). ``data_only``: the gradients of N times the data
    term only, without the 1/N and the regularisation's ``lambda * W``, which the caller folds
    into its update (fewer operations per step; the loss is the full one either way).
    ``term_weights``: the loss's coefficients of the sums of squares, ``[0.5/N (MSE) or -1/N
    (CE), lambda_H/2, lambda_1/2, ...]`` on the device, when the caller holds them.
    """
    if ctx is None:
        xp = array_namespace()

        def swap(A):
            return xp.swapaxes(A, 1, 2)

    else:
        xp = ctx.xp

        def swap(A):
            return xp.permute_dims(A, (0, 2, 1))

    N = H.shape[1]
    activations = [H]
    for W in weights:
        activations.append(activations[-1] @ swap(W))
    Z = activations[-1] if b is None else activations[-1] + b[:, None, :]
    K = Z.shape[2]
    if onehot is None:
        if ctx is None:
            onehot = (labels[:, None] == xp.arange(K)[None, :]).astype(Z.dtype)
        else:
            onehot = xp.astype(labels[:, None] == xp.arange(K, device=ctx.device)[None, :],
                               Z.dtype)
        onehot = onehot[None, ...]
    # Sums of squares (S,) of the residual (MSE) or the data term (CE), H and each W_j, then
    # one weighted sum: fewer operations per step than adding the terms one by one.
    if loss == "mse":
        residual = Z - onehot
        G = residual
        terms = [xp.sum(residual * residual, axis=(1, 2))]
        coefficients = [0.5 / N]
    else:
        shifted = Z - xp.max(Z, axis=2, keepdims=True)
        expz = xp.exp(shifted)
        total = xp.sum(expz, axis=2, keepdims=True)
        log_softmax = shifted - xp.log(total)
        G = expz / total - onehot
        terms = [xp.sum(log_softmax * onehot, axis=(1, 2))]
        coefficients = [-1.0 / N]
    terms += [xp.sum(A * A, axis=(1, 2)) for A in (H, *weights)]
    if term_weights is None:
        coefficients += [0.5 * lam_H] + [0.5 * lam for lam in lambdas]
        term_weights = (xp.asarray(coefficients, dtype=Z.dtype) if ctx is None
                        else ctx.asarray(np.asarray(coefficients), dtype=Z.dtype))
    value = xp.sum(xp.stack(terms, axis=1) * term_weights, axis=1)
    if not gradients:
        return value, None, None, None
    if not data_only:
        G = G / N
    grads: list[Any] = [None] * len(weights)
    upstream = G
    for j in range(len(weights) - 1, -1, -1):
        grads[j] = swap(upstream) @ activations[j]
        if not data_only:
            grads[j] = grads[j] + lambdas[j] * weights[j]
        upstream = upstream @ weights[j]
    dH = upstream if data_only else upstream + lam_H * H
    db = None if b is None else xp.sum(G, axis=1)
    return value, grads, dH, db


def ufm_objective(
    weights: Sequence[Any],
    features: Any,
    labels: Any,
    *,
    lambda_W: float | Sequence[float],
    lambda_H: float,
    loss: str = "mse",
    bias: Any = None,
) -> float:
    """The regularised loss of the deep linear unconstrained-feature model.

    Parameters
    ----------
    weights : sequence of arrays
        :math:`W_1` (d_1, d), ..., :math:`W_M` (K, d_{M-1}).
    features : array_like, shape (N, d)
        H, one row per sample.
    labels : array_like of int, shape (N,)
    lambda_W, lambda_H : float
        As in :func:`ufm_minimizer`.
    loss : {"mse", "ce"}
    bias : array_like, shape (K,), optional
        Unregularised bias of the last layer.

    Returns
    -------
    float, or a 0-d array
        A float for NumPy and CuPy inputs; for torch, ``array_api_strict``, ... a 0-d array
        of that library on the inputs' device (torch: differentiable, the loss written against
        the standard):

        :math:`\\frac1{2N}\\|W_M\\cdots W_1H^\\top + b\\mathbf 1^\\top - Y\\|_F^2` (or the mean
        cross-entropy) :math:`+ \\sum_j\\frac{\\lambda_{W_j}}2\\|W_j\\|_F^2
        + \\frac{\\lambda_H}2\\|H\\|_F^2`.

    Examples
    --------
    >>> from sci.neural_collapse import ufm_minimizer, ufm_objective
    >>> r = ufm_minimizer([3, 3, 3], depth=2, lambda_W=1e-3, lambda_H=1e-3)
    >>> abs(ufm_objective(r.weights, r.features, r.labels, lambda_W=1e-3, lambda_H=1e-3)
    ...     - r.objective) < 1e-12
    True
    """
    weights = list(weights)
    if not weights:
        raise ValueError("weights must hold at least one matrix W_1")
    ctx = array_context(*weights, features, bias,
                        names=[f"weights[{j}]" for j in range(len(weights))]
                        + ["features", "bias"])
    weights = [as_float_array(W, f"weights[{j}]", ndim=2, ctx=ctx)
               for j, W in enumerate(weights)]
    lambdas, lam_H = _check_lambdas(lambda_W, lambda_H, len(weights))
    loss = _check_loss(loss)
    H = as_float_array(features, "features", ndim=2, ctx=ctx)
    labels_np = as_int_array(labels, "labels", minimum=0)
    if labels_np.shape != (H.shape[0],):
        raise ValueError(
            f"features and labels must have the same length: features has {H.shape[0]} rows, "
            f"labels has shape {labels_np.shape}"
        )
    inner = H.shape[1]
    for j, W in enumerate(weights):
        if W.shape[1] != inner:
            raise ValueError(
                f"weights[{j}] has {W.shape[1]} columns but its input has dimension {inner}"
            )
        inner = W.shape[0]
    K = inner
    if labels_np.size and labels_np.max() >= K:
        raise ValueError(f"labels must be in 0..{K - 1} (K = rows of W_M); got {labels_np.max()}")
    b = None
    if bias is not None:
        b = as_float_array(bias, "bias", ndim=1, ctx=ctx)
        if b.shape[0] != K:
            raise ValueError(f"bias must have shape ({K},); got {tuple(b.shape)}")
        b = b[None, ...]
    if ctx.backend != "array":  # NumPy, Numba, CuPy: the switch's path, a float as before
        value, *_ = _loss_and_gradients(
            [W[None] for W in weights], H[None], asarray(labels_np), b, lambdas, lam_H, loss,
            gradients=False,
        )
        return float(value[0])
    value, *_ = _loss_and_gradients(
        [W[None, ...] for W in weights], H[None, ...], ctx.asarray(labels_np), b, lambdas,
        lam_H, loss, gradients=False, ctx=ctx,
    )
    return value[0]

"""Gradient descent on the deep linear unconstrained-feature model, batched over seeds."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import progress_bar
from .._validation import check_integer, check_real, resolve_dtype, resolve_rng
from ..backend import array_context, cached_constant, creation_context, to_numpy
from ..parallel import map_trials, split_trials
from ._ufm import _check_counts, _check_lambdas, _check_loss, _loss_and_gradients

__all__ = ["UFMTraining", "train_ufm"]

RECORDED_METRICS = (
    "nc1", "nc2_etf_error", "nc2_of_error", "nc2_gof_error", "nc2_equinorm_classifiers",
    "nc3", "nc3_uncentred",
)


@dataclass(frozen=True)
class UFMTraining:
    """History and final state of :func:`train_ufm` (leading axis: seeds)."""

    steps: np.ndarray
    """(T,) the iterations at which the history was recorded (0 = initialisation)."""
    loss: np.ndarray
    """(S, T) the regularised objective."""
    metrics: dict[str, np.ndarray]
    """Name -> (S, T): nc1, nc2_etf_error, nc2_of_error, nc2_gof_error,
    nc2_equinorm_classifiers, nc3, nc3_uncentred (see :class:`NCMetrics`)."""
    singular_values: np.ndarray
    """(S, K) final singular values of W = W_M ... W_1, largest first."""
    classifier_norms: np.ndarray
    """(S, K) final ``||w_k||``."""
    feature_norms: np.ndarray
    """(S, K) final class-mean norms ``||h_k||``."""
    weights: tuple[Any, ...] = field(repr=False)
    """Final W_1..W_M, each (S, out, in), arrays of the library and device the run used."""
    features: Any = field(repr=False)
    """Final H, (S, N, d)."""
    bias: Any = field(repr=False)
    labels: np.ndarray = field(repr=False)


def train_ufm(
    n_per_class: Any,
    *,
    depth: int,
    lambda_W: float | Sequence[float],
    lambda_H: float,
    loss: str = "mse",
    bias: bool = False,
    width: int | None = None,
    steps: int = 1000,
    lr: float = 0.1,
    momentum: float = 0.0,
    num_seeds: int = 1,
    init_scale: float = 1.0,
    start: Any = None,
    record_every: int | None = None,
    rng: Any = None,
    dtype: Any = None,
    progress: bool | None = None,
    seeds_per_task: int | None = None,
    executor: Any = None,
    xp: Any = None,
    device: Any = None,
) -> UFMTraining:
    """Train the deep linear unconstrained-feature model by full-batch gradient descent.

    Parameters
    ----------
    n_per_class : sequence of int
        Class sizes :math:`n_k`.
    depth : int
        M, the number of linear layers.
    lambda_W, lambda_H, loss, bias
        As in :func:`ufm_minimizer`.
    width : int, optional
        Feature dimension and hidden width (default K).
    steps : int
        Iterations.
    lr : float
        Step size.
    momentum : float
        Heavy-ball momentum in [0, 1) (0: plain gradient descent).
    num_seeds : int
        Independent runs trained together as one batch (leading axis of every array).
    init_scale : float
        Entries of :math:`W_j` are :math:`N(0, \\text{init\\_scale}^2/\\text{fan-in})`, those of
        H are :math:`N(0, \\text{init\\_scale}^2/d)`. With ``start``, the standard deviation
        of the perturbation added to it instead.
    start : UFMMinimizer, optional
        Start every seed from this point (e.g. the result of :func:`ufm_minimizer` with the
        same sizes), perturbed by ``init_scale``: a check of its stability.
    record_every : int, optional
        Record loss and metrics every so many steps (default ``max(1, steps // 100)``).
    rng : None, int or numpy.random.Generator
    dtype : {None, float32, float64}
    progress : bool or None
        Progress bar (None: on a terminal only).
    seeds_per_task : int, optional
        Split the seeds into tasks of at most this many, run on the executor (default: one
        task, every seed in one batch, drawn from ``rng`` itself). With several tasks, task
        :math:`k` draws its seeds from child :math:`k` of ``rng``
        (:func:`sci.parallel.task_seeds`): the result depends on the split, never on where the
        tasks ran.
    executor : optional
        Where the tasks run (anything :func:`sci.parallel.get_executor` accepts); default
        :func:`sci.parallel.current_executor`.
    xp : module, optional
        The array library the training runs in (numpy, cupy, torch, array_api_strict, ...);
        default: that of ``start``'s arrays if given, else the switch's (NumPy, or CuPy under
        ``use_backend("cupy")``).
    device : optional
        The device in that library (default: its default device, or ``start``'s).

    Returns
    -------
    UFMTraining
        ``weights``, ``features`` and ``bias`` are arrays of that library on that device; the
        history (``loss``, ``metrics``) and the final singular values and norms are NumPy
        arrays, read from the device once, at the end of the run.

    Raises
    ------
    ValueError
        Bad sizes or regularisation, or a run that diverged (lower ``lr``).
    TypeError
        ``start``'s arrays in another library or on another device than ``xp``/``device``.

    Notes
    -----
    The gradients are the closed-form ones of
    :math:`L = \\frac1N\\sum_i\\ell(W_M\\cdots W_1h_i + b, y_i) + \\sum_j\\frac{\\lambda_{W_j}}2
    \\|W_j\\|_F^2+\\frac{\\lambda_H}2\\|H\\|_F^2` by back-propagation through the layers. From a
    small initialisation deep models can stall near a spurious low-rank critical point, and
    close to the collapse threshold the global minimiser's basin is small
    :cite:p:`dang2023`; compare with :func:`ufm_minimizer` away from those regimes.

    Every seed of a task is trained in one batch (one batched product per layer and step) in
    the chosen library and on its device: the random start is drawn on the host from ``rng``
    (the same numbers whatever the library) and copied once; the recorded metrics (the
    definitions of :func:`nc_metrics`, batched over the seeds, in float64) and the
    divergence check stay on the device until the run ends, so no step waits for the host.
    A run that diverged is reported at its end, with the first step whose loss was not
    finite. Undefined metrics of a recorded state (zero classifier) are NaN.

    Examples
    --------
    >>> from sci.neural_collapse import train_ufm, ufm_minimizer
    >>> run = train_ufm([20, 10, 5], depth=1, lambda_W=5e-3, lambda_H=5e-3, steps=3000,
    ...                 lr=0.5, rng=0)
    >>> exact = ufm_minimizer([20, 10, 5], depth=1, lambda_W=5e-3, lambda_H=5e-3)
    >>> bool(abs(run.loss[0, -1] - exact.objective) < 1e-8)
    True

    In torch (``device="cuda"`` for a GPU), with the same draws:

    >>> import torch
    >>> run_t = train_ufm([20, 10, 5], depth=1, lambda_W=5e-3, lambda_H=5e-3, steps=3000,
    ...                   lr=0.5, rng=0, xp=torch)
    >>> type(run_t.features).__name__, bool(abs(run_t.loss[0, -1] - run.loss[0, -1]) < 1e-12)
    ('Tensor', True)
    """
    counts = _check_counts(n_per_class)
    M = check_integer(depth, "depth", minimum=1)
    lambdas, lam_H = _check_lambdas(lambda_W, lambda_H, M)
    loss = _check_loss(loss)
    K = counts.size
    d = K if width is None else check_integer(width, "width", minimum=1)
    steps = check_integer(steps, "steps", minimum=0)
    lr = check_real(lr, "lr", low=0.0, low_inclusive=False)
    momentum = check_real(momentum, "momentum", low=0.0, high=1.0, high_inclusive=False)
    S = check_integer(num_seeds, "num_seeds", minimum=1)
    init_scale = check_real(init_scale, "init_scale", low=0.0, low_inclusive=start is not None)
    every = max(1, steps // 100) if record_every is None else check_integer(
        record_every, "record_every", minimum=1)
    dtype = resolve_dtype(dtype)
    if seeds_per_task is None:
        seeds_per_task = S
    seeds_per_task = check_integer(seeds_per_task, "seeds_per_task", minimum=1)
    sizes = split_trials(S, min(seeds_per_task, S))
    if start is not None:
        points = [*start.weights, start.features] + ([start.bias] if bias else [])
        if bias and start.bias is None:
            raise ValueError("start has no bias but bias=True")
        shapes = [(d, d)] * (M - 1) + [(K, d), (int(counts.sum()), d)] + ([(K,)] if bias else [])
        if [tuple(p.shape) for p in points] != shapes:
            raise ValueError(
                f"start does not match the model: shapes {[tuple(p.shape) for p in points]}, "
                f"expected {shapes} (same n_per_class, depth, width)"
            )
        names = [f"start.weights[{j}]" for j in range(M)] + ["start.features", "start.bias"]
        ctx = _start_context(points, names, xp, device)
    else:
        ctx = creation_context(xp, device)
    task = functools.partial(
        _train_seeds, counts=counts, M=M, lambdas=lambdas, lam_H=lam_H, loss=loss, bias=bias,
        d=d, steps=steps, lr=lr, momentum=momentum, init_scale=init_scale, start=start,
        every=every, dtype=dtype, ctx=ctx, progress=progress if len(sizes) == 1 else False,
    )
    generator = resolve_rng(rng)
    # One batch drawn from rng itself (with a progress bar per step), or child k of its seed
    # for task k (an int seed gives the same children as task_seeds(seed)).
    parts = map_trials(task, sizes, generator, executor=executor,
                       progress=progress if len(sizes) > 1 else False,
                       desc="train_ufm seed batches")
    return parts[0] if len(parts) == 1 else _concatenate(parts, ctx)


def _start_context(points: list[Any], names: list[str], xp: Any, device: Any) -> Any:
    """Where a run from ``start`` computes: its arrays' library and device, which ``xp`` and
    ``device``, when given, must name (a copy between devices is the caller's to make)."""
    ctx = array_context(*points, names=names[: len(points)])
    if xp is None and device is None:
        return ctx
    asked = creation_context(xp, device)
    if asked.xp is not ctx.xp or asked.device != ctx.device:
        raise TypeError(
            f"start holds {ctx.describe()} but xp/device ask for {asked.describe()}; move "
            "start's arrays there first (or leave xp and device out)"
        )
    return asked


def _concatenate(parts: list[UFMTraining], ctx: Any) -> UFMTraining:
    """The runs of several tasks as one result, seeds in task order."""
    xp = ctx.xp

    def join(arrays):
        return xp.concat(list(arrays), axis=0)

    first = parts[0]
    return UFMTraining(
        steps=first.steps,
        loss=np.concatenate([p.loss for p in parts], axis=0),
        metrics={name: np.concatenate([p.metrics[name] for p in parts], axis=0)
                 for name in first.metrics},
        singular_values=np.concatenate([p.singular_values for p in parts], axis=0),
        classifier_norms=np.concatenate([p.classifier_norms for p in parts], axis=0),
        feature_norms=np.concatenate([p.feature_norms for p in parts], axis=0),
        weights=tuple(join([p.weights[i] for p in parts]) for i in range(len(first.weights))),
        features=join([p.features for p in parts]),
        bias=None if first.bias is None else join([p.bias for p in parts]),
        labels=first.labels,
    )


def _complement_of_counts(counts: np.ndarray) -> np.ndarray:
    """(K, K-1) orthonormal basis of the complement of the count vector (the Householder
    reflection of nc_metrics' NC1, built on the host once per class sizes)."""
    K = counts.size
    v = counts / np.linalg.norm(counts)
    v[-1] -= 1.0
    reflect = np.eye(K) - 2.0 * np.outer(v, v) / (v @ v) if v @ v > 0 else np.eye(K)
    return reflect[:, : K - 1]


def _seed_metrics(H: Any, W: Any, labels: Any, onehot_t: Any, counts: Any, complement: Any,
                  ctx: Any) -> Any:
    """The recorded NC metrics of every seed at once, on the device: (len(RECORDED_METRICS), S).

    The definitions of :func:`nc_metrics` (and its NC1 rank rule), batched over the seeds: H
    (S, N, d) and W = W_M ... W_1 (S, K, d) in float64; ``onehot_t`` (K, N) the class
    indicators, ``counts`` (K,) the class sizes, ``complement`` (K, K-1) an orthonormal basis
    of the counts' complement. The classes are fixed, so the two-pass formulas (means first)
    are used: no shift is needed. Undefined values (zero W, coinciding means) are NaN or inf
    rather than errors: a history has no caller to raise to mid-run.
    """
    xp = ctx.xp
    S, N, d = H.shape
    K = W.shape[1]
    nan = float("nan")

    def frobenius(A):
        return xp.sqrt(xp.sum(A * A, axis=(-2, -1)))

    def safe(x):  # a divisor, 1 where it is 0 (the result is replaced by where() after)
        return xp.where(x == 0.0, 1.0, x)

    means = (onehot_t @ H) / counts[:, None]  # (S, K, d)
    global_mean = xp.sum(counts[:, None] * means, axis=1) / N  # (S, d)
    centred = means - global_mean[:, None, :]
    D = H - xp.take(means, labels, axis=1)
    within = (xp.permute_dims(D, (0, 2, 1)) @ D) / N  # (S, d, d)
    # NC1 = sum_i u_i^T Sigma_W u_i / s_i^2 over the singular values of centred^T Q above
    # max(d, K) eps (s_max + scale), as nc_metrics' _nc1 (inf when none is).
    X = xp.permute_dims(centred, (0, 2, 1)) @ complement
    # a diverged run is reported at its end: until then its values only must not stop the SVD
    X = xp.where(xp.isfinite(X), X, 0.0)
    U, s, _ = xp.linalg.svd(X, full_matrices=False)
    scale = xp.sqrt(xp.sum(global_mean * global_mean, axis=1)) * (K**0.5)
    tol = max(K, d) * float(np.finfo(np.float64).eps) * (s[:, 0] + scale)
    keep = s > tol[:, None]
    projected = xp.sum(U * (within @ U), axis=1)  # (S, r)
    terms = xp.where(keep, projected / safe(s) ** 2, 0.0)
    nc1 = xp.where(xp.any(keep, axis=1), xp.sum(terms, axis=1), float("inf"))

    gram = W @ xp.permute_dims(W, (0, 2, 1))
    norm = frobenius(gram)
    unit = gram / safe(norm)[:, None, None]
    eye = xp.eye(K, dtype=H.dtype, device=ctx.device)
    zero = norm == 0.0
    etf = xp.where(zero, nan, frobenius(unit - (eye - 1.0 / K) / (K - 1.0) ** 0.5))
    of = xp.where(zero, nan, frobenius(unit - eye / K**0.5))
    gof = xp.where(zero, nan, frobenius(unit * (1.0 - eye)))
    row_norms = xp.sqrt(xp.sum(W * W, axis=2))
    average = xp.mean(row_norms, axis=1)
    equinorm = xp.where(average == 0.0, nan,
                        xp.std(row_norms, axis=1, correction=1) / safe(average))
    w_norm = frobenius(W)

    def nc3(M):
        m_norm = frobenius(M)
        diff = W / safe(w_norm)[:, None, None] - M / safe(m_norm)[:, None, None]
        return xp.where((w_norm == 0.0) | (m_norm == 0.0), nan, xp.sum(diff * diff, axis=(1, 2)))

    values = {"nc1": nc1, "nc2_etf_error": etf, "nc2_of_error": of, "nc2_gof_error": gof,
              "nc2_equinorm_classifiers": equinorm, "nc3": nc3(centred),
              "nc3_uncentred": nc3(means)}
    return xp.stack([values[name] for name in RECORDED_METRICS])


def _first_not_finite(xp: Any, window: list[Any], start: int, first_bad: Any) -> Any:
    """``first_bad`` (a device int, -1 while every loss was finite), or else the first step
    of ``window`` (the losses (S,) of steps ``start, start + 1, ...``) with a loss not finite."""
    bad = xp.any(~xp.isfinite(xp.stack(window)), axis=1)
    first = start + xp.argmax(xp.astype(bad, xp.int8))
    return xp.where((first_bad < 0) & xp.any(bad), xp.astype(first, xp.int64), first_bad)


def _train_seeds(chunk, *, counts, M, lambdas, lam_H, loss, bias, d, steps, lr, momentum,
                 init_scale, start, every, dtype, ctx, progress=False) -> UFMTraining:
    """One task of :func:`train_ufm`: ``chunk = (number of seeds, seed)``, trained as one
    batch in ``ctx`` (its library and device), with no read from the device until the end."""
    S, seed = chunk
    gen = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    K, N = counts.size, int(counts.sum())
    xp = ctx.xp
    work = getattr(xp, dtype.name)

    labels = np.repeat(np.arange(K), counts)
    labels_dev = ctx.asarray(labels)
    shapes = [(d, d)] * (M - 1) + [(K, d)]
    # The draws are made on the host from the generator, in the order of the NumPy code, and
    # each array is copied to the device once: every library gets the same start.
    if start is None:
        params = [
            ctx.asarray(gen.standard_normal((S, *shape)) * (init_scale / np.sqrt(shape[1])),
                        dtype=work)
            for shape in shapes
        ]
        params.append(ctx.asarray(gen.standard_normal((S, N, d)) * (init_scale / np.sqrt(d)),
                                  dtype=work))
        if bias:
            params.append(xp.zeros((S, K), dtype=work, device=ctx.device))
    else:
        points = [*start.weights, start.features] + ([start.bias] if bias else [])
        params = [
            xp.astype(xp.astype(ctx.asarray(p), xp.float64)[None, ...]
                      + ctx.asarray(init_scale * gen.standard_normal((S, *p.shape)),
                                    dtype=xp.float64), work)
            for p in points
        ]
    # Momentum 0 (the default) needs no velocity: each step is p <- p - lr g in place of
    # v <- g, p <- p - lr v.
    velocity = [xp.zeros_like(p) for p in params] if momentum else None

    onehot_t = ctx.asarray((labels[None, :] == np.arange(K)[:, None]).astype(np.float64))
    # Held for the whole run (not rebuilt per step): the class indicators in the working
    # dtype and the loss's weights of its sums of squares.
    onehot = xp.astype(xp.permute_dims(onehot_t, (1, 0)), work)[None, ...]
    data_weight = 0.5 / N if loss == "mse" else -1.0 / N
    term_weights = ctx.asarray(np.array([data_weight, 0.5 * lam_H, *(0.5 * np.asarray(lambdas))]),
                               dtype=work)
    # The update folds the data gradient's 1/N and the weight decay into two scalars per
    # parameter: p <- (1 - lr lambda) p - (lr/N) g_data (the bias is not regularised).
    shrink = [1.0 - lr * lam for lam in lambdas] + [1.0 - lr * lam_H] + ([1.0] if bias else [])
    decay = [*lambdas, lam_H] + ([0.0] if bias else [])
    counts_dev = ctx.asarray(counts.astype(np.float64))
    complement = cached_constant(("neural_collapse.count_complement", tuple(counts.tolist())),
                                 lambda: _complement_of_counts(counts.astype(np.float64)), ctx,
                                 xp.float64)

    def product(weights):
        W = weights[0]
        for layer in weights[1:]:
            W = layer @ W
        return W

    recorded_steps: list[int] = []
    history: list[Any] = []  # per record: (1 + metrics, S) on the device
    first_bad = xp.asarray(-1, dtype=xp.int64, device=ctx.device)
    window: list[Any] = []  # the losses (S,) since the last record, checked there
    window_start = 0

    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run, reported below
        for step in progress_bar(range(steps + 1), progress=progress, desc="train_ufm"):
            value, dW, dH, db = _loss_and_gradients(
                params[:M], params[M], labels_dev, params[M + 1] if bias else None, lambdas,
                lam_H, loss, gradients=step < steps, ctx=ctx, onehot=onehot, data_only=True,
                term_weights=term_weights,
            )
            window.append(value)
            if step % every == 0 or step == steps:
                # where the loss first stops being finite: the window's losses checked at
                # once, on the device (no read, and no operation, per step)
                first_bad = _first_not_finite(xp, window, window_start, first_bad)
                window, window_start = [], step + 1
                recorded_steps.append(step)
                W = xp.astype(product(params[:M]), xp.float64)
                H = xp.astype(params[M], xp.float64)
                metrics = _seed_metrics(H, W, labels_dev, onehot_t, counts_dev, complement, ctx)
                history.append(xp.concat([xp.astype(value, xp.float64)[None, :], metrics]))
            if step == steps:
                break
            grads = [*dW, dH] + ([db] if bias else [])
            for i, g in enumerate(grads):
                if velocity is None:
                    params[i] = shrink[i] * params[i] - (lr / N) * g
                else:
                    full = g * (1.0 / N) + decay[i] * params[i] if decay[i] else g * (1.0 / N)
                    velocity[i] = momentum * velocity[i] + full
                    params[i] = params[i] - lr * velocity[i]

        weights, H = params[:M], params[M]
        W = product(weights)
        means = (xp.astype(onehot_t, H.dtype) @ H) / xp.astype(counts_dev, H.dtype)[:, None]
        final = [xp.linalg.svdvals(xp.where(xp.isfinite(W), W, 0.0)),
                 xp.sqrt(xp.sum(W * W, axis=2)), xp.sqrt(xp.sum(means * means, axis=2))]
    # The one read of the run: the history, the final summaries and the divergence step.
    packed = to_numpy(xp.concat(
        [xp.reshape(xp.stack(history), (-1,))]
        + [xp.reshape(xp.astype(a, xp.float64), (-1,)) for a in final]
        + [xp.astype(first_bad, xp.float64)[None]]
    ))
    bad = int(packed[-1])
    if bad >= 0:
        raise ValueError(
            f"gradient descent diverged at step {bad} (loss not finite); lower lr={lr}"
        )
    T, rows = len(recorded_steps), 1 + len(RECORDED_METRICS)
    sizes = [T * rows * S] + [math.prod(a.shape) for a in final]
    table, singular, row_norms, mean_norms = np.split(packed[:-1], np.cumsum(sizes)[:-1])
    table = table.reshape(T, rows, S)
    return UFMTraining(
        steps=np.asarray(recorded_steps),
        loss=np.ascontiguousarray(table[:, 0, :].T),
        metrics={name: np.ascontiguousarray(table[:, 1 + i, :].T)
                 for i, name in enumerate(RECORDED_METRICS)},
        singular_values=singular.reshape(final[0].shape).astype(dtype),
        classifier_norms=row_norms.reshape(S, K).astype(dtype),
        feature_norms=mean_norms.reshape(S, K).astype(dtype),
        weights=tuple(weights),
        features=H,
        bias=params[M + 1] if bias else None,
        labels=labels,
    )

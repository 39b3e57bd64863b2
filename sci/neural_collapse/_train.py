"""Gradient descent on the deep linear unconstrained-feature model, batched over seeds."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import progress_bar
from .._validation import check_integer, check_real, resolve_dtype, resolve_rng
from ..backend import array_namespace, asarray, to_numpy
from ..parallel import map_trials, split_trials
from ._metrics import nc_metrics
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
    """Final W_1..W_M, each (S, out, in), of the active backend."""
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

    Returns
    -------
    UFMTraining

    Raises
    ------
    ValueError
        Bad sizes or regularisation, or a run that diverged (lower ``lr``).

    Notes
    -----
    The gradients are the closed-form ones of
    :math:`L = \\frac1N\\sum_i\\ell(W_M\\cdots W_1h_i + b, y_i) + \\sum_j\\frac{\\lambda_{W_j}}2
    \\|W_j\\|_F^2+\\frac{\\lambda_H}2\\|H\\|_F^2` by back-propagation through the layers. From a
    small initialisation deep models can stall near a spurious low-rank critical point, and
    close to the collapse threshold the global minimiser's basin is small
    :cite:p:`dang2023`; compare with :func:`ufm_minimizer` away from those regimes.

    Examples
    --------
    >>> from sci.neural_collapse import train_ufm, ufm_minimizer
    >>> run = train_ufm([20, 10, 5], depth=1, lambda_W=5e-3, lambda_H=5e-3, steps=3000,
    ...                 lr=0.5, rng=0)
    >>> exact = ufm_minimizer([20, 10, 5], depth=1, lambda_W=5e-3, lambda_H=5e-3)
    >>> bool(abs(run.loss[0, -1] - exact.objective) < 1e-8)
    True
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
    if bias and start is not None and start.bias is None:
        raise ValueError("start has no bias but bias=True")
    task = functools.partial(
        _train_seeds, counts=counts, M=M, lambdas=lambdas, lam_H=lam_H, loss=loss, bias=bias,
        d=d, steps=steps, lr=lr, momentum=momentum, init_scale=init_scale, start=start,
        every=every, dtype=dtype, progress=progress if len(sizes) == 1 else False,
    )
    generator = resolve_rng(rng)
    # One batch drawn from rng itself (with a progress bar per step), or child k of its seed
    # for task k (an int seed gives the same children as task_seeds(seed)).
    parts = map_trials(task, sizes, generator, executor=executor,
                       progress=progress if len(sizes) > 1 else False,
                       desc="train_ufm seed batches")
    return parts[0] if len(parts) == 1 else _concatenate(parts)


def _concatenate(parts: list[UFMTraining]) -> UFMTraining:
    """The runs of several tasks as one result, seeds in task order."""
    xp = array_namespace()

    def join(arrays):
        return xp.concatenate([xp.asarray(a) for a in arrays], axis=0)

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


def _train_seeds(chunk, *, counts, M, lambdas, lam_H, loss, bias, d, steps, lr, momentum,
                 init_scale, start, every, dtype, progress=False) -> UFMTraining:
    """One task of :func:`train_ufm`: ``chunk = (number of seeds, seed)``, trained as one
    batch."""
    S, seed = chunk
    gen = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    K, N = counts.size, int(counts.sum())
    xp = array_namespace()

    labels = np.repeat(np.arange(K), counts)
    labels_dev = asarray(labels)
    shapes = [(d, d)] * (M - 1) + [(K, d)]
    if start is None:
        params = [
            asarray(gen.standard_normal((S, *shape)) * (init_scale / np.sqrt(shape[1])),
                    dtype=dtype)
            for shape in shapes
        ]
        params.append(asarray(gen.standard_normal((S, N, d)) * (init_scale / np.sqrt(d)),
                              dtype=dtype))
        if bias:
            params.append(xp.zeros((S, K), dtype=dtype))
    else:
        points = [*start.weights, start.features] + ([start.bias] if bias else [])
        if bias and start.bias is None:
            raise ValueError("start has no bias but bias=True")
        expected = [*shapes, (N, d)] + ([(K,)] if bias else [])
        if [tuple(p.shape) for p in points] != expected:
            raise ValueError(
                f"start does not match the model: shapes {[tuple(p.shape) for p in points]}, "
                f"expected {expected} (same n_per_class, depth, width)"
            )
        params = [
            asarray(to_numpy(p)[None] + init_scale * gen.standard_normal((S, *p.shape)),
                    dtype=dtype)
            for p in points
        ]
    velocity = [xp.zeros_like(p) for p in params]

    recorded_steps: list[int] = []
    losses: list[np.ndarray] = []
    history: dict[str, list[np.ndarray]] = {name: [] for name in RECORDED_METRICS}

    def record(step: int, value: Any) -> None:
        recorded_steps.append(step)
        losses.append(to_numpy(value).astype(np.float64))
        weights, H = params[:M], params[M]
        b = params[M + 1] if bias else None
        per_seed = {name: np.empty(S) for name in RECORDED_METRICS}
        for s in range(S):
            W = weights[0][s]
            for layer in weights[1:]:
                W = layer[s] @ W
            m = nc_metrics(H[s], labels, W=W, b=None if b is None else b[s])
            for name in RECORDED_METRICS:
                per_seed[name][s] = getattr(m, name)
        for name in RECORDED_METRICS:
            history[name].append(per_seed[name])

    def evaluate(grad: bool):
        return _loss_and_gradients(
            params[:M], params[M], labels_dev, params[M + 1] if bias else None, lambdas, lam_H,
            loss, gradients=grad,
        )

    for step in progress_bar(range(steps + 1), progress=progress, desc="train_ufm"):
        # A diverging run overflows before the check below can report it clearly.
        with np.errstate(over="ignore", invalid="ignore"):
            value, dW, dH, db = evaluate(step < steps)
        if not bool(xp.all(xp.isfinite(value))):
            raise ValueError(
                f"gradient descent diverged at step {step} (loss not finite); lower lr={lr}"
            )
        if step % every == 0 or step == steps:
            record(step, value)
        if step == steps:
            break
        grads = [*dW, dH] + ([db] if bias else [])
        for i, g in enumerate(grads):
            velocity[i] = momentum * velocity[i] + g
            params[i] = params[i] - lr * velocity[i]

    weights, H = params[:M], params[M]
    W = weights[0]
    for layer in weights[1:]:
        W = layer @ W
    onehot = (labels_dev[:, None] == xp.arange(K)[None, :]).astype(H.dtype)
    means = xp.swapaxes(onehot, 0, 1)[None] @ H / asarray(counts.astype(np.float64))[:, None]
    return UFMTraining(
        steps=np.asarray(recorded_steps),
        loss=np.stack(losses, axis=1),
        metrics={name: np.stack(v, axis=1) for name, v in history.items()},
        singular_values=to_numpy(xp.linalg.svd(W, compute_uv=False)),
        classifier_norms=to_numpy(xp.linalg.norm(W, axis=2)),
        feature_norms=to_numpy(xp.linalg.norm(means, axis=2)),
        weights=tuple(weights),
        features=H,
        bias=params[M + 1] if bias else None,
        labels=labels,
    )

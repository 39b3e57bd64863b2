"""Two-layer ReLU student–teacher networks trained by full-batch gradient descent.

The nonlinear extension of Advani, Saxe & Sompolinsky (Sec. 6, Fig. 7): a fixed random ReLU
teacher labels P noisy examples; a ReLU student with H hidden units learns them by gradient
descent, either on its output weights only (a random-features model, whose descent iterates are
known in closed form) or on both layers (explicit steps, a Numba kernel on the CPU).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import (
    as_int_array,
    check_integer,
    check_memory,
    check_real,
    resolve_dtype,
    resolve_rng,
)
from ..backend import creation_context, implementation, register, to_numpy
from ..parallel import map_trials, split_trials, task_seeds
from ._simulation import (
    _OPERATIONS_PER_TASK,
    HOST_BACKENDS,
    _namespace_of,
    batches_of_tasks,
    device_batch_trials,
    placed,
    simulation_context,
    solve_in_batches,
    task_generator,
)

__all__ = ["draw_two_layer_problem", "simulate_two_layer"]


def _relu(x, xp):
    # where, not maximum with a Python scalar (torch refuses it); NaN stays NaN, as in
    # maximum, so that a diverged run is seen
    return xp.where(x < 0, 0.0, x)


def _draw_per_trial(n_hidden, n_inputs, n_teacher_hidden, n_examples, n_test):
    """Floats drawn or computed per trial by :func:`draw_two_layer_problem`, at its peak."""
    return (
        n_inputs * (n_examples + n_test + n_teacher_hidden + n_hidden)  # inputs and weights
        + 2 * n_teacher_hidden * max(n_examples, n_test)  # the teacher's hidden layer
        + 4 * (n_examples + n_test) + n_hidden + n_teacher_hidden  # labels, noise, outputs
    )


def draw_two_layer_problem(
    n_hidden: int,
    *,
    n_inputs: int = 15,
    n_teacher_hidden: int = 30,
    n_examples: int = 300,
    n_test: int = 1000,
    snr: float = 1.0,
    sigma_w0: float = 0.0,
    n_trials: int = 1,
    rng: Any = None,
    xp: Any = None,
    device: Any = None,
) -> dict[str, Array]:
    r"""Draw the data of :func:`simulate_two_layer` (float64, in this order per call).

    Inputs :math:`x \sim \mathcal N(0, I/N_i)` (``train_inputs`` ``(n_trials, N_i, P)``,
    ``test_inputs`` ``(n_trials, N_i, n_test)``); teacher
    :math:`f(x) = \sum_m \bar a_m\,\mathrm{relu}(\bar W_m\cdot x)/\sqrt{M}` with
    :math:`\bar W_{mi}, \bar a_m \sim \mathcal N(0, 1)`; the student's first layer
    ``student_hidden`` :math:`W_{ji} \sim \mathcal N(0,1)` and output weights
    ``student_output`` :math:`\sim \mathcal N(0, \sigma_{w_0}^2)`; label noise of variance
    :math:`\sigma_\epsilon^2 = \mathrm{Var}_{test}(f)/\mathrm{SNR}` (``noise_variance``).

    Everything is drawn and computed on the host by NumPy (the same numbers in every library).
    The arrays are NumPy arrays unless ``xp`` (numpy, cupy, torch, array_api_strict, ...) or
    ``device`` is given: then they are float64 arrays of that library on that device (default:
    its default device; ``device`` alone: the switch's library), each copied there once.

    Examples
    --------
    >>> from sci.generalization import draw_two_layer_problem
    >>> data = draw_two_layer_problem(20, n_examples=50, n_test=100, rng=0)
    >>> data["train_labels"].shape, data["student_hidden"].shape
    ((1, 50), (1, 20, 15))
    """
    ctx = None if xp is None and device is None else creation_context(xp, device)
    n_hidden = check_integer(n_hidden, "n_hidden", minimum=1)
    n_inputs = check_integer(n_inputs, "n_inputs", minimum=1)
    n_teacher_hidden = check_integer(n_teacher_hidden, "n_teacher_hidden", minimum=1)
    n_examples = check_integer(n_examples, "n_examples", minimum=1)
    n_test = check_integer(n_test, "n_test", minimum=2)
    n_trials = check_integer(n_trials, "n_trials", minimum=1)
    snr = check_real(snr, "snr", low=0.0, low_inclusive=False)
    sigma_w0 = check_real(sigma_w0, "sigma_w0", low=0.0)
    check_memory(
        8.0 * n_trials * _draw_per_trial(n_hidden, n_inputs, n_teacher_hidden, n_examples,
                                         n_test),
        f"drawing {n_trials} two-layer problems with N_i={n_inputs}, M={n_teacher_hidden}, "
        f"H={n_hidden}, P={n_examples}, {n_test} test points",
        hint="use fewer trials or test points per call",
    )
    rng = resolve_rng(rng)
    shape = (n_trials,)
    train_inputs = rng.standard_normal(shape + (n_inputs, n_examples)) / math.sqrt(n_inputs)
    test_inputs = rng.standard_normal(shape + (n_inputs, n_test)) / math.sqrt(n_inputs)
    teacher_hidden = rng.standard_normal(shape + (n_teacher_hidden, n_inputs))
    teacher_output = rng.standard_normal(shape + (n_teacher_hidden,))
    student_hidden = rng.standard_normal(shape + (n_hidden, n_inputs))
    student_output = sigma_w0 * rng.standard_normal(shape + (n_hidden,))
    unit_noise = rng.standard_normal(shape + (n_examples,))

    def teacher(inputs):
        hidden = _relu(teacher_hidden @ inputs, np)
        return (teacher_output[:, None, :] @ hidden)[:, 0, :] / math.sqrt(n_teacher_hidden)

    test_labels = teacher(test_inputs)
    noise_variance = np.var(test_labels, axis=1) / snr
    train_labels = teacher(train_inputs) + np.sqrt(noise_variance)[:, None] * unit_noise
    data = {
        "train_inputs": train_inputs,
        "train_labels": train_labels,
        "test_inputs": test_inputs,
        "test_labels": test_labels,
        "student_hidden": student_hidden,
        "student_output": student_output,
        "noise_variance": noise_variance,
    }
    return data if ctx is None else placed(data, ctx, np.float64)


def _random_features_curves(data, epochs, learning_rate, ctx):
    """Exact descent iterates of the output weights (first layer frozen), at every epoch.

    With features phi = relu(W x)/sqrt(H) and K = Phi^T Phi / P (P x P), the training residual
    obeys r_{k+1} = r_k (I - eta K), so r_k = r_0 U (1 - eta lam)^k U^T and the weights are
    w_k = w_0 + r_0 U diag((1 - (1 - eta lam)^k)/(P lam)) U^T Phi^T: one eigendecomposition
    per trial whatever the number of epochs or hidden units; one batched eigendecomposition
    for the trials of a task (array code of the standard, in ``ctx``). The divergence check
    is the one read from the device.
    """
    xp = ctx.xp

    def swap(A):
        return xp.permute_dims(A, (0, 2, 1))

    hidden = data["student_hidden"]
    n_hidden = hidden.shape[1]
    n_examples = data["train_inputs"].shape[2]
    scale = 1.0 / math.sqrt(n_hidden)
    features = _relu(hidden @ data["train_inputs"], xp) * scale  # (trials, H, P)
    test_features = _relu(hidden @ data["test_inputs"], xp) * scale  # (trials, H, T)
    w0 = data["student_output"][:, None, :]
    kernel = swap(features) @ features / n_examples  # (trials, P, P)
    lam, vectors = xp.linalg.eigh(kernel)
    largest = float(to_numpy(xp.max(lam)))
    # Eigenvalues at the rounding level are the kernel's exact zeros (rank min(H, P)): leave
    # them exactly frozen rather than let them drift over 10^9 epochs (the lstsq rank rule).
    cutoff = n_examples * float(xp.finfo(lam.dtype).eps) * xp.max(lam, axis=1, keepdims=True)
    lam = xp.where(lam > cutoff, lam, 0.0)
    if learning_rate * largest >= 2.0:
        raise ValueError(
            f"learning_rate={learning_rate} makes gradient descent diverge: the largest "
            f"eigenvalue of the feature kernel is {largest:.4g}, so it must be < "
            f"{2.0 / largest:.4g}"
        )
    residual0 = data["train_labels"][:, None, :] - (w0 @ features)  # (trials, 1, P)
    coefficient = (residual0 @ vectors)[:, 0, :]  # (trials, P)
    cross = swap(features) @ test_features  # (trials, P, T)
    test_base = (w0 @ test_features)[:, 0, :]
    test_modes = swap(vectors) @ cross  # (trials, P modes, T)
    steps = ctx.asarray(epochs.astype(np.float64), dtype=lam.dtype)[None, :, None]
    rate = learning_rate * lam[:, None, :]
    base = 1.0 - rate
    contracting = base > 0
    log_base = xp.log1p(-xp.where(contracting, rate, 0.0))
    decay = xp.where(contracting, xp.exp(steps * log_base), base**steps)  # (trials, E, P)
    positive = lam[:, None, :] > 0
    safe = xp.where(positive, lam[:, None, :], 1.0)
    # (1 - decay)/(P lam), by expm1 where (1 - eta lam)^k is near 1; k eta / P at lam = 0.
    shrink = xp.where(contracting, -xp.expm1(steps * log_base), 1.0 - decay)
    gain = xp.where(positive, shrink / (n_examples * safe), learning_rate * steps / n_examples)
    training = xp.sum((coefficient[:, None, :] * decay) ** 2, axis=2) / n_examples
    predictions = test_base[:, None, :] + (coefficient[:, None, :] * gain) @ test_modes
    error = predictions - data["test_labels"][:, None, :]
    generalization = xp.mean(error * error, axis=2) + data["noise_variance"][:, None]
    return generalization, training


def _two_layer_descent_array(train_inputs, train_labels, test_inputs, test_labels, hidden,
                             output, epochs, learning_rate):
    """Full-batch descent on both layers for a stack of trials (array code of the standard,
    in the arrays' namespace: every step is batched over the trials, nothing is read back)."""
    xp = _namespace_of(hidden)
    n_hidden = hidden.shape[1]
    n_examples = train_inputs.shape[2]
    scale = 1.0 / math.sqrt(n_hidden)
    inputs_t = xp.permute_dims(train_inputs, (0, 2, 1))
    generalization, training = [], []
    record = 0
    for epoch in range(int(epochs[-1]) + 1):
        pre = hidden @ train_inputs  # (trials, H, P)
        active = _relu(pre, xp)
        residual = (output[:, None, :] @ active)[:, 0, :] * scale - train_labels
        while record < len(epochs) and epochs[record] == epoch:
            test_pred = (output[:, None, :] @ _relu(hidden @ test_inputs, xp))[:, 0, :] * scale
            generalization.append(xp.mean((test_pred - test_labels) ** 2, axis=1))
            training.append(xp.mean(residual**2, axis=1))
            record += 1
        if epoch == epochs[-1]:
            break
        step = learning_rate * scale / n_examples
        grad_output = (active @ residual[:, :, None])[:, :, 0]
        back = output[:, :, None] * xp.astype(pre > 0, pre.dtype) * residual[:, None, :]
        grad_hidden = back @ inputs_t  # back: (trials, H, P)
        output = output - step * grad_output
        hidden = hidden - step * grad_hidden
    return xp.stack(generalization, axis=1), xp.stack(training, axis=1)


register("generalization.two_layer_descent", "array", _two_layer_descent_array)
register("generalization.two_layer_descent", "numba", "sci.generalization._cpu:two_layer_descent")


def simulate_two_layer(
    n_hidden: int,
    epochs: Any,
    *,
    n_inputs: int = 15,
    n_teacher_hidden: int = 30,
    n_examples: int = 300,
    snr: float = 1.0,
    learning_rate: float = 1.0,
    train_hidden: bool = False,
    sigma_w0: float = 0.0,
    n_trials: int = 10,
    n_test: int = 1000,
    rng: Any = None,
    dtype: Any = None,
    trials_per_task: int | None = None,
    executor: Any = None,
    xp: Any = None,
    device: Any = None,
) -> tuple[Array, Array]:
    r"""Errors of two-layer ReLU students trained by full-batch gradient descent on a teacher.

    The student :math:`\hat y(x) = \sum_{j=1}^{H} a_j\,\mathrm{relu}(W_j\cdot x)/\sqrt H` learns
    from :math:`P` examples :math:`y = f(x) + \epsilon` of a random ReLU teacher with
    :math:`M` hidden units (:func:`draw_two_layer_problem`) by descent on
    :math:`L = \frac{1}{2P}\sum_\mu (y_\mu - \hat y(x_\mu))^2` with step :math:`\eta`.

    Parameters
    ----------
    n_hidden : int
        :math:`H`, the student's hidden units.
    epochs : array_like of int
        Increasing epochs (full-batch steps) at which to record the errors; 0 is the start.
    n_inputs, n_teacher_hidden, n_examples : int
        :math:`N_i`, :math:`M`, :math:`P` (the paper: 15, 30, 300).
    snr : float
        Signal-to-noise ratio :math:`\mathrm{Var}(f)/\sigma_\epsilon^2`.
    learning_rate : float
        :math:`\eta`.
    train_hidden : bool
        ``False`` (default, the paper's Fig. 7): only the output weights :math:`a` learn; the
        iterates are computed exactly from one eigendecomposition of the :math:`P\times P`
        feature kernel, so any epoch (``10**7``) costs the same. ``True``: both layers learn,
        by explicit steps (Numba kernel parallel over trials on the CPU, batched array code on
        CuPy); the cost grows with the last epoch.
    sigma_w0 : float
        Standard deviation of the initial output weights (first layer: :math:`\mathcal N(0,1)`).
    n_trials : int
        Independent seeds (teacher, data, student), run together in tasks of
        ``trials_per_task``.
    n_test : int
        Fresh examples on which the generalization error is measured.
    rng : None, int or numpy.random.Generator
    dtype : {None, float32, float64}
    trials_per_task : int, optional
        Trials per task of the executor (default: as many as make about :math:`2^{31}`
        operations, estimated from the sizes and the last epoch only). With a single task the
        trials are drawn from ``rng`` itself, as :func:`draw_two_layer_problem` draws them;
        with several, task :math:`k` draws from child :math:`k` of the seed
        (:func:`sci.parallel.task_seeds`).
    executor : optional
        Where the tasks run (anything :func:`sci.parallel.get_executor` accepts); default
        :func:`sci.parallel.current_executor`. The results do not depend on it.
    xp : module, optional
        The array library to simulate in (numpy, cupy, torch, array_api_strict, ...); default:
        ``epochs``'s library if it is not NumPy, else the switch's (NumPy, or CuPy under
        ``use_backend("cupy")``).
    device : optional
        The device in that library (default: ``epochs``'s, or the library's default device).

    Returns
    -------
    generalization, training : array
        Shape ``(n_trials, len(epochs))``, arrays of that library on that device, in
        ``dtype``: the expected squared error on a fresh noisy example (test error against
        :math:`f` plus :math:`\sigma_\epsilon^2`) and the training mean squared error.

    Raises
    ------
    ValueError
        For bad sizes, unsorted or negative epochs, a non-positive ``snr`` or
        ``learning_rate``, a learning rate at which descent diverges; ``MemoryLimitError`` (a
        ValueError) if the data, the feature kernel and the ``(epochs x examples)`` work arrays
        would need more memory than ``SCI_MEMORY_LIMIT`` allows.
    TypeError
        ``epochs`` of another library or device than ``xp``/``device`` name.

    Notes
    -----
    With the first layer frozen the student is linear in :math:`H` random ReLU features and its
    training dynamics are those of the linear model with the feature kernel's spectrum in
    place of the Marchenko–Pastur law: the spectrum reaches zero when :math:`H \approx P`, which
    is where overtraining peaks (Advani et al., Fig. 7D). The trials are drawn on the host
    (NumPy, from ``rng``: the same numbers in every library) and copied to the device once;
    NumPy arrays under the ``numba`` switch take the Numba kernel for ``train_hidden=True``,
    every other case array code of the standard, batched over the trials of a task (one
    batched eigendecomposition, or one batched product per layer and epoch), with one read
    from the device per task (the divergence check). The tasks run on the executor of
    :mod:`sci.parallel`: the numbers depend on the seed and ``trials_per_task``, not on where
    they ran. On a device (any library but NumPy) they run in this process instead, as in
    :func:`simulate_linear`: consecutive tasks solved as one batch of as many trials as a
    quarter of the device's free memory holds (one read per batch), the next batch drawn on
    host threads meanwhile; the numbers are those of the tasks one by one.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 6,
       Fig. 7.

    Examples
    --------
    >>> from sci.generalization import simulate_two_layer
    >>> eg, et = simulate_two_layer(40, [0, 10, 1000], n_examples=60, n_trials=3, rng=0)
    >>> eg.shape
    (3, 3)
    >>> bool((et[:, -1] < et[:, 0]).all())
    True
    >>> import torch
    >>> eg_t, _ = simulate_two_layer(40, [0, 10, 1000], n_examples=60, n_trials=3, rng=0,
    ...                              xp=torch)
    >>> type(eg_t).__name__, bool(abs(eg_t.numpy() - eg).max() < 1e-10)
    ('Tensor', True)
    """
    # epochs of a library (torch, ...) place the simulation, as t does simulate_linear's;
    # their values are read on the host (they count steps)
    ctx = simulation_context(xp, device, epochs=epochs)
    epochs = as_int_array(epochs, "epochs", minimum=0)
    if epochs.ndim != 1 or epochs.size == 0:
        raise ValueError(f"epochs must be a non-empty 1-D array; got shape {epochs.shape}")
    if np.any(np.diff(epochs) < 0):
        raise ValueError("epochs must be sorted in increasing order")
    learning_rate = check_real(learning_rate, "learning_rate", low=0.0, low_inclusive=False)
    dtype = resolve_dtype(dtype)
    n_trials = check_integer(n_trials, "n_trials", minimum=1)
    n_test = check_integer(n_test, "n_test", minimum=2)
    n_examples = check_integer(n_examples, "n_examples", minimum=1)
    n_hidden = check_integer(n_hidden, "n_hidden", minimum=1)
    n_inputs = check_integer(n_inputs, "n_inputs", minimum=1)
    n_teacher_hidden = check_integer(n_teacher_hidden, "n_teacher_hidden", minimum=1)
    n_epochs = int(epochs.size)
    h, p, t = n_hidden, n_examples, n_test
    if train_hidden:
        # Pre-activations, activations, mask and back-propagated errors (H x P), the test
        # layer (H x T), the weights and the recorded errors.
        work = 5 * h * p + 2 * h * t + 2 * h * n_inputs + 2 * n_epochs
    else:
        # Features (H x P, H x T), the P x P kernel with its eigenvectors and eigh workspace,
        # the P x T cross products, the (epochs x P) decay factors and (epochs x T) predictions.
        work = (2 * h * (p + t) + 4 * p * p + 2 * p * t + 8 * n_epochs * p
                + 3 * n_epochs * t)
    copied = n_inputs * (p + t + h) + 3 * (p + t) + h  # the data in the working dtype
    if trials_per_task is None:
        if train_hidden:
            per_trial = 6.0 * int(epochs[-1]) * h * (p * n_inputs + t / max(n_epochs, 1))
        else:
            per_trial = (h * n_inputs * (p + t) + h * p * p + p**3 + p * p * t
                         + n_epochs * p * (p + t))
        trials_per_task = max(1, int(_OPERATIONS_PER_TASK // max(per_trial, 1.0)))
    trials_per_task = check_integer(trials_per_task, "trials_per_task", minimum=1)
    sizes = split_trials(n_trials, min(trials_per_task, n_trials))
    per_trial = (8.0 * _draw_per_trial(h, n_inputs, n_teacher_hidden, p, t)
                 + dtype.itemsize * float(copied + work))
    # On a device the tasks are solved in batches of whole tasks (as simulate_linear's).
    on_device = ctx.backend not in HOST_BACKENDS
    batches = (batches_of_tasks(sizes, device_batch_trials(per_trial, ctx)) if on_device
               else [[k] for k in range(len(sizes))])
    peak = max(sum(sizes[k] for k in batch) for batch in batches)
    # One task (batch) holds its own trials (the others may be elsewhere) and the curves of all.
    check_memory(
        peak * per_trial
        + (n_trials - peak) * 2.0 * dtype.itemsize * n_epochs,
        f"{n_trials} two-layer trials with H={h}, P={p}, {t} test points and "
        f"{n_epochs:,} recorded epochs" + (f" ({peak} per task)" if len(sizes) > 1 else ""),
        hint="use fewer trials per task, test points or recorded epochs per call",
        ctx=ctx,
    )
    snr = check_real(snr, "snr", low=0.0, low_inclusive=False)
    sigma_w0 = check_real(sigma_w0, "sigma_w0", low=0.0)
    generator = resolve_rng(rng)
    # One task: the draws of draw_two_layer_problem(..., rng=rng); several: child k of the
    # generator's seed for task k (an int seed gives the same children as task_seeds(seed)).
    draw = functools.partial(
        draw_two_layer_problem, n_hidden, n_inputs=n_inputs, n_teacher_hidden=n_teacher_hidden,
        n_examples=n_examples, n_test=n_test, snr=snr, sigma_w0=sigma_w0)
    solve = functools.partial(_two_layer_solve, epochs=epochs, learning_rate=learning_rate,
                              train_hidden=train_hidden, dtype=dtype, ctx=ctx)
    if on_device:
        seeds = [generator] if len(sizes) == 1 else task_seeds(generator, len(sizes))
        results = solve_in_batches(sizes, seeds, batches, solve,
                                   functools.partial(_start_draws, sizes=sizes, draw=draw))
    else:
        task = functools.partial(_two_layer_task, draw=draw, solve=solve)
        results = map_trials(task, sizes, generator, executor=executor)
    if len(results) == 1:
        return results[0]
    return tuple(ctx.xp.concat([r[i] for r in results], axis=0) for i in (0, 1))


def _two_layer_task(chunk, *, draw, solve):
    """One task of :func:`simulate_two_layer` on the host: ``chunk = (n_trials, seed)``."""
    n_trials, seed = chunk
    return solve(draw(n_trials=n_trials, rng=task_generator(seed)))


def _start_draws(batch, seeds, pool, *, sizes, draw):
    """The draws of a batch of tasks, one thread each (task ``k`` from ``seeds[k]``: the
    numbers of :func:`_two_layer_task`), joined along the trials when they are done."""
    futures = [pool.submit(draw, n_trials=sizes[k], rng=task_generator(seeds[k]))
               for k in batch]

    def finish():
        parts = [future.result() for future in futures]
        if len(parts) == 1:
            return parts[0]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    return finish


def _two_layer_solve(data, *, epochs, learning_rate, train_hidden, dtype, ctx):
    """The curves of the trials of ``data`` (host draws), solved in ``ctx`` as one batch."""
    xp = ctx.xp
    arrays = placed(data, ctx, dtype)
    if not train_hidden:
        return _random_features_curves(arrays, epochs, learning_rate, ctx)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged run is reported below
        generalization, training = implementation("generalization.two_layer_descent",
                                                  ctx.backend)(
            arrays["train_inputs"], arrays["train_labels"], arrays["test_inputs"],
            arrays["test_labels"], arrays["student_hidden"], arrays["student_output"],
            epochs, learning_rate,
        )
    if not bool(to_numpy(xp.all(xp.isfinite(training)))):
        raise ValueError(
            f"gradient descent diverged at learning_rate={learning_rate}; use a smaller one"
        )
    return generalization + arrays["noise_variance"][:, None], training

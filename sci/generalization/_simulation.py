"""Simulations of the linear student–teacher model: exact gradient flow and finite-step descent.

Every trial draws its own inputs, teacher, noise and initial student; the trials are solved
together in one batched eigendecomposition, then the error at every requested time follows in
closed form in the eigenbasis (no time stepping, no accumulated rounding).
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import (
    as_float_array,
    check_integer,
    check_memory,
    check_real,
    memory_limit,
    resolve_dtype,
    resolve_rng,
)
from .._validation import chunk_length as _chunk_within
from ..backend import (
    array_context,
    creation_context,
    implementation,
    register,
    to_numpy,
)
from ..parallel import map_trials, split_trials, task_seeds
from ._memory import chunk_length, itemsize_of

__all__ = ["draw_linear_problem", "simulate_linear"]


def _namespace_of(x):
    """The array-API namespace of an array (the kernels of the table take arrays only)."""
    import array_api_compat

    return array_api_compat.array_namespace(x)


def simulation_context(xp: Any, device: Any, **arrays: Any):
    """Where a simulation computes: its array arguments' library and device if they are not
    NumPy (then ``xp``/``device``, when given, must name the same), else ``xp``/``device``
    (default: the switch's)."""
    ctx = array_context(*arrays.values(), names=tuple(arrays))
    if ctx.backend != "array" and not (ctx.backend == "cupy" and _foreign(arrays)):
        return creation_context(xp, device)
    if xp is None and device is None:
        return ctx
    asked = creation_context(xp, device)
    if asked.xp is not ctx.xp or asked.device != ctx.device:
        names = " and ".join(tuple(arrays))
        raise TypeError(
            f"{names} is {ctx.describe()} but xp/device ask for {asked.describe()}; pass "
            "arrays of the library asked for (or leave xp and device out)"
        )
    return asked


def _foreign(arrays: dict) -> bool:
    """Whether any of ``arrays`` is an array of a library (not NumPy, a list or a number)."""
    return any(not isinstance(a, np.ndarray | np.generic | int | float | list | tuple)
               for a in arrays.values() if a is not None)


def placed(problem: dict[str, np.ndarray], ctx: Any, dtype: Any) -> dict[str, Array]:
    """The host draws in ``ctx``'s library, on its device, in ``dtype``: one copy each."""
    work = getattr(ctx.xp, np.dtype(dtype).name)
    return {k: ctx.asarray(v, dtype=work) for k, v in problem.items()}


def draw_linear_problem(
    n_inputs: int,
    n_examples: int,
    *,
    sigma_w: float = 1.0,
    sigma_eps: float,
    sigma_w0: float = 0.0,
    n_trials: int = 1,
    rng: Any = None,
    xp: Any = None,
    device: Any = None,
) -> dict[str, Array]:
    r"""Draw the random data of :func:`simulate_linear` (float64, in its order).

    Returns a dict with ``inputs`` :math:`X` of shape ``(n_trials, N, P)`` (entries
    :math:`\mathcal N(0, 1/N)`), ``teacher`` :math:`\bar w` ``(n_trials, N)``, ``initial``
    :math:`w(0)` ``(n_trials, N)`` and ``noise`` :math:`\epsilon` ``(n_trials, P)``, drawn in
    that order from ``rng``. The same seed gives the same problem on every backend and in
    every library: the numbers are drawn on the host by NumPy.

    The arrays are NumPy arrays unless ``xp`` (numpy, cupy, torch, array_api_strict, ...) or
    ``device`` is given: then they are float64 arrays of that library on that device (default:
    its default device; ``device`` alone: the switch's library), each copied there once.

    Examples
    --------
    >>> from sci.generalization import draw_linear_problem
    >>> problem = draw_linear_problem(3, 5, sigma_eps=0.1, n_trials=2, rng=0)
    >>> problem["inputs"].shape, problem["noise"].shape
    ((2, 3, 5), (2, 5))
    >>> import torch
    >>> draw_linear_problem(3, 5, sigma_eps=0.1, rng=0, xp=torch)["noise"].dtype
    torch.float64
    """
    ctx = None if xp is None and device is None else creation_context(xp, device)
    n_inputs = check_integer(n_inputs, "n_inputs", minimum=1)
    n_examples = check_integer(n_examples, "n_examples", minimum=1)
    n_trials = check_integer(n_trials, "n_trials", minimum=1)
    sigma_w = check_real(sigma_w, "sigma_w", low=0.0)
    sigma_eps = check_real(sigma_eps, "sigma_eps", low=0.0)
    sigma_w0 = check_real(sigma_w0, "sigma_w0", low=0.0)
    check_memory(
        8.0 * n_trials * n_inputs * (n_examples + 2) * 2,
        f"{n_trials} trials with N={n_inputs}, P={n_examples}",
        hint="use fewer trials per call",
    )
    problem = _empty_problem(n_trials, n_inputs, n_examples)
    _draw_into(problem, slice(0, n_trials), resolve_rng(rng), sigma_w=sigma_w,
               sigma_eps=sigma_eps, sigma_w0=sigma_w0)
    return problem if ctx is None else placed(problem, ctx, np.float64)


def _empty_problem(n_trials: int, n_inputs: int, n_examples: int) -> dict[str, np.ndarray]:
    """Host buffers for the draws of ``n_trials`` trials (filled by :func:`_draw_into`)."""
    return {"inputs": np.empty((n_trials, n_inputs, n_examples)),
            "teacher": np.empty((n_trials, n_inputs)),
            "initial": np.empty((n_trials, n_inputs)),
            "noise": np.empty((n_trials, n_examples))}


def _draw_into(problem: dict[str, np.ndarray], trials: slice, rng: np.random.Generator, *,
               sigma_w: float, sigma_eps: float, sigma_w0: float) -> None:
    """Draw the trials ``trials`` of ``problem`` from ``rng`` in place, in the documented order.

    Drawn straight into the (contiguous) slices and scaled there: the same numbers as
    ``scale * rng.standard_normal(shape)`` (IEEE products and quotients do not depend on the
    operands' order), without a temporary or a copy. Disjoint slices can be filled from
    several threads at once (NumPy releases the GIL while it fills an array).
    """
    inputs = problem["inputs"][trials]
    rng.standard_normal(out=inputs)
    inputs /= math.sqrt(inputs.shape[1])
    for name, scale in (("teacher", sigma_w), ("initial", sigma_w0), ("noise", sigma_eps)):
        part = problem[name][trials]
        rng.standard_normal(out=part)
        part *= scale


def _eigenmodes(inputs, teacher, initial, noise, xp):
    """Nonzero modes of XX^T for a stack of trials.

    Returns the eigenvalues lam, the initial errors z(0) = (w_bar - w(0)) v, the drives
    b = eps X^T v, the initial training residual per mode (lam z(0) + b)^2 / lam, the squared
    initial error in the frozen null space of XX^T, and the squared noise outside the span of
    the inputs (what no student can fit). Array code of the standard (namespace ``xp``): each
    step is one batched operation over the trials.
    """
    n_inputs, n_examples = inputs.shape[-2:]
    error0 = teacher - initial
    inputs_t = xp.permute_dims(inputs, (0, 2, 1))
    tiny = float(xp.finfo(inputs.dtype).smallest_normal)

    def floor(lam):  # max(lam, tiny), without maximum's Python scalar (torch)
        return xp.where(lam > tiny, lam, tiny)

    def times(matrix, vector):  # a stack of matrix-vector products
        return (matrix @ vector[:, :, None])[:, :, 0]

    # Only matrix-vector products with X after the eigendecomposition: no N x P (or P x N)
    # matrix of eigenvectors is formed, so memory stays at that of X itself.
    if n_inputs <= n_examples:
        lam, vectors = xp.linalg.eigh(inputs @ inputs_t)
        lam = floor(lam)
        root = xp.sqrt(lam)
        vectors_t = xp.permute_dims(vectors, (0, 2, 1))
        z0 = times(vectors_t, error0)
        drive = times(vectors_t, times(inputs, noise))
        # eps projected on the span of the inputs, sum_i c_i u_i with u_i = X^T v_i / sqrt(lam)
        coefficient = drive / root
        inside = times(inputs_t, times(vectors, coefficient / root))
        frozen = xp.zeros_like(inputs[:, 0, 0])
    else:
        # N > P: the P nonzero modes from the smaller Gram matrix X^T X = U diag(lam) U^T,
        # v_i = X u_i / sqrt(lam_i); the N - P others have lam = 0 and never move.
        lam, directions = xp.linalg.eigh(inputs_t @ inputs)
        lam = floor(lam)
        root = xp.sqrt(lam)
        directions_t = xp.permute_dims(directions, (0, 2, 1))
        z0 = times(directions_t, times(inputs_t, error0)) / root
        coefficient = times(directions_t, noise)
        drive = root * coefficient
        inside = times(directions, coefficient)
        # The null-space part by explicit projection (not |e0|^2 - sum z0^2, which cancels).
        residual = error0 - times(inputs, times(directions, z0 / root))
        frozen = xp.sum(residual * residual, axis=1)
    outside = noise - inside
    noise_out = xp.sum(outside * outside, axis=1)
    fit0 = (root * z0 + coefficient) ** 2
    return lam, z0, drive, fit0, frozen, noise_out


def _mode_factors(lam, s, learning_rate, xp):
    """decay = e^{-lam s} (flow) or (1 - eta lam)^k (descent, k = s/eta steps), and
    gain = (1 - decay)/lam, without cancellation where lam s is small."""
    if learning_rate is None:
        x = -lam * s
        return xp.exp(x), -xp.expm1(x) / lam
    steps = xp.round(s / learning_rate)
    base = 1.0 - learning_rate * lam
    contracting = base > 0
    log_base = xp.log1p(-learning_rate * xp.where(contracting, lam, 0.0))
    decay = xp.where(contracting, xp.exp(steps * log_base), base**steps)
    gain = xp.where(contracting, -xp.expm1(steps * log_base), 1.0 - decay) / lam
    return decay, gain


def _linear_errors_array(lam, z0, drive, fit0, frozen, noise_out, s, learning_rate):
    """(trials, times) sums: |z(t)|^2 + frozen, and the training residual.

    The residual of mode i is decay_i^2 (lam_i z_i(0) + b_i)^2 / lam_i (since lam z(t) + b =
    decay (lam z(0) + b)), a sum of squares free of cancellation, plus the noise outside the
    span of the inputs. Array code of the standard, in the arrays' namespace, chunked over
    the times.
    """
    xp = _namespace_of(lam)
    n_trials, n_modes = lam.shape
    n_times = s.shape[0]
    if n_times == 0:
        return xp.zeros_like(lam[:, :0]), xp.zeros_like(lam[:, :0])
    weights, residual = [], []
    step = _linear_chunk_times(n_times, n_trials, n_modes, itemsize_of(lam.dtype))
    for start in range(0, n_times, step):
        times = s[start:min(n_times, start + step)][None, :, None]
        decay, gain = _mode_factors(lam[:, None, :], times, learning_rate, xp)
        z = z0[:, None, :] * decay - drive[:, None, :] * gain
        weights.append(xp.sum(z * z, axis=2) + frozen[:, None])
        residual.append(xp.sum(decay * decay * fit0[:, None, :], axis=2) + noise_out[:, None])
    if len(weights) == 1:
        return weights[0], residual[0]
    return xp.concat(weights, axis=1), xp.concat(residual, axis=1)


def _linear_work_array(n_times, n_trials, n_modes, itemsize):
    """Bytes of the chunked (trials x times x modes) intermediates of the array code."""
    step = _linear_chunk_times(n_times, n_trials, n_modes, itemsize)
    return float(step) * n_trials * n_modes * itemsize * _LINEAR_TEMPORARIES


register("generalization.linear_errors", "array", _linear_errors_array)
register("generalization.linear_errors", "numba", "sci.generalization._cpu:linear_errors")
# What each implementation allocates beyond its outputs, beside it in the table: the Numba
# kernel accumulates in registers.
register("generalization.linear_errors_work", "array", _linear_work_array)
register("generalization.linear_errors_work", "numba", lambda *sizes: 0.0)

# (trials x times x modes) work arrays alive at once in a chunk of _linear_errors_array:
# the exponents, decay, gain, z and the products of the two sums.
_LINEAR_TEMPORARIES = 8
_LINEAR_CHUNK_ELEMENTS = 1 << 22


def _linear_chunk_times(n_times, n_trials, n_modes, itemsize):
    """Times per chunk of :func:`_linear_errors_array`: its intermediates stay bounded by
    _LINEAR_CHUNK_ELEMENTS and a quarter of the memory limit, whatever the number of times."""
    per_time = max(1, n_trials * n_modes)
    return chunk_length(n_times, per_time * itemsize * _LINEAR_TEMPORARIES,
                        max(1, _LINEAR_CHUNK_ELEMENTS // per_time))


def _check_linear_memory(n_inputs, n_examples, n_times, n_trials, itemsize, trials=None,
                         ctx=None):
    """Refuse up front a simulation that would need more than the memory limit: one task of
    ``trials`` trials (default all) at its peak, and the curves of all ``n_trials``."""
    modes = min(n_inputs, n_examples)
    per_trial_data = n_inputs * n_examples + 2 * n_inputs + n_examples
    trials = n_trials if trials is None else trials
    outputs = itemsize * 2.0 * n_times * (n_trials - trials)
    what = f"{n_trials} linear trials with N={n_inputs}, P={n_examples} at {n_times:,} times"
    if trials < n_trials:
        what += f" ({trials} per task)"
    n_trials = trials
    nbytes = outputs + n_trials * (
        8.0 * per_trial_data  # the float64 draws
        + itemsize * per_trial_data  # their copy in the working dtype
        + itemsize * 4.0 * modes * modes  # Gram matrix, eigenvectors, eigh workspace
        + itemsize * 12.0 * (n_inputs + n_examples)  # per-mode and per-example vectors
        + itemsize * 4.0 * n_times  # weights, residual and the two returned curves
    )
    backend = None if ctx is None else ctx.backend
    nbytes += implementation("generalization.linear_errors_work", backend)(
        n_times, n_trials, modes, itemsize)
    check_memory(
        nbytes,
        what,
        hint="use fewer trials (per task) or times per call",
        ctx=ctx,
    )


def simulate_linear(
    n_inputs: int,
    n_examples: int,
    t: Any,
    *,
    sigma_w: float = 1.0,
    sigma_eps: float,
    sigma_w0: float = 0.0,
    tau: float = 1.0,
    learning_rate: float | None = None,
    n_trials: int = 20,
    rng: Any = None,
    dtype: Any = None,
    trials_per_task: int | None = None,
    executor: Any = None,
    xp: Any = None,
    device: Any = None,
) -> tuple[Array, Array]:
    r"""Generalization and training error of simulated linear students, trial by trial.

    Each trial draws inputs :math:`X` (:math:`N \times P`, entries :math:`\mathcal N(0,1/N)`),
    a teacher :math:`\bar w`, label noise :math:`\epsilon` and an initial student :math:`w(0)`
    (:func:`draw_linear_problem`), and follows either gradient flow
    :math:`\tau\dot w = \Sigma^{yx} - w\Sigma^{xx}` exactly, or gradient descent
    :math:`w_{k+1} = w_k + \eta(\Sigma^{yx} - w_k\Sigma^{xx})` (time :math:`t = k\eta\tau`).

    Parameters
    ----------
    n_inputs, n_examples : int
        :math:`N` and :math:`P` (:math:`\alpha = P/N`).
    t : array_like
        1-D array of training times :math:`\ge 0`. An array of a library (torch, CuPy,
        ``array_api_strict``, ...) sets where the simulation runs and what it returns.
    sigma_w, sigma_eps, sigma_w0 : float
        Standard deviations of teacher weights, label noise and initial student weights.
    tau : float
        Time constant.
    learning_rate : float, optional
        :math:`\eta` for finite-step descent; ``None`` (default) for the exact flow. Times are
        rounded to whole steps :math:`k = \mathrm{round}(t/(\eta\tau))`; descent diverges when
        :math:`\eta\lambda_{max} > 2` (:math:`\lambda_{max} \approx (1+\sqrt\alpha)^2`).
    n_trials : int
        Independent trials, solved in batched computations of ``trials_per_task`` trials.
    rng : None, int or numpy.random.Generator
        Seed; the draws do not depend on the backend nor on the executor.
    dtype : {None, float32, float64}
        Precision of the computation (default float64).
    trials_per_task : int, optional
        Trials per task of the executor (default: as many as make about :math:`2^{31}`
        operations, :math:`\min(N,P)^2\max(N,P)` per trial, from the sizes only). With a
        single task the trials are drawn from ``rng`` itself, exactly as
        :func:`draw_linear_problem` draws them; with several, task :math:`k` draws its trials
        from child :math:`k` of the seed (:func:`sci.parallel.task_seeds`).
    executor : optional
        Where the tasks run (anything :func:`sci.parallel.get_executor` accepts); default
        :func:`sci.parallel.current_executor`. The results do not depend on it. Used for
        NumPy arrays (the ``numpy`` and ``numba`` switches); other libraries batch the tasks
        on their device (see Notes).
    xp : module, optional
        The array library to simulate in (numpy, cupy, torch, array_api_strict, ...);
        default: ``t``'s library if it is not NumPy, else the switch's (NumPy, or CuPy under
        ``use_backend("cupy")``).
    device : optional
        The device in that library (default: ``t``'s, or the library's default device).

    Returns
    -------
    generalization, training : array
        Shape ``(n_trials, len(t))``, arrays of that library on that device, in ``dtype``:
        :math:`\|\bar w - w(t)\|^2/N + \sigma_\epsilon^2` (the expected error on a fresh
        example) and the mean squared residual over the :math:`P` training examples.

    Raises
    ------
    ValueError
        For non-positive sizes, negative times or scales, a non-positive ``tau`` or
        ``learning_rate``; ``MemoryLimitError`` (a ValueError) for a problem too large for
        ``SCI_MEMORY_LIMIT`` (the data, the Gram matrix and its eigenvectors, and the
        ``(n_trials, len(t))`` curves are counted up front; on a GPU the limit is its free
        memory).
    TypeError
        ``t`` of another library or device than ``xp``/``device`` name.

    Notes
    -----
    In the eigenbasis :math:`XX^\top = V\Lambda V^\top` the error :math:`z = (\bar w - w)V`
    obeys :math:`\tau\dot z_i = -\lambda_i z_i - b_i` with :math:`b = \epsilon X^\top V`, so
    :math:`z_i(t) = z_i(0)e^{-\lambda_i t/\tau} - b_i(1-e^{-\lambda_i t/\tau})/\lambda_i`
    (descent: :math:`(1-\eta\lambda_i)^k` for the exponential). The training residual is
    :math:`\sum_i e^{-2\lambda_i t/\tau}(\lambda_i z_i(0) + b_i)^2/\lambda_i` plus the noise
    outside the span of the inputs (a sum of squares: no cancellation). The eigendecomposition
    uses the smaller of :math:`XX^\top` and :math:`X^\top X`; when :math:`N > P` the
    :math:`N-P` frozen
    directions keep their initial error. The Numba kernel evaluates trials × times in
    parallel (NumPy arrays under the ``numba`` switch); every other library runs array code
    of the standard on its device: one batched ``eigh`` of a batch of trials, then the
    closed form at every time, chunked over the times. The trials are drawn on the host
    (NumPy, from ``rng``: the same numbers in every library) and copied to the device once;
    the call reads from the device once, to check ``t``. On a device (CuPy, torch, any
    library but NumPy) the tasks run in this process, not on the executor: consecutive
    tasks are solved together in batches of as many trials as a quarter of the device's
    free memory holds (one copy per array, one batched ``eigh``, the same operators whatever
    the number of trials), and each task's draws are made on a host thread of its own, the
    next batch's while the device solves the current one; the numbers are those of the
    tasks one by one. With torch the curves of the flow
    are differentiable in ``t`` (autograd through the closed form; descent rounds the times
    to whole steps, so its gradient in ``t`` is zero). The tasks
    (chunks of trials) run on the executor (:mod:`sci.parallel`): the numbers depend on the
    seed and on ``trials_per_task``, not on where the tasks ran.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 3.

    Examples
    --------
    >>> from sci.generalization import simulate_linear
    >>> eg, et = simulate_linear(50, 100, [0.0, 1e6], sigma_eps=0.5, n_trials=4, rng=1)
    >>> eg.shape
    (4, 2)
    >>> bool(abs(et[:, 1].mean() - 0.25 * 0.5) < 0.05)  # sigma^2 (1 - 1/alpha)
    True

    In torch (or any array-API library; ``device="cuda"`` for a GPU), the same draws:

    >>> import torch
    >>> eg_t, _ = simulate_linear(50, 100, torch.tensor([0.0, 1e6]), sigma_eps=0.5, n_trials=4,
    ...                           rng=1)
    >>> type(eg_t).__name__, bool(abs(eg_t - torch.from_numpy(eg)).max() < 1e-10)
    ('Tensor', True)
    """
    if isinstance(t, str | bytes):
        raise TypeError(f"t must be a real array_like of numbers; got {type(t).__name__}")
    ctx = simulation_context(xp, device, t=t)
    t = as_float_array(t, "t", ndim=1, dtype=np.float64, ctx=ctx, check_finite=False)
    xp = ctx.xp
    if t.shape[0]:  # one read: finite and >= 0
        finite, positive = (bool(v) for v in to_numpy(
            xp.stack([xp.all(xp.isfinite(t)), xp.all(t >= 0)])).tolist())
        if not finite:
            raise ValueError("t must be finite; it contains NaN or infinity")
        if not positive:
            raise ValueError(
                f"t (training times) must be >= 0; got a minimum of {float(xp.min(t))}")
    tau = check_real(tau, "tau", low=0.0, low_inclusive=False)
    if learning_rate is not None:
        learning_rate = check_real(learning_rate, "learning_rate", low=0.0, low_inclusive=False)
    dtype = resolve_dtype(dtype)
    n_inputs = check_integer(n_inputs, "n_inputs", minimum=1)
    n_examples = check_integer(n_examples, "n_examples", minimum=1)
    n_trials = check_integer(n_trials, "n_trials", minimum=1)
    if trials_per_task is None:
        trials_per_task = _default_trials_per_task(n_inputs, n_examples)
    trials_per_task = check_integer(trials_per_task, "trials_per_task", minimum=1)
    sizes = split_trials(n_trials, min(trials_per_task, n_trials))
    on_device = ctx.backend not in HOST_BACKENDS
    # Each task holds its own trials only (the others may be on other machines); the returned
    # curves of all of them are counted by the first check. On a device the tasks are solved
    # in batches of whole tasks, as many trials as a quarter of its free memory holds.
    batches = (batches_of_tasks(sizes, _device_batch_trials(
        n_inputs, n_examples, int(t.shape[0]), dtype.itemsize, ctx)) if on_device
        else [[k] for k in range(len(sizes))])
    peak = max(sum(sizes[k] for k in batch) for batch in batches)
    _check_linear_memory(n_inputs, n_examples, int(t.shape[0]), n_trials,
                         dtype.itemsize, trials=peak, ctx=ctx)
    sigma_w = check_real(sigma_w, "sigma_w", low=0.0)
    sigma_eps = check_real(sigma_eps, "sigma_eps", low=0.0)
    sigma_w0 = check_real(sigma_w0, "sigma_w0", low=0.0)
    generator = resolve_rng(rng)
    if on_device:
        seeds = [generator] if len(sizes) == 1 else task_seeds(generator, len(sizes))
        solve = functools.partial(
            _linear_solve, n_inputs=n_inputs, n_examples=n_examples, t=t, sigma_eps=sigma_eps,
            tau=tau, learning_rate=learning_rate, dtype=dtype, ctx=ctx)
        draws = functools.partial(
            _start_linear_draws, sizes=sizes, shape=(n_inputs, n_examples),
            scales=dict(sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0))
        parts = solve_in_batches(sizes, seeds, batches, solve, draws)
        if len(parts) == 1:
            return parts[0]
        return (xp.concat([g for g, _ in parts], axis=0),
                xp.concat([e for _, e in parts], axis=0))
    # One task: the draws of draw_linear_problem(..., rng=rng); several: child k of the
    # generator's seed for task k (an int seed gives the same children as task_seeds(seed)).
    task = functools.partial(
        _linear_task, n_inputs=n_inputs, n_examples=n_examples, t=t,
        sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0, tau=tau,
        learning_rate=learning_rate, dtype=dtype, ctx=ctx,
    )
    results = map_trials(task, sizes, generator, executor=executor)
    if len(results) == 1:
        return results[0]
    generalization = xp.concat([g for g, _ in results], axis=0)
    training = xp.concat([e for _, e in results], axis=0)
    return generalization, training


# Operations per task aimed at by the default split (a rough count, from the sizes): enough
# work per task to hide the cost of sending it to a worker, and small problems stay one task
# (drawn from rng itself, as before the executor existed).
_OPERATIONS_PER_TASK = 2**31


def _default_trials_per_task(n_inputs, n_examples):
    """Trials per task from the sizes only (never from the machine or the number of workers,
    so that the random streams, hence the results, are the same wherever the tasks run)."""
    modes = min(n_inputs, n_examples)
    per_trial = float(modes) * modes * max(n_inputs, n_examples)
    return max(1, int(_OPERATIONS_PER_TASK // max(per_trial, 1.0)))


def _linear_task(chunk, *, n_inputs, n_examples, t, sigma_w, sigma_eps, sigma_w0, tau,
                 learning_rate, dtype, ctx):
    """One task of :func:`simulate_linear` on the host: ``chunk = (n_trials, seed)``."""
    n_trials, seed = chunk
    problem = draw_linear_problem(
        n_inputs, n_examples, sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0,
        n_trials=n_trials, rng=task_generator(seed),
    )
    return _linear_solve(problem, n_inputs=n_inputs, n_examples=n_examples, t=t,
                         sigma_eps=sigma_eps, tau=tau, learning_rate=learning_rate,
                         dtype=dtype, ctx=ctx)


# The switch's names for NumPy arrays computed on the host; every other backend ("cupy",
# "array": torch, array_api_strict, ...) computes on the arrays' device.
HOST_BACKENDS = ("numpy", "numba")


def device_batch_trials(per_trial_bytes: float, ctx) -> int:
    """Trials of a batch on ``ctx``'s device: as many as a quarter of its memory limit (a
    GPU's free memory) holds at ``per_trial_bytes`` each."""
    return _chunk_within(1 << 30, per_trial_bytes, budget=memory_limit(ctx) / 4)


def _device_batch_trials(n_inputs, n_examples, n_times, itemsize, ctx):
    """Trials one batched eigendecomposition may hold on ``ctx``'s device: as many as a
    quarter of its memory limit (a GPU's free memory) holds, by the per-trial count of
    :func:`_check_linear_memory`."""
    modes = min(n_inputs, n_examples)
    per_trial_data = n_inputs * n_examples + 2 * n_inputs + n_examples
    per_trial = (itemsize * per_trial_data + itemsize * 4.0 * modes * modes
                 + itemsize * 12.0 * (n_inputs + n_examples) + itemsize * 4.0 * n_times)
    per_trial += implementation("generalization.linear_errors_work", ctx.backend)(
        n_times, 1, modes, itemsize)
    return device_batch_trials(per_trial, ctx)


def batches_of_tasks(sizes: list[int], batch_trials: int) -> list[list[int]]:
    """Consecutive tasks grouped into batches of at most ``batch_trials`` trials (a task is
    never split: its trials come from one random stream); a larger task is a batch alone."""
    batches: list[list[int]] = []
    held = batch_trials
    for k, size in enumerate(sizes):
        if held + size > batch_trials:
            batches.append([])
            held = 0
        batches[-1].append(k)
        held += size
    return batches


def solve_in_batches(sizes, seeds, batches, solve, start_draws):
    """``solve(problem)`` for each batch of tasks, the next batch drawn on host threads
    meanwhile; the list of results.

    ``start_draws(batch, seeds, pool)`` submits the draws of the tasks ``batch`` (task ``k``
    from ``seeds[k]``, each on a thread of ``pool``) and returns a function that waits for
    them and returns the batch's host problem. The tasks' streams are independent and NumPy
    fills arrays without the GIL, so the draws of a batch run in parallel, and those of batch
    ``b + 1`` while the device solves batch ``b`` (at most two batches are held on the host).
    """
    workers = max(1, min(len(sizes), os.cpu_count() or 1))
    results = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        finish = start_draws(batches[0], seeds, pool)
        for b in range(len(batches)):
            problem = finish()
            if b + 1 < len(batches):
                finish = start_draws(batches[b + 1], seeds, pool)
            results.append(solve(problem))
    return results


def task_generator(seed) -> np.random.Generator:
    """A task's generator: the caller's own (one task), or one from the task's seed."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _start_linear_draws(batch, seeds, pool, *, sizes, shape, scales):
    """The draws of a batch of :func:`simulate_linear`'s tasks, each task into its slice of
    the batch's host buffers (the numbers of :func:`_linear_task`)."""
    problem = _empty_problem(sum(sizes[k] for k in batch), *shape)
    offsets = np.cumsum([0] + [sizes[k] for k in batch])
    futures = [pool.submit(_draw_into, problem, slice(int(low), int(high)),
                           task_generator(seeds[k]), **scales)
               for k, low, high in zip(batch, offsets[:-1], offsets[1:], strict=True)]

    def finish():
        for future in futures:
            future.result()
        return problem

    return finish


def _linear_solve(problem, *, n_inputs, n_examples, t, sigma_eps, tau, learning_rate, dtype,
                  ctx):
    """The curves of the trials of ``problem`` (host draws), solved in ``ctx`` as one batch:
    one copy per array to the device, one batched ``eigh``, the closed form at every time."""
    xp = ctx.xp
    arrays = placed(problem, ctx, dtype)
    lam, z0, drive, fit0, frozen, noise_out = _eigenmodes(
        arrays["inputs"], arrays["teacher"], arrays["initial"], arrays["noise"], xp
    )
    s = xp.astype(t / tau, lam.dtype)
    weights, residual = implementation("generalization.linear_errors", ctx.backend)(
        lam, z0, drive, fit0, frozen, noise_out, s, learning_rate
    )
    generalization = weights / n_inputs + float(dtype.type(sigma_eps) ** 2)
    training = residual / n_examples
    return generalization, training

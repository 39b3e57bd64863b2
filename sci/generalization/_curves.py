"""Closed-form generalization and training curves of the linear student–teacher model.

Every curve is an integral over the Marchenko–Pastur bulk of a smooth function of the
eigenvalue, plus the frozen-subspace atom. The integrals are taken with one fixed rule (see
:func:`_reference_rule`) that is accurate uniformly in t and alpha, including alpha -> 1 and
t -> infinity, where the integrand concentrates at the lower edge of the bulk.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array
from .._validation import check_integer
from ..backend import cached_constant, implementation, is_torch_array, register
from ._arguments import as_floats, context, full
from ._memory import broadcast_points, check_points, chunk_length, itemsize_of

__all__ = [
    "asymptotic_errors",
    "frozen_subspace_error",
    "generalization_error",
    "mode_optimal_stopping",
    "optimal_stopping",
    "ridge_error",
    "training_error",
]

# Graded composite Gauss-Legendre rule in theta, lambda = lambda_- + W sin^2(theta/2):
# panels [pi 2^-(k+1), pi 2^-k], k = 0..N_PANELS-2, and [0, pi 2^-(N_PANELS-1)].
N_PANELS = 42
NODES_PER_PANEL = 20
# Elements (broadcast points x nodes) per chunk of the array implementation, at most; fewer
# where a quarter of the memory limit cannot hold _BULK_TEMPORARIES arrays of that size.
_CHUNK_ELEMENTS = 1 << 21
# (points x nodes) work arrays alive at once in a chunk: lam, weight, x, decay, growth and the
# products of one sum.
_BULK_TEMPORARIES = 8
# Arrays of the broadcast shape held at once (flat copies of the arguments, derived per-point
# quantities, the three bulk sums, the result and its temporaries), an upper bound counted on
# the code below.
_TIME_CURVE_ARRAYS = 16
_OPTIMAL_STOPPING_ARRAYS = 24


@functools.cache
def _reference_rule() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sin^2(theta/2), cos^2(theta/2) and the Gauss-Legendre weights in theta of the rule.

    Why graded: near the lower edge lambda_- + W theta^2/4, the integrands vary on the scales
    sqrt(lambda_-/W) (the pole of 1/lambda, which reaches the edge as alpha -> 1) and
    1/sqrt(W t) (the decay of e^{-2 lambda t}); panels whose size doubles away from theta = 0
    see every such scale at a bounded relative distance, so each panel converges geometrically
    whatever alpha and t are. The last panel, [0, pi 2^-41] ~ 1.4e-12, contributes at most
    ~1e-12 of the total even where it does not resolve the pole.
    """
    x, w = np.polynomial.legendre.leggauss(NODES_PER_PANEL)
    edges = [0.0] + [math.pi * 2.0 ** (-k) for k in range(N_PANELS - 1, -1, -1)]
    thetas, weights = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        thetas.append(0.5 * (b - a) * x + 0.5 * (b + a))
        weights.append(0.5 * (b - a) * w)
    theta = np.concatenate(thetas)
    half = 0.5 * theta
    return np.sin(half) ** 2, np.cos(half) ** 2, np.concatenate(weights)


def _bulk_integrals_array(s, alpha, amplitude, noise, s2, c2, gw):
    """Sums over the bulk for flat arrays of equal length (array code for any backend).

    Written once against the array API standard (NumPy, CuPy, torch, ``array_api_strict``),
    without in-place updates, so torch's autograd differentiates it.

    Returns
    -------
    generalization : sum_j w_j [A e^{-2 l s} + sigma^2 expm1(-l s)^2 / l]
    training : sum_j w_j (l A + sigma^2) e^{-2 l s}
    slope : sum_j w_j e^{-l s} [-sigma^2 expm1(-l s) - l A e^{-l s}]  (dE_g/ds divided by 2)
    """
    xp = array_api_compat.array_namespace(s)
    n = s.shape[0]
    out = ([], [], [])
    step = _bulk_chunk_points(n, s2.shape[0], itemsize_of(s.dtype))
    for start in range(0, n, step):
        sl = slice(start, start + step)
        a = alpha[sl][:, None]
        root = xp.sqrt(a)
        lower = ((1.0 - a) / (1.0 + root)) ** 2
        width = 4.0 * root
        lam = lower + width * s2
        # rho dlambda = W^2 sin^2(theta)/(8 pi lambda) dtheta = W^2 s2 c2 / (2 pi lambda) dtheta.
        weight = gw * width * width * c2 * (s2 / lam) / (2.0 * math.pi)
        x = -lam * s[sl][:, None]
        decay = xp.exp(x)
        growth = xp.expm1(x)  # -(1 - e^{-l s}) without cancellation for small l s
        amp = amplitude[sl][:, None]
        sig2 = noise[sl][:, None]
        out[0].append(
            xp.sum(weight * (amp * decay * decay + sig2 * growth * growth / lam), axis=1))
        out[1].append(xp.sum(weight * (lam * amp + sig2) * decay * decay, axis=1))
        out[2].append(xp.sum(weight * decay * (-sig2 * growth - lam * amp * decay), axis=1))
    if n == 0:
        return s, s, s
    return tuple(parts[0] if len(parts) == 1 else xp.concat(parts) for parts in out)


register("generalization.bulk_integrals", "array", _bulk_integrals_array)
register("generalization.bulk_integrals", "numba", "sci.generalization._cpu:bulk_integrals")


def _bulk_chunk_points(n, n_nodes, itemsize):
    """Points per chunk of :func:`_bulk_integrals_array`: the (points x nodes) intermediates
    stay bounded by _CHUNK_ELEMENTS and a quarter of the memory limit, whatever n is."""
    return chunk_length(
        n, n_nodes * itemsize * _BULK_TEMPORARIES, max(1, _CHUNK_ELEMENTS // n_nodes)
    )


def _bulk_work_array(n, itemsize):
    """Bytes of the chunked (points x nodes) intermediates of :func:`_bulk_integrals_array`."""
    n_nodes = N_PANELS * NODES_PER_PANEL
    return float(_bulk_chunk_points(n, n_nodes, itemsize)) * n_nodes * itemsize * _BULK_TEMPORARIES


# What each implementation allocates beyond its outputs, beside it in the table: the Numba
# kernel accumulates in registers.
register("generalization.bulk_integrals_work", "array", _bulk_work_array)
register("generalization.bulk_integrals_work", "numba", lambda n, itemsize: 0.0)


def _bulk_work_bytes(n, itemsize, backend):
    """Bytes of the chunked intermediates of the bulk sums over n points."""
    return implementation("generalization.bulk_integrals_work", backend)(n, itemsize)


# --------------------------------------------------------------------------------------------
# Argument handling shared by every closed form.


_SCALES = {"sigma_w": "std", "sigma_eps": "std", "sigma_w0": "std", "tau": "tau"}


def _arguments(**arguments):
    """The context of a call and its arguments as checked float arrays there (one read-back).

    Keyword names pick the check: ``t`` a time (``inf`` allowed), ``alpha`` > 0, ``lam`` an
    eigenvalue >= 0, the standard deviations >= 0 and ``tau`` > 0.
    """
    kinds = {"t": "time", "alpha": "alpha", "lam": "eigenvalue", **_SCALES}
    ctx = context(arguments)
    arrays = as_floats(ctx, {name: (value, kinds[name]) for name, value in arguments.items()})
    return ctx, arrays


def _common_dtype(ctx, *arrays):
    """The float dtype of the arguments together (NumPy's promotion: float32 with float64 is
    float64, in every library, whatever torch's rules for 0-d tensors would say)."""
    return ctx.xp.result_type(*(a.dtype for a in arrays))


def _broadcast_flat(ctx, *arrays, n_data=2, what, n_arrays):
    """Broadcast, cast to one float dtype, and flatten (contiguous copies the kernels can use).

    The dtype is that of the first ``n_data`` arrays (t and alpha): scale parameters given as
    Python floats must not turn a float32 computation into float64. Before any copy, the
    memory of the call is checked: ``n_arrays`` arrays of the broadcast shape (what the caller
    holds at once, these copies included) plus the chunked intermediates of the bulk sums.
    """
    xp = ctx.xp
    dtype = _common_dtype(ctx, *arrays[:n_data])
    shape = tuple(int(n) for n in np.broadcast_shapes(*(tuple(a.shape) for a in arrays)))
    n_points = math.prod(shape)
    itemsize = itemsize_of(dtype)
    check_points(what, shape, itemsize, n_arrays,
                 _bulk_work_bytes(n_points, itemsize, ctx.backend))
    flat = [xp.reshape(xp.broadcast_to(xp.astype(a, dtype, copy=False), shape), (-1,))
            for a in arrays]
    if ctx.is_numpy:  # the Numba kernels read flat contiguous buffers
        flat = [np.ascontiguousarray(a) for a in flat]
    return shape, dtype, flat


def _time_curve_arguments(t, alpha, sigma_w, sigma_eps, sigma_w0, tau, *, what):
    """Checked, broadcast and flattened arguments of a curve in time (``what`` calls it).

    Returns the context, the output shape and dtype, alpha, A = sigma_w^2 + sigma_w0^2,
    sigma_eps^2, the scaled time s = t/tau (0 where t is infinite) and the mask of infinite
    times.
    """
    ctx, arrays = _arguments(t=t, alpha=alpha, sigma_w=sigma_w, sigma_eps=sigma_eps,
                             sigma_w0=sigma_w0, tau=tau)
    xp = ctx.xp
    shape, dtype, (t, alpha, sigma_w, sigma_eps, sigma_w0, tau) = _broadcast_flat(
        ctx, *arrays, what=what, n_arrays=_TIME_CURVE_ARRAYS
    )
    infinite = xp.isinf(t)
    # t replaced before the division: the gradient of inf/tau in tau would be NaN
    s = xp.where(infinite, 0.0, t) / tau
    amplitude = sigma_w * sigma_w + sigma_w0 * sigma_w0
    return ctx, shape, dtype, alpha, amplitude, sigma_eps * sigma_eps, s, infinite


def _bulk(ctx, s, alpha, amplitude, noise):
    # The rule converted to the call's namespace, device and dtype once (cached by those keys).
    s2, c2, gw = (
        cached_constant(("generalization.reference_rule", i),
                        functools.partial(_reference_part, i), ctx, dtype=s.dtype)
        for i in range(3)
    )
    return implementation("generalization.bulk_integrals", ctx.backend)(
        s, alpha, amplitude, noise, s2, c2, gw
    )


def _reference_part(i):
    return _reference_rule()[i]


def _implicit_optimum(ctx, s0, alpha, amplitude, noise, regular):
    """The optimum ``s0`` found by bisection, given its implicit gradient (torch).

    s* solves g(s*, theta) = 0 for the slope g, so ds*/dtheta = -g_theta / g_s (the implicit
    function theorem; g_s > 0 at a minimum). Returned as s0 - (g - stop(g)) / stop(g_s): the
    value is s0, the gradient the implicit one. Two more bulk sums, no read-back.
    """
    import torch

    xp = ctx.xp
    s_leaf = s0.detach().requires_grad_(True)
    with torch.enable_grad():
        _, _, g_fixed = _bulk(ctx, s_leaf, alpha.detach(), amplitude.detach(), noise.detach())
        (g_s,) = torch.autograd.grad(xp.sum(g_fixed), s_leaf)
    _, _, g = _bulk(ctx, s0.detach(), alpha, amplitude, noise)
    # where the bisection does not run (no noise, no signal) g_s may vanish: divide by 1
    safe_g_s = xp.where(regular, g_s, 1.0)
    return s0.detach() - (g - g.detach()) / safe_g_s


def _stop_gradient(x):
    """``x`` without autograd history (torch); other libraries have none to drop."""
    return x.detach() if is_torch_array(x) else x


def _positive_part(x, xp):
    # where with an array, not maximum(x, 0.0): a Python scalar there needs the 2024.12
    # standard, which torch < 2.14 and array-api-strict < 2.3 do not implement
    return xp.where(x > 0, x, xp.zeros_like(x))


def _asymptotic_generalization(alpha, amplitude, noise, ctx):
    # sigma^2 * integral(rho/lambda) + sigma^2 + frozen part, in closed form; alpha - 1 is
    # exact in floating point near 1 (Sterbenz), so only the true pole at alpha = 1 remains.
    xp = ctx.xp
    gap = alpha - 1.0
    at_peak = gap == 0
    safe_gap = xp.where(at_peak, 1.0, gap)
    above = noise * alpha / safe_gap
    below = noise / (-safe_gap) + (-gap) * amplitude
    value = xp.where(gap > 0, above, below)
    # At alpha = 1 the noise term diverges; without noise every mode is learned exactly.
    peak = xp.where(noise > 0, full(ctx, math.inf, value.dtype), 0.0)
    return xp.where(at_peak, peak, value)


# --------------------------------------------------------------------------------------------
# Public closed forms.


def generalization_error(
    t: Any,
    *,
    alpha: Any,
    sigma_w: Any = 1.0,
    sigma_eps: Any,
    sigma_w0: Any = 0.0,
    tau: Any = 1.0,
) -> Array:
    r"""Generalization error :math:`E_g(t)` of gradient flow in the linear student–teacher model.

    .. math::

        E_g(t) = \int \rho(\lambda)\Big[A\,e^{-2\lambda t/\tau}
            + \frac{\sigma_\epsilon^2}{\lambda}\big(1 - e^{-\lambda t/\tau}\big)^2\Big]
            d\lambda + (1-\alpha)_+ A + \sigma_\epsilon^2,
        \qquad A = \sigma_{\bar w}^2 + \sigma_{w_0}^2,

    with :math:`\rho` the Marchenko–Pastur bulk (mass :math:`\min(1,\alpha)`).

    Parameters
    ----------
    t : array_like
        Training times, ``>= 0``; ``inf`` gives the :math:`t\to\infty` limit
        (:func:`asymptotic_errors`).
    alpha : array_like
        Examples per parameter :math:`P/N > 0`.
    sigma_w, sigma_eps, sigma_w0 : array_like
        Standard deviations of the teacher weights, the label noise and the initial student
        weights (not variances).
    tau : array_like
        Time constant of the flow :math:`\tau\,\dot w = \Sigma^{yx} - w\Sigma^{xx}`. All
        arguments broadcast together.

    Returns
    -------
    array
        :math:`E_g` with the broadcast shape (0-d for scalars), in the inputs' float dtype.

    Raises
    ------
    ValueError
        If ``alpha <= 0``, a standard deviation is negative, ``tau <= 0``, ``t < 0``, or an
        argument is NaN (or infinite, except ``t``); ``MemoryLimitError``
        (a ValueError) if the broadcast points would need more memory than ``SCI_MEMORY_LIMIT``
        allows (about 16 arrays of the broadcast shape).

    Notes
    -----
    Each eigenmode :math:`\lambda` of :math:`XX^\top` relaxes independently:
    :math:`z(t) = z(0)e^{-\lambda t/\tau} - (\tilde\epsilon/\sqrt\lambda)(1-e^{-\lambda t/\tau})`,
    so its error is :math:`A e^{-2\lambda t/\tau}` from the initial mismatch plus the noise
    fitted so far. The noise term is evaluated as
    :math:`\sigma_\epsilon^2\,\mathrm{expm1}(-\lambda t/\tau)^2/\lambda`, free of cancellation
    for small :math:`\lambda t`. The integral uses :math:`\lambda = \lambda_- + (\lambda_+ -
    \lambda_-)\sin^2(\theta/2)` and a composite Gauss–Legendre rule in :math:`\theta` on panels
    halving towards the lower edge (42 panels of 20 nodes): it agrees with
    :func:`theory.generalization.generalization_error_mp` to 1e-12 relative for
    :math:`10^{-3} \le \alpha \le 10^3` (including :math:`|\alpha - 1| = 10^{-9}`) and
    :math:`0 \le t \le 10^{12}`.

    Arrays of any library: the result is an array of the inputs' library on their device
    (lists and numbers follow the backend switch); arguments of two libraries or devices
    raise :class:`TypeError`. NumPy arrays take the Numba kernel of the bulk sums under the
    ``"numba"`` backend and NumPy array code under ``"numpy"``; CuPy, torch and
    ``array_api_strict`` arrays take the array code written once against the standard.
    Through torch it is differentiable in every argument (autograd; the backward keeps the
    chunks' work arrays, about 8 x 840 numbers per point). The checks are one reduction read
    back per call; the quadrature rule is copied to a device once and cached.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, "High-dimensional dynamics of generalization
       error in neural networks", Neural Networks 132, 428–446 (2020), Sec. 3, Eqs. 10–14.

    Examples
    --------
    >>> from sci.generalization import generalization_error
    >>> generalization_error([0.0, 1.0, 2.0, 10.0], alpha=2.0, sigma_eps=0.2**0.5).round(4)
    array([1.2   , 0.3947, 0.3555, 0.3909])
    """
    ctx, shape, dtype, alpha, amplitude, noise, s, infinite = _time_curve_arguments(
        t, alpha, sigma_w, sigma_eps, sigma_w0, tau, what="generalization_error"
    )
    xp = ctx.xp
    bulk, _, _ = _bulk(ctx, s, alpha, amplitude, noise)
    finite = bulk + _positive_part(1.0 - alpha, xp) * amplitude + noise
    value = xp.where(infinite, _asymptotic_generalization(alpha, amplitude, noise, ctx), finite)
    return xp.reshape(xp.astype(value, dtype, copy=False), shape)


def training_error(
    t: Any,
    *,
    alpha: Any,
    sigma_w: Any = 1.0,
    sigma_eps: Any,
    sigma_w0: Any = 0.0,
    tau: Any = 1.0,
) -> Array:
    r"""Training error :math:`E_{train}(t)` of gradient flow in the linear student–teacher model.

    .. math::

        E_{train}(t) = \frac{1}{\alpha}\int\rho(\lambda)\,(\lambda A + \sigma_\epsilon^2)\,
            e^{-2\lambda t/\tau}\,d\lambda + \sigma_\epsilon^2\,(1 - 1/\alpha)_+ .

    The integral runs over the continuous part of the Marchenko–Pastur law only: directions
    with :math:`\lambda = 0` carry no training residual.

    Parameters
    ----------
    t, alpha, sigma_w, sigma_eps, sigma_w0, tau : array_like
        As in :func:`generalization_error` (``t = inf`` allowed); broadcast together.

    Returns
    -------
    array
        :math:`E_{train}` (the mean squared residual over the :math:`P` examples).

    Raises
    ------
    ValueError
        As :func:`generalization_error`.

    Notes
    -----
    In the eigenbasis the residual of mode :math:`i` is :math:`(z_i\lambda_i + s_i\tilde
    \epsilon_i)/\sqrt{\lambda_i}`, which decays as :math:`e^{-\lambda_i t/\tau}`; the
    :math:`P - N` directions orthogonal to the inputs (when :math:`\alpha > 1`) keep their noise,
    :math:`\sigma_\epsilon^2(1 - 1/\alpha)`. Same quadrature as :func:`generalization_error`:
    1e-12 relative against :func:`theory.generalization.training_error_mp` on the same range,
    except in the far tail where the decaying part has fallen below ~1e-25 of its start
    (there the absolute error is below 1e-25).

    As in :func:`generalization_error`, arrays of any library: the result is an array of
    the inputs' library on their device (lists and numbers follow the backend switch);
    arguments of two libraries or devices raise :class:`TypeError`. NumPy arrays take the
    Numba kernel of the bulk sums under the ``"numba"`` backend and NumPy array code under
    ``"numpy"``; CuPy, torch and ``array_api_strict`` arrays take the array code written
    once against the standard.
    Through torch it is differentiable in every argument (autograd; the backward keeps the
    chunks' work arrays, about 8 x 840 numbers per point). The checks are one reduction read
    back per call; the quadrature rule is copied to a device once and cached.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 3.

    Examples
    --------
    >>> from sci.generalization import training_error
    >>> training_error([0.0, float("inf")], alpha=2.0, sigma_eps=0.2**0.5).round(6)
    array([1.2, 0.1])
    """
    ctx, shape, dtype, alpha, amplitude, noise, s, infinite = _time_curve_arguments(
        t, alpha, sigma_w, sigma_eps, sigma_w0, tau, what="training_error"
    )
    xp = ctx.xp
    _, bulk, _ = _bulk(ctx, s, alpha, amplitude, noise)
    # (alpha - 1)/alpha, not 1 - 1/alpha: alpha - 1 is exact near the peak, 1/alpha is not.
    floor = noise * _positive_part((alpha - 1.0) / alpha, xp)
    value = xp.where(infinite, floor, bulk / alpha + floor)
    return xp.reshape(xp.astype(value, dtype, copy=False), shape)


def frozen_subspace_error(alpha: Any, *, sigma_w: Any = 1.0, sigma_w0: Any = 0.0) -> Array:
    r"""The frozen subspace's part :math:`(1-\alpha)_+(\sigma_{\bar w}^2 + \sigma_{w_0}^2)` of E_g.

    For :math:`\alpha < 1` a fraction :math:`1 - \alpha` of the input directions has
    :math:`\lambda = 0`: gradient descent never moves the student there, so the teacher's
    weights in that subspace are never learned and the initial weights never forgotten.

    Parameters
    ----------
    alpha : array_like
        :math:`P/N > 0`.
    sigma_w, sigma_w0 : array_like
        Standard deviations of the teacher and initial student weights.

    Returns
    -------
    array
        The frozen part of :math:`E_g(t)`, the same at every :math:`t`, in ``alpha``'s
        float dtype (as the other curves: float32 stays float32).

    Notes
    -----
    Array code for every library, in the inputs' namespace and on their device (lists and
    numbers follow the backend switch); differentiable through torch. Arguments of two
    libraries or devices raise :class:`TypeError`.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 3.2.

    Examples
    --------
    >>> from sci.generalization import frozen_subspace_error
    >>> frozen_subspace_error([0.5, 2.0], sigma_w0=1.0)
    array([1., 0.])
    """
    ctx, (alpha, sigma_w, sigma_w0) = _arguments(alpha=alpha, sigma_w=sigma_w, sigma_w0=sigma_w0)
    shape, _, itemsize = broadcast_points(alpha, sigma_w, sigma_w0)
    check_points("frozen_subspace_error", shape, itemsize, 4)
    xp = ctx.xp
    value = _positive_part(1.0 - alpha, xp) * (sigma_w * sigma_w + sigma_w0 * sigma_w0)
    # alpha's precision, as every curve: a Python float scale must not turn float32 into float64
    return xp.astype(value, alpha.dtype, copy=False)


def asymptotic_errors(
    alpha: Any,
    *,
    sigma_w: Any = 1.0,
    sigma_eps: Any,
    sigma_w0: Any = 0.0,
    tau: Any = 1.0,
    n_inputs: int | None = None,
) -> tuple[Array, Array]:
    r"""The :math:`t\to\infty` limits of the generalization and training errors.

    .. math::

        E_g(\infty) = \begin{cases}
            \sigma_\epsilon^2\,\dfrac{\alpha}{\alpha-1} & \alpha > 1,\\[1ex]
            \dfrac{\sigma_\epsilon^2}{1-\alpha} + (1-\alpha)(\sigma_{\bar w}^2+\sigma_{w_0}^2)
                & \alpha < 1,
        \end{cases}
        \qquad E_{train}(\infty) = \sigma_\epsilon^2 (1 - 1/\alpha)_+ ,

    and :math:`E_g(\infty) = \infty` at :math:`\alpha = 1` (the overtraining peak) unless
    :math:`\sigma_\epsilon = 0`.

    Parameters
    ----------
    alpha : array_like
        :math:`P/N > 0`.
    sigma_w, sigma_eps, sigma_w0 : array_like
        Standard deviations (teacher, noise, initial student).
    tau : array_like
        Accepted for the same keywords as :func:`generalization_error`; the limits do not
        depend on it.
    n_inputs : int, optional
        :math:`N`. When given, the finite-size means over Gaussian inputs with
        :math:`P = \alpha N`: :math:`\sigma_\epsilon^2(1 + N/(P-N-1))` for :math:`P > N + 1`,
        :math:`\sigma_\epsilon^2(1 + P/(N-P-1)) + (1 - P/N)A` for :math:`P < N - 1`, infinite
        in between (the inverse-Wishart means diverge).

    Returns
    -------
    generalization, training : array
        Broadcast over the arguments.

    Notes
    -----
    The noise part is :math:`\sigma_\epsilon^2\int\rho/\lambda = \sigma_\epsilon^2
    \min(1,\alpha)/|1-\alpha|`, the mean of the inverse of the nonzero spectrum. The finite-size
    versions are the means of the inverse Wishart matrix (:math:`XX^\top` or :math:`X^\top X`).
    The training limit is the same at finite size (the residual of least squares).

    Array code for every library, in the inputs' namespace and on their device (lists and
    numbers follow the backend switch); differentiable through torch. Arguments of two
    libraries or devices raise :class:`TypeError`.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 3.1.

    Examples
    --------
    >>> from sci.generalization import asymptotic_errors
    >>> eg, et = asymptotic_errors([0.5, 2.0], sigma_eps=0.2**0.5)
    >>> eg.round(6), et.round(6)
    (array([0.9, 0.4]), array([0. , 0.1]))
    """
    ctx, (alpha, sigma_w, sigma_eps, sigma_w0, tau) = _arguments(
        alpha=alpha, sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0, tau=tau
    )
    # tau does not enter the limits, nor their shape.
    shape, _, itemsize = broadcast_points(alpha, sigma_w, sigma_eps, sigma_w0)
    check_points("asymptotic_errors", shape, itemsize, 14)
    xp = ctx.xp
    amplitude = sigma_w * sigma_w + sigma_w0 * sigma_w0
    noise = sigma_eps * sigma_eps
    training = noise * _positive_part((alpha - 1.0) / alpha, xp) + 0.0 * amplitude
    if n_inputs is None:
        generalization = _asymptotic_generalization(alpha, amplitude, noise, ctx)
    else:
        n = float(check_integer(n_inputs, "n_inputs", minimum=1))
        p = alpha * n
        above_gap, below_gap = p - n - 1.0, n - p - 1.0
        above = noise * (1.0 + n / xp.where(above_gap > 0, above_gap, 1.0))
        below = noise * (1.0 + p / xp.where(below_gap > 0, below_gap, 1.0)) + (
            1.0 - p / n
        ) * amplitude
        inf = full(ctx, math.inf, above.dtype)
        generalization = xp.where(above_gap > 0, above, xp.where(below_gap > 0, below, inf))
        generalization = xp.where(noise > 0, generalization, _positive_part(1.0 - alpha, xp)
                                  * amplitude)
    generalization, training = xp.broadcast_arrays(generalization, training)
    return xp.astype(generalization, alpha.dtype), xp.astype(training, alpha.dtype)


def mode_optimal_stopping(
    lam: Any, *, sigma_w: Any = 1.0, sigma_eps: Any, sigma_w0: Any = 0.0, tau: Any = 1.0
) -> tuple[Array, Array]:
    r"""Optimal stopping time and error of each eigenmode on its own.

    .. math::

        t^*(\lambda) = \frac{\tau}{\lambda}\ln\!\Big(1 + \frac{\lambda A}{\sigma_\epsilon^2}\Big),
        \qquad
        E^*(\lambda) = \frac{A\,\sigma_\epsilon^2}{\lambda A + \sigma_\epsilon^2},

    the Bayes error of the mode; :math:`t^*(0) = \tau A/\sigma_\epsilon^2` by continuity.

    Parameters
    ----------
    lam : array_like
        Eigenvalues :math:`\lambda \ge 0` of :math:`XX^\top`.
    sigma_w, sigma_eps, sigma_w0, tau : array_like
        As in :func:`generalization_error`; broadcast with ``lam``.

    Returns
    -------
    t_star, error : array
        ``t_star`` is ``inf`` where :math:`\sigma_\epsilon = 0` (no noise: never stop).

    Notes
    -----
    Integrating :math:`E^*(\lambda)` against the full Marchenko–Pastur law (atom included)
    gives :func:`ridge_error` when :math:`\sigma_{w_0} = 0`: stopping every mode at its own time
    is Bayes optimal. :math:`t^*` uses ``log1p`` and is accurate as :math:`\lambda \to 0`.

    Array code for every library, in the inputs' namespace and on their device (lists and
    numbers follow the backend switch); differentiable through torch. Arguments of two
    libraries or devices raise :class:`TypeError`.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 4.

    Examples
    --------
    >>> from sci.generalization import mode_optimal_stopping
    >>> t_star, error = mode_optimal_stopping([0.0, 1.0], sigma_eps=1.0)
    >>> t_star.round(6), error
    (array([1.      , 0.693147]), array([1. , 0.5]))
    """
    ctx, (lam, sigma_w, sigma_eps, sigma_w0, tau) = _arguments(
        lam=lam, sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0, tau=tau
    )
    xp = ctx.xp
    shape, _, itemsize = broadcast_points(lam, sigma_w, sigma_eps, sigma_w0, tau)
    check_points("mode_optimal_stopping", shape, itemsize, 14)
    amplitude = sigma_w * sigma_w + sigma_w0 * sigma_w0
    noise = sigma_eps * sigma_eps
    quiet = noise == 0
    safe_noise = xp.where(quiet, 1.0, noise)
    ratio = lam * amplitude / safe_noise
    safe_lam = xp.where(lam > 0, lam, 1.0)
    t_star = xp.where(lam > 0, xp.log1p(ratio) / safe_lam, amplitude / safe_noise) * tau
    t_star = xp.where(quiet, full(ctx, math.inf, t_star.dtype), t_star)
    denominator = lam * amplitude + noise
    error = xp.where(denominator > 0, amplitude * noise / xp.where(denominator > 0,
                                                                     denominator, 1.0), 0.0)
    t_star, error = xp.broadcast_arrays(t_star, error)
    return xp.astype(t_star, lam.dtype), xp.astype(error, lam.dtype)


def ridge_error(
    alpha: Any, *, sigma_w: Any = 1.0, sigma_eps: Any, sigma_w0: Any = 0.0, tau: Any = 1.0
) -> Array:
    r"""Generalization error of optimal ridge regression: the Bayes error of the linear model.

    .. math::

        E^* = \sigma_\epsilon^2\,(1 + m),\qquad
        m = \frac{(1-\alpha-\gamma) + \sqrt{(1-\alpha-\gamma)^2 + 4\gamma}}{2\gamma},
        \qquad \gamma = \sigma_\epsilon^2/\sigma_{\bar w}^2,

    where :math:`m` is the Stieltjes transform :math:`\int\rho_{full}(\lambda)/(\lambda+\gamma)
    \,d\lambda` of the Marchenko–Pastur law (atom included) at :math:`-\gamma`.

    Parameters
    ----------
    alpha : array_like
        :math:`P/N > 0`.
    sigma_w, sigma_eps : array_like
        Standard deviations of the teacher weights (the prior) and the noise.
    sigma_w0, tau : array_like
        Accepted so the same keywords serve every curve; the Bayes error depends on neither
        (it bounds any estimator, gradient descent from any independent start included).

    Returns
    -------
    array
        :math:`E^*`, broadcast over the arguments.

    Notes
    -----
    Written as :math:`E^* = \sigma_\epsilon^2 + \sigma_{\bar w}^2\,\gamma m` with
    :math:`\gamma m = (b + D)/2` for :math:`b = 1-\alpha-\gamma \ge 0` and :math:`2\gamma/(D -
    b)` otherwise (:math:`D = \sqrt{b^2 + 4\gamma}`): no cancellation, and finite as
    :math:`\sigma_\epsilon \to 0` (where it tends to :math:`(1-\alpha)_+\sigma_{\bar w}^2`).
    At :math:`\alpha = 1`, :math:`\sigma_{\bar w} = \sigma_\epsilon = 1`, :math:`E^* =
    (1+\sqrt5)/2`.

    Array code for every library, in the inputs' namespace and on their device (lists and
    numbers follow the backend switch); differentiable through torch. Arguments of two
    libraries or devices raise :class:`TypeError`.

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 4.

    Examples
    --------
    >>> from sci.generalization import ridge_error
    >>> float(ridge_error(1.0, sigma_eps=1.0))  # the golden ratio
    1.618033988749895
    """
    ctx, (alpha, sigma_w, sigma_eps, sigma_w0, tau) = _arguments(
        alpha=alpha, sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0, tau=tau
    )
    # sigma_w0 and tau enter neither the error nor its shape.
    shape, _, itemsize = broadcast_points(alpha, sigma_w, sigma_eps)
    check_points("ridge_error", shape, itemsize, 12)
    xp = ctx.xp
    prior = sigma_w * sigma_w
    noise = sigma_eps * sigma_eps
    no_prior = prior == 0
    gamma = noise / xp.where(no_prior, 1.0, prior)
    b = 1.0 - alpha - gamma
    d = xp.sqrt(b * b + 4.0 * gamma)
    b, d = xp.broadcast_arrays(b, d)
    positive = b >= 0
    denominator = xp.where(positive, 1.0, d - b)
    gamma_m = xp.where(positive, 0.5 * (b + d), 2.0 * gamma / denominator)
    # Without a prior variance the best estimate is 0 and the error is the noise alone.
    return xp.astype(noise + xp.where(no_prior, 0.0, prior * gamma_m), alpha.dtype, copy=False)


def optimal_stopping(
    alpha: Any,
    *,
    sigma_w: Any = 1.0,
    sigma_eps: Any,
    sigma_w0: Any = 0.0,
    tau: Any = 1.0,
    n_iterations: int = 64,
) -> tuple[Array, Array]:
    r"""Optimal global early-stopping time :math:`t_{opt} = \arg\min_t E_g(t)` and its error.

    Parameters
    ----------
    alpha, sigma_w, sigma_eps, sigma_w0, tau : array_like
        As in :func:`generalization_error`; broadcast together.
    n_iterations : int, default 64
        Bisection steps in :math:`\log t` (64 reach the rounding of the bracket's width).

    Returns
    -------
    t_opt, error : array
        :math:`t_{opt}` and :math:`E_g(t_{opt})`. Without noise (:math:`\sigma_\epsilon = 0`)
        the error only decreases: :math:`t_{opt} = \infty` with the asymptotic error; without
        signal (:math:`A = 0`) :math:`t_{opt} = 0`.

    Notes
    -----
    :math:`dE_g/dt = (2/\tau)\int\rho\,e^{-\lambda t/\tau}[\sigma_\epsilon^2(1 -
    e^{-\lambda t/\tau}) - \lambda A e^{-\lambda t/\tau}]\,d\lambda`. Each mode's term is
    negative before its own optimum :math:`t^*(\lambda)` (:func:`mode_optimal_stopping`) and
    positive after, and :math:`t^*` decreases in :math:`\lambda` from :math:`\tau
    A/\sigma_\epsilon^2`, so the minimiser lies in :math:`[t^*(\lambda_+), \tau
    A/\sigma_\epsilon^2]`, where the sign change of the derivative is bracketed and bisected
    (no closed form exists). :math:`E_g(t_{opt})` is at least :func:`ridge_error`, the Bayes
    error, and within about 2% of it.

    Arrays of any library, as in :func:`generalization_error` (the result is in the inputs'
    namespace and on their device; the bisection reads nothing back). Through torch the
    error is differentiable: at the optimum :math:`dE_g/dt = 0`, so its gradient is the
    partial derivative at fixed :math:`t_{opt}`, and the bisection runs without autograd
    history. :math:`t_{opt}` is differentiable too, by the implicit function theorem: at
    the optimum the slope :math:`g(s, \theta)` of :math:`E_g` in :math:`s = t/\tau`
    vanishes, so :math:`ds/d\theta = -g_\theta/g_s` (two more bulk sums, only when a
    torch argument requires grad).

    References
    ----------
    .. [1] M. Advani, A. Saxe, H. Sompolinsky, Neural Networks 132, 428–446 (2020), Sec. 4.

    Examples
    --------
    >>> from sci.generalization import optimal_stopping, ridge_error
    >>> t_opt, error = optimal_stopping(1.0, sigma_eps=1.0)
    >>> round(float(error / ridge_error(1.0, sigma_eps=1.0)), 3)
    1.004
    """
    ctx, arrays = _arguments(
        alpha=alpha, sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0, tau=tau
    )
    n_iterations = check_integer(n_iterations, "n_iterations", minimum=1, maximum=10_000)
    xp = ctx.xp
    shape, dtype, (alpha, sigma_w, sigma_eps, sigma_w0, tau) = _broadcast_flat(
        ctx, *arrays, n_data=1, what="optimal_stopping", n_arrays=_OPTIMAL_STOPPING_ARRAYS,
    )
    amplitude = sigma_w * sigma_w + sigma_w0 * sigma_w0
    noise = sigma_eps * sigma_eps
    quiet = noise == 0
    nothing = amplitude == 0
    regular = ~(quiet | nothing)
    safe_noise = xp.where(quiet, 1.0, noise)
    safe_amp = xp.where(nothing, 1.0, amplitude)
    # The bisection runs without autograd history (torch): the error's gradient at the
    # optimum is its partial derivative at fixed t_opt (dE_g/dt = 0 there), so no gradient
    # needs to flow through the search, and its graph would hold n_iterations bulk sums.
    a_, amp_, noise_ = _stop_gradient(alpha), _stop_gradient(amplitude), _stop_gradient(noise)
    safe_noise, safe_amp = _stop_gradient(safe_noise), _stop_gradient(safe_amp)
    upper_edge = (1.0 + xp.sqrt(a_)) ** 2
    low = xp.log(xp.log1p(upper_edge * safe_amp / safe_noise) / upper_edge)
    high = xp.log(safe_amp / safe_noise)
    # Bisection on the sign of the slope, in log s (s = t/tau), all points at once; no value
    # is read back in the loop.
    for _ in range(n_iterations):
        mid = 0.5 * (low + high)
        _, _, slope = _bulk(ctx, xp.exp(mid), a_, amp_, noise_)
        rising = slope > 0
        high = xp.where(rising, mid, high)
        low = xp.where(rising, low, mid)
    s_opt = xp.exp(0.5 * (low + high))
    if is_torch_array(alpha) and any(
        x.requires_grad for x in (alpha, sigma_w, sigma_eps, sigma_w0, tau)
    ):
        s_opt = _implicit_optimum(ctx, s_opt, alpha, amplitude, noise, regular)
    s_opt = xp.where(regular, s_opt, 0.0)
    bulk, _, _ = _bulk(ctx, s_opt, alpha, amplitude, noise)
    error = bulk + _positive_part(1.0 - alpha, xp) * amplitude + noise
    asymptote = _asymptotic_generalization(alpha, amplitude, noise, ctx)
    error = xp.where(quiet, asymptote, error)
    t_opt = xp.where(quiet, full(ctx, math.inf, dtype), s_opt * tau)
    return (xp.reshape(xp.astype(t_opt, dtype, copy=False), shape),
            xp.reshape(xp.astype(error, dtype, copy=False), shape))

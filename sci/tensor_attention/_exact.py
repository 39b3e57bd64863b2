"""Exact matrix, tensor (2-simplicial) and order-t attention, with overflow-safe shifts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import check_integer, check_real, chunk_length
from ..backend import array_context, array_namespace, implementation, register, to_numpy
from ._inputs import as_sequence, attention_inputs, over_batch, pair_names, resolve_scale

__all__ = ["higher_order_attention", "softmax_attention", "tensor_attention"]

# Elements of the logit block one step of the blocked array code may hold (512 KiB in float64):
# long enough vectors for BLAS and exp, small enough that the block stays in a core's L2 cache
# through the five passes over it (at n = 512, d = 4 this halves the time against 8 MiB blocks),
# and fixed so memory stays O(n d). Larger blocks also push the thin (k = d) products over
# OpenBLAS's threading threshold, which costs far more than it gains on a busy machine.
_BLOCK_ELEMENTS = 1 << 16


def _outer_rows(xp, keys, values, start, stop, n_k):
    """Rows ``start:stop`` of K1 ⊘ ... ⊘ K_{t-2} and V1 ⊘ ... ⊘ V_{t-2}, and their indices.

    The outer index ``o`` runs over tuples ``(j_1, ..., j_{t-2})`` in mixed radix ``n_k``
    (``j_1`` fastest). Only the requested rows are formed, never the whole n^(t-2) x d product.
    """
    o = xp.arange(start, stop)
    d, d_v = keys[-1].shape[1], values[-1].shape[1]
    k_rows = xp.ones((stop - start, d), dtype=keys[-1].dtype)
    v_rows = xp.ones((stop - start, d_v), dtype=keys[-1].dtype)
    largest = xp.zeros(stop - start, dtype=o.dtype)
    for m in range(len(keys) - 1):
        j = (o // n_k**m) % n_k
        k_rows = k_rows * keys[m][j]
        v_rows = v_rows * values[m][j]
        largest = xp.maximum(largest, j)
    return k_rows, v_rows, largest


def _exact_attention_xp(Q, keys, values, scale, causal):
    """Blocked array implementation: query blocks x outer-tuple blocks x all last keys."""
    xp = array_namespace()
    n_q, d = Q.shape
    n_k = keys[0].shape[0]
    d_v = values[0].shape[1]
    n_outer = n_k ** (len(keys) - 1)
    k_last, v_last = keys[-1], values[-1]
    block_q = chunk_length(n_q, n_k, budget=_BLOCK_ELEMENTS)
    block_o = chunk_length(n_outer, block_q * n_k, budget=_BLOCK_ELEMENTS)
    out = xp.empty((n_q, d_v), dtype=Q.dtype)
    for q0 in range(0, n_q, block_q):
        q1 = min(n_q, q0 + block_q)
        sq = scale * Q[q0:q1]
        rows = xp.arange(q0, q1)
        run_max = xp.full(q1 - q0, -xp.inf, dtype=Q.dtype)
        numerator = xp.zeros((q1 - q0, d_v), dtype=Q.dtype)
        denominator = xp.zeros(q1 - q0, dtype=Q.dtype)
        for o0 in range(0, n_outer, block_o):
            o1 = min(n_outer, o0 + block_o)
            k_rows, v_rows, largest = _outer_rows(xp, keys, values, o0, o1, n_k)
            if causal and int(largest.min()) > q1 - 1:
                continue  # every tuple of this block lies in the future of every query
            # one 2-D product (a single BLAS call) rather than a stack of bq small ones
            rows_block = (sq[:, None, :] * k_rows[None, :, :]).reshape(-1, d)
            logits = (rows_block @ k_last.T).reshape(q1 - q0, o1 - o0, n_k)
            if causal:
                future = (largest[None, :, None] > rows[:, None, None]) | (
                    xp.arange(n_k)[None, None, :] > rows[:, None, None]
                )
                logits = xp.where(future, -xp.inf, logits)
            block_max = logits.max(axis=(1, 2))
            new_max = xp.maximum(run_max, block_max)
            # A query whose keys are all masked so far keeps max -inf; shift it by 0 instead
            # so that no -inf - (-inf) is ever formed.
            safe_max = xp.where(xp.isfinite(new_max), new_max, 0.0)
            # in place: the block is the only large array, and passes over it dominate
            logits -= safe_max[:, None, None]
            weights = xp.exp(logits, out=logits)
            rescale = xp.exp(run_max - safe_max)
            inner = (weights.reshape(-1, n_k) @ v_last).reshape(q1 - q0, o1 - o0, d_v)
            numerator = rescale[:, None] * numerator + xp.einsum("qod,od->qd", inner, v_rows)
            denominator = rescale * denominator + weights.sum(axis=(1, 2))
            run_max = new_max
        out[q0:q1] = numerator / denominator[:, None]
    return out


def _check_logit_range(Q, keys, scale, ctx=None):
    """Refuse up front logits that could overflow: |logit| <= s d max|Q| prod_m max|K_m|.

    The bound is formed in logarithms so that it cannot overflow itself; kernels compiled with
    fast-math flags must never see an infinite logit. (On a device: one small stacked
    reduction read back once.)
    """
    if ctx is not None and not ctx.is_numpy:
        xp = ctx.xp
        maxima = [float(v) for v in to_numpy(xp.stack([xp.max(xp.abs(X)) for X in (Q, *keys)]))]
        largest = float(xp.finfo(Q.dtype).max)
    else:
        xp = array_namespace()
        maxima = [float(xp.abs(X).max()) for X in (Q, *keys)]
        largest = float(np.finfo(Q.dtype).max)
    if min(maxima) == 0.0:
        return
    log_bound = math.log(scale) + math.log(Q.shape[-1]) + sum(math.log(m) for m in maxima)
    log_largest = math.log(largest)
    if log_bound > log_largest - math.log(1e3):
        raise FloatingPointError(
            f"the logits s * sum_l Q_il * prod_m K_m[j_m, l] may overflow {Q.dtype} (their bound "
            f"is e^{log_bound:.1f}, the largest {Q.dtype} is e^{log_largest:.1f}); rescale the "
            "inputs or the scale"
        )


# Multiply-adds per second of the exact kernels, for the time quoted when work is refused:
# benchmarks/results/tensor_attention.json measures, at n = 512, d = 4 (5.4e8 multiply-adds),
# the Numba kernel at about 0.12 CPU seconds (4e9/s per core) and the blocked NumPy path at
# about 0.4 (1.3e9/s). A conservative round figure: only an order of magnitude is claimed.
_RATE = 1e9
DEFAULT_MAX_WORK = 1e12
_POLY_NAMES = {1: "poly_attention", 2: "poly_tensor_attention"}


def _resolve_max_work(max_work: Any) -> float | None:
    if max_work is None:
        return None
    return check_real(max_work, "max_work", low=0.0, low_inclusive=False)


def _duration(seconds: float) -> str:
    for unit, length in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= length:
            return f"{seconds / length:.3g} {unit}"
    return f"{seconds:.3g} seconds"


def _check_work(n_q: int, n_k: int, pairs: int, d: int, max_work: float | None,
                batch: int = 1) -> None:
    """Refuse up front an exact run of more than ``max_work`` multiply-adds, with the figure.

    ``d`` is the larger of the head dimension and the value width; ``batch`` the number of
    batch elements.
    """
    order = pairs + 1
    tuples = n_k**pairs
    poly = _POLY_NAMES.get(pairs, "poly_higher_order_attention")
    if tuples >= 2**62:
        raise ValueError(
            f"the exact order-{order} attention would visit m^{pairs} = {tuples:.3e} "
            f"key tuples per query (beyond 64-bit indexing and any time budget); use {poly}"
        )
    work = batch * n_q * tuples * d
    if max_work is not None and work > max_work:
        # the batch factor is named only when there are batch elements to count
        symbols, numbers = ("b * ", f"{batch} * ") if batch != 1 else ("", "")
        raise ValueError(
            f"the exact order-{order} attention would take {symbols}n * m^{pairs} * d = "
            f"{numbers}{n_q} * {n_k}^{pairs} * {d} = {float(work):.3g} multiply-adds, about "
            f"{_duration(work / _RATE)} at ~1e9 per second, above max_work = {max_work:.3g}; "
            f"use {poly} (the polynomial method, near-linear in n for bounded entries), or pass "
            "max_work=None (or a larger max_work) to run it anyway"
        )


def _run_exact(Q, keys, values, scale, causal, max_work, ctx, batch=()):
    """Dispatch after the work and overflow checks; a non-finite result is refused all the same.

    The inputs are broadcast to the batch shape ``batch``; the kernels see one batch element's
    2-D arrays at a time. The checks are made once for the whole batch (one device read each).
    """
    n_q, d = Q.shape[-2:]
    d_v = values[0].shape[-1]
    count = math.prod(batch)
    _check_work(n_q, keys[0].shape[-2], len(keys), max(d, d_v), max_work, count)
    xp = ctx.xp if not ctx.is_numpy else array_namespace()
    if n_q == 0 or count == 0:  # no queries (an empty batch): an empty result, as for any n
        return xp.empty((*batch, n_q, d_v), dtype=Q.dtype,
                        **({} if ctx.is_numpy else {"device": ctx.device}))
    # |max| over the whole batch bounds every element's logits: one check for all of them
    _check_logit_range(Q, keys, scale, ctx)
    kernel = implementation("tensor_attention.exact", ctx.backend)
    with np.errstate(over="ignore", invalid="ignore"):
        out = over_batch(lambda q, k, v: kernel(q, k, v, scale, causal), Q, keys, values,
                         batch, xp)
    if not bool(xp.all(xp.isfinite(out))):
        raise FloatingPointError(
            "the logits s * sum_l Q_il * prod_m K_m[j_m, l] overflow the floating-point range "
            f"({Q.dtype}); rescale the inputs or the scale"
        )
    return out


def _resolve_window(window: Any, n_q: int, n_k: int) -> tuple[int, int] | None:
    """``None``, or the pair ``(w1, w2)`` of positive integers (with ``m == n``)."""
    if window is None:
        return None
    if not isinstance(window, tuple | list) or len(window) != 2:
        raise TypeError(
            f"window must be None or a pair (w1, w2) of positive integers (the key windows "
            f"i - w1 < j <= i, i - w2 < k <= i); got {window!r}"
        )
    w1 = check_integer(window[0], "window[0] (w1)", minimum=1)
    w2 = check_integer(window[1], "window[1] (w2)", minimum=1)
    if n_q != n_k:
        raise ValueError(
            f"a window (causal by definition) needs as many queries as keys; got {n_q} "
            f"queries and {n_k} keys"
        )
    return w1, w2


def _run_windowed(Q, keys, values, scale, window, max_work, ctx, batch):
    """Windowed 2-simplicial attention: the checks of :func:`_run_exact`, then the kernel."""
    n, d = Q.shape[-2:]
    d_v = values[0].shape[-1]
    count = math.prod(batch)
    w1, w2 = min(window[0], n), min(window[1], n)
    work = count * n * w1 * w2 * max(d, d_v)
    if max_work is not None and work > max_work:
        raise ValueError(
            f"the windowed tensor attention would take b * n * w1 * w2 * d = {count} * {n} * "
            f"{w1} * {w2} * {max(d, d_v)} = {float(work):.3g} multiply-adds, about "
            f"{_duration(work / _RATE)} at ~1e9 per second, above max_work = {max_work:.3g}; "
            "narrow the window, or pass max_work=None (or a larger max_work) to run it anyway"
        )
    xp = ctx.xp if not ctx.is_numpy else array_namespace()
    if n == 0 or count == 0:
        return xp.empty((*batch, n, d_v), dtype=Q.dtype,
                        **({} if ctx.is_numpy else {"device": ctx.device}))
    _check_logit_range(Q, keys, scale, ctx)
    kernel = implementation("tensor_attention.windowed", ctx.backend)
    with np.errstate(over="ignore", invalid="ignore"):
        out = over_batch(lambda q, k, v: kernel(q, *k, *v, scale, (w1, w2)), Q, keys, values,
                         batch, xp)
    if not bool(xp.all(xp.isfinite(out))):
        raise FloatingPointError(
            "the logits s * sum_l Q_il * K1_jl * K2_kl overflow the floating-point range "
            f"({Q.dtype}); rescale the inputs or the scale"
        )
    return out


# one implementation for every library, written against the array API
register("tensor_attention.windowed", "array",
         "sci.tensor_attention._array:windowed_tensor_attention")
register("tensor_attention.exact", "numpy", _exact_attention_xp)
register("tensor_attention.exact", "cupy", _exact_attention_xp)
# array_api_strict, ...: the same blocked algorithm against the standard; torch tensors go on
# from there to the autograd.Function of _torch.py (recomputing backward)
register("tensor_attention.exact", "array", "sci.tensor_attention._array:exact_attention")
register("tensor_attention.exact", "numba", "sci.tensor_attention._cpu:exact_attention")
register("tensor_attention.exact", "cupy", "sci.tensor_attention._gpu:exact_attention")


def higher_order_attention(
    Q: Any,
    keys: Sequence[Any],
    values: Sequence[Any],
    *,
    scale: float | None = None,
    causal: bool = False,
    max_work: float | None = DEFAULT_MAX_WORK,
) -> Array:
    r"""Exact order-:math:`t` attention with :math:`t - 1` key/value pairs.

    Parameters
    ----------
    Q : array_like, shape (..., n, d)
        Queries, with any leading batch axes.
    keys, values : sequence of array_like, shapes (..., m, d) and (..., m, d_v)
        The :math:`t - 1` keys :math:`K_1, \dots, K_{t-1}` and values
        :math:`V_1, \dots, V_{t-1}` (1 to 7 pairs, all with the same number of rows ``m``;
        the values of width ``d_v``, which need not be ``d``).
    scale : float, "sqrt" or None
        Logit scale :math:`s > 0`; default (``None``) :math:`1/d`, the papers' convention;
        ``"sqrt"`` gives :math:`1/\sqrt d`, the scale of torch's
        ``scaled_dot_product_attention``.
    causal : bool
        Attend only to tuples with every index :math:`j_m \le i` (needs ``m == n``).
    max_work : float or None
        Largest work accepted, in multiply-adds :math:`n\, m^{t-1} d` (default ``1e12``, about
        15 minutes at a conservative :math:`10^9` per second; the Numba kernel does a few
        times more).
        Above it a ValueError gives the figure and points to the polynomial method
        (:func:`poly_higher_order_attention`); ``None`` disables the check.

    Returns
    -------
    ndarray, shape (..., n, d_v)
        :math:`\mathrm{Att}`, an array of the active backend (float32 if every input is);
        ``batch`` the broadcast of the inputs' leading axes; empty when there are no queries.

    Raises
    ------
    ValueError
        Mismatched shapes or ``d``, NaN/inf entries, non-positive ``scale``, a causal mask with
        ``m != n``, or more than ``max_work`` multiply-adds (refused before any work is done).
    FloatingPointError
        The logits themselves overflow (entries near the floating-point limit).
    TypeError
        Complex or non-numeric input, ``keys``/``values`` not a list or tuple.

    Notes
    -----
    With :math:`J = (j_1, \dots, j_{t-1})`,

    .. math::

        A_{iJ} = \exp\Big(s \sum_{l=1}^d Q_{il} \prod_{m} (K_m)_{j_m l}\Big), \qquad
        \mathrm{Att}_{i} = \frac{\sum_J A_{iJ} \bigodot_m (V_m)_{j_m}}{\sum_J A_{iJ}},

    i.e. :math:`D^{-1} A (V_1 \oslash \cdots \oslash V_{t-1})` with the column-wise Kronecker
    (Khatri–Rao) product :math:`\oslash`. It costs :math:`O(n m^{t-1} d)` time. Memory beyond
    the inputs is :math:`O(n d)` plus a fixed-size block: no :math:`n \times m^{t-1}` matrix is
    formed. The weights are shifted so that none overflows: the NumPy code keeps a running
    maximum of each query's logits and rescales its partial sums when it grows (the online
    softmax); the Numba kernel shifts each query by a bound on its logits and sums again with
    the exact maximum when the bound was so loose that the sums could underflow. Logits of
    any size are safe.

    Batch axes: every input may carry leading axes, ``(..., n, d)``, ``(..., m, d)``,
    ``(..., m, d_v)``, which broadcast against each other as in NumPy and in torch's
    ``scaled_dot_product_attention`` (equal, 1, or missing on the left); the result is
    ``(*batch, n, d_v)``. Each batch element is computed on its own 2-D arrays (broadcast
    views, not copies), so memory beyond the inputs and the output is that of one element.
    The value width ``d_v`` is independent of ``d`` (every value has the same ``d_v``).

    Arrays of any library (the Backends page of the docs): NumPy arrays follow the switch (the
    blocked NumPy code or the Numba kernel; CuPy under ``use_backend("cupy")``);
    ``array_api_strict`` and other array-API arrays take the same blocked algorithm written
    against the standard (``sci/tensor_attention/_array.py``); torch tensors (CPU or CUDA) take
    it written in torch, as a ``torch.autograd.Function`` (``sci/tensor_attention/_torch.py``),
    with or without ``requires_grad``. Each comes back in its library, on its device. Through
    torch the result is differentiable (causal too): the Function saves the inputs, the output
    and one log-sum-exp per query, and its backward recomputes the logit blocks one at a time
    (FlashAttention-2's backward over the Kronecker keys), so the backward's memory is
    :math:`O(n d)` beyond the inputs, like the forward's, never the :math:`n m^{t-1}` weights.
    It is once differentiable: a second derivative through it raises.

    References
    ----------
    .. [1] J. Alman, Z. Song, "How to capture higher-order correlations? Generalizing matrix
       softmax attention to Kronecker computation", ICLR 2024, arXiv:2310.04064 (the
       tensor attention problem and its higher-order generalisation).

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import higher_order_attention, tensor_attention
    >>> rng = np.random.default_rng(0)
    >>> Q, K1, K2, V1, V2 = rng.standard_normal((5, 6, 2))
    >>> a = higher_order_attention(Q, [K1, K2], [V1, V2])
    >>> bool(np.allclose(a, tensor_attention(Q, K1, K2, V1, V2)))
    True
    """
    keys = as_sequence(keys, "keys")
    values = as_sequence(values, "values")
    names = pair_names(len(keys))
    ctx = array_context(Q, *keys, *values, names=names)
    Q, keys, values, batch = attention_inputs(Q, keys, values, causal=causal, names=names,
                                              ctx=ctx)
    s = resolve_scale(scale, Q.shape[-1])
    work_limit = _resolve_max_work(max_work)
    return _run_exact(Q, keys, values, s, bool(causal), work_limit, ctx, batch)


def softmax_attention(
    Q: Any,
    K: Any,
    V: Any,
    *,
    scale: float | None = None,
    causal: bool = False,
    max_work: float | None = DEFAULT_MAX_WORK,
) -> Array:
    r"""Exact matrix (softmax) attention :math:`D^{-1} \exp(s Q K^\top) V`.

    Parameters
    ----------
    Q : array_like, shape (..., n, d)
    K : array_like, shape (..., m, d)
    V : array_like, shape (..., m, d_v)
        Leading batch axes broadcast (see :func:`higher_order_attention`).
    scale : float, "sqrt" or None
        Logit scale :math:`s > 0`; default (``None``) :math:`1/d`, the papers' convention;
        ``"sqrt"`` gives :math:`1/\sqrt d`, the scale of torch's
        ``scaled_dot_product_attention``.
    causal : bool
        Row :math:`i` attends to keys :math:`j \le i` only (needs ``m == n``).
    max_work : float or None
        Largest :math:`n m d` (multiply-adds) accepted, default ``1e12``; ``None`` disables the
        check. Above it a ValueError points to :func:`poly_attention`.

    Returns
    -------
    ndarray, shape (..., n, d_v)

    Raises
    ------
    ValueError, TypeError
        As :func:`higher_order_attention`.

    Notes
    -----
    :math:`A = \exp(s Q K^\top)`, :math:`D = \mathrm{diag}(A \mathbf 1)`,
    :math:`\mathrm{Att} = D^{-1} A V`; the order-2 case of :func:`higher_order_attention`.
    :math:`O(n m d)` time, :math:`O(n d)` memory beyond the inputs, stable for large logits.

    Batch axes: every input may carry leading axes, ``(..., n, d)``, ``(..., m, d)``,
    ``(..., m, d_v)``, which broadcast against each other as in NumPy and in torch's
    ``scaled_dot_product_attention`` (equal, 1, or missing on the left); the result is
    ``(*batch, n, d_v)``. Each batch element is computed on its own 2-D arrays (broadcast
    views, not copies), so memory beyond the inputs and the output is that of one element.
    The value width ``d_v`` is independent of ``d`` (every value has the same ``d_v``).

    Arrays of any library (the Backends page of the docs): NumPy arrays follow the switch (the
    blocked NumPy code or the Numba kernel; CuPy under ``use_backend("cupy")``);
    ``array_api_strict`` and other array-API arrays take the same blocked algorithm written
    against the standard (``sci/tensor_attention/_array.py``); torch tensors (CPU or CUDA) take
    it written in torch, as a ``torch.autograd.Function`` (``sci/tensor_attention/_torch.py``),
    with or without ``requires_grad``. Each comes back in its library, on its device. Through
    torch the result is differentiable (causal too): the Function saves the inputs, the output
    and one log-sum-exp per query, and its backward recomputes the logit blocks one at a time
    (FlashAttention-2's backward over the Kronecker keys), so the backward's memory is
    :math:`O(n d)` beyond the inputs, like the forward's, never the :math:`n m^{t-1}` weights.
    It is once differentiable: a second derivative through it raises.

    References
    ----------
    .. [1] J. Alman, Z. Song, "Fast attention requires bounded entries", NeurIPS 2023,
       arXiv:2302.13214 (the attention computation problem).

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import softmax_attention
    >>> Q = K = np.eye(2)
    >>> V = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> np.round(softmax_attention(Q, K, V, scale=1.0), 6)
    array([[0.731059, 0.268941],
           [0.268941, 0.731059]])

    Batch and head axes broadcast, the value width is free, and ``scale="sqrt"`` is torch's
    ``scaled_dot_product_attention`` (:math:`\mathrm{softmax}(Q K^\top/\sqrt d)\, V`,
    written out here in NumPy; the docs page runs it against torch itself), while the
    default, the papers' :math:`1/d`, is not:

    >>> rng = np.random.default_rng(0)
    >>> Q, K = rng.standard_normal((2, 2, 3, 5, 4))  # (batch, heads, n, d)
    >>> V = rng.standard_normal((3, 5, 6))  # d_v = 6, no batch axis: broadcast
    >>> def sdpa(Q, K, V):  # torch's formula
    ...     logits = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    ...     weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    ...     return weights / weights.sum(axis=-1, keepdims=True) @ V
    >>> out = softmax_attention(Q, K, V, scale="sqrt")
    >>> out.shape, bool(np.allclose(out, sdpa(Q, K, V), rtol=0, atol=1e-12))
    ((2, 3, 5, 6), True)
    >>> bool(np.allclose(softmax_attention(Q, K, V), sdpa(Q, K, V)))  # scale 1/d: not SDPA
    False
    """
    ctx = array_context(Q, K, V, names=("Q", "K", "V"))
    Q, keys, values, batch = attention_inputs(Q, [K], [V], causal=causal,
                                              names=["Q", "K", "V"], ctx=ctx)
    s = resolve_scale(scale, Q.shape[-1])
    work_limit = _resolve_max_work(max_work)
    return _run_exact(Q, keys, values, s, bool(causal), work_limit, ctx, batch)


def tensor_attention(
    Q: Any,
    K1: Any,
    K2: Any,
    V1: Any,
    V2: Any,
    *,
    scale: float | None = None,
    causal: bool = False,
    max_work: float | None = DEFAULT_MAX_WORK,
    window: tuple[int, int] | None = None,
) -> Array:
    r"""Exact tensor (Kronecker, 2-simplicial) attention :math:`D^{-1} A (V_1 \oslash V_2)`.

    Parameters
    ----------
    Q : array_like, shape (..., n, d)
    K1, K2 : array_like, shape (..., m, d)
    V1, V2 : array_like, shape (..., m, d_v)
        Leading batch axes broadcast (see :func:`higher_order_attention`).
    scale : float, "sqrt" or None
        Logit scale :math:`s > 0`; default (``None``) :math:`1/d`, the papers' convention;
        ``"sqrt"`` gives :math:`1/\sqrt d`, the scale of torch's
        ``scaled_dot_product_attention``.
    causal : bool
        Row :math:`i` attends to pairs :math:`(j, k)` with :math:`j, k \le i` (needs ``m == n``).
    max_work : float or None
        Largest :math:`n m^2 d` (multiply-adds) accepted, default ``1e12`` (e.g. refused for
        :math:`n = m = 20\,000`, :math:`d = 4`: :math:`3.2 \cdot 10^{13}`, hours); ``None``
        disables the check. Above it a ValueError points to :func:`poly_tensor_attention`.
        With a window: :math:`n\, w_1 w_2 d`.
    window : (int, int), optional
        Windowed 2-simplicial attention (Roy et al. 2025 [2]_): query :math:`i` attends to the
        pairs :math:`(j, k)` with :math:`i - w_1 < j \le i` and :math:`i - w_2 < k \le i`
        only. Causal by definition (needs ``m == n``; ``causal`` need not be given); exact,
        with the online softmax, in :math:`O(n w_1 w_2 d)` time and :math:`O(n d)` memory
        beyond the inputs. Windows longer than ``n`` are the plain causal attention.

    Returns
    -------
    ndarray, shape (..., n, d_v)

    Raises
    ------
    ValueError, TypeError
        As :func:`higher_order_attention`.

    Notes
    -----
    :math:`A_{i,(j,k)} = \exp(s \sum_l Q_{il} (K_1)_{jl} (K_2)_{kl})` is :math:`n \times m^2`,
    :math:`D = \mathrm{diag}(A \mathbf 1_{m^2})` and
    :math:`\mathrm{Att}_{il} = \sum_{j,k} A_{i,(j,k)} (V_1)_{jl} (V_2)_{kl} / D_{ii}`.
    :math:`O(n m^2 d)` time (cubic); memory :math:`O(n d)` beyond the inputs (never
    :math:`n m^2`). On the ``numba`` backend a kernel parallel over queries runs it.

    Batch axes: every input may carry leading axes, ``(..., n, d)``, ``(..., m, d)``,
    ``(..., m, d_v)``, which broadcast against each other as in NumPy and in torch's
    ``scaled_dot_product_attention`` (equal, 1, or missing on the left); the result is
    ``(*batch, n, d_v)``. Each batch element is computed on its own 2-D arrays (broadcast
    views, not copies), so memory beyond the inputs and the output is that of one element.
    The value width ``d_v`` is independent of ``d`` (every value has the same ``d_v``).

    Arrays of any library (the Backends page of the docs): NumPy arrays follow the switch (the
    blocked NumPy code or the Numba kernel; CuPy under ``use_backend("cupy")``);
    ``array_api_strict`` and other array-API arrays take the same blocked algorithm written
    against the standard (``sci/tensor_attention/_array.py``); torch tensors (CPU or CUDA) take
    it written in torch, as a ``torch.autograd.Function`` (``sci/tensor_attention/_torch.py``),
    with or without ``requires_grad``. Each comes back in its library, on its device. Through
    torch the result is differentiable (causal too): the Function saves the inputs, the output
    and one log-sum-exp per query, and its backward recomputes the logit blocks one at a time
    (FlashAttention-2's backward over the Kronecker keys), so the backward's memory is
    :math:`O(n d)` beyond the inputs, like the forward's, never the :math:`n m^{t-1}` weights.
    It is once differentiable: a second derivative through it raises.
    With a window, torch tensors take a Function of their own (``WindowedTensorAttention`` in
    ``_torch.py``): it saves the same (inputs, output, one log-sum-exp per query) and its
    backward recomputes each block of the window's weights, so the backward's memory is
    :math:`O(n d)` beyond the inputs (not the :math:`n w_1 w_2` weights that autograd through
    the forward would keep) and its work :math:`O(n w_1 w_2 (d + d_v))`, a few times the
    forward's.

    References
    ----------
    .. [1] J. Alman, Z. Song, arXiv:2310.04064 (ICLR 2024), the tensor attention problem.
    .. [2] A. Roy, T. Chou, S. S. Duvvuri, S. Chen, J. Yu, X. Wang, M. Zaheer, R. Anil,
       "Fast and Simplex: 2-Simplicial Attention in Triton", 2025, arXiv:2507.02754
       (the windowed 2-simplicial attention).

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import tensor_attention
    >>> Q = np.zeros((3, 2)); K = np.ones((4, 2)); V = np.arange(8.0).reshape(4, 2)
    >>> tensor_attention(Q, K, K, V, V)[0]  # zero logits: the mean of V1[j] * V2[k]
    array([ 9., 16.])

    A window of one key each leaves query :math:`i` the pair :math:`(i, i)` alone:

    >>> Q, K1, K2, V1, V2 = np.random.default_rng(0).standard_normal((5, 6, 2))
    >>> bool(np.allclose(tensor_attention(Q, K1, K2, V1, V2, window=(1, 1)), V1 * V2))
    True
    """
    ctx = array_context(Q, K1, K2, V1, V2, names=pair_names(2))
    Q, keys, values, batch = attention_inputs(Q, [K1, K2], [V1, V2], causal=causal,
                                              names=pair_names(2), ctx=ctx)
    s = resolve_scale(scale, Q.shape[-1])
    work_limit = _resolve_max_work(max_work)
    window = _resolve_window(window, Q.shape[-2], keys[0].shape[-2])
    if window is not None:
        return _run_windowed(Q, keys, values, s, window, work_limit, ctx, batch)
    return _run_exact(Q, keys, values, s, bool(causal), work_limit, ctx, batch)

"""The polynomial method: exp replaced by a polynomial, the attention factored through rank r."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array
from .._validation import (
    check_integer,
    check_memory,
    check_real,
    chunk_length,
    memory_limit,
    resolve_rng,
)
from ..backend import array_context, to_numpy
from ._approximation import (
    MAX_DEGREE,
    _check_method,
    _logit_bounds,
    exp_approximation_error,
    exp_polynomial_coefficients,
    select_degree,
)
from ._array import _own_implementation
from ._features import _column_weights, _monomials_xp
from ._inputs import as_sequence, attention_inputs, over_batch, pair_names, resolve_scale

__all__ = [
    "NonPositiveDenominatorError",
    "PolyAttentionInfo",
    "poly_attention",
    "poly_higher_order_attention",
    "poly_tensor_attention",
]

# Bytes of one chunk of work on the host (NumPy, Numba, torch CPU, array_api_strict): small
# enough that a chunk's factors and prefix moments stay in the cache while they are multiplied
# and summed (a host operation costs microseconds, so a few thousand rows amortise it). On a
# GPU a chunk is as large as a quarter of the device's free memory allows
# (:func:`_chunk_budget`): there every operation is a kernel launch, and the sums of the whole
# sequence take a number of launches independent of n.
_HOST_CHUNK_BYTES = 1 << 22


@dataclasses.dataclass(frozen=True)
class PolyAttentionInfo:
    """What :func:`poly_higher_order_attention` did, returned with ``return_info=True``.

    Attributes
    ----------
    method : str
        ``"taylor"``, ``"chebyshev"`` or ``"random"`` (the method that produced the output:
        ``"taylor"`` after a fallback).
    order : int
        t (2: matrix attention, 3: tensor attention).
    degree : int
    rank : int
        Columns of each factor: :math:`\\binom{d+g}{g}`, or ``1 + g * num_features`` (random).
    scale : float
    logit_bound : float
        The R used (Hölder or entrywise, per ``bound``).
    entry_bound, holder_bound : float
        Both bounds on the logits.
    approximation_error : float
        Bound on the relative error of :math:`p` against exp on :math:`[-R, R]` (truncation).
    rounding_error : float
        Estimate of the relative rounding error of the factored sums:
        :math:`\\kappa\\, u\\, e^{R} \\sum_t |c_t| R^t` (:math:`u` the unit roundoff,
        :math:`\\kappa = t g + 2\\log_2(n r) + 4`); it grows like :math:`u e^{2R}`.
    predicted_error : float or None
        :math:`2\\varepsilon/(1-\\varepsilon)\\,\\|V_1 \\oslash \\cdots\\|_\\infty` with
        :math:`\\varepsilon` the sum of the two (``None`` for random features, whose error is
        statistical, or when :math:`\\varepsilon \\ge 1`).
    value_bound : float
        :math:`\\|V_1 \\oslash \\cdots \\oslash V_{t-1}\\|_\\infty`.
    chunk_size : int
        Rows per streamed chunk.
    fallback_used : bool
        True when non-positive denominators forced a recomputation with the Taylor polynomial.
    num_features : int or None
        Random features per degree (``method="random"``).
    """

    method: str
    order: int
    degree: int
    rank: int
    scale: float
    logit_bound: float
    entry_bound: float
    holder_bound: float
    approximation_error: float
    rounding_error: float
    predicted_error: float | None
    value_bound: float
    chunk_size: int
    fallback_used: bool = False
    num_features: int | None = None


class NonPositiveDenominatorError(ArithmeticError):
    """A polynomial approximation gave a row sum <= 0: its output would be meaningless."""


# Libraries with an implementation of the streamed sums of their own ("module:attribute",
# imported on first use, so that importing sci never imports torch): torch's causal sums get a
# ``torch.autograd.Function`` whose backward recomputes the chunks (``_torch.py``).
_STREAMED_SUMS_LIBRARY_IMPLEMENTATIONS = {
    "torch": "sci.tensor_attention._torch:poly_streamed_sums"}


def _streamed_sums(xp, query_factor, key_factor, Q, keys, values, causal, chunk):
    """Dispatch entry of the factored sums: a library's own implementation, else the code
    below (:func:`standard_streamed_sums`)."""
    own = _own_implementation(_STREAMED_SUMS_LIBRARY_IMPLEMENTATIONS, Q)
    if own is not None:
        return own(xp, query_factor, key_factor, Q, keys, values, causal, chunk)
    return standard_streamed_sums(xp, query_factor, key_factor, Q, keys, values, causal, chunk)


def _augmented_values(xp, values, like):
    """The values stacked over the pairs with a column of ones in front, ``(p, n, 1 + d_v)``:
    one product with the key factors then gives the sums ``U_m^T 1`` (column 0, whose products
    over the pairs are the row sums ``w``) and the moments ``U_m^T V_m`` together."""
    stacked = xp.stack(values)
    ones = xp.ones((*stacked.shape[:-1], 1), dtype=stacked.dtype,
                   device=array_api_compat.device(like))
    return xp.concat([ones, stacked], axis=-1)


def _product_over_pairs(xp, stacked):
    """``stacked[0] * stacked[1] * ...`` (the Khatri-Rao structure of the keys turns into an
    entrywise product of the pairs' sums): t - 2 operations."""
    product = stacked[0, ...]
    for m in range(1, stacked.shape[0]):
        product = product * stacked[m, ...]
    return product


def _split_sums(xp, out):
    """``w`` and ``Y`` from the ``(n, 1 + d_v)`` result of the augmented values."""
    return out[:, 0], out[:, 1:]


def standard_streamed_sums(xp, query_factor, key_factor, Q, keys, values, causal, chunk):
    """``w = U1 ⊙_m(U_m^T 1)`` and ``Y = U1 ⊙_m(U_m^T V_m)``, chunk by chunk; nothing n x n.

    ``key_factor`` maps the stacked keys, ``(p, rows, d)``, to their factors ``(p, rows, r)``
    (every pair at once). Each chunk of rows takes a fixed number of array operations (the
    feature maps', one batched matrix product ``U_m^T [1, V_m]`` for all the pairs, one product
    with the query factor), so the number of operations is that times the number of chunks,
    which on a GPU is one (:func:`_chunk_budget`): no operation count that grows with n, and no
    value read back to the host.

    Array-API code without in-place updates (the chunks' results are concatenated), so
    torch's autograd differentiates it (torch tensors take it for the non-causal sums, and
    when no gradient is wanted; called directly, causal ones too, and then autograd keeps every
    chunk's prefix moments, O(n r d_v) numbers per pair).
    """
    if causal:
        w, Y, _ = causal_segment(xp, query_factor, key_factor, Q, keys, values, None, chunk)
        return w, Y
    n_q = Q.shape[0]
    n_k = keys[0].shape[0]
    stacked_keys = xp.stack(keys)
    augmented = _augmented_values(xp, values, Q)
    sums = None  # (p, r, 1 + d_v): [U_m^T 1, U_m^T V_m], accumulated over key chunks
    for k0 in range(0, n_k, chunk):
        k1 = min(n_k, k0 + chunk)
        U = key_factor(stacked_keys[:, k0:k1, :])
        part = xp.matmul(xp.matrix_transpose(U), augmented[:, k0:k1, :])
        sums = part if sums is None else sums + part
    if sums is None:  # no keys (not reached after validation): every sum is 0
        rank = query_factor(Q[:0, :]).shape[1]
        sums = xp.zeros((len(keys), rank, augmented.shape[-1]), dtype=Q.dtype,
                        device=array_api_compat.device(Q))
    product = _product_over_pairs(xp, sums)
    parts = [query_factor(Q[q0:min(n_q, q0 + chunk), :]) @ product
             for q0 in range(0, n_q, chunk)]
    return _split_sums(xp, _joined(xp, parts, (0, augmented.shape[-1]), Q))


def causal_segment(xp, query_factor, key_factor, Q, keys, values, carry, chunk):
    """The causal sums of a run of rows (the whole sequence, or one segment of it), chunk by
    chunk, from the prefix sums carried in.

    ``carry``: ``None`` for no rows before the run, else ``C[m] = sum_j U_m[j] [1, V_m[j]]``
    over the rows before it, shape ``(p, r, 1 + d_v)`` (column 0 the sums of the factors,
    the others the moments). Returns the run's ``w`` and ``Y`` and the carry out (the same sums
    up to the run's last row). A fixed number of array operations per chunk, and one chunk per
    sequence on a GPU; no per-row loop:

    * t = 2 (:func:`_causal_blocks`): blocks of b rows, the carries into the blocks one prefix
      sum over the blocks' moments ``U_2^T [1, V]``, each block's own pairs one masked b x b
      product -- batched matrix products throughout, O(n r) memory;
    * t > 2: the product over the pairs must be taken per query, so each chunk holds its rows'
      prefix moments, ``(p, chunk, r, 1 + d_v)``: one product, one prefix sum
      (``cumulative_sum`` over the chunk's rows, for every pair and column at once), the carry
      added, the product over the pairs and one batched matrix-vector product with the query
      factors.
    """
    n = Q.shape[0]
    stacked_keys = xp.stack(keys)
    augmented = _augmented_values(xp, values, Q)
    block = _causal_block_length(augmented.shape[-1])
    parts = []
    for q0 in range(0, n, chunk):
        q1 = min(n, q0 + chunk)
        U = key_factor(stacked_keys[:, q0:q1, :])  # (p, c, r)
        U1 = query_factor(Q[q0:q1, :])  # (c, r)
        if len(keys) == 1:
            out, carry = _causal_blocks(xp, U1, U[0, ...], augmented[0, q0:q1, :],
                                        None if carry is None else carry[0, ...], block)
            carry = carry[None, ...]
            parts.append(out)
            continue
        prefix = xp.cumulative_sum(U[..., :, None] * augmented[:, q0:q1, None, :], axis=1)
        if carry is not None:
            prefix = prefix + carry[:, None, ...]
        carry = prefix[:, -1, ...]
        moments = _product_over_pairs(xp, prefix)  # (c, r, 1 + d_v)
        parts.append(xp.matmul(U1[:, None, :], moments)[:, 0, :])
    w, Y = _split_sums(xp, _joined(xp, parts, (0, augmented.shape[-1]), Q))
    return w, Y, carry


def _causal_block_length(width: int) -> int:
    """Rows b of a block of the t = 2 causal sums, for ``width = 1 + d_v`` value columns.

    Per row the blocks cost about ``4 r width`` (the block moments and their carries) plus
    ``2 b r`` (the masked b x b products) multiply-adds and keep ``r width / b`` numbers of
    moments: b a few times the width balances the two.
    """
    return max(16, min(64, 4 * width))


def _causal_blocks(xp, U1, U2, augmented, carry, block):
    """Causal matrix (t = 2) sums of c rows in blocks of ``block`` rows (the last block may be
    shorter): ``out[i] = U1[i] (carry + sum_{j <= i} U2[j]^T [1, V[j]])``, shape
    ``(c, 1 + d_v)``, and the carry out.

    Each block i-range B gets ``U1_B C_B`` with ``C_B`` the moments of every row before B (a
    prefix sum over the blocks, the carry added) plus ``(U1_B U2_B^T ∘ M) [1, V]_B`` for the
    pairs inside B (M the lower-triangular mask, diagonal included): the chunked form of
    linear attention, every step a batched matrix product over all the blocks at once.
    """
    c, rank = U2.shape
    width = augmented.shape[-1]
    device = array_api_compat.device(U2)
    parts = []
    whole = (c // block) * block
    spans = [(0, whole, block), (whole, c, c - whole)]
    for s0, s1, size in spans:
        if s1 <= s0:
            continue
        count = (s1 - s0) // size
        u1 = xp.reshape(U1[s0:s1, :], (count, size, rank))
        u2 = xp.reshape(U2[s0:s1, :], (count, size, rank))
        values = xp.reshape(augmented[s0:s1, :], (count, size, width))
        moments = xp.matmul(xp.matrix_transpose(u2), values)  # (count, r, width)
        # (count + 1, ...): the zero row made here, not by include_initial=True (array-api-strict
        # 2.5, the floor, makes it on the default device and fails on any other)
        before = xp.concat([xp.zeros_like(moments[:1, ...]),
                            xp.cumulative_sum(moments, axis=0)], axis=0)
        if carry is not None:
            before = before + carry[None, ...]
        carry = before[-1, ...]
        rows = xp.arange(size, device=device)
        mask = xp.astype(rows[:, None] >= rows[None, :], U1.dtype)
        scores = xp.matmul(u1, xp.matrix_transpose(u2)) * mask  # (count, size, size)
        out = xp.matmul(u1, before[:-1, ...]) + xp.matmul(scores, values)
        parts.append(xp.reshape(out, (s1 - s0, width)))
    if not parts:
        return xp.zeros((0, width), dtype=U1.dtype, device=device), carry
    return (parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)), carry


def _joined(xp, parts, empty_shape, like):
    if parts:
        return xp.concat(parts, axis=0)
    return xp.zeros(empty_shape, dtype=like.dtype, device=array_api_compat.device(like))


def _rounding_estimate(degree, R, method, order, n, rank, dtype) -> float:
    """First-order estimate of the relative rounding error of the factored row sums.

    Every entry of the sums is a sum of terms bounded by :math:`\\sum_t |c_t| R^t` (the
    multinomial expansion of the absolute values) while the exact row sum is at least
    :math:`e^{-R}` per tuple; each term passes through about :math:`t g` products and sums of
    :math:`n` and :math:`r` terms (blocked or pairwise, hence the logarithms).
    """
    if R > 300.0:  # e^{2R} u > 1 long before: no accuracy left, and exp(R) would overflow
        return math.inf
    coefficients = exp_polynomial_coefficients(
        degree, method="chebyshev" if method == "chebyshev" else "taylor", bound=R)
    absolute = float(np.polynomial.polynomial.polyval(R, np.abs(coefficients)))
    kappa = order * degree + 2.0 * (math.log2(max(n, 2)) + math.log2(max(rank, 2))) + 4.0
    return kappa * float(np.finfo(dtype).eps) * math.exp(R) * absolute


def _check_sums(xp, w, Y, method, degree, R) -> int:
    """Raise when the factored sums overflowed; else the number of row sums ``w <= 0``.

    One stacked reduction, one read from a device, per call."""
    finite = xp.all(xp.isfinite(w)) & xp.all(xp.isfinite(Y))
    nonpositive = xp.sum(xp.astype(w <= 0, xp.int64))
    finite_read, nonpositive_read = (int(v) for v in to_numpy(
        xp.stack([xp.astype(finite, xp.int64), nonpositive])))
    if not finite_read:
        raise FloatingPointError(
            f"the factored sums overflowed ({method}, degree {degree}, logit bound R = {R:.4g}): "
            "the entries are far beyond the regime of the polynomial method; use the exact "
            "attention, a lower degree or smaller entries"
        )
    return nonpositive_read


def _random_feature_maps(ctx, d, degree, order, count, sigma, coefficients, dtype, rng):
    """Random Maclaurin features for :math:`p(x) = \\sum_t c_t x^t`, x the order-t logit.

    For one copy: Rademacher vectors z_1 .. z_{t-1}; query feature ``sum_l prod_m z_ml q_l``,
    key-m feature ``z_m . k``: the product's expectation is ``sum_l q_l prod_m k_ml``. Degree
    t multiplies t independent copies; ``count`` samples per degree are averaged.

    Every projection of a map is one matrix product: the rows get a column of ones and the
    sign matrices of all degrees and copies sit side by side, ``(d + 1, g, g, count)``, copy
    slot c of degree t holding the signs (times sigma) when c < t and else the projection
    ``1`` (zero on X, one on the ones column), so that the product over the g slots is each
    degree's product over its t copies. Then g - 1 products, one scaling, one concatenation:
    a fixed number of operations whatever the number of rows (and the keys of every pair in
    one batched product).
    """
    # z[t][c]: (order - 1, count, d) Rademacher signs for copy c of degree t (drawn in the
    # order of the earlier per-copy code, so a seed gives the same features)
    signs = [
        [rng.choice(np.array([-1.0, 1.0]), size=(order - 1, count, d)) for _ in range(t)]
        for t in range(degree + 1)
    ]

    def projections(sign_of):
        """(d + 1, g * g * count): slot (t - 1, c) of degree t, copy c."""
        table = np.zeros((d + 1, degree, degree, count))
        table[d] = 1.0
        for t in range(1, degree + 1):
            for c in range(t):
                table[:d, t - 1, c, :] = sigma * sign_of(signs[t][c]).T
                table[d, t - 1, c, :] = 0.0
        return table.reshape(d + 1, degree * degree * count)

    xp = ctx.xp
    on = {} if ctx.is_numpy else {"device": ctx.device}
    # converted to the inputs' namespace and device once per call
    query_table = ctx.asarray(projections(lambda copy: copy.prod(axis=0)), dtype=dtype)
    key_tables = ctx.asarray(
        np.stack([projections(lambda copy, m=m: copy[m]) for m in range(order - 1)]),
        dtype=dtype)
    # c_0, then c_t / count for each of degree t's count columns
    weights = ctx.asarray(np.concatenate([
        [float(coefficients[0])],
        np.repeat(np.asarray(coefficients[1:], dtype=np.float64) / count, count)]), dtype=dtype)

    def features(X, table):
        """[1, prod over the slots of (X, 1) @ table] for rows X of shape (..., n, d)."""
        ones = xp.ones((*X.shape[:-1], 1), dtype=dtype, **on)
        if degree == 0:
            return ones
        slots = xp.matmul(xp.concat([X, ones], axis=-1), table)
        slots = xp.reshape(slots, (*X.shape[:-1], degree, degree, count))
        product = _product_over_slots(slots)
        return xp.concat([ones, xp.reshape(product, (*X.shape[:-1], degree * count))],
                         axis=-1)

    def query_map(X):
        return features(X, query_table) * weights

    def key_map(X):
        return features(X, key_tables)

    return query_map, key_map


def _product_over_slots(slots):
    """The product over axis -2 of ``(..., g, g, count)``: g - 1 operations."""
    product = slots[..., 0, :]
    for c in range(1, slots.shape[-2]):
        product = product * slots[..., c, :]
    return product


def _feature_maps(ctx, method, degree, d, order, R, sigma, num_features, dtype, rng):
    """The query's factor map, ``X -> U``, and the keys', on the stacked keys of every pair
    ``(p, rows, d) -> (p, rows, r)``.

    Functions of their rows alone: the polynomial (its coefficients, for Chebyshev fitted on
    [-R, R]) and the random signs are constants fixed here, so autograd (and the recomputing
    backward of ``_torch.py``) differentiates the polynomial that was chosen.
    """
    if method == "random":
        coefficients = exp_polynomial_coefficients(degree, method="taylor")
        return _random_feature_maps(ctx, d, degree, order, num_features, sigma, coefficients,
                                    dtype, resolve_rng(rng))
    coefficients = exp_polynomial_coefficients(degree, method=method, bound=R)
    weights = ctx.asarray(_column_weights(d, degree, coefficients), dtype=dtype)

    def query_map(X):
        return _monomials_xp(ctx, sigma * X, degree) * weights

    def key_map(X):
        return _monomials_xp(ctx, sigma * X, degree)

    return query_map, key_map


def _on_accelerator(ctx) -> bool:
    """Whether the arrays live on a GPU (CuPy, torch CUDA), where every operation is a kernel
    launch and the chunks are sized by the device's memory instead of the cache."""
    return ctx.library == "cupy" or getattr(ctx.device, "type", None) == "cuda"


def _chunk_budget(ctx) -> float:
    """Bytes one chunk of the streamed sums may take: a quarter of the free device memory on
    a GPU (:func:`sci._validation.memory_limit`, ``SCI_MEMORY_LIMIT`` if set), the cache-sized
    ``_HOST_CHUNK_BYTES`` on the host."""
    if _on_accelerator(ctx):
        return memory_limit(ctx) / 4
    return min(float(_HOST_CHUNK_BYTES), memory_limit(ctx) / 4)


def _row_elements(rank, d_v, order, causal):
    """Numbers one row of a chunk holds at once: the factors (query and keys), the gathered
    variables of the monomials and, causal, for t = 2 a row of the block's masked products
    and the blocks' moments, for t > 2 the pairs' products with the values, their prefix sums
    (and the carry added) and their product over the pairs."""
    pairs = order - 1
    width = d_v + 1
    factors = rank * (2 * order + 1)
    if not causal:
        return factors
    if order == 2:
        block = _causal_block_length(width)
        return factors + 2 * block + 3 * width + -(-3 * rank * width // block)
    return factors + rank * width * (3 * pairs + 2)


def _resolve_chunk(chunk_size, n, rank, d_v, order, causal, itemsize, ctx):
    per_row = _row_elements(rank, d_v, order, causal)
    if chunk_size is None:
        chunk = chunk_length(n, per_row * itemsize, budget=_chunk_budget(ctx))
    else:
        chunk = check_integer(chunk_size, "chunk_size", minimum=1)
    fixed = rank * (order + 1) * (d_v + 1)  # the key-side sums and their products
    check_memory(
        float(itemsize) * (fixed + min(chunk, max(n, 1)) * per_row),
        f"the polynomial method with rank {rank}",
        hint=(
            f"rank C(d+g, g) = {rank} is too large for this degree and d; lower the degree (or "
            "raise tol), pass a smaller chunk_size, or use method='random' (random features, "
            "rank 1 + degree * num_features)"
        ),
        ctx=ctx,
    )
    return max(1, min(chunk, n))


def poly_higher_order_attention(
    Q: Any,
    keys: Sequence[Any],
    values: Sequence[Any],
    *,
    degree: int | None = None,
    tol: float | None = None,
    method: str = "taylor",
    causal: bool = False,
    scale: float | None = None,
    bound: str = "holder",
    num_features: int = 256,
    rng: Any = None,
    on_nonpositive: str = "raise",
    chunk_size: int | None = None,
    return_info: bool = False,
) -> Array | tuple[Array, PolyAttentionInfo]:
    r"""Order-t attention by the polynomial method: :math:`n^{1+o(1)}` time for bounded entries.

    Parameters
    ----------
    Q : array_like, shape (..., n, d)
    keys, values : sequence of array_like, shapes (..., m, d) and (..., m, d_v)
        :math:`t - 1` keys and values (1 to 7 pairs); leading batch axes broadcast as in
        :func:`higher_order_attention`, and the value width ``d_v`` need not be ``d``.
    degree : int, optional
        Polynomial degree :math:`g`. When omitted it is the smallest meeting ``tol`` for the
        logit bound (even for Taylor). Give ``degree`` or ``tol``, not both.
    tol : float, optional
        Target for the predicted :math:`\|\widetilde{\mathrm{Att}} - \mathrm{Att}\|_\infty /
        \|V_1 \oslash \cdots\|_\infty`, in (0, 1); default ``1e-6`` when ``degree`` is omitted.
    method : {"taylor", "chebyshev", "random"}
        Taylor series (positive when g is even); Chebyshev interpolation on :math:`[-R, R]`
        (more accurate at equal degree, may go negative); random Maclaurin features of the
        Taylor polynomial (rank ``1 + degree * num_features``, for large d).
    causal : bool
        Every key index :math:`\le i` (prefix sums; needs ``m == n``).
    scale : float, "sqrt" or None
        Default :math:`1/d` (the papers'); ``"sqrt"``: :math:`1/\sqrt d` (torch's).
    bound : {"holder", "entry"}
        Which logit bound R chooses the degree and the Chebyshev interval (see
        :func:`logit_bound`).
    num_features : int
        Random features per degree (``method="random"`` only).
    rng : None, int or numpy.random.Generator
        Randomness of ``method="random"``.
    on_nonpositive : {"raise", "taylor"}
        When a row sum :math:`\tilde D_{ii} \le 0` (possible for Chebyshev, odd-degree Taylor,
        random features): raise, or recompute with the positive even-degree Taylor polynomial.
    chunk_size : int, optional
        Rows per chunk of the streamed sums. By default as many as fit in a quarter of the
        free device memory on a GPU (CuPy, torch CUDA; one chunk for most sequences, so the
        number of kernel launches does not grow with n), and in about 4 MiB on the host
        (where the cache, not the launches, sets the speed).
    return_info : bool
        Also return a :class:`PolyAttentionInfo`.

    Returns
    -------
    ndarray, shape (..., n, d_v)
        And a :class:`PolyAttentionInfo` if ``return_info``: without batch axes one, with
        them a NumPy object array of shape ``batch`` holding one per batch element (each
        element is its own problem: its own logit bound, degree and rank, computed one after
        the other by the 2-D code). Empty, shape ``(*batch, 0, d_v)``, when there
        are no queries (the logit bound is then 0).

    Raises
    ------
    ValueError
        Bad shapes, non-finite entries, ``tol`` outside (0, 1), both ``degree`` and ``tol``,
        unknown method; :class:`~sci._validation.MemoryLimitError` (a ValueError) when the rank
        :math:`\binom{d+g}{g}` would not fit in memory (the message gives the size and suggests
        random features).
    ArithmeticError
        A non-positive row sum with ``on_nonpositive="raise"``
        (:class:`NonPositiveDenominatorError`), or :class:`FloatingPointError` when the factors
        overflow (entries far too large for the degree).

    Notes
    -----
    Let :math:`p(x) = \sum_t c_t x^t` approximate :math:`e^x` on :math:`[-R, R]` with relative
    error :math:`\varepsilon`, and :math:`U_1, U_2, \dots` the factors of
    :func:`polynomial_features` (scale :math:`s^{1/t}` each). Then

    .. math::

        \tilde D \mathbf 1 = U_1 \big[(U_2^\top \mathbf 1) \circ \cdots\big],\qquad
        \tilde A (V_1 \oslash \cdots) = U_1 \big[(U_2^\top V_1) \circ \cdots\big],

    because :math:`(U_2 \oslash U_3)^\top (V_1 \oslash V_2) = (U_2^\top V_1) \circ (U_3^\top
    V_2)`. Time :math:`O(n r d)` and memory :math:`O(\text{chunk}\cdot r + r d)` with
    :math:`r = \binom{d+g}{g}`: nothing of size :math:`n^2` is formed. The output error is at
    most :math:`2\varepsilon/(1-\varepsilon)\,\|V_1 \oslash \cdots\|_\infty`, independent of n.
    For :math:`d = O(\log n)` and entries :math:`B = o((\log n)^{1/t})`, :math:`g` and
    :math:`r` are :math:`n^{o(1)}`.

    Arrays of any library (the Backends page of the docs): the method is written once against
    the array API standard, so NumPy arrays (and CuPy under ``use_backend("cupy")``), CuPy
    arrays, torch tensors (CPU or CUDA) and ``array_api_strict`` arrays are computed in their
    library, on their device, and come back there. Through torch the result is differentiable,
    its backward keeping O(n r) numbers per key/value pair (r the rank). Non-causal: autograd
    differentiates the streamed factored sums and keeps the factor matrices of every chunk.
    Causal: a ``torch.autograd.Function`` keeps the inputs and the prefix sums and moments at
    the boundaries of segments of at least d_v + 1 rows (whole chunks) only, at most n r
    numbers per pair (autograd would keep every row's prefix moments, n r d_v), and its
    backward recomputes each segment's forward (it takes about 4 forwards' time: 3.8 in the
    tensor_attention benchmark's record, tensor attention at g = 6, n = 4096; once
    differentiable: a second derivative raises).
    The degree, the Chebyshev interval [-R, R] and the random features are chosen from the
    inputs and held fixed in the backward: it differentiates the polynomial that was used.

    References
    ----------
    .. [1] J. Alman, Z. Song, arXiv:2310.04064 (ICLR 2024): the upper bound for tensor
       attention and its order-t generalisation.
    .. [2] J. Alman, Z. Song, arXiv:2302.13214 (NeurIPS 2023): the matrix version.
    .. [3] P. Kar, H. Karnick, "Random feature maps for dot product kernels", AISTATS 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import poly_higher_order_attention, higher_order_attention
    >>> rng = np.random.default_rng(1)
    >>> Q, K1, K2, V1, V2 = rng.uniform(-1, 1, (5, 64, 4))
    >>> approx, info = poly_higher_order_attention(Q, [K1, K2], [V1, V2], tol=1e-8,
    ...                                            return_info=True)
    >>> exact = higher_order_attention(Q, [K1, K2], [V1, V2])
    >>> info.degree, info.rank, bool(np.abs(approx - exact).max() <= info.predicted_error)
    (10, 1001, True)
    """
    keys = as_sequence(keys, "keys")
    values = as_sequence(values, "values")
    return _poly_attention(
        Q, keys, values, pair_names(len(keys)), degree=degree, tol=tol, method=method,
        causal=causal, scale=scale, bound=bound, num_features=num_features, rng=rng,
        on_nonpositive=on_nonpositive, chunk_size=chunk_size, return_info=return_info,
    )


def _poly_attention(
    Q, keys, values, names, *, degree, tol, method, causal, scale, bound, num_features, rng,
    on_nonpositive, chunk_size, return_info,
):
    ctx = array_context(Q, *keys, *values, names=names)
    Q, keys, values, batch = attention_inputs(Q, keys, values, causal=causal, names=names,
                                              ctx=ctx)
    method = _check_method(method)
    if bound not in ("holder", "entry"):
        raise ValueError(f"bound must be 'holder' or 'entry'; got {bound!r}")
    if on_nonpositive not in ("raise", "taylor"):
        raise ValueError(f"on_nonpositive must be 'raise' or 'taylor'; got {on_nonpositive!r}")
    if degree is not None and tol is not None:
        raise ValueError("give degree or tol, not both (tol chooses the degree)")
    options = dict(degree=degree, tol=tol, method=method, causal=causal, scale=scale,
                   bound=bound, num_features=num_features, rng=rng,
                   on_nonpositive=on_nonpositive, chunk_size=chunk_size)
    if not batch:
        return _poly_attention_2d(ctx, Q, keys, values, return_info=return_info, **options)
    xp = ctx.xp
    if math.prod(batch) == 0:
        empty = xp.zeros((*batch, Q.shape[-2], values[0].shape[-1]), dtype=Q.dtype,
                         device=array_api_compat.device(Q))
        return (empty, np.empty(batch, dtype=object)) if return_info else empty
    # Each batch element is its own problem: its own logit bound, degree and rank (the
    # polynomial is chosen from its entries), computed with the 2-D code one at a time.
    infos = []  # in the order of over_batch: C order over the batch axes

    def element(q, k, v):
        out, info = _poly_attention_2d(ctx, q, k, v, return_info=True, **options)
        infos.append(info)
        return out

    out = over_batch(element, Q, keys, values, batch, xp)
    if not return_info:
        return out
    table = np.empty(len(infos), dtype=object)
    table[:] = infos
    return out, table.reshape(batch)


def _poly_attention_2d(
    ctx, Q, keys, values, *, degree, tol, method, causal, scale, bound, num_features, rng,
    on_nonpositive, chunk_size, return_info,
):
    """One batch element: 2-D, validated inputs (the body of :func:`_poly_attention`)."""
    xp = ctx.xp
    # NumPy's view of the dtype (finfo, itemsize) whatever library holds the arrays
    np_dtype = np.dtype(np.float32) if Q.dtype == xp.float32 else np.dtype(np.float64)
    n_q, d = Q.shape
    d_v = values[0].shape[1]
    order = len(keys) + 1
    s = resolve_scale(scale, d)
    bounds = _logit_bounds(Q, keys, s, xp)
    R = bounds[bound]
    choose_degree = degree is None
    if choose_degree:
        tol_value = 1e-6 if tol is None else tol
        tol_value = check_real(
            tol_value, "tol", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        precision = float(np.finfo(np_dtype).eps)
        if tol_value < 10 * precision:
            advice = ("a larger tol" if Q.dtype == np.float64
                      else "float64 inputs or a larger tol")
            raise ValueError(
                f"tol={tol_value} is below what {Q.dtype} can resolve (10 eps = "
                f"{10 * precision:.1e}); use {advice}"
            )
    else:
        degree = check_integer(degree, "degree", minimum=0, maximum=MAX_DEGREE)
    if method == "random":
        num_features = check_integer(num_features, "num_features", minimum=1)
    n_max = max(n_q, keys[0].shape[0])

    def rank_of(g):
        return 1 + g * num_features if method == "random" else math.comb(d + g, g)

    def errors(g, method_used):
        truncation = exp_approximation_error(g, R, method=method_used)
        rounding = _rounding_estimate(g, R, method_used, order, n_max, rank_of(g), np_dtype)
        return truncation, rounding

    if choose_degree:
        degree = select_degree(tol_value, R, method=method)
        # The truncation bound alone chose the degree; floating point adds a floor that grows
        # like u e^{2R}: raise the degree while that helps, refuse when the floor is above tol.
        target = tol_value / (2.0 + tol_value)
        step = 1 if method == "chebyshev" else 2
        while sum(errors(degree, method)) > target:
            if errors(degree, method)[1] > target or degree + step > MAX_DEGREE:
                raise ValueError(
                    f"tol={tol_value} is below the {Q.dtype} rounding floor of the polynomial "
                    f"method at logit bound R = {R:.4g} (about "
                    f"{2 * errors(degree, method)[1]:.1e}, growing like e^(2R)); raise tol, use "
                    "float64, or use the exact attention"
                )
            degree += step
    value_bound = 1.0
    for V in values:
        value_bound = value_bound * xp.max(xp.abs(V), axis=0)
    value_bound = float(to_numpy(xp.max(value_bound)))  # a diagnostic: detached, read once
    epsilon, rounding = errors(degree, method)
    rank = rank_of(degree)
    chunk = _resolve_chunk(chunk_size, max(n_q, keys[0].shape[0]), rank, d_v, order,
                           causal, np_dtype.itemsize, ctx)
    sigma = s ** (1.0 / order)

    def run(method_used, degree_used):
        query_map, key_map = _feature_maps(ctx, method_used, degree_used, d, order, R, sigma,
                                           num_features, Q.dtype, rng)
        # Overflow is detected on the result (below), with a message, not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            return _streamed_sums(xp, query_map, key_map, Q, keys, values, bool(causal), chunk)

    fallback_used = False
    w, Y = run(method, degree)
    bad = _check_sums(xp, w, Y, method, degree, R)
    if bad:
        if on_nonpositive == "raise":
            raise NonPositiveDenominatorError(
                f"{bad} of {n_q} row sums of the approximate attention matrix are <= 0 "
                f"({method}, degree {degree}, R = {R:.4g}): the polynomial is not positive on "
                f"these logits. Raise the degree, use method='taylor' with an even degree, or "
                f"pass on_nonpositive='taylor' to fall back to it"
            )
        fallback_used = True
        method = "taylor"
        degree = degree + degree % 2
        rank = math.comb(d + degree, degree)
        chunk = _resolve_chunk(chunk_size, max(n_q, keys[0].shape[0]), rank, d_v, order,
                               causal, np_dtype.itemsize, ctx)
        epsilon, rounding = errors(degree, "taylor")
        w, Y = run("taylor", degree)
        _check_sums(xp, w, Y, method, degree, R)
    out = Y / w[:, None]
    if not return_info:
        return out
    predicted = None
    if method != "random" and epsilon + rounding < 1.0:
        total = epsilon + rounding
        predicted = 2.0 * total / (1.0 - total) * value_bound
    info = PolyAttentionInfo(
        method=method, order=order, degree=degree, rank=rank, scale=s, logit_bound=R,
        entry_bound=bounds["entry"], holder_bound=bounds["holder"],
        approximation_error=epsilon, rounding_error=rounding, predicted_error=predicted,
        value_bound=value_bound,
        chunk_size=chunk, fallback_used=fallback_used,
        num_features=num_features if method == "random" else None,
    )
    return out, info


def poly_attention(
    Q: Any,
    K: Any,
    V: Any,
    *,
    degree: int | None = None,
    tol: float | None = None,
    method: str = "taylor",
    causal: bool = False,
    scale: float | None = None,
    return_info: bool = False,
    **options: Any,
) -> Array | tuple[Array, PolyAttentionInfo]:
    r"""Matrix softmax attention by the polynomial method (order 2).

    Parameters
    ----------
    Q : array_like, shape (..., n, d)
    K : array_like, shape (..., m, d)
    V : array_like, shape (..., m, d_v)
    degree, tol, method, causal, scale, return_info
        As :func:`poly_higher_order_attention`.
    **options
        ``bound``, ``num_features``, ``rng``, ``on_nonpositive``, ``chunk_size``: as
        :func:`poly_higher_order_attention`.

    Returns
    -------
    ndarray, shape (..., n, d_v)
        (and :class:`PolyAttentionInfo` with ``return_info=True``)

    Notes
    -----
    :math:`\tilde D \mathbf 1 = U_1 (U_2^\top \mathbf 1)`, :math:`\tilde A V = U_1 (U_2^\top
    V)`; the logits are bounded by :math:`B^2` (default scale) and the method is near-linear
    below :math:`B = \sqrt{\log n}`.

    Arrays of any library (the Backends page of the docs): the method is written once against
    the array API standard, so NumPy arrays (and CuPy under ``use_backend("cupy")``), CuPy
    arrays, torch tensors (CPU or CUDA) and ``array_api_strict`` arrays are computed in their
    library, on their device, and come back there. Through torch the result is differentiable,
    its backward keeping O(n r) numbers per key/value pair (r the rank). Non-causal: autograd
    differentiates the streamed factored sums and keeps the factor matrices of every chunk.
    Causal: a ``torch.autograd.Function`` keeps the inputs and the prefix sums and moments at
    the boundaries of segments of at least d_v + 1 rows (whole chunks) only, at most n r
    numbers per pair (autograd would keep every row's prefix moments, n r d_v), and its
    backward recomputes each segment's forward (it takes about 4 forwards' time: 3.8 in the
    tensor_attention benchmark's record, tensor attention at g = 6, n = 4096; once
    differentiable: a second derivative raises).
    The degree, the Chebyshev interval [-R, R] and the random features are chosen from the
    inputs and held fixed in the backward: it differentiates the polynomial that was used.

    References
    ----------
    .. [1] J. Alman, Z. Song, "Fast attention requires bounded entries", NeurIPS 2023,
       arXiv:2302.13214.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import poly_attention, softmax_attention
    >>> rng = np.random.default_rng(2)
    >>> Q, K, V = rng.uniform(-1, 1, (3, 100, 4))
    >>> err = np.abs(poly_attention(Q, K, V, degree=8) - softmax_attention(Q, K, V)).max()
    >>> bool(err < 1e-8)
    True
    """
    return _poly_attention(
        Q, [K], [V], ["Q", "K", "V"], degree=degree, tol=tol, method=method, causal=causal,
        scale=scale, return_info=return_info, **_other_options(options),
    )


def poly_tensor_attention(
    Q: Any,
    K1: Any,
    K2: Any,
    V1: Any,
    V2: Any,
    *,
    degree: int | None = None,
    tol: float | None = None,
    method: str = "taylor",
    causal: bool = False,
    scale: float | None = None,
    return_info: bool = False,
    **options: Any,
) -> Array | tuple[Array, PolyAttentionInfo]:
    r"""Tensor (Kronecker) attention by the polynomial method (order 3).

    Parameters
    ----------
    Q : array_like, shape (..., n, d)
    K1, K2 : array_like, shape (..., m, d)
    V1, V2 : array_like, shape (..., m, d_v)
    degree, tol, method, causal, scale, return_info
        As :func:`poly_higher_order_attention`.
    **options
        ``bound``, ``num_features``, ``rng``, ``on_nonpositive``, ``chunk_size``: as
        :func:`poly_higher_order_attention`.

    Returns
    -------
    ndarray, shape (..., n, d_v)
        (and :class:`PolyAttentionInfo` with ``return_info=True``)

    Notes
    -----
    :math:`w = U_1[(U_2^\top \mathbf 1) \circ (U_3^\top \mathbf 1)]`,
    :math:`Y = U_1[(U_2^\top V_1) \circ (U_3^\top V_2)]`, :math:`\widetilde{\mathrm{Att}} =
    \mathrm{diag}(w)^{-1} Y`: :math:`O(n r d)` time instead of :math:`O(n^3 d)`. Near-linear
    for entries :math:`B = o((\log n)^{1/3})`; at :math:`B = \Theta((\log n)^{1/3})` no
    truly subcubic algorithm exists under SETH.

    Arrays of any library (the Backends page of the docs): the method is written once against
    the array API standard, so NumPy arrays (and CuPy under ``use_backend("cupy")``), CuPy
    arrays, torch tensors (CPU or CUDA) and ``array_api_strict`` arrays are computed in their
    library, on their device, and come back there. Through torch the result is differentiable,
    its backward keeping O(n r) numbers per key/value pair (r the rank). Non-causal: autograd
    differentiates the streamed factored sums and keeps the factor matrices of every chunk.
    Causal: a ``torch.autograd.Function`` keeps the inputs and the prefix sums and moments at
    the boundaries of segments of at least d_v + 1 rows (whole chunks) only, at most n r
    numbers per pair (autograd would keep every row's prefix moments, n r d_v), and its
    backward recomputes each segment's forward (it takes about 4 forwards' time: 3.8 in the
    tensor_attention benchmark's record, tensor attention at g = 6, n = 4096; once
    differentiable: a second derivative raises).
    The degree, the Chebyshev interval [-R, R] and the random features are chosen from the
    inputs and held fixed in the backward: it differentiates the polynomial that was used.

    References
    ----------
    .. [1] J. Alman, Z. Song, arXiv:2310.04064 (ICLR 2024): the upper and lower bounds.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.tensor_attention import poly_tensor_attention, tensor_attention
    >>> rng = np.random.default_rng(3)
    >>> Q, K1, K2, V1, V2 = rng.uniform(-1, 1, (5, 50, 4))
    >>> approx = poly_tensor_attention(Q, K1, K2, V1, V2, degree=8)
    >>> bool(np.abs(approx - tensor_attention(Q, K1, K2, V1, V2)).max() < 1e-8)
    True
    """
    return _poly_attention(
        Q, [K1, K2], [V1, V2], pair_names(2), degree=degree, tol=tol, method=method,
        causal=causal, scale=scale, return_info=return_info, **_other_options(options),
    )


_OTHER_OPTIONS = {
    "bound": "holder", "num_features": 256, "rng": None, "on_nonpositive": "raise",
    "chunk_size": None,
}


def _other_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_OTHER_OPTIONS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(unknown)}; the other options are "
            f"{', '.join(sorted(_OTHER_OPTIONS))} (see poly_higher_order_attention)"
        )
    return {**_OTHER_OPTIONS, **options}

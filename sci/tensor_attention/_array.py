"""Exact attention written once against the array API standard (array_api_strict, ...).

The blocked, overflow-safe algorithm of ``_exact._exact_attention_xp`` without NumPy-only
calls or in-place updates: query blocks x blocks of key tuples (j_1, ..., j_{t-2}) x all last
keys, with a running maximum per query. The tuple indices and the causal skips are computed on
the host from the block bounds (no device value is read in the loops). Memory: one logit block
of at most ``_BLOCK_ELEMENTS`` elements.

Torch tensors (CPU or CUDA) do not run this code: the dispatch key ``"array"`` serves every
library without kernels of its own, and ``_LIBRARY_IMPLEMENTATIONS`` sends torch on to
``_torch.py``, a ``torch.autograd.Function`` whose backward recomputes the logit blocks
(O(n d) backward memory; autograd through this code would store every block's weights,
O(n_q n_k^(t-1)) numbers).
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import array_api_compat
import numpy as np

from .._validation import chunk_length
from ..backend._arrays import library_of
from . import _exact

# Libraries on the array path that have an implementation of their own ("module:attribute",
# imported on first use, so that importing sci never imports torch).
_LIBRARY_IMPLEMENTATIONS = {"torch": "sci.tensor_attention._torch:exact_attention"}
_WINDOWED_LIBRARY_IMPLEMENTATIONS = {
    "torch": "sci.tensor_attention._torch:windowed_tensor_attention"}


def _own_implementation(table, Q):
    """The library's own implementation of ``table`` for ``Q``'s library, or None."""
    own = table.get(library_of(Q))
    if own is None:
        return None
    module, _, attribute = own.partition(":")
    return getattr(importlib.import_module(module), attribute)


def exact_attention(Q, keys, values, scale, causal):
    """Dispatch entry of the key ``"array"``: a library's own implementation, else the code
    below."""
    own = _own_implementation(_LIBRARY_IMPLEMENTATIONS, Q)
    if own is not None:
        return own(Q, keys, values, scale, causal)
    return standard_exact_attention(Q, keys, values, scale, causal)


def standard_exact_attention(Q, keys, values, scale, causal, *, budget=None):
    """The blocked algorithm against the standard (torch too, when called directly: then
    autograd differentiates it, storing every block's weights). ``budget``: the most logits
    one block holds (default ``_exact._BLOCK_ELEMENTS``, a CPU cache's worth; the CuPy path
    passes a device-sized one)."""
    xp = array_api_compat.array_namespace(Q)
    device = array_api_compat.device(Q)
    n_q, d = Q.shape
    n_k = keys[0].shape[0]
    d_v = values[0].shape[1]
    n_outer = n_k ** (len(keys) - 1)
    k_last, v_last = keys[-1], values[-1]
    budget = _exact._BLOCK_ELEMENTS if budget is None else budget
    block_q = chunk_length(n_q, n_k, budget=budget)
    block_o = chunk_length(n_outer, block_q * n_k, budget=budget)
    last_index = xp.asarray(np.arange(n_k), device=device)
    blocks = []
    for q0 in range(0, n_q, block_q):
        q1 = min(n_q, q0 + block_q)
        sq = scale * Q[q0:q1, :]
        rows = xp.asarray(np.arange(q0, q1), device=device)
        run_max = None
        numerator = denominator = None
        for o0 in range(0, n_outer, block_o):
            o1 = min(n_outer, o0 + block_o)
            o = np.arange(o0, o1)
            digits = [(o // n_k**m) % n_k for m in range(len(keys) - 1)]
            largest = np.max(np.stack(digits), axis=0) if digits else np.zeros(o.size, int)
            if causal and int(largest.min()) > q1 - 1:
                continue  # every tuple of this block lies in the future of every query
            k_rows = xp.ones((o1 - o0, d), dtype=Q.dtype, device=device)
            v_rows = xp.ones((o1 - o0, d_v), dtype=Q.dtype, device=device)
            for m, j in enumerate(digits):
                idx = xp.asarray(j, device=device)
                k_rows = k_rows * xp.take(keys[m], idx, axis=0)
                v_rows = v_rows * xp.take(values[m], idx, axis=0)
            rows_block = xp.reshape(sq[:, None, :] * k_rows[None, :, :], (-1, d))
            logits = xp.reshape(rows_block @ k_last.T, (q1 - q0, o1 - o0, n_k))
            if causal:
                big = xp.asarray(largest, device=device)
                future = ((big[None, :, None] > rows[:, None, None])
                          | (last_index[None, None, :] > rows[:, None, None]))
                logits = xp.where(future, -xp.inf, logits)
            block_max = xp.max(logits, axis=(1, 2))
            new_max = block_max if run_max is None else xp.maximum(run_max, block_max)
            # a query whose keys are all masked so far is shifted by 0: no -inf - (-inf)
            safe_max = xp.where(xp.isfinite(new_max), new_max, xp.zeros_like(new_max))
            weights = xp.exp(logits - safe_max[:, None, None])
            inner = xp.reshape(xp.reshape(weights, (-1, n_k)) @ v_last, (q1 - q0, o1 - o0, d_v))
            contribution = xp.sum(inner * v_rows[None, :, :], axis=1)
            mass = xp.sum(weights, axis=(1, 2))
            if run_max is None:
                numerator, denominator = contribution, mass
            else:
                rescale = xp.exp(run_max - safe_max)
                numerator = rescale[:, None] * numerator + contribution
                denominator = rescale * denominator + mass
            run_max = new_max
        blocks.append(numerator / denominator[:, None])
    return xp.concat(blocks, axis=0)


class FusedPlan(NamedTuple):
    """How the fused GPU kernel (``_gpu.py``) shares out one query's work.

    The work items of a query are the pairs (outer tuple ``o``, slice ``s`` of the last keys),
    numbered ``w = o * n_splits + s`` (``o`` in ``range(n_k ** (t - 1))``, keys
    ``s * split <= k < (s + 1) * split``); thread ``u`` of the query takes the items
    ``u * per_unit <= w < (u + 1) * per_unit``.
    """

    units: int
    """Threads per query."""
    n_splits: int
    """Slices of the last keys (more than 1 only when the outer tuples are too few)."""
    split: int
    """Keys per slice."""
    per_unit: int
    """Items per thread."""


def fused_plan(n_q: int, n_k: int, n_pairs: int, threads: int) -> FusedPlan:
    """About ``threads`` threads in all, every item in exactly one thread, no empty slice.

    Matrix attention (one outer tuple) is split along its keys; order t >= 3 has
    ``n_k^(t-2)`` outer tuples per query and is split along them first.

    Examples
    --------
    >>> from sci.tensor_attention._array import fused_plan
    >>> fused_plan(8192, 8192, 1, 1 << 19)  # matrix attention: 64 slices of 128 keys
    FusedPlan(units=64, n_splits=64, split=128, per_unit=1)
    >>> fused_plan(1024, 1024, 2, 1 << 19)  # tensor attention: 2 outer keys j per thread
    FusedPlan(units=512, n_splits=1, split=1024, per_unit=2)
    """
    n_outer = n_k ** (n_pairs - 1)
    want = max(1, -(-threads // max(n_q, 1)))  # threads per query
    n_splits = max(1, min(n_k, -(-want // n_outer)))
    split = -(-n_k // n_splits)
    n_splits = -(-n_k // split)  # no empty slice at the end
    n_items = n_outer * n_splits
    per_unit = max(1, -(-n_items // want))
    return FusedPlan(-(-n_items // per_unit), n_splits, split, per_unit)


class TilePlan(NamedTuple):
    """How the tiled GPU kernel (``_gpu.py``) shares out the logits among its blocks.

    The logit rows are the pairs (query ``i``, outer tuple ``o``). Matrix attention
    (``tiles_per_query == 0``): block ``x`` takes the queries ``x * rows`` to
    ``(x + 1) * rows - 1``; order t >= 3: block ``x`` takes query ``x // tiles_per_query`` and
    its outer tuples from ``(x % tiles_per_query) * rows``. Block ``y`` of a row tile takes the
    last keys ``y * split <= k < (y + 1) * split`` (``split`` a whole number of key tiles). Each
    block writes one partial (max, mass, numerator) per query it holds, in the query's slot
    ``unit`` (``y`` for matrix attention, ``(x % tiles_per_query) * n_splits + y`` otherwise).
    """

    row_tiles: int
    """Blocks along the rows (the grid's x)."""
    tiles_per_query: int
    """Row tiles of one query (0 for matrix attention)."""
    n_splits: int
    """Slices of the last keys (the grid's y)."""
    split: int
    """Keys per slice."""
    units: int
    """Partial slots per query."""


def tile_plan(n_q: int, n_k: int, n_pairs: int, rows: int, keys: int,
              blocks: int) -> TilePlan:
    """About ``blocks`` blocks (or as many as there are row tiles), key slices of whole key
    tiles, no empty slice.

    Examples
    --------
    >>> from sci.tensor_attention._array import tile_plan
    >>> tile_plan(8192, 8192, 1, 64, 64, 1024)  # matrix: 128 query tiles x 8 key slices
    TilePlan(row_tiles=128, tiles_per_query=0, n_splits=8, split=1024, units=8)
    >>> tile_plan(1024, 1024, 2, 64, 64, 1024)  # tensor: 16 tiles of tuples per query
    TilePlan(row_tiles=16384, tiles_per_query=16, n_splits=1, split=1024, units=16)
    """
    if n_pairs == 1:
        tiles_per_query, row_tiles = 0, -(-n_q // rows)
    else:
        tiles_per_query = -(-n_k ** (n_pairs - 1) // rows)
        row_tiles = n_q * tiles_per_query
    key_tiles = -(-n_k // keys)
    n_splits = max(1, min(key_tiles, -(-blocks // max(row_tiles, 1))))
    split = -(-key_tiles // n_splits) * keys
    n_splits = -(-n_k // split)  # no empty slice at the end
    units = n_splits if n_pairs == 1 else tiles_per_query * n_splits
    return TilePlan(row_tiles, tiles_per_query, n_splits, split, units)


def combine_partials(part_max, part_mass, part_numerator, dtype, *, with_lse=False):
    """Softmax-weighted means from per-thread partial sums (the fused kernel's second step).

    Thread ``u`` of query ``i`` summed its weights relative to its own maximum ``m_iu``:
    ``mass_iu = sum exp(x - m_iu)``, ``numerator_iu = sum exp(x - m_iu) v``. With
    ``M_i = max_u m_iu`` the query's output is
    ``sum_u e^(m_iu - M_i) numerator_iu / sum_u e^(m_iu - M_i) mass_iu`` (a thread that saw
    no key has ``m_iu = -inf``: weight 0), and the log-sum-exp of its logits (what the torch
    Function keeps for its backward) ``M_i + log sum_u e^(m_iu - M_i) mass_iu``. Arrays
    (n_q, U), (n_q, U), (n_q, U, d_v) in float64; the results (n_q, d_v) and (n_q,) in
    ``dtype``.
    """
    xp = array_api_compat.array_namespace(part_max)
    largest = xp.max(part_max, axis=1)
    factor = xp.exp(part_max - largest[:, None])
    numerator = xp.sum(factor[:, :, None] * part_numerator, axis=1)
    mass = xp.sum(factor * part_mass, axis=1)
    out = xp.astype(numerator / mass[:, None], dtype, copy=False)
    if not with_lse:
        return out
    return out, xp.astype(largest + xp.log(mass), dtype, copy=False)


def windowed_tensor_attention(Q, K1, K2, V1, V2, scale, window):
    """Dispatch entry of the key ``"array"`` for windows: torch tensors go to the
    ``torch.autograd.Function`` of ``_torch.py`` (recomputing backward, O(n d) memory), every
    other library to the code below."""
    own = _own_implementation(_WINDOWED_LIBRARY_IMPLEMENTATIONS, Q)
    if own is not None:
        return own(Q, K1, K2, V1, V2, scale, window)
    return standard_windowed_tensor_attention(Q, K1, K2, V1, V2, scale, window)


def standard_windowed_tensor_attention(Q, K1, K2, V1, V2, scale, window):
    """Windowed causal 2-simplicial attention: query i attends to the pairs (j, k) with
    ``i - w1 < j <= i`` and ``i - w2 < k <= i`` (Roy et al., "Fast and Simplex: 2-Simplicial
    Attention in Triton", 2025), exactly.

    Each block of ``bq`` queries gathers its windows, ``K1w[i, a] = K1[i - w1 + 1 + a]`` (the
    keys padded with ``w1 - 1`` zero rows in front; likewise K2, V1, V2), and forms exactly its
    ``bq w1 w2`` logits by one stacked product ``(s Q_i * K1w_i) K2w_i^T``; the slots before
    key 0 are masked to -inf. A query's window lies whole in its block, so each block's softmax
    is complete (no online rescaling). Work ``n w1 w2 (d + d_v)`` multiply-adds and one
    exponential per logit: O(n w1 w2 d). Memory: one block of at most ``_BLOCK_ELEMENTS``
    logits (one query's at least) and its gathered windows, beyond the inputs and the output.
    The gather indices are made on the inputs' device (nothing is sent per block). Written
    against the array API (NumPy, CuPy, array_api_strict); torch tensors take the same
    formulation written in torch (``_torch.py``), unless this is called directly (then
    autograd keeps every block's weights).
    """
    xp = array_api_compat.array_namespace(Q)
    device = array_api_compat.device(Q)
    n, d = Q.shape
    d_v = V1.shape[1]
    w1, w2 = min(window[0], n), min(window[1], n)  # a window beyond the start: plain causal

    def padded(X, w):
        return xp.concat([xp.zeros((w - 1, X.shape[1]), dtype=X.dtype, device=device), X])

    def window(Xp, index, w, width):  # (bq, w, width): the gathered windows of a block
        return xp.reshape(xp.take(Xp, index, axis=0), (-1, w, width))

    K1p, V1p, K2p, V2p = padded(K1, w1), padded(V1, w1), padded(K2, w2), padded(V2, w2)
    slots1 = xp.arange(w1, device=device)
    slots2 = xp.arange(w2, device=device)
    block_q = max(1, min(n, _exact._BLOCK_ELEMENTS // (w1 * w2)))
    blocks = []
    for q0 in range(0, n, block_q):
        q1 = min(n, q0 + block_q)
        bq = q1 - q0
        queries = xp.arange(q0, q1, device=device)
        # padded row of slot a of query i: i + a (key i - w + 1 + a)
        index1 = xp.reshape(queries[:, None] + slots1[None, :], (-1,))
        index2 = xp.reshape(queries[:, None] + slots2[None, :], (-1,))

        K1w, K2w = window(K1p, index1, w1, d), window(K2p, index2, w2, d)
        logits = ((scale * Q[q0:q1, :])[:, None, :] * K1w) @ xp.matrix_transpose(K2w)
        if q0 < max(w1, w2) - 1:  # slots before key 0 (padded rows < w - 1) in this block
            before1 = xp.reshape(index1, (bq, w1)) < w1 - 1
            before2 = xp.reshape(index2, (bq, w2)) < w2 - 1
            logits = xp.where(before1[:, :, None] | before2[:, None, :], -xp.inf, logits)
        # every query has the pair (i, i): its largest logit is finite, its mass >= 1
        largest = xp.max(logits, axis=(1, 2))
        weights = xp.exp(logits - largest[:, None, None])
        inner = weights @ window(V2p, index2, w2, d_v)  # sum_b e_iab V2w_ib: (bq, w1, d_v)
        numerator = xp.sum(inner * window(V1p, index1, w1, d_v), axis=1)
        blocks.append(numerator / xp.sum(weights, axis=(1, 2))[:, None])
    return xp.concat(blocks, axis=0)

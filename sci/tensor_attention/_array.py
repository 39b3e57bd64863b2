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


def standard_exact_attention(Q, keys, values, scale, causal):
    """The blocked algorithm against the standard (torch too, when called directly: then
    autograd differentiates it, storing every block's weights)."""
    xp = array_api_compat.array_namespace(Q)
    device = array_api_compat.device(Q)
    n_q, d = Q.shape
    n_k = keys[0].shape[0]
    d_v = values[0].shape[1]
    n_outer = n_k ** (len(keys) - 1)
    k_last, v_last = keys[-1], values[-1]
    budget = _exact._BLOCK_ELEMENTS
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
    Attention in Triton", 2025), exactly, with the online softmax.

    Query blocks of ``bq`` rows see the keys ``j`` in ``[q0 - w1 + 1, q1)`` and ``k`` in
    ``[q0 - w2 + 1, q1)``; the block's logits are formed over those ranges, ``j`` in chunks
    (a running maximum per query across the chunks), and masked to each query's window. With
    ``bq <= min(w1, w2)`` the ranges are at most twice the windows, so the work is at most
    ``4 n w1 w2 d`` (and ``(d + d_v)`` per logit): O(n w1 w2 d). Memory: one block of at most
    ``_BLOCK_ELEMENTS`` logits beyond the inputs and the output. Written against the array
    API (NumPy, CuPy, array_api_strict); torch tensors take it written in torch (``_torch.py``),
    unless this is called directly (then autograd keeps every block's weights).
    """
    xp = array_api_compat.array_namespace(Q)
    device = array_api_compat.device(Q)
    n, d = Q.shape
    d_v = V1.shape[1]
    w1, w2 = min(window[0], n), min(window[1], n)  # a window beyond the start: plain causal
    budget = _exact._BLOCK_ELEMENTS
    block_q = max(1, min(n, w1, w2, budget // min(n, 2 * w2)))
    blocks = []
    for q0 in range(0, n, block_q):
        q1 = min(n, q0 + block_q)
        rows = np.arange(q0, q1)
        j_lo, k_lo = max(0, q0 - w1 + 1), max(0, q0 - w2 + 1)
        k_index = np.arange(k_lo, q1)
        # each query's k window, (bq, nk): built on the host from the bounds, sent once
        k_allowed = xp.asarray((k_index[None, :] <= rows[:, None])
                               & (k_index[None, :] > rows[:, None] - w2), device=device)
        K2b, V2b = K2[k_lo:q1, :], V2[k_lo:q1, :]
        n_k = q1 - k_lo
        block_j = max(1, budget // ((q1 - q0) * n_k))
        sq = scale * Q[q0:q1, :]
        run_max = numerator = denominator = None
        for j0 in range(j_lo, q1, block_j):
            j1 = min(q1, j0 + block_j)
            j_index = np.arange(j0, j1)
            j_allowed = xp.asarray((j_index[None, :] <= rows[:, None])
                                   & (j_index[None, :] > rows[:, None] - w1), device=device)
            rows_block = xp.reshape(sq[:, None, :] * K1[j0:j1, :][None, :, :], (-1, d))
            logits = xp.reshape(rows_block @ K2b.T, (q1 - q0, j1 - j0, n_k))
            allowed = j_allowed[:, :, None] & k_allowed[:, None, :]
            logits = xp.where(allowed, logits, -xp.inf)
            block_max = xp.max(logits, axis=(1, 2))
            new_max = block_max if run_max is None else xp.maximum(run_max, block_max)
            # a query with no pair in its window so far is shifted by 0: no -inf - (-inf)
            safe_max = xp.where(xp.isfinite(new_max), new_max, xp.zeros_like(new_max))
            weights = xp.exp(logits - safe_max[:, None, None])
            inner = xp.reshape(xp.reshape(weights, (-1, n_k)) @ V2b, (q1 - q0, j1 - j0, d_v))
            contribution = xp.sum(inner * V1[j0:j1, :][None, :, :], axis=1)
            mass = xp.sum(weights, axis=(1, 2))
            if run_max is None:
                numerator, denominator = contribution, mass
            else:
                rescale = xp.exp(run_max - safe_max)
                numerator = rescale[:, None] * numerator + contribution
                denominator = rescale * denominator + mass
            run_max = new_max
        # every query has the pair (i, i) in its window: the denominator is positive
        blocks.append(numerator / denominator[:, None])
    return xp.concat(blocks, axis=0)

"""Numba kernels: exact order-t attention, parallel over queries, online max shift."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, parallel=True, fastmath=False)
def _exact_kernel(Q, K, V, scale, causal):  # pragma: no cover - compiled
    n_q, d = Q.shape
    n_pairs, n_k, _ = K.shape
    last = n_pairs - 1
    n_outer = n_k**last
    out = np.empty((n_q, d), dtype=Q.dtype)
    for i in numba.prange(n_q):
        logits = np.empty(n_k, dtype=np.float64)
        qk = np.empty(d, dtype=np.float64)
        vprod = np.empty(d, dtype=np.float64)
        inner = np.empty(d, dtype=np.float64)
        numerator = np.zeros(d, dtype=np.float64)
        denominator = 0.0
        run_max = -np.inf
        limit = i + 1 if causal else n_k
        for o in range(n_outer):
            # Decode o into (j_1, ..., j_{t-2}) (j_1 fastest, as in the array code) and form
            # s q_i * K1[j_1] * ... and V1[j_1] * ... once per tuple, not once per last key.
            for l in range(d):
                qk[l] = scale * Q[i, l]
                vprod[l] = 1.0
            rest = o
            future = False
            for m in range(last):
                j = rest % n_k
                rest //= n_k
                if causal and j > i:
                    future = True
                    break
                for l in range(d):
                    qk[l] *= K[m, j, l]
                    vprod[l] *= V[m, j, l]
            if future:
                continue
            # Two passes over the last key: the maximum first, so every exp is <= 1.
            block_max = -np.inf
            for k in range(limit):
                x = 0.0
                for l in range(d):
                    x += qk[l] * K[last, k, l]
                logits[k] = x
                if x > block_max:
                    block_max = x
            for l in range(d):
                inner[l] = 0.0
            block_sum = 0.0
            for k in range(limit):
                w = math.exp(logits[k] - block_max)
                block_sum += w
                for l in range(d):
                    inner[l] += w * V[last, k, l]
            if block_max > run_max:
                factor = math.exp(run_max - block_max) if run_max > -np.inf else 0.0
                for l in range(d):
                    numerator[l] = numerator[l] * factor + vprod[l] * inner[l]
                denominator = denominator * factor + block_sum
                run_max = block_max
            else:
                factor = math.exp(block_max - run_max)
                for l in range(d):
                    numerator[l] += factor * vprod[l] * inner[l]
                denominator += factor * block_sum
        for l in range(d):
            out[i, l] = numerator[l] / denominator
    return out


def exact_attention(Q, keys, values, scale, causal):
    """Exact order-t attention on the CPU (see :func:`sci.tensor_attention.higher_order_attention`).

    The keys and values are stacked into ``(t - 1, m, d)`` arrays (a copy of the inputs, no
    more) so that one compiled kernel serves every order.
    """
    K = np.ascontiguousarray(np.stack(keys))
    V = np.ascontiguousarray(np.stack(values))
    return _exact_kernel(np.ascontiguousarray(Q), K, V, float(scale), bool(causal))

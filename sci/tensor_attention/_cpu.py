"""Numba kernels: exact order-t attention, parallel over queries, online max shift."""

from __future__ import annotations

import math

import numba
import numpy as np

# exp(x) for x <= 0 as plain arithmetic that LLVM vectorises (libm's exp does not): Cody-Waite
# reduction x = k ln2 + r, |r| <= ln2/2, a degree-13 Taylor polynomial for e^r (truncation
# 0.35^14/14! < 2e-17), and 2^k assembled in the exponent bits. Logits below -700 are clamped:
# their weights (< 1e-304 against the maximum's 1) cannot change a sum.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_C = tuple(1.0 / math.factorial(j) for j in range(14))
_PARALLEL_WORK = 1 << 22  # multiply-adds below which the kernel runs on one thread
# No "ninf": the running maximum starts at -inf and must compare as such.
_FLAGS = {"nnan", "nsz", "contract", "reassoc", "arcp"}


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def _exact_kernel(Q, K, V, KT, VT, scale, causal):  # pragma: no cover - compiled
    n_q, d = Q.shape
    n_pairs, n_k, _ = K.shape
    last = n_pairs - 1
    n_outer = n_k**last
    out = np.empty((n_q, d), dtype=Q.dtype)
    for i in numba.prange(n_q):
        logits = np.empty(n_k, dtype=np.float64)
        weights = np.empty(n_k, dtype=np.float64)
        powers = np.empty(n_k, dtype=np.int64)
        qk = np.empty(d, dtype=np.float64)
        vprod = np.empty(d, dtype=np.float64)
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
            # Logits over the last key (transposed copies make every loop unit-stride), then
            # their maximum, so every weight is exp(<= 0) <= 1.
            c = qk[0]
            for k in range(limit):
                logits[k] = c * KT[0, k]
            for l in range(1, d):
                c = qk[l]
                for k in range(limit):
                    logits[k] += c * KT[l, k]
            block_max = -np.inf
            for k in range(limit):
                x = logits[k]
                block_max = block_max if block_max >= x else x
            # Written out here: as a called helper, LLVM no longer vectorises it.
            for k in range(limit):
                x = max(logits[k] - block_max, -700.0)
                kk = math.floor(x * _LOG2E + 0.5)
                r = (x - kk * _LN2_HI) - kk * _LN2_LO
                p = _C[13] * r + _C[12]
                p = p * r + _C[11]
                p = p * r + _C[10]
                p = p * r + _C[9]
                p = p * r + _C[8]
                p = p * r + _C[7]
                p = p * r + _C[6]
                p = p * r + _C[5]
                p = p * r + _C[4]
                p = p * r + _C[3]
                p = p * r + _C[2]
                p = p * r + 1.0
                weights[k] = p * r + 1.0
                powers[k] = (np.int64(kk) + 1023) << 52
            two_to_k = powers.view(np.float64)
            block_sum = 0.0
            for k in range(limit):
                w = weights[k] * two_to_k[k]
                weights[k] = w
                block_sum += w
            if block_max > run_max:
                factor = math.exp(run_max - block_max) if run_max > -np.inf else 0.0
                run_max = block_max
                gain = 1.0
            else:
                factor = 1.0
                gain = math.exp(block_max - run_max)
            denominator = denominator * factor + gain * block_sum
            for l in range(d):
                acc = 0.0
                for k in range(limit):
                    acc += weights[k] * VT[l, k]
                numerator[l] = numerator[l] * factor + gain * vprod[l] * acc
        for l in range(d):
            out[i, l] = numerator[l] / denominator
    return out


def exact_attention(Q, keys, values, scale, causal):
    """Exact order-t attention on the CPU (see :func:`sci.tensor_attention.higher_order_attention`).

    The keys and values are stacked into ``(t - 1, m, d)`` arrays, and the last ones
    transposed (copies of the inputs, no more), so that one compiled kernel serves every order.
    """
    K = np.ascontiguousarray(np.stack(keys))
    V = np.ascontiguousarray(np.stack(values))
    KT = np.ascontiguousarray(keys[-1].T, dtype=np.float64)
    VT = np.ascontiguousarray(values[-1].T, dtype=np.float64)
    args = (np.ascontiguousarray(Q), K, V, KT, VT, float(scale), bool(causal))
    work = Q.shape[0] * K.shape[1] ** K.shape[0] * Q.shape[1]
    if work >= _PARALLEL_WORK:
        return _exact_kernel(*args)
    # Small problems: waking the thread team costs more than the work (about 10 ms per call on
    # a loaded machine, against 0.15 ms serial at n = 32), so run on this thread alone.
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return _exact_kernel(*args)
    finally:
        numba.set_num_threads(threads)

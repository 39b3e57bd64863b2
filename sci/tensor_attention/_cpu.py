"""Numba kernels: exact order-t attention, parallel over queries, one fused pass per key tuple.

Per query ``i`` and tuple ``(j_1, ..., j_{t-2})`` of the first keys, one loop over the last key
``k`` forms the logit, its exponential and the contributions to the sum and to ``d`` numerators,
all in registers (no buffer) and vectorised by LLVM. The shift that keeps the exponentials in
range is an upper bound of the logits known before the loop (no separate max pass):
``b = sum_l max(c_l hi_l, c_l lo_l)`` with ``c = s q_i * K1[j_1] * ...`` and ``hi``/``lo`` the
column maxima/minima of the last keys. Should ``b`` overshoot the true maximum by so much that
every weight is below 2^-500, that tuple is done again with the exact maximum.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_PARALLEL_WORK = 1 << 22  # multiply-adds below which the kernel runs on one thread
# "reassoc" lets LLVM vectorise the sums; the steps of exp whose rounding matters are written
# with the strict operations below, which no fast-math flag can rewrite.
# No "ninf": the running shift starts at -inf and must compare as such.
_FLAGS = {"nnan", "nsz", "contract", "reassoc", "arcp"}
_LANES = 4  # the feature dimension is padded to a multiple of 4 (zero columns)


# Numba adds the fast-math flags to every floating-point operation that has none. The steps of
# exp whose rounding matters get the flag "contract" alone: LLVM may fuse a * b + c into one FMA
# (more accurate) but not reassociate, so Cody-Waite's two-part reduction and the magic-number
# rounding are kept exactly as written.
@intrinsic
def _mul_add(typingctx, a, b, c):
    """a * b + c, fused into one FMA where the CPU has it, never reassociated."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        product = builder.fmul(args[0], args[1], flags=("contract",))
        return builder.fadd(product, args[2], flags=("contract",))

    return sig, codegen


@intrinsic
def _strict_sub(typingctx, a, b):
    """a - b, never reassociated, so that (y + C) - C is not folded to y."""
    sig = types.float64(types.float64, types.float64)

    def codegen(context, builder, signature, args):
        return builder.fsub(args[0], args[1], flags=("contract",))

    return sig, codegen


@intrinsic
def _bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _from_bits(typingctx, n):
    """The float64 whose IEEE-754 bits are the int64 ``n``."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


# e^x = 2^k e^r with k = round(x / ln 2) and r = x - k ln 2 (Cody-Waite: ln 2 = hi + lo, hi with
# trailing zeros so that k hi is exact), |r| <= ln(2)/2. Adding 1.5 * 2^52 + 54 rounds x / ln 2 to
# an integer held in the low mantissa bits, so k + 54 sits in the bits of the sum and shifting it
# by 52 puts it in the exponent field. e^r is a polynomial of degree 11 (near-minimax for the
# relative error on |r| <= ln(2)/2, coefficients in _EXP_POLY; its error is below 1e-17, the
# evaluation's rounding gives the result's ~1 ulp). The result carries a factor 2^54: it stays
# normal down to x = -745.2 (below which e^x rounds to 0 in float64), and the factor cancels in
# numerator / denominator.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_EXP_BIAS = 54
_MAGIC = 6755399441055744.0 + _EXP_BIAS  # 1.5 * 2^52 + 54
_X_MIN = -745.2
# minimax-like coefficients c_j of e^r ~ sum_j c_j r^j, j = 0..11 (c_0 = c_1 = 1 exactly)
_EXP_POLY = (
    1.0,
    1.0000000000000007,
    0.5000000000000006,
    0.16666666666657262,
    0.04166666666657326,
    0.008333333337729513,
    0.0013888888932471666,
    0.000198412614728892,
    2.4801504344965644e-05,
    2.7564263364509983e-06,
    2.762636569581406e-07,
    2.29808880326243e-08,
)


@numba.njit(inline="always", fastmath=_FLAGS)
def _scaled_exp(x):  # pragma: no cover - compiled
    """2^54 e^x for x <= 0 (within a few ulp; x below -745.2 is taken as -745.2)."""
    x = max(x, _X_MIN)
    kk = _mul_add(x, _LOG2E, _MAGIC)
    k = _strict_sub(kk, _MAGIC)
    r = _mul_add(k, -_LN2_HI, x)
    r = _mul_add(k, -_LN2_LO, r)
    p = _mul_add(_EXP_POLY[11], r, _EXP_POLY[10])
    p = _mul_add(p, r, _EXP_POLY[9])
    p = _mul_add(p, r, _EXP_POLY[8])
    p = _mul_add(p, r, _EXP_POLY[7])
    p = _mul_add(p, r, _EXP_POLY[6])
    p = _mul_add(p, r, _EXP_POLY[5])
    p = _mul_add(p, r, _EXP_POLY[4])
    p = _mul_add(p, r, _EXP_POLY[3])
    p = _mul_add(p, r, _EXP_POLY[2])
    p = _mul_add(p, r, _EXP_POLY[1])
    p = _mul_add(p, r, 1.0)
    return _from_bits(_bits(p) + (_bits(kk) << 52))


@numba.njit(cache=True, fastmath=_FLAGS)
def scaled_exp(x):  # pragma: no cover - compiled
    """2^54 e^x elementwise for an array of x <= 0 (the kernel's exponential, for tests)."""
    out = np.empty_like(x)
    for k in range(x.size):
        out[k] = _scaled_exp(x[k])
    return out


@numba.njit(inline="always", fastmath=_FLAGS)
def _tuple_sums(c, KT, VT, partial, use_partial, shift, limit, acc):  # pragma: no cover
    """Sum over k < limit of w_k = 2^54 e^(logit_k - shift), and of w_k VT[0:4, k] into acc.

    ``logit_k = partial[k] + sum_{l < 4} c_l KT[l, k]`` (``partial`` holds the columns beyond the
    first four, when there are any). The weights are written to ``partial`` for the numerators
    of those columns. Returns the sum of the weights.
    """
    c0, c1, c2, c3 = c[0], c[1], c[2], c[3]
    total = 0.0
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    if use_partial:
        for k in range(limit):
            x = partial[k] - shift + c0 * KT[0, k] + c1 * KT[1, k] + c2 * KT[2, k]
            w = _scaled_exp(x + c3 * KT[3, k])
            partial[k] = w
            total += w
            a0 += w * VT[0, k]
            a1 += w * VT[1, k]
            a2 += w * VT[2, k]
            a3 += w * VT[3, k]
    else:
        for k in range(limit):
            x = c0 * KT[0, k] - shift + c1 * KT[1, k] + c2 * KT[2, k]
            w = _scaled_exp(x + c3 * KT[3, k])
            total += w
            a0 += w * VT[0, k]
            a1 += w * VT[1, k]
            a2 += w * VT[2, k]
            a3 += w * VT[3, k]
    acc[0] = a0
    acc[1] = a1
    acc[2] = a2
    acc[3] = a3
    return total


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def _exact_kernel(Q, K, V, KT, VT, scale, causal):  # pragma: no cover - compiled
    n_q, d = Q.shape
    n_pairs, n_k, _ = K.shape
    dp = KT.shape[0]  # d rounded up to a multiple of 4; KT, VT zero beyond row d
    last = n_pairs - 1
    n_outer = n_k**last
    out = np.empty((n_q, d), dtype=Q.dtype)
    for i in numba.prange(n_q):
        c = np.zeros(dp, dtype=np.float64)
        vprod = np.empty(d, dtype=np.float64)
        hi = np.empty(dp, dtype=np.float64)
        lo = np.empty(dp, dtype=np.float64)
        acc = np.empty(dp, dtype=np.float64)
        partial = np.empty(n_k if dp > _LANES else 1, dtype=np.float64)
        numerator = np.zeros(d, dtype=np.float64)
        denominator = 0.0
        run_shift = -np.inf
        limit = i + 1 if causal else n_k
        for l in range(dp):
            h = KT[l, 0]
            m = KT[l, 0]
            for k in range(1, limit):
                h = max(h, KT[l, k])
                m = min(m, KT[l, k])
            hi[l] = h
            lo[l] = m
        for o in range(n_outer):
            # Decode o into (j_1, ..., j_{t-2}) (j_1 fastest, as in the array code) and form
            # s q_i * K1[j_1] * ... and V1[j_1] * ... once per tuple, not once per last key.
            for l in range(d):
                c[l] = scale * Q[i, l]
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
                    c[l] *= K[m, j, l]
                    vprod[l] *= V[m, j, l]
            if future:
                continue
            # An upper bound of c . K_last[k] over k < limit: every weight is e^(<= 0) <= 1.
            shift = 0.0
            for l in range(d):
                shift += max(c[l] * hi[l], c[l] * lo[l])
            for attempt in range(2):
                if dp > _LANES:
                    for k in range(limit):
                        partial[k] = 0.0
                    for l in range(_LANES, dp, _LANES):
                        for k in range(limit):
                            partial[k] += (c[l] * KT[l, k] + c[l + 1] * KT[l + 1, k]) + (
                                c[l + 2] * KT[l + 2, k] + c[l + 3] * KT[l + 3, k])
                total = _tuple_sums(c, KT, VT, partial, dp > _LANES, shift, limit, acc)
                if total >= 2.0 ** (_EXP_BIAS - 500) or attempt == 1:
                    break
                # The bound overshot the maximum by > 300: shift by the maximum itself.
                best = -np.inf
                for k in range(limit):
                    x = 0.0
                    for l in range(dp):
                        x += c[l] * KT[l, k]
                    best = max(best, x)
                shift = best
            for l in range(_LANES, dp, _LANES):
                for q in range(_LANES):
                    a = 0.0
                    for k in range(limit):
                        a += partial[k] * VT[l + q, k]
                    acc[l + q] = a
            if shift > run_shift:
                factor = math.exp(run_shift - shift) if run_shift > -np.inf else 0.0
                run_shift = shift
                gain = 1.0
            else:
                factor = 1.0
                gain = math.exp(shift - run_shift)
            denominator = denominator * factor + gain * total
            for l in range(d):
                numerator[l] = numerator[l] * factor + gain * vprod[l] * acc[l]
        for l in range(d):
            out[i, l] = numerator[l] / denominator
    return out


def exact_attention(Q, keys, values, scale, causal):
    """Exact order-t attention on the CPU (see :func:`sci.tensor_attention.higher_order_attention`).

    The keys and values are stacked into ``(t - 1, m, d)`` arrays, and the last ones
    transposed and padded with zero rows to a multiple of 4 (copies of the inputs, no more), so
    that one compiled kernel serves every order and every ``d``.
    """
    K = np.ascontiguousarray(np.stack(keys))
    V = np.ascontiguousarray(np.stack(values))
    n_k, d = keys[-1].shape
    padded = -(-d // _LANES) * _LANES
    KT = np.zeros((padded, n_k), dtype=np.float64)
    VT = np.zeros((padded, n_k), dtype=np.float64)
    KT[:d] = keys[-1].T
    VT[:d] = values[-1].T
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

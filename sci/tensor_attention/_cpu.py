"""Numba kernel: exact order-t attention, parallel over queries, one fused pass per key tuple.

Per query ``i`` and tuple ``(j_1, ..., j_{t-2})`` of the first keys, one loop over the last key
``k`` forms the logit, its exponential and its contributions to the sum and to the numerators,
all in registers (no buffer), vectorised by LLVM (8 float64 lanes with AVX-512). Per logit that
is d multiply-adds for the logit, 11 for the exponential (a polynomial; the rest of it is
additions and integer operations) and d for the numerators: with d = 4, 19 vector multiply-adds
per 8 logits.

The shift that keeps the exponentials in range is fixed per query before any of them is formed
(no max pass, no rescaling): the largest over the tuples of the bound
``sum_l max(c_l hi_l, c_l lo_l) >= c . K_last[k]``, with ``c = s q_i * K1[j_1] * ...`` and
``hi``/``lo`` the column maxima/minima of the last keys. Should it overshoot the largest logit
so much that the weights fall out of the normal range (huge logits), the query is summed again
with the largest logit itself as the shift.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_PARALLEL_WORK = 1 << 22  # multiply-adds below which the kernel runs on one thread
# "reassoc" lets LLVM vectorise the sums; the steps of exp whose rounding matters are written
# with the strict operations below, which no fast-math flag can rewrite.
# No "ninf": the shift starts at -inf and must compare as such.
_FLAGS = {"nnan", "nsz", "contract", "reassoc", "arcp"}
_LANES = 4  # the feature dimension is padded to a multiple of 4 (zero columns)


# Numba adds the fast-math flags to every floating-point operation that has none. The steps of
# exp whose rounding matters get the flag "contract" alone: LLVM may fuse a * b + c into one FMA
# (more accurate) but not reassociate, so the magic-number rounding ((y + C) - C) and the exact
# reduction f = y - k are kept as written (no operand of theirs may be a negation, which
# would carry the flags).
@intrinsic
def _mul_add(typingctx, a, b, c):
    """a * b + c, fused into one FMA where the CPU has it, never reassociated."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        product = builder.fmul(args[0], args[1], flags=("contract",))
        return builder.fadd(product, args[2], flags=("contract",))

    return sig, codegen


@intrinsic
def _strict_add(typingctx, a, b):
    """a + b, never reassociated."""
    sig = types.float64(types.float64, types.float64)

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1], flags=("contract",))

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


# The kernel works in base 2: the logits are formed from s log2(e) q_i (no extra operation) and
# the weights are 2^y, y = (logit - shift) log2(e) <= 0. Then k = round(y) and f = y - k take
# three additions and no multiplication (f is exact): adding 1.5 * 2^52 + 54 rounds y to an
# integer held in the low mantissa bits, so that k + 54 sits in the bits of the sum and a shift
# by 52 puts it in the exponent field. 2^f, |f| <= 1/2, is a polynomial of degree 11 (minimax for
# the relative error, error 4e-17 with its coefficients rounded to float64; the evaluation's
# rounding makes the result's ~1 ulp). The result carries a factor 2^54 so that it stays normal
# down to y = -1075 (below which 2^y rounds to 0 in float64); the factor cancels in
# numerator / denominator. Against e^x formed directly (Cody-Waite), this saves three of the
# 22 multiply-adds per logit: the rounding of the product by log2(e) is one more rounding of
# the same size as those of forming the logit itself.
_EXP_BIAS = 54
_MAGIC = 6755399441055744.0 + _EXP_BIAS  # 1.5 * 2^52 + 54
_Y_MIN = -1075.0
LOG2E = 1.4426950408889634
# c_j of 2^f ~ sum_j c_j f^j, j = 0..11, Remez on |f| <= 1/2 with c_0 = 1
_EXP2_POLY = (
    1.0,
    0.6931471805599457,
    0.24022650695910097,
    0.05550410866479034,
    0.009618129107606968,
    0.0013333558153449773,
    0.00015403530441630424,
    1.52527273787136e-05,
    1.3215442639820798e-06,
    1.0180649227640521e-07,
    7.0725775116845995e-09,
    4.077995024654674e-10,
)


@numba.njit(inline="always", fastmath=_FLAGS)
def _scaled_exp2(y):  # pragma: no cover - compiled
    """2^54 2^y for y <= 0 (within ~1 ulp; y below -1075 is taken as -1075)."""
    y = max(y, _Y_MIN)
    kk = _strict_add(y, _MAGIC)
    f = _strict_sub(y, _strict_sub(kk, _MAGIC))
    p = _mul_add(_EXP2_POLY[11], f, _EXP2_POLY[10])
    p = _mul_add(p, f, _EXP2_POLY[9])
    p = _mul_add(p, f, _EXP2_POLY[8])
    p = _mul_add(p, f, _EXP2_POLY[7])
    p = _mul_add(p, f, _EXP2_POLY[6])
    p = _mul_add(p, f, _EXP2_POLY[5])
    p = _mul_add(p, f, _EXP2_POLY[4])
    p = _mul_add(p, f, _EXP2_POLY[3])
    p = _mul_add(p, f, _EXP2_POLY[2])
    p = _mul_add(p, f, _EXP2_POLY[1])
    p = _mul_add(p, f, 1.0)
    return _from_bits(_bits(p) + (_bits(kk) << 52))


@numba.njit(cache=True, fastmath=_FLAGS)
def scaled_exp2(y):  # pragma: no cover - compiled
    """2^54 2^y elementwise for an array of y <= 0 (the kernel's exponential, for tests)."""
    out = np.empty_like(y)
    for k in range(y.size):
        out[k] = _scaled_exp2(y[k])
    return out


@numba.njit(inline="always", fastmath=_FLAGS)
def _tuple_sums(c, KT, VT, partial, use_partial, shift, limit, acc):  # pragma: no cover
    """Sum over k < limit of w_k = 2^54 2^(logit_k - shift), and of w_k VT[0:4, k] into acc.

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
            w = _scaled_exp2(x + c3 * KT[3, k])
            partial[k] = w
            total += w
            a0 += w * VT[0, k]
            a1 += w * VT[1, k]
            a2 += w * VT[2, k]
            a3 += w * VT[3, k]
    else:
        for k in range(limit):
            x = c0 * KT[0, k] - shift + c1 * KT[1, k] + c2 * KT[2, k]
            w = _scaled_exp2(x + c3 * KT[3, k])
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


@numba.njit(inline="always", fastmath=_FLAGS)
def _tuple_factors(o, i, Q, K, V, scale2, causal, c, vprod):  # pragma: no cover - compiled
    """Form c = s log2(e) q_i * K1[j_1] * ... and V1[j_1] * ... for the tuple number ``o``.

    ``o`` runs over ``(j_1, ..., j_{t-2})`` in mixed radix (``j_1`` fastest, as in the array
    code). Returns False, leaving c and vprod incomplete, for a tuple in the causal future.
    """
    d = Q.shape[1]
    n_k = K.shape[1]
    for l in range(d):
        c[l] = scale2 * Q[i, l]
        vprod[l] = 1.0
    rest = o
    for m in range(K.shape[0] - 1):
        j = rest % n_k
        rest //= n_k
        if causal and j > i:
            return False
        for l in range(d):
            c[l] *= K[m, j, l]
            vprod[l] *= V[m, j, l]
    return True


@numba.njit(fastmath=_FLAGS)
def _attend_query(i, Q, K, V, KT, VT, scale2, causal, out):  # pragma: no cover - compiled
    """Row ``i`` of the output: the per-query body of :func:`_exact_kernel`.

    A function of its own, not the body of the ``prange`` loop: Numba's parfor pass looks for
    reductions in a loop body, and on Python 3.12+ bytecode it fails on the nested loops that
    carry ``shift`` and ``denominator`` ("unexpected cycle in lookup()"). Called from the loop,
    the body is opaque to that pass; the call costs nothing next to a query's n^(t-1) logits.
    """
    d = Q.shape[1]
    n_pairs, n_k, _ = K.shape
    dp = KT.shape[0]  # d rounded up to a multiple of 4; KT, VT zero beyond row d
    n_outer = n_k ** (n_pairs - 1)
    c = np.zeros(dp, dtype=np.float64)
    vprod = np.empty(d, dtype=np.float64)
    hi = np.empty(dp, dtype=np.float64)
    lo = np.empty(dp, dtype=np.float64)
    acc = np.empty(dp, dtype=np.float64)
    partial = np.empty(n_k if dp > _LANES else 1, dtype=np.float64)
    numerator = np.empty(d, dtype=np.float64)
    limit = i + 1 if causal else n_k
    for l in range(dp):
        h = KT[l, 0]
        m = KT[l, 0]
        for k in range(1, limit):
            h = max(h, KT[l, k])
            m = min(m, KT[l, k])
        hi[l] = h
        lo[l] = m
    # One shift for the whole query, known before any exponential: the largest over the
    # tuples of the bound sum_l max(c_l hi_l, c_l lo_l) of c . K_last[k]. Every weight is
    # then 2^(<= 0) and no partial sum is ever rescaled.
    shift = -np.inf
    for o in range(n_outer):
        if _tuple_factors(o, i, Q, K, V, scale2, causal, c, vprod):
            bound = 0.0
            for l in range(d):
                bound += max(c[l] * hi[l], c[l] * lo[l])
            shift = max(shift, bound)
    denominator = 0.0
    for attempt in range(2):
        denominator = 0.0
        for l in range(d):
            numerator[l] = 0.0
        for o in range(n_outer):
            if not _tuple_factors(o, i, Q, K, V, scale2, causal, c, vprod):
                continue
            if dp > _LANES:  # the columns beyond the first four, 4 at a time
                for k in range(limit):
                    partial[k] = 0.0
                for l in range(_LANES, dp, _LANES):
                    for k in range(limit):
                        partial[k] += (c[l] * KT[l, k] + c[l + 1] * KT[l + 1, k]) + (
                            c[l + 2] * KT[l + 2, k] + c[l + 3] * KT[l + 3, k])
            total = _tuple_sums(c, KT, VT, partial, dp > _LANES, shift, limit, acc)
            for l in range(_LANES, dp, _LANES):
                for q in range(_LANES):
                    a = 0.0
                    for k in range(limit):
                        a += partial[k] * VT[l + q, k]
                    acc[l + q] = a
            denominator += total
            for l in range(d):
                numerator[l] += vprod[l] * acc[l]
        # The sum is at most n^(t-1) times the largest weight: above 2^(54 - 600) the
        # largest is above 2^-670, and every weight within 2^-60 of it is a normal number.
        if denominator >= 2.0 ** (_EXP_BIAS - 600) or attempt == 1:
            break
        # The bound overshot the largest logit by more than ~600 (huge logits): shift by
        # the largest logit itself and sum again.
        shift = -np.inf
        for o in range(n_outer):
            if _tuple_factors(o, i, Q, K, V, scale2, causal, c, vprod):
                for k in range(limit):
                    x = 0.0
                    for l in range(dp):
                        x += c[l] * KT[l, k]
                    shift = max(shift, x)
    for l in range(d):
        out[i, l] = numerator[l] / denominator


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def _exact_kernel(Q, K, V, KT, VT, scale, causal):  # pragma: no cover - compiled
    scale2 = scale * LOG2E  # logits in base 2
    out = np.empty(Q.shape, dtype=Q.dtype)
    for i in numba.prange(Q.shape[0]):
        _attend_query(i, Q, K, V, KT, VT, scale2, causal, out)
    return out


def exact_attention(Q, keys, values, scale, causal):
    """Exact order-t attention on the CPU (see :func:`sci.tensor_attention.higher_order_attention`).

    The keys and values are stacked into ``(t - 1, m, d)`` arrays, and the last ones
    transposed and padded with zero rows to a multiple of 4 (copies of the inputs, no more), so
    that one compiled kernel serves every order and every ``d``.

    The kernel holds one width for the keys and the values. A value width ``d_v`` other than
    ``d`` is brought to ``w = max(d, d_v)`` by zero columns, which change nothing: zero
    columns of Q and the keys add exact zeros to every logit (and to the shift's bound), zero
    columns of the values give zero output columns, cut off at the end. The cost is that of
    width ``w`` on both sides, at most twice the ``d + d_v`` of the unpadded sums.
    """
    d, d_v = Q.shape[1], values[0].shape[1]
    if d_v != d:
        width = max(d, d_v)

        def padded_to_width(X):
            return np.pad(X, ((0, 0), (0, width - X.shape[1])))

        out = exact_attention(padded_to_width(Q), [padded_to_width(K) for K in keys],
                              [padded_to_width(V) for V in values], scale, causal)
        return out[:, :d_v]
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
        # Queries handed out one at a time, not in one block per thread: causal queries cost in
        # proportion to (i + 1)^(t-1), and on a shared machine a thread may be held up.
        chunk = numba.get_parallel_chunksize()
        numba.set_parallel_chunksize(1)
        try:
            return _exact_kernel(*args)
        finally:
            numba.set_parallel_chunksize(chunk)
    # Small problems: waking the thread team costs more than the work (about 10 ms per call on
    # a loaded machine, against 0.15 ms serial at n = 32), so run on this thread alone.
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return _exact_kernel(*args)
    finally:
        numba.set_num_threads(threads)

"""Exact attention for torch tensors: a ``torch.autograd.Function`` whose backward recomputes.

Torch tensors (CPU or CUDA) of :func:`~sci.tensor_attention.higher_order_attention` (and of
``softmax_attention``, ``tensor_attention``) come here from the array path (``_array.py``),
with or without ``requires_grad``. This module imports torch; it is imported on first use only,
so ``import sci`` never imports torch.

Forward: the blocked algorithm of ``_exact._exact_attention_xp`` in torch operations. Query
blocks x blocks of outer tuples ``O = (j_1, ..., j_{t-2})`` x all last keys ``j_{t-1}``, the
logit block formed by one matrix product, a running maximum per query (the online softmax),
causal blocks that lie wholly in the future skipped. Besides the output it keeps the
log-sum-exp of each query's logits, ``lse_i = log sum_J exp(L_iJ)`` (masked tuples excluded).

Backward (FlashAttention-2's, Dao 2023, arXiv:2307.08691, Algorithm 2, generalised to the
Kronecker keys): the saved tensors are the inputs, the output ``O`` and ``lse`` -- O(n d)
numbers beyond the inputs, never a weight. Each logit block is recomputed and its weights
``P = exp(L - lse)`` (zero where masked) formed again, then with ``D_i = dO_i . O_i``::

    dP_iJ = dO_i . (V_1[j_1] * ... * V_{t-1}[j_{t-1}])
    dS_iJ = P_iJ (dP_iJ - D_i)
    dQ_i  = s sum_J dS_iJ k_J,      k_J = K_1[j_1] * ... * K_{t-1}[j_{t-1}]  (elementwise)
    dk_J  = s sum_i dS_iJ Q_i,      dv_J = sum_i P_iJ dO_i

and the product rule sends ``dk_J`` to each factor: ``dK_m[j_m] += dk_J * prod_{m' != m}
K_{m'}[j_{m'}]`` (likewise for the values). ``k_J`` is split as ``k_O * K_{t-1}[j_{t-1}]``: the
last factor's gradient comes out of two matrix products per block, the outer factors' through
per-block sums over the queries scattered with ``index_add_``. The backward holds one block of
at most ``_exact._BLOCK_ELEMENTS`` weights (and its dS) at a time (on a CUDA device a block
sized from its free memory, ``_budget``), plus O(n d) accumulators: its memory is O(n d) like
the forward's, for every order t.

On a CUDA device with CuPy installed, the forward of rows up to 16 wide is the fused kernel of
``_gpu.py`` (no logit leaves the registers), reached through DLPack without a copy; it returns
the same ``lse``, so the backward is the same.

Windowed 2-simplicial attention (``tensor_attention(..., window=(w1, w2))``) has a Function
of its own, ``WindowedTensorAttention``, the same recomputing backward over the window's
blocks (formulas at its section below): saved are the inputs, the output and ``lse``, so its
backward memory is O(n d) too, never the n w1 w2 weights.

The causal polynomial method (``poly_attention`` and its kin with ``causal=True``) has one
too, ``CausalStreamedSums``: its streamed sums carry prefix sums and moments across the rows;
the Function saves them at segment boundaries only (at most n r numbers per key/value pair, r
the rank, instead of autograd's n r d_v) and its backward recomputes each segment's forward
with autograd on, walking the segments in reverse (details at its section below).

The backwards are themselves not differentiable (``once_differentiable``): a second derivative
of exact attention through torch raises rather than returning a wrong value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .._validation import chunk_length
from . import _exact

# The largest logit block on a CUDA device: 2^26 elements (512 MiB in float64), or what a
# sixteenth of its free memory holds (the block, its weights and dS in the backward). On the
# CPU a block stays in a core's cache (``_exact._BLOCK_ELEMENTS``); a GPU wants few, large
# launches instead (64K-element blocks issue ~10 kernels each: launch-bound).
_CUDA_BLOCK_ELEMENTS = 1 << 26


def _budget(like) -> int:
    """Logits one block may hold for tensors on ``like``'s device."""
    if like.device.type != "cuda":
        return _exact._BLOCK_ELEMENTS
    free, _ = torch.cuda.mem_get_info(like.device)
    return max(_exact._BLOCK_ELEMENTS,
               min(_CUDA_BLOCK_ELEMENTS, free // (16 * like.element_size())))


def _block_sizes(n_q: int, n_k: int, n_outer: int, like) -> tuple[int, int]:
    """Query-block and outer-tuple-block lengths: a logit block of at most the budget."""
    budget = _budget(like)
    block_q = chunk_length(n_q, n_k, budget=budget)
    block_o = chunk_length(n_outer, block_q * n_k, budget=budget)
    return block_q, block_o


def _outer_block(keys, values, o0: int, o1: int, n_k: int):
    """Rows ``o0:o1`` of K_1 ⊘ ... ⊘ K_{t-2} and of the values, the digit index tensors
    ``j_m(O)`` and, on the host, the largest digit of each tuple (for the causal mask and skips).

    The digits are computed twice, on the host (NumPy, for the skip decision: no device read)
    and on the device (torch, for the gathers: no host-to-device copy in the loop).
    """
    p = len(keys) - 1
    like = keys[-1]
    o = torch.arange(o0, o1, device=like.device)
    digits = [torch.div(o, n_k**m, rounding_mode="floor") % n_k for m in range(p)]
    k_rows = torch.ones((o1 - o0, like.shape[1]), dtype=like.dtype, device=like.device)
    v_rows = torch.ones((o1 - o0, values[-1].shape[1]), dtype=like.dtype, device=like.device)
    for m, j in enumerate(digits):
        k_rows = k_rows * keys[m].index_select(0, j)
        v_rows = v_rows * values[m].index_select(0, j)
    host = np.arange(o0, o1)
    largest_host = np.zeros(o1 - o0, dtype=np.int64)
    for m in range(p):
        largest_host = np.maximum(largest_host, (host // n_k**m) % n_k)
    largest = torch.zeros(o1 - o0, dtype=torch.long, device=like.device)
    for j in digits:
        largest = torch.maximum(largest, j)
    return k_rows, v_rows, digits, largest, int(largest_host.min())


def _mask_future(logits, largest, q0: int, q1: int, n_k: int) -> None:
    """Set to -inf, in place, the logits of a (bq, bo, n_k) block whose tuple has an index
    beyond the query's: two broadcast masks, (bq, bo, 1) for the outer tuples and (bq, 1, n_k)
    for the last key, so no block-sized boolean array is formed."""
    rows = torch.arange(q0, q1, device=largest.device)
    last = torch.arange(n_k, device=largest.device)
    logits.masked_fill_((largest[None, :] > rows[:, None])[:, :, None], -torch.inf)
    logits.masked_fill_((last[None, :] > rows[:, None])[:, None, :], -torch.inf)


def _fused_on_cuda(Q, keys, values, scale: float, causal: bool):
    """The CuPy kernels (``_gpu.py``: the per-thread fused kernel for narrow rows, the tiled
    tensor-core kernel for rows up to its width) for CUDA tensors, zero-copy through DLPack on
    torch's current stream: ``(out, lse)``, or None where neither applies (CPU tensors, rows
    wider than the tiled kernel's limit, CuPy not installed)."""
    if Q.device.type != "cuda":
        return None
    try:
        import cupy

        from . import _gpu
    except ImportError:  # no CuPy: the blocked torch code below serves CUDA tensors too
        return None
    stream = torch.cuda.current_stream(Q.device)
    with cupy.cuda.Device(Q.device.index), cupy.cuda.ExternalStream(stream.cuda_stream):
        Q_c, *kv = (cupy.from_dlpack(x.detach().contiguous()) for x in (Q, *keys, *values))
        done = _gpu.kernel_attention(Q_c, kv[: len(keys)], kv[len(keys):], scale, causal)
    if done is None:
        return None
    return torch.from_dlpack(done[0]), torch.from_dlpack(done[1])


def _forward(Q, keys, values, scale: float, causal: bool):
    """Attention and the per-query log-sum-exp of the (scaled, masked) logits."""
    fused = _fused_on_cuda(Q, keys, values, scale, causal)
    if fused is not None:
        return fused
    n_q, d = Q.shape
    n_k = keys[0].shape[0]
    d_v = values[0].shape[1]
    n_outer = n_k ** (len(keys) - 1)
    k_last, v_last = keys[-1], values[-1]
    block_q, block_o = _block_sizes(n_q, n_k, n_outer, Q)
    outer = [_outer_block(keys, values, o0, min(n_outer, o0 + block_o), n_k)
             for o0 in range(0, n_outer, block_o)] if n_outer <= block_o else None
    out = torch.empty((n_q, d_v), dtype=Q.dtype, device=Q.device)
    lse = torch.empty(n_q, dtype=Q.dtype, device=Q.device)
    for q0 in range(0, n_q, block_q):
        q1 = min(n_q, q0 + block_q)
        sq = scale * Q[q0:q1]
        run_max = torch.full((q1 - q0,), -torch.inf, dtype=Q.dtype, device=Q.device)
        numerator = torch.zeros((q1 - q0, d_v), dtype=Q.dtype, device=Q.device)
        denominator = torch.zeros(q1 - q0, dtype=Q.dtype, device=Q.device)
        for b, o0 in enumerate(range(0, n_outer, block_o)):
            o1 = min(n_outer, o0 + block_o)
            # one outer block (t = 2, or small n): formed once for every query block
            k_rows, v_rows, _, largest, smallest = (
                outer[b] if outer is not None else _outer_block(keys, values, o0, o1, n_k))
            if causal and smallest > q1 - 1:
                continue  # every tuple of this block lies in the future of every query
            # one 2-D product (a single BLAS call) rather than a stack of bq small ones
            rows_block = (sq[:, None, :] * k_rows[None, :, :]).reshape(-1, d)
            logits = (rows_block @ k_last.T).reshape(q1 - q0, o1 - o0, n_k)
            if causal:
                _mask_future(logits, largest, q0, q1, n_k)
            new_max = torch.maximum(run_max, logits.amax(dim=(1, 2)))
            # A query whose keys are all masked so far keeps max -inf; shift it by 0 instead
            # so that no -inf - (-inf) is ever formed.
            safe_max = torch.where(torch.isfinite(new_max), new_max, 0.0)
            weights = logits.sub_(safe_max[:, None, None]).exp_()  # in place: the one big array
            rescale = torch.exp(run_max - safe_max)
            inner = (weights.reshape(-1, n_k) @ v_last).reshape(q1 - q0, o1 - o0, d_v)
            numerator = rescale[:, None] * numerator + (inner * v_rows[None, :, :]).sum(dim=1)
            denominator = rescale * denominator + weights.sum(dim=(1, 2))
            run_max = new_max
        out[q0:q1] = numerator / denominator[:, None]
        lse[q0:q1] = torch.where(torch.isfinite(run_max), run_max, 0.0) + torch.log(denominator)
    return out, lse


def _scatter_product_rule(grad_rows, factors, digits, grads):
    """``grads[m][j_m(O)] += grad_rows[O] * prod_{m' != m} factors[m'][j_{m'}(O)]``.

    The product of the other factors is formed explicitly (no division: a factor may be 0).
    """
    gathered = [f.index_select(0, j) for f, j in zip(factors, digits, strict=True)]
    for m, j in enumerate(digits):
        others = grad_rows
        for mm, g in enumerate(gathered):
            if mm != m:
                others = others * g
        grads[m].index_add_(0, j, others)


def _backward(Q, keys, values, out, lse, grad_out, scale: float, causal: bool, needs):
    """dQ, dK_m, dV_m by recomputing each logit block (the module docstring has the formulas)."""
    n_q, d = Q.shape
    n_k = keys[0].shape[0]
    d_v = values[0].shape[1]
    p = len(keys)
    n_outer = n_k ** (p - 1)
    k_last, v_last = keys[-1], values[-1]
    block_q, block_o = _block_sizes(n_q, n_k, n_outer, Q)
    grad_q = torch.zeros_like(Q)
    grad_k = [torch.zeros_like(k) for k in keys]
    grad_v = [torch.zeros_like(v) for v in values]
    # D_i = dO_i . O_i = sum_J P_iJ dP_iJ: the softmax's correction, one number per query
    delta = (grad_out * out).sum(dim=1)
    # lse is finite for every query that attends to anything; a query with no key at all
    # (none exists after validation) gets lse = +inf here: weights exp(L - inf) = 0, not NaN
    lse = torch.where(torch.isfinite(lse), lse, torch.inf)
    want_k = any(needs[1 : 1 + p])
    want_v = any(needs[1 + p :])
    for o0 in range(0, n_outer, block_o):
        o1 = min(n_outer, o0 + block_o)
        k_rows, v_rows, digits, largest, smallest = _outer_block(keys, values, o0, o1, n_k)
        grad_k_rows = torch.zeros_like(k_rows)
        grad_v_rows = torch.zeros_like(v_rows)
        # causal: a query block before the block's earliest tuple sees none of it
        first_q = smallest if causal else 0
        for q0 in range(first_q - first_q % block_q, n_q, block_q):
            q1 = min(n_q, q0 + block_q)
            if causal and smallest > q1 - 1:
                continue
            sq = scale * Q[q0:q1]
            rows_block = (sq[:, None, :] * k_rows[None, :, :]).reshape(-1, d)  # s Q_i * k_O
            logits = rows_block @ k_last.T  # (bq bo, n_k)
            if causal:
                _mask_future(logits.view(q1 - q0, o1 - o0, n_k), largest, q0, q1, n_k)
            weights = logits.view(q1 - q0, o1 - o0, n_k).sub_(lse[q0:q1, None, None]).exp_()
            weights = weights.reshape(-1, n_k)  # P, (bq bo, n_k)
            dout = grad_out[q0:q1]
            dout_rows = (dout[:, None, :] * v_rows[None, :, :]).reshape(-1, d_v)  # dO_i * v_O
            # dS = P (dP - D), formed in the buffer of dP
            ds = (dout_rows @ v_last.T).view(q1 - q0, o1 - o0, n_k)
            ds.sub_(delta[q0:q1, None, None])
            ds = ds.reshape(-1, n_k).mul_(weights)
            if want_v:
                grad_v[-1] += weights.T @ dout_rows
                if p > 1:  # t = 2: the outer rows are ones, with no gradient to pass on
                    pv = (weights @ v_last).view(q1 - q0, o1 - o0, d_v)
                    grad_v_rows += (pv * dout[:, None, :]).sum(dim=0)
            if needs[0] or want_k:
                g = (ds @ k_last).view(q1 - q0, o1 - o0, d)  # sum_j dS_iOj K_last[j]
                if needs[0]:
                    grad_q[q0:q1] += scale * (g * k_rows[None, :, :]).sum(dim=1)
                if want_k:
                    grad_k[-1] += ds.T @ rows_block
                    if p > 1:
                        grad_k_rows += (g * sq[:, None, :]).sum(dim=0)
        if p > 1:
            if want_k:
                _scatter_product_rule(grad_k_rows, keys[:-1], digits, grad_k)
            if want_v:
                _scatter_product_rule(grad_v_rows, values[:-1], digits, grad_v)
    return grad_q, grad_k, grad_v


class ExactAttention(torch.autograd.Function):
    """Exact order-t attention with a recomputing backward (see the module docstring).

    ``apply(scale, causal, pairs, Q, K_1, ..., K_{t-1}, V_1, ..., V_{t-1})``. Saved for the
    backward: the inputs, the output and the per-query log-sum-exp -- no weight. Backward
    memory O(n d) beyond the inputs (one fixed-size block of recomputed weights at a time).
    Once differentiable: a double backward raises.
    """

    @staticmethod
    def forward(ctx, scale, causal, pairs, Q, *keys_values):
        keys, values = list(keys_values[:pairs]), list(keys_values[pairs:])
        out, lse = _forward(Q, keys, values, scale, causal)
        ctx.save_for_backward(Q, *keys, *values, out, lse)
        ctx.scale, ctx.causal, ctx.pairs = scale, causal, pairs
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        p = ctx.pairs
        Q, keys, values = saved[0], list(saved[1 : 1 + p]), list(saved[1 + p : 1 + 2 * p])
        out, lse = saved[-2], saved[-1]
        needs = ctx.needs_input_grad[3:]
        grad_q, grad_k, grad_v = _backward(Q, keys, values, out, lse, grad_out.contiguous(),
                                           ctx.scale, ctx.causal, needs)
        grads = [grad_q, *grad_k, *grad_v]
        return (None, None, None, *(g if need else None
                                    for g, need in zip(grads, needs, strict=True)))


def exact_attention(Q, keys, values, scale, causal):
    """The dispatch entry for torch tensors: the Function when a gradient is wanted, else the
    same forward without the autograd bookkeeping."""
    inputs = (Q, *keys, *values)
    if torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
        return ExactAttention.apply(float(scale), bool(causal), len(keys), *inputs)
    with torch.no_grad():
        return _forward(Q, keys, values, scale, causal)[0]


# ---------------------------------------------------------------------------------------------
# Windowed 2-simplicial attention (``tensor_attention(..., window=(w1, w2))``)
#
# Query i attends to the pairs (j, k) with i - w1 < j <= i and i - w2 < k <= i. Each query's
# windows are gathered as views (``unfold`` of the keys padded with w - 1 rows in front), so a
# block of bq queries forms exactly its bq w1 w2 logits by one batched product,
# (s Q_i * K1w_ia) K2w_ib^T, with no pair outside a window computed (blocks over the key ranges
# would compute up to four times as many and mask them). A query's window lies whole in its
# block, so each block's softmax is complete: no online rescaling. Slots before key 0 (the
# first w - 1 queries) are masked to -inf. The Function saves Q, K1, K2, V1, V2, the output
# and lse_i; the backward recomputes each block's weights P = exp(L - lse) and, with
# D_i = dO_i . O_i,
#
#     dP_iab = dO_i . (V1w_ia * V2w_ib),            dS_iab = P_iab (dP_iab - D_i)
#     dQ_i   = s sum_ab dS_iab K1w_ia * K2w_ib,     dK1w_ia = s sum_b dS_iab Q_i * K2w_ib
#     dK2w_ib = s sum_a dS_iab Q_i * K1w_ia,        dV1w_ia = sum_b P_iab dO_i * V2w_ib
#     dV2w_ib = sum_a P_iab dO_i * V1w_ia
#
# (the product rule over the pair (K1_j, K2_k) and (V1_j, V2_k)); the window gradients go back
# to the keys by the adjoint of ``unfold`` (``_unwindow``): a sum over the w windows holding
# a key, in a fixed order (deterministic, unlike atomic scatters). Work O(n w1 w2 (d + d_v)), as the
# forward's; memory one block of at most ``_exact._BLOCK_ELEMENTS`` weights (at least one
# query's w1 w2) and its dS, plus the gradients: O(n d) beyond the inputs.
# ---------------------------------------------------------------------------------------------


def _windows(X, w: int):
    """(n, w, width) view of X padded with w - 1 zero rows in front: row i is X[i-w+1 .. i]."""
    padded = torch.nn.functional.pad(X, (0, 0, w - 1, 0))
    return padded.unfold(0, w, 1).transpose(1, 2)


def _unwindow(grad_windows, w: int):
    """The adjoint of :func:`_windows` for a block of bq queries, in padded coordinates: row p
    gets the sum of the slots holding it, ``sum_a grad_windows[p - a, a]`` (bq + w - 1 rows).

    A strided view does it without a scatter (deterministic, unlike atomic adds): with the
    slots reversed and w - 1 zero rows on both sides, the slots of row p lie at rows p + a'
    of slot a', a constant stride along a'.
    """
    bq, _, width = grad_windows.shape
    padded = torch.nn.functional.pad(torch.flip(grad_windows, (1,)), (0, 0, 0, 0, w - 1, w - 1))
    diagonals = padded.as_strided((bq + w - 1, w, width), (w * width, w * width + width, 1))
    return diagonals.sum(dim=1)


def _window_blocks(n: int, w1: int, w2: int, like):
    """``(q0, q1)`` for each block of queries: at most ``_budget(like)`` logits (one query
    at least)."""
    block_q = max(1, min(n, _budget(like) // (w1 * w2)))
    for q0 in range(0, n, block_q):
        yield q0, min(n, q0 + block_q)


def _padding_mask(q0: int, q1: int, w1: int, w2: int, device):
    """(bq, w1, w2) booleans, True at the pairs with a slot before key 0, or None if the
    block has none (every query i >= w - 1)."""
    if q0 >= max(w1, w2) - 1:
        return None
    i = torch.arange(q0, q1, device=device)[:, None]
    before1 = i - w1 + 1 + torch.arange(w1, device=device)[None, :] < 0
    before2 = i - w2 + 1 + torch.arange(w2, device=device)[None, :] < 0
    return before1[:, :, None] | before2[:, None, :]


class _Windows:
    """The inputs' window views and the block logits, shared by the forward and backward."""

    def __init__(self, Q, K1, K2, V1, V2, scale: float, window):
        n = Q.shape[0]
        # a window longer than the sequence holds nothing more than the whole prefix
        self.w1, self.w2 = min(window[0], n), min(window[1], n)
        self.scale, self.n = scale, n
        self.sQ = scale * Q
        self.K1w, self.K2w = _windows(K1, self.w1), _windows(K2, self.w2)
        self.V1w, self.V2w = _windows(V1, self.w1), _windows(V2, self.w2)

    def logits(self, q0: int, q1: int):
        """(bq, w1, w2) masked logits of queries q0..q1 and the rows s Q_i * K1w_ia."""
        rows = self.sQ[q0:q1, None, :] * self.K1w[q0:q1]
        logits = torch.bmm(rows, self.K2w[q0:q1].transpose(1, 2))
        mask = _padding_mask(q0, q1, self.w1, self.w2, logits.device)
        if mask is not None:
            logits.masked_fill_(mask, -torch.inf)
        return logits, rows


def _windowed_forward(Q, K1, K2, V1, V2, scale: float, window):
    """Windowed attention and the per-query log-sum-exp of the window's scaled logits."""
    n = Q.shape[0]
    win = _Windows(Q, K1, K2, V1, V2, scale, window)
    out = torch.empty((n, V1.shape[1]), dtype=Q.dtype, device=Q.device)
    lse = torch.empty(n, dtype=Q.dtype, device=Q.device)
    for q0, q1 in _window_blocks(n, win.w1, win.w2, Q):
        logits, _ = win.logits(q0, q1)
        # every query has the pair (i, i): its largest logit is finite, its sum of weights
        # >= 1. One exponential per logit (logsumexp and then exp(L - lse) would take two).
        largest = logits.flatten(1).amax(dim=1)
        weights = logits.sub_(largest[:, None, None]).exp_()
        denominator = weights.flatten(1).sum(dim=1)
        inner = torch.bmm(weights, win.V2w[q0:q1])  # sum_b e_iab V2w_ib: (bq, w1, d_v)
        out[q0:q1] = (inner * win.V1w[q0:q1]).sum(dim=1) / denominator[:, None]
        lse[q0:q1] = largest + torch.log(denominator)
    return out, lse


def _windowed_backward(Q, K1, K2, V1, V2, out, lse, grad_out, scale: float, window, needs):
    """dQ, dK1, dK2, dV1, dV2 by recomputing each block of weights (formulas above)."""
    n = Q.shape[0]
    win = _Windows(Q, K1, K2, V1, V2, scale, window)
    w1, w2 = win.w1, win.w2
    grad_q = torch.zeros_like(Q)
    # the windows' gradients, in the padded coordinates of _windows (row p = key p - w + 1)
    grad_k1 = torch.zeros((n + w1 - 1, K1.shape[1]), dtype=K1.dtype, device=K1.device)
    grad_k2 = torch.zeros((n + w2 - 1, K2.shape[1]), dtype=K2.dtype, device=K2.device)
    grad_v1 = torch.zeros((n + w1 - 1, V1.shape[1]), dtype=V1.dtype, device=V1.device)
    grad_v2 = torch.zeros((n + w2 - 1, V2.shape[1]), dtype=V2.dtype, device=V2.device)
    delta = (grad_out * out).sum(dim=1)  # D_i = dO_i . O_i
    want_s = needs[0] or needs[1] or needs[2]  # a gradient through the logits
    for q0, q1 in _window_blocks(n, w1, w2, Q):
        logits, rows = win.logits(q0, q1)
        weights = logits.sub_(lse[q0:q1, None, None]).exp_()  # exp(-inf) = 0 on the padding
        dout = grad_out[q0:q1]
        dout_v1 = dout[:, None, :] * win.V1w[q0:q1]  # dO_i * V1w_ia: (bq, w1, d_v)
        if needs[4]:
            grad_v2[q0:q1 + w2 - 1] += _unwindow(torch.bmm(weights.transpose(1, 2), dout_v1),
                                                 w2)
        if needs[3]:
            inner = torch.bmm(weights, win.V2w[q0:q1])
            grad_v1[q0:q1 + w1 - 1] += _unwindow(inner * dout[:, None, :], w1)
        if not want_s:
            continue
        ds = torch.bmm(dout_v1, win.V2w[q0:q1].transpose(1, 2))  # dP, then dS in its buffer
        ds.sub_(delta[q0:q1, None, None]).mul_(weights)
        if needs[2]:  # rows = s Q_i * K1w_ia
            grad_k2[q0:q1 + w2 - 1] += _unwindow(torch.bmm(ds.transpose(1, 2), rows), w2)
        if needs[0] or needs[1]:
            g = torch.bmm(ds, win.K2w[q0:q1])  # sum_b dS_iab K2w_ib: (bq, w1, d)
            if needs[0]:
                grad_q[q0:q1] = scale * (g * win.K1w[q0:q1]).sum(dim=1)
            if needs[1]:
                grad_k1[q0:q1 + w1 - 1] += _unwindow(g * win.sQ[q0:q1, None, :], w1)
    return (grad_q, grad_k1[w1 - 1:], grad_k2[w2 - 1:], grad_v1[w1 - 1:], grad_v2[w2 - 1:])


class WindowedTensorAttention(torch.autograd.Function):
    """Windowed causal 2-simplicial attention with a recomputing backward.

    ``apply(scale, w1, w2, Q, K1, K2, V1, V2)``. Saved for the backward: the inputs, the output
    and the per-query log-sum-exp -- no weight (autograd through the blocked forward would keep
    every block's weights, O(n w1 w2) numbers). Backward memory O(n d) beyond the inputs; work
    O(n w1 w2 (d + d_v)), a small multiple of the forward's. Once differentiable.
    """

    @staticmethod
    def forward(ctx, scale, w1, w2, Q, K1, K2, V1, V2):
        out, lse = _windowed_forward(Q, K1, K2, V1, V2, scale, (w1, w2))
        ctx.save_for_backward(Q, K1, K2, V1, V2, out, lse)
        ctx.scale, ctx.window = scale, (w1, w2)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        Q, K1, K2, V1, V2, out, lse = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        grads = _windowed_backward(Q, K1, K2, V1, V2, out, lse, grad_out.contiguous(),
                                   ctx.scale, ctx.window, needs)
        return (None, None, None, *(g if need else None
                                    for g, need in zip(grads, needs, strict=True)))


def windowed_tensor_attention(Q, K1, K2, V1, V2, scale, window):
    """The windowed dispatch entry for torch tensors: the Function when a gradient is wanted,
    else the same forward without the autograd bookkeeping."""
    inputs = (Q, K1, K2, V1, V2)
    w1, w2 = int(window[0]), int(window[1])
    if torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
        return WindowedTensorAttention.apply(float(scale), w1, w2, *inputs)
    with torch.no_grad():
        return _windowed_forward(*inputs, scale, (w1, w2))[0]


# ---------------------------------------------------------------------------------------------
# Causal polynomial attention (the streamed sums of ``_polynomial``)
#
# The causal sums carry, across the rows, the prefix sums of the key factors and of their
# products with the values: C_m(i) = (sum_{j <= i} U_m[j], sum_{j <= i} U_m[j] V_m[j]^T), r and
# r d_v numbers per pair. Each chunk forms its rows' prefix moments, (chunk, r, d_v) per pair;
# autograd through that code keeps them all, O(n r d_v) numbers per pair. The Function instead
# cuts the rows into segments of L rows (a whole number of chunks, L >= d_v + 1) and saves the
# inputs and the carries at the segment boundaries only: at most (n / L) r (d_v + 1) <= n r
# numbers per pair. The backward walks the segments in reverse: it recomputes a segment's
# forward from its saved carry-in with autograd on (the same chunks, hence the same values) and
# asks autograd for the gradients of the segment's inputs and of its carry-in, given the
# gradients of its w, Y and of its carry-out (the carry-in gradient of the segment after it).
# Work: the forward's again plus autograd's backward of it (the backward takes about 4
# forwards: 3.8 in the tensor_attention benchmark's record); memory beyond the saved numbers:
# one segment's graph, a few L r d_v numbers per pair, the forward's chunk memory when
# chunk >= d_v + 1.
#
# The feature maps are functions of their rows alone: the polynomial (degree, coefficients,
# Chebyshev interval [-R, R]) and the random features' signs are constants chosen before the
# call, held fixed, so the recomputation gives the forward's factors.
# ---------------------------------------------------------------------------------------------


def _segment_length(chunk: int, d_v: int) -> int:
    """Rows between saved carries: the fewest whole chunks holding at least d_v + 1 rows, so
    that a carry, r (d_v + 1) numbers per pair, costs at most r numbers per row."""
    return chunk * -(-(d_v + 1) // chunk)


def _segments(n: int, length: int):
    return [(s0, min(n, s0 + length)) for s0 in range(0, n, length)]


class CausalStreamedSums(torch.autograd.Function):
    """The causal factored sums ``w``, ``Y`` of the polynomial method, with a backward that
    recomputes them segment by segment (see the section comment above).

    ``apply(xp, query_factor, key_factor, chunk, Q, K_1, ..., K_p, V_1, ..., V_p)`` returns
    ``(w, Y)`` (``key_factor`` maps the stacked keys, ``(p, rows, d) -> (p, rows, r)``). Saved
    for the backward: the inputs and the carries at the segment boundaries (the sums, ``(p, r)``,
    and the moments, ``(p, r, d_v)``), at most ``n r`` numbers per key/value pair beyond the
    inputs (r the rank). Once differentiable: a double backward raises.
    """

    @staticmethod
    def forward(ctx, xp, query_factor, key_factor, chunk, Q, *keys_values):
        from ._polynomial import causal_segment

        p = len(keys_values) // 2
        keys, values = list(keys_values[:p]), list(keys_values[p:])
        n, d_v = Q.shape[0], values[0].shape[1]
        carry = None  # (p, r, 1 + d_v): [sum_j U_m[j], sum_j U_m[j] V_m[j]^T]
        boundary_carries = []  # the carries into segments 1, 2, ...: (p, r) and (p, r, d_v)
        w_parts, y_parts = [], []
        for s0, s1 in _segments(n, _segment_length(chunk, d_v)):
            if s0 > 0:  # copies, not views that would keep a chunk's moments alive
                boundary_carries += [carry[..., 0].clone(), carry[..., 1:].clone()]
            w, Y, carry = causal_segment(
                xp, query_factor, key_factor, Q[s0:s1], [K[s0:s1] for K in keys],
                [V[s0:s1] for V in values], carry, chunk)
            w_parts.append(w)
            y_parts.append(Y)
        ctx.save_for_backward(Q, *keys, *values, *boundary_carries)
        ctx.xp, ctx.query_factor, ctx.key_factor, ctx.chunk = xp, query_factor, key_factor, chunk
        ctx.pairs = p
        if not w_parts:  # no rows
            return Q.new_zeros(0), Q.new_zeros((0, d_v))
        return torch.cat(w_parts), torch.cat(y_parts)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_w, grad_y):
        from ._polynomial import causal_segment

        p = ctx.pairs
        saved = ctx.saved_tensors
        inputs = saved[: 1 + 2 * p]
        boundary_carries = saved[1 + 2 * p :]
        needs = ctx.needs_input_grad[4:]
        want_carries = any(needs[1:])  # gradients through the carries reach keys and values
        n, d_v = inputs[0].shape[0], inputs[-1].shape[1]
        grads = [torch.zeros_like(x) if need else None for x, need in zip(inputs, needs,
                                                                          strict=True)]
        carry_out_grad = None  # of the carry out of the segment being processed
        segments = _segments(n, _segment_length(ctx.chunk, d_v))
        for b in reversed(range(len(segments))):
            s0, s1 = segments[b]
            with torch.enable_grad():
                rows = [x[s0:s1].detach().requires_grad_(need)
                        for x, need in zip(inputs, needs, strict=True)]
                carry_in = None
                if b > 0:  # a leaf: its gradient goes on to the segment before
                    sums, moments = boundary_carries[2 * b - 2], boundary_carries[2 * b - 1]
                    carry_in = torch.cat([sums[..., None], moments], dim=-1).detach()
                    carry_in.requires_grad_(want_carries)
                w, Y, carry_out = causal_segment(
                    ctx.xp, ctx.query_factor, ctx.key_factor, rows[0], rows[1 : 1 + p],
                    rows[1 + p :], carry_in, ctx.chunk)
            outputs = [w, Y]
            output_grads = [grad_w[s0:s1], grad_y[s0:s1]]
            if carry_out_grad is not None:
                outputs.append(carry_out)
                output_grads.append(carry_out_grad)
            wanted = [x for x in rows if x.requires_grad]
            if b > 0 and want_carries:
                wanted.append(carry_in)
            kept = [(o, g) for o, g in zip(outputs, output_grads, strict=True)
                    if isinstance(o, torch.Tensor) and o.requires_grad]
            if not wanted or not kept:
                continue
            got = list(torch.autograd.grad([o for o, _ in kept], wanted, [g for _, g in kept],
                                           allow_unused=True))
            for i, need in enumerate(needs):
                if need:
                    g = got.pop(0)
                    if g is not None:  # None: the rows do not enter (degree 0)
                        grads[i][s0:s1] += g
            if b > 0 and want_carries:
                carry_out_grad = torch.zeros_like(carry_in) if got[0] is None else got[0]
        return (None, None, None, None, *grads)


def poly_streamed_sums(xp, query_factor, key_factor, Q, keys, values, causal, chunk):
    """The streamed sums' dispatch entry for torch tensors: the recomputing Function for
    causal sums that need a gradient; else the array-API code (whose autograd graph, for the
    non-causal sums, keeps the factor matrices of every chunk: O(n r) numbers per pair)."""
    from ._polynomial import standard_streamed_sums

    inputs = (Q, *keys, *values)
    if causal and torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
        return CausalStreamedSums.apply(xp, query_factor, key_factor, int(chunk), *inputs)
    return standard_streamed_sums(xp, query_factor, key_factor, Q, keys, values, causal,
                                  chunk)

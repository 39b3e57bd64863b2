"""CuPy kernels (imported lazily): exact order-t attention, fused.

Logits never leave the registers: each CUDA thread takes a run of work items of one query (an
outer key tuple ``(j_1, ..., j_{t-2})`` and a slice of the last keys), forms their logits,
exponentials and weighted value sums with an online softmax, and writes its partial result
(its running maximum, mass and numerator: ``d_v + 2`` numbers). The partials of a query are
combined by :func:`sci.tensor_attention._array.combine_partials` (array code, tested on the
CPU legs); how the items are split among threads is :func:`sci.tensor_attention._array.fused_plan`
(pure Python). The kernel's text is in ``_gpu_source.py``, which the CPU tests compile for the
host (a C++ compiler, CUDA's thread indices stood in for) and with ``nvcc``, and run against
the dense oracle with that plan and combination. About
``_FUSED_THREADS`` threads run whatever ``n``: the kernel of the first GPU run gave one thread
to each query, 512 threads on a 132-multiprocessor chip at n = 512.

Widths above ``_FUSED_WIDTH`` (a thread holds 3 rows of doubles in registers) run
the GEMM-tiled array code instead (:func:`sci.tensor_attention._array.standard_exact_attention`
with blocks sized from the device's free memory: cuBLAS products, tensor cores).

Unvalidated on real hardware in the session that wrote it (no CUDA device was lent); the
tests that run it are marked ``gpu`` (every exact-attention test under the ``cupy`` backend).
"""

from __future__ import annotations

import functools

import cupy as cp

from .._validation import check_memory, memory_limit
from ..backend import array_context
from . import _array, _gpu_source

# Threads per call (enough warps to fill 132 multiprocessors several times over) and the
# widest value/key row the fused kernel takes.
_FUSED_THREADS = 1 << 19
_FUSED_WIDTH = _gpu_source.FUSED_WIDTH
# The GEMM-tiled path's largest logit tile (2^26: 512 MiB in float64, one tile at n = 8192
# for matrix attention, so a handful of launches in all).
_TILE_ELEMENTS = 1 << 26


@functools.cache
def _kernel(d: int, dtype_name: str):
    """The fused kernel for row width ``d`` (compiled once per width and precision)."""
    return cp.RawKernel(_gpu_source.fused_attention_source(d, dtype_name),
                        _gpu_source.FUSED_ATTENTION_NAME)


def exact_attention(Q, keys, values, scale, causal):
    """Exact order-t attention on the GPU (see :func:`higher_order_attention`): rows up to
    ``_FUSED_WIDTH`` wide run the fused kernel, wider ones the GEMM-tiled array code."""
    if max(Q.shape[1], values[0].shape[1]) > _FUSED_WIDTH:
        return _gemm_tiled(Q, keys, values, scale, causal)
    return fused_attention(Q, keys, values, scale, causal)[0]


def fused_attention(Q, keys, values, scale, causal):
    """The fused kernel's output and the log-sum-exp of each query's logits (CuPy arrays of
    ``Q``'s dtype; the torch Function's forward calls it through DLPack).

    The kernel holds one width ``D`` for keys and values: a value width ``d_v != d`` is brought
    to ``max(d, d_v)`` by zero columns (exact zeros in the logits, zero output columns cut off),
    as in the Numba kernel.
    """
    d_in, d_v = Q.shape[1], values[0].shape[1]
    if d_v != d_in:
        width = max(d_in, d_v)

        def padded_to_width(X):
            return cp.pad(X, ((0, 0), (0, width - X.shape[1])))

        out, lse = fused_attention(padded_to_width(Q), [padded_to_width(K) for K in keys],
                                   [padded_to_width(V) for V in values], scale, causal)
        return cp.ascontiguousarray(out[:, :d_v]), lse
    n_q, d = Q.shape
    K = cp.ascontiguousarray(cp.stack(keys))
    V = cp.ascontiguousarray(cp.stack(values))
    n_pairs, n_k, _ = K.shape
    plan = _array.fused_plan(n_q, n_k, n_pairs, _FUSED_THREADS)
    slots = n_q * plan.units
    check_memory(8.0 * slots * (d + 2), f"the fused attention's {slots} partial sums",
                 ctx=array_context(Q, names=["Q"]))
    part_max = cp.empty((n_q, plan.units), dtype=cp.float64)
    part_mass = cp.empty((n_q, plan.units), dtype=cp.float64)
    part_numerator = cp.empty((n_q, plan.units, d), dtype=cp.float64)
    threads = _gpu_source.THREADS_PER_BLOCK
    blocks = (slots + threads - 1) // threads
    _kernel(d, Q.dtype.name)(
        (blocks,), (threads,),
        _gpu_source.fused_attention_arguments(
            (cp.ascontiguousarray(Q), K, V, part_max, part_mass, part_numerator),
            n_q, n_k, n_pairs, plan, scale, causal,
            int32=cp.int32, int64=cp.int64, float64=cp.float64),
    )
    return _array.combine_partials(part_max, part_mass, part_numerator, Q.dtype, with_lse=True)


def _gemm_tiled(Q, keys, values, scale, causal):
    """Wide rows: the blocked array code (logit tiles as cuBLAS products, an online softmax
    across tiles), with tiles of up to ``_TILE_ELEMENTS`` logits or what a sixteenth of the
    device's free memory holds (the tile and its exponentials, a few passes)."""
    ctx = array_context(Q, names=["Q"])
    budget = min(_TILE_ELEMENTS, memory_limit(ctx) // (16 * Q.dtype.itemsize))
    return _array.standard_exact_attention(Q, keys, values, scale, causal,
                                           budget=max(budget, 1 << 16))

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

Rows wider than ``_FUSED_WIDTH`` (a thread holds 3 rows in registers), up to
``_gpu_source.TILED_WIDTH`` (128), run the tiled kernel (:func:`tiled_attention`): blocks
of 64 logit rows meet tiles of keys in shared memory, logits and weighted values are
tensor-core products (``wmma``: DMMA in float64, three TF32 products in float32), with an
online softmax across the tiles: the shape of fused attention kernels, no logit in HBM. Its
text is compiled for the host by the CPU tests too, every thread of a block run concurrently
with CUDA's barrier and ``wmma`` stood in for
(``tests/tensor_attention/test_tensor_attention_tiled_kernel.py``). Wider rows run the
GEMM-tiled array code (:func:`sci.tensor_attention._array.standard_exact_attention` with
blocks sized from the device's free memory: cuBLAS products).

Unvalidated on real hardware in the session that wrote it (no CUDA device was lent); the
tests that run them are marked ``gpu`` (every exact-attention test under the ``cupy``
backend).
"""

from __future__ import annotations

import functools
import warnings

import cupy as cp

from .._validation import check_memory, memory_limit
from ..backend import array_context
from . import _array, _gpu_source

# Threads per call (enough warps to fill 132 multiprocessors several times over) and the
# widest value/key row the fused kernel takes.
_FUSED_THREADS = 1 << 19
_FUSED_WIDTH = _gpu_source.FUSED_WIDTH
# Rows at least this wide take the tiled tensor-core kernel (a module constant, so that the
# benchmark can run both kernels at one width and place the crossover on the device).
_TILED_FROM = _FUSED_WIDTH + 1
# Blocks per launch of the tiled kernel the plan aims at (several per multiprocessor: 132 on
# an H100/H200), reached by slicing the keys when the row tiles are fewer.
_TILE_BLOCKS = 1024
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
    ``_FUSED_WIDTH`` wide run the per-thread fused kernel, rows up to
    ``_gpu_source.TILED_WIDTH`` the tiled tensor-core kernel, wider ones (or a device whose
    shared memory or compiler cannot take the tiled kernel) the GEMM-tiled array code."""
    done = kernel_attention(Q, keys, values, scale, causal, with_lse=False)
    if done is None:
        return _gemm_tiled(Q, keys, values, scale, causal)
    return done[0]


def kernel_attention(Q, keys, values, scale, causal, *, with_lse=True):
    """``(out, lse)`` from the kernel for this width (the torch Function's forward calls it
    through DLPack; ``lse`` None unless ``with_lse``), or None where only the GEMM-tiled array
    code applies."""
    width = max(Q.shape[1], values[0].shape[1])
    if width < _TILED_FROM and width <= _FUSED_WIDTH:
        return fused_attention(Q, keys, values, scale, causal, with_lse=with_lse)
    if (width <= _gpu_source.TILED_WIDTH and _fits_a_grid(Q, keys, width)
            and _tiled_kernel(width, Q.dtype.name) is not None):
        return tiled_attention(Q, keys, values, scale, causal, with_lse=with_lse)
    return None


def _fits_a_grid(Q, keys, width):
    """Whether the tiled kernel's row tiles fit a grid's x dimension (2^31 - 1 blocks: order
    4 passes it near n = 5200)."""
    layout = _gpu_source.tile_layout(width, Q.dtype.name)
    n_k = keys[0].shape[0]
    tiles = -(-n_k ** (len(keys) - 1) // layout.rows)
    return Q.shape[0] * tiles <= 2**31 - 1


def fused_attention(Q, keys, values, scale, causal, *, with_lse=True):
    """The fused kernel's output and the log-sum-exp of each query's logits (CuPy arrays of
    ``Q``'s dtype; the torch Function's forward calls it through DLPack; ``lse`` None unless
    ``with_lse``).

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
                                   [padded_to_width(V) for V in values], scale, causal,
                                   with_lse=with_lse)
        return cp.ascontiguousarray(out[:, :d_v]), lse
    n_q, d = Q.shape
    K = cp.ascontiguousarray(cp.stack(keys))
    V = cp.ascontiguousarray(cp.stack(values))
    n_pairs, n_k, _ = K.shape
    plan = _array.fused_plan(n_q, n_k, n_pairs, _FUSED_THREADS)
    slots = n_q * plan.units
    part_max, part_mass, part_numerator = _partials(Q, plan.units, d, "fused")
    threads = _gpu_source.THREADS_PER_BLOCK
    blocks = (slots + threads - 1) // threads
    _kernel(d, Q.dtype.name)(
        (blocks,), (threads,),
        _gpu_source.fused_attention_arguments(
            (cp.ascontiguousarray(Q), K, V, part_max, part_mass, part_numerator),
            n_q, n_k, n_pairs, plan, scale, causal,
            int32=cp.int32, int64=cp.int64, float64=cp.float64),
    )
    return _combined(part_max, part_mass, part_numerator, Q.dtype, with_lse)


def _combined(part_max, part_mass, part_numerator, dtype, with_lse):
    """(out, lse) from the kernels' partials; lse None (not formed) unless ``with_lse``."""
    if with_lse:
        return _array.combine_partials(part_max, part_mass, part_numerator, dtype,
                                       with_lse=True)
    return _array.combine_partials(part_max, part_mass, part_numerator, dtype), None


def _partials(Q, units, d_v, kernel):
    """The kernels' partial sums, float64 whatever the inputs: (max, mass, numerator) of
    shapes (n_q, units), (n_q, units), (n_q, units, d_v), refused up front if they would not
    fit the device."""
    n_q = Q.shape[0]
    slots = n_q * units
    check_memory(8.0 * slots * (d_v + 2), f"the {kernel} attention's {slots} partial sums",
                 ctx=array_context(Q, names=["Q"]))
    return (cp.empty((n_q, units), dtype=cp.float64), cp.empty((n_q, units), dtype=cp.float64),
            cp.empty((n_q, units, d_v), dtype=cp.float64))


def _gemm_tiled(Q, keys, values, scale, causal):
    """Wide rows: the blocked array code (logit tiles as cuBLAS products, an online softmax
    across tiles), with tiles of up to ``_TILE_ELEMENTS`` logits or what a sixteenth of the
    device's free memory holds (the tile and its exponentials, a few passes)."""
    ctx = array_context(Q, names=["Q"])
    budget = min(_TILE_ELEMENTS, memory_limit(ctx) // (16 * Q.dtype.itemsize))
    return _array.standard_exact_attention(Q, keys, values, scale, causal,
                                           budget=max(budget, 1 << 16))


def _tiled_kernel(d: int, dtype_name: str):
    """The tiled kernel and its layout for rows ``d`` wide on the current device, or None
    where it cannot run there (see :func:`_tiled_kernel_on`)."""
    return _tiled_kernel_on(cp.cuda.Device().id, d, dtype_name)


@functools.cache
def _tiled_kernel_on(device: int, d: int, dtype_name: str):
    """The tiled kernel and its layout for rows ``d`` wide on ``device``, compiled and given
    its shared memory once per device (CuPy keeps one function per device, and the opt-in
    above 48 KB is an attribute of each), or None where that device cannot run it: a compute
    capability below 8.0 (no TF32 or float64 tensor cores), less shared memory per block than
    the layout's, or NVRTC not finding CUDA's ``mma.h``; then a warning says so once and the
    GEMM-tiled code runs."""
    layout = _gpu_source.tile_layout(d, dtype_name)
    gpu = cp.cuda.Device(device)
    if int(gpu.compute_capability) < 80:
        return None
    if layout.shared_bytes > gpu.attributes["MaxSharedMemoryPerBlockOptin"]:
        return None
    options = _gpu_source.mma_include_options()
    try:
        kernel = cp.RawKernel(_gpu_source.tiled_attention_source(d, dtype_name),
                              _gpu_source.TILED_ATTENTION_NAME, options=options)
        kernel.compile()
    except cp.cuda.compiler.CompileException as error:
        where = options[0][2:] if options else "no CUDA include folder with crt/mma.h found"
        warnings.warn(f"sci.tensor_attention: the tiled tensor-core kernel did not compile "
                      f"({str(error).strip().splitlines()[0]}; {where}); rows of width {d} "
                      f"run the GEMM-tiled code instead. It needs CUDA's headers, mma.h and "
                      f"crt/mma.h (set CUDA_PATH to a CUDA toolkit)",
                      RuntimeWarning, stacklevel=4)
        return None
    kernel.max_dynamic_shared_size_bytes = layout.shared_bytes
    return kernel, layout


def tiled_attention(Q, keys, values, scale, causal, *, with_lse=True):
    """The tiled kernel's output and the log-sum-exp of each query's logits (CuPy arrays of
    ``Q``'s dtype; ``lse`` None unless ``with_lse``), in the manner of fused attention
    kernels: each block holds 64 logit rows (query x outer tuple) and meets the last keys in
    tiles held in shared memory; the logits ``(s Q_i * K_1[j]) K_last^T`` and the weighted
    values are tensor-core products (float64 DMMA; float32 as three TF32 products, hi*hi +
    hi*lo + lo*hi, to float32 accuracy) with an online softmax across the key tiles, and the
    rows of a query are summed into one partial per block, combined as the per-thread
    kernel's (:func:`_array.combine_partials`).

    Keys, values and queries are padded with zero columns to the layout's width (a multiple
    of the tensor-core tile): exact zeros in the logits, output columns cut at ``d_v``.
    """
    n_q, d = Q.shape
    d_v = values[0].shape[1]
    compiled = _tiled_kernel(max(d, d_v), Q.dtype.name)
    if compiled is None:
        raise RuntimeError("the tiled attention kernel cannot run on this device "
                           "(kernel_attention chooses the code that can)")
    kernel, layout = compiled

    def padded(X):
        return cp.pad(X, ((0, 0), (0, layout.width - X.shape[1])))

    Qp = cp.ascontiguousarray(padded(Q))
    K = cp.ascontiguousarray(cp.stack([padded(X) for X in keys]))
    V = cp.ascontiguousarray(cp.stack([padded(X) for X in values]))
    n_pairs, n_k, _ = K.shape
    plan = _array.tile_plan(n_q, n_k, n_pairs, layout.rows, layout.keys, _TILE_BLOCKS)
    part_max, part_mass, part_numerator = _partials(Q, plan.units, d_v, "tiled")
    kernel((plan.row_tiles, plan.n_splits), (_gpu_source.TILE_THREADS,),
           _gpu_source.tiled_attention_arguments(
               (Qp, K, V, part_max, part_mass, part_numerator), n_q, n_k, n_pairs, plan, d_v,
               scale, causal, int32=cp.int32, int64=cp.int64, float64=cp.float64),
           shared_mem=layout.shared_bytes)
    return _combined(part_max, part_mass, part_numerator, Q.dtype, with_lse)

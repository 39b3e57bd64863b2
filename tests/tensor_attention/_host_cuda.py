"""CUDA kernels of tensor attention run on the host: the stand-ins for CUDA that the CPU tests
compile the kernels' own text with, and a stand-in for CuPy whose ``RawKernel`` runs them.

Loaded by path by ``conftest.py`` (as the module ``tensor_attention_host_cuda``), not a test
module. Two stand-ins for CUDA:

* ``PER_THREAD_SHIM``: for the per-thread kernel (no barrier, no shared memory), whose threads
  are independent: they run one after another.
* ``BLOCK_SHIM``: for the tiled kernel. The threads of a block run at once, as OS threads, and
  ``__syncthreads`` is a barrier for all of them (a missing barrier is a race here too, and
  shows as a wrong result). ``nvcuda::wmma`` fragments hold a whole tile in each thread;
  ``load_matrix_sync`` reads it with the layout and leading dimension given, ``mma_sync``
  multiplies it (TF32 inputs rounded as ``cvt.rna.tf32.f32`` rounds them),
  ``store_matrix_sync`` writes it once per warp. Each load and store checks wmma's
  requirements: a 32-byte aligned tile, a leading dimension of a multiple of 16 bytes. Each
  barrier checks that the 32 threads of every warp made the same number of wmma calls (a
  wmma call inside a condition that splits a warp is undefined). Shared memory is filled with
  NaN bytes before each block, with a guard region after the layout's size that must stay
  untouched; the inputs sit between NaN guard rows (:func:`run_tiled_kernel`), so that a read
  out of bounds shows as NaN in the result; every partial slot starts as NaN and must be
  written.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import shutil
import subprocess
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

from sci.tensor_attention import _gpu_source
from sci.tensor_attention._array import tile_plan

PER_THREAD_SHIM = r"""
#include <cmath>
#include <cstring>
using std::exp;
#define __global__
struct HostIndex { unsigned int x; };
static HostIndex blockDim, blockIdx, threadIdx;
static inline double __longlong_as_double(long long v) {
    double d; std::memcpy(&d, &v, sizeof d); return d;
}
"""

PER_THREAD_LAUNCH = r"""
extern "C" void launch_on_host(long long blocks, unsigned int threads,
    const T* Q, const T* K, const T* V, double* part_max, double* part_mass,
    double* part_numerator, int n_q, int n_k, int n_pairs, long long n_outer, int n_splits,
    int split, long long per_unit, int units, double scale, int causal)
{
    blockDim.x = threads;
    for (long long b = 0; b < blocks; ++b)
        for (unsigned int t = 0; t < threads; ++t) {
            blockIdx.x = (unsigned int)b;
            threadIdx.x = t;
            exact_attention_partials(Q, K, V, part_max, part_mass, part_numerator, n_q, n_k,
                                     n_pairs, n_outer, n_splits, split, per_unit, units,
                                     scale, causal);
        }
}
"""

BLOCK_SHIM = r"""
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
using std::exp; using std::fmax; using std::min; using std::max;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n)  // the definition below carries the alignment
#define __shared__
struct HostIndex { unsigned int x, y, z; };
static thread_local HostIndex threadIdx, blockIdx;
static HostIndex blockDim, gridDim;
static std::barrier<>* host_barrier;
static thread_local long host_wmma_calls;
static long host_wmma_seen[1024];
// 1: a misaligned tile, 2: a bad leading dimension, 3: a warp split across a wmma call,
// 4: a write past the layout's shared memory
static std::atomic<int> host_error{0};
static inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
static inline double __longlong_as_double(long long v) {
    double d; std::memcpy(&d, &v, 8); return d;
}
static inline void __syncthreads() {
    host_wmma_seen[threadIdx.x] = host_wmma_calls;
    host_barrier->arrive_and_wait();
    if (host_wmma_seen[threadIdx.x] != host_wmma_seen[threadIdx.x & ~31u]) host_error = 3;
    host_barrier->arrive_and_wait();
}
alignas(32) unsigned char tile_memory[1 << 18];

namespace nvcuda { namespace wmma {
struct matrix_a {}; struct matrix_b {}; struct accumulator {};
struct row_major {}; struct col_major {};
namespace precision { struct tf32 {}; }
enum layout_t { mem_row_major, mem_col_major };
template <class E> struct storage { typedef E type; };
template <> struct storage<precision::tf32> { typedef float type; };
template <class Use, int M, int N, int K> struct shape;
template <int M, int N, int K> struct shape<matrix_a, M, N, K> { enum { R = M, C = K }; };
template <int M, int N, int K> struct shape<matrix_b, M, N, K> { enum { R = K, C = N }; };
template <int M, int N, int K> struct shape<accumulator, M, N, K> { enum { R = M, C = N }; };
template <class Use, int M, int N, int K, class E, class Layout = void>
struct fragment {
    typedef typename storage<E>::type element_type;
    enum { rows = shape<Use, M, N, K>::R, cols = shape<Use, M, N, K>::C,
           num_elements = rows * cols };
    element_type x[num_elements];
};
template <class V>
static void check_tile(const V* p, unsigned ldm) {
    ++host_wmma_calls;
    if ((std::uintptr_t)p % 32 != 0) host_error = 1;
    if ((ldm * sizeof(V)) % 16 != 0) host_error = 2;
}
template <class Use, int M, int N, int K, class E, class V>
void load_matrix_sync(fragment<Use, M, N, K, E, row_major>& f, const V* p, unsigned ldm) {
    check_tile(p, ldm);
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c) f.x[r * f.cols + c] = p[r * ldm + c];
}
template <class Use, int M, int N, int K, class E, class V>
void load_matrix_sync(fragment<Use, M, N, K, E, col_major>& f, const V* p, unsigned ldm) {
    check_tile(p, ldm);
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c) f.x[r * f.cols + c] = p[c * ldm + r];
}
template <int M, int N, int K, class E, class V>
void load_matrix_sync(fragment<accumulator, M, N, K, E>& f, const V* p, unsigned ldm,
                      layout_t layout) {
    check_tile(p, ldm);
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c)
            f.x[r * f.cols + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
template <int M, int N, int K, class E, class V>
void store_matrix_sync(V* p, const fragment<accumulator, M, N, K, E>& f, unsigned ldm,
                       layout_t layout) {
    check_tile(p, ldm);
    if (threadIdx.x % 32 != 0) return;  // one write per warp; a barrier must follow
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c)
            (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * f.cols + c];
}
template <int M, int N, int K, class E, class V>
void fill_fragment(fragment<accumulator, M, N, K, E>& f, V v) {
    ++host_wmma_calls;
    for (int e = 0; e < f.num_elements; ++e) f.x[e] = v;
}
template <int M, int N, int K, class E, class A, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, E>& d, const fragment<matrix_a, M, N, K, A, LA>& a,
              const fragment<matrix_b, M, N, K, A, LB>& b,
              const fragment<accumulator, M, N, K, E>& c) {
    ++host_wmma_calls;
    E out[M * N];
    for (int r = 0; r < M; ++r)
        for (int n = 0; n < N; ++n) {
            E s = c.x[r * N + n];
            for (int k = 0; k < K; ++k) s += a.x[r * K + k] * b.x[k * N + n];
            out[r * N + n] = s;
        }
    for (int e = 0; e < M * N; ++e) d.x[e] = out[e];
}
inline float __float_to_tf32(float x) {  // cvt.rna.tf32.f32: nearest, ties away from zero
    std::uint32_t bits; std::memcpy(&bits, &x, 4);
    bits = (bits + 0x1000u) & 0xffffe000u;
    std::memcpy(&x, &bits, 4);
    return x;
}
} }
"""

BLOCK_LAUNCH = r"""
extern "C" int launch_on_host(unsigned int grid_x, unsigned int grid_y, long long shared_bytes,
    const T* Q, const T* K, const T* V, double* part_max, double* part_mass,
    double* part_numerator, int n_q, int n_k, int n_pairs, long long n_outer,
    int tiles_per_query, int n_splits, int split, int units, int d_v, double scale,
    int causal)
{
    blockDim = HostIndex{THREADS, 1, 1};
    gridDim = HostIndex{grid_x, grid_y, 1};
    host_error = 0;
    const long long guard = 4096;
    if (shared_bytes + guard > (long long)sizeof(tile_memory)) return 5;
    for (unsigned int by = 0; by < grid_y; ++by)
        for (unsigned int bx = 0; bx < grid_x; ++bx) {
            std::memset(tile_memory, 0xff, shared_bytes + guard);  // NaN in every float
            std::barrier<> barrier(THREADS);
            host_barrier = &barrier;
            std::vector<std::thread> threads;
            for (unsigned int t = 0; t < THREADS; ++t)
                threads.emplace_back([=] {
                    threadIdx = HostIndex{t, 0, 0};
                    blockIdx = HostIndex{bx, by, 0};
                    host_wmma_calls = 0;
                    exact_attention_tiles(Q, K, V, part_max, part_mass, part_numerator, n_q,
                                          n_k, n_pairs, n_outer, tiles_per_query, n_splits,
                                          split, units, d_v, scale, causal);
                });
            for (auto& thread : threads) thread.join();
            for (long long b = shared_bytes; b < shared_bytes + guard; ++b)
                if (tile_memory[b] != 0xff) host_error = 4;
            if (host_error) return host_error;
        }
    return host_error;
}
"""

COMPILER = shutil.which("g++") or shutil.which("c++")
_BUILD = Path(tempfile.mkdtemp(prefix="sci-host-cuda-"))
# per kernel: the stand-in for CUDA, the host launcher, the compiler's flags
_KINDS = {
    _gpu_source.FUSED_ATTENTION_NAME: (lambda: PER_THREAD_SHIM, lambda: PER_THREAD_LAUNCH,
                                       ["-O1"]),
    _gpu_source.TILED_ATTENTION_NAME: (lambda: BLOCK_SHIM, lambda: BLOCK_LAUNCH,
                                       ["-std=c++20", "-O2", "-pthread"]),
}
BLOCK_ERRORS = {1: "a wmma tile not 32-byte aligned", 2: "a bad leading dimension",
                3: "a warp split across a wmma call", 4: "a write past the layout's shared memory",
                5: "the layout exceeds the stand-in's shared memory"}


@functools.cache
def host_library(name: str, text: str):
    """The kernel ``name``'s text (as ``_gpu_source`` gives it; CUDA's ``mma.h`` replaced by the
    stand-in) compiled for the host: its ``launch_on_host``."""
    if COMPILER is None:
        pytest.skip("no C++ compiler (g++) to build the CUDA kernel's text for the host")
    shim, launch, flags = _KINDS[name]
    text = text.replace("#include <mma.h>", "")
    # named by the text: a library once loaded stays loaded, so a new text needs a new file
    source = _BUILD / f"{name}_{hashlib.sha256(text.encode()).hexdigest()[:16]}.cpp"
    library = source.with_suffix(".so")
    source.write_text(shim() + text + launch())
    subprocess.run([COMPILER, *flags, "-shared", "-fPIC", "-o", str(library), str(source)],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(library)).launch_on_host


def run_fused_kernel(Q, keys, values, scale, causal, plan, dtype_name="float64"):
    """The partial sums the kernel writes for this plan: (n_q, U), (n_q, U), (n_q, U, d)."""
    dtype = np.dtype(dtype_name)
    n_q, d = Q.shape
    n_pairs, n_k = len(keys), keys[0].shape[0]
    Q = np.ascontiguousarray(Q, dtype=dtype)
    K = np.ascontiguousarray(np.stack(keys), dtype=dtype)
    V = np.ascontiguousarray(np.stack(values), dtype=dtype)
    part_max = np.full((n_q, plan.units), np.nan)  # every slot must be written
    part_mass = np.full((n_q, plan.units), np.nan)
    part_numerator = np.full((n_q, plan.units, d), np.nan)

    def pointer(a):
        return ctypes.c_void_p(a.ctypes.data)

    threads = _gpu_source.THREADS_PER_BLOCK
    blocks = -(-(n_q * plan.units) // threads)
    host_library(_gpu_source.FUSED_ATTENTION_NAME,
                 _gpu_source.fused_attention_source(d, dtype_name))(
        ctypes.c_longlong(blocks), ctypes.c_uint(threads),
        *_gpu_source.fused_attention_arguments(
            tuple(pointer(a) for a in (Q, K, V, part_max, part_mass, part_numerator)),
            n_q, n_k, n_pairs, plan, scale, causal,
            int32=ctypes.c_int, int64=ctypes.c_longlong, float64=ctypes.c_double))
    return part_max, part_mass, part_numerator


def _guarded(rows: np.ndarray, width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` (..., n, d) zero-padded to ``width`` columns inside a buffer with NaN guard rows
    before and after: (the buffer, the view the kernel is given)."""
    padded = np.zeros(rows.shape[:-1] + (width,), dtype=dtype)
    padded[..., : rows.shape[-1]] = rows
    flat = padded.reshape(-1)
    guard = 64 * width
    buffer = np.full(flat.size + 2 * guard, np.nan, dtype=dtype)
    buffer[guard: guard + flat.size] = flat
    return buffer, buffer[guard: guard + flat.size]


def run_tiled_kernel(Q, keys, values, scale, causal, dtype_name="float64", blocks=1024):
    """The tiled kernel run on the host with the launcher's layout, plan and argument order:
    the partials (n_q, U), (n_q, U), (n_q, U, d_v) and the plan."""
    dtype = np.dtype(dtype_name)
    n_q, d = Q.shape
    d_v = values[0].shape[1]
    layout = _gpu_source.tile_layout(max(d, d_v), dtype_name)
    n_pairs, n_k = len(keys), keys[0].shape[0]
    plan = tile_plan(n_q, n_k, n_pairs, layout.rows, layout.keys, blocks)
    inputs = [_guarded(np.asarray(X), layout.width, dtype)
              for X in (Q, np.stack(keys), np.stack(values))]
    part_max = np.full((n_q, plan.units), np.nan)
    part_mass = np.full((n_q, plan.units), np.nan)
    part_numerator = np.full((n_q, plan.units, d_v), np.nan)

    def pointer(a):
        return ctypes.c_void_p(a.ctypes.data)

    error = host_library(_gpu_source.TILED_ATTENTION_NAME,
                         _gpu_source.tiled_attention_source(max(d, d_v), dtype_name))(
        ctypes.c_uint(plan.row_tiles), ctypes.c_uint(plan.n_splits),
        ctypes.c_longlong(layout.shared_bytes),
        *_gpu_source.tiled_attention_arguments(
            tuple(pointer(view) for _, view in inputs)
            + tuple(pointer(a) for a in (part_max, part_mass, part_numerator)),
            n_q, n_k, n_pairs, plan, d_v, scale, causal,
            int32=ctypes.c_int, int64=ctypes.c_longlong, float64=ctypes.c_double))
    assert error == 0, BLOCK_ERRORS[error]
    return (part_max, part_mass, part_numerator), plan


def _argument(a):
    """A kernel argument as ctypes passes it: arrays by pointer, NumPy scalars (what CuPy's
    ``cupy.int32(n)`` makes on a stand-in built on NumPy) by their C type."""
    if isinstance(a, np.ndarray):
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.generic):
        return {np.dtype(np.int32): ctypes.c_int, np.dtype(np.int64): ctypes.c_longlong,
                np.dtype(np.float64): ctypes.c_double}[a.dtype](a.item())
    return a


class RawKernel:
    """``cupy.RawKernel`` for sci's attention kernels, run on the host by the stand-ins above:
    the launcher's grid, block, shared memory and arguments as it passes them."""

    fail_compile = False  # set: compiling fails as NVRTC does without CUDA's mma.h
    launches: list = []  # the kernels' names, launch by launch (a list per stand-in class)

    def __init__(self, code, name, options=()):
        assert name in _KINDS
        self.code, self.name, self.options = code, name, tuple(options)
        self.max_dynamic_shared_size_bytes = 0

    def compile(self):
        if self.fail_compile:
            raise RuntimeError('catastrophic error: cannot open source file "mma.h"')

    def __call__(self, grid, block, args, *, shared_mem=0):
        pointers = [_argument(a) for a in args]
        launch = host_library(self.name, self.code)
        type(self).launches.append(self.name)
        if self.name == _gpu_source.FUSED_ATTENTION_NAME:
            assert len(grid) == 1 and shared_mem == 0
            launch(ctypes.c_longlong(grid[0]), ctypes.c_uint(block[0]), *pointers)
            return
        assert block == (_gpu_source.TILE_THREADS,)
        assert 0 < shared_mem <= self.max_dynamic_shared_size_bytes
        error = launch(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]),
                       ctypes.c_longlong(shared_mem), *pointers)
        assert error == 0, BLOCK_ERRORS[error]


def stand_in_cupy(shared_memory: int = 227 * 1024,
                  compute_capability: str = "90") -> types.ModuleType:
    """A ``cupy`` for ``sci.tensor_attention._gpu``: NumPy arrays, :class:`RawKernel` above, a
    device with ``shared_memory`` bytes per block and ``compute_capability`` (227 KB and 9.0:
    an H100/H200)."""
    fake = types.ModuleType("cupy")
    fake.pad, fake.stack, fake.empty = np.pad, np.stack, np.empty
    fake.ascontiguousarray = np.ascontiguousarray
    fake.int32, fake.int64, fake.float64 = ctypes.c_int, ctypes.c_longlong, ctypes.c_double
    fake.RawKernel = type("RawKernel", (RawKernel,), {"launches": []})
    device = types.SimpleNamespace(
        id=0, compute_capability=compute_capability,
        attributes={"MaxSharedMemoryPerBlockOptin": shared_memory})
    fake.cuda = types.SimpleNamespace(Device=lambda id=0: device, compiler=types.SimpleNamespace(
        CompileException=RuntimeError))
    return fake


def random_case(order: int, n: int, d: int, d_v: int, causal: bool):
    """Inputs uniform in [-1, 1] (seeded by the sizes) and the blocked NumPy code's attention
    of them: ``(Q, keys, values, want)``, for the tests on a device."""
    import sci
    from sci.tensor_attention import higher_order_attention

    rng = np.random.default_rng(order * n + d)
    Q = rng.uniform(-1, 1, (n, d))
    keys = [rng.uniform(-1, 1, (n, d)) for _ in range(order - 1)]
    values = [rng.uniform(-1, 1, (n, d_v)) for _ in range(order - 1)]
    with sci.use_backend("numpy"):
        want = higher_order_attention(Q, keys, values, causal=causal)
    return Q, keys, values, want

"""CUDA C sources of the GPU kernels, importable without CuPy.

``_gpu.py`` compiles them with CuPy (NVRTC) on a device; the tests compile the same text for
the host with a C++ compiler and a few lines that stand in for CUDA's thread indices
(``tests/tensor_attention/test_tensor_attention_fused_plan.py``), and with ``nvcc`` where it is
installed, so that a session with no device still runs the kernel's own code. The argument
order of a launch is made in one place (:func:`fused_attention_arguments`) for both.
"""

from __future__ import annotations

from typing import NamedTuple

FUSED_ATTENTION_NAME = "exact_attention_partials"
THREADS_PER_BLOCK = 128
# The widest key/value row the per-thread kernel takes: a thread holds 3 rows in registers
# (at 16, float64: 166 registers for sm_90, no spill: nvcc -Xptxas -v); wider rows run the
# tiled kernel below.
FUSED_WIDTH = 16

FUSED_ATTENTION = r"""
extern "C" __global__ void exact_attention_partials(
    const T* Q, const T* K, const T* V,
    double* part_max, double* part_mass, double* part_numerator,
    const int n_q, const int n_k, const int n_pairs, const long long n_outer,
    const int n_splits, const int split, const long long per_unit, const int units,
    const double scale, const int causal)
{
    const long long t = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (t >= (long long)n_q * units) return;
    const int i = (int)(t / units);
    const int u = (int)(t % units);
    const int last = n_pairs - 1;
    const long long stride = (long long)n_k * D;
    const long long n_items = n_outer * n_splits;
    const long long first = (long long)u * per_unit;
    const long long stop = (first + per_unit < n_items) ? first + per_unit : n_items;
    const int limit = causal ? ((i + 1 < n_k) ? i + 1 : n_k) : n_k;
    // logits and exponentials in the inputs' precision (float32: the device's fast float
    // units and expf, where double exp costs several times more), sums in double
    const T minus_infinity = (T)__longlong_as_double(0xfff0000000000000ULL);
    T qk[D], vprod[D];
    double numerator[D];
    for (int l = 0; l < D; ++l) numerator[l] = 0.0;
    double denominator = 0.0;
    T run_max = minus_infinity;
    for (long long w = first; w < stop; ++w) {
        // item w: outer tuple o (j_1 fastest, as the array code), slice s of the last keys
        const long long o = w / n_splits;
        const int s = (int)(w % n_splits);
        const int k0 = s * split;
        const int k1 = (k0 + split < limit) ? k0 + split : limit;
        if (k0 >= k1) continue;
        for (int l = 0; l < D; ++l) {
            qk[l] = (T)(scale * (double)Q[(long long)i * D + l]);
            vprod[l] = (T)1;
        }
        long long rest = o;
        bool future = false;
        for (int m = 0; m < last; ++m) {
            const int j = (int)(rest % n_k);
            rest /= n_k;
            if (causal && j > i) { future = true; break; }
            for (int l = 0; l < D; ++l) {
                qk[l] *= K[m * stride + (long long)j * D + l];
                vprod[l] *= V[m * stride + (long long)j * D + l];
            }
        }
        if (future) continue;
        for (int k = k0; k < k1; ++k) {
            T x = (T)0;
            for (int l = 0; l < D; ++l)
                x += qk[l] * K[last * stride + (long long)k * D + l];
            // Online softmax: rescale the running sums whenever the maximum grows.
            T weight;
            if (x > run_max) {
                const double factor = (run_max == minus_infinity) ? 0.0
                                                                 : (double)exp(run_max - x);
                for (int l = 0; l < D; ++l) numerator[l] *= factor;
                denominator *= factor;
                run_max = x;
                weight = (T)1;
            } else {
                weight = exp(x - run_max);
            }
            denominator += (double)weight;
            for (int l = 0; l < D; ++l)
                numerator[l] += (double)(weight * vprod[l]
                                         * V[last * stride + (long long)k * D + l]);
        }
    }
    // a thread with no allowed key leaves (-inf, 0, 0): weight exp(-inf - max) = 0 below
    part_max[t] = (double)run_max;
    part_mass[t] = denominator;
    for (int l = 0; l < D; ++l) part_numerator[t * D + l] = numerator[l];
}
"""


def fused_attention_source(d: int, dtype_name: str) -> str:
    """The kernel's text for row width ``d`` and inputs of ``dtype_name`` (float32/float64)."""
    ctype = {"float32": "float", "float64": "double"}[dtype_name]
    return f"#define D {d}\ntypedef {ctype} T;\n" + FUSED_ATTENTION


def fused_attention_arguments(arrays, n_q, n_k, n_pairs, plan, scale, causal, *, int32, int64,
                              float64):
    """The kernel's arguments in its order: ``arrays`` = (Q, K, V, part_max, part_mass,
    part_numerator) as the launcher passes arrays, then the sizes, the plan
    (:func:`sci.tensor_attention._array.fused_plan`), the scale and the mask flag, typed by
    the launcher's ``int32``/``int64``/``float64`` constructors."""
    return (*arrays, int32(n_q), int32(n_k), int32(n_pairs), int64(n_k ** (n_pairs - 1)),
            int32(plan.n_splits), int32(plan.split), int64(plan.per_unit), int32(plan.units),
            float64(scale), int32(bool(causal)))


TILED_ATTENTION_NAME = "exact_attention_tiles"
# Rows of logits (query x outer tuple) and keys per tile, and threads per block (4 warps).
TILE_THREADS = 128
# The widest key/value row the tiled kernel takes (its tiles are held in shared memory).
TILED_WIDTH = 128

TILED_ATTENTION = r"""
#include <mma.h>
using namespace nvcuda;

// Logit rows r = (query i, outer tuple o = (j_1, ..., j_{t-2})) have the query vector
// a_r = s Q_i * K_1[j_1] * ... (elementwise) and the value factor b_r = V_1[j_1] * ...; the
// block's BR rows meet the last keys in tiles of BC: S = A Kt^T on the tensor cores, an online
// softmax per row, O += P Vt on the tensor cores, then b_r * O_r summed over the rows of one
// query into that query's partial (max, mass, numerator), as the per-thread kernel writes.
#if IS_DOUBLE
#define WM 8
#define WN 8
#define WK 4
typedef wmma::fragment<wmma::matrix_a, 8, 8, 4, double, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 8, 8, 4, double, wmma::col_major> FragKt;
typedef wmma::fragment<wmma::matrix_b, 8, 8, 4, double, wmma::row_major> FragV;
typedef wmma::fragment<wmma::accumulator, 8, 8, 4, double> FragC;
#define EXP(x) exp(x)
#define MINUS_INFINITY __longlong_as_double(0xfff0000000000000ULL)
#else
#define WM 16
#define WN 16
#define WK 8
typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> FragKt;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> FragV;
typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> FragC;
#define EXP(x) expf(x)
#define MINUS_INFINITY __int_as_float(0xff800000)
#endif

// Leading dimensions in shared memory: a skew of 16 bytes keeps rows off one bank and every
// tile's first element 32-byte aligned (wmma's requirement).
#define SKEW (16 / (int)sizeof(T))
#define LDA (DP + SKEW)
#define LDS (BC + SKEW)
#define WARPS (THREADS / 32)
#define PER_ROW (THREADS / BR)

#if !IS_DOUBLE
// float32 on the tensor cores at float32 accuracy: x = hi + lo with hi, lo in TF32 (10-bit
// mantissas), and x y = hi_x hi_y + hi_x lo_y + lo_x hi_y up to about 3 2^-22 relative (the
// dropped lo_x lo_y and the rounding of lo: 3xTF32).
template <class Frag>
__device__ __forceinline__ void split_tf32(Frag& hi, Frag& lo)
{
    for (int e = 0; e < hi.num_elements; ++e) {
        const float x = hi.x[e];
        const float h = wmma::__float_to_tf32(x);
        hi.x[e] = h;
        lo.x[e] = wmma::__float_to_tf32(x - h);
    }
}
#endif

// c += a b for one WM x WN tile: a (WM x WK) row-major at pa, b (WK x WN) as FragB reads it.
template <class FragB>
__device__ __forceinline__ void multiply_add(FragC& c, const T* pa, int lda, const T* pb,
                                             int ldb)
{
#if IS_DOUBLE
    FragA a;
    FragB b;
    wmma::load_matrix_sync(a, pa, lda);
    wmma::load_matrix_sync(b, pb, ldb);
    wmma::mma_sync(c, a, b, c);
#else
    FragA a_hi, a_lo;
    FragB b_hi, b_lo;
    wmma::load_matrix_sync(a_hi, pa, lda);
    wmma::load_matrix_sync(b_hi, pb, ldb);
    split_tf32(a_hi, a_lo);
    split_tf32(b_hi, b_lo);
    wmma::mma_sync(c, a_lo, b_hi, c);  // the small terms first
    wmma::mma_sync(c, a_hi, b_lo, c);
    wmma::mma_sync(c, a_hi, b_hi, c);
#endif
}

// At least 4 blocks per multiprocessor: up to 128 registers a thread, no fewer blocks than the
// shared memory allows from width 17 on (with no minimum ptxas held the kernel to 64
// registers and spilled).
extern "C" __global__ void __launch_bounds__(THREADS, 4) exact_attention_tiles(
    const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V,
    double* part_max, double* part_mass, double* part_numerator,
    const int n_q, const int n_k, const int n_pairs, const long long n_outer,
    const int tiles_per_query, const int n_splits, const int split, const int units,
    const int d_v, const double scale, const int causal)
{
    extern __shared__ __align__(32) unsigned char tile_memory[];
    T* A = (T*)tile_memory;           // BR x LDA: the rows' query vectors a_r
    T* Kt = A + BR * LDA;             // BC x LDA: a tile of the last keys
    T* Vt = Kt + BC * LDA;            // BC x LDA: and of the last values
    T* O = Vt + BC * LDA;             // BR x LDA: the rows' running numerators
    T* S = O + BR * LDA;              // BR x LDS: logits, then their weights
    T* row_max = S + BR * LDS;        // BR
    T* row_mass = row_max + BR;       // BR
    T* half_max = row_mass + BR;      // BR x PER_ROW
    T* half_mass = half_max + BR * PER_ROW;
    int* row_query = (int*)(half_mass + BR * PER_ROW);  // BR: the row's query, -1 if none

    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int last = n_pairs - 1;
    const long long pair_stride = (long long)n_k * DP;
    const bool matrix = (n_pairs == 1);
    // rows of this block: matrix attention BR queries (o = 0); order t >= 3 one query and
    // BR consecutive outer tuples
    const int tile = blockIdx.x;
    const int query0 = matrix ? tile * BR : tile / tiles_per_query;
    const long long outer0 = matrix ? 0 : (long long)(tile % tiles_per_query) * BR;
    const int unit = matrix ? (int)blockIdx.y
                            : (tile % tiles_per_query) * n_splits + (int)blockIdx.y;
    const int last_query = matrix ? min(n_q - 1, query0 + BR - 1) : query0;
    const int k_begin = (int)blockIdx.y * split;
    int k_end = min(n_k, k_begin + split);
    if (causal) k_end = min(k_end, last_query + 1);

    // the query vectors a_r (zero for a row with no query or a future tuple)
    for (int e = tid; e < BR * DP; e += THREADS) {
        const int r = e / DP, l = e % DP;
        const int i = matrix ? query0 + r : query0;
        long long rest = outer0 + (matrix ? 0 : r);
        bool live = (i < n_q) && (rest < n_outer);
        T a = live ? (T)(scale * (double)Q[(long long)i * DP + l]) : (T)0;
        for (int m = 0; m < last && live; ++m) {
            const int j = (int)(rest % n_k);
            rest /= n_k;
            if (causal && j > i) live = false;
            a *= K[m * pair_stride + (long long)j * DP + l];
        }
        A[r * LDA + l] = live ? a : (T)0;
        O[r * LDA + l] = (T)0;
        if (l == 0) {
            row_query[r] = live ? i : -1;
            row_max[r] = MINUS_INFINITY;
            row_mass[r] = (T)0;
        }
    }
    __syncthreads();
    // a block whose rows are all future tuples (causal, order t >= 3: about half the blocks)
    // or past the end adds nothing: it skips the key tiles (every thread reads the same flags,
    // so the loop below stays uniform across the block)
    bool any_live = false;
    for (int r = 0; r < BR; ++r) any_live = any_live || (row_query[r] >= 0);
    if (!any_live) k_end = k_begin;

    const int r_own = tid / PER_ROW, part = tid % PER_ROW;  // this thread's row and share
    for (int k0 = k_begin; k0 < k_end; k0 += BC) {
        for (int e = tid; e < BC * DP; e += THREADS) {
            const int c = e / DP, l = e % DP;
            const bool in = k0 + c < k_end;
            const long long at = last * pair_stride + (long long)(k0 + c) * DP + l;
            Kt[c * LDA + l] = in ? K[at] : (T)0;
            Vt[c * LDA + l] = in ? V[at] : (T)0;
        }
        __syncthreads();
        // S = A Kt^T, WM x WN tiles shared among the warps
        for (int t = warp; t < (BR / WM) * (BC / WN); t += WARPS) {
            const int r0 = (t / (BC / WN)) * WM, c0 = (t % (BC / WN)) * WN;
            FragC acc;
            wmma::fill_fragment(acc, (T)0);
            for (int l = 0; l < DP; l += WK)
                multiply_add<FragKt>(acc, A + r0 * LDA + l, LDA, Kt + c0 * LDA + l, LDA);
            wmma::store_matrix_sync(S + r0 * LDS + c0, acc, LDS, wmma::mem_row_major);
        }
        __syncthreads();
        // online softmax: PER_ROW threads per row, on interleaved columns c = part + PER_ROW j
        // (rows LDS apart fall 4 banks apart: contiguous halves would put 4 lanes on a bank)
        const int i_own = row_query[r_own];
        T local = MINUS_INFINITY;
        for (int c = part; c < BC; c += PER_ROW) {
            const int k = k0 + c;
            const bool allowed = i_own >= 0 && k < k_end && !(causal && k > i_own);
            if (allowed) local = fmax(local, S[r_own * LDS + c]);
        }
        half_max[r_own * PER_ROW + part] = local;
        __syncthreads();
        const T old_max = row_max[r_own];
        T new_max = old_max;
        for (int h = 0; h < PER_ROW; ++h) new_max = fmax(new_max, half_max[r_own * PER_ROW + h]);
        T mass = (T)0;
        for (int c = part; c < BC; c += PER_ROW) {
            const int k = k0 + c;
            const bool allowed = i_own >= 0 && k < k_end && !(causal && k > i_own);
            const T w = allowed ? EXP(S[r_own * LDS + c] - new_max) : (T)0;
            S[r_own * LDS + c] = w;
            mass += w;
        }
        half_mass[r_own * PER_ROW + part] = mass;
        // a row with no allowed key so far keeps (-inf, 0, 0): no -inf - (-inf)
        const T rescale = (new_max == MINUS_INFINITY) ? (T)1 : EXP(old_max - new_max);
        for (int l = part; l < DP; l += PER_ROW) O[r_own * LDA + l] *= rescale;
        __syncthreads();
        if (part == 0) {
            T total = rescale * row_mass[r_own];
            for (int h = 0; h < PER_ROW; ++h) total += half_mass[r_own * PER_ROW + h];
            row_mass[r_own] = total;
            row_max[r_own] = new_max;
        }
        // O += P Vt
        for (int t = warp; t < (BR / WM) * (DP / WN); t += WARPS) {
            const int r0 = (t / (DP / WN)) * WM, c0 = (t % (DP / WN)) * WN;
            FragC acc;
            wmma::load_matrix_sync(acc, O + r0 * LDA + c0, LDA, wmma::mem_row_major);
            for (int c = 0; c < BC; c += WK)
                multiply_add<FragV>(acc, S + r0 * LDS + c, LDS, Vt + c * LDA + c0, LDA);
            wmma::store_matrix_sync(O + r0 * LDA + c0, acc, LDA, wmma::mem_row_major);
        }
        __syncthreads();
    }

    // the partials: each row alone for matrix attention, all BR rows of the query otherwise
    const int group = matrix ? 1 : BR;
    for (int e = tid; e < (BR / group) * d_v; e += THREADS) {
        const int g = e / d_v, l = e % d_v;
        const int i = matrix ? query0 + g : query0;
        if (i >= n_q) continue;
        double largest = MINUS_INFINITY;
        for (int r = g * group; r < (g + 1) * group; ++r)
            largest = fmax(largest, (double)row_max[r]);
        double numerator = 0.0, total = 0.0;
        if (largest != MINUS_INFINITY) {
            for (int r = g * group; r < (g + 1) * group; ++r) {
                if (row_max[r] == MINUS_INFINITY) continue;
                const double weight = exp((double)row_max[r] - largest);
                double b = 1.0;  // the value factor b_r = V_1[j_1] * ... of the row
                long long rest = outer0 + r;
                for (int m = 0; m < last; ++m) {
                    const int j = (int)(rest % n_k);
                    rest /= n_k;
                    b *= (double)V[m * pair_stride + (long long)j * DP + l];
                }
                numerator += weight * b * (double)O[r * LDA + l];
                total += weight * (double)row_mass[r];
            }
        }
        const long long slot = (long long)i * units + unit;
        part_numerator[slot * d_v + l] = numerator;
        if (l == 0) {
            part_max[slot] = largest;
            part_mass[slot] = total;
        }
    }
}
"""


class TileLayout(NamedTuple):
    """The tiled kernel's compile-time shapes for one width and precision."""

    width: int
    """Columns of the padded rows (the inputs are padded with zeros to it)."""
    rows: int
    """Logit rows per block (BR)."""
    keys: int
    """Keys per tile (BC)."""
    shared_bytes: int
    """Dynamic shared memory per block."""


def tile_layout(d: int, dtype_name: str) -> TileLayout:
    """Padded width, tile shapes and shared memory of the tiled kernel for rows ``d`` wide.

    The width is padded to a multiple of the tensor-core tile (16 for float32 on TF32 units,
    8 for float64); float64 takes half as many keys per tile, so that a block's tiles stay
    under about 220 KB at width 128. Blocks per multiprocessor (228 KB of shared memory, 1 KB
    reserved per block): float32 4 at widths <= 32, 2 at 64, 1 above 96; float64 3 at
    widths <= 24, 2 at 48, 1 from 64 (a tuning point for the device: fewer rows per block
    there, or the running numerators in registers).
    """
    double = dtype_name == "float64"
    size = 8 if double else 4
    step = 8 if double else 16
    width = max(step, -(-d // step) * step)
    rows, keys = 64, (32 if double else 64)
    skew = 16 // size
    lda, lds = width + skew, keys + skew
    per_row = TILE_THREADS // rows
    elements = 2 * rows * lda + 2 * keys * lda + rows * lds + 2 * rows + 2 * rows * per_row
    return TileLayout(width, rows, keys, elements * size + 4 * rows)


def mma_include_options(folders=None) -> tuple[str, ...]:
    """``("-I<folder>",)`` for the first CUDA include folder that holds ``crt/mma.h``, or ``()``.

    NVRTC resolves the tiled kernel's ``#include <mma.h>`` through the folders CuPy passes
    it. A CuPy that finds CUDA's headers in a pip wheel (``nvidia/cu13/include``, as CuPy 14
    does through ``cuda.pathfinder``) may get an ``mma.h`` without the ``crt/`` folder it
    includes (a separate package from CUDA 13 on): naming a folder that has it lets the
    quoted ``#include "crt/mma.h"`` resolve there. ``folders`` (for the tests): where to look;
    by default ``CUDA_PATH``, ``CUDA_HOME``, ``/usr/local/cuda`` and the ``nvidia`` wheels.
    """
    if folders is None:
        import importlib.util
        import os
        from pathlib import Path

        roots = [os.environ.get(name) for name in ("CUDA_PATH", "CUDA_HOME")]
        folders = [Path(root) / "include" for root in roots if root]
        folders.append(Path("/usr/local/cuda/include"))
        spec = importlib.util.find_spec("nvidia")
        for place in (spec.submodule_search_locations or []) if spec else []:
            folders.extend(sorted(Path(place).glob("*/include")))
    for folder in folders:
        if (folder / "crt" / "mma.h").is_file():
            return (f"-I{folder}",)
    return ()


def tiled_attention_source(d: int, dtype_name: str) -> str:
    """The tiled kernel's text for rows ``d`` wide and inputs of ``dtype_name``."""
    layout = tile_layout(d, dtype_name)
    ctype = {"float32": "float", "float64": "double"}[dtype_name]
    return (f"#define DP {layout.width}\n#define BR {layout.rows}\n#define BC {layout.keys}\n"
            f"#define THREADS {TILE_THREADS}\n#define IS_DOUBLE {int(ctype == 'double')}\n"
            f"typedef {ctype} T;\n" + TILED_ATTENTION)


def tiled_attention_arguments(arrays, n_q, n_k, n_pairs, plan, d_v, scale, causal, *, int32,
                              int64, float64):
    """The tiled kernel's arguments in its order: ``arrays`` = (Q, K, V, part_max, part_mass,
    part_numerator) as the launcher passes them (Q, K, V padded to the layout's width), then
    the sizes, the plan (:func:`sci.tensor_attention._array.tile_plan`), the value width,
    the scale and the mask flag."""
    return (*arrays, int32(n_q), int32(n_k), int32(n_pairs), int64(n_k ** (n_pairs - 1)),
            int32(plan.tiles_per_query), int32(plan.n_splits), int32(plan.split),
            int32(plan.units), int32(d_v), float64(scale), int32(bool(causal)))


def sources() -> dict[str, str]:
    """Every kernel's complete text as ``_gpu.py`` compiles it, at the narrowest and widest
    rows it is sent, in both precisions (for the compile check)."""
    texts = {f"{FUSED_ATTENTION_NAME} D={d} {dtype}": fused_attention_source(d, dtype)
             for d in (1, FUSED_WIDTH) for dtype in ("float32", "float64")}
    texts.update({f"{TILED_ATTENTION_NAME} D={d} {dtype}": tiled_attention_source(d, dtype)
                  for d in (1, 64, TILED_WIDTH) for dtype in ("float32", "float64")})
    return texts

"""CUDA C sources of the GPU kernels, importable without CuPy.

``_gpu.py`` compiles them with CuPy (NVRTC) on a device; the tests compile the same text for
the host with a C++ compiler and a few lines that stand in for CUDA's thread indices
(``tests/tensor_attention/test_tensor_attention_fused_plan.py``), and with ``nvcc`` where it is
installed, so that a session with no device still runs the kernel's own code. The argument
order of a launch is made in one place (:func:`fused_attention_arguments`) for both.
"""

from __future__ import annotations

FUSED_ATTENTION_NAME = "exact_attention_partials"
THREADS_PER_BLOCK = 128
# The widest key/value row the fused kernel takes: a thread holds 3 rows of doubles in
# registers (166 of them at 16 for sm_90, no spill: nvcc -Xptxas -v); wider rows run the
# GEMM-tiled array code.
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
    const double minus_infinity = __longlong_as_double(0xfff0000000000000ULL);
    double qk[D], vprod[D], numerator[D];
    for (int l = 0; l < D; ++l) numerator[l] = 0.0;
    double denominator = 0.0, run_max = minus_infinity;
    for (long long w = first; w < stop; ++w) {
        // item w: outer tuple o (j_1 fastest, as the array code), slice s of the last keys
        const long long o = w / n_splits;
        const int s = (int)(w % n_splits);
        const int k0 = s * split;
        const int k1 = (k0 + split < limit) ? k0 + split : limit;
        if (k0 >= k1) continue;
        for (int l = 0; l < D; ++l) {
            qk[l] = scale * (double)Q[(long long)i * D + l];
            vprod[l] = 1.0;
        }
        long long rest = o;
        bool future = false;
        for (int m = 0; m < last; ++m) {
            const int j = (int)(rest % n_k);
            rest /= n_k;
            if (causal && j > i) { future = true; break; }
            for (int l = 0; l < D; ++l) {
                qk[l] *= (double)K[m * stride + (long long)j * D + l];
                vprod[l] *= (double)V[m * stride + (long long)j * D + l];
            }
        }
        if (future) continue;
        for (int k = k0; k < k1; ++k) {
            double x = 0.0;
            for (int l = 0; l < D; ++l)
                x += qk[l] * (double)K[last * stride + (long long)k * D + l];
            // Online softmax: rescale the running sums whenever the maximum grows.
            double w;
            if (x > run_max) {
                const double factor = (run_max == minus_infinity) ? 0.0 : exp(run_max - x);
                for (int l = 0; l < D; ++l) numerator[l] *= factor;
                denominator *= factor;
                run_max = x;
                w = 1.0;
            } else {
                w = exp(x - run_max);
            }
            denominator += w;
            for (int l = 0; l < D; ++l)
                numerator[l] += w * vprod[l] * (double)V[last * stride + (long long)k * D + l];
        }
    }
    // a thread with no allowed key leaves (-inf, 0, 0): weight exp(-inf - max) = 0 below
    part_max[t] = run_max;
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


def sources() -> dict[str, str]:
    """Every kernel's complete text as ``_gpu.py`` compiles it, at the narrowest and widest
    rows it is sent, in both precisions (for the compile check)."""
    return {f"{FUSED_ATTENTION_NAME} D={d} {dtype}": fused_attention_source(d, dtype)
            for d in (1, FUSED_WIDTH) for dtype in ("float32", "float64")}

"""CuPy kernels (imported lazily): exact order-t attention, one thread per query.

Unvalidated on real hardware in the session that wrote it (no CUDA device); the tests that run
it are marked ``gpu``.
"""

from __future__ import annotations

import functools

import cupy as cp

_SOURCE = r"""
extern "C" __global__ void exact_attention(
    const T* Q, const T* K, const T* V, T* out,
    const int n_q, const int n_k, const int n_pairs, const long long n_outer,
    const double scale, const int causal)
{
    const int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n_q) return;
    const int last = n_pairs - 1;
    const long long stride = (long long)n_k * D;
    double qk[D], vprod[D], numerator[D];
    for (int l = 0; l < D; ++l) numerator[l] = 0.0;
    const double minus_infinity = __longlong_as_double(0xfff0000000000000ULL);
    double denominator = 0.0, run_max = minus_infinity;
    const int limit = causal ? i + 1 : n_k;
    for (long long o = 0; o < n_outer; ++o) {
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
        for (int k = 0; k < limit; ++k) {
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
    for (int l = 0; l < D; ++l) out[(long long)i * D + l] = (T)(numerator[l] / denominator);
}
"""


@functools.cache
def _kernel(d: int, dtype_name: str):
    ctype = {"float32": "float", "float64": "double"}[dtype_name]
    source = f"#define D {d}\ntypedef {ctype} T;\n" + _SOURCE
    return cp.RawKernel(source, "exact_attention")


def exact_attention(Q, keys, values, scale, causal):
    """Exact order-t attention on the GPU (see :func:`higher_order_attention`).

    The kernel holds one width ``D`` for keys and values: a value width ``d_v != d`` is brought
    to ``max(d, d_v)`` by zero columns (exact zeros in the logits, zero output columns cut off),
    as in the Numba kernel.
    """
    d_in, d_v = Q.shape[1], values[0].shape[1]
    if d_v != d_in:
        width = max(d_in, d_v)

        def padded_to_width(X):
            return cp.pad(X, ((0, 0), (0, width - X.shape[1])))

        out = exact_attention(padded_to_width(Q), [padded_to_width(K) for K in keys],
                              [padded_to_width(V) for V in values], scale, causal)
        return cp.ascontiguousarray(out[:, :d_v])
    n_q, d = Q.shape
    K = cp.ascontiguousarray(cp.stack(keys))
    V = cp.ascontiguousarray(cp.stack(values))
    n_pairs, n_k, _ = K.shape
    out = cp.empty((n_q, d), dtype=Q.dtype)
    threads = 128
    blocks = (n_q + threads - 1) // threads
    _kernel(d, Q.dtype.name)(
        (blocks,), (threads,),
        (cp.ascontiguousarray(Q), K, V, out, cp.int32(n_q), cp.int32(n_k), cp.int32(n_pairs),
         cp.int64(n_k ** (n_pairs - 1)), cp.float64(scale), cp.int32(bool(causal))),
    )
    return out

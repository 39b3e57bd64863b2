"""CuPy kernels (imported lazily): direct summation, one CUDA thread per target.

Unvalidated on hardware in the session that wrote it (no GPU); the tests for it are marked
``gpu`` and compare against the NumPy implementation where a device exists.
"""

from __future__ import annotations

import functools

import cupy

_SOURCE = r"""
extern "C" __global__
void direct_kernel(const double* pos, const double* q, const double* tgt,
                   const long long n, const long long m, const int code,
                   const double* weights, const double* exponents, const int nterms,
                   const double cutoff2, double* out)
{
    long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= m) return;
    double x = tgt[3 * i], y = tgt[3 * i + 1], z = tgt[3 * i + 2];
    double acc = 0.0;
    for (long long j = 0; j < n; ++j) {
        double dx = x - pos[3 * j], dy = y - pos[3 * j + 1], dz = z - pos[3 * j + 2];
        double r2 = dx * dx + dy * dy + dz * dz;
        if (code == 2 && r2 >= cutoff2) continue;
        double smooth = 0.0;
        if (code != 0) {
            for (int k = 0; k < nterms; ++k) smooth += weights[k] * exp(-exponents[k] * r2);
        }
        if (code == 1) { acc += q[j] * smooth; continue; }
        double inv = (r2 == 0.0) ? 0.0 : rsqrt(r2);
        acc += (code == 0) ? q[j] * inv : q[j] * (inv - smooth);
    }
    out[i] = acc;
}
"""


@functools.cache
def _kernel():
    return cupy.RawKernel(_SOURCE, "direct_kernel")


def direct(pos, q, tgt, code, weights, exponents, cutoff, chunk):
    """CuPy entry point of ``chebyshev_tucker.direct``."""
    pos = cupy.ascontiguousarray(pos, dtype=cupy.float64)
    tgt = cupy.ascontiguousarray(tgt, dtype=cupy.float64)
    q = cupy.ascontiguousarray(q, dtype=cupy.float64)
    weights = cupy.ascontiguousarray(weights, dtype=cupy.float64)
    exponents = cupy.ascontiguousarray(exponents, dtype=cupy.float64)
    m = tgt.shape[0]
    out = cupy.empty(m, dtype=cupy.float64)
    threads = 128
    blocks = (m + threads - 1) // threads
    _kernel()(
        (blocks,), (threads,),
        (pos, q, tgt, cupy.int64(pos.shape[0]), cupy.int64(m), cupy.int32(code), weights,
         exponents, cupy.int32(weights.shape[0]), cupy.float64(cutoff * cutoff), out),
    )
    return out

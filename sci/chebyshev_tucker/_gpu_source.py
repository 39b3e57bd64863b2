"""CUDA C sources of the GPU kernels, importable without CuPy.

``_gpu.py`` compiles them with CuPy (NVRTC) on a device; the tests compile the same text with
``nvcc`` where it is installed (``tests/test_cuda_sources.py``), so that a session with no
device still checks that it is valid CUDA.
"""

from __future__ import annotations

# Sources are staged through shared memory a tile at a time (one tile per block of threads,
# each thread loading one source): every thread then reads x, y, z, q of a source from shared
# memory instead of four global loads per pair. The sum over j keeps its order, so the result
# is that of the untiled kernel bit for bit. Threads past the last target still load and
# synchronise. Not yet run on a device (no GPU in the session that wrote it).
DIRECT_THREADS = 128

DIRECT = r"""
struct Source { double x, y, z, q; };

extern "C" __global__
void direct_kernel(const double* pos, const double* q, const double* tgt,
                   const long long n, const long long m, const int code,
                   const double* weights, const double* exponents, const int nterms,
                   const double cutoff2, double* out)
{
    __shared__ Source tile[THREADS];
    const long long i = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    const bool active = i < m;
    double x = 0.0, y = 0.0, z = 0.0;
    if (active) { x = tgt[3 * i]; y = tgt[3 * i + 1]; z = tgt[3 * i + 2]; }
    double acc = 0.0;
    for (long long base = 0; base < n; base += THREADS) {
        const long long jl = base + threadIdx.x;
        if (jl < n) {
            tile[threadIdx.x].x = pos[3 * jl];
            tile[threadIdx.x].y = pos[3 * jl + 1];
            tile[threadIdx.x].z = pos[3 * jl + 2];
            tile[threadIdx.x].q = q[jl];
        }
        __syncthreads();
        const int count = (n - base < THREADS) ? (int)(n - base) : THREADS;
        if (active) {
            #pragma unroll 4
            for (int s = 0; s < count; ++s) {
                const Source p = tile[s];
                double dx = x - p.x, dy = y - p.y, dz = z - p.z;
                double r2 = dx * dx + dy * dy + dz * dz;
                if (code == 2 && r2 >= cutoff2) continue;
                double smooth = 0.0;
                if (code != 0) {
                    for (int k = 0; k < nterms; ++k) smooth += weights[k] * exp(-exponents[k] * r2);
                }
                if (code == 1) { acc += p.q * smooth; continue; }
                double inv = (r2 == 0.0) ? 0.0 : rsqrt(r2);
                acc += (code == 0) ? p.q * inv : p.q * (inv - smooth);
            }
        }
        __syncthreads();
    }
    if (active) out[i] = acc;
}
""".replace("THREADS", str(DIRECT_THREADS))


def sources() -> dict[str, str]:
    """Every kernel's complete text as ``_gpu.py`` compiles it (for the compile check)."""
    return {"direct_kernel": DIRECT}

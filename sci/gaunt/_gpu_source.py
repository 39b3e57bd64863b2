"""CUDA C sources of the GPU kernels, importable without CuPy.

``_gpu.py`` compiles them with CuPy (NVRTC) on a device; the tests compile the same text with
``nvcc`` where it is installed (``tests/test_cuda_sources.py``), so that a session with no
device still checks that it is valid CUDA.
"""

from __future__ import annotations

CONTRACT = r"""
extern "C" __global__ void gaunt_contract_{name}(
    const {t}* x, const {t}* y, const long long* i1, const long long* i2,
    const long long* starts, const double* vals, {t}* out,
    long long rows, long long n1, long long n2, long long n_out)
{{
    long long tid = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (tid >= rows * n_out) return;
    long long r = tid / n_out;
    long long o = tid - r * n_out;
    {acc} acc = 0;
    for (long long k = starts[o]; k < starts[o + 1]; ++k) {{
        acc += ({acc})vals[k] * ({acc})x[r * n1 + i1[k]] * ({acc})y[r * n2 + i2[k]];
    }}
    out[tid] = ({t})acc;
}}
"""


def contract_source(dtype_name: str) -> str:
    """The direct contraction's text for ``dtype_name`` (float32 or float64)."""
    t = {"float32": "float", "float64": "double"}[dtype_name]
    return CONTRACT.format(name=dtype_name, t=t, acc=t)


def sources() -> dict[str, str]:
    """Every kernel's complete text as ``_gpu.py`` compiles it (for the compile check)."""
    return {f"gaunt_contract_{name}": contract_source(name) for name in ("float32", "float64")}

"""CuPy kernels of :mod:`sci.gaunt` (imported lazily, only under the ``cupy`` backend).

The FFTs and the batched conversions run through CuPy's array API (cuFFT, cuBLAS); only the
sparse Gaunt contraction of the ``"direct"`` method has a kernel of its own: one thread per
(row, output coefficient), summing that output's segment of the table.

This path has not been run on a GPU in development (no device was available).
"""

from __future__ import annotations

import functools

import cupy
import numpy as np

_SOURCE = r"""
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


@functools.cache
def _kernel(dtype_name: str):
    t, acc = {"float32": ("float", "float"), "float64": ("double", "double")}[dtype_name]
    code = _SOURCE.format(name=dtype_name, t=t, acc=acc)
    return cupy.RawKernel(code, f"gaunt_contract_{dtype_name}")


def direct_contract(x, y, i1, i2, starts, vals, n_out):
    """z[r, o] = sum over the table entries k of output o of vals[k] x[r, i1[k]] y[r, i2[k]]."""
    dtype = cupy.result_type(x.dtype, y.dtype)
    if dtype.kind == "c":
        # Complex coefficients: the real and imaginary parts by the array code.
        from ._product import _direct_contract_array

        return _direct_contract_array(x, y, i1, i2, starts, vals, n_out)
    x = cupy.ascontiguousarray(x, dtype=dtype)
    y = cupy.ascontiguousarray(y, dtype=dtype)
    rows = x.shape[0]
    out = cupy.empty((rows, n_out), dtype=dtype)
    total = rows * n_out
    if total == 0:
        return out
    threads = 256
    blocks = (total + threads - 1) // threads
    _kernel(dtype.name)(
        (blocks,), (threads,),
        (x, y, cupy.asarray(i1), cupy.asarray(i2), cupy.asarray(starts),
         cupy.asarray(vals, dtype=cupy.float64), out,
         np.int64(rows), np.int64(x.shape[1]), np.int64(y.shape[1]), np.int64(n_out)),
    )
    return out

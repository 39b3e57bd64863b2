"""CuPy kernels of :mod:`sci.gaunt` (imported lazily, only under the ``cupy`` backend).

The FFTs and the batched conversions run through CuPy's array API (cuFFT, cuBLAS); only the
sparse Gaunt contraction of the ``"direct"`` method has a kernel of its own: one thread per
(row, output coefficient), summing that output's segment of the table.

This path has not been run on a GPU in development (no device was available).
"""

from __future__ import annotations

import functools
import weakref

import cupy
import numpy as np

from . import _gpu_source

# Device copies of the Gaunt tables' host arrays (index1, index2, segment starts, values),
# made once per array and device: the tables are cached on the host (``gaunt_table``), and a
# copy per call was four synchronous host-to-device transfers in every product. An entry is
# dropped when its host array is freed (so an id is never reused for another array).
_DEVICE_COPIES: dict[tuple[int, int, str], cupy.ndarray] = {}


def _device_copy(host, dtype=None):
    """``cupy.asarray(host, dtype)`` on the current device, made once per host array."""
    if not isinstance(host, np.ndarray):
        return cupy.asarray(host, dtype=dtype)
    key = (id(host), cupy.cuda.Device().id, str(dtype))
    copy = _DEVICE_COPIES.get(key)
    if copy is None:
        copy = _DEVICE_COPIES[key] = cupy.asarray(host, dtype=dtype)
        weakref.finalize(host, _DEVICE_COPIES.pop, key, None)
    return copy


@functools.cache
def _kernel(dtype_name: str):
    return cupy.RawKernel(_gpu_source.contract_source(dtype_name),
                          f"gaunt_contract_{dtype_name}")


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
        (x, y, _device_copy(i1), _device_copy(i2), _device_copy(starts),
         _device_copy(vals, cupy.float64), out,
         np.int64(rows), np.int64(x.shape[1]), np.int64(y.shape[1]), np.int64(n_out)),
    )
    return out

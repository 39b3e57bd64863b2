"""The public functions on CuPy arrays, end to end on the CPU: the counting stand-in for CuPy
(``tests/_counting_cupy.py``, NumPy underneath) with a ``RawKernel`` that runs sci's attention
kernels' CUDA text on the host (``_host_cuda.py``).

This runs what a CuPy user's call runs (validation, the dispatch table's ``"cupy"`` entry,
``_gpu.py``'s choice of kernel, the launch, the combination) and counts what a GPU would be
asked for: array operations (kernel launches), host-to-device copies and device reads. No
CUDA device has run this path yet; these tests are what a session without one can hold it to.
"""

from __future__ import annotations

import numpy as np
import pytest

import sci
from sci.tensor_attention import _gpu_source, higher_order_attention, softmax_attention


def _counted(cupy, call):
    cupy.COUNTS.clear()
    out = call()
    return out, dict(cupy.COUNTS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("order, n, d, d_v, causal",
                         [(2, 90, 4, 4, True), (3, 20, 4, 6, False), (3, 20, 24, 24, True),
                          (4, 7, 20, 3, True)])
def test_cupy_arrays_run_the_kernels_with_no_copy_and_three_reads(cupy_running_kernels,
                                                          dense_reference, order, n, d, d_v,
                                                          causal, dtype):
    """Narrow rows take the per-thread kernel, wide ones the tiled kernel; the result is a
    CuPy array of the inputs' dtype. A call copies nothing to the device and reads back three
    small results, each a check that stops a wrong answer: the inputs all finite, the bound
    on the logits (one stacked reduction), the output finite (an overflow)."""
    cupy = cupy_running_kernels
    rng = np.random.default_rng(n + d)
    host = [rng.uniform(-1, 1, (n, d if i < order else d_v)) for i in range(2 * order - 1)]
    Q, keys, values = host[0], host[1:order], host[order:]
    on_device = [cupy.asarray(x, dtype=dtype) for x in host]
    with sci.use_backend("cupy"):
        def call():
            return higher_order_attention(on_device[0], on_device[1:order],
                                          on_device[order:], causal=causal)

        call()  # first call: the kernel compiled
        got, counts = _counted(cupy, call)
    assert type(got).__module__ == "cupy" and got.dtype == dtype and got.shape == (n, d_v)
    assert counts.get("h2d", 0) == 0, counts
    assert counts.get("d2h", 0) == 3, counts
    narrow = max(d, d_v) <= _gpu_source.FUSED_WIDTH
    assert cupy.RawKernel.launches[-1] == (_gpu_source.FUSED_ATTENTION_NAME if narrow
                                           else _gpu_source.TILED_ATTENTION_NAME)
    want = dense_reference([x.astype(dtype).astype(float) for x in (Q,)][0],
                           [k.astype(dtype).astype(float) for k in keys],
                           [v.astype(dtype).astype(float) for v in values], causal=causal)
    tolerance = 1e-13 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(got.get(), want, rtol=0, atol=tolerance)


@pytest.mark.parametrize("d", [4, 40])
def test_operations_per_call_do_not_grow_with_n(cupy_running_kernels, d):
    """Matrix attention: the same number of array operations (kernel launches on a GPU) at
    n = 64 and n = 512, and few: 15 for the checks (inputs finite, the logits' bound, the
    output finite), up to 9 to lay out the inputs and partials (zero columns to the tiled
    kernel's width at d = 40), the kernel, 8 to combine its partials. Neither the inputs'
    dtype conversion nor the result's is a copy, and no log-sum-exp is formed for a CuPy
    call (only the torch Function's backward needs it)."""
    cupy = cupy_running_kernels
    counts = {}
    for n in (64, 512):
        rng = np.random.default_rng(n)
        Q, K, V = (cupy.asarray(rng.uniform(-1, 1, (n, d))) for _ in range(3))
        with sci.use_backend("cupy"):
            softmax_attention(Q, K, V)
            _, counts[n] = _counted(cupy, lambda Q=Q, K=K, V=V: softmax_attention(Q, K, V))
    assert counts[64]["op"] == counts[512]["op"], counts
    assert counts[512]["op"] <= 31, counts

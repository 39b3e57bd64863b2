"""sci's CUDA attention kernels at small sizes, checked against NumPy: the program that
``.ci/device-check`` runs under ``compute-sanitizer`` (memcheck: out-of-bounds and misaligned
accesses; racecheck: shared-memory hazards between the threads of a block, which the CPU
tests' stand-in for CUDA can only show as wrong results).

Run on a CUDA machine: ``python3 .ci/sanitize_attention.py`` (exit 0 when every case agrees
with NumPy). Each kernel is launched a few times on a few hundred blocks at most, so that the
sanitizer's slowdown (tens to hundreds of times) stays within a minute.
"""

from __future__ import annotations

import sys

import cupy
import numpy as np

import sci
from sci.tensor_attention import _gpu, higher_order_attention

# (order t, n, d, d_v, causal): matrix over several query tiles and key slices, order 3 with
# tuple tiles past the causal limit (blocks that skip their keys), order 4, d_v != d
CASES = [(2, 130, 24, 24, True), (3, 70, 40, 24, True), (3, 30, 4, 4, False),
         (4, 9, 17, 17, True)]


def main() -> int:
    worst = 0.0
    for order, n, d, d_v, causal in CASES:
        rng = np.random.default_rng(order * n + d)
        Q = rng.uniform(-1, 1, (n, d))
        keys = [rng.uniform(-1, 1, (n, d)) for _ in range(order - 1)]
        values = [rng.uniform(-1, 1, (n, d_v)) for _ in range(order - 1)]
        with sci.use_backend("numpy"):
            want = higher_order_attention(Q, keys, values, causal=causal)
        for dtype in ("float64", "float32"):
            args = (cupy.asarray(Q, dtype=dtype), [cupy.asarray(k, dtype=dtype) for k in keys],
                    [cupy.asarray(v, dtype=dtype) for v in values], 1.0 / d, causal)
            runs = {"tiled": _gpu.tiled_attention(*args)[0]}
            if max(d, d_v) <= _gpu._FUSED_WIDTH:
                runs["per-thread"] = _gpu.fused_attention(*args)[0]
            for kernel, out in runs.items():
                error = float(np.max(np.abs(cupy.asnumpy(out) - want)))
                tolerance = 1e-12 if dtype == "float64" else 2e-6
                worst = max(worst, error / tolerance)
                print(f"order {order} n={n} d={d} d_v={d_v} causal={causal} {dtype} {kernel}: "
                      f"max error {error:.2e} (tolerance {tolerance:.0e})", flush=True)
    cupy.cuda.Device().synchronize()
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""CuPy kernels of sci.neural_collapse (imported lazily; never by ``import sci``)."""

from __future__ import annotations

from typing import Any

import cupy
import cupyx


def class_sums(D: Any, labels: Any, K: int) -> Any:
    """Per-class row sums of ``D`` (n, d) by ``labels`` (n,): atomic adds on the device."""
    sums = cupy.zeros((K, D.shape[1]), dtype=D.dtype)
    cupyx.scatter_add(sums, labels, D)
    return sums

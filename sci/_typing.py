"""Type aliases of the public signatures.

Functions return arrays of their inputs' library (NumPy, CuPy, torch, any array-API library),
and, with no array input, of the switch's (NumPy, or CuPy on the ``cupy`` backend). ``Array``
names NumPy and CuPy to type checkers; at run time it is :class:`numpy.ndarray` (CuPy is
optional and never imported here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import cupy  # type: ignore[import-not-found, unused-ignore]

    Array: TypeAlias = np.ndarray | cupy.ndarray
else:
    Array: TypeAlias = np.ndarray

__all__ = ["Array"]

"""Array namespaces and moving arrays to the active backend, never silently off the GPU."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from ._switch import get_backend


def is_cupy_array(x: Any) -> bool:
    """True when ``x`` is a CuPy array (tested without importing CuPy)."""
    return type(x).__module__.split(".")[0] == "cupy"


def array_namespace(backend: str | None = None) -> ModuleType:
    """The array module ``xp`` of ``backend`` (default: the active one).

    ``numpy`` for ``"numpy"`` and ``"numba"``, ``cupy`` for ``"cupy"`` (imported here, lazily).

    Examples
    --------
    >>> import sci
    >>> from sci.backend import array_namespace
    >>> with sci.use_backend("numpy"):
    ...     array_namespace().__name__
    'numpy'
    """
    backend = get_backend() if backend is None else backend
    if backend == "cupy":
        return importlib.import_module("cupy")
    return np


def asarray(x: Any, *, dtype: Any = None, name: str = "x") -> Any:
    """``x`` as an array of the active backend.

    Under ``"cupy"`` host arrays are moved to the device (the user asked for the GPU). Under
    the CPU backends a CuPy array raises :class:`TypeError`: a device-to-host copy is the
    user's decision, never a silent one.

    Parameters
    ----------
    x : array_like
    dtype : dtype, optional
    name : str
        The argument's name, used in the error message.
    """
    backend = get_backend()
    if backend == "cupy":
        return array_namespace("cupy").asarray(x, dtype=dtype)
    if is_cupy_array(x):
        raise TypeError(
            f"{name} is a CuPy (GPU) array but the active backend is {backend!r}; "
            "use `with sci.use_backend('cupy'):` to compute on the GPU, or move it to the host "
            "with `cupy.asnumpy(...)` first"
        )
    return np.asarray(x, dtype=dtype)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of ``x`` wherever it lives (explicit device-to-host transfer)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)

"""The one array-backend switch: NumPy (reference), Numba (CPU kernels), CuPy (GPU).

Selecting a backend
-------------------
set_backend          -- set the process default
use_backend          -- context manager (contextvars: thread- and asyncio-safe)
get_backend          -- the active backend
available_backends   -- the backends that can run here
BACKENDS             -- every known backend name

Writing code for all of them
----------------------------
array_namespace      -- ``xp``: numpy or cupy, for plain array code written once
asarray              -- an input as an array of the active backend (refuses silent GPU->CPU)
to_numpy             -- explicit copy to the host
register             -- register an implementation for (operation, backend)
implementation       -- look up what runs an operation on the active backend
NumbaFallbackWarning -- a Numba kernel did not compile here; its NumPy implementation ran
"""

from ._arrays import array_namespace, asarray, is_cupy_array, to_numpy
from ._dispatch import NumbaFallbackWarning, implementation, register, registered_operations
from ._switch import (
    BACKENDS,
    BackendNotAvailableError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)

__all__ = [
    "BACKENDS",
    "BackendNotAvailableError",
    "NumbaFallbackWarning",
    "array_namespace",
    "asarray",
    "available_backends",
    "get_backend",
    "implementation",
    "is_cupy_array",
    "register",
    "registered_operations",
    "set_backend",
    "to_numpy",
    "use_backend",
]

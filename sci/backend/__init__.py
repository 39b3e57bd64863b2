"""The one array-backend switch: NumPy (reference), Numba (CPU kernels), CuPy (GPU).

Selecting a backend
-------------------
set_backend          -- set the process default
use_backend          -- context manager (contextvars: thread- and asyncio-safe)
get_backend          -- the active backend
available_backends   -- the backends that can run here
BACKENDS             -- every known backend name

Where a call computes (the namespace comes from the inputs)
-----------------------------------------------------------
array_context        -- namespace, device and dispatch key of a call's array arguments
switch_context       -- the same for a call with no array input: the switch's library
creation_context     -- where a function with no array input creates its result (xp=, device=)
ArrayContext         -- what both return
cached_constant      -- a NumPy constant in a context's namespace/device/dtype, converted once
to_numpy             -- the explicit copy to the host, from any library or device

Older helpers
-------------
array_namespace      -- ``xp`` of the switch: numpy or cupy
asarray              -- an input as an array of the active backend (refuses silent GPU->CPU)
register             -- register an implementation for (operation, backend)
implementation       -- look up what runs an operation on the active backend
NumbaFallbackWarning -- a Numba kernel did not compile here; its NumPy implementation ran
"""

from ._arrays import (
    ArrayContext,
    array_context,
    array_namespace,
    asarray,
    cached_constant,
    creation_context,
    is_cupy_array,
    is_torch_array,
    switch_context,
    to_numpy,
)
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
    "ArrayContext",
    "BackendNotAvailableError",
    "NumbaFallbackWarning",
    "array_context",
    "array_namespace",
    "asarray",
    "available_backends",
    "cached_constant",
    "creation_context",
    "get_backend",
    "implementation",
    "is_cupy_array",
    "is_torch_array",
    "register",
    "registered_operations",
    "set_backend",
    "switch_context",
    "to_numpy",
    "use_backend",
]

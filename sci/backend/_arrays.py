"""Where a call computes: the namespace and device of its array inputs, on the array API.

The rules (the Backends page of the docs says the same):

* Arrays of a library (CuPy, torch, ``array_api_strict``, ...) are computed on in that library
  and on their device, and the result comes back there.
* NumPy arrays, lists and scalars follow the switch: NumPy (``"numpy"`` or ``"numba"``
  kernels), or the GPU under ``use_backend("cupy")`` (the user asked for it).
* Arrays of two libraries, or on two devices, raise :class:`TypeError` naming the arguments.
* A function with no array input computes where the switch says (:func:`switch_context`).

NumPy inputs take a fast path: no ``array_api_compat`` inspection at all.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .._typing import Array
from ._switch import get_backend

__all__ = [
    "ArrayContext",
    "array_context",
    "array_namespace",
    "asarray",
    "cached_constant",
    "creation_context",
    "is_cupy_array",
    "is_torch_array",
    "library_of",
    "switch_context",
    "to_numpy",
]


def library_of(x: Any) -> str:
    """The top-level module of ``x``'s type (``"numpy"``, ``"cupy"``, ``"torch"``, ...)."""
    return type(x).__module__.split(".")[0]


def is_cupy_array(x: Any) -> bool:
    """True when ``x`` is a CuPy array (tested without importing CuPy)."""
    return library_of(x) == "cupy"


def is_torch_array(x: Any) -> bool:
    """True when ``x`` is a torch tensor (tested without importing torch)."""
    return library_of(x) == "torch" and hasattr(x, "requires_grad")


def _is_host(x: Any) -> bool:
    """NumPy arrays and scalars, Python numbers, lists, tuples and ``None``: array-likes that
    follow the switch."""
    return (
        x is None
        or isinstance(x, np.ndarray | np.generic | int | float | complex | bool | list | tuple)
    )


@dataclass(frozen=True)
class ArrayContext:
    """Where a call computes.

    Attributes
    ----------
    xp : module
        The array namespace (``array_api_compat``'s for NumPy, CuPy and torch; the library
        itself for a compliant one such as ``array_api_strict``).
    device : object
        The device of the inputs (``"cpu"`` for NumPy).
    backend : {"numpy", "numba", "cupy", "array"}
        The key of the dispatch table: which kernels serve the call (``"array"``: the array
        code written against the standard, for every library without kernels of its own).
    """

    xp: ModuleType
    device: Any
    backend: str

    @property
    def library(self) -> str:
        """``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ..."""
        name = self.xp.__name__
        return name.split(".")[1] if name.startswith("array_api_compat.") else name

    @property
    def is_numpy(self) -> bool:
        return self.library == "numpy"

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """``x`` in this namespace, on this device (a host array is copied there)."""
        if self.is_numpy:
            return np.asarray(x, dtype=dtype)
        if not _is_host(x) and library_of(x) == library_of_namespace(self.xp):
            # already here (array_context checked the device): no copy, autograd kept
            return x if dtype is None else self.xp.astype(x, dtype)
        if self.library == "torch" and _is_host(x):
            # Through NumPy: torch reads Python floats as float32 (its default dtype), which
            # would round 0.2 ** 0.5 in a float64 call; and torch.asarray would share a NumPy
            # array's buffer. np.array copies, in C order, and keeps a 0-d input 0-d.
            return self.xp.asarray(np.array(x, order="C"), dtype=dtype, device=self.device)
        return self.xp.asarray(x, dtype=dtype, device=self.device)

    def describe(self) -> str:
        """e.g. ``"torch arrays on cpu"``, for messages."""
        return f"{self.library} arrays on {self.device}"

    def __reduce__(self):
        # A module does not pickle: a context sent to a worker (a task of sci.parallel) goes
        # by its namespace's name and is rebuilt there.
        return (_rebuild_context, (self.xp.__name__, self.device, self.backend))


def _rebuild_context(namespace: str, device: Any, backend: str) -> ArrayContext:
    return ArrayContext(importlib.import_module(namespace), device, backend)


def library_of_namespace(xp: ModuleType) -> str:
    """The library a namespace's arrays belong to (``array_api_compat.torch`` -> ``torch``)."""
    name = xp.__name__
    return name.split(".")[1] if name.startswith("array_api_compat.") else name.split(".")[0]


def switch_context(backend: str | None = None) -> ArrayContext:
    """The context of a call with no array input: the switch's library and device.

    ``"numpy"`` and ``"numba"``: NumPy on the host; ``"cupy"``: CuPy on the current device.
    """
    backend = get_backend() if backend is None else backend
    if backend == "cupy":
        cupy = importlib.import_module("cupy")
        return ArrayContext(_compat("cupy"), cupy.cuda.Device(), "cupy")
    return _host_context(backend)


@functools.cache
def _host_context(backend: str) -> ArrayContext:
    """The NumPy context of a CPU backend (immutable: built once per name)."""
    return ArrayContext(_compat("numpy"), "cpu", backend)


def creation_context(xp: Any = None, device: Any = None) -> ArrayContext:
    """Where a function with no array input creates its result.

    Parameters
    ----------
    xp : module, optional
        The array library (``numpy``, ``cupy``, ``torch``, ``array_api_strict``, or an
        ``array_api_compat`` namespace). Default: the switch's (NumPy, or CuPy under
        ``use_backend("cupy")``).
    device : optional
        A device of that library (``"cuda:1"`` for torch, ``cupy.cuda.Device(1)``,
        ``array_api_strict.Device("device1")``, ...). Default: the library's default device.

    Examples
    --------
    >>> import numpy as np, sci
    >>> from sci.backend import creation_context
    >>> with sci.use_backend("numpy"):
    ...     creation_context().library, creation_context(np).device
    ('numpy', 'cpu')
    """
    if xp is None:
        ctx = switch_context()
        if device is None or (ctx.is_numpy and device == "cpu"):
            return ctx
        if ctx.is_numpy:
            raise ValueError(
                f"device={device!r} needs a device library: pass xp= (e.g. xp=torch) or use "
                "sci.use_backend('cupy'); NumPy arrays live on 'cpu'"
            )
        cupy = importlib.import_module("cupy")
        dev = device if isinstance(device, cupy.cuda.Device) else cupy.cuda.Device(device)
        return ArrayContext(ctx.xp, dev, "cupy")
    if not isinstance(xp, ModuleType) or not hasattr(xp, "asarray"):
        raise TypeError(
            f"xp must be an array library module (numpy, cupy, torch, array_api_strict, ...); "
            f"got {type(xp).__name__}"
        )
    library = library_of_namespace(xp)
    if library == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"NumPy arrays live on 'cpu'; got device={device!r}")
        backend = get_backend()
        return ArrayContext(_compat("numpy"), "cpu", "numpy" if backend == "cupy" else backend)
    compat = importlib.import_module("array_api_compat")
    probe = xp.empty(0) if device is None else xp.empty(0, device=device)
    namespace = compat.array_namespace(probe)
    return ArrayContext(namespace, compat.device(probe), "cupy" if library == "cupy" else "array")


def _compat(library: str) -> ModuleType:
    return importlib.import_module(f"array_api_compat.{library}")


def _describe_argument(name: str, x: Any) -> str:
    device = _device(x)
    where = f" on {device}" if device is not None else ""
    return f"{name} ({type(x).__module__}.{type(x).__qualname__}{where})"


def _device(x: Any) -> Any:
    if isinstance(x, np.ndarray | np.generic):
        return "cpu"
    try:
        return importlib.import_module("array_api_compat").device(x)
    except Exception:  # not an array the compat layer knows; the namespace check will say so
        return getattr(x, "device", None)


def array_context(*arrays: Any, names: Sequence[str] | None = None) -> ArrayContext:
    """Where a call with these array arguments computes (see the module's rules).

    Parameters
    ----------
    *arrays : array_like
        The call's array arguments (``None`` is skipped).
    names : sequence of str, optional
        Their names, for the error message (default ``arg0, arg1, ...``).

    Raises
    ------
    TypeError
        Arrays of two libraries, or on two devices; the message names the arguments and
        what each is.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.backend import array_context
    >>> import sci
    >>> with sci.use_backend("numpy"):
    ...     array_context(np.ones(3), [1.0, 2.0]).backend
    'numpy'
    >>> import array_api_strict as strict
    >>> ctx = array_context(strict.ones(3, device=strict.Device("device1")))
    >>> ctx.library, ctx.device, ctx.backend
    ('array_api_strict', array_api_strict.Device('device1'), 'array')
    >>> array_context(np.ones(3), strict.ones(3), names=("x", "y"))
    Traceback (most recent call last):
    ...
    TypeError: x and y are arrays of different libraries: x (numpy.ndarray on cpu), y (...)
    """
    backend = get_backend()
    foreign = [
        (i, x) for i, x in enumerate(arrays)
        if not _is_host(x) and not (backend == "cupy" and is_cupy_array(x))
    ]
    if not foreign:  # the NumPy fast path (and host inputs under the cupy switch)
        return switch_context(backend)
    if names is None:
        names = [f"arg{i}" for i in range(len(arrays))]
    for i, x in foreign:
        if library_of(x) == "dask":
            # a lazy collection is not an in-memory array of a library: the functions that
            # take Dask arrays handle them before they get here
            raise TypeError(
                f"{names[i]} is a Dask array, which this function does not take (Dask arrays "
                "are accepted by nc_metrics, ChebTucker.on_grid/to_tucker and "
                f"direct_potential); compute it first ({names[i]}.compute())"
            )
    if backend != "cupy":
        # NumPy arrays are a library of their own once another is present; lists and scalars
        # are not (they follow the other arrays).
        numpy_args = [i for i, x in enumerate(arrays) if isinstance(x, np.ndarray)]
        if numpy_args:
            i, j = sorted((numpy_args[0], foreign[0][0]))
            raise TypeError(
                f"{names[i]} and {names[j]} are arrays of different libraries: "
                f"{_describe_argument(names[i], arrays[i])}, "
                f"{_describe_argument(names[j], arrays[j])}; convert one to the other's library "
                "(sci.backend.to_numpy for NumPy)"
            )
    compat = importlib.import_module("array_api_compat")
    first_index, first = foreign[0]
    libraries = {library_of(x) for _, x in foreign}
    if len(libraries) > 1:
        other_index, _ = next((i, x) for i, x in foreign if library_of(x) != library_of(first))
        raise TypeError(
            f"{names[first_index]} and {names[other_index]} are arrays of different libraries: "
            f"{_describe_argument(names[first_index], first)}, "
            f"{_describe_argument(names[other_index], arrays[other_index])}"
        )
    try:
        xp = compat.array_namespace(first)
    except TypeError as exc:
        raise TypeError(
            f"{names[first_index]} must be an array (NumPy, CuPy, torch or another array-API "
            f"library), a list or a number; got {type(first).__module__}."
            f"{type(first).__qualname__}"
        ) from exc
    device = compat.device(first)
    for i, x in foreign[1:]:
        if compat.device(x) != device:
            raise TypeError(
                f"{names[first_index]} and {names[i]} are on different devices: "
                f"{_describe_argument(names[first_index], first)}, "
                f"{_describe_argument(names[i], x)}; move one with .to_device() or .to()"
            )
    library = library_of(first)
    if library == "cupy":
        key = "cupy"
    elif library == "numpy":  # a NumPy array subclass or compat wrapper: the host kernels
        key = backend if backend != "cupy" else "numpy"
    else:
        key = "array"
    return ArrayContext(xp, device, key)


def array_namespace(backend: str | None = None) -> ModuleType:
    """The array module ``xp`` of the switch (default: the active backend).

    ``numpy`` for ``"numpy"`` and ``"numba"``, ``cupy`` for ``"cupy"`` (imported here, lazily).
    Code that has array inputs takes its namespace from them instead (:func:`array_context`).

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
    """``x`` as an array of the active backend (for code not yet on :func:`array_context`).

    Under ``"cupy"`` host arrays are moved to the device (the user asked for the GPU). Under
    the CPU backends a CuPy array raises :class:`TypeError`: a device-to-host copy is the
    user's decision, never a silent one. So does any other non-NumPy array (torch,
    ``array_api_strict``): a function that takes them works in their namespace instead.

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
    if (not _is_host(x) and hasattr(x, "__array_namespace__")) or is_torch_array(x):
        device = _device(x)
        raise TypeError(
            f"{name} is a {type(x).__module__}.{type(x).__qualname__}"
            f"{f' on {device}' if device is not None else ''}, which this function does not "
            "take yet (it takes NumPy arrays, or CuPy under use_backend('cupy')); convert it "
            "with sci.backend.to_numpy(...) first"
        )
    return np.asarray(x, dtype=dtype)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy array of ``x`` wherever it lives: the explicit device-to-host transfer.

    CuPy arrays are copied with ``.get()``; torch tensors are detached and copied to the CPU;
    other array-API arrays go to their CPU device first (``array_api_strict`` refuses an
    implicit conversion from another device, as CuPy does).

    Examples
    --------
    >>> import array_api_strict as strict
    >>> from sci.backend import to_numpy
    >>> to_numpy(strict.asarray([1.0, 2.0], device=strict.Device("device1")))
    array([1., 2.])
    """
    library = library_of(x)
    if library == "cupy":  # before the NumPy test: a stand-in for CuPy may subclass ndarray
        return x.get()
    if isinstance(x, np.ndarray):
        return x
    if is_torch_array(x):
        x = x.detach()
        if x.is_complex():
            x = x.resolve_conj()
        return x.cpu().numpy()
    if library == "array_api_strict":
        strict = importlib.import_module("array_api_strict")
        return np.from_dlpack(x.to_device(strict.Device("CPU_DEVICE")))
    if hasattr(x, "__dlpack__") and not isinstance(x, np.generic):
        return np.from_dlpack(x)
    return np.asarray(x)


# Constants (tables, quadrature weights) converted to (namespace, device, dtype) once.
_CONSTANTS_MAX = 256
_constants: OrderedDict[tuple, Any] = OrderedDict()
_constants_lock = threading.Lock()


def _device_key(device: Any) -> str:
    return f"{type(device).__module__}.{type(device).__qualname__}:{device!r}"


def cached_constant(
    key: Any, build: Callable[[], np.ndarray], ctx: ArrayContext, dtype: Any = None
) -> Array:
    """``build()`` (a NumPy array) converted to ``ctx``'s namespace, device and ``dtype``,
    once: later calls with the same ``key``, namespace, device and dtype get the same array.

    ``key`` must identify what ``build`` computes (e.g. ``("gaunt.legendre_fourier", lmax)``).
    ``dtype`` is a dtype of ``ctx.xp`` (or ``None``: keep NumPy's). The cache keeps the 256
    most recently used constants; on NumPy nothing is converted (``build`` may cache itself).
    Callers must not modify the returned array.
    """
    if ctx.is_numpy:
        value = build()
        return value if dtype is None else value.astype(dtype, copy=False)
    full_key = (key, ctx.xp.__name__, _device_key(ctx.device), str(dtype))
    with _constants_lock:
        value = _constants.get(full_key)
        if value is not None:
            _constants.move_to_end(full_key)
            return value
    value = ctx.asarray(build())
    if dtype is not None:
        value = ctx.xp.astype(value, dtype)
    with _constants_lock:
        _constants[full_key] = value
        while len(_constants) > _CONSTANTS_MAX:
            _constants.popitem(last=False)
    return value

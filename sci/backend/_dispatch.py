"""The dispatch table from (operation, backend) to an implementation.

Implementations are registered once, next to their code:

* ``"array"``: plain array code written against the namespace ``xp`` of the active backend
  (:func:`sci.backend.array_namespace`); it serves every backend that has nothing more
  specific.
* ``"numpy"``: NumPy/SciPy-only code (it may not run on CuPy arrays); it also serves
  ``"numba"`` when no Numba kernel is registered.
* ``"numba"`` / ``"cupy"``: the hot-loop kernels in a subpackage's ``_cpu.py`` / ``_gpu.py``.

The key a call looks up is :attr:`ArrayContext.backend <sci.backend.ArrayContext>` of its
inputs: the switch's name for NumPy inputs, ``"cupy"`` for CuPy arrays, ``"array"`` for every
other library (torch, ``array_api_strict``, ...), which only ``"array"`` registrations serve.

A kernel module is registered *lazily* by its dotted path (``"sci.gaunt._gpu:convert"``) so
that ``import sci`` never imports CuPy or compiles Numba code.

A Numba kernel that cannot be compiled here (a Python or Numba release it was never built
for) never shows the user Numba's internal error: the operation warns once
(:class:`NumbaFallbackWarning`) and runs its NumPy implementation from then on.
"""

from __future__ import annotations

import functools
import importlib
import platform
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from ._switch import BACKENDS, get_backend

_TARGETS = (*BACKENDS, "array")

# Which registrations serve a backend, most specific first.
_LOOKUP_ORDER: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy", "array"),
    "numba": ("numba", "numpy", "array"),
    "cupy": ("cupy", "array"),
    # any other array-API library (torch, array_api_strict, ...): the code written once
    "array": ("array",),
}

_table: dict[tuple[str, str], Callable[..., Any] | str] = {}
_lock = threading.Lock()
# Operations whose Numba kernel failed to compile (or to import) here, with the reason; they
# run their NumPy implementation for the rest of the process.
_broken: dict[str, str] = {}


class NumbaFallbackWarning(RuntimeWarning):
    """A Numba kernel could not be compiled here; ``sci`` runs the NumPy implementation instead.

    The results are the same (the NumPy implementations are the reference the kernels are
    tested against); only the speed differs. Silence it with
    ``warnings.filterwarnings("ignore", category=sci.backend.NumbaFallbackWarning)``, or choose
    the NumPy kernels outright (``sci.set_backend("numpy")`` or ``SCI_BACKEND=numpy``).
    """


def _versions() -> str:
    numba = sys.modules.get("numba")
    numpy = sys.modules.get("numpy")
    return (
        f"Python {platform.python_version()}, "
        f"Numba {getattr(numba, '__version__', 'not imported')}, "
        f"NumPy {getattr(numpy, '__version__', 'not imported')}"
    )


def _is_compile_failure(exc: BaseException) -> bool:
    """Whether ``exc`` came out of Numba's compiler rather than out of the compiled code.

    Numba's own errors (typing, lowering) are :class:`numba.core.errors.NumbaError`; an
    internal failure of one of its passes (an ``AssertionError`` in the parfor pass, say) is
    recognised by the compiling dispatcher in its traceback. An exception that the compiled code
    raises at run time (a ``ValueError`` from a check in the kernel) has neither, and is the
    caller's business.
    """
    errors = sys.modules.get("numba.core.errors")
    if errors is not None and isinstance(exc, errors.NumbaError):
        return True
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").startswith("numba.") and frame.f_code.co_name in (
            "_compile_for_args", "compile", "_compile_core", "compile_extra", "compile_ir",
        ):
            return True
        tb = tb.tb_next
    return False


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message``: Numba's messages run to dozens of lines."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _fall_back(operation: str, reason: str) -> Callable[..., Any]:
    """Record that ``operation``'s Numba kernel cannot run here, warn once, return the NumPy one."""
    with _lock:
        first = operation not in _broken
        _broken.setdefault(operation, reason)
    if first:
        warnings.warn(
            f"sci: the Numba kernel of {operation!r} cannot be compiled here ({_versions()}; "
            f"{reason}). sci runs its NumPy implementation instead: the same results, more "
            "slowly. To silence this, use the NumPy kernels (sci.set_backend('numpy') or "
            "SCI_BACKEND=numpy) or filter sci.backend.NumbaFallbackWarning; please report it, "
            "with the versions above, on sci's issue tracker.",
            NumbaFallbackWarning,
            stacklevel=3,
        )
    return implementation(operation, "numpy")


def _guard_numba(operation: str, kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel``, falling back to the NumPy implementation if Numba fails to compile it."""

    @functools.wraps(kernel)
    def guarded(*args, **kwargs):
        if operation in _broken:
            return implementation(operation, "numpy")(*args, **kwargs)
        try:
            return kernel(*args, **kwargs)
        except Exception as exc:
            if not _is_compile_failure(exc):
                raise
            return _fall_back(operation, _first_line(exc))(*args, **kwargs)

    guarded.kernel = kernel  # the unguarded kernel, for tests and benchmarks
    return guarded


def register(operation: str, backend: str, implementation: Callable[..., Any] | str | None = None):
    """Register ``implementation`` for ``(operation, backend)``.

    Parameters
    ----------
    operation : str
        A dotted name, conventionally ``"<subpackage>.<function>"``.
    backend : {"numpy", "numba", "cupy", "array"}
        Which backend the implementation serves (``"array"``: any, through ``xp``).
    implementation : callable or str, optional
        The function, or ``"module:attribute"`` to import on first use. When omitted,
        ``register`` returns a decorator.

    Examples
    --------
    >>> from sci.backend import register, implementation
    >>> @register("doc.example_twice", "array")
    ... def _twice(x):
    ...     return 2 * x
    >>> implementation("doc.example_twice", "numba")(3)
    6
    """
    if backend not in _TARGETS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, _TARGETS))}; got {backend!r}"
        )

    def decorate(func: Callable[..., Any] | str):
        if isinstance(func, str) and ":" not in func:
            raise ValueError(f"a lazy implementation is 'module:attribute'; got {func!r}")
        with _lock:
            _table[(operation, backend)] = func
        return func

    if implementation is None:
        return decorate
    return decorate(implementation)


def implementation(operation: str, backend: str | None = None) -> Callable[..., Any]:
    """The function that runs ``operation`` on ``backend`` (default: the active backend).

    A Numba kernel is returned guarded: should Numba fail to compile it on this Python or
    Numba, the call warns once (:class:`NumbaFallbackWarning`) and runs the NumPy
    implementation, as does every later call.

    Raises
    ------
    NotImplementedError
        If nothing registered serves that backend; the message lists what is registered.
    """
    backend = get_backend() if backend is None else backend
    if backend not in _LOOKUP_ORDER:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, _LOOKUP_ORDER))}; got {backend!r}"
        )
    for target in _LOOKUP_ORDER[backend]:
        if target == "numba" and operation in _broken:
            continue
        entry = _table.get((operation, target))
        if entry is None:
            continue
        if isinstance(entry, str):
            module_name, _, attribute = entry.partition(":")
            try:
                entry = getattr(importlib.import_module(module_name), attribute)
            except Exception as exc:
                if target != "numba":
                    raise
                # A kernel module that Numba cannot even import here (its decorators run at
                # import): the same fallback as a kernel that fails to compile.
                return _fall_back(operation, f"importing {module_name}: {_first_line(exc)}")
            if target == "numba":
                entry = _guard_numba(operation, entry)
            with _lock:
                _table[(operation, target)] = entry
        elif target == "numba" and not hasattr(entry, "kernel"):
            entry = _guard_numba(operation, entry)
            with _lock:
                _table[(operation, target)] = entry
        return entry
    registered = sorted(b for (op, b) in _table if op == operation)
    if not registered:
        raise NotImplementedError(f"no implementation of {operation!r} is registered")
    raise NotImplementedError(
        f"{operation!r} has no implementation for backend {backend!r} "
        f"(registered: {', '.join(registered)})"
    )


def registered_operations() -> dict[str, tuple[str, ...]]:
    """Every registered operation with the backends it has an entry for."""
    result: dict[str, list[str]] = {}
    for op, backend in sorted(_table):
        result.setdefault(op, []).append(backend)
    return {op: tuple(backends) for op, backends in result.items()}

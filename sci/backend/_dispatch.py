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
"""

from __future__ import annotations

import importlib
import threading
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
        entry = _table.get((operation, target))
        if entry is None:
            continue
        if isinstance(entry, str):
            module_name, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attribute)
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

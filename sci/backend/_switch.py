"""The process default backend, the per-context override and the availability probes."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator

BACKENDS: tuple[str, ...] = ("numpy", "numba", "cupy")
"""Every backend name ``sci`` knows, in order of preference on the CPU first."""

_ENV_VARIABLE = "SCI_BACKEND"


class BackendNotAvailableError(RuntimeError):
    """A known backend was asked for but cannot run on this machine."""


# The context variable holds an override set by ``use_backend``; ``None`` means "follow the
# process default".  Keeping the default outside the context variable lets ``set_backend``
# change it for every thread at once, while ``use_backend`` stays local to its context.
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sci_backend_override", default=None
)
_default_lock = threading.Lock()
_default: str | None = None


@functools.cache
def _unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or ``None`` when it can (probed once)."""
    if name == "numpy":
        return None
    if name == "numba":
        try:
            importlib.import_module("numba")
        except Exception as exc:  # a broken numba install is as unavailable as a missing one
            return f"numba cannot be imported ({exc}); install it with `pip install numba`"
        return None
    if name == "cupy":
        try:
            cupy = importlib.import_module("cupy")
        except Exception as exc:
            return (
                f"CuPy cannot be imported ({exc}); install it with `pip install \".[gpu]\"` "
                "(cupy-cuda12x) or `pip install cupy-cuda13x` for CUDA 13"
            )
        try:
            # `import cupy` succeeds without a GPU; only the runtime knows whether one exists.
            if not cupy.cuda.is_available():
                return "CuPy is installed but no CUDA device was found"
        except Exception as exc:
            return f"CuPy is installed but the CUDA runtime failed ({exc})"
        return None
    raise AssertionError(f"unhandled backend {name!r}")


def _validate_name(name: object, argument: str = "name") -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"{argument} must be a str, one of {', '.join(map(repr, BACKENDS))}; "
            f"got {type(name).__name__}"
        )
    key = name.strip().lower()
    if key not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r} for {argument}; known backends are "
            f"{', '.join(map(repr, BACKENDS))}"
        )
    return key


def _require_available(name: str) -> str:
    reason = _unavailable_reason(name)
    if reason is not None:
        raise BackendNotAvailableError(
            f"backend {name!r} is not available: {reason}. "
            f"Available here: {', '.join(map(repr, available_backends()))}"
        )
    return name


def available_backends() -> tuple[str, ...]:
    """The backends that can run on this machine.

    ``"numpy"`` is always available; ``"numba"`` when Numba imports; ``"cupy"`` only when CuPy
    imports *and* a CUDA device answers (``cupy.cuda.is_available()``).

    Returns
    -------
    tuple of str
        Names in the order ``("numpy", "numba", "cupy")``, restricted to those available.

    Examples
    --------
    >>> import sci
    >>> "numpy" in sci.available_backends()
    True
    """
    return tuple(name for name in BACKENDS if _unavailable_reason(name) is None)


def _initial_default() -> str:
    requested = os.environ.get(_ENV_VARIABLE, "").strip()
    if requested:
        try:
            return _require_available(_validate_name(requested, argument=_ENV_VARIABLE))
        except (ValueError, BackendNotAvailableError) as exc:
            # a setting in the environment must not make `import sci` (or its first call)
            # fail: say why it is ignored and use the CPU default
            fallback = _cpu_default()
            warnings.warn(
                f"{_ENV_VARIABLE}={requested!r} is ignored ({exc}); using {fallback!r}",
                RuntimeWarning,
                stacklevel=3,
            )
            return fallback
    return _cpu_default()


def _cpu_default() -> str:
    # Numba is the CPU default when it is importable; probing by spec avoids importing it
    # (about half a second) at `import sci`.
    if importlib.util.find_spec("numba") is not None:
        return "numba"
    return "numpy"


def set_backend(name: str) -> None:
    """Set the process-wide default backend.

    Parameters
    ----------
    name : {"numpy", "numba", "cupy"}
        The backend every thread uses unless it is inside a :func:`use_backend` block.

    Raises
    ------
    ValueError
        If ``name`` is not a known backend.
    BackendNotAvailableError
        If the backend is known but cannot run here (the message says what is missing).

    Examples
    --------
    >>> import sci
    >>> previous = sci.get_backend()
    >>> sci.set_backend("numpy")
    >>> sci.get_backend()
    'numpy'
    >>> sci.set_backend(previous)
    """
    global _default
    key = _require_available(_validate_name(name))
    with _default_lock:
        _default = key


def get_backend() -> str:
    """The backend active in the current context.

    Returns
    -------
    str
        The innermost :func:`use_backend` override, else the process default (set by
        :func:`set_backend`, or at import from ``SCI_BACKEND``, else ``"numba"`` when Numba is
        installed and ``"numpy"`` otherwise).

    Examples
    --------
    >>> import sci
    >>> with sci.use_backend("numpy"):
    ...     sci.get_backend()
    'numpy'
    """
    override = _override.get()
    if override is not None:
        return override
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = _initial_default()
    return _default


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Use backend ``name`` inside a ``with`` block.

    Built on :mod:`contextvars`, so it is local to the thread or asyncio task that enters it,
    nests, and restores the previous value with its token on exit, including after an
    exception. It never changes the process default.

    Parameters
    ----------
    name : {"numpy", "numba", "cupy"}

    Yields
    ------
    str
        The backend name, normalised.

    Raises
    ------
    ValueError, BackendNotAvailableError
        As :func:`set_backend`, before the block is entered.

    Examples
    --------
    >>> import sci
    >>> with sci.use_backend("numpy") as name:
    ...     name == sci.get_backend()
    True
    """
    key = _require_available(_validate_name(name))
    token = _override.set(key)
    try:
        yield key
    finally:
        _override.reset(token)

"""``method="auto"``: the fastest exact Gaunt-product method, from a table of measured times.

The three methods give the same numbers (to float64 round-off; the tests hold this) at very
different costs, and which is fastest depends on the degree, the number of rows, the dtype and
where the call runs: the sparse contraction ("direct", O(L^5) per row but one fused gather)
wins at small L on the GPU and at L = 1 on the CPU; quadrature ("grid") at L = 2..4 on the
CPU; the 2D Fourier method ("fourier", O(L^3)) from there on. A table measured by
:func:`calibrate_methods` holds the times; ``method="auto"`` looks the call up in it.

Tables
------
* The packaged table, ``sci/gaunt/auto_methods.json``: measured for the repository with
  ``python -m sci.gaunt.calibrate --packaged`` (the machine is recorded in the file).
* The user's table, written by ``python -m sci.gaunt.calibrate`` on the user's machine:
  ``$SCI_GAUNT_METHODS`` if set, else ``gaunt_methods.json`` in the data cache folder of
  :mod:`sci.datasets` (``$SCI_DATA_CACHE``, else pooch's ``os_cache("sci-theory-results")``,
  e.g. ``~/.cache/sci-theory-results``). Its platforms replace the packaged ones.

A call is keyed by its platform (``"numpy"``, ``"numba"``, ``"cupy"``, ``"torch:cpu"``,
``"torch:cuda"``, ...), operation (product or power, with ``nu``), precision, number of rows
(the nearest measured batch, in log scale) and degree (``ceil((L1 + L2) / 2)`` for a product;
the nearest measured degree not above it). A platform the table lacks gets ``"fourier"``, the
paper's method and the asymptotically fastest. Beyond the largest measured degree the
O(L^5) direct method is never chosen.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

TABLE_VARIABLE = "SCI_GAUNT_METHODS"
PACKAGED_TABLE = Path(__file__).with_name("auto_methods.json")
FORMAT = 1
EXACT_METHODS = ("fourier", "direct", "grid")
_DEFAULT = "fourier"


_CACHE_VARIABLE = "SCI_DATA_CACHE"  # sci.datasets.CACHE_VARIABLE (a test holds them equal)


def user_table_path() -> Path:
    """Where :func:`calibrate_methods` writes the user's table, and ``"auto"`` reads it."""
    return _user_table_path(os.environ.get(TABLE_VARIABLE, "").strip(),
                            os.environ.get(_CACHE_VARIABLE, "").strip())


@functools.cache
def _user_table_path(table_variable: str, cache_variable: str) -> Path:
    # Keyed by the two variables that decide it: resolving the cache folder (pooch, platformdirs)
    # costs tens of microseconds, as much as a small product itself.
    if table_variable:
        return Path(table_variable)
    from ..datasets import _cache_dir

    return _cache_dir() / "gaunt_methods.json"


def platform_of(ctx: Any) -> str:
    """The table's key for where a call runs: the switch's backend for NumPy and CuPy arrays,
    ``"<library>:<device type>"`` for the array path (``"torch:cuda"``)."""
    if ctx.backend != "array":
        return ctx.backend
    device = ctx.device
    kind = getattr(device, "type", None)  # torch: "cpu", "cuda"
    if kind is None:  # array_api_strict.Device("device1") and the like: its name
        kind = getattr(device, "_device", None) or str(device).split(":")[0]
    return f"{ctx.library}:{kind}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"the Gaunt method table {path} cannot be read ({exc}); delete it or run "
            "python -m sci.gaunt.calibrate again"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(
            f"the Gaunt method table {path} has format {data.get('format')!r}, not {FORMAT}; "
            "run python -m sci.gaunt.calibrate again"
        )
    return data.get("platforms", {})


@functools.cache
def _tables(user_path: str) -> dict[str, Any]:
    platforms = dict(_read(PACKAGED_TABLE))
    platforms.update(_read(Path(user_path)))  # the user's measurements replace the repo's
    return platforms


@functools.cache
def _index(user_path: str, platform: str, operation: str, precision: str
           ) -> dict[str, Any] | None:
    """One platform's rows for an operation, in the precision asked (else the other: its times
    rank the methods alike), grouped for the lookup: ``{"nu": [...], "batch": {nu: [...]},
    "degrees": {(nu, batch): ([L, ...], [best, ...])}}``. Built once per key, so that a call
    costs a few comparisons, not a scan of the table."""
    entry = _tables(user_path).get(platform)
    if not entry:
        return None
    rows = [r for r in entry["rows"] if r["operation"] == operation]
    rows = [r for r in rows if r["dtype"] == precision] or rows
    if not rows:
        return None
    degrees: dict[tuple[int, int], dict[int, str]] = {}
    for r in rows:
        degrees.setdefault((r["nu"], r["batch"]), {}).setdefault(r["L"], r["best"])
    powers = sorted({r["nu"] for r in rows})
    return {
        "nu": powers,
        "batch": {nu: sorted({b for (n, b) in degrees if n == nu}) for nu in powers},
        "degrees": {key: (sorted(by_l), [by_l[l] for l in sorted(by_l)])
                    for key, by_l in degrees.items()},
    }


def clear_table_cache() -> None:
    """Forget the loaded tables (after a calibration, or when ``SCI_GAUNT_METHODS`` changes)."""
    _tables.cache_clear()
    _index.cache_clear()
    _choose.cache_clear()
    _user_table_path.cache_clear()


def _precision(dtype: Any) -> str:
    name = str(getattr(dtype, "name", dtype)).split(".")[-1]
    return "float32" if name in ("float32", "complex64") else "float64"


def choose_method(operation: str, degree: int, rows: int, dtype: Any, ctx: Any,
                  nu: int = 1) -> str:
    """The measured-fastest exact method for one call (see the module docstring)."""
    return _choose(str(user_table_path()), platform_of(ctx), operation, _precision(dtype),
                   int(nu), int(rows), int(degree))


@functools.lru_cache(maxsize=4096)
def _choose(user_path: str, platform: str, operation: str, precision: str, nu: int, rows: int,
            degree: int) -> str:
    # Memoised: a model calls with the same few shapes, and a lookup costs microseconds, as
    # much as a product at L = 1.
    index = _index(user_path, platform, operation, precision)
    if index is None:
        return _DEFAULT
    nu = min(index["nu"], key=lambda v: abs(v - nu))
    batches = index["batch"][nu]
    log_rows = math.log(max(rows, 1))
    batch = min(batches, key=lambda v: abs(math.log(max(v, 1)) - log_rows))
    degrees, best = index["degrees"][(nu, batch)]
    # the nearest measured degree not above the call's (the smallest if none is)
    position = max(bisect.bisect_right(degrees, degree) - 1, 0)
    method = best[position]
    if degree > degrees[-1] and method == "direct":
        return _DEFAULT  # unmeasured territory: never the O(L^5) contraction
    return method


# ----------------------------------------------------------------------------- calibration

DEFAULT_DEGREES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32)
DEFAULT_BATCHES = (64, 1024)
DEFAULT_POWERS = (2, 3)
_SLOW = 0.05  # seconds: below this, timing a method at the next degree costs little


def _time(call, repeats: int) -> float:
    call()  # warm-up: compilation, tables, plans
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def calibrate_methods(
    *,
    degrees: Any = DEFAULT_DEGREES,
    batches: Any = DEFAULT_BATCHES,
    dtypes: Any = ("float32", "float64"),
    powers: Any = DEFAULT_POWERS,
    xp: Any = None,
    device: Any = None,
    repeats: int = 3,
    give_up: float = 20.0,
    path: str | os.PathLike | None = None,
    progress: Any = None,
) -> dict[str, object]:
    r"""Time every exact method of the Gaunt products here and store the fastest per case.

    Parameters
    ----------
    degrees : sequence of int
        Degrees L of the inputs (products of two degree-L inputs; powers of one).
    batches : sequence of int
        Numbers of rows.
    dtypes : sequence of {"float32", "float64"}
    powers : sequence of int
        The ``nu`` of :func:`gaunt_power` timed (``()``: products only).
    xp, device : optional
        Where to measure (default: the switch's library, NumPy or CuPy; the table entry is for
        that platform: the active backend, or ``"torch:cuda"`` and the like).
    repeats : int
        Timed calls per case after a warm-up; the best is kept.
    give_up : float
        A method slower than ``give_up`` times the fastest, and slower than 50 ms, at some
        degree is not timed at higher degrees (its cost grows faster: the direct method's
        O(L^5)).
    path : path-like, optional
        Where to write the table (default :func:`user_table_path`); its entry for this
        platform is replaced, the others kept.
    progress : callable, optional
        Called with one line of text per case.

    Returns
    -------
    dict
        This platform's entry: ``{"machine": ..., "rows": [{"operation", "dtype", "batch",
        "L", "nu", "times_s": {method: seconds}, "best"}]}``.

    Examples
    --------
    >>> from sci.gaunt import calibrate_methods
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     entry = calibrate_methods(degrees=(1, 2), batches=(8,), dtypes=("float64",),
    ...                               powers=(), repeats=1,
    ...                               path=os.path.join(tmp, "methods.json"))
    >>> sorted(entry["rows"][0]["times_s"])
    ['direct', 'fourier', 'grid']
    """
    from ..backend import creation_context
    from ._product import gaunt_power, gaunt_tensor_product

    ctx = creation_context(xp, device)
    platform = platform_of(ctx)
    rng = np.random.default_rng(0)
    rows_out: list[dict[str, Any]] = []
    cases = [("product", 1)] + [("power", int(nu)) for nu in powers]
    for operation, nu in cases:
        for dtype in dtypes:
            for batch in batches:
                alive = list(EXACT_METHODS)
                for degree in degrees:
                    if nu * degree > max(degrees):
                        continue  # a power's output degree beyond the products' range
                    data = rng.standard_normal((int(batch), (int(degree) + 1) ** 2))
                    x = ctx.asarray(data.astype(dtype))
                    y = ctx.asarray(data[::-1].copy().astype(dtype))
                    times = {}
                    for method in alive:
                        if operation == "product":
                            call = functools.partial(gaunt_tensor_product, x, y, method=method,
                                                     check_finite=False)
                        else:
                            call = functools.partial(gaunt_power, x, nu, method=method,
                                                     check_finite=False)
                        times[method] = _time(lambda c=call: _synchronised(c(), ctx), repeats)
                    best = min(times, key=times.get)
                    # a method is dropped only once it is both far behind and slow in
                    # absolute terms: one noisy fast case must not end its measurements
                    alive = [m for m in alive
                             if times[m] <= give_up * times[best] or times[m] < _SLOW]
                    rows_out.append({"operation": operation, "dtype": dtype, "batch": int(batch),
                                     "L": int(degree), "nu": nu, "times_s": times, "best": best})
                    if progress is not None:
                        progress(f"{platform} {operation} nu={nu} {dtype} batch={batch} "
                                 f"L={degree}: {best} "
                                 + " ".join(f"{m}={t * 1e3:.3g}ms" for m, t in times.items()))
    entry = {"machine": _machine(ctx), "rows": rows_out}
    target = Path(path) if path is not None else user_table_path()
    write_table(target, {platform: entry})
    return entry


def _synchronised(result: Any, ctx: Any) -> Any:
    """Wait for the device: the time of a GPU call is the time of its kernels."""
    if ctx.library == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif ctx.library == "torch" and str(ctx.device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(ctx.device)
    return result


def _machine(ctx: Any) -> dict[str, Any]:
    import platform as _platform

    from .. import __version__
    from ..backend import available_backends

    info = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "processor": _platform.processor() or _platform.machine(),
        "cores": os.cpu_count(),
        "python": _platform.python_version(),
        "numpy": np.__version__,
        "sci": __version__,
        "where": ctx.describe(),
        "backends": list(available_backends()),
    }
    if ctx.library == "cupy":
        import cupy

        info["device"] = cupy.cuda.runtime.getDeviceProperties(ctx.device.id)["name"].decode()
    return info


def write_table(path: Path, platforms: dict[str, Any]) -> None:
    """Merge ``platforms`` into the table at ``path`` (atomically) and reload the tables."""
    from .._cache import atomic_write_text

    existing = _read(path) if path.exists() else {}
    existing.update(platforms)
    text = json.dumps({"format": FORMAT, "platforms": existing}, indent=1, sort_keys=True)
    atomic_write_text(path, text + "\n")
    clear_table_cache()

"""Run figures: compute (cached), write ``NAME.json``, ``NAME.png`` and ``NAME.pdf``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt  # noqa: E402

import sci  # noqa: E402
from sci._cache import DiskCache, atomic_replace, atomic_write_text, cache_key  # noqa: E402
from sci._json import to_jsonable  # noqa: E402
from sci.datasets import DataUnavailableError  # noqa: E402
from sci.parallel import configured_executor, use_executor  # noqa: E402

from ._registry import Figure  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
QUICK_SUBDIR = "quick"
"""``--quick`` figures go to ``figures/out/quick/``: never over the full ones."""
QUICK_LABEL = "quick mode: reduced sizes (python -m figures --quick), not the paper's sizes"


def default_out(quick: bool) -> Path:
    """Where ``python -m figures`` writes by default: quick figures apart from the full ones."""
    return DEFAULT_OUT / QUICK_SUBDIR if quick else DEFAULT_OUT


# SCI_FIGURES_CACHE lets separate processes share computed figures (CI: the docs build reuses
# what the tests computed in the same run; entries are keyed by parameters, backend, version).
DEFAULT_CACHE = Path(
    os.environ.get("SCI_FIGURES_CACHE") or Path(__file__).resolve().parent / ".cache"
)


def _atomic_savefig(fig: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        atomic_replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def skip_reason(exc: DataUnavailableError) -> str:
    """One line: which data file is missing and how to supply it."""
    what = f"data file {exc.dataset!r}" if exc.dataset else "its data"
    return (f"{what} not found and not downloadable (set SCI_DATA_DIR to a local copy; "
            "see sci.datasets)")


def run_figure(
    figure: Figure,
    *,
    quick: bool = False,
    out: str | os.PathLike = DEFAULT_OUT,
    backend: str | None = None,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE,
    progress: bool | None = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Compute (or load from cache) and draw one figure; returns its JSON record.

    A figure whose data (:mod:`sci.datasets`) cannot be had is not drawn: the record then has
    ``"skipped"``, a one-line reason, and no ``"data"``; nothing is written.

    The parameter sweeps of ``compute`` run on ``executor`` (anything
    :func:`sci.parallel.get_executor` accepts). By default: the executor chosen by the caller
    (:func:`sci.parallel.use_executor`, ``SCI_DASK_SCHEDULER``, ``SCI_WORKERS``), else local
    processes for the full figures and this process for the quick ones (too small to repay
    starting workers). The numbers do not depend on it, so neither does the cache key.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = backend or sci.get_backend()
    params = figure.parameters(quick)
    key = cache_key(figure=figure.name, parameters=params, backend=backend)
    cache = DiskCache(cache_dir) if cache_dir is not None else None
    data = cache.get(key) if cache is not None else None
    cached = data is not None
    start = time.perf_counter()
    if data is None:
        if executor is None:
            executor = configured_executor() or ("serial" if quick else None)
        try:
            with sci.use_backend(backend), (
                use_executor(executor) if executor is not None else contextlib.nullcontext()
            ):
                data = to_jsonable(figure.compute(**params, progress=progress))
        except DataUnavailableError as exc:
            return {
                "figure": figure.name, "title": figure.title, "reproduces": figure.reproduces,
                "subpackage": figure.subpackage, "quick": quick, "backend": backend,
                "skipped": skip_reason(exc), "detail": str(exc),
            }
        if cache is not None:
            cache.put(key, data)
    elapsed = time.perf_counter() - start
    record = {
        "figure": figure.name,
        "title": figure.title,
        "reproduces": figure.reproduces,
        "subpackage": figure.subpackage,
        "quick": quick,
        "parameters": to_jsonable(params),
        "backend": backend,
        "sci_version": sci.__version__,
        "python": platform.python_version(),
        "from_cache": cached,
        "compute_seconds": None if cached else round(elapsed, 3),
        "data": data,
    }
    atomic_write_text(out / f"{figure.name}.json", json.dumps(record, indent=1))
    fig = figure.plot(data)
    if quick:  # labelled in the image itself: a quick figure is never mistaken for the full one
        fig.text(0.5, 0.0, QUICK_LABEL, ha="center", va="top", fontsize=8, color="#b03030",
                 style="italic")
    try:
        for suffix in (".png", ".pdf"):
            _atomic_savefig(fig, out / f"{figure.name}{suffix}")
    finally:
        plt.close(fig)
    return record

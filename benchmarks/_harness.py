"""Side-by-side timing of ``sci`` and its peers in one process, recorded with the machine.

A benchmark module ``benchmarks/<name>.py`` defines ``BENCHMARK = Benchmark(...)`` whose
``cases(quick)`` yields :class:`Case` objects. Each case times ``ours`` and, when given,
``peer`` on the same inputs, with warm-up and repeats (the median is reported), and the ratio
peer/ours (> 1: ``sci`` is faster). ``summarize(rows)`` may add derived numbers (fitted
exponents, crossovers). Results go to ``benchmarks/results/<name>.json`` (``--quick`` runs to
``<name>.quick.json`` so recorded full runs are never overwritten by smoke runs). Runs under the
``cupy`` backend go to ``<name>.gpu.json`` (``<name>.gpu.quick.json``), beside the CPU record
rather than over it, and record the device they ran on.
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Case:
    label: str
    ours: Callable[[], Any]
    peer: Callable[[], Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    ours_name: str = "sci"
    peer_name: str | None = None
    check: Callable[[Any, Any], float] | None = None
    """Optional: the discrepancy between the two outputs, recorded beside the timings."""
    repeats: int | None = None


@dataclass
class Benchmark:
    name: str
    description: str
    cases: Callable[[bool], Iterable[Case]]
    summarize: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None


def _device_synchronizer() -> Callable[[], None] | None:
    """What waits for the GPU work launched so far: ``None`` where no device is in use.

    CuPy and torch return from a kernel launch before the kernel has run, so a timer stopped
    without waiting measures the launch alone. Only libraries the process has already imported
    are asked (``sys.modules``): on a CPU machine this imports nothing and returns ``None``.
    """
    syncs: list[Callable[[], None]] = []
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:  # CuPy installed without a device (or driver) raises here
            if cupy.cuda.runtime.getDeviceCount() > 0:
                syncs.append(lambda: cupy.cuda.Device().synchronize())
        except Exception:  # any CUDA error means: no device to wait for
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        syncs.append(torch.cuda.synchronize)
    if not syncs:
        return None

    def synchronize() -> None:
        for sync in syncs:
            sync()

    return synchronize


def time_callable(
    fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, min_time: float = 0.02
) -> dict[str, Any]:
    """Median and minimum seconds per call of ``fn``.

    Warm-up calls run first (JIT compilation, caches, FFT plans); then each of ``repeats``
    measurements runs ``fn`` enough times to last at least ``min_time`` seconds (as
    :mod:`timeit`'s autorange does), so short calls are not dominated by timer resolution.
    Where a GPU is in use (CuPy or torch's CUDA), the device is synchronised after the warm-up
    and at the end of each timed batch, so that a measurement covers the kernels' run and not
    only their asynchronous launch; a CPU run pays nothing for this.
    """
    result = None
    for _ in range(warmup):
        result = fn()
    # Looked up after the warm-up: its first call may be the one that imports CuPy or torch.
    sync = _device_synchronizer() or _no_sync
    sync()
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or number >= 1 << 20:
            break
        number *= 2 if elapsed == 0 else max(2, min(10, math.ceil(min_time / elapsed)))
    times = [elapsed / number]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(repeats - 1, 0)):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            times.append((time.perf_counter() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": len(times),
        "calls_per_repeat": number,
        "result": result,
    }


def _no_sync() -> None:
    pass


class single_threaded:  # noqa: N801 - used like a function: ``with single_threaded() as t:``
    """Pin BLAS, Numba and torch (where installed) to one thread while the block runs.

    Per-core comparisons (sci against e3nn, say) need every library on the same footing. The
    value bound by ``with`` maps each library to the threads it was given (``None`` where the
    library is absent), to be recorded beside the timings. The previous thread counts are
    restored on exit, so later work in the same process (the next benchmark of ``python -m
    benchmarks``, the next figure of a docs build) is not left on one core.
    """

    def __enter__(self) -> dict[str, Any]:
        self._restore: list[Callable[[], Any]] = []
        threads: dict[str, Any] = {}
        try:
            import threadpoolctl

            limits = threadpoolctl.threadpool_limits(1)
            self._restore.append(limits.restore_original_limits)
            threads["blas"] = 1
        except ImportError:
            threads["blas"] = "default"
        try:
            import numba

            before = numba.get_num_threads()
            numba.set_num_threads(1)
            self._restore.append(lambda: numba.set_num_threads(before))
            threads["numba"] = numba.get_num_threads()
        except ImportError:
            threads["numba"] = None
        try:
            import torch

            before_torch = torch.get_num_threads()
            torch.set_num_threads(1)
            self._restore.append(lambda: torch.set_num_threads(before_torch))
            threads["torch"] = torch.get_num_threads()
        except ImportError:
            threads["torch"] = None
        return threads

    def __exit__(self, *exc: object) -> None:
        for restore in reversed(self._restore):
            restore()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What ran the benchmark: CPU, cores, memory, load, versions, GPU if one is in use."""
    import numpy
    import scipy

    import sci

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "sci": sci.__version__,
        "backend": sci.get_backend(),
        "available_backends": list(sci.available_backends()),
    }
    try:
        info["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, ValueError, AttributeError):
        pass
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        pass
    if info["backend"] == "cupy":
        # Only a run on the device names it: a CPU run on a machine that has one was not timed
        # on it, and its record must not say otherwise.
        info["gpu"] = gpu_info()
        info["cupy"] = info["gpu"]["cupy"]
    return info


def _cuda_version(number: int) -> str:
    # CUDA encodes its versions as 1000 major + 10 minor (13000: 13.0)
    return f"{number // 1000}.{number % 1000 // 10}"


def gpu_info() -> dict[str, Any]:
    """The current CUDA device and the software driving it: name, memory, multiprocessors,
    compute capability, the CuPy, CUDA runtime, CUDA driver, NVIDIA driver and torch versions
    (the last two where found)."""
    import cupy

    device = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"]
    info: dict[str, Any] = {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "multiprocessors": props["multiProcessorCount"],
        "compute_capability": f"{props['major']}.{props['minor']}",
        "cupy": cupy.__version__,
        "cuda_runtime": _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
        "cuda_driver": _cuda_version(cupy.cuda.runtime.driverGetVersion()),
    }
    try:
        smi = subprocess.run(
            ["nvidia-smi", f"--id={device.id}", "--query-gpu=driver_version",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=True,
        )
        info["nvidia_driver"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def _format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def run_benchmark(
    bench: Benchmark, *, quick: bool = False, out: str | os.PathLike = RESULTS,
    repeats: int | None = None, echo: bool = True,
) -> dict[str, Any]:
    """Run every case of ``bench``; print a table; write the JSON record; return it."""
    default_repeats = repeats or (3 if quick else 7)
    rows: list[dict[str, Any]] = []
    header = f"{'case':<34} {'sci':>10} {'peer':>10} {'peer/sci':>9}  peer"
    if echo:
        print(f"== {bench.name}: {bench.description}\n{header}\n{'-' * len(header)}", flush=True)
    for case in bench.cases(quick):
        n = case.repeats or default_repeats
        ours = time_callable(case.ours, repeats=n)
        row: dict[str, Any] = {
            "case": case.label,
            "params": dict(case.params),
            "ours_name": case.ours_name,
            "ours_median_s": ours["median_s"],
            "ours_min_s": ours["min_s"],
            "repeats": ours["repeats"],
        }
        if case.peer is not None:
            peer = time_callable(case.peer, repeats=n)
            row.update(
                peer_name=case.peer_name,
                peer_median_s=peer["median_s"],
                peer_min_s=peer["min_s"],
                ratio=peer["median_s"] / ours["median_s"],
            )
            if case.check is not None:
                row["discrepancy"] = float(case.check(ours["result"], peer["result"]))
        rows.append(row)
        if echo:
            ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
            print(
                f"{case.label:<34} {_format_seconds(row['ours_median_s']):>10} "
                f"{_format_seconds(row.get('peer_median_s')):>10} {ratio:>9}  "
                f"{row.get('peer_name') or ''}",
                flush=True,
            )
    record: dict[str, Any] = {
        "benchmark": bench.name,
        "description": bench.description,
        "quick": quick,
        "machine": machine_info(),
        "rows": rows,
    }
    if bench.summarize is not None:
        record["summary"] = dict(bench.summarize(rows))
        if echo:
            for key, value in record["summary"].items():
                print(f"  {key}: {value}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from sci._cache import atomic_write_text
    from sci._json import to_jsonable

    path = out / record_name(bench.name, quick=quick, gpu=record["machine"]["backend"] == "cupy")
    atomic_write_text(path, json.dumps(to_jsonable(record), indent=1))
    record["path"] = str(path)
    return record


def record_name(name: str, *, quick: bool = False, gpu: bool = False) -> str:
    """The file a benchmark's record goes to: ``NAME.json``; ``.gpu`` for a run under the
    ``cupy`` backend, then ``.quick`` for a smoke run (``gaunt.gpu.quick.json``), so that every
    smoke run ends in ``.quick.json`` and every GPU record in ``.gpu.json``."""
    return f"{name}{'.gpu' if gpu else ''}{'.quick' if quick else ''}.json"


def fitted_exponent(sizes: Iterable[float], times: Iterable[float]) -> float:
    """Least-squares slope of log(time) against log(size); NaN with fewer than two distinct
    sizes (a smoke run's short series), where no slope is defined."""
    import numpy as np

    x, y = np.log(np.asarray(list(sizes), float)), np.log(np.asarray(list(times), float))
    if np.unique(x).size < 2:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def discover() -> dict[str, Benchmark]:
    """Every ``BENCHMARK`` defined by a module of this package, by name."""
    import importlib
    import pkgutil

    import benchmarks

    found: dict[str, Benchmark] = {}
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        bench = getattr(importlib.import_module(f"benchmarks.{info.name}"), "BENCHMARK", None)
        if bench is not None:
            found[bench.name] = bench
    return found

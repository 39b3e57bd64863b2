"""The machine's own limits, measured: the ceilings the other benchmarks are held against.

Peak figures printed on a data sheet are not reachable from Python on a shared machine, so the
ceilings are measured with the best tool each has at hand, in the same environment as the
benchmarks:

* dense matrix products (BLAS ``dgemm``/``sgemm`` through ``numpy.matmul``, n = 2048): the
  attainable FLOP/s for compute-bound kernels, on all cores and on one;
* a STREAM-style triad ``a = b + s c`` over arrays far larger than the caches (a Numba loop
  parallel over cores, and NumPy on one core): the attainable memory bandwidth, counting 24
  bytes per element (the write-allocate traffic is not counted, as in STREAM);
* ``numpy.exp`` on float64 (NumPy's SIMD exp, one core): the exp throughput, the limit of the
  exact-attention kernels, which are bound by evaluating one exp per logit.

``python -m benchmarks machine`` records them in ``benchmarks/results/machine.json``; the
performance page of the docs divides every hot kernel's achieved rate by these.

Under ``--backend cupy`` the same kinds of ceiling are measured on the CUDA device instead, with
CuPy (cuBLAS and CuPy's elementwise kernels), into ``machine.gpu.json``:

* ``matmul`` of two n x n matrices (n = 8192) in float64 and float32 (cuBLAS ``dgemm``/``sgemm``;
  CuPy does not use TF32 for float32 unless told to): the attainable FLOP/s;
* a device-to-device copy of 2 GiB: the attainable memory bandwidth, counting the bytes read and
  written (16 per float64 element);
* ``exp`` over 2^28 elements in float64 and float32: the device-wide exp rate (on a GPU this
  pass is bound by memory rather than by arithmetic, which is what a kernel doing one exp per
  element it streams meets too).

The builders are chosen by backend (:data:`CASES`); the harness synchronises the device after
each timed batch, so each time covers the kernels' run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ._harness import Benchmark, Case, single_threaded

_GEMM_N = 2048
_TRIAD_N = 1 << 25  # 3 arrays x 256 MiB: far beyond any cache
# On the device: large enough that each call lasts milliseconds (launch overhead is a few
# microseconds) and the copies dwarf the 60 MB L2 of a Hopper GPU; 6 GiB at most at a time.
_DEVICE_GEMM_N = 8192
_DEVICE_STREAM_N = 1 << 28


def _gemm(n: int, dtype) -> Case:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    name = "dgemm" if dtype == np.float64 else "sgemm"
    return Case(
        label=f"{name} n={n}",
        ours=lambda: np.matmul(a, b, out=out),
        params={"kind": "flops", "flops": 2.0 * n**3, "n": n, "dtype": np.dtype(dtype).name},
        ours_name=f"numpy.matmul ({name})",
        repeats=5,
    )


def _triad_numba():
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def triad(a, b, c, s):  # pragma: no cover - compiled
        for i in numba.prange(a.size):
            a[i] = b[i] + s * c[i]

    return triad


def _triad(n: int) -> list[Case]:
    b = np.ones(n)
    c = np.full(n, 2.0)
    a = np.empty(n)
    tmp = np.empty(n)
    cases = []
    triad = _triad_numba()
    if triad is not None:
        cases.append(Case(
            label=f"triad n=2^{n.bit_length() - 1} [numba, all cores]",
            ours=lambda: triad(a, b, c, 3.0),
            params={"kind": "bytes", "bytes": 24.0 * n, "n": n, "threads": "all"},
            ours_name="numba prange triad", repeats=5,
        ))

    def numpy_triad():
        np.multiply(c, 3.0, out=tmp)
        np.add(b, tmp, out=a)

    cases.append(Case(
        label=f"triad n=2^{n.bit_length() - 1} [numpy, one core]",
        ours=numpy_triad,
        # Two NumPy passes move 40 bytes per element; the STREAM count (24) is what a fused
        # loop needs, so this row understates the bandwidth one core can draw.
        params={"kind": "bytes", "bytes": 40.0 * n, "n": n, "threads": 1},
        ours_name="numpy multiply + add", repeats=5,
    ))
    return cases


def _exp(n: int) -> Case:
    x = -np.random.default_rng(0).random(n) * 30.0
    out = np.empty(n)
    return Case(
        label=f"numpy.exp float64 n={n} [one core]",
        ours=lambda: np.exp(x, out=out),
        params={"kind": "exp", "exps": float(n), "n": n, "threads": 1},
        ours_name="numpy.exp", repeats=7,
    )


def _host_cases(quick: bool) -> Iterable[Case]:
    n_gemm = 512 if quick else _GEMM_N
    n_triad = 1 << 22 if quick else _TRIAD_N
    yield _gemm(n_gemm, np.float64)
    yield _gemm(n_gemm, np.float32)
    yield from _triad(n_triad)
    with single_threaded():
        one = _gemm(n_gemm, np.float64)
        one.label += " [one core]"
        one.params = {**one.params, "threads": 1}
        yield one
        # exp on a cache-resident block: its throughput, not the memory system's.
        yield _exp(1 << 14)


def _device_gemm(xp: Any, n: int, dtype: str) -> Case:
    rng = xp.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=dtype)
    b = rng.standard_normal((n, n), dtype=dtype)
    out = xp.empty((n, n), dtype=dtype)
    return Case(
        label=f"{xp.__name__}.matmul {dtype} n={n} [device]",
        ours=lambda: xp.matmul(a, b, out=out),
        params={"kind": "flops", "flops": 2.0 * n**3, "n": n, "dtype": dtype, "device": True},
        ours_name=f"{xp.__name__}.matmul", repeats=5,
    )


def _device_copy(xp: Any, n: int) -> Case:
    src = xp.ones(n, dtype="float64")
    dst = xp.empty_like(src)
    return Case(
        label=f"copy float64 n=2^{n.bit_length() - 1} [device]",
        ours=lambda: xp.copyto(dst, src),
        # every element read once and written once; the device has no write-allocate traffic
        params={"kind": "bytes", "bytes": 2.0 * src.itemsize * n, "n": n, "dtype": "float64",
                "device": True},
        ours_name=f"{xp.__name__}.copyto", repeats=7,
    )


def _device_exp(xp: Any, n: int, dtype: str) -> Case:
    x = -xp.random.default_rng(0).random(n, dtype=dtype) * 30
    out = xp.empty_like(x)
    return Case(
        label=f"exp {dtype} n=2^{n.bit_length() - 1} [device]",
        ours=lambda: xp.exp(x, out=out),
        params={"kind": "exp", "exps": float(n), "n": n, "dtype": dtype, "device": True},
        ours_name=f"{xp.__name__}.exp", repeats=7,
    )


def _device_cases(quick: bool, xp: Any = None) -> Iterable[Case]:
    """The CUDA device's ceilings; ``xp`` is CuPy unless given (the tests pass NumPy)."""
    if xp is None:
        import cupy as xp
    n_gemm = 1024 if quick else _DEVICE_GEMM_N
    n_stream = 1 << 22 if quick else _DEVICE_STREAM_N
    for dtype in ("float64", "float32"):
        yield _device_gemm(xp, n_gemm, dtype)
    yield _device_copy(xp, n_stream)
    for dtype in ("float64", "float32"):
        yield _device_exp(xp, n_stream, dtype)


CASES: dict[str, Callable[[bool], Iterable[Case]]] = {
    "numpy": _host_cases,
    "numba": _host_cases,
    "cupy": _device_cases,
}
"""The case builders by backend: the backend a run is under decides which machine is measured."""


def _cases(quick: bool) -> Iterable[Case]:
    import sci

    return CASES[sci.get_backend()](quick)


def _summarize(rows):
    def rate(row):
        p = row["params"]
        return p.get("flops", p.get("bytes", p.get("exps"))) / row["ours_min_s"]

    out = {}
    for row in rows:
        r = rate(row)
        label = row["case"]
        if row["params"]["kind"] == "flops":
            out[f"{label}: GFLOP/s"] = round(r / 1e9, 2)
        elif row["params"]["kind"] == "bytes":
            out[f"{label}: GB/s"] = round(r / 1e9, 2)
        else:
            out[f"{label}: exp/s"] = float(f"{r:.3g}")
    return out


def limits(record: dict) -> dict[str, float]:
    """The ceilings of a recorded machine run, from the fastest repeat of each case.

    Keys: ``float64_flops``, ``float32_flops`` (all cores), ``float64_flops_one_core``,
    ``bytes_per_s`` (the best triad), ``exp_per_s_one_core``. A device record (``--backend
    cupy``) gives ``float64_flops``, ``float32_flops``, ``bytes_per_s`` (the copy) and the
    whole device's ``float64_exp_per_s`` and ``float32_exp_per_s``.
    """
    found: dict[str, float] = {}
    for row in record.get("rows", []):
        p, best = row["params"], row["ours_min_s"]
        if p["kind"] == "exp" and p.get("device"):
            found[f"{p['dtype']}_exp_per_s"] = p["exps"] / best
        elif p["kind"] == "flops":
            key = f"{p['dtype']}_flops" + ("_one_core" if p.get("threads") == 1 else "")
            found[key] = p["flops"] / best
        elif p["kind"] == "bytes":
            # The machine draws at least the best of the triads (on a large shared L3 one core
            # can come close to what all cores get).
            found["bytes_per_s"] = max(found.get("bytes_per_s", 0.0), p["bytes"] / best)
        elif p["kind"] == "exp":
            found["exp_per_s_one_core"] = p["exps"] / best
    return found


BENCHMARK = Benchmark(
    name="machine",
    description="the machine's measured ceilings: BLAS FLOP/s, triad bandwidth, SIMD exp rate "
                "(under --backend cupy: the GPU's GEMM FLOP/s, copy bandwidth and exp rate)",
    cases=_cases,
    summarize=_summarize,
)

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
"""

from __future__ import annotations

import numpy as np

from ._harness import Benchmark, Case, single_threaded

_GEMM_N = 2048
_TRIAD_N = 1 << 25  # 3 arrays x 256 MiB: far beyond any cache


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


def _cases(quick: bool):
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
    ``bytes_per_s`` (the best triad), ``exp_per_s_one_core``.
    """
    found: dict[str, float] = {}
    for row in record.get("rows", []):
        p, best = row["params"], row["ours_min_s"]
        if p["kind"] == "flops":
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
    description="the machine's measured ceilings: BLAS FLOP/s, triad bandwidth, SIMD exp rate",
    cases=_cases,
    summarize=_summarize,
)

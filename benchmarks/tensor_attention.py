"""Exact tensor attention (Numba kernel vs blocked NumPy) and the polynomial method vs exact.

Four series, d = 4, entries uniform in [-1, 1] (±1 for the accuracy table):

* ``accuracy``: errors of Taylor and Chebyshev at degrees 4, 6, 8 against exact, and at
  degree 6 for n = 64, 256, 1024 (recorded in the case parameters);
* ``exact n=...``: the exact Numba kernel against the blocked NumPy array code (the ``numpy``
  backend of the same function), O(n^3 d) each, and once with both on one thread (Numba and
  BLAS pinned); at the largest n also the CPU time of one call of each (``process_time``,
  minimum of 5: less sensitive than wall time to other jobs on a shared machine);
* ``poly n=...``: the polynomial method (Taylor, degree 6, rank C(10, 6) = 210) against the
  exact Numba kernel while that fits the time budget (n <= 1024; 512 in quick mode), alone
  beyond, up to n = 262 144 (16 384 in quick mode);
* the peak Python-heap memory (tracemalloc) of the NumPy paths, in the case parameters.

``summarize`` fits log-log slopes, finds the crossover and extrapolates the exact time to the
largest n (labelled as an extrapolation: it is not measured).
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np

import sci
from sci.backend import to_numpy
from sci.tensor_attention import poly_tensor_attention, tensor_attention

from ._harness import Benchmark, Case, fitted_exponent, single_threaded

D = 4
DEGREE = 6


def _inputs(n: int, seed: int = 0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (5, n, D))


def _exact(inputs, backend):
    def run():
        with sci.use_backend(backend):
            return tensor_attention(*inputs)

    return run


def _poly(inputs):
    def run():
        with sci.use_backend("numpy"):
            return poly_tensor_attention(*inputs, degree=DEGREE)

    return run


def _peak_bytes(fn) -> int:
    """Peak traced allocation of one call beyond what existed before (NumPy paths only)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _max_abs_difference(a, b) -> float:
    return float(np.abs(to_numpy(a) - to_numpy(b)).max())  # explicit device-to-host


def _single_thread(fn):
    """``fn`` with Numba and BLAS on one thread (restored afterwards)."""

    def run():
        # Numba, BLAS (where threadpoolctl is installed) and torch on one thread, restored after.
        with single_threaded():
            return fn()

    return run


def _cpu_seconds(fn, repeats: int = 5) -> float:
    """Minimum over ``repeats`` calls (after one warm-up) of the process CPU time of one call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _accuracy(n: int) -> dict:
    """Errors against exact at n (entries ±1, so R = 1 is attained), and at g = 6 against n."""
    rng = np.random.default_rng(2)
    args = rng.choice([-1.0, 1.0], (5, n, D))
    exact = tensor_attention(*args)
    table = {}
    for method in ("taylor", "chebyshev"):
        for g in (4, 6, 8):
            approx = poly_tensor_attention(*args, degree=g, method=method)
            table[f"{method} g={g}"] = _max_abs_difference(approx, exact)
    for size in (64, 256, 1024):
        args = rng.choice([-1.0, 1.0], (5, size, D))
        table[f"taylor g=6 n={size}"] = _max_abs_difference(
            poly_tensor_attention(*args, degree=6), tensor_attention(*args))
    return table


def _cases(quick: bool):
    accuracy_n = 128 if quick else 256
    inputs = np.random.default_rng(2).choice([-1.0, 1.0], (5, accuracy_n, D))
    yield Case(
        label=f"accuracy n={accuracy_n}",
        ours=_poly(inputs),
        params={"series": "accuracy", "n": accuracy_n, "d": D, "entries": "±1",
                "max_abs_error": _accuracy(accuracy_n)},
        repeats=3,
    )
    exact_sizes = (64, 128, 256) if quick else (128, 256, 512)
    for n in exact_sizes:
        inputs = _inputs(n)
        numpy_peak = _peak_bytes(_exact(inputs, "numpy"))
        params = {"series": "exact", "n": n, "d": D, "numpy_peak_bytes": numpy_peak,
                  "input_bytes": int(inputs.nbytes)}
        if n == exact_sizes[-1]:
            params["cpu_s"] = {
                "numba kernel": _cpu_seconds(_exact(inputs, "numba")),
                "numba kernel, one thread": _cpu_seconds(_single_thread(_exact(inputs, "numba"))),
                "blocked NumPy": _cpu_seconds(_exact(inputs, "numpy")),
                "blocked NumPy, one thread": _cpu_seconds(_single_thread(_exact(inputs, "numpy"))),
            }
        yield Case(
            label=f"exact n={n}",
            ours=_exact(inputs, "numba"),
            peer=_exact(inputs, "numpy"),
            ours_name="numba kernel",
            peer_name="blocked NumPy",
            params=params,
            check=_max_abs_difference,
            repeats=7,
        )
    n = exact_sizes[-1]
    inputs = _inputs(n)
    yield Case(
        label=f"exact n={n}, 1 thread",
        ours=_single_thread(_exact(inputs, "numba")),
        peer=_single_thread(_exact(inputs, "numpy")),
        ours_name="numba kernel, one thread",
        peer_name="blocked NumPy, one thread",
        params={"series": "exact-1-thread", "n": n, "d": D},
        check=_max_abs_difference,
        repeats=7,
    )
    poly_sizes = (64, 256, 1024, 4096, 16384) if quick else (
        64, 256, 1024, 4096, 16384, 65536, 262144)
    exact_limit = 512 if quick else 1024
    for n in poly_sizes:
        inputs = _inputs(n, seed=1)
        with_exact = n <= exact_limit
        yield Case(
            label=f"poly n={n}",
            ours=_poly(inputs),
            peer=_exact(inputs, "numba") if with_exact else None,
            ours_name=f"polynomial (Taylor g={DEGREE}, r=210)",
            peer_name="exact numba kernel" if with_exact else None,
            params={"series": "poly", "n": n, "d": D, "degree": DEGREE,
                    "poly_peak_bytes": _peak_bytes(_poly(inputs)),
                    "input_bytes": int(inputs.nbytes)},
            check=_max_abs_difference if with_exact else None,
            repeats=2 if n >= 65536 or n >= 512 and with_exact else 3,
        )


def _summarize(rows):
    exact_rows = [r for r in rows if r["params"]["series"] == "exact"]
    poly_rows = [r for r in rows if r["params"]["series"] == "poly"]
    single = [r for r in rows if r["params"]["series"] == "exact-1-thread"]
    accuracy = [r for r in rows if r["params"]["series"] == "accuracy"]
    summary = {
        "speedup_numba_over_blocked_numpy": {
            r["params"]["n"]: round(r["ratio"], 2) for r in exact_rows
        },
        "speedup_one_numba_thread_over_blocked_numpy": {
            r["params"]["n"]: round(r["ratio"], 2) for r in single
        },
        "speedup_min_times_numba_over_blocked_numpy": {
            r["params"]["n"]: round(r["peer_min_s"] / r["ours_min_s"], 2) for r in exact_rows
        },
        "speedup_min_times_one_thread_each": {
            r["params"]["n"]: round(r["peer_min_s"] / r["ours_min_s"], 2) for r in single
        },
        "accuracy_max_abs_error_entries_pm1": accuracy[0]["params"]["max_abs_error"],
        "exact_max_abs_difference_numba_vs_numpy": max(r["discrepancy"] for r in exact_rows),
    }
    largest = exact_rows[-1]
    cpu = largest["params"]["cpu_s"]
    n_cubed = largest["params"]["n"] ** 3
    summary["cpu_seconds_at_largest_exact_n"] = {key: round(t, 4) for key, t in cpu.items()}
    summary["cpu_time_ratio_blocked_numpy_over_numba_one_thread_each"] = round(
        cpu["blocked NumPy, one thread"] / cpu["numba kernel, one thread"], 2)
    summary["numba_ns_per_logit_one_thread_cpu"] = round(
        cpu["numba kernel, one thread"] / n_cubed * 1e9, 3)
    # exact (Numba) timings: the exact series and the peers of the poly series
    exact_times = {r["params"]["n"]: r["ours_median_s"] for r in exact_rows}
    exact_times.update({r["params"]["n"]: r["peer_median_s"] for r in poly_rows if "ratio" in r})
    # n >= 256: below, a call lasts milliseconds and waking the second thread on a busy
    # machine (not the O(n^3) work) sets its time
    exact_n = sorted(n for n in exact_times if n >= 256)
    slope_exact = fitted_exponent(exact_n, [exact_times[n] for n in exact_n])
    summary["exact_fitted_exponent"] = round(slope_exact, 3)
    poly_n = [r["params"]["n"] for r in poly_rows]
    poly_t = [r["ours_median_s"] for r in poly_rows]
    large = [(n, t) for n, t in zip(poly_n, poly_t, strict=True) if n >= 1024]
    summary["poly_fitted_exponent_all_n"] = round(fitted_exponent(poly_n, poly_t), 3)
    if len(large) >= 2:
        summary["poly_fitted_exponent_n_ge_1024"] = round(
            fitted_exponent(*zip(*large, strict=True)), 3)
    faster = [r["params"]["n"] for r in poly_rows if "ratio" in r and r["ratio"] > 1]
    compared = [r["params"]["n"] for r in poly_rows if "ratio" in r]
    summary["crossover_n"] = (
        f"<= {min(compared)}" if faster and min(faster) == min(compared)
        else (min(faster) if faster else f"> {max(compared)}")
    )
    summary["poly_over_exact_max_abs_error"] = max(
        r["discrepancy"] for r in poly_rows if "discrepancy" in r)
    n_big = max(poly_n)
    largest_exact = max(exact_times)
    extrapolated = exact_times[largest_exact] * (n_big / largest_exact) ** slope_exact
    summary[f"EXTRAPOLATED_exact_seconds_at_n={n_big}"] = float(f"{extrapolated:.3g}")
    summary[f"measured_poly_seconds_at_n={n_big}"] = round(poly_t[-1], 3)
    summary["numpy_peak_MiB"] = {
        f"exact n={r['params']['n']}": round(r["params"]["numpy_peak_bytes"] / 2**20, 2)
        for r in exact_rows
    } | {
        f"poly n={r['params']['n']}": round(r["params"]["poly_peak_bytes"] / 2**20, 2)
        for r in poly_rows
    }
    summary["note"] = (
        "wall ratios depend on the machine's load (see machine.load_average): "
        "'speedup_*' are ratios of medians, 'speedup_min_times_*' of "
        "minima, the CPU times (process_time, minimum of 5) the least load-sensitive; exact times "
        f"beyond n={largest_exact} are extrapolated with the fitted exponent, not measured; "
        "peaks are tracemalloc (Python heap, NumPy paths; the Numba kernel allocates O(d) "
        "doubles per query, and n per query when d > 4, outside its view)"
    )
    return summary


BENCHMARK = Benchmark(
    name="tensor_attention",
    description="exact tensor attention (Numba vs blocked NumPy); polynomial method vs exact",
    cases=_cases,
    summarize=_summarize,
)

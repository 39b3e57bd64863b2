"""Exact tensor attention (Numba kernel vs blocked NumPy) and the polynomial method vs exact.

Three series, d = 4, entries uniform in [-1, 1]:

* ``exact n=...``: the exact Numba kernel against the blocked NumPy array code (the ``numpy``
  backend of the same function), O(n^3 d) each;
* ``poly n=...``: the polynomial method (Taylor, degree 6, rank C(10, 6) = 210) against the
  exact Numba kernel while that fits the time budget (n <= 1024; 512 in quick mode), alone
  beyond, up to n = 262 144 (16 384 in quick mode);
* the peak Python-heap memory (tracemalloc) of the NumPy paths, in the case parameters.

``summarize`` fits log-log slopes, finds the crossover and extrapolates the exact time to the
largest n (labelled as an extrapolation: it is not measured).
"""

from __future__ import annotations

import tracemalloc

import numpy as np

import sci
from sci.tensor_attention import poly_tensor_attention, tensor_attention

from ._harness import Benchmark, Case, fitted_exponent

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
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _cases(quick: bool):
    exact_sizes = (64, 128, 256) if quick else (128, 256, 512)
    for n in exact_sizes:
        inputs = _inputs(n)
        numpy_peak = _peak_bytes(_exact(inputs, "numpy"))
        yield Case(
            label=f"exact n={n}",
            ours=_exact(inputs, "numba"),
            peer=_exact(inputs, "numpy"),
            ours_name="numba kernel",
            peer_name="blocked NumPy",
            params={"series": "exact", "n": n, "d": D, "numpy_peak_bytes": numpy_peak,
                    "input_bytes": int(inputs.nbytes)},
            check=_max_abs_difference,
            repeats=3,
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
    summary = {
        "speedup_numba_over_blocked_numpy": {
            r["params"]["n"]: round(r["ratio"], 2) for r in exact_rows
        },
        "exact_max_abs_difference_numba_vs_numpy": max(r["discrepancy"] for r in exact_rows),
    }
    # exact (Numba) timings: the exact series and the peers of the poly series
    exact_times = {r["params"]["n"]: r["ours_median_s"] for r in exact_rows}
    exact_times.update({r["params"]["n"]: r["peer_median_s"] for r in poly_rows if "ratio" in r})
    exact_n = sorted(n for n in exact_times if n >= 128)
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
        "shared 2-core machine under load from other jobs: ratios are indicative; exact times "
        f"beyond n={largest_exact} are extrapolated with the fitted exponent, not measured; "
        "peaks are tracemalloc (Python heap, NumPy paths; the Numba kernel allocates 3 n "
        "doubles per thread outside its view)"
    )
    return summary


BENCHMARK = Benchmark(
    name="tensor_attention",
    description="exact tensor attention (Numba vs blocked NumPy); polynomial method vs exact",
    cases=_cases,
    summarize=_summarize,
)

"""Time of the complete Clebsch-Gordan product against the degree L: even, odd and all paths
(sci, grid method) against e3nn's FullTensorProduct (all paths), with fitted slopes.

New (issue 14): the antisymmetric paths the Gaunt product misses (Xie et al., arXiv:2506.13523,
arXiv:2602.21466), computed through the surface bracket on a quadrature grid, O(L^3) per row.
"""

from __future__ import annotations

import time

import numpy as np

from ._registry import Figure
from .gaunt_efficiency import _e3nn_product, e3nn_missing


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up: cached tables
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return float(best)


def _slope(lmax, seconds, lo):
    pts = [(l, t) for l, t in zip(lmax, seconds, strict=True) if l >= lo]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


# Times code: runs serially in this process (never through sci.parallel).
def compute(*, lmaxes, lmax_e3nn, slope_from, batch, repeats, progress=None):
    from benchmarks._harness import single_threaded
    from sci._progress import progress_bar
    from sci.gaunt import cg_tensor_product

    rng = np.random.default_rng(0)
    kinds = ("all", "even", "odd")
    times = {k: [] for k in kinds + ("e3nn",)}
    timed_l = {k: [] for k in times}
    with single_threaded() as threads:
        for lmax in progress_bar(lmaxes, progress=progress, desc="cg timing"):
            n = (lmax + 1) ** 2
            x = rng.standard_normal((batch, n)).astype(np.float32)
            y = rng.standard_normal((batch, n)).astype(np.float32)
            for kind in kinds:
                times[kind].append(_best_time(
                    lambda k=kind, a=x, b=y: cg_tensor_product(a, b, paths=k), repeats))
                timed_l[kind].append(lmax)
            if lmax <= lmax_e3nn:
                run = _e3nn_product(lmax)
                if run is not None:
                    times["e3nn"].append(_best_time(lambda r=run, a=x, b=y: r(a, b), repeats))
                    timed_l["e3nn"].append(lmax)
    slopes = {k: _slope(timed_l[k], times[k], slope_from if k != "e3nn" else 4)
              for k in times if times[k]}
    return {
        "batch": batch,
        "e3nn_missing": e3nn_missing() if lmax_e3nn >= min(lmaxes) else None,
        "threads": threads,
        "lmax": {k: v for k, v in timed_l.items() if v},
        "seconds": {k: v for k, v in times.items() if v},
        "methods_timed": [k for k, v in times.items() if v],
        "slope_from": slope_from,
        "fitted_slopes": slopes,
    }


def plot(data):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {"all": "o-", "even": "s--", "odd": "^:", "e3nn": "d-."}
    labels = {"all": "all paths (sci)", "even": "even paths = Gaunt (sci)",
              "odd": "odd paths, bracket (sci)", "e3nn": "e3nn FullTensorProduct (all paths)"}
    for kind in data["methods_timed"]:
        slope = data["fitted_slopes"].get(kind)
        fit = "" if slope is None else (
            f", slope {slope:.2f} (L ≥ {data['slope_from'] if kind != 'e3nn' else 4})")
        ax.loglog(data["lmax"][kind], np.asarray(data["seconds"][kind]) * 1e3, styles[kind],
                  label=labels[kind] + fit)
    ax.set_xticks(sorted({l for v in data["lmax"].values() for l in v}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("max degree L (both inputs)")
    ax.set_ylabel(f"time per batch of {data['batch']} products (ms)")
    ax.set_title("Complete Clebsch-Gordan product, one CPU thread (float32)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    missing = data.get("e3nn_missing")
    if missing:
        fig.text(0.5, 1.0, "e3nn is not installed here, so the comparison with e3nn's "
                 "FullTensorProduct is MISSING\n"
                 f"({missing.splitlines()[0][:70]}; pip install torch e3nn, then "
                 "python -m figures gaunt_cg --no-cache)",
                 ha="center", va="bottom", fontsize=9, color="#a00000",
                 bbox=dict(boxstyle="round", fc="#fff0f0", ec="#a00000"))
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="gaunt_cg",
    title="Complete Clebsch-Gordan product: time against degree, even/odd/all paths vs e3nn",
    reproduces="new: the antisymmetric paths missing from the Gaunt product (Xie et al. 2025, "
               "2026), sci against e3nn",
    compute=compute,
    plot=plot,
    full={"lmaxes": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64], "lmax_e3nn": 8,
          "slope_from": 8, "batch": 1024, "repeats": 3},
    quick={"lmaxes": [1, 2, 4, 6], "lmax_e3nn": 4, "slope_from": 2, "batch": 16,
           "repeats": 2},
    subpackage="sci.gaunt",
)

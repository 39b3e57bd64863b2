"""Time against n: exact tensor attention (cubic) and the polynomial method (near-linear)."""

from __future__ import annotations

import time

import numpy as np

from sci._progress import progress_bar
from sci.backend import to_numpy
from sci.tensor_attention import feature_rank, poly_tensor_attention, tensor_attention

from ._registry import Figure


def _seconds(fn, repeats):
    fn()  # warm-up: JIT compilation, caches
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _slope(n, t, minimum):
    pairs = [(a, b) for a, b in zip(n, t, strict=True) if a >= minimum]
    if len(pairs) < 2:
        return None
    x, y = np.log(np.array(pairs)).T
    return float(np.polyfit(x, y, 1)[0])


# This figure times code: it runs serially in this process, never through sci.parallel
# (a process pool or a cluster would time the scheduling, not the kernels).
def compute(*, d, degree, exact_sizes, poly_sizes, repeats, seed, progress=None):
    """Best-of-``repeats`` wall time of each method on entries uniform in [-1, 1]."""
    rng = np.random.default_rng(seed)
    exact_t, poly_t, errors = [], [], []
    for n in progress_bar(sorted(set(exact_sizes) | set(poly_sizes)), progress=progress,
                          desc="n", leave=False):
        args = rng.uniform(-1.0, 1.0, (5, n, d))
        if n in poly_sizes:
            poly_t.append(_seconds(lambda a=args: poly_tensor_attention(*a, degree=degree),
                                   repeats))
        if n in exact_sizes:
            exact_t.append(_seconds(lambda a=args: tensor_attention(*a), repeats))
            approx, info = poly_tensor_attention(*args, degree=degree, return_info=True)
            errors.append({"n": n, "error": float(np.abs(to_numpy(approx) - to_numpy(
                tensor_attention(*args))).max()), "predicted": info.predicted_error})
    exact_sizes, poly_sizes = sorted(exact_sizes), sorted(poly_sizes)
    return {
        "d": d, "degree": degree, "rank": feature_rank(d, degree),
        "exact_n": exact_sizes, "exact_seconds": exact_t,
        "poly_n": poly_sizes, "poly_seconds": poly_t,
        "exact_slope": _slope(exact_sizes, exact_t, 128),
        "poly_slope": _slope(poly_sizes, poly_t, 1024),
        "errors": errors,
    }


def plot(data):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    en, et = np.asarray(data["exact_n"]), np.asarray(data["exact_seconds"])
    pn, pt = np.asarray(data["poly_n"]), np.asarray(data["poly_seconds"])
    es = data["exact_slope"]
    ps = data["poly_slope"]
    ax.loglog(en, et, "o-", color="C3",
              label="exact (online softmax)" + (f", slope {es:.2f}" if es else ""))
    ax.loglog(pn, pt, "s-", color="C0",
              label=f"polynomial, Taylor g = {data['degree']}, r = {data['rank']}"
              + (f", slope {ps:.2f}" if ps else ""))
    if es:
        grid = np.geomspace(en[-1], pn[-1], 20)
        ax.loglog(grid, et[-1] * (grid / en[-1]) ** es, ":", color="C3", alpha=0.6,
                  label="exact, extrapolated (not measured)")
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("seconds")
    ax.set_title(f"Tensor attention, d = {data['d']}: time against n", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="tensor_attention_scaling",
    title="Exact against polynomial-method tensor attention: time against n",
    reproduces=(
        "new: the upper bound of Alman & Song (2024) (n^{1+o(1)} time, bounded entries) measured "
        "against the n^3 exact algorithm; the papers have no experiments"
    ),
    compute=compute,
    plot=plot,
    full={"d": 4, "degree": 6, "exact_sizes": [64, 128, 256, 512, 1024],
          "poly_sizes": [64, 256, 1024, 4096, 16384, 65536, 262144], "repeats": 2, "seed": 0},
    quick={"d": 4, "degree": 6, "exact_sizes": [32, 64, 128, 256],
           "poly_sizes": [64, 256, 1024, 4096, 16384], "repeats": 1, "seed": 0},
    subpackage="sci.tensor_attention",
)

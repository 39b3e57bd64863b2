"""The cheapest method against the entry bound B as n grows: the transition of the theorems.

Alman & Song: with d = O(log n) and entries bounded by B, attention of order t takes
n^{1+o(1)} time for B below about (log n)^{1/t} and n^{t-1-o(1)} above (t = 2: sqrt(log n),
t = 3: (log n)^{1/3}). The figure counts the work of both methods of this package for a fixed
error: the exact one, 2 n^t d, against the polynomial one, 2 t n r (d + 1) with the rank
r = C(d+g, g) of the degree g that ``select_degree`` picks for the tolerance at R = B^t. The
crossover B*(n), where the two counts meet, is the transition; it is plotted against n beside
(log n)^{1/t}.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from sci.parallel import parallel_map
from sci.tensor_attention import feature_rank, select_degree

from ._registry import Figure


def dimension(n: float) -> int:
    """d = ⌈ln n⌉: the theorems' regime d = Θ(log n)."""
    return max(1, math.ceil(math.log(n)))


def exact_cost(n: float, d: int, order: int) -> float:
    """Operations of exact order-t attention: n^t logits of d terms, n^t weighted values."""
    return 2.0 * float(n) ** order * d


def polynomial_cost(n: float, d: int, order: int, B: float, tol: float, method: str):
    """(operations, degree, rank) of the polynomial method at entry bound B, or None beyond it.

    ``select_degree`` picks the degree for ``tol`` at the logit bound R = B^t (entries ±B,
    scale 1/d); each of the t factors is a features-times-values contraction of n r (d + 1).
    """
    try:
        g = select_degree(tol, float(B) ** order, method=method)
    except ValueError:  # beyond the largest degree: the polynomial method is out of reach
        return None
    r = feature_rank(d, g)
    return 2.0 * order * float(n) * r * (d + 1), g, r


def crossover(n: float, order: int, tol: float, method: str, *, steps: int = 40) -> float:
    """B*(n): the largest B at which the polynomial count is at most the exact one (bisection;
    the count is nondecreasing in B since the degree is)."""
    d = dimension(n)
    exact = exact_cost(n, d, order)

    def cheaper(B):
        cost = polynomial_cost(n, d, order, B, tol, method)
        return cost is not None and cost[0] <= exact

    if not cheaper(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while cheaper(hi):
        lo, hi = hi, 2 * hi
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cheaper(mid) else (lo, mid)
    return lo


def _curve(task, *, tol, entry_bounds):
    """Cost ratio polynomial / exact against B at one (order, n)."""
    order, exponent = task
    n = 2.0**exponent
    d = dimension(n)
    ratio, degree, rank = [], [], []
    for B in entry_bounds:
        cost = polynomial_cost(n, d, order, B, tol, "chebyshev")
        ratio.append(None if cost is None else cost[0] / exact_cost(n, d, order))
        degree.append(None if cost is None else cost[1])
        rank.append(None if cost is None else cost[2])
    return {"order": order, "log2_n": exponent, "d": d, "ratio": ratio, "degree": degree,
            "rank": rank, "crossover": crossover(n, order, tol, "chebyshev")}


def _crossovers(task, *, tol, log2_n):
    order, method = task
    return {"order": order, "method": method,
            "crossover": [crossover(2.0**e, order, tol, method) for e in log2_n]}


def compute(*, tol, orders, methods, log2_n, curve_log2_n, entry_bounds, progress=None):
    """Operation counts only (exact integers and a degree search): no timing, no randomness."""
    curves = parallel_map(
        functools.partial(_curve, tol=tol, entry_bounds=list(entry_bounds)),
        [(order, e) for order in orders for e in curve_log2_n], progress=progress,
        desc="cost curves")
    rows = parallel_map(
        functools.partial(_crossovers, tol=tol, log2_n=list(log2_n)),
        [(order, method) for order in orders for method in methods], progress=progress,
        desc="crossovers")
    return {
        "tol": tol, "log2_n": list(log2_n), "entry_bounds": list(entry_bounds),
        "d": [dimension(2.0**e) for e in log2_n], "curves": curves, "crossovers": rows,
        "thresholds": {str(t): [math.log(2.0**e) ** (1.0 / t) for e in log2_n] for t in orders},
    }


def plot(data):
    import matplotlib.pyplot as plt

    orders = sorted({row["order"] for row in data["crossovers"]})
    fig, axes = plt.subplots(1, len(orders) + 1, figsize=(4.2 * (len(orders) + 1), 4.0))
    B = np.asarray(data["entry_bounds"], dtype=float)
    names = {2: "matrix attention (t = 2)", 3: "tensor attention (t = 3)"}
    for ax, t in zip(axes, orders, strict=False):
        curves = [c for c in data["curves"] if c["order"] == t]
        for k, c in enumerate(curves):
            ratio = np.array([np.nan if v is None else v for v in c["ratio"]], dtype=float)
            ax.semilogy(B, ratio, drawstyle="steps-post", color=f"C{k}", lw=1.3,
                        label=rf"$n = 2^{{{c['log2_n']}}}$, d = {c['d']}")
            ax.axvline(c["crossover"], color=f"C{k}", ls=":", lw=1)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylim(1e-12, 1e12)  # the crossing matters, not how far below it the counts go
        ax.set_xlabel("entry bound B  (entries ±B, logits up to $B^t$)")
        ax.set_ylabel("operations: polynomial / exact\n(> 1: exact is cheaper)")
        ax.set_title(f"{names.get(t, f'order {t}')}\ndotted: crossover $B^*(n)$", fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        ax.grid(True, alpha=0.3)
    ax = axes[-1]
    n = 2.0 ** np.asarray(data["log2_n"], dtype=float)
    styles = {"chebyshev": "o-", "taylor": "s--"}
    for k, t in enumerate(orders):
        color = f"C{k + 3}"
        for row in (r for r in data["crossovers"] if r["order"] == t):
            ax.semilogx(n, row["crossover"], styles[row["method"]], color=color, ms=3, lw=1.2,
                        label=f"$B^*(n)$, t = {t}, {row['method']}", base=2)
        # (log n)^{1/t} scaled to the Chebyshev crossover at the largest n: the shape to compare.
        cheb = next(r for r in data["crossovers"]
                    if r["order"] == t and r["method"] == "chebyshev")["crossover"]
        ref = np.asarray(data["thresholds"][str(t)], dtype=float)
        label = r"$\sqrt{\log n}$" if t == 2 else rf"$(\log n)^{{1/{t}}}$"
        ax.semilogx(n, ref * cheb[-1] / ref[-1], ":", color=color, lw=2, base=2,
                    label=f"{label} (scaled to meet at the right)")
    ticks = [e for e in (8, 16, 32, 64, 128, 256) if data["log2_n"][0] <= e <= data["log2_n"][-1]]
    ax.set_xticks([2.0**e for e in ticks], [rf"$2^{{{e}}}$" for e in ticks])
    ax.set_xlabel("sequence length n  (d = ⌈ln n⌉)")
    ax.set_ylabel("crossover entry bound $B^*(n)$")
    ax.set_title("where the cheapest method changes, against n", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"The transition: operation counts of exact vs polynomial attention for error "
        f"{data['tol']:.0e} (degree from select_degree, rank $\\binom{{d+g}}{{g}}$)",
        fontsize=10)
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="tensor_attention_transition",
    title="The cheapest method against the entry bound B as n grows: the transition",
    reproduces=(
        "new: the phase transition of Alman & Song (2023) (matrix, B* ~ sqrt(log n)) and "
        "(2024) (tensor, B* ~ (log n)^{1/3}) as the crossover of the operation counts of the "
        "exact and polynomial methods at a fixed error, d = ceil(ln n)"
    ),
    compute=compute,
    plot=plot,
    full={"tol": 1e-6, "orders": [2, 3], "methods": ["chebyshev", "taylor"],
          "log2_n": [10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128],
          "curve_log2_n": [16, 32, 64, 128],
          "entry_bounds": [round(0.05 * k, 2) for k in range(1, 101)]},
    quick={"tol": 1e-6, "orders": [2, 3], "methods": ["chebyshev", "taylor"],
           "log2_n": [10, 16, 24, 32, 48, 64, 96, 128],
           "curve_log2_n": [16, 64],
           "entry_bounds": [round(0.1 * k, 2) for k in range(1, 51)]},
    subpackage="sci.tensor_attention",
)

"""Minimum degree and rank for a target error against the entry bound B."""

from __future__ import annotations

import functools

import numpy as np

from sci.backend import to_numpy
from sci.parallel import parallel_map, task_seeds
from sci.tensor_attention import (
    feature_rank,
    higher_order_attention,
    poly_higher_order_attention,
    select_degree,
)

from ._registry import Figure


def compute(*, d, tolerances, orders, methods, entry_bounds, check_n, check_bounds, seed,
            progress=None):
    """Degrees from the worst-case logit bound R = B^t; a run at each checked B confirms tol.

    Both sweeps are tasks of :mod:`sci.parallel`; each check draws from its own child of
    ``seed`` (:func:`sci.parallel.task_seeds`), so any executor gives the same numbers.
    """
    rows = parallel_map(
        functools.partial(_degree_row, d=d, entry_bounds=list(entry_bounds)),
        [(order, method, tol) for order in orders for method in methods for tol in tolerances],
        progress=progress, desc="degrees")
    cases = [(order, B) for order in orders for B in check_bounds]
    checks = parallel_map(
        functools.partial(_check, d=d, check_n=check_n, tolerances=list(tolerances)),
        [(*case, s) for case, s in zip(cases, task_seeds(seed, len(cases)), strict=True)],
        progress=progress, desc="checks")
    return {"d": d, "entry_bounds": list(entry_bounds), "rows": rows,
            "checks": [c for per_case in checks for c in per_case]}


def _degree_row(task, *, d, entry_bounds):
    order, method, tol = task
    degrees, ranks = [], []
    for B in entry_bounds:
        try:
            g = select_degree(tol, B**order, method=method)
        except ValueError:  # beyond degree 200: the polynomial regime is left
            g = None
        degrees.append(g)
        ranks.append(None if g is None else feature_rank(d, g))
    return {"order": order, "method": method, "tol": tol, "degree": degrees, "rank": ranks}


def _check(task, *, d, check_n, tolerances):
    """A run at entry bound B for every tolerance: the degree chosen and the error reached."""
    order, B, seed = task
    rng = np.random.default_rng(seed)
    Q = B * rng.choice([-1.0, 1.0], (check_n, d))
    keys = [B * rng.choice([-1.0, 1.0], (check_n, d)) for _ in range(order - 1)]
    values = [rng.uniform(-1, 1, (check_n, d)) for _ in range(order - 1)]
    exact = to_numpy(higher_order_attention(Q, keys, values))
    checks = []
    for tol in tolerances:
        approx, info = poly_higher_order_attention(Q, keys, values, tol=tol,
                                                   bound="entry", return_info=True)
        checks.append({
            "order": order, "B": B, "tol": tol, "degree": info.degree,
            "error": float(np.abs(to_numpy(approx) - exact).max()),
            "value_bound": info.value_bound,
        })
    return checks


def plot(data):
    import matplotlib.pyplot as plt

    fig, (ax_g, ax_r) = plt.subplots(1, 2, figsize=(8.6, 3.6))
    B = np.asarray(data["entry_bounds"])
    styles = {"taylor": "-", "chebyshev": "--"}
    tolerances = sorted({row["tol"] for row in data["rows"]}, reverse=True)
    for row in data["rows"]:
        color = f"C{tolerances.index(row['tol']) + 3 * (row['order'] - 2)}"
        g = np.array([np.nan if v is None else v for v in row["degree"]], dtype=float)
        r = np.array([np.nan if v is None else v for v in row["rank"]], dtype=float)
        label = f"t = {row['order']}, tol {row['tol']:.0e}, {row['method']}"
        ax_g.plot(B, g, styles[row["method"]], color=color, lw=1.2, label=label)
        ax_r.semilogy(B, r, styles[row["method"]], color=color, lw=1.2)
    ax_g.set_xlabel("entry bound B")
    ax_g.set_ylabel("minimum degree g")
    ax_r.set_xlabel("entry bound B")
    ax_r.set_ylabel(rf"rank $\binom{{d+g}}{{g}}$, d = {data['d']}")
    ax_g.set_title("degree for the target ($R = B^t$)", fontsize=10)
    ax_r.set_title("rank of the factors", fontsize=10)
    ax_g.legend(fontsize=6, frameon=False)
    for ax in (ax_g, ax_r):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="tensor_attention_degree",
    title="Minimum degree and rank for a target error against B",
    reproduces=(
        "new: the degree of the polynomial method of Alman & Song (2023, 2024), growing about "
        "linearly in R = B^t, evaluated with the explicit Taylor and Chebyshev error bounds"
    ),
    compute=compute,
    plot=plot,
    full={"d": 4, "tolerances": [1e-3, 1e-6, 1e-9], "orders": [2, 3],
          "methods": ["taylor", "chebyshev"],
          "entry_bounds": [round(0.1 * k, 2) for k in range(1, 41)],
          "check_n": 48, "check_bounds": [0.5, 1.0, 1.5], "seed": 0},
    quick={"d": 4, "tolerances": [1e-3, 1e-6], "orders": [2, 3],
           "methods": ["taylor", "chebyshev"],
           "entry_bounds": [round(0.2 * k, 2) for k in range(1, 16)],
           "check_n": 24, "check_bounds": [0.5, 1.0], "seed": 0},
    subpackage="sci.tensor_attention",
)

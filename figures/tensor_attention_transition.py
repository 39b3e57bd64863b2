"""Error against the entry bound B at a fixed degree: the phase transition of the papers."""

from __future__ import annotations

import functools
import math

import numpy as np

from sci.backend import to_numpy
from sci.parallel import parallel_map, task_seeds
from sci.tensor_attention import higher_order_attention, poly_higher_order_attention

from ._registry import Figure


def compute(*, n, d, degree, entry_bounds, orders, seed, progress=None):
    """Entries ±B (random signs, so the logit bound R = B^t is attained); Taylor degree g.

    One task of :mod:`sci.parallel` per (order, B), drawing from its own child of ``seed``: the
    same numbers on any executor.
    """
    cases = [(order, B) for order in orders for B in entry_bounds]
    points = iter(parallel_map(
        functools.partial(_point, n=n, d=d, degree=degree),
        [(*case, s) for case, s in zip(cases, task_seeds(seed, len(cases)), strict=True)],
        progress=progress, desc="order x B"))
    curves = []
    for order in orders:
        errors, predicted = zip(*(next(points) for _ in entry_bounds), strict=True)
        curves.append({"order": order, "relative_error": list(errors),
                       "predicted": list(predicted)})
    return {
        "n": n, "d": d, "degree": degree, "entry_bounds": list(entry_bounds), "curves": curves,
        "thresholds": {str(t): math.log(n) ** (1.0 / t) for t in orders},
    }


def _point(task, *, n, d, degree):
    """Relative error of the degree-g approximation at one (order, B), and its prediction."""
    order, B, seed = task
    rng = np.random.default_rng(seed)
    Q = B * rng.choice([-1.0, 1.0], (n, d))
    keys = [B * rng.choice([-1.0, 1.0], (n, d)) for _ in range(order - 1)]
    values = [B * rng.choice([-1.0, 1.0], (n, d)) for _ in range(order - 1)]
    exact = to_numpy(higher_order_attention(Q, keys, values))
    approx, info = poly_higher_order_attention(Q, keys, values, degree=degree, return_info=True)
    error = float(np.abs(to_numpy(approx) - exact).max()) / info.value_bound
    predicted = (None if info.predicted_error is None
                 else info.predicted_error / info.value_bound)
    return error, predicted


def plot(data):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    B = np.asarray(data["entry_bounds"])
    names = {2: "matrix (t = 2)", 3: "tensor (t = 3)", 4: "order 4"}
    for k, curve in enumerate(data["curves"]):
        color = f"C{k}"
        t = curve["order"]
        err = np.maximum(np.asarray(curve["relative_error"], dtype=float), 1e-17)
        ax.semilogy(B, err, "o-", color=color, ms=3, label=f"{names.get(t, t)}: measured")
        pred = np.array([np.nan if p is None else p for p in curve["predicted"]], dtype=float)
        ax.semilogy(B, pred, "--", color=color, lw=1, alpha=0.7, label="predicted bound")
        threshold = data["thresholds"][str(t)]
        ax.axvline(threshold, color=color, ls=":", lw=1)
        label = r"$\sqrt{\log n}$" if t == 2 else rf"$(\log n)^{{1/{t}}}$"
        ax.text(threshold, 1e-15, " " + label, color=color, fontsize=8, rotation=90,
                va="bottom")
    ax.set_ylim(1e-16, 10)
    ax.set_xlabel("entry bound B  (entries ±B)")
    ax.set_ylabel(r"$\|\widetilde{Att} - Att\|_\infty / \|V\|_\infty$")
    ax.set_title(f"Taylor degree {data['degree']}, n = {data['n']}, d = {data['d']}",
                 fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="tensor_attention_transition",
    title="Polynomial-method error against the entry bound B: the transition",
    reproduces=(
        "new: the phase transition of Alman & Song (2023) (matrix, sqrt(log n)) and (2024) "
        "(tensor, (log n)^{1/3}) seen at a fixed degree"
    ),
    compute=compute,
    plot=plot,
    full={"n": 256, "d": 4, "degree": 8, "orders": [2, 3],
          "entry_bounds": [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0,
                           3.5, 4.0], "seed": 0},
    quick={"n": 64, "d": 4, "degree": 8, "orders": [2, 3],
           "entry_bounds": [0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0], "seed": 0},
    subpackage="sci.tensor_attention",
)

"""Learned against closed-form class-mean and classifier norms for imbalanced data."""

from __future__ import annotations

import functools

import numpy as np

from figures._registry import Figure
from sci.parallel import parallel_map


def compute(*, counts, depths, lam, steps, lr, width, seeds, curve_points, progress=None):
    counts = list(counts)
    out = {"n_per_class": counts, "depths": list(depths), "lambda": lam}
    # One task of sci.parallel per depth (seeded by the depth): same numbers on any executor.
    task = functools.partial(_run, counts=counts, lam=lam, steps=steps, lr=lr, width=width,
                             seeds=seeds, curve_points=curve_points)
    out["runs"] = parallel_map(task, list(depths), progress=progress, desc="depth")
    return out


def _run(depth, *, counts, lam, steps, lr, width, seeds, curve_points):
    from sci.neural_collapse import train_ufm, ufm_minimizer

    N = sum(counts)
    case = dict(depth=depth, lambda_W=lam, lambda_H=lam)
    exact = ufm_minimizer(counts, **case, width=width)
    run = train_ufm(counts, **case, width=width, steps=steps, lr=lr, momentum=0.9,
                    num_seeds=seeds, rng=depth, record_every=steps, progress=False)
    # For M >= 2 zero is a local minimum of every class direction, so from a random start
    # small classes can stay trapped there: keep the seed with the lowest loss.
    best = int(np.argmin(run.loss[:, -1]))
    # The closed form as a function of one class size with the total N kept fixed: the
    # curve the markers should lie on (a class of size n among N samples).
    n_curve = np.linspace(1, max(counts), curve_points)
    curve_h, curve_w = [], []
    for n in n_curve:
        pair = ufm_minimizer([max(1, N - int(round(n))), int(round(n))], **case)
        curve_h.append(pair.feature_norms[1])
        curve_w.append(pair.classifier_norms[1])
    return {
        "depth": depth,
        "theory_feature_norms": exact.feature_norms,
        "theory_classifier_norms": exact.classifier_norms,
        "learned_feature_norms": run.feature_norms[best],
        "learned_classifier_norms": run.classifier_norms[best],
        "final_loss": float(run.loss[best, -1]), "theory_objective": exact.objective,
        "curve_n": np.round(n_curve), "curve_feature_norms": curve_h,
        "curve_classifier_norms": curve_w,
    }


def plot(data):
    import matplotlib.pyplot as plt

    runs = data["runs"]
    fig, axes = plt.subplots(2, len(runs), figsize=(4.5 * len(runs), 7), constrained_layout=True,
                             squeeze=False)
    n = np.asarray(data["n_per_class"])
    for col, run in enumerate(runs):
        for row, (key, name) in enumerate((("feature_norms", r"$\|\bar h_k\|$"),
                                           ("classifier_norms", r"$\|w_k\|$"))):
            ax = axes[row, col]
            ax.plot(run["curve_n"], run[f"curve_{key}"], color="0.6", lw=1,
                    label="closed form, one class of size n among N")
            ax.plot(n, run[f"theory_{key}"], "o", mfc="none", ms=10, color="k",
                    label="closed form")
            ax.plot(n, run[f"learned_{key}"], "x", color="tab:red", ms=8,
                    label="gradient descent (best seed)")
            ax.set_xlabel("$n_k$")
            ax.set_ylabel(name)
            ax.set_title(f"M = {run['depth']}")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Imbalanced MSE, bias-free, N = {int(n.sum())}, "
                 f"$\\lambda_W=\\lambda_H$ = {data['lambda']:g}")
    return fig


FIGURE = Figure(
    name="neural_collapse_norms",
    title="Class-mean and classifier norms against class size: learned and closed form",
    reproduces="Dang et al. 2023, Thm. 4.1 and Fig. 4 (norms against class size, imbalanced MSE)",
    compute=compute,
    plot=plot,
    full=dict(counts=[60, 45, 30, 20, 15, 10, 8, 6, 4], depths=[1, 2, 3], lam=1e-3,
              steps=10000, lr=0.1, width=9, seeds=6, curve_points=120),
    quick=dict(counts=[60, 30, 15, 8, 4], depths=[1, 3], lam=1e-3, steps=3000, lr=0.1,
               width=6, seeds=3, curve_points=40),
    subpackage="sci.neural_collapse",
)

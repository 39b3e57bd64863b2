"""NC metrics of the deep linear unconstrained-feature model along gradient descent."""

from __future__ import annotations

import functools

import numpy as np

from figures._registry import Figure
from sci.parallel import parallel_map

# (label, loss, bias, balanced, NC2 metric, NC3 metric): the frame each setting converges to.
SETTINGS = [
    ("MSE, balanced, bias", "mse", True, True, "nc2_etf_error", "nc3"),
    ("MSE, imbalanced, bias-free", "mse", False, False, "nc2_gof_error", "nc3_uncentred"),
    ("CE, balanced, bias-free", "ce", False, True, "nc2_etf_error", "nc3"),
]


def compute(*, K, n, imbalance, depths, steps, lr, lam, width, seeds, progress=None):
    out = {"depths": list(depths), "settings": [s[0] for s in SETTINGS]}
    # One task of sci.parallel per (setting, depth), seeded by the depth: the same numbers on
    # any executor.
    task = functools.partial(_run, K=K, n=n, imbalance=imbalance, steps=steps, lr=lr, lam=lam,
                             width=width, seeds=seeds)
    tasks = [(index, depth) for index in range(len(SETTINGS)) for depth in depths]
    out["runs"] = parallel_map(task, tasks, progress=progress, desc="setting x depth")
    return out


def _run(task, *, K, n, imbalance, steps, lr, lam, width, seeds):
    from sci.backend import to_numpy
    from sci.neural_collapse import nc_metrics, train_ufm, ufm_minimizer

    index, depth = task
    label, loss, bias, balanced, nc2, nc3 = SETTINGS[index]
    counts = [n] * K if balanced else [max(1, int(round(n * imbalance**-k))) for k in range(K)]
    case = dict(depth=depth, lambda_W=lam, lambda_H=lam, loss=loss, bias=bias)
    run = train_ufm(counts, **case, width=width, steps=steps, lr=lr, momentum=0.9,
                    num_seeds=seeds, rng=depth, progress=False,
                    record_every=max(1, steps // 40))
    exact = ufm_minimizer(counts, **case, width=width)
    best = int(np.argmin(run.loss[:, -1]))
    # The metrics at the closed-form point: NC2/NC3 need not vanish there (with
    # imbalance w_k = (sigma_k^2 + N lambda_H) h_k scales each class differently).
    W = to_numpy(exact.weights[0])
    for layer in exact.weights[1:]:
        W = to_numpy(layer) @ W
    at_theory = nc_metrics(exact.features, exact.labels, W=W)
    return {
        "setting": label, "depth": depth, "n_per_class": counts,
        "steps": run.steps, "loss": run.loss[best],
        "theory_objective": exact.objective, "proven_global": exact.proven_global,
        "nc1": run.metrics["nc1"][best], "nc2": run.metrics[nc2][best],
        "nc3": run.metrics[nc3][best], "nc2_name": nc2, "nc3_name": nc3,
        "theory_nc2": getattr(at_theory, nc2), "theory_nc3": getattr(at_theory, nc3),
    }


def _no_collapse_note(runs) -> str:
    """For cross-entropy: which deep runs do not collapse, and why (their own numbers)."""
    stuck = [r for r in runs if r["depth"] >= 2 and r["nc2"][-1] > 0.1]
    if not stuck:
        return ""
    lines = []
    for r in stuck:
        gap = r["loss"][-1] - r["theory_objective"]
        lines.append(f"M = {r['depth']}: NC2 = {r['nc2'][-1]:.2f}, objective "
                     f"{'below' if gap < 0 else 'above'} the ETF's by {abs(gap):.1e}")
    return (
        "Why M = " + ", ".join(str(r["depth"]) for r in stuck) + " do not collapse: with "
        "cross-entropy and depth M ≥ 2 the ETF is a critical point\nbut not always the "
        "global minimum; weight decay on a deep product favours low rank\n(Garrod & Keating "
        "2024; docs, Neural collapse: warning). Gradient descent settles at low-rank points:\n"
        + "\n".join(lines)
    )


def plot(data):
    import matplotlib.pyplot as plt

    settings = data["settings"]
    fig = plt.figure(figsize=(4.6 * len(settings), 8.6), constrained_layout=True)
    grid = fig.add_gridspec(3, len(settings), height_ratios=[1, 1, 0.26])
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(len(settings))]
                     for r in range(2)])
    notes = fig.add_subplot(grid[2, :])  # a row for the explanation: it covers no data
    notes.axis("off")
    colours = dict(zip(data["depths"], ["tab:blue", "tab:orange", "tab:green", "tab:red"],
                       strict=False))
    for run in data["runs"]:
        col = settings.index(run["setting"])
        steps = np.asarray(run["steps"])
        c = colours[run["depth"]]
        axes[0, col].semilogy(steps, np.maximum(np.asarray(run["nc1"]), 1e-16), color=c,
                              lw=1.5, label=f"M = {run['depth']}")
        ax = axes[1, col]
        ax.semilogy(steps, np.maximum(np.asarray(run["nc2"]), 1e-16), color=c, lw=1.5)
        ax.semilogy(steps, np.maximum(np.asarray(run["nc3"]), 1e-16), color=c, lw=1.2,
                    ls="-.")
        for key in ("theory_nc2", "theory_nc3"):
            if run[key] > 1e-12:
                ax.axhline(run[key], color=c, ls=":", lw=1.2)
        ax.set_title(f"NC2 ({run['nc2_name']}, solid), NC3 ({run['nc3_name']}, dash-dot)",
                     fontsize=9)
    for col, label in enumerate(settings):
        axes[0, col].set_title(label, fontsize=12)
        axes[0, col].set_ylabel("NC1 (within-class variability)")
        axes[1, col].set_ylabel("NC2, NC3")
        axes[1, col].set_xlabel("gradient-descent iteration")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
        note = (_no_collapse_note([r for r in data["runs"] if r["setting"] == label])
                if label.startswith("CE") else "")
        if note:
            notes.text(0.5, 0.5, f"{label}. " + note, transform=notes.transAxes, fontsize=9,
                       va="center", ha="center",
                       bbox=dict(boxstyle="round", fc="#fff4e0", ec="#d08000"))
    axes[0, 0].legend(title="depth", fontsize=9)
    fig.suptitle("Deep linear UFM trained by gradient descent (best of the seeds). Dotted: the "
                 "metric at the closed-form minimiser where it is not 0")
    return fig


FIGURE = Figure(
    name="neural_collapse_training",
    title="Neural-collapse metrics along gradient descent, depths 1, 3, 6",
    reproduces="Dang et al. 2023, Figs. 2-3 (NC metrics of deep linear UFMs against epochs)",
    compute=compute,
    plot=plot,
    full=dict(K=4, n=25, imbalance=2.0, depths=[1, 3, 6], steps=6000, lr=0.05, lam=5e-3,
              width=16, seeds=3),
    quick=dict(K=4, n=10, imbalance=2.0, depths=[1, 3, 6], steps=400, lr=0.05, lam=5e-3,
               width=8, seeds=1),
    subpackage="sci.neural_collapse",
)

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


def plot(data):
    import matplotlib.pyplot as plt

    settings = data["settings"]
    fig, axes = plt.subplots(len(settings), 4, figsize=(15, 3.2 * len(settings)),
                             constrained_layout=True)
    colours = dict(zip(data["depths"], ["tab:blue", "tab:orange", "tab:green", "tab:red"],
                       strict=False))
    for run in data["runs"]:
        row = settings.index(run["setting"])
        steps = np.asarray(run["steps"])
        c = colours[run["depth"]]
        label = f"M = {run['depth']}"
        gap = np.asarray(run["loss"]) - run["theory_objective"]
        axes[row, 0].plot(steps, gap, color=c, label=label)
        axes[row, 0].set_yscale("symlog", linthresh=1e-6)
        for col, key in ((1, "nc1"), (2, "nc2"), (3, "nc3")):
            axes[row, col].semilogy(steps, np.maximum(np.asarray(run[key]), 1e-16), color=c,
                                    label=label)
        for col, key in ((2, "theory_nc2"), (3, "theory_nc3")):
            if run[key] > 1e-12:
                axes[row, col].axhline(run[key], color=c, ls="--", lw=0.8)
        axes[row, 2].set_title(f"NC2 ({run['nc2_name']})", fontsize=9)
        axes[row, 3].set_title(f"NC3 ({run['nc3_name']})", fontsize=9)
    for row, label in enumerate(settings):
        axes[row, 0].set_ylabel(label)
        axes[row, 0].set_title("loss - closed-form objective (< 0: below the ETF)",
                               fontsize=9)
        axes[row, 1].set_title("NC1", fontsize=9)
        for ax in axes[row]:
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle("Deep linear UFM trained by gradient descent (best of the seeds); dashed: the "
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

"""The collapse-threshold phase diagram of the bias-free MSE model in (lambda, n_k)."""

from __future__ import annotations

import functools

import numpy as np

from figures._registry import Figure
from sci.parallel import parallel_map


def compute(*, N, depths, lambdas, sizes, progress=None):
    from sci.neural_collapse import collapse_threshold

    lam = np.geomspace(*lambdas)
    n = np.unique(np.round(np.geomspace(*sizes)).astype(int))
    out = {"N": N, "lambda": lam, "n": n, "depths": list(depths), "panels": []}
    # One task of sci.parallel per (depth, lambda): a column of the diagram (deterministic).
    columns = iter(parallel_map(functools.partial(_column, N=N, n=n),
                                [(M, float(lj)) for M in depths for lj in lam],
                                progress=progress, desc="depth x lambda"))
    for M in depths:
        sigma = np.stack([next(columns) for _ in lam], axis=1)
        b = M * N * (N * lam ** (M + 1)) ** (1.0 / M)
        tau = collapse_threshold(M)
        # Above n = b / tau the class survives; for M >= 2, between b / peak and b / tau the
        # nonzero critical point exists but zero is the global minimum.
        peak = None
        if M > 1:
            x = ((M - 1.0) / (M + 1.0)) ** (1.0 / M)
            peak = M * x ** (M - 1) / (1 + x**M) ** 2
        out["panels"].append({
            "depth": M, "sigma": sigma, "boundary": b / tau, "threshold": tau,
            "spurious_root_from": None if peak is None else b / peak, "peak": peak,
        })
    return out


def plot(data):
    import matplotlib.pyplot as plt

    panels = data["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4),
                             constrained_layout=True, squeeze=False)
    lam, n = np.asarray(data["lambda"]), np.asarray(data["n"])
    for ax, panel in zip(axes[0], panels, strict=True):
        sigma = np.asarray(panel["sigma"])
        mesh = ax.pcolormesh(lam, n, sigma, shading="nearest", cmap="viridis")
        ax.contour(lam, n, (sigma > 0).astype(float), levels=[0.5], colors="w",
                   linewidths=2.5)
        ax.plot(lam, panel["boundary"], "r--", lw=1.2,
                label=r"$n_k = b/\tau_M$, $\tau_M=(M-1)^{(M-1)/M}/M$")
        if panel["spurious_root_from"] is not None:
            ax.plot(lam, panel["spurious_root_from"], ":", color="orange", lw=1.5,
                    label="above: a nonzero critical point exists")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(n.min(), n.max())
        ax.set_xlabel(r"$\lambda_W = \lambda_H$")
        ax.set_ylabel("$n_k$")
        ax.set_title(f"M = {panel['depth']}: $\\sigma_k$ (white: collapse boundary)")
        fig.colorbar(mesh, ax=ax)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Minority collapse, bias-free MSE, N = {data['N']}")
    return fig


def _column(task, *, N, n):
    """sigma_k of the minimiser for every minority size n at one (depth, lambda)."""
    from sci.neural_collapse import ufm_minimizer

    M, lj = task
    return np.array([ufm_minimizer([N - ni, ni], depth=M, lambda_W=lj, lambda_H=lj)
                     .singular_values[1] for ni in n])


FIGURE = Figure(
    name="neural_collapse_phase",
    title="Collapse-threshold phase diagram in (lambda, n_k)",
    reproduces="Dang et al. 2023, Thm. 4.1 (threshold b/n_k >= (M-1)^((M-1)/M)/M); new figure",
    compute=compute,
    plot=plot,
    full=dict(N=1000, depths=[1, 2, 3, 6], lambdas=[1e-4, 1e-1, 120], sizes=[1, 999, 120]),
    quick=dict(N=1000, depths=[1, 2, 3], lambdas=[1e-4, 1e-1, 24], sizes=[1, 999, 24]),
    subpackage="sci.neural_collapse",
)

"""The Marchenko–Pastur density against sampled eigenvalues of XXᵀ, for several alpha."""

from __future__ import annotations

import functools

import numpy as np

from sci.backend import array_namespace, to_numpy
from sci.generalization import (
    marchenko_pastur_pdf,
    marchenko_pastur_quadrature,
    marchenko_pastur_support,
)
from sci.parallel import parallel_map, task_seeds

from ._registry import Figure


def compute(*, n_inputs, alphas, trials, bins, seed, progress=None):
    """Sample ``trials`` matrices X (N x P, entries N(0, 1/N)) per alpha; histogram their bulk.

    One task of :mod:`sci.parallel` per alpha, drawing from its own child of ``seed``: the same
    samples on every executor and backend.
    """
    task = functools.partial(_panel, n_inputs=n_inputs, trials=trials, bins=bins)
    panels = parallel_map(task, list(zip(alphas, task_seeds(seed, len(alphas)), strict=True)),
                          progress=progress, desc="alpha")
    return {"n_inputs": n_inputs, "trials": trials, "panels": panels}


def _panel(task, *, n_inputs, trials, bins):
    alpha, seed = task
    rng = np.random.default_rng(seed)
    xp = array_namespace()
    n_examples = int(round(alpha * n_inputs))
    eigenvalues = []
    for _ in range(trials):
        # Sampled on the host with one seeded generator, so every backend draws the same X.
        x = xp.asarray(rng.standard_normal((n_inputs, n_examples)) / np.sqrt(n_inputs))
        eigenvalues.append(to_numpy(xp.linalg.eigvalsh(x @ x.T)))
    eigenvalues = np.concatenate(eigenvalues)
    # The N - P zero eigenvalues (alpha < 1) are the atom; the histogram shows the bulk.
    n_zero = trials * max(n_inputs - n_examples, 0)
    bulk = np.sort(eigenvalues)[n_zero:]
    lower, upper = (float(v) for v in marchenko_pastur_support(alpha))
    edges = np.linspace(0.0, upper * 1.05, bins + 1)
    counts, _ = np.histogram(bulk, bins=edges)
    # Normalised by all N eigenvalues per matrix, so the bars integrate to min(1, alpha)
    # like the density they are drawn against.
    density = counts / (trials * n_inputs * np.diff(edges))
    grid = np.linspace(0.0, upper * 1.05, 600)
    nodes, weights = marchenko_pastur_quadrature(alpha, 200)
    return {
        "alpha": alpha,
        "n_examples": n_examples,
        "support": [lower, upper],
        "bin_edges": edges,
        "histogram": density,
        "grid": grid,
        "pdf": to_numpy(marchenko_pastur_pdf(grid, alpha)),
        "bulk_mass_sampled": bulk.size / (trials * n_inputs),
        "bulk_mass_theory": min(1.0, alpha),
        "mean_sampled": float(eigenvalues.mean()),
        "mean_theory": alpha,
        "second_moment_sampled": float(np.mean(eigenvalues**2)),
        "second_moment_theory": float(to_numpy(weights @ nodes**2)),
        "max_sampled_eigenvalue": float(bulk.max()),
    }


def plot(data):
    import matplotlib.pyplot as plt

    panels = data["panels"]
    # At most three panels a row, each wide enough to read the edge of the bulk.
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.5 * nrows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes, panels, strict=False):
        edges = np.asarray(panel["bin_edges"])
        ax.bar(
            edges[:-1], panel["histogram"], width=np.diff(edges), align="edge",
            color="0.8", edgecolor="0.6", linewidth=0.3, label="sampled $XX^T$",
        )
        ax.plot(panel["grid"], panel["pdf"], color="C3", lw=1.5, label=r"$\rho(\lambda)$")
        title = rf"$\alpha = {panel['alpha']:g}$"
        if panel["alpha"] < 1:
            title += rf" (+ atom {1 - panel['alpha']:g} at 0)"
        if panel["alpha"] == 1:
            ax.set_ylim(0, 1.5)  # the density diverges as lambda^(-1/2) at 0; show the bulk
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(r"eigenvalue $\lambda$")
    for ax in axes[::ncols]:
        ax.set_ylabel("density")
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(
        f"Marchenko–Pastur law, N = {data['n_inputs']}, {data['trials']} samples per $\\alpha$",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="marchenko_pastur",
    title="Marchenko–Pastur density against sampled spectra",
    reproduces=(
        "Advani, Saxe & Sompolinsky (2020), Sec. 2: the eigenvalue density of the input "
        "correlation matrix XXᵀ for several α (the spectrum panel of their Fig. 2)"
    ),
    compute=compute,
    plot=plot,
    full={"n_inputs": 1000, "alphas": [0.25, 0.5, 1.0, 2.0, 4.0], "trials": 10, "bins": 60,
          "seed": 1},
    quick={"n_inputs": 200, "alphas": [0.5, 1.0, 2.0], "trials": 3, "bins": 30, "seed": 1},
    subpackage="sci.generalization",
)

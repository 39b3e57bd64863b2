"""Decay of the mode singular values of Chebyshev coefficient tensors."""

from __future__ import annotations

import functools

import numpy as np

from figures._registry import Figure
from sci.parallel import parallel_map


def compute(*, sigmas, degree, grid, progress=None):
    # One task of sci.parallel per sigma (deterministic: any executor gives the same numbers).
    decays = parallel_map(functools.partial(_decays, degree=degree, grid=grid), list(sigmas),
                          progress=progress, desc="sigma")
    return {"sigmas": list(sigmas), "degree": degree, "grid": grid,
            "coefficients": [c for c, _ in decays], "grid_values": [v for _, v in decays]}


def _erf_over_r(a, b, c, *, sigma):
    from scipy.special import erf

    r = np.sqrt(a * a + b * b + c * c)
    safe = np.where(r == 0, 1.0, r)
    return np.where(r == 0, 2 / (sigma * np.sqrt(np.pi)), erf(safe / sigma) / safe)


def _decays(sigma, *, degree, grid):
    """Normalised mode-1 singular values of the coefficients and of the grid values."""
    from sci.chebyshev_tucker import chebyshev_points, hosvd, values_to_coefficients

    x = chebyshev_points(degree + 1)
    g = -1 + (np.arange(grid) + 0.5) * 2 / grid
    c = values_to_coefficients(
        _erf_over_r(x[:, None, None], x[None, :, None], x[None, None, :], sigma=sigma))
    s = hosvd(c, ranks=1).singular_values[0]
    coefficients = (s / s[0]).tolist()
    s = hosvd(_erf_over_r(g[:, None, None], g[None, :, None], g[None, None, :], sigma=sigma),
              ranks=1).singular_values[0]
    return coefficients, (s[:degree + 1] / s[0]).tolist()


def plot(data):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for k, sigma in enumerate(data["sigmas"]):
        line, = ax.semilogy(np.maximum(data["coefficients"][k], 1e-17), "-",
                            label=f"coefficients, σ = {sigma}")
        ax.semilogy(np.maximum(data["grid_values"][k], 1e-17), ":", color=line.get_color(),
                    label=f"grid values {data['grid']}³, σ = {sigma}")
    ax.set_xlabel("index i")
    ax.set_ylabel("σ_i / σ_1 (mode-1 unfolding)")
    ax.set_xlim(0, 30)
    ax.set_ylim(1e-16, 2)
    ax.set_title(f"erf(r/σ)/r, m = {data['degree'] + 1}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="chebyshev_tucker_singular_values",
    title="Singular-value decay of the Chebyshev coefficient unfoldings",
    reproduces="Benner et al. 2025 (arXiv:2503.01696), singular values of the coefficient "
               "tensor unfoldings of the long-range kernel",
    compute=compute, plot=plot,
    full={"sigmas": [0.1, 0.15, 0.3], "degree": 64, "grid": 128},
    quick={"sigmas": [0.1, 0.15, 0.3], "degree": 64, "grid": 40},
    subpackage="sci.chebyshev_tucker",
)

"""Generalization dynamics of the linear student–teacher model: theory and simulation.

Four figures after Advani, Saxe & Sompolinsky (2020): training curves for several alpha with
simulated points, the asymptotic error against alpha (the peak at alpha = 1), the effect of the
initial weights, and early stopping against the ridge optimum.
"""

from __future__ import annotations

import functools

import numpy as np

from sci.backend import to_numpy
from sci.generalization import (
    asymptotic_errors,
    generalization_error,
    optimal_stopping,
    ridge_error,
    simulate_linear,
    training_error,
)
from sci.parallel import parallel_map

from ._registry import Figure


def _np(x):
    return np.asarray(to_numpy(x), dtype=float)


# --------------------------------------------------------------------------------------------
# 1. E_g(t) and E_train(t) for several alpha, theory lines and simulation points.


# Every sweep below is a list of tasks for sci.parallel (one per parameter value, seeded by its
# index as before), so a figure computes the same numbers in-process, on local processes or on a
# Dask cluster; the task functions live at module level so that they pickle.


def compute_training_curves(*, alphas, snr, n_inputs, n_trials, n_times, t_max, seed,
                            progress=None):
    task = functools.partial(_training_curves_panel, snr=snr, n_inputs=n_inputs,
                             n_trials=n_trials, n_times=n_times, t_max=t_max, seed=seed)
    panels = parallel_map(task, list(enumerate(alphas)), progress=progress, desc="alpha")
    return {"snr": snr, "n_inputs": n_inputs, "n_trials": n_trials, "panels": panels}


def _training_curves_panel(indexed_alpha, *, snr, n_inputs, n_trials, n_times, t_max, seed):
    index, alpha = indexed_alpha
    sigma_eps = float(np.sqrt(1.0 / snr))
    t_line = np.logspace(-2, np.log10(t_max), 300)
    t_sim = np.logspace(-2, np.log10(t_max), n_times)
    n_examples = int(round(alpha * n_inputs))
    eg, et = simulate_linear(n_inputs, n_examples, t_sim, sigma_eps=sigma_eps,
                             n_trials=n_trials, rng=seed + index)
    eg, et = _np(eg), _np(et)
    return {
        "alpha": alpha,
        "n_examples": n_examples,
        "t": t_line,
        "generalization": _np(generalization_error(t_line, alpha=alpha,
                                                   sigma_eps=sigma_eps)),
        "training": _np(training_error(t_line, alpha=alpha, sigma_eps=sigma_eps)),
        "t_simulated": t_sim,
        "generalization_simulated": eg.mean(axis=0),
        "generalization_sem": eg.std(axis=0, ddof=1) / np.sqrt(n_trials),
        "training_simulated": et.mean(axis=0),
        "training_sem": et.std(axis=0, ddof=1) / np.sqrt(n_trials),
        "generalization_theory_at_simulated": _np(
            generalization_error(t_sim, alpha=alpha, sigma_eps=sigma_eps)),
    }


def plot_training_curves(data):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4), sharey=True)
    for k, panel in enumerate(data["panels"]):
        color = f"C{k}"
        label = rf"$\alpha = {panel['alpha']:g}$"
        axes[0].plot(panel["t"], panel["generalization"], color=color, label=label)
        axes[0].errorbar(panel["t_simulated"], panel["generalization_simulated"],
                         yerr=panel["generalization_sem"], fmt="o", ms=3, color=color)
        axes[1].plot(panel["t"], panel["training"], color=color, label=label)
        axes[1].errorbar(panel["t_simulated"], panel["training_simulated"],
                         yerr=panel["training_sem"], fmt="o", ms=3, color=color)
    for ax, name in zip(axes, ("generalization error $E_g$", "training error $E_{train}$"),
                        strict=True):
        ax.set_xscale("log")
        ax.set_xlabel(r"training time $t/\tau$")
        ax.set_title(name, fontsize=10)
    axes[0].set_ylim(0, 2.0)
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(
        f"Linear student–teacher, SNR = {data['snr']:g}: lines theory, points simulation "
        f"(N = {data['n_inputs']}, {data['n_trials']} trials)", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# 2. Asymptotic error against alpha: the overtraining peak.


_ALPHA_SIMULATED = (0.25, 0.5, 0.75, 1.5, 2.0, 3.0, 4.0)


def compute_asymptotic(*, snrs, n_inputs, n_trials, seed, progress=None):
    alpha = np.concatenate([np.linspace(0.05, 0.98, 60), np.linspace(1.02, 4.0, 60)])
    alpha_sim = np.array(_ALPHA_SIMULATED)
    # One task per (SNR, alpha) simulation: the seeds are those of the nested loops before.
    tasks = [(snr, a, seed + 100 * index + j) for index, snr in enumerate(snrs)
             for j, a in enumerate(_ALPHA_SIMULATED)]
    task = functools.partial(_asymptotic_point, n_inputs=n_inputs, n_trials=n_trials)
    points = iter(parallel_map(task, tasks, progress=progress, desc="SNR x alpha"))
    curves = []
    for snr in snrs:
        sigma_eps = float(np.sqrt(1.0 / snr))
        eg, et = asymptotic_errors(alpha, sigma_eps=sigma_eps)
        sim, sem = zip(*(next(points) for _ in _ALPHA_SIMULATED), strict=True)
        finite, _ = asymptotic_errors(alpha_sim, sigma_eps=sigma_eps, n_inputs=n_inputs)
        curves.append({
            "snr": snr,
            "generalization": _np(eg),
            "training": _np(et),
            "alpha_simulated": alpha_sim,
            "generalization_simulated": np.array(sim),
            "generalization_sem": np.array(sem),
            "finite_size_theory": _np(finite),
        })
    return {"alpha": alpha, "n_inputs": n_inputs, "n_trials": n_trials, "curves": curves}


def _asymptotic_point(task, *, n_inputs, n_trials):
    """Mean and standard error of the simulated E_g(t = 1e8) at one (SNR, alpha)."""
    snr, a, rng = task
    g, _ = simulate_linear(n_inputs, int(round(a * n_inputs)), [1e8],
                           sigma_eps=float(np.sqrt(1.0 / snr)), n_trials=n_trials, rng=rng)
    g = _np(g)[:, 0]
    return float(g.mean()), float(g.std(ddof=1) / np.sqrt(n_trials))


def plot_asymptotic(data):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for k, curve in enumerate(data["curves"]):
        color = f"C{k}"
        ax.plot(data["alpha"], curve["generalization"], color=color,
                label=rf"$E_g(t \to \infty)$, SNR = {curve['snr']:g}")
        ax.plot(data["alpha"], curve["training"], color=color, ls=":")
        ax.errorbar(curve["alpha_simulated"], curve["generalization_simulated"],
                    yerr=curve["generalization_sem"], fmt="o", ms=3, color=color)
    ax.axvline(1.0, color="0.7", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(1e-2, 1e2)
    ax.set_xlabel(r"$\alpha = P/N$")
    # No infinity sign in a rotated label: turned 90 degrees it reads as an 8.
    ax.set_ylabel("error after training to convergence")
    ax.set_title(f"Overtraining peak at α = 1 (dotted: $E_{{train}}$; points: N = "
                 f"{data['n_inputs']})", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# 3. The initial weights: they persist in the frozen subspace.


def compute_initial_weights(*, sigma_w0s, alpha, snr, n_inputs, n_trials, seed, progress=None):
    t = np.logspace(-2, 3, 200)
    t_sim = np.logspace(-2, 3, 9)
    alphas = _alphas_around_one()
    task = functools.partial(_initial_weights_row, alpha=alpha, snr=snr, n_inputs=n_inputs,
                             n_trials=n_trials, seed=seed)
    rows = parallel_map(task, list(enumerate(sigma_w0s)), progress=progress, desc="w0")
    return {"alpha": alpha, "snr": snr, "t": t, "t_simulated": t_sim, "alphas": alphas,
            "n_inputs": n_inputs, "rows": rows}


def _alphas_around_one() -> np.ndarray:
    """α on both sides of 1, dense near it (E_g(∞) diverges there), and α = 1 itself."""
    gap = np.geomspace(1e-3, 0.95, 45)
    return np.concatenate([1.0 - gap[::-1], [1.0], 1.0 + np.geomspace(1e-3, 2.0, 45)])


def _initial_weights_row(indexed, *, alpha, snr, n_inputs, n_trials, seed):
    index, sigma_w0 = indexed
    sigma_eps = float(np.sqrt(1.0 / snr))
    t = np.logspace(-2, 3, 200)
    t_sim = np.logspace(-2, 3, 9)
    alphas = _alphas_around_one()
    g, _ = simulate_linear(n_inputs, int(round(alpha * n_inputs)), t_sim,
                           sigma_eps=sigma_eps, sigma_w0=sigma_w0, n_trials=n_trials,
                           rng=seed + index)
    g = _np(g)
    asym, _ = asymptotic_errors(alphas, sigma_eps=sigma_eps, sigma_w0=sigma_w0)
    return {
        "sigma_w0": sigma_w0,
        "generalization": _np(generalization_error(t, alpha=alpha, sigma_eps=sigma_eps,
                                                   sigma_w0=sigma_w0)),
        "generalization_simulated": g.mean(axis=0),
        "generalization_sem": g.std(axis=0, ddof=1) / np.sqrt(n_trials),
        "asymptotic": _np(asym),
    }


def plot_initial_weights(data):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for k, row in enumerate(data["rows"]):
        color = f"C{k}"
        label = rf"$\sigma_{{w_0}} = {row['sigma_w0']:g}$"
        axes[0].plot(data["t"], row["generalization"], color=color, label=label)
        axes[0].errorbar(data["t_simulated"], row["generalization_simulated"],
                         yerr=row["generalization_sem"], fmt="o", ms=3, color=color)
        # E_g(inf) is infinite at alpha = 1 (null in the JSON): a gap there, marked below.
        axes[1].plot(data["alphas"], np.asarray(row["asymptotic"], dtype=float), color=color,
                     label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel(r"training time $t/\tau$")
    axes[0].set_ylabel(r"$E_g(t)$")
    axes[0].set_title(rf"$\alpha = {data['alpha']:g}$ (points: N = {data['n_inputs']})",
                      fontsize=9)
    axes[1].set_yscale("log")
    axes[1].axvline(1.0, color="0.5", ls="--", lw=0.8)
    axes[1].annotate(r"$\alpha = 1$: $E_g(\infty) = \infty$", (1.0, 0.97),
                     xycoords=("data", "axes fraction"), xytext=(4, 0),
                     textcoords="offset points", fontsize=8, va="top")
    axes[1].set_xlabel(r"$\alpha = P/N$")
    axes[1].set_ylabel(r"$E_g$ after training to convergence")
    axes[1].set_title("large initial weights hurt only for α < 1", fontsize=9)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"Initial weight scale, SNR = {data['snr']:g}", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# 4. Early stopping against the ridge (Bayes) optimum.


def compute_early_stopping(*, snrs, n_alpha, progress=None):
    alpha = np.concatenate([np.geomspace(0.05, 0.99, n_alpha // 2),
                            np.geomspace(1.01, 5.0, n_alpha - n_alpha // 2)])
    alpha = np.sort(np.append(alpha, 1.0))
    curves = parallel_map(functools.partial(_early_stopping_curve, alpha=alpha), list(snrs),
                          progress=progress, desc="snr")
    return {"alpha": alpha, "curves": curves}


def _early_stopping_curve(snr, *, alpha):
    sigma_eps = float(np.sqrt(1.0 / snr))
    t_opt, e_opt = optimal_stopping(alpha, sigma_eps=sigma_eps)
    ridge = ridge_error(alpha, sigma_eps=sigma_eps)
    asym, _ = asymptotic_errors(alpha, sigma_eps=sigma_eps)
    return {
        "snr": snr,
        "t_opt": _np(t_opt),
        "early_stopping": _np(e_opt),
        "ridge": _np(ridge),
        "asymptotic": _np(asym),
        "max_excess": float(np.max(_np(e_opt) / _np(ridge) - 1.0)),
    }


def plot_early_stopping(data):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.9))
    alpha = np.asarray(data["alpha"])
    finite = alpha != 1.0
    # The ridge optimum lies within a few % of early stopping, so a dashed line would hide
    # under the solid one: open circles on a subset of the alphas, drawn on top.
    marks = np.unique([int(np.argmin(np.abs(alpha - a)))
                       for a in np.linspace(alpha.min(), alpha.max(), 16)])
    for k, curve in enumerate(data["curves"]):
        color = f"C{k}"
        axes[0].plot(alpha, curve["early_stopping"], color=color, lw=1.5,
                     label=f"SNR = {curve['snr']:g}")
        ridge = np.asarray(curve["ridge"], dtype=float)
        axes[0].plot(alpha[marks], ridge[marks], "o", mfc="none", mec=color, ms=6, mew=1.2,
                     zorder=3)
        # inf (alpha = 1) comes back from JSON as null: read as float, so it becomes nan.
        asymptotic = np.asarray(curve["asymptotic"], dtype=float)
        axes[0].plot(alpha[finite], asymptotic[finite], color=color, ls=":", lw=1.2)
        axes[1].plot(alpha, np.asarray(curve["early_stopping"]) / ridge,
                     color=color, label=f"SNR = {curve['snr']:g}")
    axes[0].set_yscale("log")
    axes[0].set_ylim(1e-2, 1e2)
    axes[0].set_xlabel(r"$\alpha = P/N$")
    axes[0].set_ylabel(r"generalization error $E_g$")
    axes[0].set_title("optimal early stopping against the ridge (Bayes) optimum", fontsize=10)
    colours = axes[0].legend(fontsize=8, frameon=False, loc="upper right")
    axes[0].add_artist(colours)
    styles = [
        Line2D([], [], color="k", lw=1.5, label=r"early stopping, $E_g(t_{opt})$"),
        Line2D([], [], color="k", ls="none", marker="o", mfc="none", ms=6,
               label=r"ridge optimum, $E^*_{ridge}$"),
        Line2D([], [], color="k", ls=":", lw=1.2, label=r"no stopping, $E_g(t \to \infty)$"),
    ]
    axes[0].legend(handles=styles, fontsize=8, frameon=False, loc="lower left")
    axes[1].set_xlabel(r"$\alpha = P/N$")
    axes[1].set_ylabel(r"$E_g(t_{opt}) \,/\, E^*_{ridge}$")
    axes[1].set_title("early stopping is within a few % of Bayes-optimal", fontsize=10)
    axes[1].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


SUBPACKAGE = "sci.generalization"
PAPER = "Advani, Saxe & Sompolinsky (2020)"

FIGURES = [
    Figure(
        name="generalization_training_curves",
        title="Generalization and training error against training time",
        reproduces=f"{PAPER}, Sec. 3: E_g(t) and E_train(t) for several α, theory with "
                   "simulation points",
        compute=compute_training_curves,
        plot=plot_training_curves,
        full={"alphas": [0.5, 1.0, 2.0, 4.0], "snr": 5.0, "n_inputs": 1000, "n_trials": 20,
              "n_times": 12, "t_max": 1e3, "seed": 1},
        quick={"alphas": [0.5, 1.0, 2.0], "snr": 5.0, "n_inputs": 200, "n_trials": 8,
               "n_times": 8, "t_max": 1e3, "seed": 1},
        subpackage=SUBPACKAGE,
    ),
    Figure(
        name="generalization_asymptotic",
        title="Asymptotic generalization error against α: the overtraining peak",
        reproduces=f"{PAPER}, Sec. 3.1: E_g(t → ∞) and E_train(∞) against α for several SNRs",
        compute=compute_asymptotic,
        plot=plot_asymptotic,
        full={"snrs": [0.5, 2.0, 10.0], "n_inputs": 500, "n_trials": 20, "seed": 2},
        quick={"snrs": [1.0, 10.0], "n_inputs": 100, "n_trials": 6, "seed": 2},
        subpackage=SUBPACKAGE,
    ),
    Figure(
        name="generalization_initial_weights",
        title="The effect of the initial weight scale",
        reproduces=f"{PAPER}, Sec. 3.2: larger initial weights raise the error through the "
                   "frozen subspace (α < 1)",
        compute=compute_initial_weights,
        plot=plot_initial_weights,
        full={"sigma_w0s": [0.0, 0.5, 1.0, 2.0], "alpha": 0.5, "snr": 5.0, "n_inputs": 1000,
              "n_trials": 20, "seed": 3},
        quick={"sigma_w0s": [0.0, 1.0, 2.0], "alpha": 0.5, "snr": 5.0, "n_inputs": 200,
               "n_trials": 6, "seed": 3},
        subpackage=SUBPACKAGE,
    ),
    Figure(
        name="generalization_early_stopping",
        title="Optimal early stopping against the ridge (Bayes) optimum",
        reproduces=f"{PAPER}, Sec. 4: E_g at the optimal stopping time against the optimal "
                   "ridge error, for several SNRs",
        compute=compute_early_stopping,
        plot=plot_early_stopping,
        full={"snrs": [0.5, 2.0, 10.0], "n_alpha": 120},
        quick={"snrs": [1.0, 10.0], "n_alpha": 30},
        subpackage=SUBPACKAGE,
    ),
]

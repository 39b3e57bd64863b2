"""Overtraining in two-layer ReLU student–teacher networks (the nonlinear extension).

After Advani, Saxe & Sompolinsky (2020), Sec. 6 and Fig. 7: a ReLU teacher (N_i = 15 inputs,
30 hidden units) labels P = 300 noisy examples; ReLU students of H hidden units learn them by
full-batch gradient descent. With the first layer frozen (Fig. 7), overtraining peaks where
the number of trained parameters H equals P; a third figure trains both layers.
"""

from __future__ import annotations

import functools

import numpy as np

from sci.backend import to_numpy
from sci.generalization import simulate_two_layer
from sci.parallel import parallel_map

from ._registry import Figure


def _epochs(last, n):
    return np.unique(np.concatenate([[0], np.round(np.geomspace(1, last, n)).astype(int)]))


def _simulate(task, *, epochs, n_examples, n_trials, n_test, **kwargs):
    """One task: the summary of ``n_trials`` students of ``task = (H, SNR, seed)``."""
    n_hidden, snr, seed = task
    eg, et = simulate_two_layer(n_hidden, epochs, n_examples=n_examples, snr=snr,
                                n_trials=n_trials, n_test=n_test, rng=seed, **kwargs)
    return _summary(eg, et, n_trials)


def _summary(eg, et, n_trials):
    eg, et = np.asarray(to_numpy(eg), dtype=float), np.asarray(to_numpy(et), dtype=float)
    best = eg.min(axis=1)  # per seed: the error at the best (oracle) early-stopping epoch
    final = eg[:, -1]
    return {
        "generalization": eg.mean(axis=0),
        "generalization_sem": eg.std(axis=0, ddof=1) / np.sqrt(n_trials),
        "training": et.mean(axis=0),
        "early_stopping": float(best.mean()),
        "early_stopping_sem": float(best.std(ddof=1) / np.sqrt(n_trials)),
        "final": float(final.mean()),
        "final_sem": float(final.std(ddof=1) / np.sqrt(n_trials)),
        "overtraining": float((final - best).mean()),
        "overtraining_sem": float((final - best).std(ddof=1) / np.sqrt(n_trials)),
    }


def compute_dynamics(*, hidden_sizes, snr, n_examples, last_epoch, n_epochs, n_trials,
                     n_test, seed, progress=None):
    epochs = _epochs(last_epoch, n_epochs)
    # One task per student size (or per (SNR, size) pair below), seeded by its index as
    # before: the same numbers on any executor of sci.parallel.
    task = functools.partial(_simulate, epochs=epochs, n_examples=n_examples, n_trials=n_trials,
                             n_test=n_test)
    summaries = parallel_map(task, [(h, snr, seed + index) for index, h in enumerate(hidden_sizes)],
                             progress=progress, desc="H")
    rows = [{"n_hidden": h, **row} for h, row in zip(hidden_sizes, summaries, strict=True)]
    return {"epochs": epochs, "snr": snr, "n_examples": n_examples, "n_trials": n_trials,
            "rows": rows}


def plot_dynamics(data):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    epochs = np.asarray(data["epochs"], dtype=float)
    shown = epochs > 0
    for k, row in enumerate(data["rows"]):
        color = f"C{k}"
        label = f"H = {row['n_hidden']}"
        mean = np.asarray(row["generalization"])
        sem = np.asarray(row["generalization_sem"])
        axes[0].plot(epochs[shown], mean[shown], color=color, label=label)
        axes[0].fill_between(epochs[shown], (mean - sem)[shown], (mean + sem)[shown],
                             color=color, alpha=0.2, lw=0)
        axes[1].plot(epochs[shown], np.asarray(row["training"])[shown], color=color,
                     label=label)
    for ax, name in zip(axes, ("generalization error", "training error"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
    axes[1].set_yscale("log")
    axes[1].set_ylim(bottom=1e-6)  # H > P interpolates: the residual decays to rounding
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(
        f"Random-ReLU-feature students (output layer trained), P = {data['n_examples']}, "
        f"SNR = {data['snr']:g}, {data['n_trials']} seeds", fontsize=10)
    fig.tight_layout()
    return fig


def compute_size(*, hidden_sizes, snrs, n_examples, last_epoch, n_epochs, n_trials, n_test,
                 seed, progress=None):
    epochs = _epochs(last_epoch, n_epochs)
    curves = []
    jobs = [(s, h) for s in snrs for h in hidden_sizes]
    task = functools.partial(_simulate, epochs=epochs, n_examples=n_examples, n_trials=n_trials,
                             n_test=n_test)
    summaries = parallel_map(task, [(h, snr, seed + index) for index, (snr, h) in enumerate(jobs)],
                             progress=progress, desc="SNR x H")
    results = dict(zip(jobs, summaries, strict=True))
    for snr in snrs:
        rows = [results[(snr, h)] for h in hidden_sizes]
        curve = {"snr": snr}
        for key in ("early_stopping", "early_stopping_sem", "final", "final_sem",
                    "overtraining", "overtraining_sem"):
            curve[key] = [row[key] for row in rows]
        curve["peak_hidden_size"] = int(hidden_sizes[int(np.argmax(curve["overtraining"]))])
        curves.append(curve)
    return {"hidden_sizes": list(hidden_sizes), "n_examples": n_examples,
            "last_epoch": last_epoch, "n_trials": n_trials, "curves": curves}


def plot_size(data):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    h = np.asarray(data["hidden_sizes"], dtype=float)
    for k, curve in enumerate(data["curves"]):
        color = f"C{k}"
        label = f"SNR = {curve['snr']:g}"
        axes[0].errorbar(h, curve["early_stopping"], yerr=curve["early_stopping_sem"],
                         color=color, marker="o", ms=3, label=label + " (early stopping)")
        axes[0].plot(h, curve["final"], color=color, ls=":", lw=1)
        axes[1].errorbar(h, curve["overtraining"], yerr=curve["overtraining_sem"], color=color,
                         marker="o", ms=3, label=label)
    for ax in axes:
        ax.set_xscale("log")
        ax.axvline(data["n_examples"], color="0.7", lw=0.8)
        ax.set_xlabel("hidden units H (trained parameters)")
    axes[0].set_yscale("log")
    axes[0].set_title(f"error: best epoch (solid), epoch {data['last_epoch']:.0e} (dotted)",
                      fontsize=9)
    axes[1].set_yscale("log")
    axes[1].set_title("overtraining = final − best, peaks at H = P", fontsize=9)
    axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def compute_both_layers(*, hidden_sizes, snr, n_examples, last_epoch, n_epochs, learning_rate,
                        n_trials, n_test, seed, progress=None):
    epochs = _epochs(last_epoch, n_epochs)
    task = functools.partial(_simulate, epochs=epochs, n_examples=n_examples, n_trials=n_trials,
                             n_test=n_test, train_hidden=True, learning_rate=learning_rate)
    summaries = parallel_map(task, [(h, snr, seed + index) for index, h in enumerate(hidden_sizes)],
                             progress=progress, desc="H")
    rows = [{"n_hidden": h, "parameters": h * (15 + 1), **row}
            for h, row in zip(hidden_sizes, summaries, strict=True)]
    return {"epochs": epochs, "snr": snr, "n_examples": n_examples, "n_trials": n_trials,
            "rows": rows}


def plot_both_layers(data):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    epochs = np.asarray(data["epochs"], dtype=float)
    shown = epochs > 0
    for k, row in enumerate(data["rows"]):
        color = f"C{k}"
        label = f"H = {row['n_hidden']} ({row['parameters']} params)"
        axes[0].plot(epochs[shown], np.asarray(row["generalization"])[shown], color=color,
                     label=label)
        axes[1].plot(epochs[shown], np.asarray(row["training"])[shown], color=color,
                     label=label)
    for ax, name in zip(axes, ("generalization error", "training error"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"Both layers trained, P = {data['n_examples']}, SNR = {data['snr']:g}, "
                 f"{data['n_trials']} seeds", fontsize=10)
    fig.tight_layout()
    return fig


SUBPACKAGE = "sci.generalization"

FIGURES = [
    Figure(
        name="generalization_two_layer_dynamics",
        title="Two-layer students: error against training time",
        reproduces="Advani, Saxe & Sompolinsky (2020), Fig. 7F: training dynamics of random "
                   "ReLU-feature students of several sizes (overtraining at H ≈ P)",
        compute=compute_dynamics,
        plot=plot_dynamics,
        full={"hidden_sizes": [30, 150, 300, 600, 2000], "snr": 1.0, "n_examples": 300,
              "last_epoch": 10**7, "n_epochs": 60, "n_trials": 20, "n_test": 1000, "seed": 1},
        quick={"hidden_sizes": [20, 80, 240], "snr": 1.0, "n_examples": 80,
               "last_epoch": 10**6, "n_epochs": 30, "n_trials": 4, "n_test": 200, "seed": 1},
        subpackage=SUBPACKAGE,
    ),
    Figure(
        name="generalization_two_layer_size",
        title="Two-layer students: early stopping and overtraining against size",
        reproduces="Advani, Saxe & Sompolinsky (2020), Fig. 7C–D: optimal early-stopping error "
                   "and overtraining against the number of hidden units, several SNRs",
        compute=compute_size,
        plot=plot_size,
        full={"hidden_sizes": [10, 30, 100, 200, 300, 450, 1000, 2000],
              "snrs": [0.01, 1.0, 10.0], "n_examples": 300, "last_epoch": 10**7,
              "n_epochs": 60, "n_trials": 20, "n_test": 500, "seed": 2},
        quick={"hidden_sizes": [10, 40, 80, 160, 400], "snrs": [1.0, 10.0], "n_examples": 80,
               "last_epoch": 10**6, "n_epochs": 30, "n_trials": 4, "n_test": 200, "seed": 2},
        subpackage=SUBPACKAGE,
    ),
    Figure(
        name="generalization_two_layer_both_layers",
        title="Two-layer students with both layers trained",
        reproduces="new: the Fig. 7 set-up with the first layer trained too (gradient descent "
                   "on both layers), several sizes",
        compute=compute_both_layers,
        plot=plot_both_layers,
        full={"hidden_sizes": [5, 20, 80], "snr": 1.0, "n_examples": 300,
              "last_epoch": 10000, "n_epochs": 40, "learning_rate": 0.5, "n_trials": 6,
              "n_test": 500, "seed": 3},
        quick={"hidden_sizes": [3, 12, 48], "snr": 1.0, "n_examples": 60, "last_epoch": 2000,
               "n_epochs": 20, "learning_rate": 0.5, "n_trials": 3, "n_test": 200, "seed": 3},
        subpackage=SUBPACKAGE,
    ),
]

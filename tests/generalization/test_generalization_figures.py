"""Every generalization figure in quick mode, its numbers checked against the closed forms."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from figures import generalization_curves, generalization_two_layer
from figures._runner import run_figure
from sci.generalization import asymptotic_errors, generalization_error, ridge_error

FIGURES = {
    fig.name: fig for fig in generalization_curves.FIGURES + generalization_two_layer.FIGURES
}


def _run(name, tmp_path):
    # SCI_FIGURES_CACHE (set by CI) lets the docs build reuse these computations.
    cache = os.environ.get("SCI_FIGURES_CACHE")
    run_figure(FIGURES[name], quick=True, out=tmp_path, cache_dir=cache, progress=False)
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    return json.loads((tmp_path / f"{name}.json").read_text())["data"]


def _agrees(mean, sem, expected, n_inputs):
    # 4 standard errors + the O(1/N) finite-size bias of the spectral statistic.
    mean, sem, expected = (np.asarray(v, dtype=float) for v in (mean, sem, expected))
    assert np.all(np.abs(mean - expected) <= 4 * sem + np.abs(expected) / n_inputs + 1e-12)


def test_training_curves(tmp_path):
    data = _run("generalization_training_curves", tmp_path)
    sigma_eps = math.sqrt(1 / data["snr"])
    for panel in data["panels"]:
        line = generalization_error(panel["t"], alpha=panel["alpha"], sigma_eps=sigma_eps)
        np.testing.assert_allclose(panel["generalization"], line, rtol=1e-12)
        # alpha = 1 at late times is dominated by rare tiny eigenvalues: compare before t = 10
        early = np.asarray(panel["t_simulated"]) < 10
        _agrees(np.asarray(panel["generalization_simulated"])[early],
                np.asarray(panel["generalization_sem"])[early],
                np.asarray(panel["generalization_theory_at_simulated"])[early],
                data["n_inputs"])


def test_asymptotic(tmp_path):
    data = _run("generalization_asymptotic", tmp_path)
    for curve in data["curves"]:
        _agrees(curve["generalization_simulated"], curve["generalization_sem"],
                curve["finite_size_theory"], math.inf)
        eg, _ = asymptotic_errors(data["alpha"], sigma_eps=math.sqrt(1 / curve["snr"]))
        np.testing.assert_allclose(curve["generalization"], eg, rtol=1e-14)
        # the peak: the largest error sits next to alpha = 1
        alpha = np.asarray(data["alpha"])
        assert abs(alpha[np.argmax(curve["generalization"])] - 1) < 0.05


def test_initial_weights(tmp_path):
    data = _run("generalization_initial_weights", tmp_path)
    alphas = np.asarray(data["alphas"])
    above = alphas > 1
    base = np.asarray(data["rows"][0]["asymptotic"])
    for row in data["rows"]:
        _agrees(row["generalization_simulated"], row["generalization_sem"],
                generalization_error(data["t_simulated"], alpha=data["alpha"],
                                     sigma_eps=math.sqrt(1 / data["snr"]),
                                     sigma_w0=row["sigma_w0"]), data["n_inputs"])
        # for alpha > 1 the initial weights are forgotten; below, they add (1-alpha) sigma_w0^2
        np.testing.assert_allclose(np.asarray(row["asymptotic"])[above], base[above])
        np.testing.assert_allclose(np.asarray(row["asymptotic"])[~above] - base[~above],
                                   (1 - alphas[~above]) * row["sigma_w0"] ** 2, rtol=1e-10)


def test_early_stopping(tmp_path):
    data = _run("generalization_early_stopping", tmp_path)
    for curve in data["curves"]:
        ridge = ridge_error(data["alpha"], sigma_eps=math.sqrt(1 / curve["snr"]))
        np.testing.assert_allclose(curve["ridge"], ridge, rtol=1e-14)
        ratio = np.asarray(curve["early_stopping"]) / ridge
        assert np.all(ratio >= 1 - 1e-12)
        assert np.all(ratio <= 1.03)  # "within about 2%" (the spec); 2.5% at SNR 10


@pytest.mark.parametrize("name", ["generalization_two_layer_dynamics",
                                  "generalization_two_layer_size",
                                  "generalization_two_layer_both_layers"])
def test_two_layer(tmp_path, name):
    data = _run(name, tmp_path)
    if name == "generalization_two_layer_size":
        # overtraining peaks where the number of trained weights H equals P
        for curve in data["curves"]:
            assert curve["peak_hidden_size"] == data["n_examples"]
    else:
        for row in data["rows"]:
            assert row["early_stopping"] <= row["final"]
            assert row["training"][-1] < row["training"][0]

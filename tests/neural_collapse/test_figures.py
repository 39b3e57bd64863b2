"""Every neural_collapse figure runs in quick mode, and its numbers agree with the theory."""

import json
import os

import numpy as np
import pytest

from figures._registry import discover
from figures._runner import run_figure

FIGURES = {name: fig for name, fig in discover().items() if name.startswith("neural_collapse")}


def run(name, tmp_path):
    # SCI_FIGURES_CACHE (set by CI) lets the docs build reuse these computations.
    cache = os.environ.get("SCI_FIGURES_CACHE")
    record = run_figure(FIGURES[name], quick=True, out=tmp_path, cache_dir=cache, progress=False)
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    return json.loads((tmp_path / f"{name}.json").read_text())["data"] | {"_r": record}


def test_all_registered():
    assert set(FIGURES) == {"neural_collapse_training", "neural_collapse_norms",
                            "neural_collapse_phase"}


def test_phase_diagram_boundary(tmp_path):
    data = run("neural_collapse_phase", tmp_path)
    n = np.asarray(data["n"])
    for panel in data["panels"]:
        sigma = np.asarray(panel["sigma"])
        boundary = np.asarray(panel["boundary"])
        # Collapsed exactly where n_k <= b / tau (the rule), on every grid point.
        expected_collapse = n[:, None] <= boundary[None, :] * (1 + 1e-12)
        assert np.array_equal(sigma == 0, expected_collapse)


def test_norms_match_closed_form(tmp_path):
    data = run("neural_collapse_norms", tmp_path)
    for r in data["runs"]:
        # Best seed after 3000 steps: loss within 1e-4 of the minimum (measured 2e-5-3e-5),
        # so the norms agree to ~sqrt of that.
        assert r["final_loss"] - r["theory_objective"] < 1e-4
        np.testing.assert_allclose(r["learned_feature_norms"], r["theory_feature_norms"],
                                   rtol=0.03)
        np.testing.assert_allclose(r["learned_classifier_norms"],
                                   r["theory_classifier_norms"], rtol=0.03)


@pytest.mark.slow
def test_training_curves(tmp_path):
    """Slow (~15 s quick): test_train covers convergence to the closed form faster."""
    data = run("neural_collapse_training", tmp_path)
    for r in data["runs"]:
        assert r["loss"][-1] < r["loss"][0]
        if r["proven_global"] and r["depth"] == 1:
            assert r["nc1"][-1] < 1e-2 * r["nc1"][0]


def test_training_figure_says_why_deep_cross_entropy_does_not_collapse(tmp_path):
    import matplotlib.pyplot as plt

    from figures.neural_collapse_training import _no_collapse_note

    data = run("neural_collapse_training", tmp_path)
    ce = [r for r in data["runs"] if r["setting"].startswith("CE")]
    stuck = sorted(r["depth"] for r in ce if r["depth"] >= 2 and r["nc2"][-1] > 0.1)
    assert stuck == [3, 6]  # the behaviour the note explains (quick sizes, as in the docs)
    note = _no_collapse_note(ce)
    assert "Why M = 3, 6 do not collapse" in note and "not always the global minimum" in note
    for r in ce:
        if r["depth"] in stuck:
            assert f"M = {r['depth']}: NC2 = {r['nc2'][-1]:.2f}" in note
    # ... and it is drawn, in a figure of six panels (not twelve).
    fig = FIGURES["neural_collapse_training"].plot(data)
    try:
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert any("Why M = 3, 6 do not collapse" in t for t in texts)
        assert sum(ax.axison for ax in fig.axes) == 6
    finally:
        plt.close(fig)
    assert _no_collapse_note([r for r in data["runs"] if r["setting"].startswith("MSE, bal")
                              and r["depth"] == 1]) == ""

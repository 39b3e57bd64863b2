"""The gaunt figure in quick mode: it runs, and its numbers satisfy what the figure claims."""

from __future__ import annotations

import json

import numpy as np

from figures._runner import run_figure
from figures.gaunt_efficiency import FIGURE


def test_gaunt_efficiency_quick(tmp_path, figure_cache):
    record = run_figure(FIGURE, quick=True, out=tmp_path, cache_dir=figure_cache, progress=False)
    data = json.loads((tmp_path / "gaunt_efficiency.json").read_text())["data"]
    assert record["figure"] == "gaunt_efficiency"
    assert (tmp_path / "gaunt_efficiency.png").stat().st_size > 0
    for method in ("auto", "fourier", "direct", "grid"):
        assert method in data["methods_timed"]
        assert len(data["seconds"][method]) == len(data["lmax"][method])
        assert all(t > 0 for t in data["seconds"][method])
    # the auto line is lettered with one exact method per degree it was timed at
    assert len(data["auto_choice"]) == len(data["lmax"]["auto"])
    assert set(data["auto_choice"]) <= {"fourier", "direct", "grid"}
    # The equivariance identity GTP(Dx, Dy) = D GTP(x, y) (spec: <= 1e-13 for L <= 6).
    assert np.max(data["equivariance_error"]) <= 1e-13
    assert data["threads"]["numba"] in (1, None)


def test_gaunt_efficiency_says_when_e3nn_is_missing(tmp_path, figure_cache):
    import matplotlib.pyplot as plt

    record = run_figure(FIGURE, quick=True, out=tmp_path, cache_dir=figure_cache, progress=False)
    data = record["data"]
    assert ("e3nn" in data["methods_timed"]) == (data["e3nn_missing"] is None)
    fig = FIGURE.plot(data)
    try:
        texts = " ".join(t.get_text() for t in fig.texts)
        assert fig.axes[0].get_ylabel() == f"time per batch of {data['batch']} products (ms)"
    finally:
        plt.close(fig)
    assert ("comparison with" in texts and "MISSING" in texts) == bool(data["e3nn_missing"])
    # Drawn from numbers where e3nn is absent, whatever this machine has.
    fig = FIGURE.plot(data | {"e3nn_missing": "ImportError: No module named 'e3nn'",
                              "methods_timed": [m for m in data["methods_timed"] if m != "e3nn"]})
    try:
        assert any("MISSING" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)


def test_gaunt_cg_quick(tmp_path, figure_cache):
    """The complete-product figure: registered, runs, every kind timed with a fitted slope."""
    import matplotlib.pyplot as plt

    from figures._registry import discover
    from figures.gaunt_cg import FIGURE as CG

    assert discover()["gaunt_cg"] is CG
    record = run_figure(CG, quick=True, out=tmp_path, cache_dir=figure_cache, progress=False)
    data = json.loads((tmp_path / "gaunt_cg.json").read_text())["data"]
    assert record["figure"] == "gaunt_cg" and (tmp_path / "gaunt_cg.png").stat().st_size > 0
    for kind in ("all", "even", "odd"):
        assert len(data["seconds"][kind]) == len(data["lmax"][kind]) == 4
        assert all(t > 0 for t in data["seconds"][kind])
        assert np.isfinite(data["fitted_slopes"][kind])
    assert ("e3nn" in data["methods_timed"]) == (data["e3nn_missing"] is None)
    fig = CG.plot(data | {"e3nn_missing": "ImportError: No module named 'e3nn'",
                          "methods_timed": [m for m in data["methods_timed"] if m != "e3nn"]})
    try:
        assert any("MISSING" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)

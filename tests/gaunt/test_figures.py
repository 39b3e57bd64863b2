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
    for method in ("fourier", "direct", "grid"):
        assert method in data["methods_timed"]
        assert len(data["seconds"][method]) == len(data["lmax"][method])
        assert all(t > 0 for t in data["seconds"][method])
    # The equivariance identity GTP(Dx, Dy) = D GTP(x, y) (spec: <= 1e-13 for L <= 6).
    assert np.max(data["equivariance_error"]) <= 1e-13
    assert data["threads"]["numba"] in (1, None)

"""Every tensor_attention figure in quick mode, its numbers checked against theory."""

from __future__ import annotations

import math

import pytest

from figures import tensor_attention_degree, tensor_attention_scaling, tensor_attention_transition
from figures._runner import run_figure
from theory import tensor_attention as theory

# imported directly, so that a broken figure elsewhere cannot fail these tests
FIGURES = [module.FIGURE for module in (
    tensor_attention_scaling, tensor_attention_transition, tensor_attention_degree)]
NAMES = [figure.name for figure in FIGURES]


@pytest.fixture(scope="module")
def records(tmp_path_factory, figure_cache):
    out = tmp_path_factory.mktemp("figures")
    return {figure.name: run_figure(figure, quick=True, out=out, cache_dir=figure_cache,
                                          progress=False)
            for figure in FIGURES} | {"out": out}


def test_files_written(records):
    for name in NAMES:
        for suffix in (".png", ".pdf", ".json"):
            assert (records["out"] / f"{name}{suffix}").stat().st_size > 0


def test_scaling_numbers(records):
    data = records["tensor_attention_scaling"]["data"]
    assert data["rank"] == theory.feature_rank(data["d"], data["degree"])
    assert len(data["exact_seconds"]) == len(data["exact_n"])
    assert len(data["poly_seconds"]) == len(data["poly_n"])
    for row in data["errors"]:  # the polynomial output is within its n-independent bound
        assert row["error"] <= row["predicted"]


def test_transition_numbers(records):
    data = records["tensor_attention_transition"]["data"]
    n = data["n"]
    for t, value in data["thresholds"].items():
        assert value == pytest.approx(float(theory.entry_threshold(n, int(t))), rel=1e-12)
    for curve in data["curves"]:
        errors = curve["relative_error"]
        for err, pred in zip(errors, curve["predicted"], strict=True):
            if pred is not None:
                assert err <= pred * (1 + 1e-9) + 1e-13
        # the transition: tiny error at the smallest B, O(1e-2) or worse at the largest
        assert errors[0] < 1e-10 and errors[-1] > 1e-3


def test_degree_numbers(records):
    data = records["tensor_attention_degree"]["data"]
    for row in data["rows"]:
        for B, g, r in zip(data["entry_bounds"], row["degree"], row["rank"], strict=True):
            want = theory.minimum_degree(row["tol"], B ** row["order"], method=row["method"])
            assert g == want
            assert r == math.comb(data["d"] + g, g)
    for check in data["checks"]:  # the chosen degree meets the tolerance on real data
        assert check["error"] <= check["tol"] * check["value_bound"]

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
    log2_n = data["log2_n"]
    for t, values in data["thresholds"].items():
        for e, value in zip(log2_n, values, strict=True):
            assert value == pytest.approx(float(theory.entry_threshold(2**e, int(t))), rel=1e-12)
    assert data["d"] == [math.ceil(e * math.log(2)) for e in log2_n]
    for row in data["crossovers"]:
        b = row["crossover"]
        # The transition moves out as n grows: B*(n) increases with n ...
        assert all(x < y for x, y in zip(b[:-1], b[1:], strict=True)), row
        # ... at the rate of the theorems at the largest n: the local exponent of B* in log n
        # is near 1/t (1/2 for matrix, 1/3 for tensor attention).
        if row["method"] == "chebyshev":
            slope = math.log(b[-1] / b[-2]) / math.log(log2_n[-1] / log2_n[-2])
            want = 1.0 / row["order"]
            assert abs(slope - want) < 0.15, (row["order"], slope)
    for curve in data["curves"]:
        n, t, d = 2 ** curve["log2_n"], curve["order"], curve["d"]
        B_star = curve["crossover"]
        # The counts from the degree theory picks: checked against the oracle's degree and
        # rank at the crossover (just below it the polynomial method is cheaper, above not).
        for B, cheaper in ((B_star, True), (B_star * (1 + 1e-6), False)):
            g = theory.minimum_degree(data["tol"], B**t, method="chebyshev")
            r = theory.feature_rank(d, g)
            assert (2 * t * n * r * (d + 1) <= 2 * n**t * d) is cheaper, (t, n, B)
        for B, ratio, g, r in zip(data["entry_bounds"], curve["ratio"], curve["degree"],
                                  curve["rank"], strict=True):
            if ratio is None:
                continue
            assert r == math.comb(d + g, g)
            assert ratio == pytest.approx(2 * t * n * r * (d + 1) / (2 * n**t * d), rel=1e-12)
            assert (ratio <= 1) == (B <= B_star)


def test_degree_numbers(records):
    data = records["tensor_attention_degree"]["data"]
    for row in data["rows"]:
        for B, g, r in zip(data["entry_bounds"], row["degree"], row["rank"], strict=True):
            want = theory.minimum_degree(row["tol"], B ** row["order"], method=row["method"])
            assert g == want
            assert r == math.comb(data["d"] + g, g)
    for check in data["checks"]:  # the chosen degree meets the tolerance on real data
        assert check["error"] <= check["tol"] * check["value_bound"]

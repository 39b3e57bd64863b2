"""The symbolic oracles are themselves checked against independent derivations."""

import mpmath
import pytest
import sympy as sp

import theory.neural_collapse as th
from sci.neural_collapse import collapse_threshold


@pytest.mark.parametrize("M", [2, 3, 4])
def test_threshold_is_the_largest_beta_with_a_better_nonzero_point(M):
    # Class k survives iff beta < max_x x^(M-1)/(1+x^M) (1/(1+x^M) + beta x < 1).
    x = sp.symbols("x", positive=True)
    ratio = x ** (M - 1) / (1 + x**M)
    (critical,) = [c for c in sp.solve(sp.diff(ratio, x), x) if c.is_positive]
    assert sp.simplify(ratio.subs(x, critical) - th.collapse_threshold(M)) == 0
    assert collapse_threshold(M) == pytest.approx(float(th.collapse_threshold(M)), rel=1e-15)


@pytest.mark.parametrize("M", [2, 3, 4])
def test_stationarity_peak(M):
    xp, value = th.stationarity_peak(M)
    lhs = th.stationarity_equation(M).lhs
    assert sp.simplify(sp.diff(lhs, th.x).subs(th.x, xp)) == 0
    f = sp.lambdify(th.x, lhs)
    grid_max = max(f(i / 1000) for i in range(1, 3000))
    assert float(value) == pytest.approx(grid_max, rel=1e-5)


def test_mse_minimizer_root_solves_the_equation():
    r = th.mse_minimizer([90, 30, 9], 3, "0.002", "0.003", dps=50)
    with mpmath.workdps(50):
        for n, x in zip([90, 30, 9], r["x"], strict=True):
            if x > 0:
                assert abs(3 * x**2 / (x**3 + 1) ** 2 - r["b"] / n) < mpmath.mpf(10) ** -40


def test_noisy_etf_nc1_symbolic():
    s, C, R = sp.symbols("s C R", positive=True)
    assert sp.simplify(th.noisy_etf_nc1(s**2, 4, R) - s**2 * 9 / (4 * R**2)) == 0

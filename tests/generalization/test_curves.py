"""Closed-form curves against the spec's numbers, the mpmath oracles, limits and identities."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sci
from sci.generalization import (
    asymptotic_errors,
    frozen_subspace_error,
    generalization_error,
    marchenko_pastur_quadrature,
    mode_optimal_stopping,
    optimal_stopping,
    ridge_error,
    training_error,
)
from theory import generalization as theory

SPEC = {"alpha": 2.0, "sigma_w": 1.0, "sigma_eps": math.sqrt(0.2), "sigma_w0": 0.0}


def test_spec_reference_values(xp):
    eg = generalization_error(xp.asarray(np.array([0.0, 1.0, 2.0, 10.0, math.inf])), **SPEC)
    assert xp.is_leg_array(eg)
    # The spec quotes 4 decimals.
    np.testing.assert_allclose(xp.to_numpy(eg), [1.2, 0.3947, 0.3555, 0.3909, 0.4], atol=5e-5)
    et = training_error(xp.asarray(np.array([math.inf, 1e9])), **SPEC)
    assert xp.is_leg_array(et)
    np.testing.assert_allclose(xp.to_numpy(et), [0.1, 0.1], rtol=1e-12)


# (t, alpha, sigma_eps, sigma_w0): the bulk, both sides of the peak within 1e-6, the peak itself,
# t from 1e-8 to 1e12, no noise.
ORACLE_POINTS = [
    (0.5, 2.0, 0.3, 0.0),
    (3.0, 0.5, 0.3, 0.7),
    (1e-8, 0.9, 0.3, 0.0),
    (100.0, 1.0, 0.3, 0.0),
    (1e12, 1.0 + 1e-6, 0.3, 0.7),
    (1e4, 1.0 - 1e-6, 0.3, 0.0),
    (1e8, 1.0 - 1e-9, 0.3, 0.0),
    (7.0, 1e-3, 0.3, 0.7),
    (0.05, 1e3, 0.3, 0.0),
    (20.0, 1.1, 0.0, 0.7),
]


@pytest.mark.parametrize(("t", "alpha", "sigma_eps", "sigma_w0"), ORACLE_POINTS)
def test_against_mpmath(t, alpha, sigma_eps, sigma_w0):
    kw = {"sigma_eps": sigma_eps, "sigma_w0": sigma_w0}
    eg = float(generalization_error(t, alpha=alpha, **kw))
    et = float(training_error(t, alpha=alpha, **kw))
    eg_ref = float(theory.generalization_error_mp(t, alpha, dps=20, **kw))
    et_ref = float(theory.training_error_mp(t, alpha, dps=20, **kw))
    # The issue asks for 1e-10 relative; the rule holds 1e-12 (what the docstrings state).
    # E_train decays like e^{-2 lambda_- t}: below 1e-25 of its start only the absolute error
    # is meaningful.
    assert eg == pytest.approx(eg_ref, rel=1e-12)
    assert et == pytest.approx(et_ref, rel=1e-12, abs=1e-25)


def test_limit_t_infinity_against_quadrature_and_exact():
    for alpha in (0.3, 0.999, 1.001, 4.0):
        kw = {"sigma_eps": 0.5, "sigma_w0": 0.4}
        ours = float(generalization_error(math.inf, alpha=alpha, **kw))
        quad = float(theory.generalization_error_mp(mpmath.inf, alpha, dps=20, **kw))
        exact = theory.asymptotic_generalization_exact(alpha, **kw)
        assert ours == pytest.approx(quad, rel=1e-12)
        assert ours == pytest.approx(float(exact), rel=1e-12)
        # and the curve approaches it
        late = float(generalization_error(1e15, alpha=alpha, **kw))
        assert late == pytest.approx(ours, rel=1e-9)


def test_asymptotic_errors_closed_forms():
    eg, et = asymptotic_errors([0.5, 1.0, 2.0], sigma_eps=0.2**0.5, sigma_w0=1.0)
    np.testing.assert_allclose(eg[[0, 2]], [0.2 / 0.5 + 0.5 * 2.0, 0.4], rtol=1e-14)
    assert math.isinf(eg[1])
    np.testing.assert_allclose(et, [0.0, 0.0, 0.1], atol=1e-16)
    # No noise: the peak disappears; only the frozen subspace is left.
    eg0, _ = asymptotic_errors([0.5, 1.0, 2.0], sigma_eps=0.0)
    np.testing.assert_array_equal(eg0, [0.5, 0.0, 0.0])


def test_finite_size_limits():
    n = 100
    eg, _ = asymptotic_errors([0.5, 1.0, 2.0], sigma_eps=1.0, sigma_w0=1.0, n_inputs=n)
    np.testing.assert_allclose(eg[0], 1.0 + 50 / 49 + 0.5 * 2.0, rtol=1e-14)
    assert math.isinf(eg[1])
    np.testing.assert_allclose(eg[2], 1.0 + 100 / 99, rtol=1e-14)
    # large N recovers the infinite-size law
    big, _ = asymptotic_errors([0.5, 2.0], sigma_eps=1.0, n_inputs=10**9)
    inf, _ = asymptotic_errors([0.5, 2.0], sigma_eps=1.0)
    np.testing.assert_allclose(big, inf, rtol=1e-8)


def test_start_and_small_times():
    # E_g(0) = A + sigma^2 for every alpha (the weights sum to min(1, alpha), the atom the rest)
    alpha = np.array([1e-3, 0.5, 1.0, 3.0, 1e3])
    eg = generalization_error(0.0, alpha=alpha, sigma_eps=0.3, sigma_w0=0.5)
    np.testing.assert_allclose(eg, 1.0 + 0.25 + 0.09, rtol=1e-13)
    # slope at t = 0: -2 A alpha (first moment of rho), from a tiny step
    h = 1e-9
    eg_h = generalization_error(h, alpha=alpha, sigma_eps=0.3, sigma_w0=0.5)
    np.testing.assert_allclose((eg_h - eg) / h, -2 * 1.25 * alpha, rtol=1e-5)
    et = training_error(0.0, alpha=alpha, sigma_eps=0.3, sigma_w0=0.5)
    np.testing.assert_allclose(et, 1.25 + 0.09, rtol=1e-13)


def test_no_noise_limit_is_continuous():
    t = np.array([0.1, 1.0, 10.0, 1e3])
    for alpha in (0.5, 1.0, 2.0):
        quiet = generalization_error(t, alpha=alpha, sigma_eps=0.0)
        almost = generalization_error(t, alpha=alpha, sigma_eps=1e-8)
        np.testing.assert_allclose(almost, quiet, rtol=1e-10, atol=1e-14)
        assert np.all(np.diff(quiet) <= 0)  # without noise training never hurts


def test_independent_rule_agrees():
    # The lead's Gauss rule of the MP measure (Golub-Welsch) is an independent quadrature;
    # at moderate times both must agree to rounding.
    for alpha in (0.4, 2.5):
        nodes, weights = marchenko_pastur_quadrature(alpha, 200)
        t = np.array([0.3, 2.0, 8.0])
        kw = {"sigma_eps": 0.6, "sigma_w0": 0.3}
        a, s2 = 1.09, 0.36
        decay = np.exp(-np.outer(t, nodes))
        ref = (weights * (a * decay**2 + s2 * np.expm1(-np.outer(t, nodes)) ** 2 / nodes)).sum(1)
        ref += max(0, 1 - alpha) * a + s2
        np.testing.assert_allclose(generalization_error(t, alpha=alpha, **kw), ref, rtol=1e-12)


def test_frozen_subspace():
    np.testing.assert_allclose(frozen_subspace_error([0.25, 1.0, 2.0], sigma_w=2.0,
                                                     sigma_w0=1.0), [3.75, 0.0, 0.0])
    # It is exactly E_g's part that no training time changes: E_g(inf) - sigma^2/(1 - alpha)
    eg = generalization_error(math.inf, alpha=0.25, sigma_w=2.0, sigma_w0=1.0, sigma_eps=0.1)
    assert float(eg) == pytest.approx(0.01 / 0.75 + 3.75, rel=1e-14)


def test_ridge_error_exact_and_bayes_identity():
    golden = (1 + math.sqrt(5)) / 2
    assert float(ridge_error(1.0, sigma_eps=1.0)) == pytest.approx(golden, rel=1e-15)
    for alpha, sigma_w, sigma_eps in [(0.3, 1.0, 0.5), (1.0, 2.0, 0.1), (5.0, 0.7, 1.3),
                                      (1.0, 1.0, 1e-6), (3.0, 1.0, 1e-7)]:
        ours = float(ridge_error(alpha, sigma_w=sigma_w, sigma_eps=sigma_eps))
        exact = theory.ridge_error_exact(alpha, sigma_w=sigma_w, sigma_eps=sigma_eps)
        assert ours == pytest.approx(float(sympy.N(exact, 30)), rel=1e-13)
        quad = theory.bayes_error_mp(alpha, sigma_w=sigma_w, sigma_eps=sigma_eps, dps=20)
        assert ours == pytest.approx(float(quad), rel=1e-12)


def test_ridge_small_noise_no_cancellation():
    # sigma_eps -> 0: E* -> (1 - alpha)_+ sigma_w^2 continuously, without 0/0.
    np.testing.assert_allclose(ridge_error([0.5, 1.0, 2.0], sigma_eps=0.0), [0.5, 0.0, 0.0])
    e = ridge_error(2.0, sigma_eps=1e-9)
    # alpha > 1: E* ~ sigma^2 alpha/(alpha - 1) to first order
    assert float(e) == pytest.approx(2e-18, rel=1e-6)


def test_per_mode_stopping_integrates_to_bayes():
    # Stopping each mode at its own t* reaches the Bayes error: the quadrature of E*(lambda)
    # over the MP law (atom included) equals ridge_error.
    for alpha in (0.5, 1.0, 3.0):
        nodes, weights = marchenko_pastur_quadrature(alpha, 400)
        _, per_mode = mode_optimal_stopping(nodes, sigma_eps=0.7)
        total = float(weights @ per_mode) + max(0.0, 1 - alpha) * 1.0 + 0.49
        assert total == pytest.approx(float(ridge_error(alpha, sigma_eps=0.7)), rel=1e-10)


def test_per_mode_stopping_is_each_mode_minimum():
    lam = np.array([1e-12, 0.1, 1.0, 9.0])
    t_star, err = mode_optimal_stopping(lam, sigma_eps=0.5, sigma_w0=0.3, tau=2.0)
    a, s2, tau = 1.09, 0.25, 2.0

    def mode_error(t):
        return a * np.exp(-2 * lam * t / tau) + s2 * np.expm1(-lam * t / tau) ** 2 / lam

    np.testing.assert_allclose(mode_error(t_star), err, rtol=1e-12)
    for factor in (0.99, 1.01):
        assert np.all(mode_error(t_star * factor) >= err)
    assert t_star[0] == pytest.approx(tau * a / s2, rel=1e-10)  # lambda -> 0
    t_quiet, _ = mode_optimal_stopping(lam, sigma_eps=0.0)
    assert np.all(np.isinf(t_quiet))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_optimal_stopping_against_mpmath_and_ridge(alpha):
    t_opt, e_opt = optimal_stopping(alpha, sigma_eps=1.0)
    t_ref, e_ref = theory.optimal_stopping_mp(alpha, sigma_eps=1, dps=15)
    # t_opt sits at a flat minimum: E_g is known to 1e-14, t_opt to ~1e-7 relative.
    assert float(t_opt) == pytest.approx(float(t_ref), rel=1e-6)
    assert float(e_opt) == pytest.approx(float(e_ref), rel=1e-12)
    ridge = float(ridge_error(alpha, sigma_eps=1.0))
    assert ridge <= float(e_opt) <= 1.02 * ridge


def test_optimal_stopping_beats_a_grid():
    alpha = np.array([0.2, 0.8, 1.0, 1.3, 6.0])
    for sigma_eps in (0.2, 1.0, 3.0):
        t_opt, e_opt = optimal_stopping(alpha, sigma_eps=sigma_eps, sigma_w0=0.5)
        grid = np.logspace(-3, 4, 400)[:, None]
        curve = generalization_error(grid, alpha=alpha, sigma_eps=sigma_eps, sigma_w0=0.5)
        assert np.all(e_opt <= curve.min(axis=0) * (1 + 1e-12))
        assert np.all(e_opt >= ridge_error(alpha, sigma_eps=sigma_eps))


def test_optimal_stopping_edge_cases():
    t, e = optimal_stopping([0.5, 2.0], sigma_eps=0.0)
    assert np.all(np.isinf(t))
    np.testing.assert_allclose(e, [0.5, 0.0])
    t, e = optimal_stopping(2.0, sigma_w=0.0, sigma_eps=0.5)
    assert float(t) == 0.0 and float(e) == pytest.approx(0.25)


def test_broadcasting_shapes(xp):
    t = xp.asarray(np.linspace(0, 5, 7)[:, None])
    alpha = xp.asarray(np.array([0.5, 1.0, 2.0]))
    sigma_eps = xp.asarray(np.arange(1, 8)[:, None] / 10)
    eg = generalization_error(t, alpha=alpha, sigma_eps=sigma_eps)
    assert tuple(eg.shape) == (7, 3)
    assert xp.is_leg_array(eg)
    with sci.use_backend("numpy"):
        reference = generalization_error(np.linspace(0, 5, 7)[:, None], alpha=[0.5, 1.0, 2.0],
                                         sigma_eps=np.arange(1, 8)[:, None] / 10)
    np.testing.assert_allclose(xp.to_numpy(eg), reference, rtol=1e-13)
    sigma_w0 = xp.asarray(np.array([[0.0], [1.0]]))
    t_opt, e_opt = optimal_stopping(alpha, sigma_eps=0.5, sigma_w0=sigma_w0)
    assert tuple(t_opt.shape) == tuple(e_opt.shape) == (2, 3)
    assert xp.is_leg_array(t_opt) and xp.is_leg_array(e_opt)


@given(
    alpha=st.floats(0.01, 50.0),
    t=st.floats(0.0, 1e4),
    sigma_eps=st.floats(0.0, 3.0),
    sigma_w0=st.floats(0.0, 3.0),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_legs_agree_with_numpy(xp, alpha, t, sigma_eps, sigma_w0):
    """Every leg (the Numba kernel, the array code on strict, torch, CuPy) against the NumPy
    array code, on the same points."""
    kw = {"sigma_eps": sigma_eps, "sigma_w0": sigma_w0}
    with sci.use_backend("numpy"):
        want = (generalization_error(t, alpha=alpha, **kw), training_error(t, alpha=alpha, **kw))
    t, alpha = xp.asarray(np.array([t])), xp.asarray(np.array(alpha))  # float64 on every leg
    got = (generalization_error(t, alpha=alpha, **kw), training_error(t, alpha=alpha, **kw))
    assert all(xp.is_leg_array(g) for g in got)
    np.testing.assert_allclose(xp.to_numpy(got[0]), [want[0]], rtol=1e-13)
    np.testing.assert_allclose(xp.to_numpy(got[1]), [want[1]], rtol=1e-13, atol=1e-300)


def test_float32_kept(xp):
    t = xp.asarray([0.0, 1.0, 10.0], dtype=xp.float32)
    alpha = xp.asarray(2.0, dtype=xp.float32)
    sigma_eps = xp.asarray(0.2**0.5, dtype=xp.float32)
    eg = generalization_error(t, alpha=alpha, sigma_eps=sigma_eps)
    assert eg.dtype == xp.float32 and xp.is_leg_array(eg)
    np.testing.assert_allclose(xp.to_numpy(eg), [1.2, 0.3946711, 0.39090904], rtol=2e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 0.0, "sigma_eps": 1.0}, ValueError, "alpha"),
        ({"alpha": -1.0, "sigma_eps": 1.0}, ValueError, "alpha"),
        ({"alpha": 1.0, "sigma_eps": -1.0}, ValueError, "sigma_eps must be a standard"),
        ({"alpha": 1.0, "sigma_eps": 1.0, "sigma_w": -0.1}, ValueError, "sigma_w must"),
        ({"alpha": 1.0, "sigma_eps": 1.0, "sigma_w0": -2.0}, ValueError, "sigma_w0 must"),
        ({"alpha": 1.0, "sigma_eps": 1.0, "tau": 0.0}, ValueError, "tau must"),
        ({"alpha": float("nan"), "sigma_eps": 1.0}, ValueError, "alpha must be finite"),
        ({"alpha": 1.0, "sigma_eps": float("nan")}, ValueError, "sigma_eps must be finite"),
        ({"alpha": 1.0 + 1j, "sigma_eps": 1.0}, TypeError, "alpha must be real"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        generalization_error(1.0, **kwargs)
    with pytest.raises(error, match=match):
        training_error(1.0, **kwargs)


def test_bad_times():
    with pytest.raises(ValueError, match="t must not contain NaN"):
        generalization_error([1.0, float("nan")], alpha=1.0, sigma_eps=1.0)
    with pytest.raises(ValueError, match=r"t \(training time\) must be >= 0"):
        generalization_error(-1.0, alpha=1.0, sigma_eps=1.0)
    with pytest.raises(ValueError, match="lam"):
        mode_optimal_stopping(-1.0, sigma_eps=1.0)
    with pytest.raises(ValueError, match="alpha"):
        ridge_error(0.0, sigma_eps=1.0)
    with pytest.raises(ValueError, match="alpha"):
        optimal_stopping(-2.0, sigma_eps=1.0)


def test_inputs_not_mutated():
    t = np.array([0.0, 1.0])
    alpha = np.array([2.0])
    generalization_error(t, alpha=alpha, sigma_eps=0.5)
    np.testing.assert_array_equal(t, [0.0, 1.0])
    np.testing.assert_array_equal(alpha, [2.0])


@given(
    alpha=st.floats(0.02, 20.0),
    t=st.lists(st.floats(0.0, 1e3), min_size=2, max_size=6),
    sigma_eps=st.floats(0.05, 2.0),
    sigma_w0=st.floats(0.0, 2.0),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_bounds_and_monotonicity(xp, alpha, t, sigma_eps, sigma_w0):
    # Gradient flow at any time is an estimator (randomised by its start): never below the
    # Bayes error. Training error only decreases. Both tend to their limits. On every leg.
    t = xp.asarray(np.sort(np.asarray(t)))
    alpha = xp.asarray(np.array(alpha))
    kw = {"alpha": alpha, "sigma_eps": sigma_eps, "sigma_w0": sigma_w0}
    eg = xp.to_numpy(generalization_error(t, **kw))
    et = xp.to_numpy(training_error(t, **kw))
    assert np.all(eg >= xp.to_numpy(ridge_error(alpha, sigma_eps=sigma_eps)) * (1 - 1e-12))
    assert np.all(np.diff(et) <= 1e-14)
    eg_inf, et_inf = asymptotic_errors(alpha, **{k: v for k, v in kw.items() if k != "alpha"})
    assert xp.is_leg_array(eg_inf) and xp.is_leg_array(et_inf)
    assert np.all(et >= xp.to_numpy(et_inf) - 1e-14)

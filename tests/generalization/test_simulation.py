"""Linear simulations against the closed forms (statistically), against independent solvers of
the same trajectories (exactly), across backends and seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

import sci
from sci.generalization import (
    asymptotic_errors,
    draw_linear_problem,
    generalization_error,
    simulate_linear,
    training_error,
)


def _within(samples, expected, *, bias):
    """|mean - expected| <= 4 standard errors of the mean + a known O(1/N) bias bound
    (+ 1e-12 for float64 rounding where the expected value is exactly 0)."""
    mean = samples.mean(axis=0)
    sem = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    tolerance = 4.0 * sem + bias * np.abs(expected) + 1e-12
    assert np.all(np.abs(mean - expected) <= tolerance), (mean, expected, tolerance)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_flow_matches_theory(alpha):
    n = 300
    t = np.array([0.0, 0.5, 2.0, 10.0])
    kw = {"sigma_eps": math.sqrt(0.2), "sigma_w0": 0.5}
    eg, et = simulate_linear(n, int(alpha * n), t, n_trials=24, rng=11, **kw)
    # The finite-N mean of a smooth spectral statistic differs from the Marchenko-Pastur
    # integral by O(1/N); with 2000 trials at N = 200 the measured bias was below 0.7/N on
    # E_g, so 1/N bounds it.
    _within(eg, generalization_error(t, alpha=alpha, **kw), bias=1.0 / n)
    # E_train is dominated by the lowest modes at late times, where the finite-N edge matters
    # more: compare early.
    _within(et[:, :2], training_error(t[:2], alpha=alpha, **kw), bias=1.0 / n)


@pytest.mark.parametrize(("n", "p"), [(100, 50), (100, 200)])
def test_late_time_matches_finite_size_limit(n, p):
    # The finite-size limits are exact means (inverse Wishart), so only the sampling error
    # remains.
    kw = {"sigma_eps": 0.5, "sigma_w0": 0.3}
    eg, et = simulate_linear(n, p, [1e9], n_trials=60, rng=5, **kw)
    limit_g, limit_t = asymptotic_errors(p / n, n_inputs=n, **kw)
    _within(eg[:, 0:1], np.atleast_1d(limit_g), bias=0.0)
    _within(et[:, 0:1], np.atleast_1d(limit_t), bias=0.0)


def _literal_descent(problem, steps, eta):
    x, wbar, w, eps = (problem[k][0] for k in ("inputs", "teacher", "initial", "noise"))
    n, p = x.shape
    y = wbar @ x + eps
    gen, train = [], []
    for k in range(max(steps) + 1):
        if k in steps:
            gen.append(np.sum((wbar - w) ** 2) / n)
            train.append(np.sum((y - w @ x) ** 2) / p)
        w = w + eta * (y @ x.T - w @ (x @ x.T))
    return np.array(gen), np.array(train)


@pytest.mark.parametrize(("n", "p"), [(6, 11), (11, 6), (8, 8)])
def test_descent_matches_literal_loop(backend, to_numpy, n, p):
    eta, tau, sigma_eps = 0.1, 1.0, 0.4
    steps = [0, 1, 7, 60]
    problem = draw_linear_problem(n, p, sigma_eps=sigma_eps, sigma_w0=0.8, rng=3)
    gen, train = _literal_descent(problem, steps, eta)
    eg, et = simulate_linear(n, p, np.array(steps) * eta * tau, sigma_eps=sigma_eps,
                             sigma_w0=0.8, learning_rate=eta, n_trials=1, rng=3)
    np.testing.assert_allclose(to_numpy(eg)[0], gen + sigma_eps**2, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(et)[0], train, rtol=1e-9)


@pytest.mark.parametrize(("n", "p"), [(5, 9), (9, 5)])
def test_flow_matches_matrix_exponential(n, p):
    # Independent solver: [w(t), 1] = [w(0), 1] expm(M t/tau), M = [[-XX^T, 0], [yX^T, 0]].
    tau, sigma_eps = 2.0, 0.3
    problem = draw_linear_problem(n, p, sigma_eps=sigma_eps, sigma_w0=0.5, rng=8)
    x, wbar, w0, eps = (problem[k][0] for k in ("inputs", "teacher", "initial", "noise"))
    y = wbar @ x + eps
    m = np.zeros((n + 1, n + 1))
    m[:n, :n] = -x @ x.T
    m[n, :n] = y @ x.T
    t = np.array([0.3, 4.0, 25.0])
    eg, et = simulate_linear(n, p, t, sigma_eps=sigma_eps, sigma_w0=0.5, tau=tau, n_trials=1,
                             rng=8)
    for j, time in enumerate(t):
        w = (np.append(w0, 1.0) @ scipy.linalg.expm(m * time / tau))[:n]
        assert eg[0, j] == pytest.approx(np.sum((wbar - w) ** 2) / n + sigma_eps**2, rel=1e-9)
        assert et[0, j] == pytest.approx(np.sum((y - w @ x) ** 2) / p, rel=1e-8)


def test_frozen_subspace_keeps_initial_error():
    # N > P without noise: the error left at t -> infinity is the initial error in the null
    # space of XX^T, about (1 - alpha) A N per trial.
    eg, _ = simulate_linear(200, 50, [1e9], sigma_eps=0.0, sigma_w0=1.0, n_trials=30, rng=2)
    _within(eg, np.array([0.75 * 2.0]), bias=0.0)


def test_seeds_reproducible_and_backends_agree():
    runs = {}
    for name in ("numpy", "numba"):
        with sci.use_backend(name):
            runs[name] = simulate_linear(40, 60, [0.0, 1.0, 5.0], sigma_eps=0.3, n_trials=3,
                                         rng=7)
    np.testing.assert_allclose(runs["numpy"][0], runs["numba"][0], rtol=1e-12)
    np.testing.assert_allclose(runs["numpy"][1], runs["numba"][1], rtol=1e-12)
    again = simulate_linear(40, 60, [0.0, 1.0, 5.0], sigma_eps=0.3, n_trials=3,
                            rng=np.random.default_rng(7))
    np.testing.assert_array_equal(again[0], runs[sci.get_backend()][0])
    other = simulate_linear(40, 60, [1.0], sigma_eps=0.3, n_trials=3, rng=8)
    assert not np.allclose(other[0][:, 0], runs["numpy"][0][:, 1])


@given(
    n=st.integers(2, 12),
    p=st.integers(2, 12),
    eta=st.sampled_from([None, 0.05, 0.2]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**31),
)
def test_backends_agree_property(n, p, eta, dtype, seed):
    t = np.array([0.0, 0.4, 3.0])
    out = {}
    for name in ("numpy", "numba"):
        with sci.use_backend(name):
            out[name] = simulate_linear(n, p, t, sigma_eps=0.5, learning_rate=eta, n_trials=2,
                                        rng=seed, dtype=dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(out["numpy"], out["numba"], strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, 5, [1.0]), {}, ValueError, "n_inputs must be >= 1"),
        ((5, 0, [1.0]), {}, ValueError, "n_examples must be >= 1"),
        ((5, 5, [-1.0]), {}, ValueError, "t .* must be >= 0"),
        ((5, 5, [[1.0]]), {}, ValueError, "t must have 1 dimension"),
        ((5, 5, [1.0]), {"n_trials": 0}, ValueError, "n_trials must be >= 1"),
        ((5, 5, [1.0]), {"learning_rate": 0.0}, ValueError, "learning_rate must be >"),
        ((5, 5, [1.0]), {"tau": -1.0}, ValueError, "tau must be >"),
        ((5, 5, [1.0]), {"sigma_w0": -1.0}, ValueError, "sigma_w0 must be >= 0"),
        ((5, 5, [1.0]), {"rng": "seed"}, TypeError, "rng must be"),
        ((5, 5, [1.0]), {"rng": "seed", "n_trials": 4, "trials_per_task": 1}, TypeError,
         "rng must be"),
        ((5, 5, [1.0]), {"trials_per_task": 0}, ValueError, "trials_per_task must be >= 1"),
        ((5, 5, [1.0]), {"trials_per_task": 2.0}, TypeError, "trials_per_task must be an int"),
        ((5.0, 5, [1.0]), {}, TypeError, "n_inputs must be an integer"),
        ((10**6, 10**6, [1.0]), {}, MemoryError, "would need"),
    ],
)
def test_bad_arguments(args, kwargs, error, match):
    kwargs = {"sigma_eps": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        simulate_linear(*args, **kwargs)

"""Two-layer trainer: exact random-features iterates against literal descent, both-layer
descent across backends against a reference loop, identities and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sci
from sci.generalization import draw_two_layer_problem, simulate_two_layer

SMALL = {"n_inputs": 4, "n_teacher_hidden": 5, "n_examples": 12, "n_test": 30}


def _relu(x):
    return np.maximum(x, 0.0)


def _reference_descent(data, epochs, eta, train_hidden):
    """Plain full-batch gradient descent, one trial, written out step by step."""
    x, y = data["train_inputs"][0], data["train_labels"][0]
    xt, yt = data["test_inputs"][0], data["test_labels"][0]
    w, a = data["student_hidden"][0].copy(), data["student_output"][0].copy()
    h = w.shape[0]
    p = x.shape[1]
    gen, train = [], []
    for k in range(max(epochs) + 1):
        pre = w @ x
        residual = a @ _relu(pre) / math.sqrt(h) - y
        if k in epochs:
            test = a @ _relu(w @ xt) / math.sqrt(h) - yt
            gen.append(np.mean(test**2) + data["noise_variance"][0])
            train.append(np.mean(residual**2))
        grad_a = _relu(pre) @ residual / (p * math.sqrt(h))
        grad_w = ((a[:, None] * (pre > 0)) * residual) @ x.T / (p * math.sqrt(h))
        a = a - eta * grad_a
        if train_hidden:
            w = w - eta * grad_w
    return np.array(gen), np.array(train)


@pytest.mark.parametrize("n_hidden", [3, 12, 40])
def test_random_features_iterates_are_exact(backend, to_numpy, n_hidden):
    epochs = [0, 1, 5, 80]
    kw = {**SMALL, "snr": 2.0, "sigma_w0": 0.5}
    data = draw_two_layer_problem(n_hidden, rng=4, **kw)
    gen, train = _reference_descent(data, epochs, 0.7, train_hidden=False)
    eg, et = simulate_two_layer(n_hidden, epochs, learning_rate=0.7, n_trials=1, rng=4, **kw)
    np.testing.assert_allclose(to_numpy(eg)[0], gen, rtol=1e-9)
    np.testing.assert_allclose(to_numpy(et)[0], train, rtol=1e-8, atol=1e-14)


def test_both_layers_match_reference_on_every_backend(backend, to_numpy):
    epochs = [0, 2, 30]
    kw = {**SMALL, "snr": 1.0, "sigma_w0": 0.3}
    data = draw_two_layer_problem(6, rng=9, **kw)
    gen, train = _reference_descent(data, epochs, 0.5, train_hidden=True)
    eg, et = simulate_two_layer(6, epochs, learning_rate=0.5, train_hidden=True, n_trials=1,
                                rng=9, **kw)
    np.testing.assert_allclose(to_numpy(eg)[0], gen, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(et)[0], train, rtol=1e-10)


def test_trials_batched_equal_trials_alone():
    # The batched (parallel) kernel gives each trial exactly its own reference descent.
    kw = {**SMALL, "snr": 1.0}
    data = draw_two_layer_problem(5, n_trials=3, rng=1, **kw)
    with sci.use_backend("numba"):
        eg, et = simulate_two_layer(5, [0, 10], train_hidden=True, learning_rate=0.5,
                                    n_trials=3, rng=1, **kw)
    for trial in range(3):
        one = {k: v[trial:trial + 1] for k, v in data.items()}
        gen, train = _reference_descent(one, [0, 10], 0.5, train_hidden=True)
        np.testing.assert_allclose(eg[trial], gen, rtol=1e-10)
        np.testing.assert_allclose(et[trial], train, rtol=1e-10)


def test_long_training_reaches_least_squares():
    # With the first layer frozen, descent from zero converges to the minimum-norm least
    # squares fit: training error 0 when H >= P, the projection residual when H < P.
    kw = {**SMALL, "snr": 1.0}
    for n_hidden in (5, 30):
        data = draw_two_layer_problem(n_hidden, rng=2, **kw)
        phi = _relu(data["student_hidden"][0] @ data["train_inputs"][0]) / math.sqrt(n_hidden)
        y = data["train_labels"][0]
        a = np.linalg.lstsq(phi.T, y, rcond=None)[0]
        residual = np.mean((a @ phi - y) ** 2)
        test = a @ _relu(data["student_hidden"][0] @ data["test_inputs"][0]) / math.sqrt(
            n_hidden)
        gen = np.mean((test - data["test_labels"][0]) ** 2) + data["noise_variance"][0]
        eg, et = simulate_two_layer(n_hidden, [10**9], n_trials=1, rng=2, **kw)
        assert et[0, 0] == pytest.approx(residual, abs=1e-9)
        assert eg[0, 0] == pytest.approx(gen, rel=1e-6)


def test_noise_level_follows_snr():
    data = draw_two_layer_problem(3, n_trials=2, snr=4.0, rng=0, **{**SMALL, "n_test": 500})
    np.testing.assert_allclose(data["noise_variance"], np.var(data["test_labels"], axis=1) / 4)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, [1]), {}, ValueError, "n_hidden must be >= 1"),
        ((3, [5, 1]), {}, ValueError, "sorted"),
        ((3, [-1]), {}, ValueError, "epochs must be >= 0"),
        ((3, []), {}, ValueError, "non-empty"),
        ((3, [1.5]), {}, TypeError, "epochs must be integers"),
        ((3, [1]), {"snr": 0.0}, ValueError, "snr must be >"),
        ((3, [1]), {"learning_rate": -1.0}, ValueError, "learning_rate must be >"),
        ((3, [1]), {"learning_rate": 100.0}, ValueError, "diverge"),
        ((3, [1]), {"n_trials": 0}, ValueError, "n_trials must be >= 1"),
        ((3, [1]), {"trials_per_task": 0}, ValueError, "trials_per_task must be >= 1"),
        ((3, [1]), {"n_trials": 3, "trials_per_task": 1, "rng": "x"}, TypeError, "rng must be"),
    ],
)
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_two_layer(*args, **{**SMALL, **kwargs})


def test_divergence_of_both_layers_is_reported():
    with sci.use_backend("numpy"), np.errstate(over="ignore", invalid="ignore"), pytest.raises(
        ValueError, match="diverged"
    ):
        simulate_two_layer(4, [0, 200], learning_rate=500.0, train_hidden=True, sigma_w0=1.0,
                           rng=0, **SMALL)

"""Every public function refuses up front, with MemoryLimitError, what would exceed the limit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sci._validation import MemoryLimitError
from sci.generalization import (
    asymptotic_errors,
    draw_linear_problem,
    draw_two_layer_problem,
    frozen_subspace_error,
    generalization_error,
    mode_optimal_stopping,
    optimal_stopping,
    ridge_error,
    simulate_linear,
    simulate_two_layer,
    training_error,
)

SMALL_TWO_LAYER = {"n_inputs": 4, "n_teacher_hidden": 5, "n_examples": 12, "n_test": 30}
# Broadcast grids of 2000 x 2000 = 4M points from two 16 KiB arguments: the refusal must come
# from the estimate, not from the test's own arrays.
ROWS = np.full((2000, 1), 2.0)
COLUMNS = np.full((1, 2000), 0.5)

TOO_LARGE = [
    ("generalization_error", lambda: generalization_error(ROWS, alpha=COLUMNS, sigma_eps=0.5)),
    ("training_error", lambda: training_error(ROWS, alpha=COLUMNS, sigma_eps=0.5)),
    ("optimal_stopping", lambda: optimal_stopping(ROWS, sigma_eps=COLUMNS)),
    ("mode_optimal_stopping", lambda: mode_optimal_stopping(ROWS, sigma_eps=COLUMNS)),
    ("ridge_error", lambda: ridge_error(ROWS, sigma_eps=COLUMNS)),
    ("asymptotic_errors", lambda: asymptotic_errors(ROWS, sigma_eps=COLUMNS)),
    ("frozen_subspace_error", lambda: frozen_subspace_error(ROWS, sigma_w0=COLUMNS)),
    # A small problem at many times: the (n_trials, len(t)) curves are what is too large.
    ("20 linear trials with N=5, P=10 at 100,000 times",
     lambda: simulate_linear(5, 10, np.zeros(100_000), sigma_eps=0.1, n_trials=20)),
    # A large problem at one time: the data, Gram matrix and eigenvectors are.
    ("20 linear trials with N=200, P=400",
     lambda: simulate_linear(200, 400, [1.0], sigma_eps=0.1, n_trials=20)),
    ("10 two-layer trials with H=20, P=12, 30 test points and 20,000 recorded epochs",
     lambda: simulate_two_layer(20, np.arange(20_000), **SMALL_TWO_LAYER)),
    ("10 two-layer trials",
     lambda: simulate_two_layer(20, np.arange(20_000), train_hidden=True, **SMALL_TWO_LAYER)),
    ("drawing 100 two-layer problems", lambda: draw_two_layer_problem(20, n_trials=100)),
    ("100 trials with N=100, P=200",
     lambda: draw_linear_problem(100, 200, sigma_eps=0.1, n_trials=100)),
]


@pytest.mark.parametrize(("what", "call"), TOO_LARGE, ids=[w.split()[0] for w, _ in TOO_LARGE])
def test_refused_up_front_under_a_small_limit(monkeypatch, backend, what, call):
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    with pytest.raises(MemoryLimitError):
        call()  # once untraced: lazy imports of the kernels are not the request's memory
    tracemalloc.start()
    try:
        with pytest.raises(MemoryLimitError, match=f"{what}.*would need .* limit of 1.0 MiB"):
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused before allocating: nothing near the size of the request was ever held (NumPy's
    # allocations are traced); the largest thing made is the 800 KB of times in a test above.
    assert peak < 1.5 * 2**20


def test_memory_limit_error_is_a_value_error(monkeypatch):
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    with pytest.raises(ValueError, match="4,000,000 points"):
        generalization_error(ROWS, alpha=COLUMNS, sigma_eps=0.5)


def test_reported_example_is_refused_not_a_raw_memory_error(monkeypatch):
    # The review's example: 10^10 points, NumPy's raw "Unable to allocate 74.5 GiB" before. At
    # ~16 arrays of 8 bytes it needs 1.2 TiB: refused under any limit below that.
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "64GiB")
    with pytest.raises(MemoryLimitError, match=r"10,000,000,000 points .* 1\.2 TiB"):
        generalization_error(np.ones((100_000, 1)), alpha=np.ones((1, 100_000)), sigma_eps=0.5)


def test_small_calls_still_run_under_a_small_limit(monkeypatch, backend, to_numpy):
    """Under 1 MiB the quadrature runs in chunks of a few points, with the same result."""
    alpha = np.linspace(0.2, 5.0, 3000)
    t = np.linspace(0.0, 10.0, 3000)
    reference = to_numpy(generalization_error(t, alpha=alpha, sigma_eps=0.5))
    reference_train = to_numpy(training_error(t, alpha=alpha, sigma_eps=0.5))
    reference_stop = [to_numpy(v) for v in optimal_stopping(alpha[:40], sigma_eps=0.5)]
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    # Chunking changes which points are summed together, never a point's own sum: identical.
    np.testing.assert_array_equal(
        to_numpy(generalization_error(t, alpha=alpha, sigma_eps=0.5)), reference
    )
    np.testing.assert_array_equal(
        to_numpy(training_error(t, alpha=alpha, sigma_eps=0.5)), reference_train
    )
    for got, want in zip(optimal_stopping(alpha[:40], sigma_eps=0.5), reference_stop,
                         strict=True):
        np.testing.assert_array_equal(to_numpy(got), want)
    # The spec's numbers, the other closed forms and small simulations are within the limit.
    np.testing.assert_allclose(
        to_numpy(generalization_error([0.0, 1.0, 2.0, 10.0], alpha=2.0, sigma_eps=0.2**0.5)),
        [1.2, 0.3947, 0.3555, 0.3909], atol=5e-5,
    )
    assert to_numpy(ridge_error(alpha, sigma_eps=0.5)).shape == (3000,)
    assert to_numpy(asymptotic_errors(alpha, sigma_eps=0.5)[0]).shape == (3000,)
    assert to_numpy(mode_optimal_stopping(alpha, sigma_eps=0.5)[0]).shape == (3000,)
    assert to_numpy(frozen_subspace_error(alpha)).shape == (3000,)
    eg, et = simulate_linear(20, 40, np.linspace(0.0, 5.0, 50), sigma_eps=0.1, n_trials=4,
                             rng=0)
    assert eg.shape == et.shape == (4, 50)
    eg, et = simulate_two_layer(8, [0, 10, 100], n_trials=2, rng=0, **SMALL_TWO_LAYER)
    assert eg.shape == et.shape == (2, 3)


def test_simulation_chunks_agree_under_a_small_limit(monkeypatch):
    """The (trials x times x modes) array code in chunks of ~20 times gives the same curves."""
    import sci

    t = np.linspace(0.0, 20.0, 400)
    with sci.use_backend("numpy"):
        reference = simulate_linear(30, 60, t, sigma_eps=0.3, n_trials=3, rng=1)
        monkeypatch.setenv("SCI_MEMORY_LIMIT", "512KiB")
        chunked = simulate_linear(30, 60, t, sigma_eps=0.3, n_trials=3, rng=1)
    for got, want in zip(chunked, reference, strict=True):
        np.testing.assert_array_equal(got, want)

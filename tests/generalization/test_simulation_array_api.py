"""The simulations in every array library: draws made on the host and copied once, the same
numbers as NumPy, results in the library and on the device asked for, host discipline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sci.generalization import (
    draw_linear_problem,
    draw_two_layer_problem,
    simulate_linear,
    simulate_two_layer,
)

SMALL = {"n_inputs": 4, "n_teacher_hidden": 5, "n_examples": 12, "n_test": 30}
TIMES = [0.0, 0.3, 2.0, 50.0]


def _where(xp):
    return dict(xp=xp.namespace, device=xp.device)


def test_draws_are_the_same_in_every_library(xp):
    linear = draw_linear_problem(3, 5, sigma_eps=0.1, sigma_w0=0.2, n_trials=2, rng=0)
    got = draw_linear_problem(3, 5, sigma_eps=0.1, sigma_w0=0.2, n_trials=2, rng=0, **_where(xp))
    two = draw_two_layer_problem(6, rng=1, n_trials=2, **SMALL)
    got_two = draw_two_layer_problem(6, rng=1, n_trials=2, **SMALL, **_where(xp))
    for ref, placed in ((linear, got), (two, got_two)):
        assert ref.keys() == placed.keys()
        for key, value in ref.items():
            assert type(value) is np.ndarray  # the default is NumPy, whatever the switch
            assert xp.is_leg_array(placed[key]) and placed[key].dtype == xp.float64
            np.testing.assert_array_equal(xp.to_numpy(placed[key]), value)


@pytest.mark.parametrize(("n", "p"), [(6, 10), (10, 6)])
@pytest.mark.parametrize("learning_rate", [None, 0.3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_simulation_in_every_library_matches_numpy(xp, n, p, learning_rate, dtype):
    """t of the leg's library sets where the simulation runs; xp=/device= do the same for a
    list of times. Oracle: the NumPy run with the same seed (itself checked against the
    closed forms and a literal descent loop in test_simulation.py)."""
    kw = dict(sigma_eps=0.4, sigma_w0=0.3, learning_rate=learning_rate, n_trials=3, rng=7,
              dtype=dtype)
    ref = simulate_linear(n, p, TIMES, **kw)
    by_input = simulate_linear(n, p, xp.asarray(np.asarray(TIMES)), **kw)
    by_keyword = simulate_linear(n, p, TIMES, **kw, **_where(xp))
    rtol = 1e-10 if dtype == "float64" else 1e-4
    for got in (by_input, by_keyword):
        for value, expected in zip(got, ref, strict=True):
            assert xp.is_leg_array(value) and value.dtype == getattr(xp, dtype)
            assert tuple(value.shape) == (3, len(TIMES))
            np.testing.assert_allclose(xp.to_numpy(value), expected, rtol=rtol)


@given(
    n=st.integers(1, 10),
    p=st.integers(1, 10),
    eta=st.sampled_from([None, 0.05, 0.2]),
    tau=st.sampled_from([0.5, 1.0, 3.0]),
    seed=st.integers(0, 2**31),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_linear_legs_agree_with_numpy_property(xp, n, p, eta, tau, seed):
    # descent diverges (and overflows) where eta lam_max > 2: short times keep it finite
    t = np.array([0.0, 0.4, 3.0])
    kw = dict(sigma_eps=0.5, sigma_w0=0.2, learning_rate=eta, tau=tau, n_trials=2, rng=seed)
    ref = simulate_linear(n, p, t, **kw)
    got = simulate_linear(n, p, xp.asarray(t), **kw)
    for a, b in zip(got, ref, strict=True):
        assert xp.is_leg_array(a)
        # n = p puts eigenvalues of X^T X / n near 0 (Marchenko-Pastur at alpha = 1); the
        # two libraries' eigensolvers then differ by ~eps lam_max / lam_min in those modes'
        # factors (seen: 1.8e-9 relative at n = p = 9, t = 3)
        np.testing.assert_allclose(xp.to_numpy(a), b, rtol=1e-7, atol=1e-13)


def test_linear_tasks_concatenate_in_the_library(xp):
    kw = dict(sigma_eps=0.4, n_trials=5, trials_per_task=2, rng=3)
    ref = simulate_linear(8, 5, TIMES, **kw)
    got = simulate_linear(8, 5, xp.asarray(np.asarray(TIMES)), **kw)
    for value, expected in zip(got, ref, strict=True):
        assert xp.is_leg_array(value) and tuple(value.shape) == (5, len(TIMES))
        np.testing.assert_allclose(xp.to_numpy(value), expected, rtol=1e-10)


def test_linear_long_time_identity_on_every_leg(xp):
    """Identity: with N < P the flow's training error at t -> inf is the noise outside the
    span of the inputs, |(I - X^T (X X^T)^-1 X) eps|^2 / P, computed directly here."""
    n, p = 5, 9
    problem = draw_linear_problem(n, p, sigma_eps=0.5, n_trials=2, rng=11)
    X, eps = problem["inputs"], problem["noise"]
    expected = []
    for k in range(2):
        projected = X[k].T @ np.linalg.solve(X[k] @ X[k].T, X[k] @ eps[k])
        expected.append(np.sum((eps[k] - projected) ** 2) / p)
    _, training = simulate_linear(n, p, xp.asarray([1e9]), sigma_eps=0.5, n_trials=2, rng=11)
    np.testing.assert_allclose(xp.to_numpy(training)[:, 0], expected, rtol=1e-8)


@pytest.mark.parametrize("train_hidden", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_layer_simulation_in_every_library_matches_numpy(xp, train_hidden, dtype):
    kw = dict(**SMALL, snr=2.0, sigma_w0=0.3, learning_rate=0.5, train_hidden=train_hidden,
              n_trials=3, rng=4, dtype=dtype)
    epochs = [0, 1, 7, 40]
    ref = simulate_two_layer(6, epochs, **kw)
    got = simulate_two_layer(6, epochs, **kw, **_where(xp))
    rtol = 1e-10 if dtype == "float64" else 2e-4
    for value, expected in zip(got, ref, strict=True):
        assert xp.is_leg_array(value) and value.dtype == getattr(xp, dtype)
        np.testing.assert_allclose(xp.to_numpy(value), expected, rtol=rtol)


def test_two_layer_divergence_is_reported_on_every_leg(xp):
    with pytest.raises(ValueError, match="diverged"):
        simulate_two_layer(6, [0, 200], learning_rate=1e3, train_hidden=True, n_trials=1,
                           rng=0, **SMALL, **_where(xp))
    with pytest.raises(ValueError, match="makes gradient descent diverge"):
        simulate_two_layer(6, [0, 200], learning_rate=1e3, n_trials=1, rng=0, **SMALL,
                           **_where(xp))


def test_times_of_another_library_or_device_are_refused():
    strict = pytest.importorskip("array_api_strict")
    t = strict.asarray([0.0, 1.0], device=strict.Device("device1"))
    with pytest.raises(TypeError, match=r"t is array_api_strict arrays on .*device1.* but "
                                        r"xp/device ask for numpy"):
        simulate_linear(5, 10, t, sigma_eps=0.1, n_trials=1, rng=0, xp=np)
    with pytest.raises(TypeError, match=r"but xp/device ask for array_api_strict arrays on "
                                        r"array_api_strict.Device\('CPU_DEVICE'\)"):
        simulate_linear(5, 10, t, sigma_eps=0.1, n_trials=1, rng=0, xp=strict)
    with pytest.raises(ValueError, match=r"t \(training times\) must be >= 0"):
        simulate_linear(5, 10, strict.asarray([-1.0], device=strict.Device("device1")),
                        sigma_eps=0.1, n_trials=1, rng=0)
    with pytest.raises(ValueError, match="t must be finite"):
        simulate_linear(5, 10, strict.asarray([np.nan]), sigma_eps=0.1, n_trials=1, rng=0)


@pytest.fixture
def strict_reads(monkeypatch):
    """Counts every value read from an array_api_strict array (to the host or to a Python
    scalar): what a GPU would pay a synchronisation for."""
    strict = pytest.importorskip("array_api_strict")
    Array = strict._array_object.Array
    reads = []
    for method in ("__bool__", "__float__", "__int__", "__index__", "to_device", "__array__"):
        original = getattr(Array, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Array, method, counted)
    return strict, reads


def test_simulations_read_the_device_a_fixed_number_of_times(strict_reads):
    """On a second device (host constants mixed in would raise) the reads do not grow with
    the times, the epochs or the trials: the checks are one read per call or task."""
    strict, reads = strict_reads
    device = strict.Device("device1")
    counts = []
    for n_times, n_trials in ((2, 1), (40, 4)):
        reads.clear()
        t = strict.asarray(np.linspace(0.0, 5.0, n_times), device=device)
        simulate_linear(6, 9, t, sigma_eps=0.3, learning_rate=0.2, n_trials=n_trials, rng=0)
        counts.append(len(reads))
    assert counts[0] == counts[1] == 1, counts
    counts = []
    for epochs in ([0, 3], list(range(0, 60, 3))):
        for train_hidden in (False, True):
            reads.clear()
            simulate_two_layer(5, epochs, train_hidden=train_hidden, n_trials=2, rng=0, xp=strict,
                               device=device, **SMALL)
            counts.append(len(reads))
    assert counts == [1, 1, 1, 1], counts


def test_flow_curves_are_differentiable_in_time_through_torch():
    """The flow's errors are smooth in t: torch differentiates the closed form in the
    eigenbasis (gradcheck, float64), and the gradient is the slope of the NumPy curve
    (central differences)."""
    torch = pytest.importorskip("torch")
    kw = dict(sigma_eps=0.3, sigma_w0=0.2, n_trials=2, rng=4)
    times = np.array([0.05, 0.2, 1.5, 8.0])

    def curves(t):
        return simulate_linear(7, 5, t, **kw)

    t = torch.tensor(times, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(curves, (t,), eps=1e-6, atol=1e-8)
    eg, et = curves(t)
    for curve, index in ((eg, 0), (et, 1)):
        (slope,) = torch.autograd.grad(curve.sum(), t, retain_graph=True)
        h = 1e-5
        central = (simulate_linear(7, 5, times + h, **kw)[index].sum(axis=0)
                   - simulate_linear(7, 5, times - h, **kw)[index].sum(axis=0)) / (2 * h)
        np.testing.assert_allclose(slope.numpy(), central, rtol=1e-6, atol=1e-9)

"""ufm_minimizer and train_ufm in every array library: where the results live, the same numbers
as NumPy (the draws are made on the host), the history against nc_metrics, host discipline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sci.neural_collapse import nc_metrics, train_ufm, ufm_minimizer, ufm_objective

CASES = [
    dict(n_per_class=[5, 3, 4], depth=2, lambda_W=1e-2, lambda_H=1e-2, loss="ce", bias=True),
    dict(n_per_class=[6, 2, 4], depth=3, lambda_W=[1e-2, 2e-2, 5e-3], lambda_H=1e-2, width=5),
]


def _leg_kwargs(xp):
    return dict(xp=xp.namespace, device=xp.device)


@pytest.mark.parametrize(
    "case",
    [dict(n_per_class=[200, 100, 50, 50], depth=1, lambda_W=5e-3, lambda_H=5e-3),
     dict(n_per_class=[4] * 3, depth=3, lambda_W=1e-3, lambda_H=1e-3, bias=True, width=4),
     dict(n_per_class=[4] * 3, depth=2, lambda_W=1e-3, lambda_H=1e-3, loss="ce", bias=True)],
)
def test_minimizer_in_every_library_attains_its_objective(xp, case):
    """The realised point is in the library and device asked for, equals NumPy's, and its
    objective (evaluated there by ufm_objective) is the closed form's."""
    ref = ufm_minimizer(**case, rng=3)
    got = ufm_minimizer(**case, rng=3, **_leg_kwargs(xp))
    arrays = [*got.weights, got.features] + ([got.bias] if got.bias is not None else [])
    assert all(xp.is_leg_array(a) for a in arrays)
    assert all(a.dtype == xp.float64 for a in arrays)
    for a, b in zip(arrays, [*ref.weights, ref.features]
                    + ([ref.bias] if ref.bias is not None else []), strict=True):
        np.testing.assert_array_equal(xp.to_numpy(a), b)  # copied once, not recomputed
    value = ufm_objective(got.weights, got.features, got.labels, lambda_W=case["lambda_W"],
                          lambda_H=case["lambda_H"], loss=case.get("loss", "mse"),
                          bias=got.bias)
    np.testing.assert_allclose(float(xp.to_numpy(value)), ref.objective, rtol=1e-12)
    np.testing.assert_array_equal(got.singular_values, ref.singular_values)  # host summaries


def test_minimizer_default_is_unchanged():
    r = ufm_minimizer([3, 3], depth=2, lambda_W=1e-3, lambda_H=1e-3)
    assert type(r.features) is np.ndarray and type(r.weights[0]) is np.ndarray


def test_minimizer_refuses_a_device_without_a_library():
    with pytest.raises(ValueError, match="device='cuda:0' needs a device library"):
        ufm_minimizer([3, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3, device="cuda:0")
    with pytest.raises(TypeError, match="xp must be an array library module"):
        ufm_minimizer([3, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3, xp="torch")


@pytest.mark.parametrize("case", CASES, ids=["ce-bias", "mse-deep"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_in_every_library_matches_numpy(xp, case, dtype):
    """Same draws (host generator, copied once), same steps: the same run to rounding."""
    kwargs = dict(**case, steps=40, lr=0.05, momentum=0.5, num_seeds=3, rng=5, record_every=10,
                  dtype=dtype)
    ref = train_ufm(**kwargs)
    got = train_ufm(**kwargs, **_leg_kwargs(xp))
    arrays = [*got.weights, got.features] + ([got.bias] if got.bias is not None else [])
    assert all(xp.is_leg_array(a) and a.dtype == getattr(xp, dtype) for a in arrays)
    assert got.steps.tolist() == [0, 10, 20, 30, 40]
    rtol = 1e-10 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(got.loss, ref.loss, rtol=rtol)
    for name, values in ref.metrics.items():
        np.testing.assert_allclose(got.metrics[name], values, rtol=10 * rtol, atol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(got.singular_values, ref.singular_values, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(got.feature_norms, ref.feature_norms, rtol=rtol)
    np.testing.assert_allclose(xp.to_numpy(got.features), ref.features, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=["ce-bias", "mse-deep"])
@pytest.mark.parametrize("steps", [0, 25])
def test_recorded_metrics_are_nc_metrics_of_the_state(xp, case, steps):
    """Oracle: the batched metrics of the history equal nc_metrics (itself checked against
    the two-pass definitions) of the recorded state, seed by seed."""
    run = train_ufm(**case, steps=steps, lr=0.05, num_seeds=2, rng=1, record_every=max(1, steps),
                    **_leg_kwargs(xp))
    W = run.weights[0]
    for layer in run.weights[1:]:
        W = layer @ W
    for s in range(2):
        m = nc_metrics(run.features[s, ...], run.labels, W=W[s, ...],
                       b=None if run.bias is None else run.bias[s, ...])
        for name, values in run.metrics.items():
            np.testing.assert_allclose(values[s, -1], getattr(m, name), rtol=1e-8, atol=1e-13,
                                       err_msg=name)


def test_training_from_a_start_in_its_library(xp):
    exact = ufm_minimizer([4, 3], depth=2, lambda_W=1e-2, lambda_H=1e-2, **_leg_kwargs(xp))
    run = train_ufm([4, 3], depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=30, lr=0.05,
                    start=exact, init_scale=1e-4, num_seeds=2, rng=0, record_every=30)
    assert xp.is_leg_array(run.features) and xp.is_leg_array(run.weights[-1])
    ref = train_ufm([4, 3], depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=30, lr=0.05,
                    start=ufm_minimizer([4, 3], depth=2, lambda_W=1e-2, lambda_H=1e-2),
                    init_scale=1e-4, num_seeds=2, rng=0, record_every=30)
    np.testing.assert_allclose(run.loss, ref.loss, rtol=1e-12)
    np.testing.assert_allclose(run.loss[:, -1], exact.objective, rtol=1e-6)


def test_tasks_concatenate_in_the_library(xp):
    kwargs = dict(depth=1, lambda_W=1e-2, lambda_H=1e-2, steps=10, lr=0.05, num_seeds=3,
                  seeds_per_task=2, rng=2, record_every=5)
    got = train_ufm([3, 4], **kwargs, **_leg_kwargs(xp))
    ref = train_ufm([3, 4], **kwargs)
    assert xp.is_leg_array(got.features) and tuple(got.features.shape) == (3, 7, 2)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-12)
    np.testing.assert_allclose(xp.to_numpy(got.weights[0]), ref.weights[0], rtol=1e-12)


def test_divergence_is_reported_on_every_leg(xp):
    with pytest.raises(ValueError, match=r"diverged at step \d+ \(loss not finite\)"):
        train_ufm([4, 3], depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=50, lr=1e3, rng=0,
                  **_leg_kwargs(xp))


def test_start_of_another_library_is_refused():
    strict = pytest.importorskip("array_api_strict")
    torch = pytest.importorskip("torch")
    exact = ufm_minimizer([3, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3, xp=strict,
                          device=strict.Device("device1"))
    with pytest.raises(TypeError, match=r"start holds array_api_strict arrays .* torch"):
        train_ufm([3, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3, steps=1, start=exact,
                  xp=torch, rng=0)
    with pytest.raises(TypeError, match=r"start holds .*device1.* but xp/device ask for"):
        train_ufm([3, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3, steps=1, start=exact,
                  xp=strict, rng=0)


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


def test_training_reads_the_device_once_whatever_the_steps(strict_reads):
    """The strict leg on a second device: no host value mixed in (it would raise), and the
    number of reads does not grow with the steps or the records (one, at the end)."""
    strict, reads = strict_reads
    device = strict.Device("device1")
    counts = []
    for steps in (5, 60):
        reads.clear()
        run = train_ufm([4, 3, 2], depth=2, lambda_W=1e-2, lambda_H=1e-2, loss="ce", bias=True,
                        steps=steps, lr=0.05, num_seeds=2, rng=0, record_every=5, xp=strict,
                        device=device)
        counts.append(len(reads))
        assert run.features.device == device and run.loss.shape == (2, steps // 5 + 1)
    assert counts[0] == counts[1] == 1, counts


def test_the_tasks_context_pickles(xp):
    """A task sent to a worker process carries its array context (a module does not pickle:
    it goes by its namespace's name and is rebuilt)."""
    import pickle

    from sci.backend import creation_context

    ctx = creation_context(xp.namespace, xp.device)
    back = pickle.loads(pickle.dumps(ctx))
    assert back == ctx and back.xp is ctx.xp


@given(
    counts=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    d=st.integers(1, 6),
    seeds=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_batched_history_metrics_are_nc_metrics(xp, counts, d, seeds, seed):
    """Property, on every leg: the trainer's batched metrics of random states equal
    nc_metrics (checked against the definitions in test_metrics.py), seed by seed."""
    from sci.backend import cached_constant, creation_context
    from sci.neural_collapse._train import (
        RECORDED_METRICS,
        _complement_of_counts,
        _seed_metrics,
    )

    rng = np.random.default_rng(seed)
    counts = np.array(counts)
    K, N = counts.size, int(counts.sum())
    labels = np.repeat(np.arange(K), counts)
    H = rng.standard_normal((seeds, N, d)) + 3.0 * rng.standard_normal((seeds, K, d))[:, labels]
    W = rng.standard_normal((seeds, K, d))
    ctx = creation_context(xp.namespace, xp.device)
    onehot_t = xp.asarray((labels[None, :] == np.arange(K)[:, None]).astype(np.float64))
    complement = cached_constant(("test.complement", tuple(counts.tolist())),
                                 lambda: _complement_of_counts(counts.astype(np.float64)), ctx)
    got = xp.to_numpy(_seed_metrics(xp.asarray(H), xp.asarray(W), xp.asarray(labels), onehot_t,
                                    xp.asarray(counts.astype(np.float64)), complement, ctx))
    for s in range(seeds):
        m = nc_metrics(H[s], labels, W=W[s])
        expected = np.array([getattr(m, name) for name in RECORDED_METRICS])
        np.testing.assert_allclose(got[:, s], expected, rtol=1e-7, atol=1e-12)

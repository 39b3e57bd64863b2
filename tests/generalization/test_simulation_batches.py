"""simulate_linear on a device: the tasks solved in batches (one batched eigh each), their
draws made ahead on host threads; the numbers those of the tasks one by one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sci.generalization import simulate_linear
from sci.generalization._simulation import _device_batch_trials, batches_of_tasks


def test_batches_hold_whole_consecutive_tasks():
    assert batches_of_tasks([1] * 5, 2) == [[0, 1], [2, 3], [4]]
    assert batches_of_tasks([3, 1, 2], 4) == [[0, 1], [2]]
    # a task larger than a batch is a batch alone, never split (one random stream)
    assert batches_of_tasks([5, 1, 1], 2) == [[0], [1, 2]]
    assert batches_of_tasks([2], 100) == [[0]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(1, 10))
def test_batches_property(sizes, cap):
    batches = batches_of_tasks(sizes, cap)
    assert [k for batch in batches for k in batch] == list(range(len(sizes)))
    for batch in batches:
        assert len(batch) == 1 or sum(sizes[k] for k in batch) <= cap


def test_device_batch_follows_the_memory_limit(monkeypatch):
    strict = pytest.importorskip("array_api_strict")
    from sci.backend import creation_context

    ctx = creation_context(strict, strict.Device("device1"))
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "64MiB")
    small = _device_batch_trials(100, 200, 50, 8, ctx)
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "256MiB")
    assert _device_batch_trials(100, 200, 50, 8, ctx) == pytest.approx(4 * small, abs=4)
    # a quarter of the limit, 16 MiB, over about 8 (N P + 4 N^2 + 8 n_times N) bytes a trial
    assert 16 * 2**20 // (8 * (100 * 200 + 4 * 100**2 + 8 * 50 * 100)) <= small <= 40


@pytest.mark.parametrize("learning_rate", [None, 0.25])
def test_batched_tasks_equal_the_tasks_one_by_one(xp, learning_rate):
    """Per-trial tasks (trials_per_task=1: a child seed each) batched on the device give the
    host's task-by-task curves; batches of 2 (a small memory limit) the same."""
    t = [0.0, 0.5, 3.0, 40.0]
    kw = dict(sigma_eps=0.4, sigma_w0=0.3, n_trials=5, trials_per_task=1, rng=11,
              learning_rate=learning_rate)
    ref = simulate_linear(7, 12, t, **kw)
    got = simulate_linear(7, 12, xp.asarray(np.asarray(t)), **kw)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(xp.to_numpy(b), a, rtol=1e-11, atol=1e-14)


def test_small_memory_splits_the_batches_with_the_same_numbers(monkeypatch):
    torch = pytest.importorskip("torch")
    t = np.array([0.0, 1.0, 20.0])
    kw = dict(sigma_eps=0.4, n_trials=6, trials_per_task=1, rng=2)
    ref = simulate_linear(30, 50, t, **kw)
    import sci.generalization._simulation as simulation

    seen = []
    original = simulation._linear_solve

    def spy(problem, **kwargs):
        seen.append(problem["inputs"].shape[0])
        return original(problem, **kwargs)

    monkeypatch.setattr(simulation, "_linear_solve", spy)
    monkeypatch.setattr(simulation, "_device_batch_trials", lambda *args: 4)
    got = simulate_linear(30, 50, torch.from_numpy(t), **kw)
    assert seen == [4, 2]
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-11, atol=1e-14)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 9), p=st.integers(1, 9), trials=st.integers(1, 5),
       per_task=st.integers(1, 3), dtype=st.sampled_from(["float32", "float64"]))
def test_torch_batches_match_numpy_property(n, p, trials, per_task, dtype):
    torch = pytest.importorskip("torch")
    t = np.array([0.0, 0.7, 9.0])
    kw = dict(sigma_eps=0.3, n_trials=trials, trials_per_task=per_task, rng=4, dtype=dtype)
    ref = simulate_linear(n, p, t, **kw)
    got = simulate_linear(n, p, torch.from_numpy(t), **kw)
    rtol = 1e-10 if dtype == "float64" else 2e-3
    for a, b in zip(ref, got, strict=True):
        assert str(b.dtype) == f"torch.{dtype}"
        np.testing.assert_allclose(b.numpy(), a, rtol=rtol, atol=rtol * 1e-2)


def test_operator_count_does_not_grow_with_trials_or_tasks(torch_ops):
    """One batch: the same torch operators (kernel launches on a GPU) for 1 trial and for 8
    trials in 8 tasks, one batched eigh each time, and no host read of a device value but
    the one check of t."""
    torch = pytest.importorskip("torch")
    t = torch.linspace(0.0, 5.0, 12, dtype=torch.float64)
    counts = []
    for n_trials in (1, 8):
        with torch_ops() as ops:
            simulate_linear(10, 20, t, sigma_eps=0.3, n_trials=n_trials, trials_per_task=1,
                            rng=0)
        counts.append(ops)
    assert counts[0] == counts[1]
    assert counts[1]["_linalg_eigh"] == 1
    assert counts[1]["_local_scalar_dense"] == 0  # t's check is one read by to_numpy
    assert counts[1].launches() < 60, counts[1]


@pytest.mark.parametrize("train_hidden", [False, True])
def test_two_layer_batched_tasks_equal_the_tasks_one_by_one(xp, train_hidden):
    from sci.generalization import simulate_two_layer

    kw = dict(n_inputs=4, n_teacher_hidden=5, n_examples=12, n_test=30, n_trials=5,
              trials_per_task=2, rng=7, train_hidden=train_hidden, learning_rate=0.05)
    ref = simulate_two_layer(6, [0, 3, 20], **kw)
    got = simulate_two_layer(6, [0, 3, 20], xp=xp.namespace, device=xp.device, **kw)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(xp.to_numpy(b), a, rtol=1e-10, atol=1e-13)


def test_two_layer_operators_do_not_grow_with_the_tasks(torch_ops):
    torch = pytest.importorskip("torch")
    from sci.generalization import simulate_two_layer

    counts = []
    for n_trials in (1, 6):
        with torch_ops() as ops:
            simulate_two_layer(6, [0, 3, 20], n_inputs=4, n_teacher_hidden=5, n_examples=12,
                               n_test=30, n_trials=n_trials, trials_per_task=1, rng=0,
                               train_hidden=True, xp=torch)
        counts.append(ops)
    assert counts[0] == counts[1]

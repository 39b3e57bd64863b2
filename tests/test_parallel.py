"""sci.parallel: the same results in-process, on local processes and on a Dask cluster."""

from __future__ import annotations

import builtins
import functools
import math
import sys
import time

import numpy as np
import pytest

import sci
from sci.generalization import draw_linear_problem, simulate_linear, simulate_two_layer
from sci.parallel import (
    DaskExecutor,
    ProcessExecutor,
    SerialExecutor,
    current_executor,
    get_executor,
    parallel_map,
    split_trials,
    task_seeds,
    use_executor,
)
from sci.parallel import _describe as describe

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


@pytest.fixture(scope="module")
def processes():
    # Two workers (the CI box has two cores); started once for the module.
    with ProcessExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def cluster():
    # Worker processes (not threads), so tasks and results really travel pickled, as on a
    # remote cluster; one thread each so nothing shares a Numba or BLAS pool.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local, \
            distributed.Client(local, set_as_default=False) as client:
        yield DaskExecutor(client)


@pytest.fixture(params=["serial", "processes", "dask"])
def executor(request, processes, cluster):
    return {"serial": SerialExecutor(), "processes": processes, "dask": cluster}[request.param]


def test_map_returns_results_in_task_order(executor):
    tasks = list(range(12, 0, -1))
    assert executor.map(math.factorial, tasks) == [math.factorial(n) for n in tasks]
    assert executor.map(math.factorial, []) == []


def test_tasks_run_under_the_callers_backend_with_nested_maps_serial(executor):
    for backend in sci.available_backends():
        with sci.use_backend(backend), use_executor(ProcessExecutor(max_workers=2)):
            for info in executor.map(describe, [0, 1, 2]):
                assert info["backend"] == backend
                # a map inside a task must not start pools inside the workers; in-process,
                # it keeps the executor configured around the call
                expected = "local-process" if isinstance(executor, SerialExecutor) else "serial"
                assert info["nested"] == expected


def test_work_is_spread_over_processes(processes, cluster):
    import os

    for executor in (processes, cluster):
        pids = {info["pid"] for info in executor.map(describe, range(8))}
        assert os.getpid() not in pids
    # a single task is not worth a round trip: it runs here
    assert processes.map(describe, [0])[0]["pid"] == os.getpid()


def test_task_seeds_do_not_depend_on_the_number_of_tasks():
    few, many = task_seeds(42, 3), task_seeds(42, 10)
    draws = [np.random.default_rng(s).random(4) for s in many]
    for a, b in zip(few, draws, strict=False):
        np.testing.assert_array_equal(np.random.default_rng(a).random(4), b)
    # independent streams: no two tasks share their first draws
    assert len({d[0] for d in draws}) == len(draws)
    # the same seed always gives the same children (no hidden state) ...
    again = task_seeds(np.random.SeedSequence(42), 2)
    np.testing.assert_array_equal(np.random.default_rng(again[1]).random(4), draws[1])
    # ... while a Generator spawns new ones, as drawing from it would
    rng = np.random.default_rng(42)
    first, second = task_seeds(rng, 1), task_seeds(rng, 1)
    assert first[0].spawn_key != second[0].spawn_key


def test_task_seeds_and_split_refuse_bad_input():
    with pytest.raises(TypeError, match="seed must be"):
        task_seeds("seven", 2)
    with pytest.raises(TypeError, match="seed must be"):
        task_seeds(True, 2)
    with pytest.raises(ValueError, match="n_tasks"):
        task_seeds(1, -1)
    assert split_trials(24, 19) == [12, 12]
    assert split_trials(5, 5) == [5]
    assert sum(split_trials(101, 7)) == 101
    assert max(split_trials(101, 7)) <= 7
    with pytest.raises(ValueError, match="per_task"):
        split_trials(4, 0)


LINEAR = {"n_inputs": 30, "n_examples": 45, "t": [0.0, 0.5, 3.0, 1e6], "sigma_eps": 0.4,
          "sigma_w0": 0.3, "n_trials": 7, "trials_per_task": 2, "rng": 5}


@pytest.mark.parametrize("backend", [b for b in ("numpy", "numba")
                                     if b in sci.available_backends()])
def test_simulations_bitwise_equal_on_every_executor(backend, processes, cluster):
    with sci.use_backend(backend):
        reference = simulate_linear(**LINEAR, executor="serial")
        two_layer = simulate_two_layer(6, [0, 5, 50], n_inputs=4, n_teacher_hidden=5,
                                       n_examples=12, n_test=20, n_trials=5, trials_per_task=2,
                                       rng=3, executor="serial")
        both = {"n_inputs": 4, "n_teacher_hidden": 5, "n_examples": 12, "n_test": 20,
                "n_trials": 3, "trials_per_task": 1, "rng": 6, "train_hidden": True,
                "learning_rate": 0.5}
        both_layers = simulate_two_layer(5, [0, 20, 60], **both, executor="serial")
        for executor in (processes, cluster):
            for got, want in zip(simulate_linear(**LINEAR, executor=executor), reference,
                                 strict=True):
                np.testing.assert_array_equal(got, want)
            with use_executor(executor):  # the context manager reaches the same code
                got = simulate_two_layer(6, [0, 5, 50], n_inputs=4, n_teacher_hidden=5,
                                         n_examples=12, n_test=20, n_trials=5,
                                         trials_per_task=2, rng=3)
            for a, b in zip(got, two_layer, strict=True):
                np.testing.assert_array_equal(a, b)
            got = simulate_two_layer(5, [0, 20, 60], **both, executor=executor)
            for a, b in zip(got, both_layers, strict=True):
                np.testing.assert_array_equal(a, b)
    assert reference[0].shape == (7, 4)


def test_int_seed_and_fresh_generator_give_the_same_tasks():
    by_int = simulate_linear(**LINEAR, executor="serial")
    by_generator = simulate_linear(**{**LINEAR, "rng": np.random.default_rng(5)},
                                   executor="serial")
    np.testing.assert_array_equal(by_int[0], by_generator[0])
    # task k (trials 2k, 2k+1) is the one-task simulation seeded by child k
    child = task_seeds(5, 4)[1]
    alone = simulate_linear(**{**LINEAR, "n_trials": 2, "rng": np.random.default_rng(child)},
                            executor="serial")
    np.testing.assert_array_equal(alone[0], by_int[0][2:4])


@pytest.mark.parametrize("kind", ["simulate_linear", "simulate_two_layer", "train_ufm"])
def test_a_generator_advances_alike_on_every_executor(kind, executor):
    # One task draws from the caller's generator itself: it must run where that generator
    # lives (a worker would draw from a copy, leave the caller's put, and repeat the same
    # trials on the next call).
    from sci.generalization import simulate_two_layer
    from sci.neural_collapse import train_ufm

    calls = {
        "simulate_linear": lambda rng, ex: simulate_linear(
            12, 20, [1.0], sigma_eps=0.1, n_trials=2, rng=rng, executor=ex)[0],
        "simulate_two_layer": lambda rng, ex: simulate_two_layer(
            3, [0, 20], n_inputs=4, n_examples=10, n_trials=2, n_test=50, rng=rng,
            executor=ex)[0],
        "train_ufm": lambda rng, ex: train_ufm(
            [3, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3, steps=5, num_seeds=2, rng=rng,
            executor=ex).loss,
    }
    run = calls[kind]
    ref_rng, rng = np.random.default_rng(3), np.random.default_rng(3)
    first_ref, second_ref = run(ref_rng, "serial"), run(ref_rng, "serial")
    first, second = run(rng, executor), run(rng, executor)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(first_ref))
    np.testing.assert_array_equal(np.asarray(second), np.asarray(second_ref))
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    assert rng.random() == ref_rng.random()


def test_one_task_draws_exactly_what_draw_linear_problem_draws():
    # With one task the seed is used as given: the documented link between the two functions.
    eg, _ = simulate_linear(20, 10, [1e9], sigma_eps=0.0, sigma_w0=1.0, n_trials=3, rng=9,
                            trials_per_task=3, executor="serial")
    problem = draw_linear_problem(20, 10, sigma_eps=0.0, sigma_w0=1.0, n_trials=3, rng=9)
    # N > P without noise: at t -> infinity the error left is the initial error outside the
    # span of the inputs (columns of X), computed here by least squares (float64 rounding).
    for k in range(3):
        x, e0 = problem["inputs"][k], problem["teacher"][k] - problem["initial"][k]
        coef, *_ = np.linalg.lstsq(x, e0, rcond=None)
        frozen = e0 - x @ coef
        assert eg[k, 0] == pytest.approx(frozen @ frozen / 20, rel=1e-9)


def test_split_changes_the_streams_but_not_the_statistics():
    # Different splits are different (documented) random streams ...
    kw = {**LINEAR, "n_trials": 400, "t": [1e9], "sigma_w0": 0.0}
    one = simulate_linear(**{**kw, "trials_per_task": 400}, executor="serial")[0][:, 0]
    split = simulate_linear(**{**kw, "trials_per_task": 50}, executor="serial")[0][:, 0]
    assert not np.array_equal(one, split)
    # ... of the same distribution: means within 5 standard errors of their difference.
    sem = math.hypot(one.std(ddof=1), split.std(ddof=1)) / math.sqrt(400)
    assert abs(one.mean() - split.mean()) < 5 * sem


def test_use_executor_sets_and_restores_the_current_executor(processes):
    before = current_executor()
    with use_executor("serial") as chosen:
        assert current_executor() is chosen
        assert isinstance(chosen, SerialExecutor)
        with use_executor(processes):
            assert current_executor() is processes
        assert current_executor() is chosen
    assert current_executor() is before


def test_get_executor_from_arguments_and_environment(monkeypatch):
    monkeypatch.delenv("SCI_DASK_SCHEDULER", raising=False)
    monkeypatch.delenv("SCI_WORKERS", raising=False)
    assert isinstance(get_executor(), ProcessExecutor)
    assert get_executor(max_workers=1) is get_executor("serial")
    assert get_executor(max_workers=3) is get_executor(max_workers=3)  # reused, not restarted
    monkeypatch.setenv("SCI_WORKERS", "1")
    assert isinstance(get_executor(), SerialExecutor)
    monkeypatch.setenv("SCI_WORKERS", "two")
    with pytest.raises(ValueError, match="SCI_WORKERS must be a positive integer"):
        get_executor()
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        get_executor(max_workers=0)
    with pytest.raises(TypeError, match="max_workers must be a positive integer"):
        get_executor(max_workers=1.5)
    with pytest.raises(TypeError, match="distributed.Client or a scheduler address"):
        DaskExecutor(42)
    with pytest.raises(TypeError, match="scheduler must be None, 'serial'.*got int"):
        get_executor(42)


def test_scheduler_from_environment(monkeypatch, cluster):
    monkeypatch.setenv("SCI_DASK_SCHEDULER", cluster.client.scheduler.address)
    with get_executor() as executor:  # closing it disconnects and forgets it
        assert isinstance(executor, DaskExecutor)
        assert executor is get_executor()  # one client per address
        assert executor.map(abs, [-2, 3]) == [2, 3]
    assert get_executor() is not executor
    get_executor().close()


def test_unreachable_scheduler_fails_fast_with_the_address():
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"tcp://127\.0\.0\.1:9.*within 1 s"):
        get_executor("tcp://127.0.0.1:9", timeout=1)
    assert time.perf_counter() - start < 30  # a timeout, not a hang


def test_missing_dask_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "distributed")
    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(ImportError, match=r'pip install "sci-theory-results\[dask\]"'):
        get_executor("tcp://127.0.0.1:8786")


def test_unpicklable_functions_are_refused_where_tasks_leave_the_process(executor):
    offset = 3

    def local(x):  # a closure: it cannot travel to another process
        return x + offset

    if isinstance(executor, SerialExecutor):
        # in-process nothing is pickled (a reloaded module or a notebook closure still runs)
        assert executor.map(local, [1, 2]) == [4, 5]
    else:
        with pytest.raises(TypeError, match="does not pickle.*module level"):
            executor.map(local, [1, 2])
        with pytest.raises(TypeError, match="does not pickle"):
            parallel_map(lambda x: x, [1, 2], executor=executor)
    with pytest.raises(TypeError, match="fn must be callable"):
        executor.map(42, [1])
    # functools.partial of a module-level function is the way to fix arguments
    assert executor.map(functools.partial(pow, 2), [3, 4]) == [8, 16]


def test_unpicklable_task_is_a_clear_type_error(processes):
    with pytest.raises(TypeError, match="cannot be sent between processes|pickle"):
        processes.map(describe, [lambda: 1, 2])


def test_unpicklable_local_function_task_is_a_clear_type_error(processes):
    # Python 3.13 reports a nested function as AttributeError("Can't get local object ...").
    def local():
        return 1

    with pytest.raises(TypeError, match="cannot be sent between processes"):
        processes.map(describe, [local, 2])


def test_a_tasks_own_attribute_error_is_not_called_a_pickling_error(processes):
    # The same exception type raised by the task in the worker reaches the caller unchanged.
    with pytest.raises(AttributeError, match="no_such_attribute"):
        processes.map(functools.partial(getattr, 1.5), ["real", "no_such_attribute"])


def test_a_dead_worker_does_not_break_the_executor_for_good():
    # A worker killed (out of memory, os._exit) breaks a ProcessPoolExecutor for good; the
    # executor (cached by get_executor for every later sweep) must start a new pool.
    import os

    with ProcessExecutor(max_workers=2) as executor:
        with pytest.raises(RuntimeError, match="worker process died"):
            executor.map(os._exit, [3, 3, 3])
        assert executor.map(math.factorial, [3, 4, 5]) == [6, 24, 120]


def test_task_errors_reach_the_caller(executor):
    with pytest.raises(ValueError, match="factorial"):
        executor.map(math.factorial, [3, -1, 2])


def _train(executor, **kwargs):
    from sci.neural_collapse import train_ufm

    return train_ufm([4, 3, 2], depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=30, lr=0.1,
                     num_seeds=3, seeds_per_task=1, rng=4, executor=executor, **kwargs)


def test_train_ufm_seed_batches_equal_on_every_executor(processes, cluster):
    from sci.neural_collapse import train_ufm

    reference = _train("serial")
    for executor in (processes, cluster):
        run = _train(executor)
        np.testing.assert_array_equal(run.loss, reference.loss)
        for name, values in reference.metrics.items():
            np.testing.assert_array_equal(run.metrics[name], values)
        np.testing.assert_array_equal(run.singular_values, reference.singular_values)
        for a, b in zip(run.weights, reference.weights, strict=True):
            np.testing.assert_array_equal(a, b)
    # seed batch k is the run of one seed drawn from child k of rng
    for k, child in enumerate(task_seeds(4, 3)):
        alone = train_ufm([4, 3, 2], depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=30, lr=0.1,
                          rng=np.random.default_rng(child))
        np.testing.assert_array_equal(alone.loss[0], reference.loss[k])
        np.testing.assert_array_equal(alone.features[0], reference.features[k])


def test_figure_identical_on_every_executor_and_cached_once(tmp_path, processes, cluster):
    from figures._registry import discover
    from figures._runner import run_figure
    from sci._json import to_jsonable

    figure = discover()["tensor_attention_transition"]  # eight seeded tasks per order
    params = figure.parameters(quick=True)
    with use_executor("serial"):
        reference = to_jsonable(figure.compute(**params, progress=False))
    for executor in (processes, cluster):
        with use_executor(executor):
            assert to_jsonable(figure.compute(**params, progress=False)) == reference
    # The cache key ignores the executor: what a cluster computed is reused in-process.
    first = run_figure(figure, quick=True, out=tmp_path, cache_dir=tmp_path / "cache",
                       progress=False, executor=cluster)
    again = run_figure(figure, quick=True, out=tmp_path, cache_dir=tmp_path / "cache",
                       progress=False, executor="serial")
    assert not first["from_cache"] and again["from_cache"]
    assert first["data"] == again["data"] == reference


def test_figures_cli_runs_on_a_scheduler_and_refuses_bad_options(tmp_path, cluster, capsys):
    from figures.__main__ import main

    address = cluster.client.scheduler.address
    args = ["tensor_attention_transition", "--quick", "--no-cache", "--no-progress",
            "--out", str(tmp_path)]
    try:
        assert main([*args, "--scheduler", address]) == 0
    finally:
        get_executor(address).close()
    assert (tmp_path / "tensor_attention_transition.png").stat().st_size > 0
    assert main([*args, "--workers", "1"]) == 0
    for bad, message in ((["--workers", "0"], "max_workers must be >= 1"),
                         (["--scheduler", address, "--workers", "2"], "--workers applies")):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *bad])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err

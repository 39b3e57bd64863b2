"""Dask arrays in the Chebyshev-Tucker grid export, direct_potential and nc_metrics.

Each result is checked against the NumPy path (same formulas, another blocking: the tolerances
are rounding of the sums involved), its chunks and graph (one task per block, no task whose
result is larger than a block), laziness, and errors raised at compute time.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sci
from sci._dask import in_backend, is_dask_array, task_backend
from sci._validation import MemoryLimitError
from sci.chebyshev_tucker import (
    ChebTucker,
    RangeSeparatedPotential,
    direct_potential,
    long_range_potential,
    newton_exponential_sum,
)
from sci.chebyshev_tucker._tucker import multi_mode_product
from sci.neural_collapse import nc_metrics, simplex_etf

dask = pytest.importorskip("dask")  # the `dask` / `test` extras
da = pytest.importorskip("dask.array")
from dask.callbacks import Callback  # noqa: E402


@pytest.fixture(autouse=True)
def threaded():
    """The threaded scheduler: real worker threads, so the backend must reach them."""
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


class LargestResult(Callback):
    """Records the number of elements of the largest result any task returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.tasks = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith("finalize"):
            return  # compute()'s own gathering of the requested result
        self.tasks += 1
        for value in _arrays_in(result):
            self.largest = max(self.largest, int(math.prod(value.shape)))


def _arrays_in(result):
    if hasattr(result, "shape") and hasattr(result, "dtype"):  # NumPy or CuPy
        yield result
    elif isinstance(result, dict):
        for value in result.values():
            yield from _arrays_in(value)
    elif isinstance(result, list | tuple):
        for value in result:
            yield from _arrays_in(value)


def _largest_block(x) -> int:
    return math.prod(max(c) for c in x.chunks)


@pytest.fixture(scope="module")
def ct():
    return ChebTucker.from_function(
        lambda x, y, z: np.sin(x + 2 * y) * np.cos(z) + x * y * z, domain=(-1, 1), degree=20,
        tol=1e-13,
    )


# -- detection, import, backend ------------------------------------------------------------


def test_import_sci_does_not_import_dask():
    code = (
        "import sys, numpy as np, sci, sci.chebyshev_tucker as c, sci.neural_collapse as n\n"
        "ct = c.ChebTucker.from_function(lambda x, y, z: x + y * z, domain=(0, 1), degree=3,"
        " tol=1e-12)\n"
        "g = np.linspace(0, 1, 4); ct.on_grid(g, g, g); ct.to_tucker(g, g, g)\n"
        "ct(np.ones((2, 3)) / 2)\n"
        "c.direct_potential(np.zeros((1, 3)), [1.0], np.ones((2, 3)))\n"
        "n.nc_metrics(np.eye(4), [0, 1, 0, 1])\n"
        "assert 'dask' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=sci.__path__[0] + "/..")


def test_is_dask_array():
    assert is_dask_array(da.zeros(3))
    assert not is_dask_array(np.zeros(3))
    assert not is_dask_array([1.0, 2.0])
    assert not is_dask_array(dask.delayed(np.zeros)(3))  # a Delayed is not an array


@pytest.mark.parametrize("name", [b for b in ("numpy", "numba") if b in sci.available_backends()])
def test_tasks_run_under_the_backend_of_the_caller(name):
    # contextvars do not follow Dask's worker threads: the backend is captured at build time
    x = da.zeros(4, chunks=1)
    with sci.use_backend(name):
        backend = task_backend(x)
        seen = x.map_blocks(in_backend(lambda b: np.full(b.shape, sci.get_backend() == name),
                                       backend), dtype=bool)
    assert bool(seen.compute().all())


def test_cupy_blocks_under_a_cpu_backend_are_refused():
    class FakeCupy:  # stands for a cupy.ndarray meta (no GPU here)
        __module__ = "cupy._core.core"

    class FakeDask:
        __module__ = "dask.array.core"
        _meta = FakeCupy()
        chunks = ((1,),)
        __dask_graph__ = dict

    with sci.use_backend("numpy"), pytest.raises(TypeError, match="CuPy blocks"):
        task_backend(FakeDask())


def test_each_backend_blocks_and_values(backend, backend_xp, to_numpy):
    # NumPy blocks under any backend: tasks run under it (CuPy: blocks moved to the device,
    # results CuPy blocks, as the meta says); values as the eager path of the same backend
    ct = ChebTucker.from_function(lambda x, y, z: np.sin(x + 2 * y) * np.cos(z), domain=(-1, 1),
                                  degree=12, tol=1e-12)
    g = np.linspace(-1, 1, 10)
    lazy = ct.on_grid(g, g, g, chunks=4)
    assert type(lazy._meta).__module__.split(".")[0] == backend_xp.__name__
    gx = backend_xp.asarray(g)
    expected = to_numpy(ct.on_grid(gx, gx, gx))
    np.testing.assert_allclose(to_numpy(lazy.compute()), expected, rtol=0, atol=1e-14 * 3)
    rng = np.random.default_rng(5)
    pos, q, tgt = rng.uniform(-1, 1, (50, 3)), rng.standard_normal(50), rng.uniform(-1, 1, (90, 3))
    potential = direct_potential(da.from_array(pos, chunks=(20, 3)), q,
                                 da.from_array(tgt, chunks=(40, 3)))
    np.testing.assert_allclose(to_numpy(potential.compute()),
                               to_numpy(direct_potential(pos, q, tgt)), rtol=1e-12)
    H, labels = _features(rng, K=3, d=4, N=500)
    got = nc_metrics(da.from_array(H, chunks=(128, 4)), labels)
    assert got.nc1 == pytest.approx(nc_metrics(H, labels).nc1, rel=1e-10)


@pytest.mark.gpu
def test_cupy_blocks_under_cupy():
    import cupy

    with sci.use_backend("cupy"):
        ct = ChebTucker.from_function(lambda x, y, z: x * y + z, domain=(0, 1), degree=4,
                                      tol=1e-12)
        g = cupy.linspace(0, 1, 9)
        lazy = ct.on_grid(da.from_array(g, chunks=4), g, g)
        assert isinstance(lazy._meta, cupy.ndarray)
        values = lazy.compute()
        assert isinstance(values, cupy.ndarray)
        cupy.testing.assert_allclose(values, ct.on_grid(g, g, g), rtol=0, atol=1e-14 * 3)


# -- Chebyshev-Tucker grid export -------------------------------------------------------------


def test_on_grid_dask_blocks_equal_numpy(ct):
    g = np.linspace(-1, 1, 23)
    x, y, z = (da.from_array(g, chunks=c) for c in (7, 10, 23))
    lazy = ct.on_grid(x, y, z)
    assert is_dask_array(lazy)
    assert lazy.chunks == (x.chunks[0], y.chunks[0], z.chunks[0])
    # one task per block in the layer that builds the grid, and no concatenation anywhere
    assert len(lazy.dask.layers[lazy.name]) == math.prod(lazy.numblocks)
    assert not any("concatenate" in name for name in lazy.dask.layers)
    with LargestResult() as cb:
        values = lazy.compute()
    assert cb.tasks >= math.prod(lazy.numblocks)  # the callback saw the block tasks
    assert cb.largest <= _largest_block(lazy)
    expected = ct.on_grid(g, g, g)
    # the same r-term sums per value in another blocking: rounding of the values' size
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-14 * np.abs(expected).max())


def test_on_grid_chunks_keyword_and_laziness(ct):
    g = np.linspace(-1, 1, 12)
    lazy = ct.on_grid(g, g, 3 * g, chunks=(5, 6, 12))  # z outside the box: raised by compute
    assert lazy.chunks == ((5, 5, 2), (6, 6), (12,))
    with pytest.raises(ValueError, match="outside the box"):
        lazy.compute()
    ok = ct.on_grid(g, g, g, chunks=4)
    assert ok.chunks == ((4, 4, 4),) * 3
    np.testing.assert_allclose(ok.compute(), ct.on_grid(g, g, g), rtol=0, atol=1e-14 * 3)


def test_on_grid_auto_chunks_and_pickling(ct):
    g = np.linspace(-1, 1, 40)
    with dask.config.set({"array.chunk-size": "64KiB"}):
        lazy = ct.on_grid(g, g, g, chunks="auto")
    assert 8 * _largest_block(lazy) <= 64 * 1024 and lazy.numblocks != (1, 1, 1)
    # distributed workers receive the graph pickled: every task function must survive it
    cloudpickle = pytest.importorskip("cloudpickle")
    again = pickle.loads(cloudpickle.dumps(lazy))
    np.testing.assert_allclose(again.compute(), ct.on_grid(g, g, g), rtol=0, atol=1e-14 * 3)


def test_on_grid_memory_checked_per_block(ct, monkeypatch):
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    g = np.linspace(-1, 1, 1000)
    with pytest.raises(MemoryLimitError, match="chunks="):
        ct.on_grid(g, g, g)  # 8 GB at once
    lazy = ct.on_grid(g, g, g, chunks=50)  # 1 MB per block is fine; 8 GB never exists
    assert lazy.shape == (1000, 1000, 1000)
    corner = lazy[:50, 100:150, -50:].compute()
    np.testing.assert_allclose(corner, ct.on_grid(g[:50], g[100:150], g[-50:]), rtol=0,
                               atol=1e-14 * 3)
    with pytest.raises(MemoryLimitError, match="largest block"):
        ct.on_grid(g, g, g, chunks=100)  # 8 MB per block


def test_grid_factors_and_to_tucker_dask(ct):
    g = np.linspace(-1, 1, 31)
    x = da.from_array(g, chunks=8)
    factors = ct.grid_factors(x, x, x)
    for k, f in enumerate(factors):
        assert f.chunks == (x.chunks[0], (ct.ranks[k],))
        np.testing.assert_allclose(f.compute(), ct.grid_factors(g, g, g)[k], rtol=0,
                                   atol=1e-14)
    tucker = ct.to_tucker(x, x, x)
    assert all(is_dask_array(u) for u in tucker.factors) and is_dask_array(tucker.core)
    assert [u.chunks[0] for u in tucker.factors] == [x.chunks[0]] * 3
    qs = [u.compute() for u in tucker.factors]
    for q in qs:  # orthonormal columns from the tall-skinny QR
        np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), rtol=0, atol=1e-14)
    full = multi_mode_product(tucker.core.compute(), qs)
    np.testing.assert_allclose(full, ct.on_grid(g, g, g), rtol=0, atol=1e-13)


def test_call_dask_points(ct, rng):
    pts = rng.uniform(-1, 1, (1000, 3))
    lazy = ct(da.from_array(pts, chunks=(300, 2)))
    assert lazy.chunks == ((300, 300, 300, 100),)
    np.testing.assert_allclose(lazy.compute(), ct(pts), rtol=0, atol=1e-14)
    bad = pts.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="points must be finite"):
        ct(da.from_array(bad, chunks=(300, 3))).compute()
    with pytest.raises(ValueError, match=r"\(M, 3\)"):
        ct(da.zeros((4, 2)))


# -- direct potential -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def particles():
    rng = np.random.default_rng(7)
    pos = rng.uniform(-1, 1, (300, 3))
    q = rng.standard_normal(300)
    tgt = rng.uniform(-1.2, 1.2, (700, 3))
    tgt[:10] = pos[:10]  # targets on particles: the self pair is skipped
    return pos, q, tgt


@pytest.mark.parametrize("kernel", ["newton", "long_range", "short_range"])
def test_direct_potential_dask_targets_and_sources(particles, kernel):
    pos, q, tgt = particles
    es = newton_exponential_sum(tol=1e-8, r_min=0.01, r_max=4.0)
    options = {} if kernel == "newton" else {"exponential_sum": es.long_range(len(es) // 2)}
    if kernel == "short_range":
        options["cutoff"] = 0.5
    expected = direct_potential(pos, q, tgt, kernel=kernel, **options)
    # sums of N terms in another order: rounding of sum_j |q_j| |kernel| (bounded by 1/r_min)
    scale = np.abs(q).sum() * 1e3 * np.finfo(float).eps
    targets = da.from_array(tgt, chunks=(200, 3))
    lazy = direct_potential(pos, q, targets, kernel=kernel, **options)
    assert lazy.chunks == (targets.chunks[0],)
    assert len(lazy.dask.layers[lazy.name]) == targets.numblocks[0]
    np.testing.assert_allclose(lazy.compute(), expected, rtol=0, atol=scale)
    sources = da.from_array(pos, chunks=(64, 3))
    lazy = direct_potential(sources, da.from_array(q, chunks=100), targets, kernel=kernel,
                            **options)
    assert lazy.chunks == (targets.chunks[0],)
    with LargestResult() as cb:
        values = lazy.compute()
    # no task ever holds all targets or all sources: at most one block of either
    assert cb.tasks >= targets.numblocks[0] * sources.numblocks[0]
    assert cb.largest <= max(_largest_block(targets), _largest_block(sources))
    np.testing.assert_allclose(values, expected, rtol=0, atol=scale)


def test_direct_potential_dask_errors(particles):
    pos, q, tgt = particles
    with pytest.raises(ValueError, match="charges has 299 entries"):
        direct_potential(da.from_array(pos), q[:-1], tgt)
    with pytest.raises(ValueError, match=r"targets must have shape \(M, 3\)"):
        direct_potential(pos, q, da.zeros((5, 2)))
    with pytest.raises(ValueError, match="exponential_sum"):
        direct_potential(pos, q, da.from_array(tgt), kernel="long_range")
    bad = pos.copy()
    bad[3, 0] = np.inf
    lazy = direct_potential(da.from_array(bad, chunks=(100, 3)), q, tgt)  # lazy: no error yet
    with pytest.raises(ValueError, match="positions must be finite"):
        lazy.compute()


def test_long_range_chebtucker_on_dask_targets_matches_direct(particles):
    # the Chebyshev-Tucker long-range part evaluated block-wise against the direct kernel
    pos, q, _ = particles
    lr = long_range_potential(pos, q, tol=1e-6, cutoff=0.6)
    rng = np.random.default_rng(3)
    tgt = rng.uniform(-0.9, 0.9, (400, 3))
    lazy = lr(da.from_array(tgt, chunks=(100, 3)))
    direct = direct_potential(pos, q, da.from_array(tgt, chunks=(100, 3)), kernel="long_range",
                              exponential_sum=lr.exponential_sum)
    values, reference = dask.compute(lazy, direct)
    # tol of the format, relative to the potential's size (as tests/chebyshev_tucker do)
    assert np.abs(values - reference).max() <= 1e-5 * np.abs(reference).max()


def test_range_separated_potential_on_dask_targets(particles):
    pos, q, _ = particles
    potential = RangeSeparatedPotential(pos, q, tol=1e-6, degree=40)
    tgt = np.random.default_rng(4).uniform(-1, 1, (300, 3))
    lazy = potential(da.from_array(tgt, chunks=(128, 3)))
    assert lazy.chunks == ((128, 128, 44),)
    # the same evaluation per block: rounding of the potential's size
    expected = potential(tgt)
    np.testing.assert_allclose(lazy.compute(), expected, rtol=0,
                               atol=1e-13 * np.abs(expected).max())


# -- nc_metrics -------------------------------------------------------------------------------


def _features(rng, K=5, d=8, N=3000, noise=0.3, offset=100.0, sort=False):
    labels = rng.integers(0, K, N)
    if sort:
        labels = np.sort(labels)  # chunks that miss classes
    H = 5.0 * simplex_etf(K, d)[labels] + noise * rng.standard_normal((N, d)) + offset
    return H, labels


def _assert_same_metrics(got, expected, rtol):
    for f in dataclasses.fields(expected):
        a, b = getattr(expected, f.name), getattr(got, f.name)
        if a is None:
            assert b is None, f.name
        elif isinstance(a, float):
            assert b == pytest.approx(a, rel=rtol, abs=1e-300), f.name
        else:
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=rtol,
                                       atol=rtol * np.abs(np.asarray(a)).max(), err_msg=f.name)


@pytest.mark.parametrize("sort", [False, True])
def test_nc_metrics_dask_equals_numpy(rng, sort):
    H, labels = _features(rng, sort=sort)
    W = simplex_etf(5, 8) + 0.1 * rng.standard_normal((5, 8))
    b = 0.1 * rng.standard_normal(5)
    expected = nc_metrics(H, labels, W=W, b=b)
    features = da.from_array(H, chunks=(400, 3))  # split along d too: rechunked to rows
    with LargestResult() as cb:
        got = nc_metrics(features, da.from_array(labels, chunks=250), W=W, b=b)
    # per-chunk statistics merged in another order than the stream: rounding, amplified by
    # the conditioning of Sigma_B (a few units) in nc1; nc4 counts are exact
    _assert_same_metrics(got, expected, rtol=1e-10)
    assert got.nc4 == expected.nc4
    assert cb.tasks >= 2 * features.numblocks[0]  # statistics and NC4 passes
    assert cb.largest <= 400 * 8  # one row block of H at most (rechunked: 400 x 8)


def test_nc_metrics_dask_collapsed_features_match_the_two_pass_oracle(rng):
    # within-class spread 1e-7 on means of size 1e4: a one-pass formula without shifts
    # cancels completely; the per-chunk shifts and the merge keep ~1e-7 relative accuracy
    H, labels = _features(rng, noise=1e-7, offset=1e4, N=2000)
    got = nc_metrics(da.from_array(H, chunks=(300, 8)), labels)
    means = np.array([H[labels == c].mean(axis=0) for c in range(5)])
    centred = H - means[labels]
    oracle = centred.T @ centred / H.shape[0]
    # the samples' rounding (eps * 1e4 = 2e-12) relative to the spread 1e-7: ~2e-5
    np.testing.assert_allclose(got.within_class_covariance, oracle, rtol=0,
                               atol=1e-4 * np.abs(oracle).max())
    assert got.nc1 == pytest.approx(nc_metrics(H, labels).nc1, rel=1e-4)


@given(st.lists(st.integers(1, 400), min_size=1, max_size=6))
def test_nc_metrics_any_chunking(sizes):
    rng = np.random.default_rng(len(sizes))
    N = sum(sizes)
    H, labels = _features(rng, K=3, d=4, N=N + 6)
    labels[:6] = [0, 1, 2, 0, 1, 2]  # every class present
    sizes = [6 + sizes[0]] + sizes[1:]
    got = nc_metrics(da.from_array(H, chunks=(tuple(sizes), 4)), labels)
    _assert_same_metrics(got, nc_metrics(H, labels), rtol=1e-9)


def test_nc_metrics_dask_bad_input(rng):
    H, labels = _features(rng, N=600)
    features = da.from_array(H, chunks=(200, 8))
    with pytest.raises(ValueError, match="same length"):
        nc_metrics(features, labels[:-1])
    with pytest.raises(ValueError, match="same length"):
        nc_metrics(features, da.from_array(labels[:-1], chunks=100))
    # labels chunked differently from H's rows are rechunked (cheap: N integers)
    _assert_same_metrics(nc_metrics(features, da.from_array(labels, chunks=77)),
                         nc_metrics(H, labels), rtol=1e-10)
    bad = H.copy()
    bad[450, 2] = np.nan
    with pytest.raises(ValueError, match="H must be finite"):
        nc_metrics(da.from_array(bad, chunks=(200, 8)), labels)
    with pytest.raises(ValueError, match="class indices in 0..3"):
        nc_metrics(features, labels, num_classes=4)
    missing = np.where(labels == 2, 1, labels)
    with pytest.raises(ValueError, match=r"classes \[2\] have none"):
        nc_metrics(features, missing)
    with pytest.raises(ValueError, match="labels are required"):
        nc_metrics(features)
    with pytest.raises(TypeError, match="labels must be integers"):
        nc_metrics(features, da.from_array(labels + 0.5, chunks=200))

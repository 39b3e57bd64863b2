"""Host/device discipline of sci.chebyshev_tucker on the strict leg (issue 13).

``array_api_strict`` on ``Device("device1")`` refuses to combine its arrays with arrays on the
default device and to convert them to NumPy implicitly, as CuPy does on a GPU: a host constant
mixed into a computation fails here on a machine without a GPU. The reads back to the host are
counted, and must not grow with the number of blocks a call works through.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sci.chebyshev_tucker import (
    ChebTucker,
    IllConditionedFitWarning,
    RangeSeparatedPotential,
    long_range_potential,
    reduced_hosvd,
)

strict = pytest.importorskip("array_api_strict")
DEVICE = strict.Device("device1")


def _on(a, dtype=None):
    return strict.asarray(np.asarray(a), dtype=dtype, device=DEVICE)


def test_the_strict_leg_refuses_host_arrays_mixed_in():
    # the guard the other tests rely on: if this ever passes silently, they prove nothing
    with pytest.raises(ValueError, match="different devices"):
        _on([1.0]) + strict.asarray([1.0])
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        np.asarray(_on([1.0]))


def _cp(rng, terms=5):
    return (rng.uniform(0.5, 1.5, terms),
            [rng.standard_normal((n, terms)) for n in (8, 9, 10)])


def test_every_ported_construction_stays_on_device1(rng):
    """Any host array mixed into these computations raises on device1."""
    weights, factors = _cp(rng)
    t = reduced_hosvd(_on(weights), [_on(f) for f in factors], tol=1e-10, chunk=2)
    assert t.core.device == DEVICE and all(u.device == DEVICE for u in t.factors)
    x = -1 + (np.arange(30) + 0.5) / 15
    cols = np.exp(-np.subtract.outer(x, [0.0, 0.4]) ** 2)
    for fit in ("floater-hormann", "least-squares"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IllConditionedFitWarning)
            ct = ChebTucker.from_cp(_on([1.0, -1.0]), [_on(cols)] * 3, domain=(-1, 1),
                                    degree=12, tol=1e-8, grid=(_on(x),) * 3, fit=fit)
        assert ct.core.device == DEVICE
    ct = ChebTucker.from_function(lambda a, b, c: strict.sin(a) * b + c, domain=(-1, 1),
                                  degree=6, tol=1e-10, xp=strict, device=DEVICE)
    assert ct.core.device == DEVICE
    pos = rng.uniform(-1, 1, (6, 3))
    v = long_range_potential(_on(pos), _on(rng.choice([-1.0, 1.0], 6)), tol=1e-6, degree=16)
    assert v.core.device == DEVICE
    rs = RangeSeparatedPotential(_on(pos), _on(np.ones(6)), tol=1e-6, degree=16)
    assert rs(_on([[0.1, 0.2, 0.3]])).device == DEVICE


class _Reads:
    """Counts the reads of device1 values on the host: conversions to Python numbers and
    copies to the CPU device (sci.backend.to_numpy goes through the latter)."""

    def __init__(self, monkeypatch):
        self.count = 0
        array = type(strict.ones(1))
        for name in ("__bool__", "__float__", "__int__", "__index__"):
            original = getattr(array, name)
            monkeypatch.setattr(array, name, self._counted(original))
        original_to_device = array.to_device

        def to_device(x, device, /, stream=None):
            if x.device == DEVICE and device != DEVICE:
                self.count += 1
            return original_to_device(x, device, stream=stream)

        monkeypatch.setattr(array, "to_device", to_device)

    def _counted(self, original):
        def wrapper(x):
            if x.device == DEVICE:
                self.count += 1
            return original(x)

        return wrapper


def test_reduced_hosvd_reads_do_not_grow_with_the_blocks(rng, monkeypatch):
    weights, factors = _cp(rng, terms=24)
    args = (_on(weights), [_on(f) for f in factors])
    reads = _Reads(monkeypatch)
    counts = []
    for chunk in (24, 5, 1):  # 1, 5 and 24 blocks
        reads.count = 0
        reduced_hosvd(*args, tol=1e-10, chunk=chunk)
        counts.append(reads.count)
    assert counts[0] == counts[1] == counts[2]
    # finiteness of the inputs (one per argument), the norm and spectra (one), one norm per
    # refinement pass, and the HOSVD of the small core
    assert counts[0] <= 16


def test_long_range_build_reads_and_conversions_do_not_grow_with_the_blocks(monkeypatch):
    from sci.backend import ArrayContext
    from sci.chebyshev_tucker._newton import _long_range_tucker, newton_exponential_sum

    rng = np.random.default_rng(5)
    pos, q = _on(rng.uniform(-1, 1, (40, 3))), _on(rng.choice([-1.0, 1.0], 40))
    long_sum = newton_exponential_sum(tol=1e-6, r_min=1e-5, r_max=7.0).long_range(4)
    ctx = ArrayContext(strict, DEVICE, "array")
    box = ((-1.5, 1.5),) * 3
    reads = _Reads(monkeypatch)
    conversions = []
    original = ArrayContext.asarray

    def counted(self, x, dtype=None):
        conversions[-1] += 1
        return original(self, x, dtype)

    monkeypatch.setattr(ArrayContext, "asarray", counted)
    counts = []
    for chunk in (4 * 40, 4 * 7, 4):  # 1, 6 and 40 blocks of particles
        reads.count = 0
        conversions.append(0)
        _long_range_tucker(pos, q, long_sum, box, 16, 1e-6, ctx, chunk=chunk)
        counts.append(reads.count)
    assert counts[0] == counts[1] == counts[2], counts
    # the Lobatto points, exponents, weights and DCT scales: converted once (cached
    # constants: the first call converts them, the later ones find them), never once per block
    assert conversions[1] == conversions[2] <= conversions[0], conversions


def test_floater_hormann_fit_reads_once_per_call(monkeypatch):
    """The grids, the column scales and the estimates of every blending degree of every
    mode: three reads, whatever the number of degrees tried; NaN anywhere is still found."""
    from sci.chebyshev_tucker import _cp_fit

    x = -1 + (np.arange(60) + 0.5) / 30
    cols = np.exp(-3 * np.subtract.outer(x, [0.0, 0.4]) ** 2)
    reads = _Reads(monkeypatch)
    ctx = _cp_fit.cp_context(_on([1.0, -1.0]), [_on(cols)] * 3, (_on(x),) * 3)
    reads.count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedFitWarning)
        for bad_grid, bad_cols, name in (((np.r_[x[:-1], np.nan],) + (x,) * 2, cols, "grid"),
                                         ((x,) * 3, np.r_[cols[:-1], [[np.inf, 0]]],
                                          "factors")):
            with pytest.raises(ValueError, match=f"{name}\\[0\\] must be finite"):
                ChebTucker.from_cp(_on([1.0, -1.0]), [_on(bad_cols), _on(cols), _on(cols)],
                                   domain=(-1, 1), degree=20, tol=1e-8,
                                   grid=[_on(g) for g in bad_grid])
        reads.count = 0
        fitted = _cp_fit.coefficient_factors(
            _on([1.0, -1.0]), [_on(cols)] * 3, grid=(_on(x),) * 3, box=((-1.0, 1.0),) * 3,
            degree=20, tol=1e-8, fit="floater-hormann", blending_degree=None, ctx=ctx)
    assert all(f.device == DEVICE for f in fitted.factors)
    # + the finiteness check of the weights and samples, together (the grids' is on the host)
    assert reads.count == 3 + 1, reads.count


def test_hosvd_reads_once_and_hooi_once_per_sweep(rng, monkeypatch):
    from sci.chebyshev_tucker import hooi, hosvd

    t = _on(rng.standard_normal((6, 7, 8)))
    reads = _Reads(monkeypatch)
    hosvd(t, tol=1e-3)
    assert reads.count == 2  # the finiteness check, then the norm and three spectra together
    counts = []
    for sweeps in (1, 4):
        reads.count = 0
        hooi(t, 2, tol=1e-300, max_iterations=sweeps)  # tol unreachable: every sweep runs
        counts.append(reads.count)
    assert counts[1] - counts[0] == 3  # one read per further sweep


def test_evaluation_reads_once_per_call(monkeypatch):
    ct = ChebTucker.from_function(lambda a, b, c: strict.cos(a * b) + c, domain=(-1, 1),
                                  degree=8, tol=1e-12, xp=strict, device=DEVICE)
    pts = _on(np.random.default_rng(2).uniform(-1, 1, (50, 3)))
    g = _on(np.linspace(-1, 1, 5))
    reads = _Reads(monkeypatch)
    for chunk in (50, 7, 1):
        reads.count = 0
        ct(pts, chunk=chunk)
        assert reads.count == 1  # finiteness and the box together, whatever the blocks
    reads.count = 0
    ct.on_grid(g, g, g)
    assert reads.count == 1
    for bad, name in ((np.nan, "points"), (np.inf, "points")):
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            ct(_on([[0.0, bad, 0.0]]))
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            ct(_on([[0.0, bad, 0.0]]), extrapolate=True)
    with pytest.raises(ValueError, match="y must be finite"):
        ct.on_grid(g, _on([0.0, np.nan]), g)
    with pytest.raises(ValueError, match="z has coordinates in .* outside the box"):
        ct.on_grid(g, g, _on([0.0, 2.0]))

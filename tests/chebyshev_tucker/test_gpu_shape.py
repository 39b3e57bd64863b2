"""The GPU-shaped array paths of sci.chebyshev_tucker (issue 18), proven on the CPU legs.

On a GPU every array operation is a kernel launch, so the grid export and the build are
written as a few large operations whose number does not grow with the grid or the particles.
``array_api_strict`` creates every result through ``Array._new``: counting those calls counts
the operations a GPU would launch. The values are checked against NumPy (the reference
implementation) and exact ones (mpmath).
"""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sci.chebyshev_tucker import (
    ChebTucker,
    RangeSeparatedPotential,
    direct_potential,
    newton_exponential_sum,
    reduced_hosvd,
)
from sci.chebyshev_tucker._array import vandermonde
from sci.chebyshev_tucker._tucker import contraction_order, multi_mode_product

strict = pytest.importorskip("array_api_strict")
DEVICE = strict.Device("device1")


def _on(a):
    return strict.asarray(np.asarray(a, dtype=np.float64), device=DEVICE)


def _host(a):
    """A strict array back on the host (the explicit copy), as NumPy."""
    from sci.backend import to_numpy

    return to_numpy(a)


class _Operations:
    """Counts the arrays ``array_api_strict`` creates: one per operation (a launch on a GPU)."""

    def __init__(self, monkeypatch):
        self.count = 0
        array = type(strict.ones(1))
        original = array._new.__func__

        def counted(cls, x, /, device):
            self.count += 1
            return original(cls, x, device=device)

        monkeypatch.setattr(array, "_new", classmethod(counted))


def _exact_chebyshev(t: np.ndarray, degree: int) -> np.ndarray:
    mpmath.mp.dps = 40
    return np.array([[float(mpmath.chebyt(p, mpmath.mpf(float(x)))) for p in range(degree + 1)]
                     for x in t])


@given(degree=st.integers(0, 80), n=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_doubling_vandermonde_matches_exact_values(degree, n, seed):
    """T_{K+j} = 2 T_K T_j - T_{K-j}: the rounding error stays of the three-term recurrence's
    size, which grows like degree^2 eps near the ends of [-1, 1] (at degree 512 both measure
    2-5e-12 against mpmath); here degree^2 * 4 eps bounds it."""
    t = np.random.default_rng(seed).uniform(-1, 1, n)
    t[0] = 1.0 if seed % 2 else -1.0  # the ends, where the error grows fastest
    v = vandermonde(strict, _on(t), degree)
    assert v.shape == (n, degree + 1) and v.device == DEVICE
    exact = _exact_chebyshev(t, degree)
    np.testing.assert_allclose(_host(v), exact, rtol=0,
                               atol=4 * np.finfo(float).eps * max(degree, 1) ** 2)


def test_doubling_vandermonde_takes_log_degree_operations(monkeypatch):
    ops = _Operations(monkeypatch)
    counts = {}
    for degree in (8, 16, 32, 64, 128):
        t = _on(np.linspace(-1, 1, 7))
        ops.count = 0
        vandermonde(strict, t, degree)
        counts[degree] = ops.count
    # each doubling step is the same handful of operations (ten here, where the four slices
    # count as results; on a GPU they are views, not launches)
    steps = {d: math.ceil(math.log2(d)) for d in counts}
    per_step = {(counts[d] - counts[8]) / (steps[d] - steps[8]) for d in (16, 32, 64, 128)}
    assert len(per_step) == 1 and per_step.pop() <= 10, counts


def _ct(rng, ranks=(3, 4, 2), degrees=(9, 7, 11)):
    core = rng.standard_normal(ranks)
    factors = [np.linalg.qr(rng.standard_normal((m + 1, r)))[0]
               for m, r in zip(degrees, ranks, strict=True)]
    return ChebTucker(core, factors, domain=((-1.0, 2.0), (0.0, 1.0), (-3.0, -2.0)))


def test_grid_export_operations_do_not_grow_with_the_grid(monkeypatch, rng):
    ct = _ct(rng).to(strict, DEVICE)
    ops = _Operations(monkeypatch)
    counts = []
    for n in (2, 17, 64):
        grid = [_on(np.linspace(a, b, n + k)) for k, (a, b) in enumerate(ct.domain)]
        ops.count = 0
        ct.on_grid(*grid)
        counts.append(ops.count)
    assert counts[0] == counts[1] == counts[2], counts
    # the validation and the box check (about 30), one Chebyshev matrix for the three modes
    # (four doublings of ten, slices included), three slices and products for the factors
    # and three products for the grid: not one operation per degree (the three-term
    # recurrence took about four per degree and mode) nor per grid point
    assert counts[0] <= 100, counts


@given(n=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
       seed=st.integers(0, 2**32 - 1))
def test_grid_export_on_strict_and_torch_matches_numpy(n, seed):
    rng = np.random.default_rng(seed)
    ct = _ct(rng)
    grid = [np.sort(rng.uniform(a, b, size)) for (a, b), size in zip(ct.domain, n, strict=True)]
    expected = ct.on_grid(*grid)
    legs = [(strict, DEVICE, _on)]
    try:
        import torch

        legs.append((torch, "cpu", torch.asarray))
    except ImportError:
        pass
    for xp, device, place in legs:
        out = ct.to(xp, device).on_grid(*(place(g) for g in grid))
        np.testing.assert_allclose(_host(out), expected, rtol=0,
                                   atol=1e-13 * max(1.0, float(np.max(np.abs(expected)))))


@given(ranks=st.tuples(*[st.integers(1, 6)] * 3), sizes=st.tuples(*[st.integers(1, 12)] * 3),
       transpose=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_mode_products_in_the_cheapest_order_match_einsum(ranks, sizes, transpose, seed):
    rng = np.random.default_rng(seed)
    core = rng.standard_normal(ranks)
    factors = [rng.standard_normal((n, r)) for n, r in zip(sizes, ranks, strict=True)]
    expected = np.einsum("abc,ia,jb,kc->ijk", core, *factors)
    if transpose:  # the projection of the full tensor onto the factors
        core = expected
        expected = np.einsum("ijk,ia,jb,kc->abc", core, *factors)
    for place in (np.asarray, _on):
        out = multi_mode_product(place(core), [place(u) for u in factors], transpose=transpose)
        out = _host(out) if place is _on else out
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        assert out.flags.c_contiguous


def test_contraction_order_is_the_cheapest():
    def cost(order, ranks, sizes):
        shape, total = list(ranks), 0
        for mode in order:
            total += sizes[mode] * math.prod(shape)
            shape[mode] = sizes[mode]
        return total

    rng = np.random.default_rng(3)
    for _ in range(50):
        ranks = tuple(rng.integers(1, 40, 3))
        sizes = tuple(rng.integers(1, 300, 3))
        best = min(cost(o, ranks, sizes) for o in itertools.permutations(range(3)))
        assert cost(contraction_order(ranks, sizes), ranks, sizes) == best
    # a grid export puts the mode of least rank last
    assert contraction_order((31, 35, 35), (256, 256, 256))[-1] == 0
    assert contraction_order((35, 35, 20), (256, 256, 256))[-1] == 2


def test_stacked_blocks_give_the_tucker_tensor_of_separate_ones(rng):
    """The long-range build hands the reduced HOSVD the three modes stacked (batched norms,
    QR and SVD); the result is the one of the same columns given mode by mode."""
    from sci.backend import ArrayContext
    from sci.chebyshev_tucker._tucker import reduced_hosvd_blocks

    total, m = 40, 9
    cols = rng.standard_normal((3, m, total)) * np.exp(-np.arange(m))[None, :, None]
    lam = rng.uniform(0.5, 1.5, total)
    reference = reduced_hosvd(lam, list(cols), tol=1e-10)
    ctx = ArrayContext(strict, DEVICE, "array")
    stacked = _on(cols)
    for chunk in (total, 7):
        t = reduced_hosvd_blocks(_on(lam), lambda sl: stacked[:, :, sl], total, tol=1e-10,
                                 chunk=chunk, ctx=ctx)
        assert t.ranks == reference.ranks
        full = _host(t.to_full())
        np.testing.assert_allclose(full, reference.to_full(), atol=1e-12)


def test_long_range_build_operations_do_not_grow_with_the_particles(monkeypatch):
    """One block of CP columns (the three modes at once): the build's operations are the
    same for 10 and 40 particles."""
    from sci.backend import ArrayContext
    from sci.chebyshev_tucker._newton import _long_range_tucker

    rng = np.random.default_rng(5)
    long_sum = newton_exponential_sum(tol=1e-6, r_min=1e-5, r_max=7.0).long_range(4)
    ctx = ArrayContext(strict, DEVICE, "array")
    box = ((-1.5, 1.5),) * 3
    ops = _Operations(monkeypatch)
    counts = []
    for n in (10, 40, 40):
        pos, q = _on(rng.uniform(-1, 1, (n, 3))), _on(np.ones(n))
        ops.count = 0
        _long_range_tucker(pos, q, long_sum, box, 16, 1e-6, ctx)
        counts.append(ops.count)
    # the same constants and ranks (all charges positive: rank-1-like) whatever n; the first
    # call also converted the cached constants
    assert counts[1] == counts[2] <= counts[0] <= 200, counts


def test_exponential_sum_search_is_cached_and_its_results_independent():
    first = newton_exponential_sum(tol=1e-7, r_min=1e-6, r_max=1.0)
    scaled = newton_exponential_sum(tol=1e-7, r_min=2e-6, r_max=2.0)  # the same unit search
    np.testing.assert_array_equal(scaled.weights, first.weights / 2.0)
    np.testing.assert_array_equal(scaled.exponents, first.exponents / 2.0)
    first.weights[0] = 0.0  # a user's edit of one result leaves the next untouched
    again = newton_exponential_sum(tol=1e-7, r_min=1e-6, r_max=1.0)
    assert again.weights[0] != 0.0


def test_direct_sum_checks_all_inputs_in_one_read_and_names_them():
    x, q, t = _on(np.zeros((2, 3))), _on([1.0, -1.0]), _on([[1.0, 1.0, 1.0]])
    bad = _on([[np.nan, 0.0, 0.0], [1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="positions must be finite"):
        direct_potential(bad, q, t)
    with pytest.raises(ValueError, match="charges must be finite"):
        direct_potential(x, _on([1.0, np.inf]), t)
    with pytest.raises(ValueError, match="targets must be finite"):
        direct_potential(x, q, _on([[np.nan, 0.0, 0.0]]))


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_direct_sum_blocks_agree(chunk, rng):
    x, q = rng.uniform(-1, 1, (20, 3)), rng.choice([-1.0, 1.0], 20)
    t = rng.uniform(-1, 1, (7, 3))
    expected = direct_potential(x, q, t)
    out = direct_potential(_on(x), _on(q), _on(t), chunk=chunk)
    np.testing.assert_allclose(_host(out), expected, rtol=1e-13)


def test_protein_build_on_strict_matches_numpy(dataset):
    """The protein's long-range tensor built on the strict leg (one stacked block per pass)
    agrees with the NumPy build on a grid."""
    from sci.chebyshev_tucker import read_pqr

    x, q, _ = read_pqr(dataset("proteins/adk_open.pqr"))
    sub = slice(0, 300)
    ref = RangeSeparatedPotential(x[sub], q[sub], tol=1e-6, degree=24)
    leg = RangeSeparatedPotential(_on(x[sub]), _on(q[sub]), tol=1e-6, degree=24)
    grid = [np.linspace(lo + 1, hi - 1, 6) for lo, hi in ref.domain]
    expected = ref.long_range.on_grid(*grid)
    out = leg.long_range.on_grid(*(_on(g) for g in grid))
    np.testing.assert_allclose(_host(out), expected,
                               atol=1e-9 * np.max(np.abs(expected)))


def test_potential_build_reads_finiteness_with_the_bounds():
    x = np.random.default_rng(4).uniform(-1, 1, (5, 3))
    q = np.ones(5)
    bad_x = x.copy()
    bad_x[2, 1] = np.nan
    with pytest.raises(ValueError, match="positions must be finite"):
        RangeSeparatedPotential(_on(bad_x), _on(q), tol=1e-6, degree=16)
    for value in (np.inf, np.nan):
        bad_q = q.copy()
        bad_q[3] = value
        with pytest.raises(ValueError, match="charges must be finite"):
            RangeSeparatedPotential(_on(x), _on(bad_q), tol=1e-6, degree=16)
    v = RangeSeparatedPotential(_on(x), _on(q), tol=1e-6, degree=16)
    assert v.long_range.core.device == DEVICE


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["newton", "long_range", "short_range"])
def test_tiled_cuda_direct_kernel_matches_numpy_across_tiles(kernel):
    """Sources over three tiles of 128 (the last partial) and targets over three blocks of
    threads (the last partial): the shared-memory kernel against the NumPy blocks."""
    cupy = pytest.importorskip("cupy")
    import sci

    rng = np.random.default_rng(7)
    x, q, t = rng.uniform(-1, 1, (300, 3)), rng.standard_normal(300), rng.uniform(-1, 1, (257, 3))
    t[:3] = x[:3]  # coincident points: the skipped pair and the self term
    s = newton_exponential_sum(tol=1e-6, r_min=1e-3, r_max=4.0).long_range(8)
    options = dict(kernel=kernel, exponential_sum=s, cutoff=0.7)
    with sci.use_backend("numpy"):
        expected = direct_potential(x, q, t, **options)
    out = direct_potential(cupy.asarray(x), cupy.asarray(q), cupy.asarray(t), **options)
    np.testing.assert_allclose(cupy.asnumpy(out), expected, rtol=1e-12, atol=1e-12)

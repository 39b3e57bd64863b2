"""ChebTucker.from_cp on grid samples: the Floater-Hormann fit, its error estimate, bad input."""

import math
import warnings

import numpy as np
import pytest
import scipy.interpolate
from hypothesis import given, settings
from hypothesis import strategies as st

import sci
from sci.chebyshev_tucker import ChebTucker, IllConditionedFitWarning
from sci.chebyshev_tucker._chebyshev import degree_for_gaussian
from sci.chebyshev_tucker._fit import fh_matrix, floater_hormann_weights


def _cell_centred(n, a=-1.0, b=1.0):
    return a + (np.arange(n) + 0.5) * (b - a) / n


def _gaussians(t, centres):
    return lambda x: np.exp(-t**2 * np.subtract.outer(np.asarray(x), centres) ** 2)


@pytest.mark.parametrize("d", [0, 1, 2, 3, 5])
def test_interpolant_matches_scipy(d, rng):
    """Same interpolant as SciPy's independent implementation (nonuniform nodes)."""
    fh = getattr(scipy.interpolate, "FloaterHormannInterpolator", None)
    if fh is None:
        pytest.skip("scipy.interpolate.FloaterHormannInterpolator needs SciPy >= 1.13")
    # Jittered nodes (spacing within a factor 4): a modest Lebesgue constant, so the two
    # implementations' rounding differs by a few ulps times it (random nodes with tiny gaps
    # differ by ~1e-11 relative: seen).
    x = np.linspace(-1, 2, 40) + rng.uniform(-0.3, 0.3, 40) * 3 / 39
    y = np.cos(3 * x) + x**2
    t = rng.uniform(-1, 2, 300)
    ours = fh_matrix(x, t, d) @ y
    np.testing.assert_allclose(ours, fh(x, y, d=d)(t), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("d", [0, 1, 3, 6])
def test_equispaced_weights_are_binomial_sums(d):
    """Floater & Hormann (2007), eq. (20): on equispaced nodes |w_k| is proportional to
    sum_{i in J_k} binom(d, k - i), with alternating signs."""
    n = 17
    w = floater_hormann_weights(np.linspace(0, 3, n), d)
    ref = np.array([sum(math.comb(d, k - i) for i in range(max(0, k - d), min(k, n - 1 - d) + 1))
                    for k in range(n)], float)
    signs = (-1.0) ** (np.arange(n) - d)
    np.testing.assert_allclose(w * math.factorial(d), signs * ref, rtol=1e-13)


@pytest.mark.parametrize("d", [0, 2, 4])
def test_reproduces_polynomials_of_the_blending_degree(d, rng):
    x = np.sort(rng.uniform(-1, 1, 30))
    coef = rng.standard_normal(d + 1)
    t = rng.uniform(-1, 1, 200)
    np.testing.assert_allclose(fh_matrix(x, t, d) @ np.polyval(coef, x), np.polyval(coef, t),
                               atol=1e-12)


def _offgrid_error(ct, f, weights, box, rng, samples=2000):
    pts = np.stack([rng.uniform(*box, samples) for _ in range(3)], axis=1)
    ref = (f(pts[:, 0]) * f(pts[:, 1]) * f(pts[:, 2])) @ weights
    return float(np.max(np.abs(ct(pts) - ref)) / np.max(np.abs(ref)))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(48, 400), a=st.floats(-3, 1), length=st.floats(0.5, 4),
       resolution=st.floats(0.02, 0.08), seed=st.integers(0, 2**16))
def test_accurate_between_grid_points(n, a, length, resolution, seed):
    """Gaussian columns resolved by the grid (t h <= 0.08, where FH with d ~ 8 is accurate to
    ~1e-11): the tensor is accurate at random points of the box, not only on the grid, and the
    error estimate is not an underestimate (by more than 10x)."""
    rng = np.random.default_rng(seed)
    box = (a, a + length)
    h = length / n
    t = max(resolution / h, 1.0 / length)
    f = _gaussians(t, rng.uniform(box[0] + length / 4, box[1] - length / 4, 2))
    x = _cell_centred(n, *box)
    degree = min(degree_for_gaussian(t, length, 1e-12), 400)
    weights = np.array([1.0, -0.7])
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedFitWarning)
        ct = ChebTucker.from_cp(weights, [f(x)] * 3, domain=box, degree=degree, tol=1e-9,
                                grid=(x, x, x))
    err = _offgrid_error(ct, f, weights, box, rng)
    assert err <= 1e-9
    assert err <= 10 * ct.fit_error_estimate + 3e-12  # 3e-12: the Chebyshev degree's error


def test_gaussian_between_grid_points_where_least_squares_fails():
    """Degree 128 on 256 cell-centred points (the paper's setting): least squares is off by
    ~1e-5 between the grid points (test_format.py); Floater-Hormann is at rounding level."""
    g = _cell_centred(256)
    f = np.exp(-30 * g**2)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedFitWarning)
        ct = ChebTucker.from_cp(np.ones(1), [f, f, f], domain=(-1, 1), degree=128, tol=1e-12,
                                grid=(g, g, g))
    mids = np.concatenate([(g[:-1] + g[1:]) / 2, [-1.0, 1.0]])
    pts = np.stack([mids, np.zeros_like(mids), np.zeros_like(mids)], axis=1)
    # seen 2.9e-15: the fit's error (d = 9) and the Chebyshev error are both at rounding
    assert np.max(np.abs(ct(pts) - np.exp(-30 * mids**2))) < 1e-13
    assert all(3 <= d <= 12 for d in ct.blending_degrees)  # seen 7


@pytest.mark.parametrize("n,tol,seen", [(64, 1e-10, 8.8e-8), (40, 1e-6, 4.8e-6)])
def test_coarse_samples_warn_and_the_estimate_is_close(n, tol, seen, rng):
    """exp(-30 x^2) on 64 or 40 points does not resolve tol between the points: the warning
    fires, and the estimate is within a factor 3 of the measured error (seen 7.8e-8 vs
    8.8e-8, 1.1e-5 vs 4.8e-6)."""
    x = _cell_centred(n)
    f = _gaussians(math.sqrt(30), np.array([0.0, 0.3]))
    weights = np.array([1.0, -0.5])
    with pytest.warns(IllConditionedFitWarning, match="do not resolve the factors"):
        ct = ChebTucker.from_cp(weights, [f(x)] * 3, domain=(-1, 1), degree=60, tol=tol,
                                grid=(x, x, x))
    err = _offgrid_error(ct, f, weights, (-1, 1), rng, samples=3000)
    assert seen / 3 < err < 3 * seen
    assert err / 3 <= ct.fit_error_estimate <= 3 * err


@pytest.mark.parametrize("n,seen", [(3, 0.44), (5, 0.17), (8, 1.6e-3), (12, 5.6e-5)])
def test_few_grid_points_are_not_passed_off_as_exact(n, seen, rng):
    """On equispaced grids the interpolants of blending degrees n - 2 and n - 1 coincide
    (proportional weights); comparing them estimated 0 error for n <= 22 and hid errors of
    up to 0.8. exp and cos(3x) on n points: the warning fires, and the estimate is at least a
    fifth of the measured error and at most ten times it (it compares interpolants at the
    Lobatto points only; seen 0.51 vs 0.44, 0.047 vs 0.17, 5.5e-3 vs 0.85e-3 .. 1.6e-3,
    1.5e-5 vs 5.6e-5)."""
    x = _cell_centred(n)

    def f(t):
        return np.stack([np.exp(t), np.cos(3 * t)], axis=-1)

    weights = np.array([1.0, -2.0])
    with pytest.warns(IllConditionedFitWarning, match="do not resolve the factors"):
        ct = ChebTucker.from_cp(weights, [f(x)] * 3, domain=(-1, 1), degree=20, tol=1e-6,
                                grid=(x, x, x))
    err = _offgrid_error(ct, f, weights, (-1, 1), rng, samples=2000)
    assert seen / 3 < err < 3 * seen
    assert err / 5 <= ct.fit_error_estimate <= 10 * err


def test_two_grid_points_cannot_be_checked():
    x = _cell_centred(2)
    with pytest.warns(IllConditionedFitWarning, match="cannot be checked"):
        ct = ChebTucker.from_cp([1.0], [np.exp(x)[:, None]] * 3, domain=(-1, 1), degree=4,
                                tol=1e-6, grid=(x, x, x))
    assert ct.fit_error_estimate == np.inf


def test_callable_factors_only_estimate_nothing():
    f = _gaussians(1.0, np.array([0.0]))
    ct = ChebTucker.from_cp([1.0], [f] * 3, domain=(-1, 1), degree=20, tol=1e-10,
                            grid=(None, None, None))
    assert np.isnan(ct.fit_error_estimate)


def test_fixed_blending_degree_and_least_squares_option(rng):
    x = _cell_centred(120)
    f = _gaussians(2.0, np.array([0.1]))
    ct = ChebTucker.from_cp([1.0], [f(x)] * 3, domain=(-1, 1), degree=40, tol=1e-10,
                            grid=(x, x, x), blending_degree=5)
    assert ct.blending_degrees == (5, 5, 5)
    assert np.isnan(ct.fit_error_estimate)
    fixed = _offgrid_error(ct, f, np.ones(1), (-1, 1), rng)
    assert fixed < 1e-8  # d = 5, t h = 0.033: seen 2.7e-9
    auto = ChebTucker.from_cp([1.0], [f(x)] * 3, domain=(-1, 1), degree=40, tol=1e-10,
                              grid=(x, x, x))
    assert _offgrid_error(auto, f, np.ones(1), (-1, 1), rng) < fixed / 10
    ls = ChebTucker.from_cp([1.0], [f(x)] * 3, domain=(-1, 1), degree=40, tol=1e-10,
                            grid=(x, x, x), fit="least-squares")
    assert ls.blending_degrees is None
    assert _offgrid_error(ls, f, np.ones(1), (-1, 1), rng) < 1e-9


def test_callable_factors_mix_with_grid_samples(rng):
    """A callable factor is sampled at the Lobatto points, the others interpolated."""
    x = _cell_centred(150)
    f = _gaussians(2.5, np.array([-0.2, 0.4]))
    weights = np.array([1.0, 0.5])
    ct = ChebTucker.from_cp(weights, [f, f(x), f(x)], domain=(-1, 1), degree=50, tol=1e-10,
                            grid=(None, x, x))
    assert ct.blending_degrees[0] is None and ct.blending_degrees[1] is not None
    assert _offgrid_error(ct, f, weights, (-1, 1), rng) < 1e-10


def test_grid_fit_agrees_across_backends(backend, to_numpy, rng):
    x = _cell_centred(90, 0.0, 2.0)
    f = _gaussians(3.0, np.array([0.8, 1.2]))
    ct = ChebTucker.from_cp([1.0, 2.0], [f(x)] * 3, domain=(0, 2), degree=40, tol=1e-10,
                            grid=(x, x, x))
    pts = rng.uniform(0, 2, (100, 3))
    ref = (f(pts[:, 0]) * f(pts[:, 1]) * f(pts[:, 2])) @ np.array([1.0, 2.0])
    np.testing.assert_allclose(to_numpy(ct(pts)), ref, atol=1e-8 * np.max(np.abs(ref)))


def test_bad_grid_input():
    x = _cell_centred(50)
    cols = np.exp(-(x**2))[:, None]

    def build(grid=(x, x, x), factors=(cols, cols, cols), **kw):
        kw = {"domain": (-1, 1), "degree": 20, "tol": 1e-8, **kw}
        return ChebTucker.from_cp([1.0], list(factors), grid=grid, **kw)

    with pytest.raises(ValueError, match="strictly increasing"):
        build(grid=(x[::-1], x, x))
    with pytest.raises(ValueError, match="strictly increasing"):
        build(grid=(np.r_[x[:10], x[9], x[11:]], x, x))
    with pytest.raises(ValueError, match="at least 2 points"):
        build(grid=(x[:1], x, x), factors=(cols[:1], cols, cols))
    with pytest.raises(ValueError, match="outside the box"):
        build(grid=(x * 1.1, x, x))
    with pytest.raises(ValueError, match="extrapolate more than one grid step"):
        build(grid=(x, x / 2, x))
    with pytest.raises(ValueError, match="rows but grid\\[2\\] has"):
        build(grid=(x, x, x[:-1]))
    with pytest.raises(ValueError, match="three coordinate vectors"):
        build(grid=(x, x))
    with pytest.raises(ValueError, match="finite"):
        build(grid=(x, np.r_[x[:-1], np.nan], x))
    with pytest.raises(ValueError, match="blending_degree must be at most"):
        build(blending_degree=50)
    with pytest.raises(ValueError, match="blending_degree must be >= 0"):
        build(blending_degree=-1)
    with pytest.raises(ValueError, match="blending_degree applies to grid samples"):
        build(blending_degree=3, fit="least-squares")
    with pytest.raises(ValueError, match="fit must be one of"):
        build(fit="spline")
    with pytest.raises(ValueError, match="degree is required"):
        build(degree=None)
    with pytest.raises(ValueError, match="weights has 2 entries"):
        ChebTucker.from_cp([1.0, 2.0], [cols] * 3, domain=(-1, 1), degree=20, tol=1e-8,
                           grid=(x, x, x))
    with pytest.raises(ValueError, match="least-squares fit of degree 60 needs"):
        build(degree=60, fit="least-squares")
    # Inputs are not modified.
    x0, cols0 = x.copy(), cols.copy()
    build()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(cols, cols0)


def test_memory_is_checked_before_the_evaluation_matrix(monkeypatch):
    from sci._validation import MemoryLimitError

    monkeypatch.setenv("SCI_MEMORY_LIMIT", "2MiB")  # the 21^3 coefficient tensor fits
    x = _cell_centred(20000)
    cols = np.exp(-(x**2))[:, None]
    with pytest.raises(MemoryLimitError, match="Floater-Hormann evaluation of 20000 grid"):
        ChebTucker.from_cp([1.0], [cols] * 3, domain=(-1, 1), degree=20, tol=1e-8,
                           grid=(x, x, x))


# -- the grid fits on the array API (issue 13) ----------------------------------------------


@pytest.mark.parametrize("fit,blending", [("floater-hormann", None), ("floater-hormann", 4),
                                          ("least-squares", None)])
def test_grid_fits_on_every_leg(xp, rng, fit, blending):
    """Oracles: the factor function between the grid points, and the NumPy fit."""
    x = _cell_centred(90, 0.0, 2.0)
    f = _gaussians(3.0, np.array([0.8, 1.2]))
    weights = np.array([1.0, 2.0])
    kw = {"domain": (0, 2), "degree": 40, "tol": 1e-10, "fit": fit}
    if blending is not None:
        kw["blending_degree"] = blending
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedFitWarning)  # d = 4: coarse on purpose
        with sci.use_backend("numpy"):
            expected = ChebTucker.from_cp(weights, [f(x)] * 3, grid=(x, x, x), **kw)
        ct = ChebTucker.from_cp(xp.asarray(weights), [xp.asarray(f(x))] * 3,
                                grid=(xp.asarray(x),) * 3, **kw)
    assert xp.is_leg_array(ct.core) and all(xp.is_leg_array(u) for u in ct.factors)
    assert ct.ranks == expected.ranks
    pts = rng.uniform(0, 2, (100, 3))
    out = ct(xp.asarray(pts))
    assert xp.is_leg_array(out)
    ref = (f(pts[:, 0]) * f(pts[:, 1]) * f(pts[:, 2])) @ weights
    scale = np.max(np.abs(ref))
    np.testing.assert_allclose(xp.to_numpy(out), expected(pts), atol=1e-11 * scale)
    if blending is None:
        np.testing.assert_allclose(xp.to_numpy(out), ref, atol=1e-8 * scale)
    if fit == "floater-hormann" and blending is not None:
        assert ct.blending_degrees == expected.blending_degrees == (4, 4, 4)
        assert np.isnan(ct.fit_error_estimate)


@pytest.mark.parametrize("n,tol", [(40, 1e-6), (8, 1e-6), (2, 1e-6)])
def test_blending_degree_choice_on_every_leg(xp, n, tol):
    """Where the interpolation error dominates rounding (coarse samples), every leg chooses
    the NumPy fit's blending degrees and estimates the same error (the estimates of all the
    degrees come back in one read there; the choice is the NumPy path's early stop)."""
    x = _cell_centred(n)
    f = _gaussians(math.sqrt(30), np.array([0.0, 0.3]))
    weights = np.array([1.0, -0.5])
    with pytest.warns(IllConditionedFitWarning):
        with sci.use_backend("numpy"):
            expected = ChebTucker.from_cp(weights, [f(x)] * 3, domain=(-1, 1), degree=30,
                                          tol=tol, grid=(x, x, x))
    with pytest.warns(IllConditionedFitWarning, match="do not resolve|cannot be checked"):
        ct = ChebTucker.from_cp(xp.asarray(weights), [xp.asarray(f(x))] * 3, domain=(-1, 1),
                                degree=30, tol=tol, grid=(xp.asarray(x),) * 3)
    assert ct.blending_degrees == expected.blending_degrees
    if np.isinf(expected.fit_error_estimate):
        assert np.isinf(ct.fit_error_estimate)
    else:
        assert ct.fit_error_estimate == pytest.approx(expected.fit_error_estimate, rel=1e-6)


def test_least_squares_instability_is_reported_on_every_leg(xp):
    x = np.linspace(-1, 1, 61)
    cols = np.exp(-30 * x**2)[:, None]
    with pytest.warns(IllConditionedFitWarning, match="amplifies errors between the grid"):
        ct = ChebTucker.from_cp(xp.asarray([1.0]), [xp.asarray(cols)] * 3, domain=(-1, 1),
                                degree=60, tol=1e-10, grid=(xp.asarray(x),) * 3,
                                fit="least-squares")
    assert xp.is_leg_array(ct.core)


def test_bad_grid_input_on_every_leg(xp):
    x = _cell_centred(50)
    cols = np.exp(-(x**2))[:, None]

    def build(grid=(x, x, x), factors=(cols, cols, cols), **kw):
        kw = {"domain": (-1, 1), "degree": 20, "tol": 1e-8, **kw}
        return ChebTucker.from_cp(xp.asarray([1.0]), [xp.asarray(f) for f in factors],
                                  grid=[xp.asarray(g) for g in grid], **kw)

    with pytest.raises(ValueError, match="strictly increasing"):
        build(grid=(x[::-1].copy(), x, x))
    with pytest.raises(ValueError, match="outside the box"):
        build(grid=(x * 1.1, x, x))
    with pytest.raises(ValueError, match="rows but grid\\[2\\] has"):
        build(grid=(x, x, x[:-1]))
    with pytest.raises(ValueError, match="finite"):
        build(grid=(x, np.r_[x[:-1], np.nan], x))
    with pytest.raises(ValueError, match="blending_degree must be at most"):
        build(blending_degree=50)
    with pytest.raises(ValueError, match="least-squares fit of degree 60 needs"):
        build(degree=60, fit="least-squares")
    with pytest.raises(ValueError, match="weights has 1 entries"):
        build(factors=(np.c_[cols, cols],) * 3)


def test_grid_fit_torch_gradients_with_respect_to_the_samples():
    """Both fits are linear maps of the samples; with the other modes' samples fixed, the
    value at a point is linear in the samples of one mode, and gradcheck compares autograd
    with finite differences. The blending degree is fixed: the automatic choice is a
    piecewise-constant function of the samples (near rounding level a 1e-6 perturbation
    changes it), and autograd differentiates at the degree chosen."""
    torch = pytest.importorskip("torch")
    x = _cell_centred(40)
    f = _gaussians(1.5, np.array([0.1, -0.2]))
    other = torch.from_numpy(f(x))
    w = torch.tensor([1.0, 0.5], dtype=torch.float64)
    grid = (torch.from_numpy(x),) * 3
    p = torch.tensor([[0.13, -0.42, 0.77]], dtype=torch.float64)
    for fit, extra in (("floater-hormann", {"blending_degree": 4}), ("least-squares", {})):
        samples = torch.from_numpy(f(x)).requires_grad_(True)

        def value(s, fit=fit, extra=extra):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IllConditionedFitWarning)
                return ChebTucker.from_cp(w, [s, other, other], domain=(-1, 1), degree=20,
                                          tol=1e-12, grid=grid, fit=fit, **extra)(p)

        assert torch.autograd.gradcheck(value, (samples,))

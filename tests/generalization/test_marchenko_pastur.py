"""The Marchenko–Pastur law against exact moments, mpmath, sampled spectra and scikit-rmt."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sci
from sci.backend import to_numpy
from sci.generalization import (
    marchenko_pastur_pdf,
    marchenko_pastur_quadrature,
    marchenko_pastur_support,
)
from theory.generalization import (
    marchenko_pastur_moment,
    marchenko_pastur_moment_mp,
    marchenko_pastur_pdf_mp,
)

alphas = st.floats(min_value=1e-3, max_value=50.0, allow_nan=False)


def exact_moment(k: int, alpha: float) -> float:
    """The Narayana-polynomial moment evaluated in exact rational arithmetic."""
    return float(marchenko_pastur_moment(k, sympy.Rational(alpha)))


@given(alpha=alphas)
def test_mass_is_min_one_alpha(alpha):
    nodes, weights = marchenko_pastur_quadrature(alpha)
    # Weights are squared first components of an orthonormal eigenbasis times the mass: their
    # sum is the mass to a few ulps of a 400-term sum.
    assert abs(float(weights.sum()) - min(1.0, alpha)) <= 1e-12 * max(1.0, alpha)


@given(alpha=alphas)
def test_mean_is_alpha(alpha):
    nodes, weights = marchenko_pastur_quadrature(alpha)
    assert abs(float(weights @ nodes) - alpha) <= 1e-12 * max(1.0, alpha)


@given(alpha=alphas, k=st.integers(0, 12))
def test_gauss_rule_moments_match_theory(alpha, k):
    """An n-point Gauss rule is exact for degree <= 2n - 1: all these moments to rounding."""
    nodes, weights = marchenko_pastur_quadrature(alpha, 40)
    got = float(weights @ nodes**k)
    expected = exact_moment(k, alpha)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.7, 1.5, 2.0, 5.0])
def test_substitution_rule_moments_away_from_one(alpha):
    nodes, weights = marchenko_pastur_quadrature(alpha, 400, rule="substitution")
    for k in range(4):
        assert float(weights @ nodes**k) == pytest.approx(exact_moment(k, alpha), rel=1e-12)


def test_substitution_rule_degrades_near_one_as_documented():
    # The pole of 1/lambda sits |1 - alpha|/2 from the edge in the angle variable; the Gauss
    # rule of the measure is unaffected. This is why "gauss" is the default.
    _, w_sub = marchenko_pastur_quadrature(0.999, 400, rule="substitution")
    _, w_gauss = marchenko_pastur_quadrature(0.999, 400)
    assert abs(float(w_sub.sum()) - 0.999) > 1e-11
    assert abs(float(w_gauss.sum()) - 0.999) < 1e-14


def test_moment_oracles_agree():
    """The two theory oracles (Narayana polynomials, tanh-sinh of the density) agree.

    tanh-sinh at 40 working digits resolves the square-root endpoints to about 1e-23 here;
    1e-20 leaves room for that while still failing on any wrong coefficient.
    """
    for alpha in ("0.3", "1", "2.5"):
        for k in range(5):
            exact = marchenko_pastur_moment(k, sympy.Rational(alpha))
            numeric = marchenko_pastur_moment_mp(k, alpha, dps=30)
            with mpmath.workdps(40):
                difference = abs(mpmath.mpf(str(sympy.N(exact, 40))) - numeric)
            assert difference < mpmath.mpf("1e-20")


@given(alpha=alphas, u=st.floats(0.0, 1.0))
def test_pdf_matches_mpmath(alpha, u):
    lower, upper = (float(v) for v in marchenko_pastur_support(alpha))
    lam = lower + u * (upper - lower)
    expected = float(marchenko_pastur_pdf_mp(lam, alpha))
    got = float(marchenko_pastur_pdf(lam, alpha))
    # Relative 1e-12, plus what a shift of the float64 edges by a few ulps can change: near an
    # edge rho ~ sqrt(delta * width) / (2 pi lambda), so a shift of 4 eps upper moves it by
    # at most sqrt(4 eps upper width) / (2 pi lambda).
    edge_sensitivity = np.sqrt(4 * np.finfo(float).eps * upper * (upper - lower)) / (
        2 * np.pi * lam
    )
    assert abs(got - expected) <= 1e-12 * expected + edge_sensitivity


def test_support_edges_and_lower_edge_near_one():
    lower, upper = marchenko_pastur_support([0.25, 1.0, 4.0])
    np.testing.assert_allclose(to_numpy(lower), [0.25, 0.0, 1.0], rtol=1e-15, atol=0)
    np.testing.assert_allclose(to_numpy(upper), [2.25, 4.0, 9.0], rtol=1e-15)
    # (1 - sqrt(1 - 1e-12))^2 = 2.5e-25 (1 + O(1e-12)): the naive formula returns 0 or noise.
    tiny, _ = marchenko_pastur_support(1 - 1e-12)
    assert float(tiny) == pytest.approx(2.5e-25, rel=1e-9)


def test_pdf_zero_outside_support_and_broadcasts(xp):
    lam = xp.asarray(np.array([[-1.0], [0.0], [2.0], [100.0]]))
    alpha = xp.asarray(np.array([0.5, 2.0]))
    out = marchenko_pastur_pdf(lam, alpha)
    assert tuple(out.shape) == (4, 2)
    assert xp.is_leg_array(out) and out.dtype == xp.float64
    host = xp.to_numpy(out)
    assert np.all(host[[0, 1, 3]] == 0.0)
    assert np.all(host[2] > 0.0)


@pytest.mark.parametrize("alpha", [0.25, 1.0, 4.0])
def test_pdf_kernel_is_bitwise_the_plain_formula_at_the_edges(alpha):
    # The Numba kernel is branch-free (clamps and selects, so that it vectorises); it must
    # give exactly sqrt((u - x)(x - l)) / (2 pi x) inside the support and 0 outside, also at
    # the edges, at 0, at subnormal x and for negative x.
    if "numba" not in sci.available_backends():
        pytest.skip("the numba backend is not available")
    lower, upper = (float(e) for e in marchenko_pastur_support(alpha))
    x = np.concatenate([
        [-1.0, -5e-324, 0.0, 5e-324, 1e-310, 1e-300, lower, upper],
        np.nextafter(lower, [-np.inf, np.inf]), np.nextafter(upper, [-np.inf, np.inf]),
        np.linspace(-1.0, upper + 1.0, 1001),
    ])
    with sci.use_backend("numba"):
        out = to_numpy(marchenko_pastur_pdf(x, alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = np.where((lower < x) & (x < upper),
                         np.sqrt((upper - x) * (x - lower)) / (2.0 * np.pi * x), 0.0)
    np.testing.assert_array_equal(out, plain)


def test_pdf_float32(xp):
    out = marchenko_pastur_pdf(xp.asarray(np.float32([1.0, 2.0])),
                               xp.asarray(np.float32(2.0)))
    assert out.dtype == xp.float32 and xp.is_leg_array(out)
    expected = [float(marchenko_pastur_pdf_mp(x, 2)) for x in (1, 2)]
    # float32: the sqrt/divide chain loses a few ulps of 6e-8.
    np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=1e-6)
    # A Python alpha is weak on every leg: float32 eigenvalues stay float32.
    assert marchenko_pastur_pdf(xp.asarray(np.float32([1.0, 2.0])), 2.0).dtype == xp.float32


@given(alpha=alphas, u=st.lists(st.floats(-0.2, 1.2), min_size=1, max_size=8))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_pdf_and_support_on_every_leg(xp, alpha, u):
    """The density on each leg agrees with NumPy's, is >= 0, and is 0 outside the support
    that marchenko_pastur_support returns there."""
    a = xp.asarray(alpha, dtype=xp.float64)  # 0-d, float64 on every leg
    lower, upper = marchenko_pastur_support(a)
    # (NumPy's arithmetic makes NumPy scalars of 0-d arrays)
    assert xp.is_numpy or (xp.is_leg_array(lower) and xp.is_leg_array(upper))
    assert lower.shape == upper.shape == ()
    lower, upper = float(xp.to_numpy(lower)), float(xp.to_numpy(upper))
    lam = lower + np.asarray(u) * (upper - lower)
    got = marchenko_pastur_pdf(xp.asarray(lam), a)
    assert xp.is_leg_array(got)
    got = xp.to_numpy(got)
    with sci.use_backend("numpy"):
        want = marchenko_pastur_pdf(lam, alpha)
    # Within a few ulps of an edge the density is sqrt(lam - edge)-small, and the two paths'
    # edges (0-d array here, Python float there; (1 - sqrt(alpha))^2 cancels near alpha = 1)
    # differ by rounding: there it is compared to sqrt(64 eps) times the density's scale
    # (seen: 3e-7 against 0 at alpha = 1.03, u = 0). Elsewhere to 1e-13.
    near_edge = np.minimum(np.abs(lam - lower), np.abs(upper - lam)) <= 64e-16 * upper
    np.testing.assert_allclose(got[~near_edge], want[~near_edge], rtol=1e-13, atol=1e-300)
    scale = 1.0 / (np.pi * alpha * max(lower, 1e-3))
    assert np.all(np.abs(got[near_edge] - want[near_edge]) <= np.sqrt(64e-16) * scale)
    assert np.all(got >= 0)
    assert np.all(got[(lam <= lower) | (lam >= upper)] == 0)


def test_quadrature_shapes_and_backend(xp):
    nodes, weights = marchenko_pastur_quadrature(xp.asarray(np.array([0.5, 2.0, 3.0])), 16)
    assert tuple(nodes.shape) == tuple(weights.shape) == (3, 16)
    assert xp.is_leg_array(nodes) and xp.is_leg_array(weights)
    assert nodes.dtype == weights.dtype == xp.float64
    np.testing.assert_allclose(xp.to_numpy(xp.sum(weights, axis=-1)), [0.5, 1.0, 1.0],
                               rtol=1e-14)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: marchenko_pastur_pdf(1.0, 0.0), ValueError, "alpha .* must be > 0"),
        (lambda: marchenko_pastur_pdf(1.0, -2.0), ValueError, "alpha .* must be > 0"),
        (lambda: marchenko_pastur_pdf(np.nan, 1.0), ValueError, "lam must be finite"),
        (lambda: marchenko_pastur_pdf(1.0, np.inf), ValueError, "alpha must be finite"),
        (lambda: marchenko_pastur_pdf(1j, 1.0), TypeError, "lam must be real"),
        (lambda: marchenko_pastur_pdf("1", 1.0), TypeError, "lam must be a real array_like"),
        (lambda: marchenko_pastur_quadrature(1.0, 0), ValueError, "n_nodes must be >= 1"),
        (lambda: marchenko_pastur_quadrature(1.0, 2.5), TypeError, "n_nodes must be an integer"),
        (lambda: marchenko_pastur_quadrature(1.0, rule="simpson"), ValueError, "rule must be"),
        (lambda: marchenko_pastur_support([1.0, -1.0]), ValueError, "alpha"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_inputs_are_not_mutated(xp):
    lam = xp.asarray(np.linspace(0, 5, 11))
    alpha = xp.asarray(np.array([2.0]))
    marchenko_pastur_pdf(lam, alpha)
    marchenko_pastur_quadrature(alpha)
    marchenko_pastur_support(alpha)
    np.testing.assert_array_equal(xp.to_numpy(lam), np.linspace(0, 5, 11))
    np.testing.assert_array_equal(xp.to_numpy(alpha), [2.0])


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_sampled_spectrum_matches_density(alpha):
    """Eigenvalues of sampled XXᵀ against the law: bulk moments and the distribution function.

    With N = 400 the finite-size corrections to the first two moments are O(1/N) and their
    sampling error O(1/N) too (linear statistics of eigenvalues fluctuate at O(1) in the sum,
    O(1/N) in the mean); 5 % is about ten standard deviations.
    """
    rng = np.random.default_rng(7)
    n = 400
    p = int(alpha * n)
    x = rng.standard_normal((n, p)) / np.sqrt(n)
    eig = np.linalg.eigvalsh(x @ x.T)
    bulk = np.sort(eig)[n - min(n, p):]
    assert np.mean(eig) == pytest.approx(alpha, rel=0.05)
    assert np.sum(bulk**2) / n == pytest.approx(exact_moment(2, alpha), rel=0.05)
    # Kolmogorov distance between the empirical bulk CDF and the integrated density.
    grid = np.sort(bulk)
    nodes, weights = marchenko_pastur_quadrature(alpha, 400)
    cdf = np.array([weights[nodes <= g].sum() for g in grid]) / min(1.0, alpha)
    empirical = np.arange(1, grid.size + 1) / grid.size
    assert np.max(np.abs(cdf - empirical)) < 0.03


def test_agrees_with_scikit_rmt():
    # scikit-rmt pins numpy<=1.26 and scipy<=1.12 and fails to import on newer SciPy
    # (scipy.misc.derivative was removed), so it is not in the project's extras; the test runs
    # where a user installed it beside a compatible stack.
    try:
        import skrmt.ensemble.spectral_law as skrmt
    except ImportError as exc:
        pytest.skip(f"scikit-rmt not importable here ({exc})")
    alpha = 2.0
    law = skrmt.MarchenkoPasturDistribution(ratio=1 / alpha, beta=1, sigma=1.0)
    lam = np.linspace(0.2, 5.7, 50)
    np.testing.assert_allclose(
        to_numpy(marchenko_pastur_pdf(lam, alpha)), law.pdf(lam / alpha) / alpha, rtol=1e-12
    )


def test_figure_quick_numbers_match_theory(tmp_path, figure_cache):
    """The quick figure computes the real thing: its sampled moments agree with the law."""
    from figures._registry import discover
    from figures._runner import run_figure

    record = run_figure(discover()["marchenko_pastur"], quick=True, out=tmp_path,
                        cache_dir=figure_cache, progress=False)
    for panel in record["data"]["panels"]:
        alpha = panel["alpha"]
        assert panel["bulk_mass_sampled"] == pytest.approx(min(1.0, alpha), abs=1e-12)
        # N = 200, 3 samples: the mean of all eigenvalues is tr(XXᵀ)/N, a chi-square average
        # with relative standard deviation sqrt(2 / (N P trials)) < 0.5 %; 3 % is > 6 sigma.
        assert panel["mean_sampled"] == pytest.approx(alpha, rel=0.03)
        assert panel["second_moment_theory"] == pytest.approx(alpha + alpha**2, rel=1e-12)
        # The largest eigenvalue sits near the upper edge (Tracy–Widom scale N^(-2/3)).
        assert panel["max_sampled_eigenvalue"] == pytest.approx(panel["support"][1], rel=0.1)


def test_pdf_keeps_float32_with_a_python_alpha():
    # A Python number is weak (NEP 50), as in sci.gaunt: float32 eigenvalues stay float32.
    lam = np.linspace(0.05, 3.0, 41)
    ref = marchenko_pastur_pdf(lam, 0.5)
    for alpha in (0.5, 2, 1.0):
        got = marchenko_pastur_pdf(lam.astype(np.float32), alpha)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, marchenko_pastur_pdf(lam, alpha), rtol=1e-5, atol=1e-6)
    assert marchenko_pastur_pdf(1.0, np.float32(0.5)).dtype == np.float32
    # An explicit float64 array or NumPy scalar still promotes, as NumPy does.
    assert marchenko_pastur_pdf(lam.astype(np.float32), np.float64(0.5)).dtype == np.float64
    assert ref.dtype == np.float64

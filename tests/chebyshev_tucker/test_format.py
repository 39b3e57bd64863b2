"""The ChebTucker format: construction, evaluation, export, errors, spec reference numbers."""

import math

import numpy as np
import pytest
from scipy.special import erf

import sci
from sci._validation import MemoryLimitError
from sci.chebyshev_tucker import ChebTucker, hosvd

SIGMA = 0.15


def erf_kernel(x, y, z):
    r = np.sqrt(x * x + y * y + z * z)
    safe = np.where(r == 0, 1.0, r)
    return np.where(r == 0, 2 / (SIGMA * np.sqrt(np.pi)), erf(safe / SIGMA) / safe)


@pytest.fixture(scope="module")
def erf_points():
    p = np.random.default_rng(7).uniform(-1, 1, (4000, 3))
    return p, erf_kernel(*p.T)


# Spec: erf(r/0.15)/r, m = 65: epsilon-ranks 5..10 for eps = 1e-3..1e-8. This reproduction gives
# 5, 6, 7, 8 exactly for 1e-3..1e-6 and one lower (8, 9) at 1e-7, 1e-8: the mode-1 tail after
# 8 terms is 8.4e-8 relative, just under the 1e-7 threshold, so the spec's ranks there are
# within one of ours (a borderline of the criterion, see docs).
@pytest.mark.parametrize("eps,spec_rank", [(1e-3, 5), (1e-4, 6), (1e-5, 7), (1e-6, 8),
                                           (1e-7, 9), (1e-8, 10)])
def test_erf_kernel_reference_ranks_and_errors(eps, spec_rank, erf_points):
    ct = ChebTucker.from_function(erf_kernel, domain=(-1, 1), degree=64, tol=eps)
    assert all(abs(r - spec_rank) <= 1 for r in ct.ranks)
    if eps >= 1e-6:
        assert ct.ranks == (spec_rank,) * 3
    p, ref = erf_points
    err = np.max(np.abs(ct(p) - ref)) / np.max(np.abs(ref))
    assert err <= 3 * eps
    # The a-posteriori estimate is within a factor 10 of the truth either way.
    assert err / 10 <= ct.error_estimate() <= 10 * max(err, 1e-15)


def test_ranks_against_full_grid_hosvd_within_one():
    n = 64
    g = -1 + (np.arange(n) + 0.5) * 2 / n
    full = erf_kernel(g[:, None, None], g[None, :, None], g[None, None, :])
    for eps in (1e-3, 1e-5, 1e-7):
        ct = ChebTucker.from_function(erf_kernel, domain=(-1, 1), degree=64, tol=eps)
        grid = hosvd(full, tol=eps)
        assert all(abs(a - b) <= 1 for a, b in zip(ct.ranks, grid.ranks, strict=True))
        assert all(a >= b for a, b in zip(ct.ranks, grid.ranks, strict=True))


def test_refine_with_hooi_keeps_ranks_and_accuracy(erf_points):
    ct = ChebTucker.from_function(erf_kernel, domain=(-1, 1), degree=48, tol=1e-5, refine=True)
    p, ref = erf_points
    assert np.max(np.abs(ct(p) - ref)) / np.max(ref) <= 3e-5


def test_from_cp_agrees_with_from_function(rng):
    centres = rng.uniform(-0.5, 0.5, (5, 3))
    w = rng.standard_normal(5)
    t = 3.0

    def f(x, y, z):
        return sum(wj * np.exp(-t**2 * ((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2))
                   for wj, c in zip(w, centres, strict=True))

    def factor(d):
        return lambda x: np.exp(-t**2 * np.subtract.outer(x, centres[:, d]) ** 2)

    a = ChebTucker.from_function(f, domain=(-1, 1), degree=40, tol=1e-10)
    b = ChebTucker.from_cp(w, [factor(d) for d in range(3)], domain=(-1, 1), degree=40,
                           tol=1e-10)
    p = rng.uniform(-1, 1, (500, 3))
    ref = f(*p.T)
    scale = np.max(np.abs(ref))
    assert np.max(np.abs(a(p) - ref)) <= 3e-10 * scale
    assert np.max(np.abs(b(p) - ref)) <= 3e-10 * scale
    assert all(abs(i - j) <= 1 for i, j in zip(a.ranks, b.ranks, strict=True))


def test_from_cp_on_a_grid(rng):
    x = -1 + (np.arange(100) + 0.5) / 50
    cols = np.exp(-np.subtract.outer(x, [0.0, 0.3]) ** 2 * 4)
    ct = ChebTucker.from_cp([1.0, -0.5], [cols, cols, cols], domain=(-1, 1), degree=30,
                            tol=1e-12, grid=(x, x, x))
    idx = rng.integers(0, 100, (300, 3))
    ref = cols[idx[:, 0]] * cols[idx[:, 1]] * cols[idx[:, 2]] @ np.array([1.0, -0.5])
    assert np.max(np.abs(ct(x[idx]) - ref)) < 1e-11


def test_grid_export_matches_pointwise_and_is_orthogonal(rng, backend, to_numpy):
    ct = ChebTucker.from_function(lambda x, y, z: np.cos(x * y) + np.exp(z) * x,
                                  domain=((0, 1), (-1, 2), (-2, 0)), degree=20, tol=1e-12)
    x, y, z = np.linspace(0, 1, 5), np.linspace(-1, 2, 6), np.linspace(-2, 0, 7)
    full = to_numpy(ct.on_grid(x, y, z))
    pts = np.stack(np.meshgrid(x, y, z, indexing="ij"), -1).reshape(-1, 3)
    np.testing.assert_allclose(full.ravel(), to_numpy(ct(pts)), atol=1e-13)
    tt = ct.to_tucker(x, y, z)
    np.testing.assert_allclose(to_numpy(tt.to_full()), full, atol=1e-13)
    for q in tt.factors:
        q = to_numpy(q)
        np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-13)
    np.testing.assert_allclose(full, np.cos(x[:, None, None] * y[None, :, None])
                               + np.exp(z)[None, None, :] * x[:, None, None], atol=1e-11)


def test_properties(rng):
    ct = ChebTucker.from_function(lambda x, y, z: x + y * z, domain=(-1, 1), degree=6, tol=1e-12)
    assert ct.degrees == (6, 6, 6)
    assert ct.nbytes == 8 * (np.prod(ct.ranks) + 7 * sum(ct.ranks))
    assert "ChebTucker(ranks=" in repr(ct)
    np.testing.assert_allclose(ct.coefficients()[1, 0, 0], 1.0, atol=1e-14)  # T1(x)


def _on_leg(ct, xp):
    """``ct`` rebuilt from the leg's arrays (the constructor), and moved there (``.to``)."""
    built = ChebTucker(xp.asarray(ct.core), [xp.asarray(u) for u in ct.factors],
                       domain=ct.domain, truncation_error=ct.truncation_error)
    moved = ct.to(xp.namespace, xp.device)
    assert xp.is_leg_array(built.core) and xp.is_leg_array(moved.core)
    assert all(xp.is_leg_array(u) for u in moved.factors)
    return built, moved


def test_legs_agree_with_numpy_on_evaluation(xp, rng):
    p = rng.uniform(-1, 1, (200, 3))
    with sci.use_backend("numpy"):
        ct = ChebTucker.from_function(erf_kernel, domain=(-1, 1), degree=32, tol=1e-6)
        expected = ct(p)
    for leg_ct in _on_leg(ct, xp):
        out = leg_ct(xp.asarray(p), chunk=64)
        assert xp.is_leg_array(out)
        np.testing.assert_allclose(xp.to_numpy(out), expected, atol=1e-13)
        assert leg_ct.nbytes == ct.nbytes
        assert leg_ct.error_estimate() == pytest.approx(ct.error_estimate(), rel=1e-12)
        assert xp.to_numpy(leg_ct(xp.asarray(np.zeros((0, 3))))).shape == (0,)


def test_grid_export_on_every_leg(xp):
    with sci.use_backend("numpy"):
        ct = ChebTucker.from_function(lambda x, y, z: np.cos(x * y) + np.exp(z) * x,
                                      domain=((0, 1), (-1, 2), (-2, 0)), degree=20, tol=1e-12)
    x, y, z = np.linspace(0, 1, 5), np.linspace(-1, 2, 6), np.linspace(-2, 0, 7)
    exact = (np.cos(x[:, None, None] * y[None, :, None])
             + np.exp(z)[None, None, :] * x[:, None, None])
    _, leg_ct = _on_leg(ct, xp)
    grid = leg_ct.on_grid(xp.asarray(x), xp.asarray(y), xp.asarray(z))
    assert xp.is_leg_array(grid)
    np.testing.assert_allclose(xp.to_numpy(grid), exact, atol=1e-11)
    tt = leg_ct.to_tucker(xp.asarray(x), xp.asarray(y), xp.asarray(z))
    assert xp.is_leg_array(tt.core) and all(xp.is_leg_array(q) for q in tt.factors)
    np.testing.assert_allclose(xp.to_numpy(tt.to_full()), exact, atol=1e-11)
    with pytest.raises(ValueError, match="outside the box"):
        leg_ct(xp.asarray([[2.0, 0.0, -1.0]]))
    with pytest.raises(ValueError, match="outside the box"):
        leg_ct.on_grid(xp.asarray([0.5]), xp.asarray([3.0]), xp.asarray([-1.0]))


def test_arrays_of_another_library_are_refused(xp):
    import array_api_strict as strict

    with sci.use_backend("numpy"):
        ct = ChebTucker.from_function(lambda x, y, z: x + y + z, domain=(-1, 1), degree=3,
                                      tol=1e-12)
    _, leg_ct = _on_leg(ct, xp)
    other = (strict.zeros((1, 3), dtype=strict.float64) if xp.is_numpy
             else np.zeros((1, 3)))
    with pytest.raises(TypeError, match=r"points is .* but this ChebTucker holds .*\.to\("):
        leg_ct(other)
    # lists follow the object
    assert xp.is_leg_array(leg_ct([[0.25, 0.25, 0.25]]))
    back = leg_ct.to(np)
    assert isinstance(back.core, np.ndarray)
    np.testing.assert_allclose(back([[0.25, 0.25, 0.5]]), [1.0], atol=1e-13)


def test_torch_gradients_with_respect_to_points():
    torch = pytest.importorskip("torch")
    with sci.use_backend("numpy"):
        ct = ChebTucker.from_function(lambda x, y, z: np.sin(x + 2 * y) * np.exp(z),
                                      domain=(-1, 1), degree=24, tol=1e-13)
    leg = ct.to(torch)
    p = torch.tensor([[0.1, 0.2, -0.3], [0.5, -0.4, 0.7]], dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: leg(q, chunk=1), (p,))
    (grad,) = torch.autograd.grad(leg(p).sum(), p)
    x, y, z = p.detach().numpy().T
    exact = np.stack([np.cos(x + 2 * y) * np.exp(z), 2 * np.cos(x + 2 * y) * np.exp(z),
                      np.sin(x + 2 * y) * np.exp(z)], axis=1)
    np.testing.assert_allclose(grad.numpy(), exact, atol=1e-10)


def test_outside_box_raises_or_extrapolates():
    ct = ChebTucker.from_function(lambda x, y, z: x + y + z, domain=(-1, 1), degree=3, tol=1e-12)
    with pytest.raises(ValueError, match="outside the box"):
        ct([[1.5, 0, 0]])
    np.testing.assert_allclose(ct([[1.5, 0, 0]], extrapolate=True), [1.5], atol=1e-12)
    with pytest.raises(ValueError, match="outside the box"):
        ct.on_grid([0.0], [0.0], [-2.0])
    assert ct([[1.0 + 1e-13, -1.0, 0.0]]).shape == (1,)  # rounding at the edge is fine
    assert ct(np.zeros((0, 3))).shape == (0,)


def test_bad_input():
    f = lambda x, y, z: x  # noqa: E731
    with pytest.raises(MemoryLimitError, match="would need"):
        ChebTucker.from_function(f, domain=(-1, 1), degree=20000, tol=1e-6)
    with pytest.raises(ValueError, match="degree must be >= 1"):
        ChebTucker.from_function(f, domain=(-1, 1), degree=0, tol=1e-6)
    with pytest.raises(TypeError, match="f must be callable"):
        ChebTucker.from_function(3.0, domain=(-1, 1), degree=4, tol=1e-6)
    with pytest.raises(ValueError, match="finite"):
        ChebTucker.from_function(lambda x, y, z: x + np.nan, domain=(-1, 1),
                                 degree=4, tol=1e-6)
    with pytest.raises(ValueError, match="domain must be a pair"):
        ChebTucker.from_function(f, domain=(0, 1, 2), degree=4, tol=1e-6)
    ct = ChebTucker.from_function(f, domain=(-1, 1), degree=4, tol=1e-6)
    with pytest.raises(ValueError, match="shape \\(M, 3\\)"):
        ct(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        ct([[np.nan, 0, 0]])
    with pytest.raises(MemoryLimitError, match="use to_tucker"):
        g = np.linspace(-1, 1, 3000)
        ct.on_grid(g, g, g)
    with pytest.raises(ValueError, match="least-squares fit of degree 10 needs"):
        ChebTucker.from_cp([1.0], [np.ones((5, 1))] * 3, domain=(-1, 1), degree=10, tol=1e-6,
                           grid=[np.linspace(-1, 1, 5)] * 3, fit="least-squares")


def _gaussian_fit_on_grid(n, degree, tol=1e-12):
    g = -1 + (np.arange(n) + 0.5) * 2 / n
    f = np.exp(-30 * g**2)[:, None]
    # The least-squares option (the default Floater-Hormann fit: test_fit.py).
    ct = ChebTucker.from_cp(np.ones(1), [f, f, f], domain=(-1, 1), degree=degree, tol=tol,
                            grid=(g, g, g), fit="least-squares")
    between = (g[:-1] + g[1:]) / 2
    points = np.stack([between, np.zeros_like(between), np.zeros_like(between)], axis=1)
    exact = np.exp(-30 * between**2)
    on_grid = np.stack([g, np.zeros_like(g), np.zeros_like(g)], axis=1)
    return (np.max(np.abs(ct(on_grid) - np.exp(-30 * g**2))),
            np.max(np.abs(ct(points) - exact)))


def test_unstable_grid_fit_is_reported():
    """Least squares of degree 128 on 256 equispaced points fits the grid but not the points
    in between."""
    from sci.chebyshev_tucker import IllConditionedFitWarning

    with pytest.warns(IllConditionedFitWarning, match=r"rounding alone can reach .* above tol"):
        on_grid, between = _gaussian_fit_on_grid(256, 128)
    # The fit reproduces the grid to rounding (seen 9e-16) but misses tol = 1e-12 between its
    # points by orders of magnitude (seen 8e-6): the warning is warranted.
    assert on_grid < 1e-13
    assert between > 1e-8


def test_stable_grid_fit_is_silent_and_accurate_between_points():
    import warnings

    from sci.chebyshev_tucker import IllConditionedFitWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedFitWarning)
        # 2000 points for degree 60: a degree-60 Chebyshev fit of exp(-30 x^2) is accurate
        # to ~2e-12 everywhere (seen 1.7e-12 on and between the grid points).
        on_grid, between = _gaussian_fit_on_grid(2000, 60)
        assert on_grid < 1e-11 and between < 1e-11
        # 512 points for degree 128 amplify 1.8e7 times, but rounding x 1.8e7 ~ 4e-9 is
        # below tol = 1e-7, and the resolved Gaussian stays accurate between points.
        on_grid, between = _gaussian_fit_on_grid(512, 128, tol=1e-7)
        assert on_grid < 1e-10 and between < 1e-10


def test_from_coefficients_on_every_leg(xp, rng):
    from sci.chebyshev_tucker import chebyshev_points, values_to_coefficients

    with sci.use_backend("numpy"):
        nodes = chebyshev_points(13)
        values = erf_kernel(nodes[:, None, None], nodes[None, :, None], nodes[None, None, :])
        coefficients = values_to_coefficients(values)
        expected = ChebTucker.from_coefficients(coefficients, domain=(-1, 1), tol=1e-8,
                                                refine=True)
    ct = ChebTucker.from_coefficients(xp.asarray(coefficients), domain=(-1, 1), tol=1e-8,
                                      refine=True)
    assert ct.ranks == expected.ranks and xp.is_leg_array(ct.core)
    p = rng.uniform(-1, 1, (50, 3))
    np.testing.assert_allclose(xp.to_numpy(ct(xp.asarray(p))), expected(p), atol=1e-10)


# -- construction on the array API (issue 13) -----------------------------------------------

_CENTRES = np.array([0.0, 0.5, -0.3])
_CP_WEIGHTS = np.array([1.0, -2.0, 0.5])


def _gaussian_columns(xp, dtype="float64"):
    """exp(-4 (x - c_r)^2) per column, written with the leg's namespace."""
    centres = xp.asarray(_CENTRES, dtype=dtype)
    return lambda x: xp.exp(-4.0 * (x[:, None] - centres[None, :]) ** 2)


def _cp_exact(p):
    cols = [np.exp(-4.0 * (p[:, k:k + 1] - _CENTRES[None, :]) ** 2) for k in range(3)]
    return (cols[0] * cols[1] * cols[2]) @ _CP_WEIGHTS


def test_from_cp_on_every_leg(xp, rng):
    p = rng.uniform(-1, 1, (40, 3))
    g = _gaussian_columns(xp)
    weights = xp.asarray(_CP_WEIGHTS)
    nodes = xp.asarray(np.asarray(sci.chebyshev_tucker.chebyshev_points(31)))
    built = {
        "callables": ChebTucker.from_cp(weights, [g, g, g], domain=(-1, 1), degree=30,
                                        tol=1e-12),
        "Lobatto samples": ChebTucker.from_cp(weights, [g(nodes)] * 3, domain=(-1, 1),
                                              tol=1e-12),
        "mixed": ChebTucker.from_cp(list(_CP_WEIGHTS), [g, g(nodes), g], domain=(-1, 1),
                                    degree=30, tol=1e-12),
    }
    with sci.use_backend("numpy"):
        expected = ChebTucker.from_cp(_CP_WEIGHTS, [lambda x: np.exp(
            -4.0 * np.subtract.outer(x, _CENTRES) ** 2)] * 3, domain=(-1, 1), degree=30,
            tol=1e-12)
    for what, ct in built.items():
        assert xp.is_leg_array(ct.core), what
        assert all(xp.is_leg_array(u) for u in ct.factors), what
        assert ct.ranks == expected.ranks == (3, 3, 3), what
        out = ct(xp.asarray(p))
        assert xp.is_leg_array(out)
        # oracles: the CP function itself, and the NumPy construction
        np.testing.assert_allclose(xp.to_numpy(out), _cp_exact(p), atol=1e-11, err_msg=what)
        np.testing.assert_allclose(xp.to_numpy(out), expected(p), atol=1e-12, err_msg=what)


def test_from_cp_keeps_float32(xp, rng):
    g = _gaussian_columns(xp, "float32")
    nodes = xp.asarray(np.asarray(sci.chebyshev_tucker.chebyshev_points(31)), dtype="float32")
    ct = ChebTucker.from_cp(xp.asarray(_CP_WEIGHTS, dtype="float32"), [g(nodes)] * 3,
                            domain=(-1, 1), tol=1e-5)
    assert ct.core.dtype == xp.float32
    p = rng.uniform(-1, 1, (10, 3))
    out = ct(xp.asarray(p, dtype="float32"))
    assert out.dtype == xp.float32
    np.testing.assert_allclose(xp.to_numpy(out), _cp_exact(p), atol=1e-4)


def test_from_function_on_every_leg(xp, rng):
    def f(x, y, z):
        return xp.cos(x * y) + xp.exp(z) * x

    ct = ChebTucker.from_function(f, domain=(-1, 1), degree=24, tol=1e-13,
                                  xp=xp.namespace, device=xp.device)
    with sci.use_backend("numpy"):
        expected = ChebTucker.from_function(lambda x, y, z: np.cos(x * y) + np.exp(z) * x,
                                            domain=(-1, 1), degree=24, tol=1e-13)
    assert xp.is_leg_array(ct.core) and ct.ranks == expected.ranks
    p = rng.uniform(-1, 1, (30, 3))
    out = xp.to_numpy(ct(xp.asarray(p)))
    x, y, z = p.T
    np.testing.assert_allclose(out, np.cos(x * y) + np.exp(z) * x, atol=1e-12)
    np.testing.assert_allclose(out, expected(p), atol=1e-13)
    # f of Python numbers, called point by point on the host, its values sent to the device
    scalar = ChebTucker.from_function(lambda x, y, z: math.cos(x * y) + math.exp(z) * x,
                                      domain=(-1, 1), degree=12, tol=1e-10, vectorized=False,
                                      xp=xp.namespace, device=xp.device)
    assert xp.is_leg_array(scalar.core)
    np.testing.assert_allclose(xp.to_numpy(scalar(xp.asarray(p))),
                               np.cos(x * y) + np.exp(z) * x, atol=1e-8)


def test_from_function_defaults_to_the_switch(rng):
    with sci.use_backend("numpy"):
        ct = ChebTucker.from_function(lambda x, y, z: x + y * z, domain=(0, 1), degree=3,
                                      tol=1e-12)
    assert isinstance(ct.core, np.ndarray) and ct.device == "cpu"


def test_results_of_another_library_are_refused_not_copied():
    import array_api_strict as strict

    dev = strict.Device("device1")
    # f and the CP callables get device1 arrays; NumPy values back are refused, not moved
    with pytest.raises(TypeError, match=r"the points given to f and f\(x, y, z\) are arrays"):
        ChebTucker.from_function(lambda x, y, z: np.ones((3, 3, 3)), domain=(-1, 1), degree=2,
                                 tol=1e-8, xp=strict, device=dev)
    with pytest.raises(TypeError, match=r"factors\[0\]\(x\) are arrays of different"):
        ChebTucker.from_cp(strict.asarray([1.0], device=dev),
                           [lambda x: np.ones((3, 1))] * 3, domain=(-1, 1), degree=2, tol=1e-8)
    with pytest.raises(TypeError, match=r"weights and factors\[0\] are arrays of different"):
        ChebTucker.from_cp(np.ones(1), [strict.ones((3, 1), device=dev)] * 3, domain=(-1, 1),
                           tol=1e-8)


def test_from_cp_torch_gradients_with_respect_to_the_weights():
    """The values of the Chebyshev-Tucker form of an exactly representable CP tensor are
    linear in the weights: d value / d lambda_r is the product of the columns at the point
    (an identity), found by autograd through the DCT, linalg.qr and linalg.svd."""
    torch = pytest.importorskip("torch")
    centres = torch.tensor(_CENTRES)
    g = lambda x: torch.exp(-4.0 * (x[:, None] - centres[None, :]) ** 2)  # noqa: E731
    p = torch.tensor([[0.1, -0.7, 0.4], [0.9, 0.2, -0.5]], dtype=torch.float64)
    w = torch.tensor(_CP_WEIGHTS, requires_grad=True)

    def values(w):
        return ChebTucker.from_cp(w, [g, g, g], domain=(-1, 1), degree=30, tol=1e-12)(p)

    assert torch.autograd.gradcheck(values, (w,))
    (grad,) = torch.autograd.grad(values(w)[0], w)
    cols = [np.exp(-4.0 * (p[0, k].item() - _CENTRES) ** 2) for k in range(3)]
    np.testing.assert_allclose(grad.numpy(), cols[0] * cols[1] * cols[2], atol=1e-11)

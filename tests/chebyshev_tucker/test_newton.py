"""The sinc exponential sum for 1/r, its range splitting, and the multi-particle potentials."""

import math

import numpy as np
import pytest

import sci
from sci.chebyshev_tucker import (
    COULOMB_CONSTANT,
    RangeSeparatedPotential,
    direct_potential,
    long_range_potential,
    newton_exponential_sum,
)
from theory.chebyshev_tucker import (
    exponential_sum_mp,
    sinc_discretization_bound,
    sinc_terms_mp,
    sinc_truncation_bound,
)


@pytest.mark.parametrize("tol", [1e-4, 1e-8, 1e-12])
@pytest.mark.parametrize("r_min,r_max", [(1e-3, 1.0), (0.5, 80.0)])
def test_exponential_sum_accuracy_on_its_range(tol, r_min, r_max):
    s = newton_exponential_sum(tol=tol, r_min=r_min, r_max=r_max)
    r = np.geomspace(r_min, r_max, 5003)  # not the grid the step was chosen on
    assert np.max(np.abs(s(r) * r - 1)) <= tol
    assert np.all(np.diff(s.exponents) > 0)  # wide to narrow
    assert s.exponents[0] == 0.0


def test_exponential_sum_against_mpmath_oracle():
    s = newton_exponential_sum(tol=1e-10, r_min=1e-3, r_max=2.0)
    a, t = sinc_terms_mp(s.step, len(s), scale=2.0)
    np.testing.assert_allclose(s.weights, [float(v) for v in a], rtol=1e-14)
    np.testing.assert_allclose(s.exponents, [float(v) for v in t], rtol=1e-14, atol=0)
    for r in (1e-3, 0.01, 0.3, 1.0, 2.0):
        exact_sum = float(exponential_sum_mp(r, a, t))
        # float64 summation is accurate to rounding against the 50-digit sum ...
        assert s(r) == pytest.approx(exact_sum, rel=1e-13)
        # ... and the sum is 1/r to the requested accuracy.
        assert abs(exact_sum * r - 1) <= 1e-10


def test_exponential_sum_error_below_sinc_bounds():
    s = newton_exponential_sum(tol=1e-8, r_min=1e-3, r_max=1.0)
    for r in (1e-3, 0.05, 1.0):
        actual = abs(float(exponential_sum_mp(r, s.weights, s.exponents)) - 1 / r)
        bound = sinc_discretization_bound(r, s.step) + sinc_truncation_bound(r, s.step, len(s))
        assert actual <= bound
    # the discretisation bound alone is within two orders of magnitude of the truth at r = 1
    assert sinc_discretization_bound(1.0, s.step) < 100 * 1e-8


def test_long_short_split():
    s = newton_exponential_sum(tol=1e-8, r_min=1e-4, r_max=10.0)
    cutoff = 2.0
    n_long = s.split_index(cutoff)
    long, short = s.long_range(n_long), s.short_range(n_long)
    assert len(long) + len(short) == len(s)
    r = np.linspace(cutoff, 10.0, 500)
    assert np.all(short(r) * r <= 1e-8)  # negligible beyond the cutoff
    assert np.any(s.short_range(n_long - 1)(r) * r > 1e-8)  # n_long is the least
    assert s.cutoff_for(n_long) <= cutoff * (1 + 1e-9)
    # The long-range part is smooth and bounded at 0, ~ its value at 0 = sum of weights.
    assert long(0.0) == pytest.approx(np.sum(long.weights))
    assert np.all(np.isfinite(long(np.array([0.0, 1e-12]))))


def test_exponential_sum_bad_input():
    with pytest.raises(ValueError, match="tol must be >= 1e-14"):
        newton_exponential_sum(tol=1e-16)
    with pytest.raises(ValueError, match="r_min must be <"):
        newton_exponential_sum(r_min=2.0, r_max=1.0)
    s = newton_exponential_sum(tol=1e-6)
    with pytest.raises(ValueError, match="n_long must be <="):
        s.long_range(len(s) + 1)


@pytest.fixture(scope="module")
def particles():
    rng = np.random.default_rng(11)
    x = rng.uniform(-4, 4, (150, 3))
    q = rng.choice([-1.0, 1.0], 150) * rng.uniform(0.2, 1.0, 150)
    return x, q


@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-8])
def test_long_range_potential_against_direct_sum(particles, tol):
    x, q = particles
    v = long_range_potential(x, q, tol=tol)
    lo = np.array([b[0] for b in v.domain])
    hi = np.array([b[1] for b in v.domain])
    pts = np.random.default_rng(3).uniform(lo, hi, (800, 3))
    ref = direct_potential(x, q, pts, kernel="long_range", exponential_sum=v.exponential_sum)
    assert np.max(np.abs(v(pts) - ref)) <= 3 * tol * np.max(np.abs(ref))


def test_range_separated_total_against_direct_coulomb(particles):
    x, q = particles
    tol = 1e-7
    v = RangeSeparatedPotential(x, q, tol=tol)
    rng = np.random.default_rng(5)
    # Random points, and points very close to charges (1e-3 away): the short-range kernel is
    # exact, so the total stays accurate where the Gaussians alone would not.
    pts = np.concatenate([rng.uniform(-4, 4, (600, 3)),
                          x[:50] + 1e-3 * rng.standard_normal((50, 3))])
    ref = direct_potential(x, q, pts)
    err = np.abs(v(pts) - ref)
    assert np.max(err[:600]) <= 3 * tol * np.max(np.abs(ref[:600]))
    assert np.max(err[600:] / np.abs(ref[600:])) <= 1e-8
    # long + short, by its parts
    np.testing.assert_allclose(v.long_range(pts) + v.short_range(pts), v(pts), rtol=1e-15)
    # at the particles themselves: the potential of the other charges
    ref_self = direct_potential(x, q, x[:20])
    assert np.max(np.abs(v(x[:20]) - ref_self)) <= 3 * tol * np.max(np.abs(ref))


def test_short_range_backends_agree(particles):
    x, q = particles
    v = RangeSeparatedPotential(x, q, tol=1e-6, degree=32)
    pts = np.concatenate([np.random.default_rng(2).uniform(-4, 4, (200, 3)), x[:5]])
    tree = sci.backend.implementation("chebyshev_tucker.short_range", "numpy")
    brute = sci.backend.implementation("chebyshev_tucker.short_range", "cupy")
    cells = sci.backend.implementation("chebyshev_tucker.short_range", "numba")
    with sci.use_backend("numpy"):
        for cutoff in (v.cutoff, 0.05, 20.0):  # typical, tiny (capped cells), whole box
            args = (v.positions, v.charges, pts, v.long_range.exponential_sum, cutoff)
            ref = brute(*args)
            np.testing.assert_allclose(tree(*args), ref, atol=1e-12)
            np.testing.assert_allclose(cells(*args), ref, atol=1e-12)
            # targets far outside the particles' box
            far = (v.positions, v.charges, pts + 30.0, v.long_range.exponential_sum, cutoff)
            np.testing.assert_allclose(cells(*far), brute(*far), atol=1e-12)


def test_units_and_grid(particles):
    x, q = particles
    v = RangeSeparatedPotential(x, q, tol=1e-6, degree=32, units="kcal/(mol*e)")
    assert COULOMB_CONSTANT == pytest.approx(332.0637, abs=1e-3)
    g = np.linspace(-3, 3, 4)
    grid = v.on_grid(g, g, g)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    ref = COULOMB_CONSTANT * direct_potential(x, q, pts)
    np.testing.assert_allclose(grid.ravel(), ref, atol=3e-6 * np.max(np.abs(ref)))


def test_layout_choices_are_consistent(particles):
    x, q = particles[0][:30], particles[1][:30]
    a = RangeSeparatedPotential(x, q, tol=1e-4, cutoff=2.5)
    b = RangeSeparatedPotential(x, q, tol=1e-4, n_long=a.n_long)
    assert a.n_long == b.n_long and a.degree == b.degree
    assert b.cutoff <= 2.5 * (1 + 1e-9)
    c = RangeSeparatedPotential(x, q, tol=1e-4, degree=16)
    d = RangeSeparatedPotential(x, q, tol=1e-4, degree=32)
    assert c.n_long <= d.n_long and c.cutoff >= d.cutoff  # more degree: shorter short range


def test_too_low_degree_warns(particles):
    x, q = particles[0][:20], particles[1][:20]
    with pytest.warns(UserWarning, match="does not resolve the narrowest"):
        RangeSeparatedPotential(x, q, tol=1e-6, degree=8, cutoff=0.5)


def test_rank_saturates_with_n():
    # The point of the format: the Tucker rank of the long-range sum grows only slowly in N.
    rng = np.random.default_rng(0)
    ranks = []
    for n in (10, 100, 1000):
        x = rng.uniform(-0.6, 0.6, (n, 3))
        q = rng.choice([-1.0, 1.0], n)
        v = long_range_potential(x, q, tol=1e-6, degree=64, domain=(-1, 1), n_long=14)
        ranks.append(max(v.ranks))
    assert ranks[2] <= ranks[1] + 2
    assert ranks[1] <= 40


def test_bad_particles():
    with pytest.raises(ValueError, match="positions is empty"):
        RangeSeparatedPotential(np.zeros((0, 3)), [], tol=1e-6)
    with pytest.raises(ValueError, match="positions must be finite"):
        RangeSeparatedPotential([[np.nan, 0, 0]], [1.0])
    with pytest.raises(ValueError, match="charges must be finite"):
        RangeSeparatedPotential([[0, 0, 0]], [np.inf])
    with pytest.raises(ValueError, match="charges has 2 entries"):
        RangeSeparatedPotential([[0, 0, 0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="units must be one of"):
        RangeSeparatedPotential([[0, 0, 0]], [1.0], units="V")
    with pytest.raises(ValueError, match="outside domain"):
        RangeSeparatedPotential([[2.0, 0, 0]], [1.0], domain=(-1, 1))
    zero = RangeSeparatedPotential([[0, 0, 0], [1, 1, 1]], [0.0, 0.0], degree=16)
    assert np.all(zero([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]) == 0)


def test_coincident_and_single_particles():
    # Two charges at one point act as one charge of the sum.
    x = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [-1.0, 0.5, 0.0]])
    q = np.array([0.5, 0.25, -1.0])
    v = RangeSeparatedPotential(x, q, tol=1e-8, domain=(-2, 2), degree=32)
    pts = np.array([[0.5, 0.5, 0.5], [-0.3, 0.1, 0.2]])
    ref = direct_potential(x[1:], [0.75, -1.0], pts)
    np.testing.assert_allclose(v(pts), ref, rtol=1e-7)
    one = RangeSeparatedPotential([[0.0, 0.0, 0.0]], [2.0], tol=1e-8, domain=(-1, 1),
                                  degree=32)
    np.testing.assert_allclose(one([[0.3, 0.0, 0.0]]), [2.0 / 0.3], rtol=1e-7)
    assert math.isfinite(float(one([[0.0, 0.0, 0.0]])[0]))


def test_range_separated_on_every_leg(particles, xp):
    x, q = particles
    with sci.use_backend("numpy"):
        v = RangeSeparatedPotential(x, q, tol=1e-6, degree=32)
    rng = np.random.default_rng(8)
    pts = np.concatenate([rng.uniform(-4, 4, (100, 3)), x[:5]])  # and at particles
    expected = v(pts)
    built = RangeSeparatedPotential(xp.asarray(x), xp.asarray(q), tol=1e-6, degree=32)
    moved = v.to(xp.namespace, xp.device)
    for leg in (built, moved):
        assert xp.is_leg_array(leg.positions) and xp.is_leg_array(leg.long_range.core)
        out = leg(xp.asarray(pts))
        assert xp.is_leg_array(out)
        np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=1e-10, atol=1e-12)
    g = np.linspace(-3, 3, 3)
    grid = moved.on_grid(xp.asarray(g), xp.asarray(g), xp.asarray(g))
    assert xp.is_leg_array(grid)
    np.testing.assert_allclose(xp.to_numpy(grid), v.on_grid(g, g, g), rtol=1e-10, atol=1e-12)
    import array_api_strict as strict

    other = strict.zeros((1, 3), dtype=strict.float64) if xp.is_numpy else np.zeros((1, 3))
    with pytest.raises(TypeError, match="targets is .* but this RangeSeparatedPotential holds"):
        moved(other)
    with pytest.raises(TypeError, match="positions and charges are arrays of different"):
        RangeSeparatedPotential(xp.asarray(x), other[0, :], tol=1e-6)


def test_range_separated_torch_gradient_is_the_field(particles):
    torch = pytest.importorskip("torch")
    x, q = particles
    v = RangeSeparatedPotential(torch.from_numpy(x), torch.from_numpy(q), tol=1e-8)
    p = torch.tensor([[0.3, -1.2, 2.1], [-2.5, 0.4, 1.0]], dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(v, (p,))
    (grad,) = torch.autograd.grad(v(p).sum(), p)
    t = p.detach().numpy()
    d = t[:, None, :] - x[None, :, :]
    r = np.linalg.norm(d, axis=2)
    field = -(q[None, :, None] * d / r[:, :, None] ** 3).sum(axis=1)
    # the long-range part is a polynomial fit to tol: its derivative is accurate to about
    # tol times the degree squared relative to the field's scale
    np.testing.assert_allclose(grad.numpy(), field, atol=1e-4 * np.abs(field).max())


def test_potential_and_format_pickle(particles):
    # Dask's distributed scheduler sends them to workers pickled (their array context holds a
    # module, which is rebuilt on loading)
    import pickle

    x, q = particles
    v = RangeSeparatedPotential(x, q, tol=1e-6, degree=32)
    pts = np.random.default_rng(9).uniform(-4, 4, (20, 3))
    w = pickle.loads(pickle.dumps(v))
    np.testing.assert_array_equal(w(pts), v(pts))
    ct = pickle.loads(pickle.dumps(v.long_range))
    np.testing.assert_array_equal(ct(pts), v.long_range(pts))
    assert ct.device == "cpu" and ct.exponential_sum is not None


# -- long_range_potential on the array API (issue 13) ---------------------------------------


def test_long_range_potential_on_every_leg(particles, xp):
    """Built where the charges live (no host copy): the same tensor as NumPy's to rounding,
    and the long-range kernel sum (the oracle) to tol."""
    x, q = particles
    with sci.use_backend("numpy"):
        expected = long_range_potential(x, q, tol=1e-6, degree=32)
    v = long_range_potential(xp.asarray(x), xp.asarray(q), tol=1e-6, degree=32)
    assert xp.is_leg_array(v.core) and all(xp.is_leg_array(u) for u in v.factors)
    assert v.ranks == expected.ranks and v.domain == expected.domain
    pts = np.random.default_rng(3).uniform(-4, 4, (60, 3))
    out = v(xp.asarray(pts))
    assert xp.is_leg_array(out)
    ref = direct_potential(x, q, pts, kernel="long_range", exponential_sum=v.exponential_sum)
    scale = np.max(np.abs(ref))
    np.testing.assert_allclose(xp.to_numpy(out), expected(pts), atol=1e-10 * scale)
    np.testing.assert_allclose(xp.to_numpy(out), ref, atol=3e-6 * scale)


def test_long_range_potential_torch_gradients(particles):
    """With respect to the targets: the evaluation (a polynomial, gradcheck). With respect
    to the charges: V_l is linear in them, dV_l(x)/dq_j = sum_k a_k exp(-t_k^2 |x - x_j|^2)
    (the identity, to the compression's accuracy), found by autograd through the DCT,
    linalg.qr and linalg.svd of the reduced HOSVD, and gradcheck on a few particles, with
    respect to their charges and their positions."""
    torch = pytest.importorskip("torch")
    x, q = particles
    pos = torch.from_numpy(x[:12])
    charges = torch.tensor(q[:12], requires_grad=True)
    v = long_range_potential(pos, charges, tol=1e-8, degree=32)
    p = torch.tensor([[0.3, -1.2, 2.1], [-2.5, 0.4, 1.0]], dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: v(t), (p,))
    (grad,) = torch.autograd.grad(v(p)[0], charges)
    kernel = [direct_potential(x[j:j + 1], [1.0], p.detach().numpy()[:1], kernel="long_range",
                               exponential_sum=v.exponential_sum)[0] for j in range(12)]
    np.testing.assert_allclose(grad.numpy(), kernel, atol=1e-6 * np.max(np.abs(kernel)))
    few = torch.tensor(q[:3], requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda c: long_range_potential(pos[:3], c, tol=1e-8, degree=24,
                                       domain=(-4.5, 4.5))(p.detach()), (few,))
    # and the positions (the box fixed: chosen from the positions it is piecewise constant)
    moving = torch.tensor(x[:3], requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda y: long_range_potential(y, few.detach(), tol=1e-8, degree=24,
                                       domain=(-4.5, 4.5))(p.detach()), (moving,))

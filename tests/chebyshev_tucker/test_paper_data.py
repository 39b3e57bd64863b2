"""Reproduce the paper's own data (sci.datasets: chebtuck-paper/*.mat, from bonans/ChebTuck)."""

import math

import numpy as np
import pytest

from sci.chebyshev_tucker import ChebTucker

scipy_io = pytest.importorskip("scipy.io")

# The grid samples are fitted by Floater-Hormann interpolation, accurate between grid points
# too: the IllConditionedFitWarning (samples too coarse for tol) must not fire on these data.
pytestmark = pytest.mark.filterwarnings(
    "error::sci.chebyshev_tucker.IllConditionedFitWarning"
)

# Tucker ranks reported for the long-range Newton kernel at m = 129, tol 1e-7 (spec).
PAPER_NEWTON_RANKS = {256: 9, 512: 11, 1024: 12, 2048: 13}
# Ours, with the true HOSVD criterion on the coefficient tensor (after RHOSVD): two lower at
# every n, and equal to the ranks built from the exact functions behind the data (test below).
# The paper's are the epsilon-ranks of the coefficient factor matrix (the RHOSVD's first
# truncation), reproduced exactly below.
NEWTON_RANKS = {256: 7, 512: 9, 1024: 10, 2048: 11}


def _load(dataset, name):
    path = dataset(f"chebtuck-paper/{name}")  # skips the test where the file cannot be had
    return scipy_io.loadmat(path, squeeze_me=True, struct_as_record=False)


def _cell_centred(n):
    return -1 + (np.arange(n) + 0.5) * 2 / n


def _cp_error(ct, weights, factors, grids, rng, samples=20000):
    idx = np.stack([rng.integers(0, f.shape[0], samples) for f in factors], axis=1)
    pts = np.stack([g[idx[:, d]] for d, g in enumerate(grids)], axis=1)
    ref = (factors[0][idx[:, 0]] * factors[1][idx[:, 1]] * factors[2][idx[:, 2]]) @ weights
    return np.max(np.abs(ct(pts) - ref)) / np.max(np.abs(ref))


def _newton_long_range(dataset, n, degree, rng):
    d = _load(dataset, f"Newt_canon_{n}.mat")
    u = d["U1r"]
    r_long = math.ceil(u.shape[1] / 2) - 3
    f = u[:, :r_long] / (2 / n)  # divide by h to get values
    g = _cell_centred(n)
    ct = ChebTucker.from_cp(np.ones(r_long), [f, f, f], domain=(-1, 1), degree=degree,
                            tol=1e-7, grid=(g, g, g))
    return ct, _cp_error(ct, np.ones(r_long), [f, f, f], [g, g, g], rng)


def _newton_exact_factor(dataset, n):
    """The functions behind the data: column k of U1r/h is the cell average
    (1/h) int_{x-h/2}^{x+h/2} a_k exp(-t_k^2 s^2) ds of a sinc-quadrature Gaussian (fitted
    here: a_k, t_k reproduce the columns to ~1e-13 relative, point samples of a Gaussian only
    to ~1e-8), a smooth function of x that the fit must follow between the grid points."""
    from scipy.optimize import least_squares
    from scipy.special import erf

    u = _load(dataset, f"Newt_canon_{n}.mat")["U1r"]
    h = 2 / n
    f = u[:, :math.ceil(u.shape[1] / 2) - 3] / h
    g = _cell_centred(n)

    def average(p, x):
        a, t = p
        return a * math.sqrt(math.pi) / (2 * t * h) * (erf(t * (x + h / 2)) - erf(t * (x - h / 2)))

    params = []
    for col in f.T:
        fit = least_squares(lambda p, col=col: (average(p, g) - col) / col.max(),
                            [col.max(), 1.0], xtol=1e-15, ftol=1e-15, gtol=1e-15)
        assert np.max(np.abs(average(fit.x, g) - col)) <= 1e-12 * col.max()
        params.append(fit.x)
    return f, lambda x: np.stack([average(p, np.asarray(x)) for p in params], axis=1)


@pytest.mark.parametrize("n", [256, 512, 1024, 2048])
def test_newton_long_range_ranks_and_errors(dataset, n, rng):
    ct, err = _newton_long_range(dataset, n, 128, rng)
    assert err <= 1e-7  # on the grid (the paper's measure); seen 2.3e-8 .. 5.7e-9
    assert ct.ranks == (NEWTON_RANKS[n],) * 3
    assert NEWTON_RANKS[n] == PAPER_NEWTON_RANKS[n] - 2


@pytest.mark.parametrize("n", [256, 1024])
def test_newton_long_range_between_grid_points_and_rank_margin(dataset, n, rng):
    """Off the grid the tensor follows the exact functions behind the data; its ranks are
    those built from the exact functions (sampled at the Lobatto points), and the HOSVD tail
    criterion is far from its threshold at both the rank and one below it (rounding of the
    data cannot flip it: the rank is the same on every LAPACK build)."""
    f, exact = _newton_exact_factor(dataset, n)
    r = f.shape[1]
    ct = ChebTucker.from_cp(np.ones(r), [f] * 3, domain=(-1, 1), degree=128, tol=1e-7,
                            grid=[_cell_centred(n)] * 3)
    ref_ct = ChebTucker.from_cp(np.ones(r), [exact] * 3, domain=(-1, 1), degree=128, tol=1e-7)
    assert ct.ranks == ref_ct.ranks == (NEWTON_RANKS[n],) * 3
    pts = rng.uniform(-1, 1, (20000, 3))
    ref = np.sum(exact(pts[:, 0]) * exact(pts[:, 1]) * exact(pts[:, 2]), axis=1)
    assert np.max(np.abs(ct(pts) - ref)) / np.max(np.abs(ref)) <= 1e-7  # seen 2.3e-8, 5.7e-9
    for s, rank in zip(ct.singular_values, ct.ranks, strict=True):
        s = np.asarray(s)
        threshold = 1e-7 * np.linalg.norm(s) / math.sqrt(3)
        # seen 0.62 and 35 (n = 256), 0.29 and 5.2 (n = 1024)
        assert np.linalg.norm(s[rank:]) <= 0.7 * threshold
        assert np.linalg.norm(s[rank - 1:]) >= 3 * threshold


@pytest.mark.parametrize("n", [256, 512, 1024, 2048])
def test_paper_ranks_are_those_of_the_coefficient_factor(dataset, n):
    """The paper's ranks 9, 11, 12, 13 are the epsilon-ranks sigma_{r+1} <= eps sigma_1 of
    the m x R_l Chebyshev coefficient matrix of the factor columns (m = 129, eps = 1e-7): the
    factor truncation of the RHOSVD, before the core is truncated again (our ranks). Far from
    the threshold on both sides (seen sigma_r / threshold 8.2 .. 5.4, sigma_{r+1} / threshold
    0.038 .. 0.024)."""
    from sci.chebyshev_tucker import chebyshev_points, values_to_coefficients
    from sci.chebyshev_tucker._fit import floater_hormann_coefficients

    u = _load(dataset, f"Newt_canon_{n}.mat")["U1r"]
    f = u[:, :math.ceil(u.shape[1] / 2) - 3] / (2 / n)
    values, _, _ = floater_hormann_coefficients(f, _cell_centred(n), chebyshev_points(129),
                                                None, np.ones(f.shape[1]), 0)
    s = np.linalg.svd(values_to_coefficients(values, axes=0), compute_uv=False)
    threshold = 1e-7 * s[0]
    rank = int(np.sum(s > threshold))
    assert rank == PAPER_NEWTON_RANKS[n]
    assert s[rank - 1] >= 4 * threshold and s[rank] <= 0.1 * threshold


def test_newton_long_range_needs_more_points_at_4096(dataset, rng):
    # Spec: m = 129 is too few at n = 4096 (~1e-4), m = 257 gives ~7.5e-10.
    _, err129 = _newton_long_range(dataset, 4096, 128, rng)
    _, err257 = _newton_long_range(dataset, 4096, 256, rng)
    assert 1e-5 < err129 < 1e-3
    assert err257 < 1e-8


def test_biomolecule_500_particles(dataset, rng):
    d = _load(dataset, "n256_Pn500.mat")
    led = d["LRed"]
    w = led.LAM1C / d["Hunif"] ** 3
    f = [led.CU1, led.CU2, led.CU3]
    g = _cell_centred(256)
    ct = ChebTucker.from_cp(w, f, domain=(-1, 1), degree=128, tol=1e-6, grid=(g, g, g))
    assert _cp_error(ct, w, f, [g, g, g], rng) <= 3e-6
    assert max(ct.ranks) <= 50  # from a CP rank of 743
    coarse = ChebTucker.from_cp(w, f, domain=(-1, 1), degree=64, tol=1e-6, grid=(g, g, g))
    assert _cp_error(coarse, w, f, [g, g, g], rng) > 1e-5  # m = 65 does not resolve it


def test_lattice_long_range(dataset, rng):
    d = _load(dataset, "Lattice_n960_ParticlesNumber_2304_Rank_50.mat")
    keep = 25 - 11  # drop the 11 narrowest terms of each sign (README)
    pos, neg = d["ASC"], d["AvC"]
    f = [np.concatenate([getattr(pos, f"U{k}k")[:, :keep], getattr(neg, f"U{k}k")[:, :keep]],
                        axis=1) for k in (1, 2, 3)]
    w = np.concatenate([np.ones(keep), -np.ones(keep)])
    grids = [d["xcol"], d["ycol"], d["zcol"]]
    ct = ChebTucker.from_cp(w, f, domain=(-1, 1), degree=128, tol=1e-5, grid=grids)
    assert _cp_error(ct, w, f, grids, rng) <= 3e-5
    assert max(ct.ranks) <= 14

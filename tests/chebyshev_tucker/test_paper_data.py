"""Reproduce the paper's own data (../shared/data/chebtuck-paper, see its README)."""

import math

import numpy as np
import pytest

from sci.chebyshev_tucker import ChebTucker

scipy_io = pytest.importorskip("scipy.io")

# The paper's data are grid samples and its errors are measured on the grid; several of these
# fits (e.g. degree 128 on 256 points) are unreliable between grid points, which from_cp
# reports with IllConditionedFitWarning (tested in test_format.py). Here it is expected.
pytestmark = pytest.mark.filterwarnings(
    "ignore::sci.chebyshev_tucker.IllConditionedFitWarning"
)

# Tucker ranks reported for the long-range Newton kernel at m = 129, tol 1e-7 (spec).
PAPER_NEWTON_RANKS = {256: 9, 512: 11, 1024: 12, 2048: 13}


def _load(shared_data, name):
    path = shared_data / "chebtuck-paper" / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return scipy_io.loadmat(path, squeeze_me=True, struct_as_record=False)


def _cell_centred(n):
    return -1 + (np.arange(n) + 0.5) * 2 / n


def _cp_error(ct, weights, factors, grids, rng, samples=20000):
    idx = np.stack([rng.integers(0, f.shape[0], samples) for f in factors], axis=1)
    pts = np.stack([g[idx[:, d]] for d, g in enumerate(grids)], axis=1)
    ref = (factors[0][idx[:, 0]] * factors[1][idx[:, 1]] * factors[2][idx[:, 2]]) @ weights
    return np.max(np.abs(ct(pts) - ref)) / np.max(np.abs(ref))


def _newton_long_range(shared_data, n, degree, rng):
    d = _load(shared_data, f"Newt_canon_{n}.mat")
    u = d["U1r"]
    r_long = math.ceil(u.shape[1] / 2) - 3
    f = u[:, :r_long] / (2 / n)  # divide by h to get values
    g = _cell_centred(n)
    ct = ChebTucker.from_cp(np.ones(r_long), [f, f, f], domain=(-1, 1), degree=degree,
                            tol=1e-7, grid=(g, g, g))
    return ct, _cp_error(ct, np.ones(r_long), [f, f, f], [g, g, g], rng)


@pytest.mark.parametrize("n", [256, 512, 1024, 2048])
def test_newton_long_range_ranks_and_errors(shared_data, n, rng):
    ct, err = _newton_long_range(shared_data, n, 128, rng)
    assert err <= 1e-7
    # Our epsilon-ranks (true HOSVD criterion on the coefficient tensor after RHOSVD) are at
    # most the paper's, which truncates the factor SVDs more conservatively -- except that at
    # n = 256 the degree-128 least-squares fit on 256 equispaced points has condition number
    # ~1e14: rounding in its tail coefficients (LAPACK-build dependent) can add one rank.
    slack = 1 if n == 256 else 0
    assert max(ct.ranks) <= PAPER_NEWTON_RANKS[n] + slack
    assert max(ct.ranks) >= PAPER_NEWTON_RANKS[n] - 3


def test_newton_long_range_needs_more_points_at_4096(shared_data, rng):
    # Spec: m = 129 is too few at n = 4096 (~1e-4), m = 257 gives ~7.5e-10.
    _, err129 = _newton_long_range(shared_data, 4096, 128, rng)
    _, err257 = _newton_long_range(shared_data, 4096, 256, rng)
    assert 1e-5 < err129 < 1e-3
    assert err257 < 1e-8


def test_biomolecule_500_particles(shared_data, rng):
    d = _load(shared_data, "n256_Pn500.mat")
    led = d["LRed"]
    w = led.LAM1C / d["Hunif"] ** 3
    f = [led.CU1, led.CU2, led.CU3]
    g = _cell_centred(256)
    ct = ChebTucker.from_cp(w, f, domain=(-1, 1), degree=128, tol=1e-6, grid=(g, g, g))
    assert _cp_error(ct, w, f, [g, g, g], rng) <= 3e-6
    assert max(ct.ranks) <= 50  # from a CP rank of 743
    coarse = ChebTucker.from_cp(w, f, domain=(-1, 1), degree=64, tol=1e-6, grid=(g, g, g))
    assert _cp_error(coarse, w, f, [g, g, g], rng) > 1e-5  # m = 65 does not resolve it


def test_lattice_long_range(shared_data, rng):
    d = _load(shared_data, "Lattice_n960_ParticlesNumber_2304_Rank_50.mat")
    keep = 25 - 11  # drop the 11 narrowest terms of each sign (README)
    pos, neg = d["ASC"], d["AvC"]
    f = [np.concatenate([getattr(pos, f"U{k}k")[:, :keep], getattr(neg, f"U{k}k")[:, :keep]],
                        axis=1) for k in (1, 2, 3)]
    w = np.concatenate([np.ones(keep), -np.ones(keep)])
    grids = [d["xcol"], d["ycol"], d["zcol"]]
    ct = ChebTucker.from_cp(w, f, domain=(-1, 1), degree=128, tol=1e-5, grid=grids)
    assert _cp_error(ct, w, f, grids, rng) <= 3e-5
    assert max(ct.ranks) <= 14

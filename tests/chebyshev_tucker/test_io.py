"""Reading PQR and XYZ files, and the adenylate kinase protein as the real test case."""

import numpy as np
import pytest

from sci.chebyshev_tucker import (
    RangeSeparatedPotential,
    direct_potential,
    read_pqr,
    read_xyz,
)


@pytest.fixture(scope="module")
def adk(dataset):
    return read_pqr(dataset("proteins/adk_open.pqr"))


def test_read_adk(adk):
    x, q, r = adk
    assert x.shape == (3341, 3) and q.shape == (3341,) and r.shape == (3341,)
    # PDB2PQR/CHARMM charges are integral per residue: the total is an integer (-4 e here).
    assert q.sum() == pytest.approx(round(q.sum()), abs=1e-6)
    assert round(q.sum()) == -4
    assert np.all(r >= 0) and np.all(r < 3)
    assert x[0].tolist() == [-11.921, 26.307, 10.41]  # first ATOM record (no chain id)
    assert (q[0], r[0]) == (-0.3, 1.85)


def test_adk_potential_against_direct_sum(adk):
    x, q, _ = adk
    tol = 1e-5
    v = RangeSeparatedPotential(x, q, tol=tol, degree=48)
    lo = np.array([b[0] for b in v.domain])
    hi = np.array([b[1] for b in v.domain])
    rng = np.random.default_rng(4)
    pts = rng.uniform(lo, hi, (400, 3))
    ref = direct_potential(x, q, pts)
    assert np.max(np.abs(v(pts) - ref)) <= 3 * tol * np.max(np.abs(ref))
    long_ref = direct_potential(x, q, pts, kernel="long_range",
                                exponential_sum=v.long_range.exponential_sum)
    assert np.max(np.abs(v.long_range(pts) - long_ref)) <= 3 * tol * np.max(np.abs(long_ref))
    # compact: far fewer bytes than even a 64^3 grid of values
    assert v.long_range.nbytes < 8 * 64**3


def test_pqr_errors(tmp_path):
    p = tmp_path / "bad.pqr"
    p.write_text("ATOM      1  N   MET A   1      -1.000   abc   3.000 -0.3000 1.8500\n")
    with pytest.raises(ValueError, match="bad.pqr:1: cannot read"):
        read_pqr(p)
    p.write_text("REMARK nothing\n")
    with pytest.raises(ValueError, match="no ATOM or HETATM"):
        read_pqr(p)
    p.write_text("ATOM      1  N   MET A   1      -1.000   nan   3.000 -0.3000 1.8500\n")
    with pytest.raises(ValueError, match="NaN or infinity"):
        read_pqr(p)


def test_xyz(tmp_path):
    p = tmp_path / "w.xyz"
    p.write_text("3\nwater\nO 0 0 0 -0.834\nH 0.9572 0 0 0.417\nH -0.24 0.927 0 0.417\n")
    x, q, el = read_xyz(p)
    assert el == ["O", "H", "H"] and x.shape == (3, 3)
    assert q.sum() == pytest.approx(0.0, abs=1e-12)
    p.write_text("2\nc\nO 0 0 0 -0.834\n")
    with pytest.raises(ValueError, match="header says 2 atoms"):
        read_xyz(p)
    p.write_text("1\nc\nO 0 0 0\n")
    with pytest.raises(ValueError, match="expected 'element x y z charge'"):
        read_xyz(p)

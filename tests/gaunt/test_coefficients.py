"""Gaunt coefficients and 3j symbols against exact (sympy) and exact-rational (mpmath) oracles."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sci
from sci.gaunt import gaunt, gaunt_table, real_gaunt, wigner_3j
from theory import gaunt as oracle


@functools.cache
def _exact_3j(args):
    return np.array([float(oracle.wigner_3j(*t)) for t in args])


@functools.cache
def _exact_coupling(rows):
    return np.array([(-1.0) ** c * float(oracle.gaunt(a, b, e, p, q, -c))
                     for a, b, e, p, q, c in rows])


def _lm(index):
    l = np.floor(np.sqrt(index)).astype(int)
    return l, index - l * l - l


def test_wigner_3j_matches_sympy_exhaustively_small_l(xp):
    # Every symbol with l1, l2 <= 4 (and all l3): the recursion's branches (l3min = 0, n = 1,
    # n = 2, matching in and outside a classical region) all occur. Arguments of each library
    # give a result there, on their device (issue 13: on the GPU the test's np.asarray of a
    # CuPy result failed; on the strict leg np.asarray of a device1 array fails the same way).
    args = tuple(
        (l1, l2, l3, m1, m2, -m1 - m2)
        for l1 in range(5) for l2 in range(5) for l3 in range(abs(l1 - l2), l1 + l2 + 1)
        for m1 in range(-l1, l1 + 1) for m2 in range(-l2, l2 + 1) if abs(m1 + m2) <= l3
    )
    a = np.array(args).T
    result = wigner_3j(*(xp.asarray(v) for v in a))
    assert xp.is_leg_array(result) and result.dtype == xp.float64
    ours = xp.to_numpy(result)
    exact = _exact_3j(args)
    # Recursion of ~10 steps in float64: a few ulps.
    np.testing.assert_allclose(ours, exact, rtol=1e-13, atol=1e-15)


def test_complex_table_matches_sympy_l8(backend):
    # Spec reference: complex table l <= 8 vs sympy exact, <= 1e-14 absolute. sympy takes
    # ~0.3 ms per coefficient, so a seeded sample of 250 entries of the 8 x 8 table is checked
    # against sympy (the complete l <= 4 table is checked exactly in the next test).
    t = gaunt_table(8, basis="complex")
    rng = np.random.default_rng(0)
    pick = rng.choice(t.nnz, 250, replace=False)
    l1, m1 = _lm(t.index1[pick])
    l2, m2 = _lm(t.index2[pick])
    l3, m3 = _lm(t.index3[pick])
    rows = zip(*(v.tolist() for v in (l1, l2, l3, m1, m2, m3)), strict=True)
    exact = _exact_coupling(tuple(rows))
    np.testing.assert_allclose(t.value[pick], exact, rtol=0, atol=1e-14)


def test_complex_table_is_complete_and_exact_l4():
    t = gaunt_table(4, lmax2=3, lmax_out=5, basis="complex")
    dense = t.dense()
    ref = np.zeros_like(dense)
    for i1 in range(25):
        for i2 in range(16):
            for i3 in range(36):
                (l1, m1), (l2, m2), (l3, m3) = _lm(i1), _lm(i2), _lm(i3)
                ref[i1, i2, i3] = (-1.0) ** m3 * float(
                    oracle.gaunt_mp(int(l1), int(l2), int(l3), int(m1), int(m2), int(-m3)))
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-15)
    # Zeros are zeros: every entry the selection rules omit is exactly zero in the oracle.
    # The converse fails only at "non-trivial" zeros of the 3j symbol (e.g. (3 3 2; -2 2 0)),
    # which no selection rule predicts: there the recursion returns rounding (~1e-17).
    assert np.all(ref[dense == 0] == 0)
    assert np.abs(dense[ref == 0]).max() <= 1e-15


def test_real_table_matches_sympy_l6():
    # Spec: real table l <= 6 vs sympy exact <= 1e-14 absolute (sympy real_gaunt is slow:
    # ~1.5 ms per call, so l1, l2 <= 2 exhaustively and a sample of the l <= 6 table).
    t = gaunt_table(2, basis="real")
    dense = t.dense()
    ref = np.zeros_like(dense)
    for i1 in range(9):
        for i2 in range(i1, 9):
            for i3 in range(25):
                (l1, m1), (l2, m2), (l3, m3) = _lm(i1), _lm(i2), _lm(i3)
                if (l1 + l2 + l3) % 2 or not abs(l1 - l2) <= l3 <= l1 + l2:
                    continue
                v = float(oracle.real_gaunt(int(l1), int(l2), int(l3), int(m1), int(m2), int(m3)))
                ref[i1, i2, i3] = ref[i2, i1, i3] = v
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-14)
    assert np.all(ref[dense == 0] == 0)
    big = gaunt_table(6, basis="real")
    pick = np.random.default_rng(1).choice(big.nnz, 30, replace=False)
    l1, m1 = _lm(big.index1[pick])
    l2, m2 = _lm(big.index2[pick])
    l3, m3 = _lm(big.index3[pick])
    rows = zip(l1, l2, l3, m1, m2, m3, strict=True)
    exact = [float(oracle.real_gaunt(*map(int, t))) for t in rows]
    np.testing.assert_allclose(big.value[pick], exact, rtol=0, atol=1e-14)


def test_gaunt_high_degree_relative_accuracy():
    # Against exact rational Racah sums (40 digits) for degrees up to 100: <= 1e-13 relative.
    rng = np.random.default_rng(2)
    rows = []
    while len(rows) < 40:
        l1, l2 = rng.integers(20, 101, 2)
        l3 = int(rng.integers(abs(l1 - l2), min(l1 + l2, 100) + 1))
        if (l1 + l2 + l3) % 2:
            continue
        m1 = int(rng.integers(-l1, l1 + 1))
        m2 = int(rng.integers(max(-l2, -l3 - m1), min(l2, l3 - m1) + 1))
        rows.append((int(l1), int(l2), l3, m1, m2, -m1 - m2))
    a = np.array(rows).T
    ours = np.asarray(gaunt(*a))
    exact = np.array([float(oracle.gaunt_mp(*r)) for r in rows])
    assert np.all(exact != 0)
    np.testing.assert_allclose(ours, exact, rtol=1e-13, atol=0)


def test_gaunt_degree_200_to_1000():
    # Relative accuracy holds for tiny values too (1.8e-31 below): no cancellation.
    rows = [(200, 150, 250, 37, -120, 83), (200, 200, 400, 0, 0, 0), (180, 190, 12, 5, -3, -2),
            (200, 199, 1, 100, -100, 0), (1000, 999, 3, 500, -501, 1),
            (800, 800, 1600, 0, 0, 0), (700, 650, 90, -600, 640, -40)]
    ours = np.asarray(gaunt(*np.array(rows).T))
    exact = np.array([float(oracle.gaunt_mp(*r, dps=60)) for r in rows])
    np.testing.assert_allclose(ours, exact, rtol=1e-12, atol=0)


@given(st.lists(st.tuples(*(st.integers(0, 7),) * 3, *(st.integers(-7, 7),) * 3),
                min_size=1, max_size=20))
def test_selection_rules_exact_zeros(rows):
    a = np.array(rows).T
    with sci.use_backend("numpy"):
        ours = np.asarray(gaunt(*a))
        ours_real = np.asarray(real_gaunt(*a))
    for r, v, vr in zip(rows, ours, ours_real, strict=True):
        exact = float(oracle.gaunt_mp(*r, dps=30))
        assert abs(v - exact) <= 1e-14
        assert exact == 0 if v == 0 else True  # selection rules: exact zeros
        if vr != 0:
            assert abs(vr - float(oracle.real_gaunt(*r))) <= 1e-14
        elif all(abs(m) <= l for l, m in zip(r[:3], r[3:], strict=True)):
            assert float(oracle.real_gaunt(*r)) == 0


def test_backends_agree_on_tables():
    with sci.use_backend("numpy"):
        a = gaunt_table(5, lmax_out=7)
    with sci.use_backend("numba"):
        b = gaunt_table(5, lmax_out=7)
    np.testing.assert_array_equal(a.index3, b.index3)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-15, atol=0)


def test_bad_input():
    with pytest.raises(TypeError, match="l1 must be integers"):
        gaunt(1.5, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        gaunt(1, -1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="do not broadcast"):
        real_gaunt([1, 2], [1, 2, 3], 2, 0, 0, 0)
    with pytest.raises(ValueError, match="l3 must be <= 4096"):
        gaunt(1, 1, 10**6, 0, 0, 0)
    with pytest.raises(ValueError, match="lmax must be >= 0"):
        gaunt_table(-1)
    with pytest.raises(ValueError, match="basis must be"):
        gaunt_table(2, basis="spherical")
    with pytest.raises(ValueError, match="Gaunt table would need"):
        gaunt_table(3000)


def test_real_gaunt_high_degree_relative_accuracy():
    rng = np.random.default_rng(3)
    rows = []
    while len(rows) < 15:
        l1, l2 = (int(v) for v in rng.integers(30, 101, 2))
        l3 = int(rng.integers(abs(l1 - l2), min(l1 + l2, 100) + 1))
        mu1 = int(rng.integers(-l1, l1 + 1))
        mu2 = int(rng.integers(-l2, l2 + 1))
        mu3 = abs(abs(mu1) - abs(mu2)) if rng.random() < 0.5 else abs(mu1) + abs(mu2)
        mu3 = -mu3 if (mu1 < 0) != (mu2 < 0) else mu3
        if (l1 + l2 + l3) % 2 or abs(mu3) > l3 or mu3 == 0 and (mu1 < 0) != (mu2 < 0):
            continue
        rows.append((l1, l2, l3, mu1, mu2, mu3))
    ours = np.asarray(real_gaunt(*np.array(rows).T))
    exact = np.array([float(oracle.real_gaunt_mp(*r)) for r in rows])
    assert np.all(exact != 0)
    np.testing.assert_allclose(ours, exact, rtol=1e-13, atol=0)

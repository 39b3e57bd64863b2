"""The complete Clebsch-Gordan product (issue 14): the antisymmetric (bracket) paths, their
path constants against an exact sympy oracle, the grid method against the sparse tables,
e3nn path by path, equivariance with parity, every array library, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sci
from sci._validation import MemoryLimitError
from sci.backend import to_numpy
from sci.gaunt import (
    bracket_table,
    cg_path_constant,
    cg_tensor_product,
    e3nn_path_factor,
    gaunt_tensor_product,
    random_rotation,
    rotate,
)
from theory import gaunt as oracle

# Tolerances: the grid method sums O(L^2) terms of size O(L) per coefficient in float64;
# 1e-12 relative to the largest coefficient leaves two orders of magnitude over the measured
# round-off (about 1e-14 at L = 8).
RTOL = 1e-12


def _odd_paths(lmax):
    return [(l1, l2, l3) for l1 in range(1, lmax + 1) for l2 in range(1, lmax + 1)
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1) if (l1 + l2 + l3) % 2]


def _clebsch_gordan(l1, m1, l2, m2, l3, m3):
    from sympy.physics.quantum.cg import CG

    return float(CG(l1, m1, l2, m2, l3, m3).doit())


# ------------------------------------------------------------------ path constants (oracle)


def test_path_constants_against_the_exact_bracket_integral():
    """Every antisymmetric path with l <= 6: the sympy integral of conj(Y3) {Y1, Y2} equals
    i K <l1 m1 l2 m2 | l3 m3>, at the first (m1, m2) with a nonzero CG coefficient and at a
    second one (Wigner-Eckart: the ratio does not depend on m)."""
    import sympy as sp

    paths = _odd_paths(6)
    assert len(paths) == 69  # l1, l2, l3 <= 6, triangle, odd sum
    for l1, l2, l3 in paths:
        pairs = [(m1, m2) for m1 in range(-l1, l1 + 1) for m2 in range(-l2, l2 + 1)
                 if abs(m1 + m2) <= l3 and abs(_clebsch_gordan(l1, m1, l2, m2, l3, m1 + m2))
                 > 1e-12]
        for m1, m2 in (pairs[0], pairs[len(pairs) // 2]):
            exact = complex(sp.N(oracle.bracket_gaunt(l1, l2, l3, m1, m2, m1 + m2), 30))
            want = 1j * cg_path_constant(l1, l2, l3) * _clebsch_gordan(l1, m1, l2, m2, l3,
                                                                     m1 + m2)
            assert abs(exact.real) == 0.0
            assert exact.imag == pytest.approx(want.imag, rel=1e-13, abs=1e-15), (l1, l2, l3)


def test_bracket_vanishes_on_even_paths():
    """The oracle itself: the bracket couples nothing into l1 + l2 + l3 even."""
    for l1, l2, l3, m1, m2 in [(1, 1, 2, 1, 0), (2, 1, 1, -1, 1), (3, 2, 3, 2, -1),
                               (2, 2, 2, 1, 1), (3, 3, 0, 2, -2)]:
        assert oracle.bracket_gaunt(l1, l2, l3, m1, m2, m1 + m2) == 0


def test_even_path_constants_against_sympy_gaunt():
    import sympy as sp

    for l1, l2, l3 in [(1, 1, 0), (1, 1, 2), (2, 3, 3), (4, 2, 6), (5, 3, 4)]:
        m1, m2 = 1, -1 if l2 else 0
        exact = float(sp.N((-1) ** (m1 + m2) * oracle.gaunt(l1, l2, l3, m1, m2, -(m1 + m2)),
                           30))
        want = cg_path_constant(l1, l2, l3) * _clebsch_gordan(l1, m1, l2, m2, l3, m1 + m2)
        assert exact == pytest.approx(want, rel=1e-13, abs=1e-15)


def test_every_path_has_a_nonzero_constant():
    """No path of the triangle rule is lost: K != 0 for every (l1, l2, l3), l <= 24."""
    for l1 in range(25):
        for l2 in range(25):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                if (l1 + l2 + l3) % 2 and (l1 == 0 or l2 == 0):
                    continue  # not a path: l3 = l2 when l1 = 0 makes the sum even
                assert cg_path_constant(l1, l2, l3) != 0.0, (l1, l2, l3)


def test_real_table_against_the_exact_real_integral():
    """Every entry (zeros included) of the real bracket table for l <= 2 equals the exact
    int Z3 {Z1, Z2} of sympy's real harmonics (the convention of real_gaunt)."""
    import sympy as sp

    dense = bracket_table(2, lmax_out=2).dense()
    for i1 in range(9):
        for i2 in range(9):
            for i3 in range(9):
                l1, l2, l3 = (math.isqrt(i) for i in (i1, i2, i3))
                m1, m2, m3 = i1 - l1 * l1 - l1, i2 - l2 * l2 - l2, i3 - l3 * l3 - l3
                if abs(abs(m1) - abs(m2)) != abs(m3) and abs(m1) + abs(m2) != abs(m3):
                    assert dense[i1, i2, i3] == 0.0
                    continue
                exact = float(sp.N(oracle.real_bracket_gaunt(l1, l2, l3, m1, m2, m3), 30))
                assert dense[i1, i2, i3] == pytest.approx(exact, rel=1e-13, abs=1e-15)


def test_complex_table_is_the_closed_form():
    t = bracket_table(3, basis="complex")
    assert t.basis == "complex" and t.nnz > 0
    for k in range(0, t.nnz, 7):
        l1, l2, l3 = (math.isqrt(int(i)) for i in (t.index1[k], t.index2[k], t.index3[k]))
        m1 = int(t.index1[k]) - l1 * l1 - l1
        m2 = int(t.index2[k]) - l2 * l2 - l2
        want = cg_path_constant(l1, l2, l3) * _clebsch_gordan(l1, m1, l2, m2, l3, m1 + m2)
        assert t.value[k] == pytest.approx(want, rel=1e-13)


# -------------------------------------------------------------------------- the product


def test_cross_product():
    """Degree-1 inputs: {a.r, b.r} = (a x b).r, in the real basis where (Z_1^1, Z_1^-1,
    Z_1^0) = sqrt(3/4pi) (-x, -y, z)."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(3), rng.standard_normal(3)

    def coef(v):  # coefficients of v . r in the real basis
        c = math.sqrt(4 * math.pi / 3)
        return np.array([0.0, -v[1] * c, v[2] * c, -v[0] * c])

    z = cg_tensor_product(coef(a), coef(b), paths="odd", lmax_out=1)
    np.testing.assert_allclose(z, coef(np.cross(a, b)), rtol=1e-14, atol=1e-14)


@given(l1=st.integers(0, 8), l2=st.integers(0, 8), lo=st.integers(0, 17),
       paths=st.sampled_from(["all", "even", "odd"]), seed=st.integers(0, 2**16))
def test_grid_equals_direct(l1, l2, lo, paths, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, (l1 + 1) ** 2))
    y = rng.standard_normal((1, (l2 + 1) ** 2))
    fast = cg_tensor_product(x, y, paths=paths, lmax_out=lo)
    ref = cg_tensor_product(x, y, paths=paths, lmax_out=lo, method="direct")
    assert fast.shape == ref.shape == ((3, 2, (lo + 1) ** 2) if paths == "all"
                                       else (3, (lo + 1) ** 2))
    scale = max(np.abs(ref).max(), 1.0)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=RTOL * scale)


@pytest.mark.parametrize("method", ["grid", "direct"])
def test_even_part_is_the_gaunt_product(method):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((4, 25)), rng.standard_normal((4, 16))
    z = cg_tensor_product(x, y, paths="even", lmax_out=6, method=method)
    np.testing.assert_allclose(z, gaunt_tensor_product(x, y, lmax_out=6, method="direct"),
                               rtol=0, atol=1e-13 * np.abs(z).max())


def test_symmetry_and_degrees():
    """The even part is symmetric, the odd part antisymmetric; odd degrees stop at L1+L2-1."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 16)), rng.standard_normal((2, 16))
    z, zt = cg_tensor_product(x, y), cg_tensor_product(y, x)
    tol = RTOL * np.abs(z).max()
    np.testing.assert_allclose(zt[:, 0], z[:, 0], rtol=0, atol=tol)
    np.testing.assert_allclose(zt[:, 1], -z[:, 1], rtol=0, atol=tol)
    np.testing.assert_allclose(cg_tensor_product(x, x, paths="odd"), 0, atol=tol)
    assert np.abs(z[:, 1, 36:]).max() < tol < np.abs(z[:, 0, 36:]).max()


def test_weights_are_per_degree():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((2, 3, 9)), rng.standard_normal((3, 16))
    w1, w2, w3 = rng.standard_normal(3), rng.standard_normal((2, 1, 4)), rng.standard_normal(6)
    z = cg_tensor_product(x, y, weights=(w1, w2, w3))
    deg = lambda L: np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)  # noqa: E731
    want = cg_tensor_product(x * w1[deg(2)], y * w2[..., deg(3)]) * w3[deg(5)]
    assert z.shape == (2, 3, 2, 36)
    np.testing.assert_allclose(z, want, rtol=0, atol=RTOL * np.abs(want).max())


def test_equivariance_with_parity():
    """Rotations: the product commutes with the Wigner D-matrices. Inversion: coefficients
    of parity (-1)^l map to (-1)^l3 z (even part) and -(-1)^l3 z (odd part: a pseudotensor)."""
    rng = np.random.default_rng(7)
    L = 5
    x, y = rng.standard_normal((3, 36)), rng.standard_normal((3, 36))
    z = cg_tensor_product(x, y)
    for r in random_rotation(3, rng=rng):
        zr = cg_tensor_product(rotate(x, r), rotate(y, r))
        np.testing.assert_allclose(zr, rotate(z, r), atol=1e-12 * np.abs(z).max())
    parity = (-1.0) ** np.repeat(np.arange(2 * L + 1), 2 * np.arange(2 * L + 1) + 1)
    zi = cg_tensor_product(x * parity[:36], y * parity[:36])
    tol = RTOL * np.abs(z).max()
    np.testing.assert_allclose(zi[:, 0], parity * z[:, 0], rtol=0, atol=tol)
    np.testing.assert_allclose(zi[:, 1], -parity * z[:, 1], rtol=0, atol=tol)


def test_float32():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((2, 16)), rng.standard_normal((2, 9))
    z32 = cg_tensor_product(x.astype(np.float32), y.astype(np.float32))
    assert z32.dtype == np.float32
    np.testing.assert_allclose(z32, cg_tensor_product(x, y), atol=1e-5 * 10)


def test_e3nn_path_by_path():
    """Every path with l <= 8, odd paths included: e3nn's FullTensorProduct (float64) equals
    e3nn_path_factor x to_e3nn(this product), to 1e-12."""
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn's Clebsch-Gordan buffers in float64
    try:
        _e3nn_paths(torch, o3)
    finally:
        torch.set_default_dtype(default)


def _e3nn_paths(torch, o3):
    from sci.gaunt import from_e3nn, to_e3nn

    rng = np.random.default_rng(9)
    lmax = 8
    checked = {0: 0, 1: 0}
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            p = lambda l: "e" if l % 2 == 0 else "o"  # noqa: E731
            tp = o3.FullTensorProduct(f"1x{l1}{p(l1)}", f"1x{l2}{p(l2)}")
            x = np.zeros((2, (l1 + 1) ** 2))
            y = np.zeros((2, (l2 + 1) ** 2))
            x[:, l1 * l1:] = rng.standard_normal((2, 2 * l1 + 1))
            y[:, l2 * l2:] = rng.standard_normal((2, 2 * l2 + 1))
            lo = min(l1 + l2, lmax)
            z = cg_tensor_product(x, y, lmax_out=lo)
            xe = torch.from_numpy(to_e3nn(x)[:, l1 * l1:])
            ye = torch.from_numpy(to_e3nn(y)[:, l2 * l2:])
            with torch.no_grad():
                out = tp(xe, ye).numpy()
            offset = 0
            for mul_ir in tp.irreps_out:
                l3 = mul_ir.ir.l
                block = out[:, offset:offset + 2 * l3 + 1]
                offset += 2 * l3 + 1
                if l3 > lo:
                    continue
                odd = (l1 + l2 + l3) % 2
                # the output parity is that of the path: (-1)^(l1+l2)
                assert mul_ir.ir.p == (-1) ** (l1 + l2)
                ours = np.zeros((2, (lo + 1) ** 2))
                ours[:, l3 * l3:(l3 + 1) ** 2] = z[:, odd, l3 * l3:(l3 + 1) ** 2]
                mine = e3nn_path_factor(l1, l2, l3) * to_e3nn(ours)[:, l3 * l3:(l3 + 1) ** 2]
                scale = max(np.abs(block).max(), 1.0)
                np.testing.assert_allclose(mine, block, rtol=0, atol=1e-12 * scale,
                                           err_msg=str((l1, l2, l3)))
                # and back: the e3nn block in this basis is the path, rescaled
                back = np.zeros((2, (lo + 1) ** 2))
                back[:, l3 * l3:(l3 + 1) ** 2] = block
                np.testing.assert_allclose(from_e3nn(back) / e3nn_path_factor(l1, l2, l3),
                                           ours, atol=1e-12 * max(np.abs(ours).max(), 1.0))
                checked[odd] += 1
    want = {0: 0, 1: 0}
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                want[(l1 + l2 + l3) % 2] += 1
    assert checked == want == {0: 215, 1: 154}


# ---------------------------------------------------------------------- array libraries


def test_array_libraries(xp):
    """Each library and device: values equal the NumPy ones; the result stays in the input's
    library and on its device; float32 too."""
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((3, 16)), rng.standard_normal((3, 9))
    with sci.use_backend("numpy"):
        ref = cg_tensor_product(x, y)
        ref_d = cg_tensor_product(x, y, paths="odd", method="direct", lmax_out=3)
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-4)):
        xa, ya = xp.asarray(x, dtype=dtype), xp.asarray(y, dtype=dtype)
        z = cg_tensor_product(xa, ya)
        assert xp.is_leg_array(z) and z.dtype == getattr(xp, dtype)
        np.testing.assert_allclose(xp.to_numpy(z), ref, rtol=0, atol=tol * np.abs(ref).max())
    zd = cg_tensor_product(xp.asarray(x), xp.asarray(y), paths="odd", method="direct",
                           lmax_out=3, weights=(xp.asarray(np.ones(4)), None, None))
    assert xp.is_leg_array(zd)
    np.testing.assert_allclose(xp.to_numpy(zd), ref_d, atol=1e-12 * np.abs(ref_d).max())


def test_strict_refuses_mixed_libraries():
    strict = pytest.importorskip("array_api_strict")
    x = strict.asarray(np.ones((1, 4)), device=strict.Device("device1"))
    with pytest.raises(TypeError, match="x and y are arrays of different libraries"):
        cg_tensor_product(x, np.ones((1, 4)))


@pytest.mark.parametrize("method", ["grid", "direct"])
def test_torch_gradcheck(method):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = torch.tensor(rng.standard_normal((2, 9)), requires_grad=True)
    y = torch.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    z = cg_tensor_product(x, y, method=method)
    assert isinstance(z, torch.Tensor) and z.requires_grad
    assert torch.autograd.gradcheck(lambda a, b: cg_tensor_product(a, b, method=method),
                                    (x, y), eps=1e-6, atol=1e-7, rtol=1e-5)


# -------------------------------------------------------------------------- bad input


def test_bad_input(monkeypatch):
    x = np.ones((2, 4))
    with pytest.raises(ValueError, match="paths must be one of 'all', 'even', 'odd'"):
        cg_tensor_product(x, x, paths="both")
    with pytest.raises(ValueError, match="method must be one of 'grid', 'direct'"):
        cg_tensor_product(x, x, method="fourier")
    with pytest.raises(ValueError, match=r"\(L\+1\)\^2"):
        cg_tensor_product(np.ones(5), x)
    with pytest.raises(ValueError, match="must be finite"):
        cg_tensor_product(np.array([np.nan, 0, 0, 0]), x)
    with pytest.raises(TypeError):
        cg_tensor_product(x + 1j, x)
    with pytest.raises(ValueError, match="weights\\[2\\] must have a last axis of lmax\\+1 = 3"):
        cg_tensor_product(x, x, weights=(None, None, np.ones(2)))
    with pytest.raises(TypeError, match="weights must be None or a sequence"):
        cg_tensor_product(x, x, weights=np.ones(3))
    with pytest.raises(ValueError, match="must broadcast"):
        cg_tensor_product(np.ones((2, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="lmax_out"):
        cg_tensor_product(x, x, lmax_out=-1)
    with pytest.raises(ValueError, match="is not a path"):
        e3nn_path_factor(1, 1, 3)
    before = x.copy()
    cg_tensor_product(x, x)
    np.testing.assert_array_equal(x, before)  # inputs are not mutated


def test_memory_refused_up_front(monkeypatch):
    big = np.zeros((1, 4001**2), dtype=np.float32)  # 64 MB, degree 4000
    with pytest.raises(MemoryLimitError, match=r"grid tables of cg_tensor_product.*GiB"):
        cg_tensor_product(big, big)
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    with pytest.raises(MemoryLimitError, match=r"direct method's tables.*MiB"):
        cg_tensor_product(np.ones(81), np.ones(81), method="direct")
    with pytest.raises(MemoryLimitError, match=r"the output of 100000 rows.*MiB"):
        cg_tensor_product(np.ones((100000, 4)), np.ones(4))


def test_to_numpy_roundtrip_of_the_docstring_example():
    ex, ey = np.array([0.0, 0, 0, 1]), np.array([0.0, 1, 0, 0])
    assert to_numpy(cg_tensor_product(ex, ey, paths="odd"))[2] == pytest.approx(
        math.sqrt(3 / (4 * math.pi)), rel=1e-14)


def test_shapes_broadcast_and_empty():
    assert cg_tensor_product(np.zeros((0, 4)), np.ones(9)).shape == (0, 2, 16)
    z = cg_tensor_product(np.ones((2, 1, 4)), np.ones((3, 9)), paths="odd", lmax_out=1)
    assert z.shape == (2, 3, 4)
    # a list is a NumPy input; a constant times Y_1 has no odd part with itself
    np.testing.assert_allclose(cg_tensor_product([0.0, 1, 2, 3], [0.0, 2, 4, 6], paths="odd"),
                               0, atol=1e-14)

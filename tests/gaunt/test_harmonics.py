"""Spherical harmonics, basis changes, the 2D Fourier conversions and Wigner D-matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

import sci
from sci.gaunt import (
    complex_to_real,
    fourier_to_sh,
    from_e3nn,
    legendre_fourier_coefficients,
    random_rotation,
    real_to_complex,
    rotate,
    sh_to_fourier,
    spherical_harmonics,
    to_e3nn,
    wigner_D,
)
from theory import gaunt as oracle


def _scipy_sph(l, m, theta, phi):
    if hasattr(scipy.special, "sph_harm_y"):
        return scipy.special.sph_harm_y(l, m, theta, phi)
    return scipy.special.sph_harm(m, l, phi, theta)


def test_complex_harmonics_match_scipy(xp, rng):
    v = rng.standard_normal((7, 3))
    lmax = 10
    y = spherical_harmonics(lmax, xp.asarray(v), basis="complex")
    assert xp.is_leg_array(y)
    y = xp.to_numpy(y)
    r = np.linalg.norm(v, axis=1)
    theta, phi = np.arccos(v[:, 2] / r), np.arctan2(v[:, 1], v[:, 0])
    ref = np.stack([_scipy_sph(l, m, theta, phi) for l in range(lmax + 1)
                    for m in range(-l, l + 1)], -1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-14)


def test_real_harmonics_definition_and_conversion(rng):
    v = rng.standard_normal((5, 3))
    z = spherical_harmonics(6, v)
    y = spherical_harmonics(6, v, basis="complex")
    for l in range(7):
        for m in range(-l, l + 1):
            i, j = l * l + l + m, l * l + l + abs(m)
            ref = y[:, j].real * np.sqrt(2) if m > 0 else (
                y[:, j].imag * np.sqrt(2) if m < 0 else y[:, j].real)
            np.testing.assert_allclose(z[:, i], ref, atol=1e-15)
    a = rng.standard_normal((3, 49))
    c = real_to_complex(a)
    np.testing.assert_allclose(y @ c.T, z @ a.T, atol=1e-14)
    np.testing.assert_allclose(complex_to_real(c), a, atol=1e-15)


def test_orthonormal_to_degree_200():
    # Gauss-Legendre in cos(theta) with 201 nodes integrates degree 401 exactly: for fixed m the
    # associated Legendre functions from the recursion stay orthonormal to ~1e-13 at l = 200.
    lmax = 200
    x, w = np.polynomial.legendre.leggauss(lmax + 1)
    z = spherical_harmonics(lmax, theta=np.arccos(x), phi=np.zeros_like(x))
    for m, ls in ((0, (0, 1, 150, 198, 200)), (37, (37, 100, 199)), (150, (150, 170, 200)),
                  (200, (200,))):
        idx = [l * l + l + m for l in ls]
        # Over phi: 2 pi for m = 0, pi for cos^2 (Z = sqrt2 P cos(m phi) at phi = 0).
        gram = (2 * np.pi if m == 0 else np.pi) * (z[:, idx] * w[:, None]).T @ z[:, idx]
        np.testing.assert_allclose(gram, np.eye(len(ls)), atol=1e-13)


def test_component_normalization_and_angles(rng):
    v = rng.standard_normal((4, 3))
    z = spherical_harmonics(3, v, normalization="component")
    for l in range(4):
        np.testing.assert_allclose((z[:, l * l:(l + 1) ** 2] ** 2).sum(1), 2 * l + 1)
    r = np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(
        spherical_harmonics(3, theta=np.arccos(v[:, 2] / r), phi=np.arctan2(v[:, 1], v[:, 0])),
        spherical_harmonics(3, v), atol=1e-15)


def test_float32_kept(rng):
    out = spherical_harmonics(4, rng.standard_normal((3, 3)).astype(np.float32))
    assert out.dtype == np.float32


def test_e3nn_basis_map(rng):
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    v = rng.standard_normal((30, 3))
    lmax = 5
    ours = spherical_harmonics(lmax, v)
    theirs = np.concatenate([
        o3.spherical_harmonics(l, torch.tensor(v), normalize=True, normalization="integral")
        .numpy() for l in range(lmax + 1)], -1)
    a = rng.standard_normal((lmax + 1) ** 2)
    # The same function in both bases.
    np.testing.assert_allclose(ours @ a, theirs @ to_e3nn(a), atol=1e-13)
    np.testing.assert_allclose(from_e3nn(to_e3nn(a)), a, atol=1e-14)
    comp = np.concatenate([
        o3.spherical_harmonics(l, torch.tensor(v), normalize=True, normalization="component")
        .numpy() for l in range(lmax + 1)], -1)
    np.testing.assert_allclose(ours @ a, comp @ to_e3nn(a, normalization="component"),
                               atol=1e-13)


# ----------------------------------------------------------------------------- 2D Fourier


def test_fourier_coefficients_closed_form():
    # The paper's closed form y^{lm}_u = sqrt((2l+1)/4pi) i^{-m} Delta_{um} Delta_{u0} with the
    # exact Wigner d(pi/2) (Edmonds), against our FFT-sampled coefficients: <= 1e-14.
    lmax = 9
    p = legendre_fourier_coefficients(lmax)
    worst = 0.0
    for l in range(lmax + 1):
        for m in range(l + 1):
            for u in range(-l, l + 1):
                closed = (np.sqrt((2 * l + 1) / (4 * np.pi)) * (1j) ** (-m)
                          * oracle.wigner_small_d_half_pi(l, u, m)
                          * oracle.wigner_small_d_half_pi(l, u, 0))
                worst = max(worst, abs(p[m, l, u + lmax] - closed))
    assert worst <= 1e-14


def test_fourier_series_reproduces_function(xp, rng):
    # issue 13: on the GPU this test failed inside cupy.matmul (a NumPy array times the CuPy
    # harmonics); on the strict leg (device1) any host array mixed in fails the same way.
    lmax = 8
    to_numpy = xp.to_numpy
    for basis in ("real", "complex"):
        x = rng.standard_normal((2, (lmax + 1) ** 2))
        if basis == "complex":
            x = x + 1j * rng.standard_normal(x.shape)
        F = sh_to_fourier(xp.asarray(x), basis=basis)
        assert xp.is_leg_array(F)
        F = to_numpy(F)
        th, ph = rng.uniform(0, 2 * np.pi, (2, 25))
        # A torus point with theta > pi is the sphere point (2 pi - theta, phi + pi).
        sth = np.where(th <= np.pi, th, 2 * np.pi - th)
        sph = np.where(th <= np.pi, ph, ph + np.pi)
        u = np.arange(-lmax, lmax + 1)
        e = np.exp(1j * (u[None, :, None] * th[:, None, None]
                         + u[None, None, :] * ph[:, None, None]))
        values = np.einsum("buv,puv->bp", F, e)
        harmonics = spherical_harmonics(lmax, theta=xp.asarray(sth), phi=xp.asarray(sph),
                                        basis=basis)
        assert xp.is_leg_array(harmonics)
        ref = x @ to_numpy(harmonics).T
        np.testing.assert_allclose(values, ref, atol=1e-13)
        # Round trip f2s(s2f(c)) = c: spec 1e-13.
        back = fourier_to_sh(xp.asarray(F), lmax, basis=basis)
        assert xp.is_leg_array(back)
        back = to_numpy(back)
        np.testing.assert_allclose(back, x, atol=1e-13)


def test_fourier_sparsity():
    p = legendre_fourier_coefficients(6)
    m, l, u = np.nonzero(p)
    u = u - 6
    assert np.all((np.abs(u) <= l) & ((u - l) % 2 == 0) & (l >= m))


def test_fourier_bad_input():
    with pytest.raises(ValueError, match=r"\(L\+1\)\^2"):
        sh_to_fourier(np.ones(5))
    with pytest.raises(ValueError, match="odd, square"):
        fourier_to_sh(np.ones((4, 4)), 2)
    with pytest.raises(TypeError, match="must be real"):
        sh_to_fourier(np.ones(4) * 1j)


# ----------------------------------------------------------------------------- rotations


def test_wigner_D_is_a_representation(rng):
    r1, r2 = random_rotation(2, rng=rng)
    for basis in ("real", "complex"):
        for l in (0, 1, 4, 9):
            d1 = wigner_D(l, r1, basis=basis)
            np.testing.assert_allclose(d1 @ d1.conj().T, np.eye(2 * l + 1), atol=1e-13)
            np.testing.assert_allclose(
                wigner_D(l, r1 @ r2, basis=basis), d1 @ wigner_D(l, r2, basis=basis),
                atol=1e-13)


def test_rotate_moves_the_function(rng):
    # (R f)(r) = f(R^{-1} r): compare values at points.
    lmax = 6
    x = rng.standard_normal((lmax + 1) ** 2)
    r = random_rotation(rng=rng)
    pts = rng.standard_normal((10, 3))
    lhs = spherical_harmonics(lmax, pts) @ rotate(x, r)
    rhs = spherical_harmonics(lmax, pts @ r) @ x
    np.testing.assert_allclose(lhs, rhs, atol=1e-13)
    xc = real_to_complex(x)
    np.testing.assert_allclose(rotate(xc, r, basis="complex"), real_to_complex(rotate(x, r)),
                               atol=1e-13)


def test_harmonics_bad_input():
    with pytest.raises(ValueError, match="lmax must be >= 0"):
        spherical_harmonics(-1, [0, 0, 1.0])
    with pytest.raises(ValueError, match="lmax must be <= 4096"):
        spherical_harmonics(10**6, [0, 0, 1.0])
    with pytest.raises(TypeError, match="lmax must be an integer"):
        spherical_harmonics(2.0, [0, 0, 1.0])
    with pytest.raises(ValueError, match="nonzero"):
        spherical_harmonics(2, [0, 0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        spherical_harmonics(2, [0, np.nan, 1.0])
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        spherical_harmonics(2, [0, 1.0])
    with pytest.raises(ValueError, match="either vectors"):
        spherical_harmonics(2)
    with pytest.raises(ValueError, match="proper rotation"):
        wigner_D(1, np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="would need"):
        spherical_harmonics(4000, np.ones((10**6, 3)))


def test_backends_agree(rng):
    v = rng.standard_normal((4, 3))
    with sci.use_backend("numpy"):
        a = spherical_harmonics(12, v)
    with sci.use_backend("numba"):
        b = spherical_harmonics(12, v)
    np.testing.assert_array_equal(a, b)


@given(lmax=st.integers(0, 12), batch=st.lists(st.integers(1, 3), max_size=2),
       float32=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_fourier_conversion_backends_agree(lmax, batch, float32, seed):
    # The Numba kernel (sparse in l) against the array code (batched dense products).
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, (lmax + 1) ** 2))
    x = x.astype(np.float32) if float32 else x
    with sci.use_backend("numpy"):
        a = sh_to_fourier(x)
    with sci.use_backend("numba"):
        b = sh_to_fourier(x)
    assert a.dtype == b.dtype == (np.complex64 if float32 else np.complex128)
    assert a.shape == b.shape == (*batch, 2 * lmax + 1, 2 * lmax + 1)
    np.testing.assert_allclose(b, a, rtol=0, atol=(1e-5 if float32 else 1e-14) * max(
        1.0, float(np.abs(x).max())) * (lmax + 1))


@pytest.mark.parametrize(
    ("dtype", "scales", "rtol"),
    # float32: squares of 1e±30 over/underflow (max ~3e38, min subnormal ~1e-45); the scaled
    # path loses only a few ulps (eps32 ~ 1.2e-7). float64: 1e±200 likewise (eps64 ~ 2.2e-16).
    [(np.float32, (1e30, 1e-30, 3e19, 1e-23), 1e-5), (np.float64, (1e200, 1e-200, 1e160), 1e-12)],
)
@pytest.mark.parametrize("basis", ["real", "complex"])
def test_harmonics_of_huge_and_tiny_vectors(xp, dtype, scales, rtol, basis):
    to_numpy = xp.to_numpy
    rng = np.random.default_rng(7)
    unit = rng.standard_normal((5, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    # Axis-aligned and in-plane directions too (a zero component, a zero rho).
    unit = np.vstack([unit, [[1.0, 0, 0], [0, 0, -1.0], [0.6, -0.8, 0]]])
    ref = to_numpy(spherical_harmonics(6, xp.asarray(unit.astype(dtype)), basis=basis))
    for s in scales:
        v = (unit * s).astype(dtype)
        assert np.all(np.isfinite(v)) and np.all(np.abs(v).max(axis=1) > 0)
        got = to_numpy(spherical_harmonics(6, xp.asarray(v), basis=basis))
        assert got.dtype == ref.dtype
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol, err_msg=f"scale {s:g}")


def test_zero_vector_still_refused_among_tiny_ones(xp):
    tiny = xp.asarray(np.array([[1e-300, 0, 0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="vectors must be nonzero"):
        spherical_harmonics(1, tiny)


def test_convolution_edges_at_extreme_scales(xp):
    from sci.gaunt import gaunt_convolution

    to_numpy = xp.to_numpy
    x = xp.asarray(np.arange(1.0, 9.0).reshape(2, 1, 4))
    edges = np.array([[0.3, -0.4, 1.2], [1.0, 2.0, -2.0]])
    ref = to_numpy(gaunt_convolution(x, xp.asarray(edges), lmax_edge=2))
    for s in (1e200, 1e-200):
        got = to_numpy(gaunt_convolution(x, xp.asarray(edges * s), lmax_edge=2))
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_basis_conversions_on_every_library(xp, rng):
    from sci.gaunt import complex_to_real, from_e3nn, real_to_complex, to_e3nn

    x = rng.standard_normal((3, 16))
    with sci.use_backend("numpy"):
        refs = {"c": real_to_complex(x), "e": to_e3nn(x, normalization="component")}
    c = real_to_complex(xp.asarray(x))
    assert xp.is_leg_array(c)
    np.testing.assert_allclose(xp.to_numpy(c), refs["c"], rtol=0, atol=1e-15)
    back = complex_to_real(c)
    assert xp.is_leg_array(back)
    np.testing.assert_allclose(xp.to_numpy(back), x, rtol=0, atol=1e-14)
    e = to_e3nn(xp.asarray(x), normalization="component")
    assert xp.is_leg_array(e)
    np.testing.assert_allclose(xp.to_numpy(e), refs["e"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(xp.to_numpy(from_e3nn(e, normalization="component")), x,
                               rtol=0, atol=1e-13)

"""Chebyshev points, value <-> coefficient transforms, Vandermonde, interpolation bounds."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.polynomial import chebyshev as npcheb

import sci
from sci.chebyshev_tucker import (
    chebyshev_points,
    chebyshev_vandermonde,
    coefficients_to_values,
    values_to_coefficients,
)
from sci.chebyshev_tucker._chebyshev import degree_for_gaussian
from theory.chebyshev_tucker import gaussian_interpolation_bound


def test_points_match_numpy_chebpts2():
    for m in (2, 3, 8, 65):
        np.testing.assert_allclose(chebyshev_points(m), npcheb.chebpts2(m), atol=1e-15)


def test_points_on_interval_are_symmetric():
    x = chebyshev_points(33, domain=(-2.0, 2.0))
    assert x[0] == -2.0 and x[-1] == 2.0
    np.testing.assert_array_equal(x, -x[::-1])


def test_coefficients_solve_the_interpolation_system(backend, to_numpy):
    # Oracle: the interpolation conditions V c = f at the Lobatto points, solved directly.
    rng = np.random.default_rng(0)
    m = 17
    f = rng.standard_normal(m)
    c = to_numpy(values_to_coefficients(f))
    v = npcheb.chebvander(npcheb.chebpts2(m), m - 1)
    np.testing.assert_allclose(c, np.linalg.solve(v, f), atol=1e-13)


@given(
    shape=st.tuples(st.integers(2, 9), st.integers(2, 9), st.integers(2, 9)),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_round_trip_and_legs_agree_with_numpy(xp, shape, seed, dtype):
    values = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    with sci.use_backend("numpy"):
        expected = values_to_coefficients(values)
    c = values_to_coefficients(xp.asarray(values))
    assert xp.is_leg_array(c) and c.dtype == xp.asarray(values).dtype
    back = coefficients_to_values(c)
    assert xp.is_leg_array(back)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(xp.to_numpy(back), values, atol=tol * 10)
    np.testing.assert_allclose(xp.to_numpy(c), expected,
                               atol=1e-5 if dtype == np.float32 else 1e-13)
    c0 = values_to_coefficients(xp.asarray(values), axes=0)
    np.testing.assert_allclose(xp.to_numpy(c0), values_to_coefficients(values, axes=0),
                               atol=1e-5 if dtype == np.float32 else 1e-13)
    # The DCT route (numpy) and the FFT route (used on CuPy) against each other.
    with sci.use_backend("numpy"):
        fft = sci.backend.implementation("chebyshev_tucker.dct1", "cupy")
        dct = sci.backend.implementation("chebyshev_tucker.dct1", "numpy")
        for axis in range(3):
            np.testing.assert_allclose(fft(values.astype(np.float64), axis),
                                       dct(values.astype(np.float64), axis), atol=1e-11)


def test_single_axis_transform():
    x = chebyshev_points(9)
    cols = np.stack([x**2, x**3], axis=1)
    c = values_to_coefficients(cols, axes=0)
    np.testing.assert_allclose(c[:, 0], npcheb.poly2cheb([0, 0, 1]).tolist() + [0] * 6,
                               atol=1e-14)
    np.testing.assert_allclose(c[:, 1], npcheb.poly2cheb([0, 0, 0, 1]).tolist() + [0] * 5,
                               atol=1e-14)


@pytest.mark.parametrize("degree", [0, 1, 7])
def test_vandermonde_matches_numpy(xp, degree):
    x = np.linspace(-1, 1, 11)
    v = chebyshev_vandermonde(xp.asarray(x), degree)
    assert xp.is_leg_array(v)
    np.testing.assert_allclose(xp.to_numpy(v), npcheb.chebvander(x, degree), atol=1e-14)
    y = 3 + 2 * x  # domain (1, 5)
    np.testing.assert_allclose(xp.to_numpy(chebyshev_vandermonde(xp.asarray(y), 5,
                                                                 domain=(1, 5))),
                               npcheb.chebvander(x, 5), atol=1e-13)


@pytest.mark.parametrize("t", [1.0, 5.0, 10.0])
@pytest.mark.parametrize("degree", [16, 32, 64])
def test_gaussian_interpolation_error_below_bernstein_bound(t, degree):
    x = np.linspace(-1, 1, 4001)
    c = values_to_coefficients(np.exp(-(t * chebyshev_points(degree + 1)) ** 2))
    err = np.max(np.abs(npcheb.chebval(x, c) - np.exp(-(t * x) ** 2)))
    bound = gaussian_interpolation_bound(t, degree)
    # The bound holds; it is not vacuous (within 1e4 of the truth) unless at rounding level.
    assert err <= bound + 1e-15
    assert err > bound * 1e-4 or bound < 1e-12


@pytest.mark.parametrize("t,tol", [(2.0, 1e-6), (5.0, 1e-8), (12.0, 1e-5)])
def test_degree_for_gaussian_is_least_sufficient(t, tol):
    x = np.linspace(-1, 1, 4001)

    def err(d):
        c = values_to_coefficients(np.exp(-(t * chebyshev_points(d + 1)) ** 2))
        return np.max(np.abs(npcheb.chebval(x, c) - np.exp(-(t * x) ** 2)))

    d = degree_for_gaussian(t, 1.0, tol)
    assert err(d) <= tol
    assert err(d - 6) > tol / 100  # not wildly more than needed


def test_bad_input():
    with pytest.raises(ValueError, match="m must be >= 2"):
        chebyshev_points(1)
    with pytest.raises(TypeError, match="m must be an integer"):
        chebyshev_points(3.0)
    with pytest.raises(ValueError, match="a < b"):
        chebyshev_points(3, domain=(1, 1))
    with pytest.raises(ValueError, match="at least 2 points"):
        values_to_coefficients(np.ones((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        values_to_coefficients([1.0, np.nan, 2.0])
    with pytest.raises(TypeError, match="real"):
        values_to_coefficients([1j, 2.0])
    with pytest.raises(ValueError, match="axes must not repeat"):
        values_to_coefficients(np.ones((3, 3)), axes=(0, 0))

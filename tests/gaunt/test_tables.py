"""The Fourier method's cached tables: equal to the dense definitions, refused when huge."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from sci._validation import MemoryLimitError
from sci.gaunt import _fourier, gaunt_power, gaunt_tensor_product
from sci.gaunt._fourier import _theta_integrals, legendre_fourier_coefficients


def _dense_analysis(lmax, n_theta, degree):
    """The definition as two dense contractions (the former O(L^4) build): the oracle."""
    p = legendre_fourier_coefficients(lmax)
    u = np.arange(-degree, degree + 1)
    v = np.arange(-lmax, lmax + 1)
    a = np.einsum("uv,mlv->mul", _theta_integrals(u[:, None] + v[None, :]), p)
    theta = 2 * np.pi * np.arange(n_theta) / n_theta
    dft = np.exp(-1j * u[None, :] * theta[:, None]) / n_theta
    q = np.einsum("ju,mul->mjl", dft, a).real
    scale = np.full(lmax + 1, math.pi * math.sqrt(2.0))
    scale[0] = 2 * math.pi
    return q * scale[:, None, None]


def _dense_projection(lmax, k):
    p = legendre_fourier_coefficients(lmax)
    u = np.arange(-k, k + 1)
    v = np.arange(-lmax, lmax + 1)
    return 2 * np.pi * np.einsum("uv,mlv->mul", _theta_integrals(u[:, None] - v[None, :]),
                                 np.conj(p))


# (lmax, degree, n_theta): n_theta = 2 degree + 1 and padded (fast FFT lengths), degree below,
# equal to and above lmax, and lmax = 0.
CASES = [(0, 0, 1), (1, 2, 5), (3, 6, 15), (5, 3, 8), (8, 16, 36), (12, 12, 30), (24, 48, 100)]


@pytest.mark.parametrize(("lmax", "degree", "n_theta"), CASES)
def test_analysis_table_equals_dense_definition(lmax, degree, n_theta):
    q = _fourier._torus_analysis(lmax, n_theta, degree)
    ref = _dense_analysis(lmax, n_theta, degree)
    assert q.shape == ref.shape and q.dtype == np.float64
    # FFT convolutions against dense sums: both round-off, growing like log of the lengths.
    np.testing.assert_allclose(q, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    q32 = _fourier._torus_analysis(lmax, n_theta, degree, "float32")
    assert q32.dtype == np.float32 and not q32.flags.writeable
    np.testing.assert_array_equal(q32, q.astype(np.float32))


@pytest.mark.parametrize(("lmax", "degree"), [(0, 0), (2, 4), (6, 3), (10, 20)])
def test_projection_weights_equal_dense_definition(lmax, degree):
    w = _fourier._projection_weights(lmax, degree)
    ref = _dense_projection(lmax, degree)
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


def test_tables_cached_per_dtype():
    a = _fourier._torus_analysis(6, 30, 12, "float32")
    assert _fourier._torus_analysis(6, 30, 12, "float32") is a
    s = _fourier._torus_synthesis(6, 30, "float32")
    assert s.dtype == np.float32 and _fourier._torus_synthesis(6, 30, "float32") is s


@pytest.mark.parametrize("basis", ["real", "complex"])
def test_huge_degree_refused_up_front_with_the_figure(basis):
    # Degree 2000: the tables would need terabytes; refused before anything is built.
    x = np.zeros((1, 2001**2))
    start = time.perf_counter()
    with pytest.raises(MemoryLimitError, match=r"tables for inputs of degree 2000\+2000.*TiB"):
        gaunt_tensor_product(x, x, basis=basis)
    assert time.perf_counter() - start < 5.0


def test_power_tables_refused_up_front(monkeypatch):
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    with pytest.raises(MemoryLimitError, match=r"Fourier method's tables.*MiB"):
        gaunt_power(np.ones(17**2), 3, method="fourier")

"""The dispatch table: lookup order, lazy registration, errors, and backend agreement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sci
from sci.backend import implementation, register, registered_operations
from sci.generalization import marchenko_pastur_pdf


def test_array_implementation_serves_every_backend():
    register("test.array_only", "array", lambda x: x + 1)
    for name in sci.backend.BACKENDS:
        assert implementation("test.array_only", name)(1) == 2


def test_specific_beats_generic_and_numba_falls_back_to_numpy():
    register("test.layers", "array", lambda: "array")
    register("test.layers", "numpy", lambda: "numpy")
    register("test.layers", "cupy", lambda: "cupy")
    assert implementation("test.layers", "numpy")() == "numpy"
    assert implementation("test.layers", "numba")() == "numpy"
    assert implementation("test.layers", "cupy")() == "cupy"


def test_numpy_only_code_is_not_used_for_cupy():
    register("test.host_only", "numpy", lambda: "numpy")
    with pytest.raises(NotImplementedError, match=r"no implementation for backend 'cupy'"):
        implementation("test.host_only", "cupy")


def test_lazy_registration_imports_on_first_use():
    register("test.lazy", "numpy", "math:sqrt")
    assert implementation("test.lazy", "numpy")(9.0) == 3.0
    assert registered_operations()["test.lazy"] == ("numpy",)


def test_bad_registrations_and_lookups():
    with pytest.raises(ValueError, match="backend must be one of"):
        register("test.bad", "fortran", lambda: None)
    with pytest.raises(ValueError, match="'module:attribute'"):
        register("test.bad", "numpy", "math.sqrt")
    with pytest.raises(NotImplementedError, match="no implementation of 'test.missing'"):
        implementation("test.missing", "numpy")


def test_dispatch_follows_the_active_backend():
    register("test.which", "numpy", lambda: "numpy")
    register("test.which", "numba", lambda: "numba")
    for name in sci.available_backends():
        if name == "cupy":
            continue
        with sci.use_backend(name):
            assert implementation("test.which")() == name


def test_mp_pdf_is_registered_for_numba():
    assert "numba" in registered_operations()["generalization.marchenko_pastur_pdf"]


@given(
    lam=st.lists(st.floats(-1.0, 40.0), min_size=1, max_size=30),
    alpha=st.floats(1e-3, 20.0),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_every_backend_gives_the_same_density(lam, alpha, dtype):
    """A function dispatched through the table agrees on every available backend."""
    lam = np.asarray(lam, dtype=dtype)
    with sci.use_backend("numpy"):
        reference = marchenko_pastur_pdf(lam, dtype(alpha))
    # float32: a few ulps of the sqrt/divide chain; float64: to rounding.
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for name in sci.available_backends():
        with sci.use_backend(name):
            result = sci.backend.to_numpy(marchenko_pastur_pdf(lam, dtype(alpha)))
        assert result.dtype == dtype
        np.testing.assert_allclose(result, reference, rtol=rtol, atol=0)

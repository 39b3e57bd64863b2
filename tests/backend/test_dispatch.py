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


# A Numba kernel that does not compile on some future Python or Numba (as the exact-attention
# kernel did not on Python 3.12: an AssertionError inside Numba's parfor pass) must not show the
# user Numba's internals: one warning per operation, then the NumPy implementation.


@pytest.fixture
def no_broken_kernels(monkeypatch):
    from sci.backend import _dispatch

    monkeypatch.setattr(_dispatch, "_broken", {})
    return _dispatch


def _uncompilable():
    import numba

    @numba.njit
    def kernel(x):
        return x.no_such_method()  # a typing error, raised when Numba compiles the kernel

    return kernel


def test_a_kernel_that_does_not_compile_warns_once_and_runs_numpy(no_broken_kernels):
    register("test.uncompilable", "numpy", lambda x: 2 * x)
    register("test.uncompilable", "numba", _uncompilable())
    run = implementation("test.uncompilable", "numba")
    with pytest.warns(sci.backend.NumbaFallbackWarning) as record:
        assert run(np.ones(3)).tolist() == [2.0, 2.0, 2.0]
        assert run(np.ones(2)).tolist() == [2.0, 2.0]
        assert implementation("test.uncompilable", "numba")(np.ones(1)).tolist() == [2.0]
    assert len(record) == 1
    message = str(record[0].message)
    for fragment in ("'test.uncompilable'", "Python 3.", "Numba 0.", "NumPy ", "TypingError",
                     "SCI_BACKEND=numpy", "NumbaFallbackWarning", "report"):
        assert fragment in message, fragment


def test_errors_the_compiled_code_raises_are_not_swallowed(no_broken_kernels):
    import numba

    @numba.njit
    def kernel(x):
        if x[0] < 0:
            raise ValueError("x must be non-negative")
        return x

    register("test.raising", "numpy", lambda x: x)
    register("test.raising", "numba", kernel)
    with pytest.raises(ValueError, match="non-negative"):
        implementation("test.raising", "numba")(np.array([-1.0]))
    assert "test.raising" not in no_broken_kernels._broken


def test_an_internal_numba_failure_in_a_real_kernel_falls_back(no_broken_kernels, monkeypatch):
    # The failure mode seen on Python 3.12 (an AssertionError from one of Numba's passes),
    # forced on the exact-attention kernel: the user gets the NumPy result and one warning.
    import numba

    from sci.tensor_attention import _cpu, tensor_attention

    @numba.njit
    def broken(Q, K, V, KT, VT, scale, causal):
        return Q.no_such_method()

    monkeypatch.setattr(_cpu, "_exact_kernel", broken)
    rng = np.random.default_rng(0)
    Q, K1, K2, V1, V2 = (rng.standard_normal((6, 3)) for _ in range(5))
    with sci.use_backend("numpy"):
        expected = tensor_attention(Q, K1, K2, V1, V2)
    with sci.use_backend("numba"), pytest.warns(sci.backend.NumbaFallbackWarning,
                                                 match="'tensor_attention.exact'"):
        got = tensor_attention(Q, K1, K2, V1, V2)
    np.testing.assert_array_equal(got, expected)


def test_a_kernel_module_that_does_not_import_falls_back(no_broken_kernels):
    register("test.unimportable", "numpy", lambda: "numpy")
    register("test.unimportable", "numba", "sci._no_such_kernel_module:kernel")
    with pytest.warns(sci.backend.NumbaFallbackWarning, match="importing sci._no_such_kernel"):
        assert implementation("test.unimportable", "numba")() == "numpy"

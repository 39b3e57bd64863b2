"""sci.generalization on the array API: where results live, mixed inputs, host discipline."""

from __future__ import annotations

import numpy as np
import pytest

import sci
from sci.generalization import (
    asymptotic_errors,
    frozen_subspace_error,
    generalization_error,
    marchenko_pastur_pdf,
    marchenko_pastur_quadrature,
    marchenko_pastur_support,
    mode_optimal_stopping,
    optimal_stopping,
    ridge_error,
    training_error,
)

ALPHA = np.array([0.5, 1.0, 2.0])

# (name, call(alpha) -> tuple of results): every public function that takes arrays.
CALLS = [
    ("pdf", lambda a: (marchenko_pastur_pdf(a, a),)),
    ("support", marchenko_pastur_support),
    ("quadrature", lambda a: marchenko_pastur_quadrature(a, 8)),
    ("generalization", lambda a: (generalization_error(a, alpha=a, sigma_eps=0.5),)),
    ("training", lambda a: (training_error(a, alpha=a, sigma_eps=0.5),)),
    ("frozen", lambda a: (frozen_subspace_error(a, sigma_w0=0.5),)),
    ("asymptotic", lambda a: asymptotic_errors(a, sigma_eps=0.5)),
    ("asymptotic-finite", lambda a: asymptotic_errors(a, sigma_eps=0.5, n_inputs=20)),
    ("mode", lambda a: mode_optimal_stopping(a, sigma_eps=0.5)),
    ("ridge", lambda a: (ridge_error(a, sigma_eps=0.5),)),
    ("optimal", lambda a: optimal_stopping(a, sigma_eps=0.5, n_iterations=20)),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[n for n, _ in CALLS])
def test_every_function_returns_the_inputs_library_and_values(xp, call):
    got = call(xp.asarray(ALPHA))
    with sci.use_backend("numpy"):
        want = call(ALPHA)
    for g, w in zip(got, want, strict=True):
        assert xp.is_leg_array(g), type(g)
        assert g.dtype == xp.float64
        np.testing.assert_allclose(xp.to_numpy(g), w, rtol=1e-12)


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[n for n, _ in CALLS])
def test_python_numbers_follow_the_switch(call):
    with sci.use_backend("numpy"):
        for result in call([0.5, 1.0, 2.0]):
            assert isinstance(result, np.ndarray)


def test_mixing_libraries_raises_a_type_error_naming_the_arguments():
    strict = pytest.importorskip("array_api_strict")
    lam = strict.asarray([1.0, 2.0])
    with pytest.raises(TypeError, match="lam and alpha are arrays of different libraries"):
        marchenko_pastur_pdf(lam, np.array([2.0]))
    with pytest.raises(TypeError, match="t and alpha are arrays of different libraries"):
        generalization_error(np.array([1.0]), alpha=strict.asarray(2.0), sigma_eps=0.5)
    with pytest.raises(TypeError, match="alpha and sigma_eps are arrays of different"):
        ridge_error(strict.asarray([1.0]), sigma_eps=np.array(0.5))


def test_mixing_torch_and_numpy_raises_a_type_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"t \(numpy.ndarray on cpu\), alpha \(torch.Tensor"):
        training_error(np.array([1.0]), alpha=torch.tensor(2.0), sigma_eps=0.5)
    with pytest.raises(TypeError, match="alpha and sigma_w0 are arrays of different"):
        frozen_subspace_error(torch.tensor([0.5]), sigma_w0=np.array(1.0))


def test_two_devices_raise_a_type_error():
    strict = pytest.importorskip("array_api_strict")
    t = strict.asarray([1.0], device=strict.Device("device1"))
    alpha = strict.asarray([2.0])  # the default device
    with pytest.raises(TypeError, match="t and alpha are on different devices"):
        generalization_error(t, alpha=alpha, sigma_eps=0.5)
    with pytest.raises(TypeError, match="lam and alpha are on different devices"):
        marchenko_pastur_pdf(t, alpha)


def test_bad_values_are_refused_on_every_leg(xp):
    # The one read-back of the checks reports the argument at fault.
    with pytest.raises(ValueError, match="alpha .* must be > 0; got a minimum of -1.0"):
        marchenko_pastur_pdf(xp.asarray(ALPHA), xp.asarray(np.array([1.0, -1.0])))
    with pytest.raises(ValueError, match="lam must be finite"):
        marchenko_pastur_pdf(xp.asarray(np.array([np.nan])), 1.0)
    with pytest.raises(ValueError, match="t must not contain NaN"):
        generalization_error(xp.asarray(np.array([np.nan])), alpha=1.0, sigma_eps=0.5)
    with pytest.raises(ValueError, match="sigma_w0 must be a standard deviation"):
        optimal_stopping(xp.asarray(ALPHA), sigma_eps=0.5,
                         sigma_w0=xp.asarray(np.array(-1.0)))
    with pytest.raises(ValueError, match="tau must be a time constant"):
        training_error(xp.asarray(ALPHA), alpha=1.0, sigma_eps=0.5,
                       tau=xp.asarray(np.array([0.0])))
    with pytest.raises(ValueError, match=r"lam \(eigenvalues\) must be >= 0"):
        mode_optimal_stopping(xp.asarray(np.array([-1.0])), sigma_eps=0.5)


def test_chunked_array_code_is_exact_on_every_leg(xp, monkeypatch):
    """Under a small memory limit the bulk sums run in chunks (concatenated on the device):
    the same numbers as in one piece."""
    alpha = xp.asarray(np.linspace(0.2, 5.0, 600))
    t = xp.asarray(np.linspace(0.0, 10.0, 600))
    reference = xp.to_numpy(generalization_error(t, alpha=alpha, sigma_eps=0.5))
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    chunked = generalization_error(t, alpha=alpha, sigma_eps=0.5)
    assert xp.is_leg_array(chunked)
    np.testing.assert_array_equal(xp.to_numpy(chunked), reference)


def test_empty_inputs_on_every_leg(xp):
    empty = xp.asarray(np.zeros(0))
    assert tuple(generalization_error(empty, alpha=1.0, sigma_eps=0.5).shape) == (0,)
    assert tuple(marchenko_pastur_pdf(empty, 2.0).shape) == (0,)
    t_opt, _ = optimal_stopping(empty, sigma_eps=0.5)
    assert tuple(t_opt.shape) == (0,)

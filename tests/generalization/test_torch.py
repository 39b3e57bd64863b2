"""Torch tensors in, torch tensors out, with gradients (issue 13).

Torch takes the array code of sci.generalization (the bulk sums of the curves, the density),
differentiated by autograd; ``torch.autograd.gradcheck`` in float64 compares the analytic
backward with finite differences, and the values are compared with the NumPy path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sci
from sci.backend import to_numpy
from sci.generalization import (
    asymptotic_errors,
    frozen_subspace_error,
    generalization_error,
    marchenko_pastur_pdf,
    marchenko_pastur_support,
    mode_optimal_stopping,
    optimal_stopping,
    ridge_error,
    training_error,
)

torch = pytest.importorskip("torch")


def _leaf(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _gradcheck(f, *inputs):
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_pdf_gradients():
    # Points inside the bulks of both alphas (the density is smooth there) and one outside
    # (gradient 0): finite differences agree with autograd through the where's.
    lam = _leaf([[0.3], [1.0], [2.5], [12.0]])
    alpha = _leaf([0.5, 2.0])
    out = marchenko_pastur_pdf(lam, alpha)
    assert isinstance(out, torch.Tensor) and out.requires_grad and out.dtype == torch.float64
    with sci.use_backend("numpy"):
        ref = marchenko_pastur_pdf(to_numpy(lam), to_numpy(alpha))
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-15)
    _gradcheck(marchenko_pastur_pdf, lam, alpha)


def test_pdf_gradient_is_finite_outside_the_bulk():
    # sqrt'(0) = inf must not leak into the branch that is not taken (0 * inf = NaN).
    lam = _leaf([-1.0, 0.0, 100.0])
    marchenko_pastur_pdf(lam, 2.0).sum().backward()
    assert torch.equal(lam.grad, torch.zeros(3, dtype=torch.float64))


def test_support_gradients():
    alpha = _leaf([0.25, 4.0])
    lower, upper = marchenko_pastur_support(alpha)
    # d(1 + sqrt a)^2/da = 1 + 1/sqrt(a)
    upper.sum().backward()
    np.testing.assert_allclose(to_numpy(alpha.grad), [3.0, 1.5], rtol=1e-15)
    _gradcheck(lambda a: marchenko_pastur_support(a)[0], _leaf([0.25, 4.0]))


@pytest.mark.parametrize("curve", [generalization_error, training_error])
def test_time_curve_gradients(curve):
    t = _leaf([0.05, 0.7, 4.0])  # t > 0: the finite differences step both ways
    alpha = _leaf(0.6)
    sigma_w = _leaf(1.3)
    sigma_eps = _leaf(0.4)
    sigma_w0 = _leaf(0.2)
    tau = _leaf(1.5)
    out = curve(t, alpha=alpha, sigma_w=sigma_w, sigma_eps=sigma_eps, sigma_w0=sigma_w0,
                tau=tau)
    assert isinstance(out, torch.Tensor) and out.requires_grad
    with sci.use_backend("numpy"):
        ref = curve(to_numpy(t), alpha=0.6, sigma_w=1.3, sigma_eps=0.4, sigma_w0=0.2, tau=1.5)
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-13)
    _gradcheck(lambda *a: curve(a[0], alpha=a[1], sigma_w=a[2], sigma_eps=a[3],
                                sigma_w0=a[4], tau=a[5]),
               t, alpha, sigma_w, sigma_eps, sigma_w0, tau)


def test_infinite_time_has_finite_gradients():
    # t = inf gives the asymptotic error; its gradient in tau is 0 (not NaN from inf/tau),
    # in alpha the closed form's: d/dalpha sigma^2 alpha/(alpha - 1) = -sigma^2/(alpha - 1)^2.
    alpha, tau = _leaf(2.0), _leaf(1.5)
    generalization_error(torch.tensor([math.inf], dtype=torch.float64), alpha=alpha,
                         sigma_eps=0.5, tau=tau).sum().backward()
    assert float(tau.grad) == 0.0
    assert float(alpha.grad) == pytest.approx(-0.25, rel=1e-14)


def test_generalization_error_time_derivative_is_the_slope():
    # An independent check of the backward: dE_g/dt at t = 0 is -2 A integral(rho lambda) / tau
    # = -2 A alpha / tau (the mean of the Marchenko-Pastur law is alpha).
    t = _leaf([0.0])
    generalization_error(t, alpha=2.0, sigma_w=1.0, sigma_eps=0.5, tau=2.0).sum().backward()
    assert float(t.grad[0]) == pytest.approx(-2.0 * 1.0 * 2.0 / 2.0, rel=1e-12)


@pytest.mark.parametrize(
    "closed_form",
    [
        lambda a, w, e: ridge_error(a, sigma_w=w, sigma_eps=e),
        lambda a, w, e: asymptotic_errors(a, sigma_w=w, sigma_eps=e, sigma_w0=0.3)[0],
        lambda a, w, e: asymptotic_errors(a, sigma_w=w, sigma_eps=e, n_inputs=50)[0],
        lambda a, w, e: asymptotic_errors(a, sigma_w=w, sigma_eps=e)[1],
        lambda a, w, e: frozen_subspace_error(a, sigma_w=w, sigma_w0=e),
        lambda a, w, e: mode_optimal_stopping(a, sigma_w=w, sigma_eps=e)[0],
        lambda a, w, e: mode_optimal_stopping(a, sigma_w=w, sigma_eps=e)[1],
    ],
    ids=["ridge", "asymptotic", "asymptotic-finite", "asymptotic-training", "frozen",
         "mode-t", "mode-error"],
)
def test_closed_form_gradients(closed_form):
    alpha = _leaf([0.4, 1.7, 3.0])
    _gradcheck(closed_form, alpha, _leaf(1.2), _leaf(0.6))


def test_ridge_error_gradient_in_closed_form():
    # E* = sigma^2 (1 + m); at alpha = 1, sigma_w = sigma_eps = 1: gamma = 1, b = -1,
    # D = sqrt(5), E* = (1 + sqrt 5)/2. dE*/dalpha from the formula, by hand:
    # gamma m = (b + D)/2, db/dalpha = -1, dD/dalpha = b/D * db/dalpha = 1/sqrt(5).
    alpha = _leaf(1.0)
    ridge_error(alpha, sigma_eps=1.0).backward()
    assert float(alpha.grad) == pytest.approx(0.5 * (-1.0 + 1.0 / math.sqrt(5.0)), rel=1e-14)


def test_optimal_stopping_error_gradient():
    # E_g(t_opt) by the envelope theorem: its gradient is the partial derivative at fixed
    # t_opt, which the implementation takes with the bisection detached.
    alpha = _leaf([0.5, 2.0])
    sigma_eps = _leaf(0.7)
    t_opt, error = optimal_stopping(alpha, sigma_eps=sigma_eps)
    assert isinstance(error, torch.Tensor) and error.requires_grad
    with sci.use_backend("numpy"):
        ref_t, ref_e = optimal_stopping([0.5, 2.0], sigma_eps=0.7)
    np.testing.assert_allclose(to_numpy(t_opt), ref_t, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(error), ref_e, rtol=1e-14)
    # the bisection locates t_opt to ~1e-16 relative, so E_g is flat to ~1e-32 around it:
    # finite differences of error(alpha) see the total derivative, autograd the partial one
    _gradcheck(lambda a, e: optimal_stopping(a, sigma_eps=e)[1], alpha, sigma_eps)


def test_optimal_stopping_time_gradient_is_the_implicit_one():
    # t_opt is found by bisection; its gradient comes from the implicit function theorem
    # (ds/dtheta = -g_theta/g_s). Finite differences of the bisection's own result agree.
    alpha = _leaf([0.5, 2.0])
    sigma_w = _leaf(1.1)
    sigma_eps = _leaf(0.7)
    tau = _leaf(1.3)
    t_opt, _ = optimal_stopping(alpha, sigma_w=sigma_w, sigma_eps=sigma_eps, tau=tau)
    assert t_opt.requires_grad
    _gradcheck(lambda a, w, e, s: optimal_stopping(a, sigma_w=w, sigma_eps=e, tau=s)[0],
               alpha, sigma_w, sigma_eps, tau)
    # no noise: t_opt = inf whatever alpha is (gradient 0, not NaN)
    alpha = _leaf([0.5, 2.0])
    t_opt, error = optimal_stopping(alpha, sigma_eps=_leaf(0.0))
    assert torch.isinf(t_opt).all()
    error.sum().backward()
    assert torch.isfinite(alpha.grad).all()


def test_tensors_stay_on_their_device_and_dtype():
    t = torch.linspace(0.0, 5.0, 4, dtype=torch.float32)
    out = generalization_error(t, alpha=torch.tensor(2.0), sigma_eps=torch.tensor(0.5))
    assert out.dtype == torch.float32 and out.device == t.device


def test_cuda_tensors_stay_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    t = torch.linspace(0.0, 5.0, 4, dtype=torch.float64, device="cuda")
    out = generalization_error(t, alpha=2.0, sigma_eps=0.5)
    assert out.device == t.device
    with sci.use_backend("numpy"):
        ref = generalization_error(to_numpy(t), alpha=2.0, sigma_eps=0.5)
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-13)

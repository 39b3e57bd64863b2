"""ufm_minimizer: spec reference values, the mpmath/sympy oracles, criticality, optimality."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import theory.neural_collapse as th
from sci.neural_collapse import (
    collapse_threshold,
    is_orthogonal_frame,
    is_simplex_etf,
    nc_metrics,
    ufm_minimizer,
    ufm_objective,
)
from sci.neural_collapse._ufm import _loss_and_gradients


def gradients(r):
    value, dW, dH, db = _loss_and_gradients(
        [np.asarray(w)[None] for w in r.weights], np.asarray(r.features)[None], r.labels,
        None if r.bias is None else np.asarray(r.bias)[None], r.lambda_W, r.lambda_H, r.loss)
    grads = [g[0] for g in dW] + [dH[0]] + ([] if db is None else [db[0]])
    return float(value[0]), grads


def objective_of(r, weights, features, bias=None):
    return ufm_objective(weights, features, r.labels, lambda_W=list(r.lambda_W),
                         lambda_H=r.lambda_H, loss=r.loss, bias=bias)


def test_spec_reference_values():
    r = ufm_minimizer([200, 100, 50, 50], depth=1, lambda_W=5e-3, lambda_H=5e-3)
    # The spec prints 5 decimals: agreement to half a unit in the last place.
    np.testing.assert_allclose(r.classifier_norms, [3.48456, 2.82843, 2.25190, 2.25190],
                               atol=5e-6)
    np.testing.assert_allclose(r.singular_values, r.classifier_norms, rtol=1e-14)
    np.testing.assert_allclose(r.feature_norms, [0.24640, 0.28284, 0.31847, 0.31847], atol=5e-6)
    assert nc_metrics(r.features, r.labels).nc1 == pytest.approx(0.0, abs=1e-25)


def test_depth_one_against_sympy():
    import sympy as sp

    lam = sp.Rational(1, 200)
    exact = th.depth_one_minimizer([200, 100, 50, 50], lam, lam)
    r = ufm_minimizer([200, 100, 50, 50], depth=1, lambda_W=5e-3, lambda_H=5e-3)
    np.testing.assert_allclose(r.singular_values**2, [float(v) for v in exact["sigma2"]],
                               rtol=1e-14)
    np.testing.assert_allclose(r.feature_norms**2, [float(v) for v in exact["feature_norm2"]],
                               rtol=1e-13)
    grams = th.minimizer_gram_matrices(exact["sigma2"], 400, lam)
    # Realised matrices from an orthonormal frame: rounding of O(1) products.
    W = np.asarray(r.weights[0])
    means = np.asarray(r.features)[np.r_[0, 200, 300, 350]].T
    np.testing.assert_allclose(W @ W.T, np.array(grams["WWt"], dtype=float), atol=1e-13)
    np.testing.assert_allclose(means.T @ means, np.array(grams["HtH"], dtype=float), atol=1e-15)
    np.testing.assert_allclose(W @ means, np.array(grams["WH"], dtype=float), atol=1e-14)


@settings(max_examples=20)
@given(
    counts=st.lists(st.integers(1, 400), min_size=2, max_size=6),
    depth=st.integers(1, 6),
    log_lam=st.floats(-4.0, -1.5),
)
# Small lambda at depth 6 made the oracle's secant solver fail its absolute tolerance.
@example(counts=[1, 1], depth=6, log_lam=-4.0)
def test_singular_values_against_mpmath(counts, depth, log_lam):
    lam = 10.0**log_lam
    r = ufm_minimizer(counts, depth=depth, lambda_W=lam, lambda_H=lam)
    exact = th.mse_minimizer(counts, depth, lam, lam, dps=30)
    # brentq to 4 eps on x; sigma ~ x^(M/2): a few 1e-15 relative, plus the collapse decision
    # which must be identical (zeros are exact).
    np.testing.assert_allclose(r.singular_values, [float(s) for s in exact["sigma"]],
                               rtol=1e-11, atol=0)
    assert r.objective == pytest.approx(float(exact["objective"]), rel=1e-13)


CASES = [
    dict(n_per_class=[200, 100, 50, 50], depth=1, lambda_W=5e-3, lambda_H=5e-3),
    dict(n_per_class=[60, 30, 20, 10], depth=3, lambda_W=2e-3, lambda_H=1e-3, width=6, rng=1),
    dict(n_per_class=[60, 30, 20, 10], depth=2, lambda_W=[1e-3, 4e-3], lambda_H=2e-3),
    dict(n_per_class=[60, 30, 20, 10], depth=2, lambda_W=1e-3, lambda_H=1e-3, width=2),
    dict(n_per_class=[500, 50, 5], depth=2, lambda_W=5e-3, lambda_H=5e-3),  # class 2 collapses
    dict(n_per_class=[15] * 5, depth=3, lambda_W=1e-3, lambda_H=2e-3, bias=True, rng=2),
    dict(n_per_class=[15] * 5, depth=1, lambda_W=1e-3, lambda_H=2e-3, loss="ce", rng=3),
    dict(n_per_class=[15] * 5, depth=2, lambda_W=1e-3, lambda_H=2e-3, loss="ce", bias=True),
    dict(n_per_class=[15] * 5, depth=3, lambda_W=5e-3, lambda_H=5e-3, loss="ce", width=7),
]


@pytest.mark.parametrize("case", CASES)
def test_closed_form_is_critical_and_realised(case):
    r = ufm_minimizer(**case)
    value, grads = gradients(r)
    # The realised matrices attain the closed-form value (float64 rounding of O(1) sums).
    assert value == pytest.approx(r.objective, rel=1e-12)
    assert objective_of(r, r.weights, r.features, r.bias) == pytest.approx(value, rel=1e-14)
    # Gradient ~ 0: entries are sums of O(N) products of O(1) numbers divided by N.
    scale = max(np.abs(np.asarray(w)).max() for w in r.weights)
    assert max(np.abs(g).max() for g in grads) < 1e-12 * max(1.0, scale)


@pytest.mark.parametrize("case", CASES)
def test_closed_form_beats_perturbations_and_zero(case):
    r = ufm_minimizer(**case)
    rng = np.random.default_rng(7)
    weights = [np.asarray(w) for w in r.weights]
    H = np.asarray(r.features)
    b = None if r.bias is None else np.asarray(r.bias)
    for eps in (1e-2, 1e-3):
        for _ in range(5):
            pw = [w + eps * rng.standard_normal(w.shape) for w in weights]
            pH = H + eps * rng.standard_normal(H.shape)
            pb = None if b is None else b + eps * rng.standard_normal(b.shape)
            assert objective_of(r, pw, pH, pb) > r.objective
    zero = objective_of(r, [0 * w for w in weights], 0 * H, b)
    assert zero >= r.objective


@settings(max_examples=15)
@given(
    counts=st.lists(st.integers(1, 60), min_size=2, max_size=5),
    depth=st.integers(1, 4),
    log_lam=st.floats(-3.5, -1.5),
    extra_width=st.integers(0, 3),
)
def test_hypothesis_critical_and_better_than_zero(counts, depth, log_lam, extra_width):
    lam = 10.0**log_lam
    r = ufm_minimizer(counts, depth=depth, lambda_W=lam, lambda_H=lam,
                      width=len(counts) + extra_width, rng=0)
    value, grads = gradients(r)
    assert value == pytest.approx(r.objective, rel=1e-11)
    scale = max(1.0, max(np.abs(np.asarray(w)).max() for w in r.weights))
    assert max(np.abs(g).max() for g in grads) < 1e-11 * scale
    assert r.objective <= 0.5 + 1e-15  # the zero solution's value, sum n_k / (2N)


def test_imbalanced_geometry():
    lam_H, counts = 1e-3, np.array([80, 40, 20, 10])
    N = counts.sum()
    r = ufm_minimizer(counts, depth=3, lambda_W=1e-3, lambda_H=lam_H, rng=4, width=7)
    s2 = r.singular_values**2
    np.testing.assert_allclose(r.classifier_gram, np.diag(s2), atol=1e-12)
    np.testing.assert_allclose(r.feature_gram, np.diag(s2 / (s2 + N * lam_H) ** 2), atol=1e-14)
    np.testing.assert_allclose(r.logits_of_means, np.diag(s2 / (s2 + N * lam_H)), atol=1e-13)
    np.testing.assert_allclose(r.classifier_norms, (s2 + N * lam_H) * r.feature_norms,
                               rtol=1e-12)
    # Equal lambda_W: every layer has singular values sigma^(1/M).
    for W in r.weights:
        sv = np.linalg.svd(np.asarray(W), compute_uv=False)[:4]
        np.testing.assert_allclose(np.sort(sv), np.sort(r.singular_values ** (1 / 3)),
                                   rtol=1e-12)
    W = np.linalg.multi_dot([np.asarray(w) for w in r.weights[::-1]])
    assert nc_metrics(r.features, r.labels, W=W).nc2_gof_error < 1e-13


def test_depth_one_norm_trends():
    """M = 1: ||w_k|| grows with n_k while ||h_k|| is not monotone (spec)."""
    counts = np.array([20, 30, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800])
    # Collapse below n = N^2 lambda^2 = 15; ||h_k||^2 = a u - c u^2 (u = n^-1/2) peaks at 60.
    lam = np.sqrt(15.0) / counts.sum()
    r = ufm_minimizer(counts, depth=1, lambda_W=lam, lambda_H=lam)
    assert not r.collapsed.any()
    assert np.all(np.diff(r.classifier_norms) > 0)
    peak = int(np.argmax(r.feature_norms))
    assert counts[peak] == 60
    assert np.all(np.diff(r.feature_norms[: peak + 1]) > 0)
    assert np.all(np.diff(r.feature_norms[peak:]) < 0)


def test_collapse_threshold_decided_by_objective():
    """M = 2, b/n_k in (0.5, 0.6495): the root exists but zero is the global minimum."""
    M, N = 2, 200
    assert collapse_threshold(M) == pytest.approx(float(th.collapse_threshold(M)), rel=1e-15)
    peak = float(th.stationarity_peak(M)[1])
    lam = (2.5e-3 / N) ** (1 / 3)  # b = M N (N lam^3)^(1/2) = 20: n_k = 20 / beta ~ 30-45
    b = M * N * (N * lam * lam**M) ** (1 / M)
    seen = set()
    for beta in (0.45, 0.49, 0.52, 0.55, 0.62, 0.66):
        counts = [N - int(round(b / beta)), int(round(b / beta))]
        r = ufm_minimizer(counts, depth=M, lambda_W=lam, lambda_H=lam)
        beta_actual = b / counts[1]
        assert bool(r.collapsed[1]) is (beta_actual >= 0.5), beta_actual
        seen.add((beta_actual >= 0.5, beta_actual < peak))
        if 0.5 < beta_actual < peak:
            # The nonzero stationary point exists: x in (x_peak, inf) solving the equation.
            from scipy.optimize import brentq

            x = brentq(lambda t, beta=beta_actual: 2 * t / (1 + t * t) ** 2 - beta, 3**-0.5, 10)
            assert 1 / (1 + x * x) + beta_actual * x > 1.0  # worse than collapsing
    assert seen == {(False, True), (True, True), (True, False)}


def test_balanced_with_bias_is_simplex_etf():
    K, n, lam = 5, 15, 2e-3
    r = ufm_minimizer([n] * K, depth=2, lambda_W=lam, lambda_H=lam, bias=True, rng=0, width=8)
    sigma = r.singular_values[0]
    np.testing.assert_allclose(r.singular_values[:-1], sigma, rtol=1e-14)
    assert r.singular_values[-1] == 0.0
    np.testing.assert_allclose(r.classifier_gram, sigma**2 * (np.eye(K) - 1 / K), atol=1e-12)
    np.testing.assert_allclose(np.asarray(r.bias), 1 / K, rtol=1e-15)
    W = np.linalg.multi_dot([np.asarray(w) for w in r.weights[::-1]])
    m = nc_metrics(r.features, r.labels, W=W, b=r.bias)
    assert is_simplex_etf(np.asarray(m.class_means) - np.asarray(m.global_mean))
    assert m.nc2_etf_error < 1e-13 and m.nc3 < 1e-26 and m.nc4 == 0.0
    # Bias-free balanced: an orthogonal frame with the same per-direction sigma formula.
    r0 = ufm_minimizer([n] * K, depth=2, lambda_W=lam, lambda_H=lam)
    assert is_orthogonal_frame(r0.classifier_gram ** 0.5)
    np.testing.assert_allclose(r0.singular_values, sigma, rtol=1e-14)


def test_ce_against_mpmath():
    for M in (1, 2, 3):
        r = ufm_minimizer([10] * 4, depth=M, lambda_W=5e-3, lambda_H=5e-3, loss="ce")
        exact = th.ce_etf_minimizer(4, 10, M, 5e-3, 5e-3, dps=30)
        assert r.singular_values[0] == pytest.approx(float(exact["sigma"]), rel=1e-10)
        assert r.objective == pytest.approx(float(exact["objective"]), rel=1e-13)
        W = np.asarray(r.weights[0])
        for layer in r.weights[1:]:
            W = np.asarray(layer) @ W
        assert is_simplex_etf(W)
        assert nc_metrics(r.features, r.labels, W=W).nc3 < 1e-26


def test_width_below_K_keeps_largest_classes():
    r = ufm_minimizer([10, 60, 30, 20], depth=2, lambda_W=1e-3, lambda_H=1e-3, width=2)
    assert list(r.collapsed) == [True, False, True, True][:1] + [False, False, True][:0] + \
        [False, True, True] if False else list(r.collapsed) == [True, False, False, True]


def test_backend_arrays(backend, backend_xp):
    r = ufm_minimizer([4, 3], depth=2, lambda_W=1e-3, lambda_H=1e-3)
    assert isinstance(r.features, backend_xp.ndarray)
    assert isinstance(r.weights[0], backend_xp.ndarray)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_per_class=[10, 0], depth=1, lambda_W=1e-3, lambda_H=1e-3), "at least one sample"),
        (dict(n_per_class=[10], depth=1, lambda_W=1e-3, lambda_H=1e-3), "K >= 2"),
        (dict(n_per_class=[10, 5], depth=1, lambda_W=0.0, lambda_H=1e-3), "lambda_W must be >"),
        (dict(n_per_class=[10, 5], depth=1, lambda_W=1e-3, lambda_H=-1.0), "lambda_H must be >"),
        (dict(n_per_class=[10, 5], depth=1, lambda_W=float("nan"), lambda_H=1.0), "finite"),
        (dict(n_per_class=[10, 5], depth=2, lambda_W=[1e-3], lambda_H=1e-3), "one per layer"),
        (dict(n_per_class=[10, 5], depth=0, lambda_W=1e-3, lambda_H=1e-3), "depth must be >="),
        (dict(n_per_class=[10, 5], depth=1, lambda_W=1e-3, lambda_H=1e-3, loss="hinge"), "loss"),
        (dict(n_per_class=[10, 5], depth=1, lambda_W=1e-3, lambda_H=1e-3, bias=True),
         "balanced classes only"),
        (dict(n_per_class=[10, 5], depth=1, lambda_W=1e-3, lambda_H=1e-3, loss="ce"),
         "balanced classes only"),
        (dict(n_per_class=[5] * 4, depth=1, lambda_W=1e-3, lambda_H=1e-3, loss="ce", width=2),
         "width >= K - 1"),
        (dict(n_per_class=[2.5, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3), "integers"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ufm_minimizer(**kwargs)


def test_objective_bad_input():
    r = ufm_minimizer([3, 3], depth=1, lambda_W=1e-3, lambda_H=1e-3)
    with pytest.raises(ValueError, match="same length"):
        ufm_objective(r.weights, r.features, r.labels[:-1], lambda_W=1e-3, lambda_H=1e-3)
    with pytest.raises(ValueError, match="columns"):
        ufm_objective(r.weights, np.ones((6, 3)), r.labels, lambda_W=1e-3, lambda_H=1e-3)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.1"):
        ufm_objective(r.weights, r.features, r.labels + 1, lambda_W=1e-3, lambda_H=1e-3)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_objective_on_every_leg(xp, loss, rng):
    labels = np.repeat(np.arange(3), 4)
    weights = [rng.standard_normal((5, 4)), rng.standard_normal((3, 5))]
    H, bias = rng.standard_normal((12, 4)), rng.standard_normal(3)
    kw = dict(lambda_W=[1e-2, 2e-2], lambda_H=3e-2, loss=loss)
    expected = ufm_objective(weights, H, labels, bias=bias, **kw)
    out = ufm_objective([xp.asarray(w) for w in weights], xp.asarray(H), labels,
                        bias=xp.asarray(bias), **kw)
    if xp.is_numpy or xp.name == "cupy":
        assert isinstance(out, float)
    else:
        assert xp.is_leg_array(out) and out.shape == ()
    assert float(xp.to_numpy(out)) == pytest.approx(expected, rel=1e-13)


def test_objective_refuses_two_libraries(rng):
    import array_api_strict as strict

    w = rng.standard_normal((2, 3))
    with pytest.raises(TypeError, match=r"weights\[0\] and features are arrays of different"):
        ufm_objective([w], strict.ones((4, 3), dtype=strict.float64), [0, 1, 0, 1],
                      lambda_W=1e-3, lambda_H=1e-3)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_objective_torch_gradient_is_the_derived_one(loss):
    torch = pytest.importorskip("torch")
    r = ufm_minimizer([3, 3, 3], depth=2, lambda_W=1e-2, lambda_H=1e-2, loss=loss)
    rng = np.random.default_rng(4)
    # away from the minimiser, where the gradient is not zero
    weights = [np.asarray(w) + 0.1 * rng.standard_normal(np.shape(w)) for w in r.weights]
    H = np.asarray(r.features) + 0.1 * rng.standard_normal(np.shape(r.features))
    tensors = [torch.tensor(a, requires_grad=True) for a in (*weights, H)]

    def f(*t):
        return ufm_objective(list(t[:-1]), t[-1], r.labels, lambda_W=list(r.lambda_W),
                             lambda_H=r.lambda_H, loss=loss)

    assert torch.autograd.gradcheck(f, tuple(tensors))
    autograd = torch.autograd.grad(f(*tensors), tensors)
    _, derived, dH, _ = _loss_and_gradients(
        [w[None] for w in weights], H[None], r.labels, None, r.lambda_W, r.lambda_H, loss)
    for got, want in zip(autograd, [g[0] for g in derived] + [dH[0]], strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-14)

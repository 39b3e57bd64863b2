"""The polynomial method: identities, the naive polynomial oracle, the bound, n-independence."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sci
from sci.tensor_attention import (
    NonPositiveDenominatorError,
    exp_approximation_error,
    exp_polynomial_coefficients,
    feature_rank,
    higher_order_attention,
    logit_bound,
    poly_attention,
    poly_higher_order_attention,
    poly_tensor_attention,
    polynomial_features,
    select_degree,
    softmax_attention,
    tensor_attention,
)
from theory import tensor_attention as theory


def _on(xp, Q, keys, values):
    """The inputs as arrays of the xp leg, on its device."""
    return xp.asarray(Q), [xp.asarray(k) for k in keys], [xp.asarray(v) for v in values]


def _khatri_rao(A, B):
    """Row (j, k) = A[j] * B[k], formed explicitly (the tests may; sci never does)."""
    return (A[:, None, :] * B[None, :, :]).reshape(-1, A.shape[1])


def _signs(rng, shape, B):
    return B * rng.choice([-1.0, 1.0], size=shape)


# ---------------------------------------------------------------------------- identities


def test_khatri_rao_identities(rng):
    U2, U3 = rng.standard_normal((6, 10)), rng.standard_normal((5, 10))
    V1, V2 = rng.standard_normal((6, 3)), rng.standard_normal((5, 3))
    # (U2 ⊘ U3)^T 1 = (U2^T 1) ∘ (U3^T 1) and (U2 ⊘ U3)^T (V1 ⊘ V2) = (U2^T V1) ∘ (U3^T V2)
    # (a regrouping of one finite sum: rounding only, 1e-12 relative to O(10) entries).
    np.testing.assert_allclose(
        _khatri_rao(U2, U3).sum(0), U2.sum(0) * U3.sum(0), rtol=1e-12, atol=1e-12
    )
    kr_uv = _khatri_rao(U2, U3).T @ np.einsum("jl,kl->jkl", V1, V2).reshape(-1, 3)
    np.testing.assert_allclose(kr_uv, np.einsum("ja,jl,ka,kl->al", U2, V1, U3, V2),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kr_uv, (U2.T @ V1) * (U3.T @ V2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("method", ["taylor", "chebyshev"])
def test_factors_reproduce_the_polynomial_of_the_logits(backend, to_numpy, rng, order, method):
    """U1 (U2 ⊘ ... ⊘ Ut)^T = p(s Q (K1 ⊘ ... )^T) entrywise (the multinomial theorem)."""
    d, g, s = 3, 5, 0.4
    Q = rng.uniform(-1, 1, (4, d))
    keys = [rng.uniform(-1, 1, (3, d)) for _ in range(order - 1)]
    c = exp_polynomial_coefficients(g, method=method, bound=1.0)
    sigma = s ** (1 / order)
    U1 = to_numpy(polynomial_features(Q, g, scale=sigma, coefficients=c))
    product = to_numpy(polynomial_features(keys[0], g, scale=sigma))
    k_rows = keys[0]
    for K in keys[1:]:
        product = _khatri_rao(product, to_numpy(polynomial_features(K, g, scale=sigma)))
        k_rows = _khatri_rao(k_rows, K)
    assert U1.shape[1] == feature_rank(d, g) == theory.feature_rank(d, g)
    want = np.polynomial.polynomial.polyval(s * Q @ k_rows.T, c)
    np.testing.assert_allclose(U1 @ product.T, want, rtol=1e-12, atol=1e-14)


def test_feature_columns_and_multiplicities_match_enumeration(rng):
    d, g = 3, 4
    X = rng.uniform(0.5, 2, (2, d))
    columns = [alpha for t in range(g + 1)
               for alpha in itertools.combinations_with_replacement(range(d), t)]
    want = np.array([[np.prod([x[l] for l in alpha]) for alpha in columns] for x in X])
    np.testing.assert_allclose(polynomial_features(X, g), want, rtol=1e-14)
    # with coefficients c_t = 1: the weights are the multinomials mult(alpha)
    weighted = polynomial_features(np.ones((1, d)), g, coefficients=np.ones(g + 1))[0]
    mult = [theory.multinomial([alpha.count(l) for l in range(d)]) for alpha in columns]
    np.testing.assert_array_equal(weighted, mult)
    assert len(columns) == theory.count_monomials(d, g) == feature_rank(d, g)


@pytest.mark.parametrize(("d", "g"), [(1, 0), (1, 7), (4, 6), (5, 3), (8, 2)])
def test_rank_formula(d, g):
    assert feature_rank(d, g) == theory.count_monomials(d, g) == math.comb(d + g, g)


# ------------------------------------------------------------- against the naive polynomial


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("method", ["taylor", "chebyshev"])
def test_factored_equals_naive_polynomial_attention(xp, rng, order, causal, method):
    """The factored algorithm computes exactly the attention with exp replaced by p: checked
    against that attention evaluated tuple by tuple in 40 digits."""
    n, d, g = 4, 2, 6
    Q = rng.uniform(-1, 1, (n, d))
    keys = [rng.uniform(-1, 1, (n, d)) for _ in range(order - 1)]
    values = [rng.uniform(-1, 1, (n, d)) for _ in range(order - 1)]
    got, info = poly_higher_order_attention(*_on(xp, Q, keys, values), degree=g, method=method,
                                            causal=causal, return_info=True, chunk_size=3)
    assert xp.is_leg_array(got)
    to_numpy = xp.to_numpy
    c = exp_polynomial_coefficients(g, method=method, bound=info.logit_bound)
    want = np.array(theory.polynomial_attention_mpmath(Q, keys, values, c, causal=causal),
                    dtype=float)
    np.testing.assert_allclose(to_numpy(got), want, rtol=0, atol=1e-12)


# ----------------------------------------------------------------- the predicted error bound


@given(
    n=st.integers(2, 40), d=st.integers(1, 4), B=st.floats(0.2, 1.6),
    degree=st.integers(0, 9), causal=st.booleans(), order=st.sampled_from([2, 3]),
    method=st.sampled_from(["taylor", "chebyshev"]), seed=st.integers(0, 2**32 - 1),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_error_within_predicted_bound(xp, n, d, B, degree, causal, order, method, seed):
    rng = np.random.default_rng(seed)
    Q = rng.uniform(-B, B, (n, d))
    keys = [rng.uniform(-B, B, (n, d)) for _ in range(order - 1)]
    values = [rng.uniform(-1, 1, (n, d)) for _ in range(order - 1)]
    if method == "taylor" and degree % 2:
        degree += 1  # odd Taylor may go negative; the bound is stated for positive p
    exact = xp.to_numpy(higher_order_attention(*_on(xp, Q, keys, values), causal=causal))
    try:
        approx, info = poly_higher_order_attention(
            *_on(xp, Q, keys, values), degree=degree, method=method, causal=causal,
            return_info=True
        )
    except NonPositiveDenominatorError:
        # only possible where the bound promises nothing (eps >= 1)
        assert exp_approximation_error(
            degree, logit_bound(Q, keys), method=method) >= 1
        return
    approx = xp.to_numpy(approx)
    if info.predicted_error is None:
        return
    # the bound plus float64 rounding of the factored sums
    assert np.abs(approx - exact).max() <= info.predicted_error + 1e-12


def test_reference_numbers_of_the_spec(rng):
    """Taylor, n = 256, B = 1, entries ±B, d = 4: g = 4 -> ~2e-5, g = 8 -> ~7e-9 (spec)."""
    Q, K1, K2, V1, V2 = _signs(rng, (5, 256, 4), 1.0)
    exact = tensor_attention(Q, K1, K2, V1, V2)
    e4 = np.abs(poly_tensor_attention(Q, K1, K2, V1, V2, degree=4) - exact).max()
    e8 = np.abs(poly_tensor_attention(Q, K1, K2, V1, V2, degree=8) - exact).max()
    # a factor 5 either side: the spec's numbers come from another random draw
    assert 2e-5 / 5 < e4 < 2e-5 * 5
    assert 7e-9 / 5 < e8 < 7e-9 * 5


def test_error_does_not_grow_with_n(rng):
    errors = []
    for n in (32, 128, 512):
        Q, K1, K2, V1, V2 = _signs(rng, (5, n, 4), 1.0)
        exact = tensor_attention(Q, K1, K2, V1, V2)
        approx, info = poly_tensor_attention(Q, K1, K2, V1, V2, degree=6, return_info=True)
        errors.append(np.abs(approx - exact).max())
        assert errors[-1] <= info.predicted_error
    # a sum of more terms averages the per-entry errors: no growth (spec saw 3e-11..5e-10)
    assert errors[-1] <= 2 * errors[0]


def test_chebyshev_beats_taylor_when_logits_fill_the_interval(rng):
    Q, K1, K2, V1, V2 = _signs(rng, (5, 64, 4), 1.0)
    exact = tensor_attention(Q, K1, K2, V1, V2)
    for g in (4, 6):
        taylor = np.abs(poly_tensor_attention(Q, K1, K2, V1, V2, degree=g) - exact).max()
        cheb = np.abs(poly_tensor_attention(Q, K1, K2, V1, V2, degree=g, method="chebyshev")
                      - exact).max()
        assert cheb < taylor / 5


def test_tol_chooses_the_theory_degree_and_is_met(rng):
    Q, K, V = rng.uniform(-1.2, 1.2, (3, 200, 4))
    for tol, method in [(1e-3, "taylor"), (1e-8, "taylor"), (1e-6, "chebyshev")]:
        approx, info = poly_attention(Q, K, V, tol=tol, method=method, return_info=True)
        assert info.degree == theory.minimum_degree(tol, info.logit_bound, method=method)
        assert info.predicted_error <= tol * info.value_bound * (1 + 1e-12)
        assert np.abs(approx - softmax_attention(Q, K, V)).max() <= info.predicted_error


def test_info_reports_the_theory_bounds(rng):
    Q, K1, K2, V1, V2 = rng.uniform(-0.9, 0.9, (5, 30, 3))
    _, info = poly_tensor_attention(Q, K1, K2, V1, V2, degree=6, return_info=True)
    R = info.logit_bound
    assert info.approximation_error == pytest.approx(
        float(theory.taylor_relative_error_bound(R, 6)), rel=1e-12, abs=0)
    # rounding: kappa u e^R sum_t |c_t| R^t with kappa = t g + 2 log2(n r) + 4, c_t = 1/t!
    kappa = 3 * 6 + 2 * np.log2(30 * 84) + 4
    assert info.rounding_error == pytest.approx(
        kappa * np.finfo(float).eps * np.exp(R) * sum(R**t / math.factorial(t)
                                                      for t in range(7)), rel=1e-12, abs=0)
    assert info.predicted_error == pytest.approx(float(theory.error_propagation_bound(
        info.approximation_error + info.rounding_error, info.value_bound)), rel=1e-12, abs=0)
    assert info.value_bound == pytest.approx(np.max(np.abs(V1).max(0) * np.abs(V2).max(0)))
    assert info.rank == theory.feature_rank(3, 6) and info.order == 3
    assert info.scale == pytest.approx(1 / 3)


def test_holder_bound_is_sharper_and_valid(rng):
    Q, K1, K2 = rng.standard_normal((3, 50, 6))
    exact_max = np.abs(np.einsum("il,jl,kl->ijk", Q, K1, K2)).max() / 6
    entry = logit_bound(Q, [K1, K2], kind="entry")
    holder = logit_bound(Q, [K1, K2])
    assert exact_max <= holder <= entry
    signs = np.ones((4, 3))
    assert logit_bound(signs, [signs, signs], kind="entry") == pytest.approx(1.0, rel=1e-15)


# ------------------------------------------------------------------------- approximations


@pytest.mark.parametrize("method", ["taylor", "chebyshev"])
@pytest.mark.parametrize(("R", "g"), [(0.5, 2), (1.0, 4), (2.0, 8), (3.0, 12)])
def test_relative_error_bound_holds_and_matches_theory(method, R, g):
    bound = exp_approximation_error(g, R, method=method)
    oracle = {"taylor": theory.taylor_relative_error_bound,
              "chebyshev": theory.chebyshev_relative_error_bound}[method](R, g)
    assert bound == pytest.approx(float(oracle), rel=1e-12)
    c = exp_polynomial_coefficients(g, method=method, bound=R)
    assert float(theory.max_relative_error(c, R, samples=201)) <= bound


def test_taylor_coefficients_are_exact():
    np.testing.assert_array_equal(
        exp_polynomial_coefficients(6), [float(c) for c in theory.taylor_coefficients(6)]
    )


def test_select_degree_is_minimal_and_even_for_taylor():
    for R in (0.0, 0.3, 1.0, 2.5):
        for tol in (1e-2, 1e-9):
            g = select_degree(tol, R)
            assert g % 2 == 0
            assert g == theory.minimum_degree(tol, R)
            assert select_degree(tol, R, method="chebyshev") == theory.minimum_degree(
                tol, R, method="chebyshev")


# --------------------------------------------------------------- non-positive denominators


def _chebyshev_trap(rng):
    """Every logit at -R = -18, where the degree-3 Chebyshev interpolant of e^x on [-18, 18]
    is about -8e5."""
    n, d = 16, 2
    K = np.full((n, d), -3.0)
    Q = np.full((n, d), 3.0)
    V = rng.uniform(-1, 1, (n, d))
    return Q, K, V


def test_nonpositive_denominator_is_detected(rng):
    Q, K, V = _chebyshev_trap(rng)
    with pytest.raises(NonPositiveDenominatorError, match="row sums .* <= 0"):
        poly_attention(Q, K, V, degree=3, method="chebyshev", scale=1.0)


def test_nonpositive_denominator_falls_back_to_taylor(rng):
    Q, K, V = _chebyshev_trap(rng)
    got, info = poly_attention(Q, K, V, degree=3, method="chebyshev", scale=1.0,
                               on_nonpositive="taylor", return_info=True)
    assert info.fallback_used and info.method == "taylor" and info.degree == 4
    np.testing.assert_allclose(got, poly_attention(Q, K, V, degree=4, scale=1.0), atol=1e-14)
    assert np.all(np.isfinite(got))


# ---------------------------------------------------------------------- random features


def test_random_features_error_shrinks_with_feature_count(rng):
    Q, K1, K2, V1, V2 = rng.uniform(-1, 1, (5, 64, 4))
    exact = tensor_attention(Q, K1, K2, V1, V2)
    err = {
        m: np.mean([np.abs(poly_tensor_attention(Q, K1, K2, V1, V2, degree=4, method="random",
                                                 num_features=m, rng=seed) - exact).max()
                    for seed in range(3)])
        for m in (16, 1024)
    }
    # m^{-1/2}: 64x more features, 8x smaller; allow 3x against the sampling noise
    assert err[1024] < err[16] / 3
    assert err[1024] < 1e-3


def test_random_features_run_where_the_rank_is_too_large(rng):
    d = 64
    Q, K, V = rng.uniform(-1, 1, (3, 100, d)) / 2
    with pytest.raises(ValueError, match=r"would need .* PiB.*method=.random. \(random features"):
        poly_attention(Q, K, V, degree=12)
    approx, info = poly_attention(Q, K, V, degree=4, method="random", num_features=256, rng=0,
                                  return_info=True)
    assert info.rank == 1 + 4 * 256
    assert np.abs(approx - softmax_attention(Q, K, V)).max() < 1e-2


def test_random_features_are_reproducible(rng):
    Q, K, V = rng.uniform(-1, 1, (3, 20, 3))
    a = poly_attention(Q, K, V, degree=2, method="random", rng=5)
    b = poly_attention(Q, K, V, degree=2, method="random", rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------- backends, dtypes, chunks


@given(seed=st.integers(0, 2**32 - 1), causal=st.booleans(), chunk=st.integers(1, 30),
       order=st.sampled_from([2, 3]))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_chunking_and_backends_agree(xp, seed, causal, chunk, order):
    rng = np.random.default_rng(seed)
    Q = rng.uniform(-1, 1, (23, 3))
    keys = [rng.uniform(-1, 1, (23, 3)) for _ in range(order - 1)]
    values = [rng.uniform(-1, 1, (23, 3)) for _ in range(order - 1)]
    with sci.use_backend("numpy"):  # the reference: NumPy, one chunk
        reference = poly_higher_order_attention(Q, keys, values, degree=4, causal=causal)
    results = [
        poly_higher_order_attention(*_on(xp, Q, keys, values), degree=4, causal=causal,
                                    chunk_size=chunk),
        poly_higher_order_attention(*_on(xp, Q, keys, values), degree=4, causal=causal),
    ]
    for r in results:
        assert xp.is_leg_array(r)
        np.testing.assert_allclose(xp.to_numpy(r), reference, rtol=0, atol=1e-13)
    single = poly_higher_order_attention(
        *_on(xp, np.float32(Q), [np.float32(k) for k in keys], [np.float32(v) for v in values]),
        degree=4, causal=causal, chunk_size=chunk)
    assert single.dtype == xp.float32
    # float32 rounding of C(7, 4) = 35 terms of size <= e: well below 1e-5
    np.testing.assert_allclose(xp.to_numpy(single), reference, rtol=0, atol=1e-5)


def test_float32(rng):
    Q, K1, K2, V1, V2 = rng.uniform(-1, 1, (5, 50, 4))
    got = poly_tensor_attention(*(np.float32(a) for a in (Q, K1, K2, V1, V2)), degree=6)
    assert got.dtype == np.float32
    # float32 rounding (6e-8) of r = 210 terms plus the g = 6 truncation (< 1e-6 here)
    np.testing.assert_allclose(got, tensor_attention(Q, K1, K2, V1, V2), atol=1e-5)


def test_zero_logits_need_degree_zero(rng):
    V = rng.uniform(-1, 1, (10, 2))
    out, info = poly_attention(np.zeros((4, 2)), V, V, tol=1e-9, return_info=True)
    assert info.degree == 0 and info.logit_bound == 0.0
    np.testing.assert_allclose(out, np.broadcast_to(V.mean(0), out.shape), atol=1e-15)


def test_rounding_floor_is_estimated_and_enforced(rng):
    """Large R: the monomial sums cancel like e^{2R} u; the estimate bounds the measured error
    and a tol below it is refused rather than silently missed."""
    Q, K1, K2, V1, V2 = 2.0 * rng.choice([-1.0, 1.0], (5, 48, 4))  # R = 8
    exact = tensor_attention(Q, K1, K2, V1, V2)
    approx, info = poly_tensor_attention(Q, K1, K2, V1, V2, tol=1e-3, return_info=True)
    assert info.rounding_error > 1e3 * float(np.finfo(float).eps)
    assert np.abs(approx - exact).max() <= info.predicted_error
    with pytest.raises(ValueError, match="below the float64 rounding floor .* R = 8"):
        poly_tensor_attention(Q, K1, K2, V1, V2, tol=1e-9)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("method", ["taylor", "random"])
def test_torch_gradients_of_the_polynomial_method(causal, method):
    """Torch tensors stay torch, and autograd's backward passes gradcheck in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)

    def leaf(shape):
        return torch.tensor(0.5 * rng.standard_normal(shape), dtype=torch.float64,
                            requires_grad=True)

    Q, K1, K2, V1, V2 = (leaf((5, 2)) for _ in range(5))
    kw = {"degree": 4, "method": method, "causal": causal, "chunk_size": 2}
    if method == "random":
        kw.update(num_features=4, rng=3)  # the same draw in every evaluation of gradcheck
    out = poly_tensor_attention(Q, K1, K2, V1, V2, **kw)
    assert isinstance(out, torch.Tensor) and out.requires_grad
    assert torch.autograd.gradcheck(lambda q, k, v: poly_attention(q, k, v, **kw), (Q, K1, V1),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)
    assert torch.autograd.gradcheck(lambda *a: poly_tensor_attention(*a, **kw),
                                    (Q, K1, K2, V1, V2), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_torch_gradient_of_chebyshev_holds_the_interval_fixed(causal):
    """The Chebyshev polynomial is fitted on [-R, R] with R read from the inputs; the backward
    differentiates the polynomial so chosen (R held fixed, as documented). Oracle: the dense
    attention with exp replaced by that polynomial, differentiated by torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    Q, K, V = (torch.tensor(0.5 * rng.standard_normal((5, 2)), dtype=torch.float64,
                            requires_grad=True) for _ in range(3))
    out, info = poly_attention(Q, K, V, degree=5, method="chebyshev", causal=causal,
                               return_info=True)
    c = exp_polynomial_coefficients(5, method="chebyshev", bound=info.logit_bound)
    logits = Q @ K.T / 2
    A = sum(float(ct) * logits**t for t, ct in enumerate(c))
    if causal:
        A = torch.tril(A)
    dense = (A @ V) / A.sum(dim=1, keepdim=True)
    torch.testing.assert_close(out, dense, rtol=0, atol=1e-12)
    weight = torch.tensor(rng.standard_normal((5, 2)), dtype=torch.float64)
    ours = torch.autograd.grad((out * weight).sum(), (Q, K, V))
    want = torch.autograd.grad((dense * weight).sum(), (Q, K, V))
    for a, b in zip(ours, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_features_and_bounds_on_every_library(xp, rng):
    X = rng.standard_normal((5, 3))
    c = [1.0, 1.0, 0.5, 1 / 6]
    with sci.use_backend("numpy"):
        ref = polynomial_features(X, 3, scale=0.5, coefficients=c)
        bounds = {k: logit_bound(X, [X, X], kind=k) for k in ("holder", "entry")}
    got = polynomial_features(xp.asarray(X), 3, scale=0.5, coefficients=c)
    assert xp.is_leg_array(got)
    np.testing.assert_allclose(xp.to_numpy(got), ref, rtol=1e-14, atol=1e-15)
    for kind, want in bounds.items():
        assert logit_bound(xp.asarray(X), [xp.asarray(X)] * 2, kind=kind) == pytest.approx(
            want, rel=1e-14)
    if xp.name == "torch":
        import torch

        leaf = torch.tensor(X, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a: polynomial_features(a, 3, coefficients=c),
                                        (leaf,), eps=1e-6, atol=1e-7, rtol=1e-5)

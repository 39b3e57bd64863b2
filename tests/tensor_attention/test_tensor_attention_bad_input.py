"""Bad input: named arguments, what was given, what is accepted."""

from __future__ import annotations

import numpy as np
import pytest

from sci._validation import MemoryLimitError
from sci.tensor_attention import (
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

X = np.ones((4, 3))


@pytest.mark.parametrize("fn", [softmax_attention, poly_attention])
def test_shapes(fn):
    with pytest.raises(ValueError, match=r"K must have d = 3 columns like Q; got shape \(4, 2\)"):
        fn(X, np.ones((4, 2)), X)
    with pytest.raises(ValueError, match="same number of rows; K has 4, V has 5"):
        fn(X, X, np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"Q must have at least 2 dimensions, \(\.\.\., n, d\)"):
        fn(np.ones(3), X, X)
    with pytest.raises(ValueError, match="at least one row"):
        fn(X, np.ones((0, 3)), np.ones((0, 3)))
    with pytest.raises(ValueError, match="causal mask needs as many queries as keys; got 4 q"):
        fn(X, np.ones((5, 3)), np.ones((5, 3)), causal=True)


@pytest.mark.parametrize("fn", [tensor_attention, poly_tensor_attention])
def test_tensor_shapes_and_values(fn):
    with pytest.raises(ValueError, match="K2 must have d = 3 columns"):
        fn(X, X, np.ones((4, 4)), X, X)
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="V2 must be finite"):
        fn(X, X, X, X, bad)
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="K1 must be finite"):
        fn(X, bad, X, X, X)
    with pytest.raises(TypeError, match="Q must be real"):
        fn(X + 1j, X, X, X, X)
    with pytest.raises(ValueError, match="scale must be > 0"):
        fn(X, X, X, X, X, scale=0.0)
    with pytest.raises(TypeError, match="causal must be a bool"):
        fn(X, X, X, X, X, causal="yes")


def test_higher_order_arguments():
    with pytest.raises(TypeError, match="keys must be a list or tuple"):
        higher_order_attention(X, X, [X])
    with pytest.raises(ValueError, match="as many keys as values; got 2 keys and 1 values"):
        higher_order_attention(X, [X, X], [X])
    with pytest.raises(ValueError, match="between 1 and 7; got 8"):
        higher_order_attention(X, [X] * 8, [X] * 8)
    with pytest.raises(ValueError, match="between 1 and 7; got 0"):
        higher_order_attention(X, [], [])


def test_polynomial_options():
    with pytest.raises(ValueError, match=r"tol must be < 1.0; got 1.5"):
        poly_attention(X, X, X, tol=1.5)
    with pytest.raises(ValueError, match=r"tol must be > 0.0; got 0.0"):
        poly_attention(X, X, X, tol=0.0)
    with pytest.raises(ValueError, match="below what float32 can resolve.*use float64 inputs"):
        poly_attention(np.float32(X), np.float32(X), np.float32(X), tol=1e-9)
    # Already float64: the advice is a larger tol, not the dtype it already has.
    with pytest.raises(ValueError, match=r"below what float64 can resolve.*use a larger tol$"):
        poly_attention(np.float64(X), np.float64(X), np.float64(X), tol=1e-16)
    with pytest.raises(ValueError, match="give degree or tol, not both"):
        poly_attention(X, X, X, tol=1e-3, degree=2)
    with pytest.raises(ValueError, match="degree must be >= 0; got -1"):
        poly_attention(X, X, X, degree=-1)
    with pytest.raises(TypeError, match="degree must be an integer; got float"):
        poly_attention(X, X, X, degree=2.0)
    with pytest.raises(ValueError, match="method must be one of 'taylor', 'chebyshev', 'random'"):
        poly_attention(X, X, X, method="pade")
    with pytest.raises(ValueError, match="bound must be 'holder' or 'entry'"):
        poly_attention(X, X, X, bound="l2")
    with pytest.raises(ValueError, match="on_nonpositive must be 'raise' or 'taylor'"):
        poly_attention(X, X, X, on_nonpositive="exact")
    with pytest.raises(TypeError, match="unexpected keyword argument.*degre"):
        poly_attention(X, X, X, degre=2)
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        poly_attention(X, X, X, method="random", num_features=0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        poly_attention(X, X, X, chunk_size=0)


def test_entries_beyond_the_polynomial_regime():
    big = 40 * X
    with pytest.raises(ValueError, match="no degree up to 200 reaches tol.*use the exact"):
        poly_tensor_attention(big, big, big, X, X, tol=1e-6)


def test_rank_too_large_for_memory_says_how_much():
    with pytest.raises(MemoryLimitError, match=r"rank 377348994 would need .*GiB.*random"):
        poly_attention(np.ones((8, 40)), np.ones((8, 40)), np.ones((8, 40)), degree=8)
    with pytest.raises(MemoryLimitError, match="factor matrix of rank .* would need"):
        polynomial_features(np.ones((1000, 60)), 10)


def test_building_block_arguments():
    with pytest.raises(ValueError, match="bound must be >= 0.0"):
        exp_approximation_error(3, -1.0)
    with pytest.raises(ValueError, match="method must be one of 'taylor', 'chebyshev'; got 'r"):
        exp_polynomial_coefficients(3, method="random")
    with pytest.raises(ValueError, match="degree must be <= 200"):
        exp_polynomial_coefficients(201)
    with pytest.raises(ValueError, match="d must be >= 1"):
        feature_rank(0, 2)
    with pytest.raises(ValueError, match="tol must be < 1.0"):
        select_degree(1.0, 1.0)
    with pytest.raises(ValueError, match="coefficients must be 3 finite numbers"):
        polynomial_features(X, 2, coefficients=[1.0, 1.0])
    with pytest.raises(ValueError, match="kind must be one of .holder., .entry.; got .l2."):
        logit_bound(X, [X], kind="l2")


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_overflowing_logits_raise_instead_of_nan(name):
    import sci

    huge = np.full((3, 2), 1e120)
    with sci.use_backend(name), pytest.raises(FloatingPointError, match="may overflow float64"):
        tensor_attention(huge, huge, huge, X[:3, :2], X[:3, :2])


def test_overflowing_factors_raise_instead_of_nan():
    big = np.full((4, 3), 1e30)
    with pytest.raises(FloatingPointError, match="factored sums overflowed"):
        poly_tensor_attention(big, big, big, X, X, degree=8)


def test_exact_refuses_an_astronomical_number_of_tuples():
    rows = np.ones((600, 2))
    with pytest.raises(ValueError, match=r"order-8 attention would visit m\^7 = 2.799e\+19"):
        higher_order_attention(rows[:1], [rows] * 7, [rows] * 7)


def _exact_and_polynomial(Q, keys, values, which):
    """Every exact and polynomial entry point on the same inputs (order 2 or 3 by len(keys))."""
    if which == "softmax":
        return softmax_attention(Q, keys[0], values[0])
    if which == "poly":
        return poly_attention(Q, keys[0], values[0], degree=2)
    if which == "tensor":
        return tensor_attention(Q, *keys, *values)
    if which == "poly_tensor":
        return poly_tensor_attention(Q, *keys, *values, degree=2, method="chebyshev")
    if which == "higher_order":
        return higher_order_attention(Q, keys, values)
    return poly_higher_order_attention(Q, keys, values, tol=1e-3, method="random", rng=0)


ENTRY_POINTS = ["softmax", "poly", "tensor", "poly_tensor", "higher_order", "poly_higher_order"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", ENTRY_POINTS)
def test_empty_queries_give_an_empty_result(backend, backend_xp, to_numpy, which, dtype):
    # A batch of variable-size inputs may hold an empty one: its result is empty, of the
    # backend and dtype the non-empty ones have, and stacking the pieces gives the whole.
    rng = np.random.default_rng(5)
    pairs = 1 if which in ("softmax", "poly") else 2
    Q = rng.uniform(-1, 1, (3, 2)).astype(dtype)
    keys = [rng.uniform(-1, 1, (4, 2)).astype(dtype) for _ in range(pairs)]
    values = [rng.uniform(-1, 1, (4, 2)).astype(dtype) for _ in range(pairs)]
    empty = _exact_and_polynomial(Q[:0], keys, values, which)
    whole = _exact_and_polynomial(Q, keys, values, which)
    assert type(empty) is type(whole)
    assert empty.shape == (0, 2)
    assert empty.dtype == whole.dtype == dtype
    stacked = np.concatenate([to_numpy(empty), to_numpy(whole)])
    np.testing.assert_array_equal(stacked, to_numpy(whole))


def test_empty_queries_still_validate_the_rest():
    none = np.ones((0, 3))
    with pytest.raises(ValueError, match=r"K must have d = 3 columns like Q; got shape \(4, 2\)"):
        softmax_attention(none, np.ones((4, 2)), X)
    with pytest.raises(ValueError, match="causal mask needs as many queries as keys; got 0 q"):
        poly_attention(none, X, X, causal=True)
    with pytest.raises(ValueError, match="Q must have at least one column"):
        tensor_attention(np.ones((0, 0)), X, X, X, X)
    approx, info = poly_tensor_attention(none, X, X, X, X, tol=1e-6, return_info=True)
    assert approx.shape == (0, 3)
    # no queries, no logits: the bound is 0 and the degree the smallest (exp(0) = 1 exactly)
    assert info.logit_bound == 0.0 and info.degree == 0
    assert logit_bound(none, [X]) == 0.0


def test_exact_refuses_hours_of_work_up_front():
    rows = np.ones((20_000, 4))
    with pytest.raises(
        ValueError,
        match=r"order-3 attention would take n \* m\^2 \* d = 20000 \* 20000\^2 \* 4 = 3.2e\+13 "
        r"multiply-adds, about 8.89 hours at ~1e9 per second, above max_work = 1e\+12; use "
        r"poly_tensor_attention .*max_work=None",
    ):
        tensor_attention(rows, rows, rows, rows, rows)
    with pytest.raises(ValueError, match=r"order-2 .* = 1.6e\+13 multiply-adds.*poly_attention"):
        softmax_attention(np.ones((10**6, 4)), np.ones((4 * 10**6, 4)), np.ones((4 * 10**6, 4)))
    with pytest.raises(ValueError, match=r"order-4 .*use poly_higher_order_attention"):
        higher_order_attention(rows[:20], [rows] * 3, [rows] * 3)


def test_max_work_is_the_exact_threshold_and_none_disables_it():
    rng = np.random.default_rng(6)
    Q, K1, K2, V1, V2 = rng.uniform(-1, 1, (5, 6, 2))
    work = 6 * 6**2 * 2
    reference = tensor_attention(Q, K1, K2, V1, V2)
    np.testing.assert_array_equal(
        tensor_attention(Q, K1, K2, V1, V2, max_work=work), reference)
    np.testing.assert_array_equal(
        tensor_attention(Q, K1, K2, V1, V2, max_work=None), reference)
    with pytest.raises(ValueError, match=r"= 432 multiply-adds, about 4.32e-07 seconds"):
        tensor_attention(Q, K1, K2, V1, V2, max_work=work - 1)
    with pytest.raises(ValueError, match=r"6 \* 6\^1 \* 2 = 72 multiply-adds.*max_work = 71"):
        softmax_attention(Q, K1, V1, max_work=71)
    with pytest.raises(ValueError, match=r"m\^3 .*above max_work = 100"):
        higher_order_attention(Q, [K1] * 3, [V1] * 3, max_work=100)


@pytest.mark.parametrize(
    ("max_work", "error", "message"),
    [
        (0, ValueError, r"max_work must be > 0.0; got 0.0"),
        (-1e12, ValueError, r"max_work must be > 0.0; got -1000000000000.0"),
        (float("nan"), ValueError, "max_work must be finite"),
        ("1e12", TypeError, "max_work must be a real number; got str"),
    ],
)
def test_max_work_argument(max_work, error, message):
    with pytest.raises(error, match=message):
        softmax_attention(X, X, X, max_work=max_work)

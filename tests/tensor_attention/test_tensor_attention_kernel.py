"""The Numba kernel's own exponential and its shift (bound, and the fallback for huge logits)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import sci
from sci.tensor_attention import higher_order_attention, tensor_attention

pytest.importorskip("numba")
if "numba" not in sci.available_backends():  # pragma: no cover - numba is a dependency
    pytest.skip("the numba backend is not available", allow_module_level=True)

from sci.tensor_attention._cpu import LOG2E, scaled_exp2  # noqa: E402

TOL = 1e-12  # as in test_tensor_attention_exact.py: sums of <= 4096 positive terms <= 1


def _ulp_errors(got, y):
    """|got - 2^y| in units in the last place of the float64 nearest 2^y (mpmath, 40 digits)."""
    errors = np.empty(len(y))
    with mpmath.workdps(40):
        for n, (g, v) in enumerate(zip(got, y, strict=True)):
            exact = mpmath.mpf(2) ** mpmath.mpf(float(v))
            errors[n] = float(abs(mpmath.mpf(float(g)) - exact) / np.spacing(float(exact)))
    return errors


def test_exp2_is_within_4_ulp_over_the_whole_range():
    """2^y for y in [-1080, 0]: normal results, the gradual underflow below y = -1022 (ulps of
    the subnormal spacing there) and the flush to 0 below y = -1075; 1 ulp is what a polynomial
    of error 4e-17 evaluated in float64 gives, 4 leaves a margin."""
    rng = np.random.default_rng(0)
    y = np.concatenate([
        np.linspace(-1080.0, 0.0, 4001),
        rng.uniform(-1.0, 0.0, 1000),
        rng.uniform(-1075.0, -1020.0, 1000),
        -np.geomspace(1e-300, 1.0, 200),
        [-0.5, -1.5, -1021.5, -1022.0, -1074.0, -1074.5, -1075.0, -1075.5, -2000.0, -1e300],
    ])
    got = scaled_exp2(y) * 2.0**-54  # the kernel's weights carry 2^54; this product is exact
    assert _ulp_errors(got, y).max() <= 4.0  # for normal results: with the scaling exact
    assert got[y <= -1075.0].max() == 0.0
    assert np.all(np.diff(got[:4001]) >= 0.0)  # monotone along the grid


def test_exp2_of_zero_is_exactly_one_and_integers_are_exact():
    y = -np.arange(0.0, 1075.0)
    got = scaled_exp2(y) * 2.0**-54
    np.testing.assert_array_equal(got, [math.ldexp(1.0, int(v)) for v in y])
    assert scaled_exp2(np.array([0.0, -0.0]))[0] == 2.0**54


def test_exp_of_the_kernel_against_math_exp():
    """The kernel forms e^x as 2^(x log2 e), log2 e folded into the logits: within 4 ulp plus
    the rounding of x log2 e (|x| ulp at most), an error of the size of the logit's own
    rounding (|logit| 2^-53). Including exp(0) = 1 and the underflow below x = -708."""
    x = np.concatenate([np.linspace(-745.0, 0.0, 4001), [-1e-300, -708.4, -744.4, -745.2]])
    got = scaled_exp2(x * LOG2E) * 2.0**-54
    want = np.array([math.exp(v) for v in x])
    ulp = np.spacing(want)
    assert np.all(np.abs(got - want) <= (4.0 + np.abs(x)) * ulp)
    normal = x > -700.0
    relative = np.abs(got - want)[normal] / want[normal]
    assert relative.max() <= (4.0 + 700.0) * 2.0**-52
    assert got[x == 0.0][0] == 1.0


def test_bound_far_above_the_largest_logit_falls_back_to_the_exact_maximum(dense_reference):
    """K1 = 1, K2 rows (1, -1), (-1, 1), (1, -1.001) and q = (1000, 1000): the shift bound is
    s (|c_1| + |c_2|) ~ 2000 while the logits are 0, 0 and -1, so every weight would underflow
    (all clamped alike: equal weights, a wrong mean) without the fallback to the exact maximum."""
    Q = np.full((3, 2), 1000.0)
    K1 = np.ones((3, 2))
    K2 = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.001]])
    V1 = np.array([[1.0, 2.0], [3.0, 5.0], [-1.0, 0.5]])
    V2 = np.array([[7.0, 1.0], [1.0, 3.0], [2.0, -4.0]])
    with sci.use_backend("numba"):
        got = tensor_attention(Q, K1, K2, V1, V2, scale=1.0)
    want = dense_reference(Q, [K1, K2], [V1, V2], scale=1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    equal_weights = V1.mean(0) * V2.mean(0)
    assert np.abs(want - equal_weights).max() > 0.1  # the test can tell the two apart


@pytest.mark.parametrize("d", [1, 5, 8, 9])
@pytest.mark.parametrize("causal", [False, True])
def test_padded_feature_dimensions(d, causal, dense_reference):
    """d is padded to a multiple of 4 (columns beyond the first 4 summed in a separate pass)."""
    rng = np.random.default_rng(d)
    Q = rng.standard_normal((7, d))
    keys = [rng.standard_normal((7, d)) for _ in range(2)]
    values = [rng.standard_normal((7, d)) for _ in range(2)]
    with sci.use_backend("numba"):
        got = higher_order_attention(Q, keys, values, causal=causal, scale=0.8)
    want = dense_reference(Q, keys, values, causal=causal, scale=0.8)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_query_with_huge_logits_among_ordinary_ones(dense_reference):
    """One query with logits ~1e4 (its bound overshoots: fallback), the others ordinary."""
    rng = np.random.default_rng(5)
    Q = rng.standard_normal((6, 4))
    Q[2] *= 3e4
    keys = [rng.standard_normal((6, 4)) for _ in range(2)]
    values = [rng.standard_normal((6, 4)) for _ in range(2)]
    with sci.use_backend("numba"):
        got = higher_order_attention(Q, keys, values)
    want = dense_reference(Q, keys, values)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)

"""Exact matrix, tensor and order-t attention against mpmath, a dense reference and identities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sci.tensor_attention import higher_order_attention, softmax_attention, tensor_attention
from theory import tensor_attention as theory

# float64 sums of at most m^(t-1) <= 4096 positive terms of size <= 1: rounding stays below
# 1e-13, so 1e-12 leaves a margin without hiding an O(1e-8) bug.
TOL = 1e-12


def _on(xp, Q, keys, values):
    """The inputs as arrays of the xp leg, on its device."""
    return xp.asarray(Q), [xp.asarray(k) for k in keys], [xp.asarray(v) for v in values]


def _inputs(rng, n, m, d, order, spread=1.0):
    Q = spread * rng.standard_normal((n, d))
    keys = [spread * rng.standard_normal((m, d)) for _ in range(order - 1)]
    values = [rng.standard_normal((m, d)) for _ in range(order - 1)]
    return Q, keys, values


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_exact_matches_mpmath(xp, rng, order, causal):
    Q, keys, values = _inputs(rng, 4, 4, 2, order)
    got = higher_order_attention(*_on(xp, Q, keys, values), causal=causal)
    assert xp.is_leg_array(got)
    got = xp.to_numpy(got)
    want = np.array(theory.attention_mpmath(Q, keys, values, causal=causal), dtype=float)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


@given(
    n=st.integers(1, 9), m=st.integers(1, 9), d=st.integers(1, 5), order=st.sampled_from([2, 3]),
    causal=st.booleans(), seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([0.1, 1, 3]),
    scale=st.sampled_from([None, 0.3, 2.0]), dtype=st.sampled_from([np.float64, np.float32]),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_exact_matches_dense_reference(xp, n, m, d, order, causal, seed, spread, scale, dtype,
                                       dense_reference):
    if causal:
        m = n
    Q, keys, values = _inputs(np.random.default_rng(seed), n, m, d, order, spread)
    # the reference sees the same (rounded) inputs, in float64
    Q, keys, values = (Q.astype(dtype), [k.astype(dtype) for k in keys],
                       [v.astype(dtype) for v in values])
    got = higher_order_attention(*_on(xp, Q, keys, values), scale=scale, causal=causal)
    assert xp.is_leg_array(got) and got.dtype == getattr(xp, np.dtype(dtype).name)
    got = xp.to_numpy(got)
    want = dense_reference(Q, keys, values, scale=scale, causal=causal)
    # float32: logits up to ~|s| d spread^t ~ 60 carry a relative rounding of 6e-8 each,
    # which moves the weights by ~4e-6 relative; 1e-4 leaves a margin.
    tol = TOL if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, np.abs(want).max()))


def test_blocked_array_code_covers_many_blocks(xp, monkeypatch, rng, dense_reference):
    """Small blocks force the online max shift across many query and tuple blocks (the
    NumPy blocked code on the numpy leg, the standard array code on strict, _torch.py on torch)."""
    from sci.tensor_attention import _exact

    monkeypatch.setattr(_exact, "_BLOCK_ELEMENTS", 7)
    Q, keys, values = _inputs(rng, 11, 11, 3, 3, spread=2.0)
    for causal in (False, True):
        q, k, v = _on(xp, Q, keys, values)
        got = xp.to_numpy(tensor_attention(q, *k, *v, causal=causal))
        want = dense_reference(Q, keys, values, causal=causal)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_named_wrappers_are_orders_two_and_three(backend, to_numpy, rng):
    Q, (K1, K2), (V1, V2) = _inputs(rng, 6, 6, 3, 3)
    np.testing.assert_array_equal(
        to_numpy(tensor_attention(Q, K1, K2, V1, V2)),
        to_numpy(higher_order_attention(Q, [K1, K2], [V1, V2])),
    )
    np.testing.assert_array_equal(
        to_numpy(softmax_attention(Q, K1, V1, causal=True)),
        to_numpy(higher_order_attention(Q, [K1], [V1], causal=True)),
    )


def test_constant_second_key_reduces_tensor_to_matrix_attention(backend, to_numpy, rng):
    """K2 = V2 = 1: every k gives the same factor, so tensor attention is matrix attention."""
    Q, (K1, _), (V1, _) = _inputs(rng, 7, 5, 3, 3)
    ones = np.ones_like(K1)
    got = to_numpy(tensor_attention(Q, K1, ones, V1, ones, scale=0.7))
    want = to_numpy(softmax_attention(Q, K1, V1, scale=0.7))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_zero_queries_give_product_of_means(backend, to_numpy, rng):
    """Zero logits: the mean over (j, k) of V1[j] V2[k] separates into mean(V1) mean(V2)."""
    _, (K1, K2, K3), (V1, V2, V3) = _inputs(rng, 1, 6, 3, 4)
    got = to_numpy(higher_order_attention(np.zeros((3, 3)), [K1, K2, K3], [V1, V2, V3]))
    want = V1.mean(0) * V2.mean(0) * V3.mean(0)
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=0, atol=TOL)


def test_causal_first_row_sees_only_first_tuple(xp, rng):
    Q, keys, values = _inputs(rng, 5, 5, 2, 3)
    got = xp.to_numpy(higher_order_attention(*_on(xp, Q, keys, values), causal=True))
    np.testing.assert_allclose(got[0], values[0][0] * values[1][0], rtol=0, atol=TOL)


def test_joint_permutation_of_a_key_and_its_value_changes_nothing(backend, to_numpy, rng):
    Q, (K1, K2), (V1, V2) = _inputs(rng, 5, 8, 3, 3)
    perm = rng.permutation(8)
    a = to_numpy(tensor_attention(Q, K1, K2, V1, V2))
    b = to_numpy(tensor_attention(Q, K1[perm], K2, V1[perm], V2))
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


@pytest.mark.parametrize("order", [2, 3])
def test_huge_logits_are_stable_and_select_the_argmax(xp, rng, order):
    """Logits of order 1e6 overflow a naive exp; the online shift keeps the limit: the tuple
    with the largest logit takes all the weight."""
    Q, keys, values = _inputs(rng, 4, 5, 3, order, spread=1.0)
    got = xp.to_numpy(higher_order_attention(*_on(xp, 1e6 * Q, keys, values)))
    assert np.all(np.isfinite(got))
    import itertools

    tuples = list(itertools.product(range(5), repeat=order - 1))
    for i in range(4):
        logits = [Q[i] @ np.prod([K[j] for K, j in zip(keys, J, strict=True)], axis=0)
                  for J in tuples]
        best = tuples[int(np.argmax(logits))]
        want = np.prod([V[j] for V, j in zip(values, best, strict=True)], axis=0)
        np.testing.assert_allclose(got[i], want, rtol=0, atol=TOL)


def test_float32_is_kept_and_close(xp, rng):
    Q, keys, values = _inputs(rng, 6, 6, 4, 3)
    to_numpy = xp.to_numpy
    got = higher_order_attention(*_on(xp, np.float32(Q), [np.float32(k) for k in keys],
                                      [np.float32(v) for v in values]))
    assert xp.is_leg_array(got) and got.dtype == xp.float32
    want = to_numpy(higher_order_attention(*_on(xp, Q, keys, values)))
    # float32 inputs are rounded (rel 6e-8) before the sums: 1e-5 is ~100 ulp of float32.
    np.testing.assert_allclose(to_numpy(got), want, rtol=0, atol=1e-5)


def test_inputs_are_not_mutated(backend, rng):
    Q, keys, values = _inputs(rng, 5, 5, 2, 3)
    copies = [a.copy() for a in (Q, *keys, *values)]
    higher_order_attention(Q, keys, values, causal=True)
    for a, b in zip((Q, *keys, *values), copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_more_queries_than_keys(xp, rng, dense_reference):
    Q, keys, values = _inputs(rng, 9, 3, 2, 3)
    got = xp.to_numpy(higher_order_attention(*_on(xp, Q, keys, values)))
    np.testing.assert_allclose(got, dense_reference(Q, keys, values), rtol=0, atol=TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_torch_gradients_of_exact_attention(causal):
    """Torch tensors take the autograd.Function of _torch.py; its backward passes gradcheck in
    float64 (test_tensor_attention_torch_grad.py tests it in depth)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)

    def leaf(shape):
        return torch.tensor(rng.standard_normal(shape), dtype=torch.float64, requires_grad=True)

    Q, K1, K2, V1, V2 = (leaf((4, 2)) for _ in range(5))
    out = tensor_attention(Q, K1, K2, V1, V2, causal=causal)
    assert isinstance(out, torch.Tensor) and out.requires_grad
    for f, args in (
        (lambda q, k, v: softmax_attention(q, k, v, causal=causal), (Q, K1, V1)),
        (lambda *a: tensor_attention(*a, causal=causal), (Q, K1, K2, V1, V2)),
        (lambda q, k1, k2, k3, v1, v2, v3: higher_order_attention(
            q, [k1, k2, k3], [v1, v2, v3], causal=causal),
         (Q, K1, K2, leaf((4, 2)), V1, V2, leaf((4, 2)))),
    ):
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_exact_attention_refuses_two_libraries():
    torch = pytest.importorskip("torch")
    Q = torch.ones((2, 2), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"Q and K are arrays of different libraries"):
        softmax_attention(Q, np.ones((2, 2)), Q)

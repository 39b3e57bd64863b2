"""Leading batch axes (..., n, d), value widths d_v != d and scale="sqrt" (issue 16, items 1-2).

Oracles: the dense formula (every tuple formed, tests/tensor_attention/conftest.py) applied to
each batch element after NumPy's broadcasting, the 2-D call of the same function on each batch
element, and torch's scaled_dot_product_attention for the matrix case with scale="sqrt".
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sci.tensor_attention import (
    PolyAttentionInfo,
    higher_order_attention,
    poly_attention,
    poly_higher_order_attention,
    poly_tensor_attention,
    softmax_attention,
    tensor_attention,
)

# float64 sums of at most m^(t-1) <= 125 terms of size <= ~10: rounding ~1e-14; 1e-12 leaves a
# margin without hiding a wrong batch element or a wrong value column (errors of order 1).
TOL = 1e-12


def _random(rng, shape):
    return rng.standard_normal(shape)


def _batched_inputs(rng, q_batch, k_batch, v_batch, n, m, d, d_v, pairs):
    Q = _random(rng, (*q_batch, n, d))
    keys = [_random(rng, (*k_batch, m, d)) for _ in range(pairs)]
    values = [_random(rng, (*v_batch, m, d_v)) for _ in range(pairs)]
    return Q, keys, values


def _dense_batched(dense_reference, Q, keys, values, **kwargs):
    """The dense formula on every batch element, after NumPy's broadcasting of the inputs."""
    batch = np.broadcast_shapes(*(X.shape[:-2] for X in (Q, *keys, *values)))
    Qb = np.broadcast_to(Q, (*batch, *Q.shape[-2:]))
    kb = [np.broadcast_to(K, (*batch, *K.shape[-2:])) for K in keys]
    vb = [np.broadcast_to(V, (*batch, *V.shape[-2:])) for V in values]
    out = np.empty((*batch, Q.shape[-2], values[0].shape[-1]))
    for index in np.ndindex(*batch):
        out[index] = dense_reference(Qb[index], [K[index] for K in kb], [V[index] for V in vb],
                                     **kwargs)
    return out


def _on(xp, Q, keys, values):
    return xp.asarray(Q), [xp.asarray(k) for k in keys], [xp.asarray(v) for v in values]


# the batch shapes of Q, the keys and the values: equal, broadcast against 1, missing axes
BATCHES = [
    ((2,), (2,), (2,)),
    ((2, 1), (3,), (1, 3)),
    ((), (2, 2), ()),
    ((1, 2), (), (2, 1, 1)),
]


@pytest.mark.parametrize("pairs", [1, 2, 3])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("batches", BATCHES, ids=str)
def test_exact_batched_matches_dense_per_element(xp, rng, pairs, causal, batches,
                                                 dense_reference):
    n = m = 4
    d, d_v = 3, 5
    Q, keys, values = _batched_inputs(rng, *batches, n, m, d, d_v, pairs)
    got = higher_order_attention(*_on(xp, Q, keys, values), causal=causal)
    assert xp.is_leg_array(got)
    batch = np.broadcast_shapes(*batches)
    assert tuple(got.shape) == (*batch, n, d_v)
    want = _dense_batched(dense_reference, Q, keys, values, causal=causal)
    np.testing.assert_allclose(xp.to_numpy(got), want, rtol=0, atol=TOL)


@pytest.mark.parametrize("function, pairs", [(softmax_attention, 1), (tensor_attention, 2)])
def test_named_functions_batched_equal_their_2d_calls(xp, rng, function, pairs):
    """Each batch element equals the 2-D call on that element's (broadcast) inputs."""
    Q, keys, values = _batched_inputs(rng, (2, 3), (3,), (2, 1), 5, 6, 2, 4, pairs)
    got = xp.to_numpy(function(*(xp.asarray(X) for X in (Q, *keys, *values))))
    for a in range(2):
        for b in range(3):
            element = function(xp.asarray(Q[a, b]), *(xp.asarray(K[b]) for K in keys),
                               *(xp.asarray(V[a, 0]) for V in values))
            np.testing.assert_allclose(got[a, b], xp.to_numpy(element), rtol=0, atol=1e-14)


@given(
    n=st.integers(1, 6), m=st.integers(1, 6), d=st.integers(1, 5), d_v=st.integers(1, 9),
    pairs=st.sampled_from([1, 2]), causal=st.booleans(), seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([None, "sqrt", 0.7]), dtype=st.sampled_from([np.float64, np.float32]),
)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_value_width_independent_of_d(xp, n, m, d, d_v, pairs, causal, seed, scale, dtype,
                                      dense_reference):
    """d_v != d on every leg (the Numba kernel pads the narrower side with zero columns)."""
    if causal:
        m = n
    Q, keys, values = _batched_inputs(np.random.default_rng(seed), (), (), (), n, m, d, d_v,
                                      pairs)
    Q, keys, values = (Q.astype(dtype), [k.astype(dtype) for k in keys],
                       [v.astype(dtype) for v in values])
    got = higher_order_attention(*_on(xp, Q, keys, values), causal=causal, scale=scale)
    assert tuple(got.shape) == (n, d_v)
    assert got.dtype == getattr(xp, np.dtype(dtype).name)
    s = 1.0 / math.sqrt(d) if scale == "sqrt" else scale
    want = dense_reference(Q, keys, values, scale=s, causal=causal)
    # float32: logits of size ~5 rounded at 6e-8 relative: 1e-4 leaves a margin
    atol = TOL if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(xp.to_numpy(got), want, rtol=0, atol=atol)


@pytest.mark.parametrize("pairs", [1, 2])
@pytest.mark.parametrize("causal", [False, True])
def test_poly_batched_matches_dense_and_2d_calls(xp, rng, pairs, causal, dense_reference):
    n = m = 6
    d, d_v = 2, 3
    Q, keys, values = _batched_inputs(rng, (2, 1), (3,), (), n, m, d, d_v, pairs)
    Q, keys = 0.5 * Q, [0.5 * K for K in keys]  # bounded entries: the method's regime
    got, infos = poly_higher_order_attention(*_on(xp, Q, keys, values), causal=causal,
                                             tol=1e-10, return_info=True)
    assert xp.is_leg_array(got) and tuple(got.shape) == (2, 3, n, d_v)
    assert infos.shape == (2, 3) and all(isinstance(i, PolyAttentionInfo) for i in infos.flat)
    got = xp.to_numpy(got)
    want = _dense_batched(dense_reference, Q, keys, values, causal=causal)
    for index in np.ndindex(2, 3):
        a, b = index
        element, info = poly_higher_order_attention(
            xp.asarray(Q[a, 0]), [xp.asarray(K[b]) for K in keys],
            [xp.asarray(V) for V in values], causal=causal, tol=1e-10, return_info=True)
        np.testing.assert_allclose(got[index], xp.to_numpy(element), rtol=0, atol=1e-14)
        assert infos[index] == info
        assert np.abs(got[index] - want[index]).max() <= info.predicted_error


def test_poly_named_functions_batched(rng, dense_reference):
    Q, keys, values = _batched_inputs(rng, (2,), (2,), (2,), 5, 5, 3, 2, 2)
    Q, keys = 0.5 * Q, [0.5 * K for K in keys]
    got = poly_tensor_attention(Q, *keys, *values, degree=10)
    want = _dense_batched(dense_reference, Q, keys, values)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)
    got = poly_attention(Q, keys[0], values[0], degree=10, scale="sqrt")
    want = _dense_batched(dense_reference, Q, keys[:1], values[:1], scale=1 / math.sqrt(3))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)


def test_empty_batch_and_empty_queries(xp):
    Q = xp.asarray(np.zeros((0, 3, 2)))
    K = xp.asarray(np.ones((4, 2)))
    V = xp.asarray(np.ones((1, 4, 5)))
    out = softmax_attention(Q, K, V)
    assert tuple(out.shape) == (0, 3, 5) and xp.is_leg_array(out)
    out, infos = poly_attention(Q, K, V, degree=4, return_info=True)
    assert tuple(out.shape) == (0, 3, 5) and infos.shape == (0,)
    out = softmax_attention(xp.asarray(np.zeros((2, 0, 2))), K, V)
    assert tuple(out.shape) == (2, 0, 5)


def test_batch_axes_that_do_not_broadcast_are_refused_by_name(rng):
    Q = rng.standard_normal((2, 3, 4, 2))
    K = rng.standard_normal((4, 4, 2))
    V = rng.standard_normal((4, 2))
    match = r"batch axes .* of K, \(4,\), do not broadcast with those of Q \(2, 3\)"
    with pytest.raises(ValueError, match=match):
        softmax_attention(Q, K, V)
    with pytest.raises(ValueError, match=match):
        poly_attention(Q, K, V, degree=4)
    V2 = rng.standard_normal((5, 4, 2))
    with pytest.raises(ValueError, match=r"batch axes .* of V2, \(5,\), do not broadcast"):
        tensor_attention(Q, V, V, V, V2)


def test_value_widths_must_agree_and_shapes_need_two_axes(rng):
    Q, K = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 2))
    with pytest.raises(ValueError, match=r"same number of columns d_v .* V1 has 3, V2 has"):
        tensor_attention(Q, K, K, rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match=r"K2 must have d = 2 columns like Q"):
        tensor_attention(Q, K, rng.standard_normal((4, 3)), K, K)
    with pytest.raises(ValueError, match=r"Q must have at least 2 dimensions, \(\.\.\., n, d\)"):
        softmax_attention(np.ones(3), K, K)


def test_work_limit_counts_batch_elements(rng):
    Q = rng.standard_normal((3, 6, 2))
    K = rng.standard_normal((6, 2))
    with pytest.raises(ValueError, match=r"b \* n \* m\^1 \* d = 3 \* 6 \* 6\^1 \* 2 = 216"):
        softmax_attention(Q, K, K, max_work=215)
    softmax_attention(Q, K, K, max_work=216)
    # the larger width counts: d_v = 5
    with pytest.raises(ValueError, match=r"= 3 \* 6 \* 6\^1 \* 5 = 540"):
        softmax_attention(Q, K, rng.standard_normal((6, 5)), max_work=539)


def test_scale_sqrt_and_bad_scales(xp, rng):
    Q, K, V = (xp.asarray(rng.standard_normal((4, 3))) for _ in range(3))
    got = softmax_attention(Q, K, V, scale="sqrt")
    want = softmax_attention(Q, K, V, scale=1 / math.sqrt(3))
    np.testing.assert_allclose(xp.to_numpy(got), xp.to_numpy(want), rtol=0, atol=0)
    for bad in ("SQRT", "1/d", ""):
        with pytest.raises(ValueError, match=r"scale must be a positive number, None .* 'sqrt'"):
            softmax_attention(Q, K, V, scale=bad)
    with pytest.raises(ValueError, match="scale"):
        poly_attention(Q, K, V, degree=4, scale="log")


@pytest.mark.parametrize("causal", [False, True])
def test_scale_sqrt_equals_torch_sdpa(rng, causal):
    """Matrix attention with scale="sqrt" is torch's scaled_dot_product_attention, batch axes,
    d_v != d and the causal mask included."""
    torch = pytest.importorskip("torch")
    Q = torch.tensor(rng.standard_normal((2, 3, 5, 4)))
    K = torch.tensor(rng.standard_normal((3, 5, 4)))
    V = torch.tensor(rng.standard_normal((2, 1, 5, 6)))
    got = softmax_attention(Q, K, V, scale="sqrt", causal=causal)
    Kb, Vb = K.expand(2, 3, 5, 4), V.expand(2, 3, 5, 6)
    want = torch.nn.functional.scaled_dot_product_attention(Q, Kb, Vb, is_causal=causal)
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)
    # the default is the papers' 1/d, not torch's 1/sqrt(d)
    default = softmax_attention(Q, K, V, causal=causal)
    assert float((default - want).abs().max()) > 1e-3


@pytest.mark.parametrize("pairs", [1, 2])
@pytest.mark.parametrize("causal", [False, True])
def test_torch_gradients_batched_with_value_width(rng, pairs, causal):
    """gradcheck (float64) through broadcast batch axes and d_v != d, and the gradients
    against autograd through the dense formula, element by element."""
    torch = pytest.importorskip("torch")
    n = 4
    d, d_v = 2, 3

    def leaf(shape):
        return torch.tensor(rng.standard_normal(shape), requires_grad=True)

    Q = leaf((2, n, d))
    keys = [leaf((1, n, d)) for _ in range(pairs)]
    values = [leaf((n, d_v)) for _ in range(pairs)]
    inputs = (Q, *keys, *values)

    def f(q, *kv):
        return higher_order_attention(q, list(kv[:pairs]), list(kv[pairs:]), causal=causal)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)
    weights = torch.tensor(rng.standard_normal((2, n, d_v)))
    grads = torch.autograd.grad((f(*inputs) * weights).sum(), inputs)

    import itertools

    def dense(q, ks, vs):
        tuples = list(itertools.product(range(n), repeat=pairs))
        kr = torch.stack([torch.stack([K[j] for K, j in zip(ks, J, strict=True)]).prod(0)
                          for J in tuples])
        vr = torch.stack([torch.stack([V[j] for V, j in zip(vs, J, strict=True)]).prod(0)
                          for J in tuples])
        logits = q @ kr.T / d
        if causal:
            future = torch.tensor([max(J) for J in tuples])[None, :] > torch.arange(n)[:, None]
            logits = logits.masked_fill(future, -torch.inf)
        return torch.softmax(logits, dim=1) @ vr

    total = sum((dense(Q[b], [K[0] for K in keys], values) * weights[b]).sum() for b in range(2))
    want = torch.autograd.grad(total, inputs)
    for g, w in zip(grads, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=TOL)

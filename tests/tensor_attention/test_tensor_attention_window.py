"""Windowed causal 2-simplicial attention, ``tensor_attention(..., window=(w1, w2))`` (issue 16,
item 3).

Oracle: the dense computation written here, every pair (j, k) formed and masked outside
``i - w1 < j <= i, i - w2 < k <= i``, independent of sci's blocked online-softmax code; and two
identities: windows of length >= n are the causal attention, windows (1, 1) leave the pair
(i, i) alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sci.tensor_attention import _exact, tensor_attention

# float64 sums of at most w1 w2 <= 100 positive terms: rounding ~1e-14; 1e-12 leaves a margin
# without hiding a window off by one (errors of order 1e-2 and more).
TOL = 1e-12


def dense_windowed(Q, K1, K2, V1, V2, window, scale=None):
    """Att_i = sum_{(j,k) in window(i)} e^{L_ijk} V1_j * V2_k / sum e^{L_ijk}, all formed."""
    Q, K1, K2, V1, V2 = (np.asarray(X, float) for X in (Q, K1, K2, V1, V2))
    n, d = Q.shape
    s = 1.0 / d if scale is None else scale
    w1, w2 = window
    logits = s * np.einsum("il,jl,kl->ijk", Q, K1, K2)
    i, j, k = np.ogrid[:n, :n, :n]
    inside = (j <= i) & (j > i - w1) & (k <= i) & (k > i - w2)
    logits = np.where(inside, logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=(1, 2), keepdims=True))
    pairs = V1[:, None, :] * V2[None, :, :]  # (j, k, d_v)
    return np.einsum("ijk,jkl->il", weights, pairs) / weights.sum(axis=(1, 2))[:, None]


def _inputs(rng, n, d, d_v, spread=1.0, batch=()):
    Q, K1, K2 = (spread * rng.standard_normal((*batch, n, d)) for _ in range(3))
    V1, V2 = (rng.standard_normal((*batch, n, d_v)) for _ in range(2))
    return Q, K1, K2, V1, V2


@given(
    n=st.integers(1, 9), w1=st.integers(1, 11), w2=st.integers(1, 11), d=st.integers(1, 4),
    d_v=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([0.1, 1, 4]),
    scale=st.sampled_from([None, "sqrt", 2.0]), dtype=st.sampled_from([np.float64, np.float32]),
)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_window_matches_dense_masked(xp, n, w1, w2, d, d_v, seed, spread, scale, dtype):
    X = [x.astype(dtype) for x in _inputs(np.random.default_rng(seed), n, d, d_v, spread)]
    got = tensor_attention(*(xp.asarray(x) for x in X), scale=scale, window=(w1, w2))
    assert xp.is_leg_array(got) and tuple(got.shape) == (n, d_v)
    assert got.dtype == getattr(xp, np.dtype(dtype).name)
    s = 1.0 / math.sqrt(d) if scale == "sqrt" else scale
    want = dense_windowed(*X, (w1, w2), scale=s)
    # float32: logits up to ~s d spread^3 ~ 100 rounded at 6e-8 relative: weights move by
    # ~1e-5 relative; 1e-3 leaves a margin (an off-by-one window moves them by O(1))
    atol = TOL if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(xp.to_numpy(got), want, rtol=0, atol=atol)


@pytest.mark.parametrize("window", [(3, 7), (7, 3), (1, 40), (40, 2), (5, 5)])
def test_many_blocks_and_chunks(xp, rng, window, monkeypatch):
    """A small block budget forces many query blocks and j chunks (the online softmax's
    rescaling across chunks, windows straddling block edges)."""
    monkeypatch.setattr(_exact, "_BLOCK_ELEMENTS", 24)
    X = _inputs(rng, 37, 3, 2, spread=2.0)
    got = tensor_attention(*(xp.asarray(x) for x in X), window=window)
    np.testing.assert_allclose(xp.to_numpy(got), dense_windowed(*X, window), rtol=0, atol=TOL)


def test_identities(xp, rng):
    X = _inputs(rng, 8, 3, 2)
    on = [xp.asarray(x) for x in X]
    causal = xp.to_numpy(tensor_attention(*on, causal=True))
    for window in [(8, 8), (100, 9)]:
        got = xp.to_numpy(tensor_attention(*on, window=window))
        np.testing.assert_allclose(got, causal, rtol=0, atol=TOL)
    got = xp.to_numpy(tensor_attention(*on, window=(1, 1)))
    np.testing.assert_allclose(got, X[3] * X[4], rtol=0, atol=TOL)


def test_large_logits_are_stable(xp, rng):
    """Logits of size ~1e3: the shift by the running maximum keeps every weight finite."""
    X = _inputs(rng, 12, 2, 3, spread=12.0)
    got = xp.to_numpy(tensor_attention(*(xp.asarray(x) for x in X), window=(4, 3)))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, dense_windowed(*X, (4, 3)), rtol=0, atol=1e-9)


def test_batched_window(xp, rng):
    X = list(_inputs(rng, 6, 2, 3, batch=(2, 3)))
    X[1] = X[1][:, :1]  # K1 broadcast over the second batch axis
    got = xp.to_numpy(tensor_attention(*(xp.asarray(x) for x in X), window=(2, 4)))
    assert got.shape == (2, 3, 6, 3)
    for a in range(2):
        for b in range(3):
            want = dense_windowed(X[0][a, b], X[1][a, 0], X[2][a, b], X[3][a, b], X[4][a, b],
                                  (2, 4))
            np.testing.assert_allclose(got[a, b], want, rtol=0, atol=TOL)


def test_torch_gradients_of_the_window(rng):
    """Through torch the windowed attention is differentiable (autograd through the array
    code): gradcheck in float64."""
    torch = pytest.importorskip("torch")
    X = [torch.tensor(x, requires_grad=True) for x in _inputs(rng, 6, 2, 3)]

    def f(*inputs):
        return tensor_attention(*inputs, window=(2, 3))

    assert torch.autograd.gradcheck(f, X, eps=1e-6, atol=1e-7)


def test_bad_windows_are_refused_by_name(rng):
    X = _inputs(rng, 5, 2, 2)
    with pytest.raises(ValueError, match=r"window\[0\] \(w1\)"):
        tensor_attention(*X, window=(0, 2))
    with pytest.raises(TypeError, match=r"window\[1\] \(w2\) must be an integer"):
        tensor_attention(*X, window=(2, 2.5))
    with pytest.raises(TypeError, match=r"window must be None or a pair \(w1, w2\)"):
        tensor_attention(*X, window=3)
    K = rng.standard_normal((6, 2))
    with pytest.raises(ValueError, match="a window .* needs as many queries as keys; got 5"):
        tensor_attention(X[0], K, K, K, K, window=(2, 2))
    with pytest.raises(ValueError, match=r"n \* w1 \* w2 \* d = 1 \* 5 \* 2 \* 3 \* 2 = 60 "):
        tensor_attention(*X, window=(2, 3), max_work=59)
    tensor_attention(*X, window=(2, 3), max_work=60)


def test_long_sequence_costs_the_window_not_n_cubed(xp, rng):
    """n = 3000: the dense computation would take n^3 d ~ 5e10 multiply-adds; the window's
    O(n w1 w2 d) is 3e5. Row i depends only on the last max(w1, w2) positions up to i, so the
    dense computation on that slice is the oracle for row i."""
    n, window = 3000, (3, 5)
    X = _inputs(rng, n, 2, 2)
    got = xp.to_numpy(tensor_attention(*(xp.asarray(x) for x in X), window=window,
                                       max_work=1e6))
    span = max(window)
    for i in (0, 1, 4, 1499, n - 1):
        start = max(0, i - span + 1)
        local = dense_windowed(*(x[start : i + 1] for x in X), window)
        np.testing.assert_allclose(got[i], local[-1], rtol=0, atol=TOL)

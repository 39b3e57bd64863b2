"""nc_metrics on the array path (CuPy, torch, array_api_strict): the GEMM-shaped pass, float32
multiplied in float32, the launches per chunk, the first sample of each class."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sci.neural_collapse import nc_metrics
from sci.neural_collapse._array import FLOAT32_CHUNK_ROWS, first_indices


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 30), st.integers(1, 6000), st.integers(0, 2**31 - 1))
def test_first_indices_are_numpys_unique(K, n, seed):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([rng.permutation(K), rng.integers(0, K, n)])
    labels = labels[rng.permutation(labels.size)] if seed % 2 else labels[::-1].copy()
    np.testing.assert_array_equal(first_indices(labels, K),
                                  np.unique(labels, return_index=True)[1])


def _features(rng, N, d, K, spread, offset=0.0):
    labels = rng.integers(0, K, N)
    labels[:K] = np.arange(K)
    means = offset + 3.0 * rng.standard_normal((K, d))
    return means[labels] + spread * rng.standard_normal((N, d)), labels


@settings(max_examples=15, deadline=None)
@given(N=st.integers(60, 400), d=st.integers(1, 12), K=st.integers(2, 6),
       spread=st.sampled_from([1.0, 1e-3]), chunk=st.sampled_from([None, 37]),
       seed=st.integers(0, 2**31 - 1))
def test_torch_float32_in_float32_matches_float64_property(N, d, K, spread, chunk, seed):
    """float32 features, multiplied in float32: the statistics of the same (float32) numbers
    computed in float64 by NumPy, to the float32 products' rounding (sqrt(n) eps32 relative to
    the scatter; n <= 400 here: 1e-5 with room), collapsed features included."""
    torch = pytest.importorskip("torch")
    H, labels = _features(np.random.default_rng(seed), N, d, K, spread)
    H = H.astype(np.float32)
    ref = nc_metrics(H, labels, chunk_size=chunk)  # NumPy: float64 accumulation
    got = nc_metrics(torch.from_numpy(H), labels, chunk_size=chunk)
    scale = np.abs(ref.within_class_covariance).max()
    np.testing.assert_allclose(got.within_class_covariance.numpy(), ref.within_class_covariance,
                               rtol=0, atol=2e-5 * scale)
    np.testing.assert_allclose(got.class_means.numpy(), ref.class_means, rtol=1e-6,
                               atol=1e-6 * spread)
    if d >= K - 1:  # Sigma_B of full rank K - 1 in feature space: NC1 well conditioned
        assert got.nc1 == pytest.approx(ref.nc1, rel=1e-4)


def test_float32_far_from_the_origin_keeps_the_spread():
    """Features at 1e4 with spread 1e-2 in float32: the shifted products keep NC1 to the
    float32 products' rounding (the unshifted sum h h^T would lose all: 1e8 against 1e-4)."""
    torch = pytest.importorskip("torch")
    H, labels = _features(np.random.default_rng(3), 3000, 6, 4, 1e-2, offset=1e4)
    H = H.astype(np.float32)
    ref = nc_metrics(H, labels)
    got = nc_metrics(torch.from_numpy(H), labels)
    assert got.nc1 == pytest.approx(ref.nc1, rel=1e-4)


def test_float32_chunks_are_bounded_and_accumulate_in_float64(torch_ops):
    torch = pytest.importorskip("torch")
    products = []
    for N in (1000, FLOAT32_CHUNK_ROWS + 1000):
        H, labels = _features(np.random.default_rng(0), N, 4, 3, 0.5)
        H = H.astype(np.float32)
        with torch_ops() as ops:
            got = nc_metrics(torch.from_numpy(H), labels)
        products.append(ops["mm"])
        assert "torch.float32" in ops.dtypes["mm"]  # the pass multiplies in float32
        assert got.within_class_covariance.dtype == torch.float64
        assert got.nc1 == pytest.approx(nc_metrics(H, labels).nc1, rel=1e-4)
    # one chunk more: its two products (one-hot sums, scatter)
    assert products[1] == products[0] + 2


def test_launches_do_not_grow_with_the_samples(torch_ops):
    """One chunk (float64: as many rows as the chunk budget holds): the same operators for
    2,000 and 20,000 samples, and no read of a device value but the bounded ones (the
    finiteness check of H and the one packed read of the statistics)."""
    torch = pytest.importorskip("torch")
    counts = []
    for N in (2_000, 20_000):
        H, labels = _features(np.random.default_rng(N), N, 8, 5, 0.3)
        with torch_ops() as ops:
            nc_metrics(torch.from_numpy(H), torch.from_numpy(labels))
        counts.append(ops)
    assert counts[0] == counts[1]
    # the pass: one-hot sums and scatter; after it: the means' part and the global mean
    assert counts[1]["mm"] == 4 and counts[1]["_local_scalar_dense"] <= 1, counts[1]
    assert counts[1].launches() < 40, counts[1]

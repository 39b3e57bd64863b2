"""Simplex ETF and orthogonal frames: the defining Gram identities, in every dimension."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sci.neural_collapse import (
    frame_error,
    is_orthogonal_frame,
    is_simplex_etf,
    orthogonal_frame,
    simplex_etf,
)


@given(K=st.integers(2, 12), extra=st.integers(0, 5), seed=st.none() | st.integers(0, 99))
def test_simplex_etf_gram(K, extra, seed):
    M = np.asarray(simplex_etf(K, K - 1 + extra, rng=seed))
    assert M.shape == (K, K - 1 + extra)
    gram = M @ M.T
    expected = (K / (K - 1)) * (np.eye(K) - 1.0 / K)
    # Entries are O(1) sums of K-1 products: a few ulps.
    np.testing.assert_allclose(gram, expected, atol=1e-13)
    np.testing.assert_allclose(M.sum(axis=0), 0.0, atol=1e-13)
    assert is_simplex_etf(M) and frame_error(M) < 1e-13


@given(K=st.integers(1, 12), extra=st.integers(0, 5), seed=st.none() | st.integers(0, 99))
def test_orthogonal_frame_gram(K, extra, seed):
    M = np.asarray(orthogonal_frame(K, K + extra, rng=seed))
    np.testing.assert_allclose(M @ M.T, np.eye(K), atol=1e-13)
    assert is_orthogonal_frame(M)


def test_frames_on_every_backend(backend, to_numpy):
    etf = to_numpy(simplex_etf(5, 7, rng=3))
    np.testing.assert_allclose(etf, np.asarray(simplex_etf(5, 7, rng=3)) if backend != "cupy"
                               else etf)
    assert is_simplex_etf(simplex_etf(5, 7, rng=3))


def test_checks_on_every_leg(xp):
    K = 4
    etf, ortho = np.asarray(simplex_etf(K, 6, rng=2)), np.asarray(orthogonal_frame(K, 6, rng=2))
    assert is_simplex_etf(xp.asarray(3.0 * etf)) and not is_simplex_etf(xp.asarray(ortho))
    assert is_orthogonal_frame(xp.asarray(ortho)) and not is_orthogonal_frame(xp.asarray(etf))
    assert not is_simplex_etf(xp.asarray(etf + np.array([0, 0, 0, 0, 0, 1.0])))
    target = np.linalg.norm((np.eye(K) - 1 / K) / np.sqrt(K - 1) - np.eye(K) / np.sqrt(K))
    assert frame_error(xp.asarray(ortho)) == pytest.approx(target, rel=1e-13)
    assert frame_error(xp.asarray(ortho), "orthogonal") < 1e-13
    with pytest.raises(ValueError, match="M is zero"):
        frame_error(xp.asarray(np.zeros((3, 2))))


def test_checks_reject_the_wrong_frame():
    assert not is_simplex_etf(orthogonal_frame(4))
    assert not is_orthogonal_frame(simplex_etf(4))
    # An ETF shifted off the origin has the right Gram up to scale? No: the check also sees it.
    shifted = np.asarray(simplex_etf(4, 5)) + np.array([0, 0, 0, 0, 1.0])
    assert not is_simplex_etf(shifted)
    # The known distance between the two normalised Gram targets.
    K = 4
    target = np.linalg.norm((np.eye(K) - 1 / K) / np.sqrt(K - 1) - np.eye(K) / np.sqrt(K))
    assert frame_error(orthogonal_frame(K)) == pytest.approx(target, rel=1e-14)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: simplex_etf(5, 3), "d >= K - 1"),
        (lambda: simplex_etf(1), "K must be >= 2"),
        (lambda: orthogonal_frame(5, 4), "d >= K"),
        (lambda: simplex_etf(3.0), "K must be an integer"),
        (lambda: frame_error(np.zeros((3, 2))), "M is zero"),
        (lambda: frame_error(np.ones((3, 2)), kind="cube"), "kind must be"),
        (lambda: frame_error([[np.nan, 1.0], [1.0, 0.0]]), "finite"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("rng", [None, 4])
def test_frames_created_on_every_leg(xp, rng):
    """xp=/device=: the frame in that library and device, float64, the NumPy frame's values
    (drawn on the host), and the defining Gram identities."""
    K, d = 5, 7
    etf = simplex_etf(K, d, rng=rng, xp=xp.namespace, device=xp.device)
    ortho = orthogonal_frame(K, d, rng=rng, xp=xp.namespace, device=xp.device)
    for frame, expected_gram, ref in ((etf, (K * np.eye(K) - 1) / (K - 1), simplex_etf),
                                      (ortho, np.eye(K), orthogonal_frame)):
        assert xp.is_leg_array(frame) and frame.dtype == xp.float64
        host = xp.to_numpy(frame)
        np.testing.assert_array_equal(host, ref(K, d, rng=rng))
        np.testing.assert_allclose(host @ host.T, expected_gram, atol=1e-14)
    assert is_simplex_etf(etf) and is_orthogonal_frame(ortho)  # checked where they live

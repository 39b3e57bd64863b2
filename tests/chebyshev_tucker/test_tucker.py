"""HOSVD, HOOI and the reduced HOSVD against full-tensor computations and identities."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sci
from sci.chebyshev_tucker import TuckerTensor, hooi, hosvd, reduced_hosvd
from sci.chebyshev_tucker._tucker import epsilon_rank, left_singular_streaming


def _random_tucker(rng, shape, ranks, decay=None):
    core = rng.standard_normal(ranks)
    if decay is not None:
        i, j, k = np.indices(ranks)
        core *= decay ** (i + j + k)
    factors = [np.linalg.qr(rng.standard_normal((n, r)))[0]
               for n, r in zip(shape, ranks, strict=True)]
    return TuckerTensor(core, factors).to_full()


def test_exact_low_rank_is_recovered(rng, backend, to_numpy):
    t = _random_tucker(rng, (10, 11, 12), (2, 3, 4))
    dec = hosvd(t, tol=1e-10)
    assert dec.ranks == (2, 3, 4)
    np.testing.assert_allclose(to_numpy(dec.to_full()), t, atol=1e-12)


def test_to_full_keeps_the_library_and_device_of_core_and_factors(rng, xp):
    # issue 13: on the GPU, to_full of a NumPy core and factors under the cupy switch failed
    # inside cupy.matmul; on the strict leg (device1) any host array mixed in fails the same way
    core = rng.standard_normal((2, 3, 4))
    factors = [rng.standard_normal((n, r)) for n, r in ((5, 2), (6, 3), (7, 4))]
    full = TuckerTensor(xp.asarray(core), [xp.asarray(u) for u in factors]).to_full()
    assert xp.is_leg_array(full) and tuple(full.shape) == (5, 6, 7)
    expected = np.einsum("abc,ia,jb,kc->ijk", core, *factors)
    np.testing.assert_allclose(xp.to_numpy(full), expected, rtol=1e-13, atol=1e-13)
    if xp.name == "cupy":  # host arrays under the cupy switch are moved to the device
        assert xp.is_leg_array(TuckerTensor(core, factors).to_full())


def test_to_full_refuses_two_libraries():
    torch = pytest.importorskip("torch")

    core = np.ones((1, 1, 1))
    with pytest.raises(TypeError, match=r"core and factors\[0\] are arrays of different "
                                        r"libraries: core \(numpy.ndarray on cpu\), "
                                        r"factors\[0\] \(torch.Tensor on cpu\)"):
        TuckerTensor(core, [torch.ones((2, 1), dtype=torch.float64)] * 3).to_full()


def test_epsilon_rank_criterion_and_error_bound(rng):
    t = _random_tucker(rng, (20, 20, 20), (12, 12, 12), decay=0.3)
    norm = np.linalg.norm(t)
    for eps in (1e-2, 1e-4, 1e-6, 1e-9):
        dec = hosvd(t, tol=eps)
        actual = np.linalg.norm(dec.to_full() - t) / norm
        assert actual <= dec.error * (1 + 1e-6) + 1e-15 <= eps
        for s, r in zip(dec.singular_values, dec.ranks, strict=True):
            tail = math.sqrt(np.sum(s[r:] ** 2))
            assert tail <= eps * norm / math.sqrt(3)
            # minimal: one fewer would break the criterion
            assert r == 1 or math.sqrt(np.sum(s[r - 1:] ** 2)) > eps * norm / math.sqrt(3)


def test_epsilon_rank_accurate_far_below_sqrt_eps():
    s = np.array([1.0, 1e-9, 1e-12, 1e-14])
    assert epsilon_rank(s, 5e-13) == 3
    assert epsilon_rank(s, 2e-12) == 2


def test_fixed_ranks(rng):
    t = rng.standard_normal((6, 7, 8))
    assert hosvd(t, ranks=(1, 2, 3)).ranks == (1, 2, 3)
    assert hosvd(t, ranks=2).core.shape == (2, 2, 2)


def test_hooi_improves_on_hosvd_and_converges_below_1e8(rng):
    t = _random_tucker(rng, (15, 15, 15), (8, 8, 8), decay=0.04)
    ranks = (6, 6, 6)
    h = hosvd(t, ranks=ranks)
    o = hooi(t, ranks, tol=1e-13, max_iterations=200)
    residual = np.linalg.norm(o.to_full() - t) / np.linalg.norm(t)
    assert o.error == pytest.approx(residual, rel=1e-6, abs=1e-14)
    assert residual <= np.linalg.norm(h.to_full() - t) / np.linalg.norm(t) + 1e-14
    assert residual < 1e-8  # a regime where sqrt(|A|^2 - |G|^2) would cancel to noise
    # Converged: one more sweep does not lower the error beyond rounding.
    again = hooi(t, ranks, init=o, max_iterations=1)
    assert again.error >= o.error - 1e-13


def test_hooi_strictly_improves_on_a_generic_tensor(rng):
    t = rng.standard_normal((10, 10, 10))
    h = hosvd(t, ranks=3)
    assert hooi(t, 3).error < h.error * (1 - 1e-4)


def test_hooi_matches_tensorly_at_moderate_accuracy(rng):
    tensorly = pytest.importorskip("tensorly")
    from tensorly.decomposition import tucker

    t = rng.standard_normal((9, 10, 11))
    ours = hooi(t, (3, 3, 3), tol=1e-12, max_iterations=500)
    core, factors = tucker(tensorly.tensor(t), rank=[3, 3, 3], n_iter_max=500, tol=1e-14,
                           init="svd")
    theirs = np.linalg.norm(tensorly.tucker_to_tensor((core, factors)) - t) / np.linalg.norm(t)
    assert ours.error <= theirs * (1 + 1e-6)


def test_streaming_svd_matches_direct(rng):
    a = rng.standard_normal((7, 1000)) * np.logspace(0, -13, 7)[:, None]
    u, s = left_singular_streaming(a, 64)
    s_ref = np.linalg.svd(a, compute_uv=False)
    np.testing.assert_allclose(s, s_ref, rtol=1e-10, atol=1e-14 * s_ref[0])
    u_ref = np.linalg.svd(a, full_matrices=False)[0]
    np.testing.assert_allclose(np.abs(u.T @ u_ref), np.eye(7), atol=1e-6)


@given(seed=st.integers(0, 2**31 - 1), terms=st.integers(1, 60),
       eps=st.sampled_from([1e-3, 1e-6, 1e-9]))
def test_reduced_hosvd_against_full_hosvd(seed, terms, eps):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 14)
    centres = rng.uniform(-1, 1, (terms, 3))
    widths = rng.uniform(1, 4, terms)
    factors = [np.exp(-(widths * (x[:, None] - centres[:, d])) ** 2) for d in range(3)]
    weights = rng.standard_normal(terms)
    full = np.einsum("r,ir,jr,kr->ijk", weights, *factors)
    red = reduced_hosvd(weights, factors, tol=eps, chunk=7)
    ref = hosvd(full, tol=eps)
    err = np.linalg.norm(red.to_full() - full) / np.linalg.norm(full)
    assert err <= eps
    assert red.error <= eps * 1.01
    for a, b in zip(red.ranks, ref.ranks, strict=True):
        assert abs(a - b) <= 1


def test_legs_agree_with_numpy_on_hosvd_and_hooi(rng, xp):
    t = _random_tucker(rng, (9, 9, 9), (5, 5, 5), decay=0.2)
    with sci.use_backend("numpy"):
        expected = hosvd(t, tol=1e-8)
        refined = hooi(t, (3, 3, 3))
    d = hosvd(xp.asarray(t), tol=1e-8)
    assert d.ranks == expected.ranks
    assert xp.is_leg_array(d.core) and all(xp.is_leg_array(u) for u in d.factors)
    assert d.error == pytest.approx(expected.error, rel=1e-6)
    full = d.to_full()
    assert xp.is_leg_array(full)
    np.testing.assert_allclose(xp.to_numpy(full), xp.to_numpy(expected.to_full()), atol=1e-12)
    h = hooi(xp.asarray(t), (3, 3, 3))
    assert xp.is_leg_array(h.core)
    assert h.error == pytest.approx(refined.error, rel=1e-8)
    np.testing.assert_allclose(xp.to_numpy(h.to_full()), refined.to_full(), atol=1e-10)


def test_tucker_tensor_moves_between_libraries(rng, xp):
    t = _random_tucker(rng, (4, 5, 6), (2, 2, 2))
    with sci.use_backend("numpy"):
        d = hosvd(t, ranks=2)
    moved = d.to(xp.namespace, xp.device)
    assert xp.is_leg_array(moved.core) and all(xp.is_leg_array(u) for u in moved.factors)
    assert moved.ranks == d.ranks and moved.error == d.error
    np.testing.assert_allclose(xp.to_numpy(moved.to_full()), t, atol=1e-12)
    back = moved.to(np)
    assert isinstance(back.core, np.ndarray)
    np.testing.assert_allclose(back.to_full(), t, atol=1e-12)


def test_bad_input(rng):
    t = rng.standard_normal((3, 3, 3))
    with pytest.raises(ValueError, match="exactly one of tol"):
        hosvd(t)
    with pytest.raises(ValueError, match="exactly one of tol"):
        hosvd(t, tol=1e-3, ranks=2)
    with pytest.raises(ValueError, match="tol must be <"):
        hosvd(t, tol=1.5)
    with pytest.raises(ValueError, match="ranks\\[0\\] must be <= 3"):
        hosvd(t, ranks=(4, 1, 1))
    with pytest.raises(ValueError, match="3 dimension"):
        hosvd(np.ones((3, 3)), tol=0.1)
    with pytest.raises(ValueError, match="finite"):
        hosvd(np.full((2, 2, 2), np.inf), tol=0.1)
    with pytest.raises(ValueError, match="non-empty"):
        hosvd(np.ones((0, 2, 2)), tol=0.1)
    with pytest.raises(ValueError, match="no terms"):
        reduced_hosvd([], [np.ones((3, 0))] * 3, tol=0.1)
    zero = reduced_hosvd([0.0, 0.0], [np.ones((3, 2))] * 3, tol=0.1)  # the zero tensor
    assert zero.ranks == (1, 1, 1) and np.all(zero.to_full() == 0)
    with pytest.raises(ValueError, match="columns but weights"):
        reduced_hosvd([1.0, 2.0], [np.ones((3, 1))] * 3, tol=0.1)


@given(st.tuples(*[st.integers(1, 6)] * 3), st.tuples(*[st.integers(1, 7)] * 3),
       st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_multi_mode_product_against_einsum(ranks, sizes, seed, dtype):
    from sci.chebyshev_tucker._tucker import multi_mode_product

    rng = np.random.default_rng(seed)
    core = rng.standard_normal(ranks).astype(dtype)
    factors = [rng.standard_normal((n, r)).astype(dtype)
               for n, r in zip(sizes, ranks, strict=True)]
    wide = [f.astype(np.float64) for f in factors]
    absf = [np.abs(f) for f in wide]
    eps = np.finfo(dtype).eps
    out = multi_mode_product(core, factors)
    ref = np.einsum("abc,ia,jb,kc->ijk", core.astype(np.float64), *wide)
    # Rounding bound of a sum of products: a few eps times the same sum of absolute values
    # per entry (3 products of at most 7 terms each: gamma_21 < 32 eps).
    bound = 32 * eps * np.einsum("abc,ia,jb,kc->ijk", np.abs(core.astype(np.float64)), *absf)
    assert out.shape == tuple(sizes) and out.dtype == dtype and out.flags.c_contiguous
    assert np.all(np.abs(out - ref) <= bound + np.finfo(dtype).tiny)
    # The transposed products project a full tensor onto the factors (HOSVD's core).
    back = multi_mode_product(out, factors, transpose=True)
    ref_back = np.einsum("ijk,ia,jb,kc->abc", out.astype(np.float64), *wide)
    bound = 32 * eps * np.einsum("ijk,ia,jb,kc->abc", np.abs(out.astype(np.float64)), *absf)
    assert back.shape == tuple(ranks) and back.flags.c_contiguous
    assert np.all(np.abs(back - ref_back) <= bound + np.finfo(dtype).tiny)


# -- the reduced HOSVD on the array API (issue 13) ------------------------------------------


def _cp(rng, shape=(9, 10, 11), terms=4):
    weights = rng.uniform(0.5, 2.0, terms) * rng.choice([-1.0, 1.0], terms)
    factors = [rng.standard_normal((n, terms)) for n in shape]
    return weights, factors, np.einsum("r,ir,jr,kr->ijk", weights, *factors)


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_reduced_hosvd_on_every_leg(xp, rng, chunk):
    weights, factors, full = _cp(rng)
    with sci.use_backend("numpy"):
        expected = reduced_hosvd(weights, factors, tol=1e-12)
    dec = reduced_hosvd(xp.asarray(weights), [xp.asarray(f) for f in factors], tol=1e-12,
                        chunk=chunk)
    assert xp.is_leg_array(dec.core) and all(xp.is_leg_array(u) for u in dec.factors)
    assert dec.ranks == expected.ranks == (4, 4, 4)
    # oracle: an exact rank-4 CP tensor is reproduced to rounding
    np.testing.assert_allclose(xp.to_numpy(dec.to_full()), full, atol=1e-12 * np.abs(full).max())
    assert dec.error == pytest.approx(expected.error, abs=1e-13)
    for u in dec.factors:  # orthonormal factors
        host = xp.to_numpy(u)
        np.testing.assert_allclose(host.T @ host, np.eye(host.shape[1]), atol=1e-12)


def test_reduced_hosvd_keeps_float32(xp, rng):
    weights, factors, full = _cp(rng)
    dec = reduced_hosvd(xp.asarray(weights, dtype="float32"),
                        [xp.asarray(f, dtype="float32") for f in factors], tol=1e-5)
    assert dec.core.dtype == xp.float32 and all(u.dtype == xp.float32 for u in dec.factors)
    np.testing.assert_allclose(xp.to_numpy(dec.to_full()), full,
                               atol=1e-4 * np.abs(full).max())


def test_reduced_hosvd_of_zero_weights_on_every_leg(xp, rng):
    _, factors, _ = _cp(rng)
    dec = reduced_hosvd(xp.asarray(np.zeros(4)), [xp.asarray(f) for f in factors], tol=1e-8)
    assert xp.is_leg_array(dec.core) and dec.ranks == (1, 1, 1) and dec.error == 0.0
    np.testing.assert_array_equal(xp.to_numpy(dec.to_full()), np.zeros((9, 10, 11)))


def test_reduced_hosvd_refuses_two_libraries(rng):
    import array_api_strict as strict

    weights, factors, _ = _cp(rng)
    with pytest.raises(TypeError, match="weights and factors\\[0\\] are arrays of different"):
        reduced_hosvd(weights, [strict.asarray(f) for f in factors], tol=1e-8)


def test_reduced_hosvd_torch_gradcheck(rng):
    """The reconstructed tensor of an exact low-rank CP tensor is the CP tensor itself: a
    multilinear function of the weights and factors, whose gradient autograd must find
    through linalg.qr and linalg.svd (kept singular values well separated here)."""
    torch = pytest.importorskip("torch")
    weights, factors, _ = _cp(rng, shape=(5, 6, 7), terms=3)
    w = torch.tensor(weights, requires_grad=True)
    f = [torch.tensor(a, requires_grad=True) for a in factors]

    def full(w, a, b, c):
        return reduced_hosvd(w, [a, b, c], tol=1e-12, chunk=2).to_full()

    assert torch.autograd.gradcheck(full, (w, *f))
    # and the gradient is that of the CP tensor (the identity, not only self-consistency)
    (gw,) = torch.autograd.grad(full(w, *f).sum(), w)
    expected = np.einsum("ir,jr,kr->r", *factors)
    np.testing.assert_allclose(gw.numpy(), expected, rtol=1e-10)

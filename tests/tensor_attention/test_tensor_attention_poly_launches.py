"""The polynomial method's array code in the shape a GPU wants (issue 19, item 2): a number of
array operations per call that does not grow with n, batched feature maps, and their oracles.

The operation count is measured on torch CPU tensors with a ``TorchDispatchMode`` that counts
every operation torch dispatches (on a CUDA device each non-view one is a kernel launch), with
the chunk budget of a GPU (``_on_accelerator`` patched to True, ``SCI_MEMORY_LIMIT`` fixing the
memory): then the streamed sums of the whole sequence are one chunk, and a call takes the same
operations at n = 128 as at n = 4096. No device is needed to check that logic.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sci.backend import array_context
from sci.tensor_attention import (
    _features,
    _polynomial,
    exp_polynomial_coefficients,
    poly_higher_order_attention,
    polynomial_features,
)

# Operations that only make a view (no kernel, no memory traffic)
_VIEWS = {"aten.slice", "aten.select", "aten.view", "aten.unsqueeze", "aten.expand",
          "aten.transpose", "aten.t", "aten.permute", "aten.alias", "aten.as_strided",
          "aten._unsafe_view", "aten._reshape_alias", "aten.detach", "aten.squeeze",
          "aten.lift_fresh"}


def _count_operations(call):
    """(kernels, host reads) dispatched by torch while ``call()`` runs."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.kernels = 0
            self.reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func.overloadpacket)
            if name not in _VIEWS:
                self.kernels += 1
            if name == "aten._local_scalar_dense":
                self.reads += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count() as counter:
        call()
    return counter.kernels, counter.reads


@pytest.mark.parametrize("method", ["taylor", "chebyshev", "random"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_operations_per_call_do_not_grow_with_n_on_a_device(order, causal, method,
                                                            monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_polynomial, "_on_accelerator", lambda ctx: True)
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "4GiB")
    counts = {}
    for n in (128, 4096):
        arrays = np.random.default_rng(n).uniform(-1, 1, (2 * order - 1, n, 4))
        tensors = [torch.tensor(a) for a in arrays]
        options = {"degree": 4, "method": method, "causal": causal, "return_info": True}
        if method == "random":
            options.update(num_features=8, rng=0)
        infos = []

        def call(tensors=tensors, options=options, infos=infos):
            infos.append(poly_higher_order_attention(
                tensors[0], tensors[1:order], tensors[order:], **options)[1])

        call()  # the first call converts the cached constants (gather indices) once
        counts[n] = _count_operations(call)
        assert infos[0].chunk_size == n  # one chunk: the whole sequence
    assert counts[128] == counts[4096]
    kernels, reads = counts[4096]
    # the validation and the bounds (about 60), the feature maps, a few products per pair: no
    # per-row or per-chunk work (the code before issue 19 took about 5 000 at n = 65 536)
    assert kernels < 200
    assert reads <= 2  # scalar reads (the logit and value bounds, the checks are stacked)


def test_host_chunks_stay_cache_sized():
    """On the host the chunks stay near ``_HOST_CHUNK_BYTES`` (a host operation is cheap, the
    cache is not): more chunks as n grows, each within the budget."""
    arrays = np.random.default_rng(0).uniform(-1, 1, (5, 1 << 14, 4))
    for causal in (False, True):
        _, info = poly_higher_order_attention(arrays[0], list(arrays[1:3]), list(arrays[3:]),
                                              degree=4, causal=causal, return_info=True)
        per_row = _polynomial._row_elements(info.rank, 4, 3, causal) * 8
        assert 1 <= info.chunk_size < 1 << 14
        assert info.chunk_size * per_row <= _polynomial._HOST_CHUNK_BYTES


@settings(max_examples=40, deadline=None)
@given(lead=st.integers(1, 3), n=st.integers(0, 7), d=st.integers(1, 4),
       degree=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_stacked_monomials_are_those_of_each_slice(lead, n, d, degree, seed):
    """The batched feature map of the stacked keys against the one of each key alone and
    against the monomials written out from their exponents."""
    X = np.random.default_rng(seed).uniform(-1.5, 1.5, (lead, n, d))
    ctx = array_context(X)
    stacked = _features._monomials_xp(ctx, X, degree)
    r = _features.feature_rank(d, degree)
    assert stacked.shape == (lead, n, r)
    exponents = _exponents(d, degree)
    for m in range(lead):
        np.testing.assert_array_equal(stacked[m], polynomial_features(X[m], degree))
        direct = np.prod(X[m][:, None, :] ** exponents[None, :, :], axis=2)
        np.testing.assert_allclose(stacked[m], direct, rtol=1e-14, atol=1e-14)


def _exponents(d, degree):
    """Exponent vectors in graded lexicographic order (the columns' documented order)."""
    import itertools

    rows = []
    for t in range(degree + 1):
        for combination in itertools.combinations_with_replacement(range(d), t):
            rows.append(np.bincount(np.array(combination, dtype=np.int64), minlength=d))
    return np.array(rows, dtype=float).reshape(-1, d)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_random_features_are_the_products_of_their_projections(order, degree):
    """The one-product form of the random features (slots padded with the projection 1)
    against the per-copy definition, with the same signs (the same draws of the same seed)."""
    d, count, sigma = 3, 5, 0.7
    coefficients = exp_polynomial_coefficients(degree)
    X = np.random.default_rng(1).uniform(-1, 1, (6, d))
    ctx = array_context(X)
    query_map, key_map = _polynomial._random_feature_maps(
        ctx, d, degree, order, count, sigma, coefficients, np.float64,
        np.random.default_rng(9))
    rng = np.random.default_rng(9)
    signs = [[rng.choice(np.array([-1.0, 1.0]), size=(order - 1, count, d)) for _ in range(t)]
             for t in range(degree + 1)]
    query = [np.full((6, 1), coefficients[0])]
    keys = [[np.ones((6, 1))] for _ in range(order - 1)]
    for t in range(1, degree + 1):
        q = np.full((6, count), coefficients[t] / count)
        k = [np.ones((6, count)) for _ in range(order - 1)]
        for copy in signs[t]:
            q = q * ((sigma * X) @ copy.prod(axis=0).T)
            for m in range(order - 1):
                k[m] = k[m] * ((sigma * X) @ copy[m].T)
        query.append(q)
        for m in range(order - 1):
            keys[m].append(k[m])
    np.testing.assert_allclose(query_map(X), np.concatenate(query, axis=1), rtol=1e-13,
                               atol=1e-15)
    stacked = key_map(np.stack([X] * (order - 1)))
    for m in range(order - 1):
        np.testing.assert_allclose(stacked[m], np.concatenate(keys[m], axis=1), rtol=1e-13,
                                   atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), d=st.integers(1, 3), d_v=st.integers(1, 3), order=st.sampled_from(
    [2, 3]), method=st.sampled_from(["taylor", "chebyshev"]), degree=st.integers(0, 5),
    causal=st.booleans(), chunk=st.sampled_from([None, 1, 2, 3, 5]),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_against_the_dense_polynomial_property(n, d, d_v, order, method, degree, causal, chunk,
                                               dtype, seed, dense_reference):
    """Any shape, order, degree, chunking and dtype against the dense oracle of the tests
    (every tuple formed, weights p(logits) with the polynomial the call used)."""
    rng = np.random.default_rng(seed)
    Q = rng.uniform(-1, 1, (n, d))
    keys = [rng.uniform(-1, 1, (n, d)) for _ in range(order - 1)]
    values = [rng.uniform(-1, 1, (n, d_v)) for _ in range(order - 1)]
    out, info = poly_higher_order_attention(
        Q.astype(dtype), [k.astype(dtype) for k in keys], [v.astype(dtype) for v in values],
        degree=degree, method=method, causal=causal, chunk_size=chunk,
        on_nonpositive="taylor", return_info=True)
    assert out.dtype == dtype and out.shape == (n, d_v)
    coefficients = exp_polynomial_coefficients(info.degree, method=info.method,
                                               bound=info.logit_bound)

    def weight(logits):
        return np.polynomial.polynomial.polyval(logits, coefficients)

    want = dense_reference(Q, keys, values, causal=causal, weight=weight)
    # float64: sums of <= 81 terms of size <= e through r <= 56 columns, rounding ~1e-14;
    # float32: the same sums in single precision (u = 6e-8) and the inputs rounded to it,
    # divided by row sums >= e^-R / 2 with R <= 1: 1e-4 against values of size <= 1
    tol = 1e-11 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out, want, rtol=0, atol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("order", [2, 3])
def test_on_a_cupy_device_one_chunk_and_the_host_values(order, causal):
    """On a CUDA device (CuPy) the sums of the sequence are one chunk, sized by the device's
    free memory, and the values are the host's. Not yet run on a device (no GPU in the
    session that wrote it)."""
    cupy = pytest.importorskip("cupy")
    n = 1 << 14
    arrays = np.random.default_rng(4).uniform(-1, 1, (2 * order - 1, n, 4))
    on_device = [cupy.asarray(a) for a in arrays]
    out, info = poly_higher_order_attention(on_device[0], on_device[1:order],
                                            on_device[order:], degree=4, causal=causal,
                                            return_info=True)
    assert isinstance(out, cupy.ndarray) and info.chunk_size == n
    host = poly_higher_order_attention(arrays[0], list(arrays[1:order]), list(arrays[order:]),
                                       degree=4, causal=causal)
    # float64 both; different summation orders (cuBLAS, CuPy's scan): rounding ~1e-13
    np.testing.assert_allclose(cupy.asnumpy(out), host, rtol=0, atol=1e-11)

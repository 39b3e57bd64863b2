"""The recomputing backward of the causal polynomial method for torch tensors
(``CausalStreamedSums`` in sci/tensor_attention/_torch.py; issue 16, item 4).

Oracles: torch's gradcheck (central finite differences, float64); autograd through the
array-API code of the streamed sums (``_polynomial.standard_streamed_sums``, the path torch
tensors took before), with the same feature maps; and autograd through the dense polynomial
formula (every tuple's logit formed, exp replaced by the polynomial, future tuples zeroed),
written here independently of sci's factoring. The memory claim (the causal graph keeps
O(n r) numbers per key/value pair, not the O(n r d_v) prefix moments) is checked by counting
what the autograd graph keeps, with the same counter shown to find the prefix moments in the
graph of the array-API code.

The Chebyshev interval [-R, R] is read from the inputs and held fixed in the backward (as
documented): finite differences of the public function would also move R, so the Chebyshev
gradcheck runs at the level of the streamed sums with R fixed, and the public function is
compared with the dense formula of the polynomial it used.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sci.backend import array_context
from sci.tensor_attention import (
    _polynomial,
    exp_polynomial_coefficients,
    poly_attention,
    poly_higher_order_attention,
    poly_tensor_attention,
)

torch = pytest.importorskip("torch")

# float64: the factored sums add at most n^(t-1) ~ 10^3 tuples' terms of size <= ~10 through
# r <= 70 columns; rounding ~1e-14 relative. 1e-12 leaves a margin without hiding an error in
# a gradient (a carry off by one chunk moves them by O(1e-2)).
TOL64 = 1e-12
GRADCHECK = {"eps": 1e-6, "atol": 1e-7, "rtol": 1e-5}


def _leaves(rng, n, d, d_v, pairs, batch=(), dtype=torch.float64, spread=0.5):
    def leaf(width):
        return torch.tensor(spread * rng.standard_normal((*batch, n, width)), dtype=dtype,
                            requires_grad=True)

    return [leaf(d)] + [leaf(d) for _ in range(pairs)] + [leaf(d_v) for _ in range(pairs)]


def _public(order, **kw):
    """f(Q, K_1, ..., V_1, ...) through the public function of that order."""
    pairs = order - 1

    def f(Q, *kv):
        if order == 2:
            return poly_attention(Q, *kv, **kw)
        if order == 3:
            return poly_tensor_attention(Q, *kv, **kw)
        return poly_higher_order_attention(Q, list(kv[:pairs]), list(kv[pairs:]), **kw)

    return f


def _options(method, causal, chunk, degree=4):
    kw = {"degree": degree, "method": method, "causal": causal, "chunk_size": chunk}
    if method == "random":
        kw.update(num_features=3, rng=5)  # the same draw in every evaluation
    return kw


def _sums(order, method, degree, chunk, causal, *, R=1.0, d=2, standard=False):
    """f(Q, K_1, ..., V_1, ...) = Y / w from the streamed sums with the feature maps fixed
    (R given, not read from the inputs): through the dispatch (the Function for causal torch
    sums) or, with ``standard``, autograd through the array-API code."""
    pairs = order - 1
    sums = _polynomial.standard_streamed_sums if standard else _polynomial._streamed_sums

    def f(Q, *kv):
        ctx = array_context(Q)
        query_map, key_maps = _polynomial._feature_maps(
            ctx, method, degree, d, order, R, (1.0 / d) ** (1.0 / order), 3, Q.dtype, 7)
        w, Y = sums(ctx.xp, query_map, key_maps, Q, list(kv[:pairs]), list(kv[pairs:]),
                    causal, chunk)
        return Y / w[:, None]

    return f


def dense_polynomial_torch(Q, keys, values, coefficients, *, scale=None, causal=False):
    """D^{-1} A (V_1 ⊘ ...) with A = p(s Q (K_1 ⊘ ...)^T) formed tuple by tuple."""
    n, d = Q.shape
    s = 1.0 / d if scale is None else scale
    tuples = list(itertools.product(range(keys[0].shape[0]), repeat=len(keys)))

    def khatri_rao(arrays):
        return torch.stack([
            torch.stack([X[j] for X, j in zip(arrays, J, strict=True)]).prod(dim=0)
            for J in tuples])

    logits = s * Q @ khatri_rao(keys).T
    A = sum(float(c) * logits**k for k, c in enumerate(coefficients))
    if causal:
        future = torch.tensor([max(J) for J in tuples])[None, :] > torch.arange(n)[:, None]
        A = A.masked_fill(future, 0.0)
    return (A @ khatri_rao(values)) / A.sum(dim=1, keepdim=True)


def _grads(out, inputs, weight):
    """Gradients of sum(out * weight); an input the graph does not use (degree 0) gets 0."""
    got = torch.autograd.grad((out * weight).sum(), inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(got, inputs, strict=True)]


def _assert_grads_close(got, expected, tol=TOL64):
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=tol * max(1.0, float(e.abs().max())))


@pytest.mark.parametrize("chunk", [2, 3])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("method", ["taylor", "random"])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_gradcheck_float64(order, method, causal, chunk):
    """n = 7 rows in chunks of 2 or 3 (not a multiple): with d_v = 2, segments of 4 or 3 rows
    (the backward recomputes 2 or 3 of them, carries flowing between them)."""
    inputs = _leaves(np.random.default_rng(order + 10 * chunk), 7, 2, 2, order - 1)
    kw = _options(method, causal, chunk, degree=4 if order < 4 else 3)
    out = _public(order, **kw)(*inputs)
    if causal:
        assert type(out.grad_fn.next_functions[0][0]).__name__ == "CausalStreamedSumsBackward"
    assert torch.autograd.gradcheck(_public(order, **kw), inputs, **GRADCHECK)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_gradcheck_chebyshev_with_the_interval_fixed(order, causal):
    inputs = _leaves(np.random.default_rng(order), 8, 2, 1, order - 1)
    f = _sums(order, "chebyshev", 5, 3, causal, R=1.3)  # d_v = 1: segments of 3 rows
    assert torch.autograd.gradcheck(f, inputs, **GRADCHECK)


@pytest.mark.parametrize("order", [2, 3])
def test_gradcheck_batched(order):
    """Batch axes broadcast ((2, 1) against (3,)): each element's Function, stacked."""
    rng = np.random.default_rng(4)
    inputs = _leaves(rng, 5, 2, 2, order - 1, batch=(2, 1))
    inputs[1] = torch.tensor(0.5 * rng.standard_normal((3, 5, 2)), requires_grad=True)
    f = _public(order, **_options("taylor", True, 2))
    assert tuple(f(*inputs).shape) == (2, 3, 5, 2)
    assert torch.autograd.gradcheck(f, inputs, **GRADCHECK)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
@pytest.mark.parametrize("method", ["taylor", "chebyshev", "random"])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_gradients_equal_autograd_through_the_array_code(order, method, chunk):
    """The Function against autograd through ``standard_streamed_sums`` (the same maps): the
    same forward, bit for bit (the same chunks), and gradients within rounding."""
    rng = np.random.default_rng(order + 3 * chunk)
    inputs = _leaves(rng, 11, 2, 3, order - 1, spread=0.7)
    weight = torch.tensor(rng.standard_normal((11, 3)))  # a generic upstream gradient
    degree = 4 if order < 4 else 3
    ours = _sums(order, method, degree, chunk, True, R=2.0)(*inputs)
    want = _sums(order, method, degree, chunk, True, R=2.0, standard=True)(*inputs)
    assert type(ours.grad_fn.next_functions[0][0]).__name__ == "CausalStreamedSumsBackward"
    torch.testing.assert_close(ours, want, rtol=0, atol=0)
    _assert_grads_close(_grads(ours, inputs, weight), _grads(want, inputs, weight))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("method", ["taylor", "chebyshev"])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_gradients_equal_the_dense_polynomial_formula(order, method, causal):
    """The public functions against the dense formula of the polynomial they used (Chebyshev:
    fitted on the reported [-R, R], held fixed)."""
    rng = np.random.default_rng(20 + order)
    n = 9 if order < 4 else 6
    inputs = _leaves(rng, n, 2, 2, order - 1)
    weight = torch.tensor(rng.standard_normal((n, 2)))
    degree = 5 if method == "chebyshev" else 4
    out, info = _public(order, **_options(method, causal, 2, degree), return_info=True)(*inputs)
    if method == "taylor":
        coefficients = [1.0 / math.factorial(k) for k in range(degree + 1)]
    else:
        coefficients = exp_polynomial_coefficients(degree, method="chebyshev",
                                                   bound=info.logit_bound)
    p = order - 1
    want = dense_polynomial_torch(inputs[0], inputs[1 : 1 + p], inputs[1 + p :], coefficients,
                                  causal=causal)
    torch.testing.assert_close(out, want, rtol=0, atol=TOL64)
    _assert_grads_close(_grads(out, inputs, weight), _grads(want, inputs, weight))


@given(
    n=st.integers(1, 12), chunk=st.integers(1, 6), d=st.integers(1, 3), d_v=st.integers(1, 4),
    order=st.integers(2, 4), method=st.sampled_from(["taylor", "chebyshev", "random"]),
    degree=st.integers(0, 3), seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=40, deadline=None)
def test_gradients_match_the_array_code_property(n, chunk, d, d_v, order, method, degree,
                                                 seed):
    """Any length, chunk, widths, order and degree (0: factors that do not depend on the keys,
    so autograd finds them unused): the Function's gradients are the array code's."""
    rng = np.random.default_rng(seed)
    inputs = _leaves(rng, n, d, d_v, order - 1)
    weight = torch.tensor(rng.standard_normal((n, d_v)))
    ours = _sums(order, method, degree, chunk, True, R=1.5, d=d)(*inputs)
    want = _sums(order, method, degree, chunk, True, R=1.5, d=d, standard=True)(*inputs)
    torch.testing.assert_close(ours, want, rtol=0, atol=0)
    _assert_grads_close(_grads(ours, inputs, weight), _grads(want, inputs, weight))


def test_only_the_inputs_that_require_grad_get_one():
    rng = np.random.default_rng(3)
    base = _leaves(rng, 9, 2, 2, 2)
    f = _public(3, **_options("taylor", True, 2))
    for wanted in ([0], [1], [2], [3], [4], [1, 3], [0, 4], [2, 3, 4]):
        leaves = [x.detach().requires_grad_(m in wanted) for m, x in enumerate(base)]
        out = f(*leaves)
        assert [x.grad is None for x in leaves] == [True] * 5
        got = torch.autograd.grad(out.sum(), [x for x in leaves if x.requires_grad])
        ref = [x.detach().requires_grad_() for x in base]
        expected = torch.autograd.grad(f(*ref).sum(), ref)
        _assert_grads_close(got, [expected[m] for m in wanted])
        # and backward() fills .grad of those alone
        f(*leaves).sum().backward()
        assert [x.grad is not None for x in leaves] == [m in wanted for m in range(5)]


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 4, 7])
@pytest.mark.parametrize("d_v", [2, 8])
def test_causal_backward_keeps_only_o_n_r_numbers(chunk_size, d_v, retained_numbers):
    """The graph of causal t = 3 keeps the inputs, Y and w (for Y / w), and the carries at the
    segment boundaries: at most (t - 1) n r numbers (C = t - 1 = 2: a carry is r (d_v + 1)
    numbers per pair, one per segment of >= d_v + 1 rows). Autograd through the array code
    keeps every chunk's prefix moments, >= (t - 1) n r d_v numbers, which the same count finds.
    """
    n, d, pairs = 60, 2, 2
    inputs = _leaves(np.random.default_rng(5), n, d, d_v, pairs)
    out, info = poly_tensor_attention(*inputs, degree=4, causal=True, chunk_size=chunk_size,
                                      return_info=True)
    r = info.rank
    assert r == 15
    kept_inputs = n * (d + pairs * (d + d_v))
    kept_output = n * (d_v + 1)  # Y and w, for the gradient of Y / w
    assert retained_numbers(out) <= pairs * n * r + kept_inputs + kept_output
    out.sum().backward()  # and the backward runs from what was kept
    assert all(torch.isfinite(x.grad).all() for x in inputs)
    old = _sums(3, "taylor", 4, info.chunk_size, True, standard=True)(*inputs)
    assert retained_numbers(old) >= pairs * n * r * d_v
    assert pairs * n * r * d_v > pairs * n * r + kept_inputs + kept_output  # not blind


def test_saved_tensors_are_the_inputs_and_the_boundary_carries():
    n, d, d_v = 10, 2, 3
    inputs = _leaves(np.random.default_rng(6), n, d, d_v, 2)
    out, info = poly_tensor_attention(*inputs, degree=2, causal=True, chunk_size=3,
                                      return_info=True)
    node = out.grad_fn.next_functions[0][0]
    r = info.rank
    # segments of 6 rows (two chunks of 3 >= d_v + 1 = 4): one boundary, at row 6
    shapes = [tuple(t.shape) for t in node.saved_tensors]
    assert shapes == [(n, d)] * 3 + [(n, d_v)] * 2 + [(2, r), (2, r, d_v)]
    with torch.no_grad():  # the carry of pair 1 into row 6: sum_{j < 6} U_1[j] V_1[j]^T
        U = _polynomial._monomials_xp(array_context(inputs[1]), 0.5 ** (1 / 3) * inputs[1],
                                      2)
        torch.testing.assert_close(node.saved_tensors[-1][0], U[:6].T @ inputs[3][:6],
                                   rtol=0, atol=TOL64)


@pytest.mark.parametrize("order", [2, 3])
def test_float32_gradients(order):
    """float32 in, float32 out and gradients, close to the float64 ones."""
    inputs = _leaves(np.random.default_rng(9), 40, 3, 3, order - 1, dtype=torch.float32)
    f = _public(order, **_options("taylor", True, 4, degree=4))
    out = f(*inputs)
    assert out.dtype == torch.float32
    grads = torch.autograd.grad(out.sum(), inputs)
    assert all(g.dtype == torch.float32 for g in grads)
    ref = [x.detach().double().requires_grad_() for x in inputs]
    want = f(*ref)
    expected = torch.autograd.grad(want.sum(), ref)
    # float32: the factored sums add <= 40^(t-1) terms of size <= ~3 through r = 35 columns
    # (relative rounding ~ 1e-7 times a few hundred); 1e-4 against O(1) values and gradients
    torch.testing.assert_close(out.double(), want, rtol=0, atol=1e-4)
    _assert_grads_close([g.double() for g in grads], expected, tol=1e-4)


def test_without_grad_the_same_forward_and_no_graph():
    inputs = _leaves(np.random.default_rng(12), 11, 2, 3, 2)
    f = _public(3, **_options("taylor", True, 2))
    with_grad = f(*inputs)
    plain = f(*(x.detach() for x in inputs))
    with torch.no_grad():
        no_grad = f(*inputs)
    assert plain.grad_fn is None and no_grad.grad_fn is None and not no_grad.requires_grad
    torch.testing.assert_close(plain, with_grad.detach(), rtol=0, atol=0)
    torch.testing.assert_close(no_grad, with_grad.detach(), rtol=0, atol=0)
    numpy_out = f(*(x.detach().numpy() for x in inputs))
    np.testing.assert_allclose(plain.numpy(), numpy_out, rtol=0, atol=TOL64)


def test_causal_double_backward_is_refused():
    """The backward is once differentiable: a second derivative raises, never a wrong value
    (torch's DelayedError node hangs off detached aliases of the first gradients, so
    ``autograd.grad`` toward the inputs finds them unused, and ``backward`` raises)."""
    inputs = _leaves(np.random.default_rng(10), 5, 2, 2, 2)
    f = _public(3, **_options("taylor", True, 2))
    (gq,) = torch.autograd.grad((f(*inputs) ** 2).sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gq.sum().backward()
    (gq,) = torch.autograd.grad((f(*inputs) ** 2).sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError, match="not have been used in the graph"):
        torch.autograd.grad(gq.sum(), inputs[1])


def test_non_causal_double_backward_is_autograds():
    """Non-causal sums stay with autograd through the array code: twice differentiable."""
    inputs = _leaves(np.random.default_rng(11), 4, 2, 1, 1)
    f = _public(2, **_options("taylor", False, 2, degree=2))
    assert torch.autograd.gradgradcheck(f, inputs, **GRADCHECK)


@pytest.mark.gpu
def test_cuda_tensors_give_the_cpu_values_and_gradients_on_the_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    rng = np.random.default_rng(13)
    on_cpu = _leaves(rng, 12, 3, 2, 2)
    on_gpu = [x.detach().cuda().requires_grad_() for x in on_cpu]
    f = _public(3, **_options("taylor", True, 3))
    out_cpu, out_gpu = f(*on_cpu), f(*on_gpu)
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), out_cpu.detach(), rtol=0, atol=TOL64)
    weight = torch.tensor(rng.standard_normal((12, 2)))
    got = _grads(out_gpu, on_gpu, weight.cuda())
    assert all(g.device.type == "cuda" for g in got)
    _assert_grads_close([g.cpu() for g in got], _grads(out_cpu, on_cpu, weight))

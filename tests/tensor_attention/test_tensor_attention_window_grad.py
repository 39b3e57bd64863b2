"""The recomputing backward of windowed 2-simplicial attention for torch tensors
(``tensor_attention(..., window=(w1, w2))``, ``WindowedTensorAttention`` in
sci/tensor_attention/_torch.py; issue 16, item 4).

Oracles: torch's gradcheck (central finite differences, float64), and autograd through the
dense masked formula (every pair (j, k) formed, -inf outside ``i - w1 < j <= i``,
``i - w2 < k <= i``, ``torch.softmax``), written here independently of sci. The memory claim
(only O(n d) numbers kept for the backward) is checked by counting what the autograd graph
keeps, with the same counter shown to find the weights in the graphs of the dense formula and
of the array-API code (autograd through it, the path torch tensors took before).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sci.tensor_attention import _exact, tensor_attention

torch = pytest.importorskip("torch")

# float64 sums of at most w1 w2 <= 100 terms of size <= ~10: rounding ~1e-14; 1e-12 leaves a
# margin without hiding an error in a gradient formula (a window off by one moves them O(1e-2)).
TOL64 = 1e-12


def dense_windowed_torch(Q, K1, K2, V1, V2, window, scale=None):
    """softmax over the window's pairs of s sum_l Q_il K1_jl K2_kl, times V1_j * V2_k."""
    n, d = Q.shape[-2:]
    s = 1.0 / d if scale is None else scale
    w1, w2 = window
    logits = s * torch.einsum("...il,...jl,...kl->...ijk", Q, K1, K2)
    i = torch.arange(n)[:, None, None]
    j = torch.arange(n)[None, :, None]
    k = torch.arange(n)[None, None, :]
    inside = (j <= i) & (j > i - w1) & (k <= i) & (k > i - w2)
    logits = logits.masked_fill(~inside, -torch.inf)
    shape = (*logits.shape[:-2], n * n)
    weights = torch.softmax(logits.reshape(shape), dim=-1).reshape(logits.shape)
    return torch.einsum("...ijk,...jl,...kl->...il", weights, V1, V2)


def _leaves(rng, n, d, d_v, batch=(), dtype=torch.float64, spread=1.0):
    def leaf(width, sigma):
        return torch.tensor(sigma * rng.standard_normal((*batch, n, width)), dtype=dtype,
                            requires_grad=True)

    return [leaf(d, spread) for _ in range(3)] + [leaf(d_v, 1.0) for _ in range(2)]


def _windowed(window, scale=None):
    def f(*inputs):
        return tensor_attention(*inputs, window=window, scale=scale)

    return f


WINDOWS = [(1, 1), (2, 3), (3, 2), (4, 4), (1, 9), (9, 9)]


@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
@pytest.mark.parametrize("window", WINDOWS)
def test_gradcheck_float64(window, blocks, monkeypatch):
    if blocks == "many blocks":
        # blocks of <= 5 logits: one-row query blocks, j chunks of 1 or 2 keys, windows
        # straddling the block edges, chunks in which a query sees no pair
        monkeypatch.setattr(_exact, "_BLOCK_ELEMENTS", 5)
    rng = np.random.default_rng(sum(window))
    inputs = _leaves(rng, 7, 2, 3, spread=1.5)
    out = _windowed(window)(*inputs)
    assert type(out.grad_fn).__name__ == "WindowedTensorAttentionBackward"
    assert torch.autograd.gradcheck(_windowed(window), inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_batched(monkeypatch):
    """Batch axes broadcast ((2, 1) against (3,)): each element's Function, stacked."""
    monkeypatch.setattr(_exact, "_BLOCK_ELEMENTS", 6)
    rng = np.random.default_rng(1)
    Q, K1, K2, V1, V2 = _leaves(rng, 5, 2, 2, batch=(2, 1))
    K1, V2 = (torch.tensor(rng.standard_normal((3, 5, 2)), requires_grad=True)
              for _ in range(2))
    inputs = (Q, K1, K2, V1, V2)
    assert tuple(_windowed((2, 3))(*inputs).shape) == (2, 3, 5, 2)
    assert torch.autograd.gradcheck(_windowed((2, 3), scale="sqrt"), inputs, eps=1e-6,
                                    atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("block", [5, 24, 1 << 16])
@pytest.mark.parametrize("window", [(1, 1), (2, 5), (5, 2), (3, 3), (11, 4), (40, 40)])
def test_gradients_equal_autograd_through_the_dense_masked_formula(window, block, monkeypatch):
    monkeypatch.setattr(_exact, "_BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(7 + window[0] + 10 * window[1])
    inputs = _leaves(rng, 13, 3, 2, batch=(2,), spread=1.5)
    weight = torch.tensor(rng.standard_normal((2, 13, 2)))  # a generic upstream gradient dO
    ours = tensor_attention(*inputs, window=window, scale=0.7)
    want = dense_windowed_torch(*inputs, window, scale=0.7)
    torch.testing.assert_close(ours, want, rtol=0, atol=TOL64)
    got = torch.autograd.grad((ours * weight).sum(), inputs)
    expected = torch.autograd.grad((want * weight).sum(), inputs)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=TOL64 * max(1.0, float(e.abs().max())))


@given(
    n=st.integers(1, 9), w1=st.integers(1, 11), w2=st.integers(1, 11), d=st.integers(1, 3),
    d_v=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([0.1, 1, 3]),
    scale=st.sampled_from([None, 0.3, 2.0]), block=st.sampled_from([3, 7, 64, 1 << 16]),
)
@settings(max_examples=40, deadline=None)
def test_gradients_match_the_dense_masked_formula_property(n, w1, w2, d, d_v, seed, spread,
                                                           scale, block):
    """Any shape, window, scale, spread of the logits (up to ~ s d 3^3) and block size."""
    inputs = _leaves(np.random.default_rng(seed), n, d, d_v, spread=spread)
    weight = torch.tensor(np.random.default_rng(seed + 1).standard_normal((n, d_v)))
    saved_block = _exact._BLOCK_ELEMENTS
    _exact._BLOCK_ELEMENTS = block  # restored below (hypothesis reruns the body: no monkeypatch)
    try:
        ours = tensor_attention(*inputs, window=(w1, w2), scale=scale)
        got = torch.autograd.grad((ours * weight).sum(), inputs)
    finally:
        _exact._BLOCK_ELEMENTS = saved_block
    want = dense_windowed_torch(*inputs, (w1, w2), scale=scale)
    expected = torch.autograd.grad((want * weight).sum(), inputs)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-11 * max(1.0, float(e.abs().max())))


def test_only_the_inputs_that_require_grad_get_one():
    rng = np.random.default_rng(3)
    base = _leaves(rng, 8, 2, 3)
    for wanted in ([0], [1], [2], [3, 4], [0, 4]):
        leaves = [x.detach().requires_grad_(m in wanted) for m, x in enumerate(base)]
        grads = torch.autograd.grad(tensor_attention(*leaves, window=(3, 2)).sum(),
                                    [x for x in leaves if x.requires_grad])
        ref = [x.detach().requires_grad_(x.requires_grad) for x in leaves]
        want = torch.autograd.grad(dense_windowed_torch(*ref, (3, 2)).sum(),
                                   [x for x in ref if x.requires_grad])
        for g, e in zip(grads, want, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=TOL64)


@pytest.mark.parametrize("window", [(6, 5), (10, 4)])
def test_backward_keeps_only_o_n_d_numbers(window, monkeypatch, retained_numbers):
    """The graph keeps the inputs, the output and one log-sum-exp per query: 6 n d + n numbers
    (d_v = d), whatever w1 w2. Storing the weights would keep ~ n w1 w2 numbers (here more than
    9 n d), which the same count finds in autograd's graphs of the dense formula and of the
    array-API code."""
    from sci.tensor_attention import _array

    monkeypatch.setattr(_exact, "_BLOCK_ELEMENTS", 64)  # many blocks: the weights add up
    n, d = 60, 2
    inputs = _leaves(np.random.default_rng(5), n, d, d)
    out = tensor_attention(*inputs, window=window)
    assert retained_numbers(out) <= 6 * n * d + n
    out.sum().backward()  # and the backward runs from what was kept
    assert all(torch.isfinite(x.grad).all() for x in inputs)
    w1, w2 = window
    assert (n - w1) * w1 * w2 > 9 * n * d  # the weights would be visible in the count
    dense = dense_windowed_torch(*inputs, window)
    assert retained_numbers(dense) >= n**3
    standard = _array.standard_windowed_tensor_attention(*inputs, 1.0 / d, window)
    assert retained_numbers(standard) >= (n - w1) * w1 * w2


def test_saved_tensors_are_inputs_output_and_log_sum_exp():
    inputs = _leaves(np.random.default_rng(6), 9, 3, 2)
    out = tensor_attention(*inputs, window=(2, 3))
    saved = out.grad_fn.saved_tensors
    assert [tuple(t.shape) for t in saved] == [(9, 3)] * 3 + [(9, 2)] * 3 + [(9,)]
    torch.testing.assert_close(saved[-2], out.detach(), rtol=0, atol=0)
    Q, K1, K2 = inputs[:3]
    with torch.no_grad():  # query 0 sees the pair (0, 0) alone: lse = its logit
        torch.testing.assert_close(saved[-1][0], (Q[0] * K1[0] * K2[0]).sum() / 3, rtol=0,
                                   atol=TOL64)


def test_huge_logits_have_finite_gradients():
    """Logits of ~1e3 (exp would overflow unshifted): P = exp(L - lse) <= 1 in the backward."""
    inputs = _leaves(np.random.default_rng(14), 10, 2, 2, spread=4.0)
    out = tensor_attention(*inputs, window=(3, 4), scale=40.0)
    want = dense_windowed_torch(*inputs, (3, 4), scale=40.0)
    torch.testing.assert_close(out, want, rtol=0, atol=TOL64)
    got = torch.autograd.grad(out.sum(), inputs)
    expected = torch.autograd.grad(want.sum(), inputs)
    for g, e in zip(got, expected, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10 * max(1.0, float(e.abs().max())))


@pytest.mark.parametrize("window", [(3, 5), (16, 16)])
def test_float32_gradients(window):
    """float32 in, float32 out and gradients, close to the float64 dense ones."""
    inputs = _leaves(np.random.default_rng(9), 16, 4, 3, dtype=torch.float32, spread=1.5)
    out = tensor_attention(*inputs, window=window)
    assert out.dtype == torch.float32
    grads = torch.autograd.grad(out.sum(), inputs)
    assert all(g.dtype == torch.float32 for g in grads)
    ref = [x.detach().double().requires_grad_() for x in inputs]
    want = dense_windowed_torch(*ref, window)
    expected = torch.autograd.grad(want.sum(), ref)
    # float32: logits ~ s d 1.5^3 ~ 3 rounded at 6e-8 relative; sums of <= 256 terms: 1e-5
    torch.testing.assert_close(out.double(), want, rtol=0, atol=1e-5)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g.double(), e, rtol=0, atol=1e-5 * max(1.0, e.abs().max()))


def test_without_grad_the_same_forward_and_no_graph():
    inputs = _leaves(np.random.default_rng(12), 11, 2, 3)
    with_grad = tensor_attention(*inputs, window=(3, 4))
    plain = tensor_attention(*(x.detach() for x in inputs), window=(3, 4))
    with torch.no_grad():
        no_grad = tensor_attention(*inputs, window=(3, 4))
    assert plain.grad_fn is None and no_grad.grad_fn is None and not no_grad.requires_grad
    torch.testing.assert_close(plain, with_grad.detach(), rtol=0, atol=0)
    torch.testing.assert_close(no_grad, with_grad.detach(), rtol=0, atol=0)
    # and the NumPy path (the array-API code) agrees with the torch forward
    numpy_out = tensor_attention(*(x.detach().numpy() for x in inputs), window=(3, 4))
    np.testing.assert_allclose(plain.numpy(), numpy_out, rtol=0, atol=TOL64)


def test_double_backward_is_refused():
    inputs = _leaves(np.random.default_rng(10), 5, 2, 2)
    (gq,) = torch.autograd.grad(tensor_attention(*inputs, window=(2, 2)).sum(), inputs[0],
                                create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        torch.autograd.grad(gq.sum(), inputs[1])


@pytest.mark.gpu
def test_cuda_tensors_give_the_cpu_values_and_gradients_on_the_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    rng = np.random.default_rng(13)
    on_cpu = _leaves(rng, 12, 3, 2)
    on_gpu = [x.detach().cuda().requires_grad_() for x in on_cpu]
    out_cpu = tensor_attention(*on_cpu, window=(3, 5))
    out_gpu = tensor_attention(*on_gpu, window=(3, 5))
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), out_cpu.detach(), rtol=0, atol=TOL64)
    weight = torch.tensor(rng.standard_normal((12, 2)))
    grads_cpu = torch.autograd.grad((out_cpu * weight).sum(), on_cpu)
    grads_gpu = torch.autograd.grad((out_gpu * weight.cuda()).sum(), on_gpu)
    for g, e in zip(grads_gpu, grads_cpu, strict=True):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g.cpu(), e, rtol=0, atol=TOL64)

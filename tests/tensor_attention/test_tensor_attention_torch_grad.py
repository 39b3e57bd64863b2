"""The recomputing backward of exact attention for torch tensors (sci/tensor_attention/_torch.py).

Oracles: torch's gradcheck (central finite differences, float64), and autograd through the
dense formula (every tuple's logit formed, ``torch.softmax``), written here independently of
sci. The memory claim (only O(n d) numbers saved for the backward) is checked by counting what
autograd saves, with the same counter shown to catch the dense formula's weights.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sci.tensor_attention import higher_order_attention, softmax_attention, tensor_attention

torch = pytest.importorskip("torch")

# float64 sums of at most m^(t-1) <= 216 terms of size <= ~10: rounding ~1e-14; 1e-12 leaves
# a margin without hiding an O(1e-8) error in a gradient formula.
TOL64 = 1e-12


def dense_torch(Q, keys, values, *, scale=None, causal=False):
    """Att = softmax(s Q (K1 ⊘ ...)^T) (V1 ⊘ ...), every tuple formed, masked with -inf."""
    n, d = Q.shape
    m = keys[0].shape[0]
    s = 1.0 / d if scale is None else scale
    tuples = list(itertools.product(range(m), repeat=len(keys)))

    def khatri_rao(arrays):
        return torch.stack([
            torch.stack([X[j] for X, j in zip(arrays, J, strict=True)]).prod(dim=0)
            for J in tuples
        ])

    logits = s * Q @ khatri_rao(keys).T
    if causal:
        future = torch.tensor([max(J) for J in tuples])[None, :] > torch.arange(n)[:, None]
        logits = logits.masked_fill(future, -torch.inf)
    return torch.softmax(logits, dim=1) @ khatri_rao(values)


def _leaves(rng, n_q, n_k, d, pairs, dtype=torch.float64, spread=1.0):
    def leaf(rows):
        return torch.tensor(spread * rng.standard_normal((rows, d)), dtype=dtype,
                            requires_grad=True)

    return leaf(n_q), [leaf(n_k) for _ in range(pairs)], [leaf(n_k) for _ in range(pairs)]


def _call(pairs, causal, scale=None):
    """f(Q, K1, ..., V1, ...) through sci's exact attention of order pairs + 1."""
    def f(Q, *kv):
        return higher_order_attention(Q, list(kv[:pairs]), list(kv[pairs:]), causal=causal,
                                      scale=scale)

    return f


def _small_blocks(monkeypatch):
    """Logit blocks of at most 7 elements: many query and tuple blocks, causal skips, and rows
    whose every tuple in a block is masked (weights exp(-inf - lse) = 0 in the backward)."""
    from sci.tensor_attention import _exact

    monkeypatch.setattr(_exact, "_BLOCK_ELEMENTS", 7)


@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_gradcheck_float64(order, causal, blocks, monkeypatch):
    if blocks == "many blocks":
        _small_blocks(monkeypatch)
    rng = np.random.default_rng(100 * order + causal)
    pairs = order - 1
    n_q, n_k = (4, 4) if causal else (5, 3)  # n_q != n_k where the API allows it
    Q, keys, values = _leaves(rng, n_q, n_k, 2, pairs)
    out = _call(pairs, causal)(Q, *keys, *values)
    assert type(out.grad_fn).__name__ == "ExactAttentionBackward"
    assert torch.autograd.gradcheck(_call(pairs, causal), (Q, *keys, *values), eps=1e-6,
                                    atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_gradients_equal_autograd_through_the_dense_formula(order, causal, blocks,
                                                            monkeypatch):
    if blocks == "many blocks":
        _small_blocks(monkeypatch)
    rng = np.random.default_rng(7 + order)
    pairs = order - 1
    n_q, n_k = (6, 6) if causal else (7, 5)
    # spread 1.5: logits up to ~ s d 1.5^t, far from uniform weights
    Q, keys, values = _leaves(rng, n_q, n_k, 3, pairs, spread=1.5)
    inputs = (Q, *keys, *values)
    weight = torch.tensor(rng.standard_normal((n_q, 3)))  # a generic upstream gradient dO
    ours = _call(pairs, causal, scale=0.7)(*inputs)
    want = dense_torch(Q, keys, values, scale=0.7, causal=causal)
    torch.testing.assert_close(ours, want, rtol=0, atol=TOL64)
    got = torch.autograd.grad((ours * weight).sum(), inputs)
    expected = torch.autograd.grad((want * weight).sum(), inputs)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=TOL64 * max(1.0, float(e.abs().max())))


@given(
    n=st.integers(1, 7), m=st.integers(1, 7), d=st.integers(1, 4), order=st.sampled_from([2, 3]),
    causal=st.booleans(), seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([0.1, 1, 3]),
    scale=st.sampled_from([None, 0.3, 2.0]), block=st.sampled_from([7, 64, 1 << 16]),
)
def test_gradients_match_the_dense_formula_property(n, m, d, order, causal, seed, spread, scale,
                                                    block):
    """Any shape, scale, spread of the logits (up to ~ s d 3^t) and block size."""
    from sci.tensor_attention import _exact

    if causal:
        m = n
    pairs = order - 1
    Q, keys, values = _leaves(np.random.default_rng(seed), n, m, d, pairs, spread=spread)
    inputs = (Q, *keys, *values)
    weight = torch.tensor(np.random.default_rng(seed + 1).standard_normal((n, d)))
    saved_block = _exact._BLOCK_ELEMENTS
    _exact._BLOCK_ELEMENTS = block  # restored below (hypothesis reruns the body: no monkeypatch)
    try:
        ours = _call(pairs, causal, scale)(*inputs)
        got = torch.autograd.grad((ours * weight).sum(), inputs)
    finally:
        _exact._BLOCK_ELEMENTS = saved_block
    want = dense_torch(Q, keys, values, scale=scale, causal=causal)
    expected = torch.autograd.grad((want * weight).sum(), inputs)
    # gradients carry a factor s |Q| |K|^(t-2) ~ up to 2 * 3^2 of the output's size
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-11 * max(1.0, float(e.abs().max())))


def test_huge_logits_have_finite_exact_gradients():
    """Logits of ~ 1e3 (exp would overflow unshifted): the recomputed weights exp(L - lse) stay
    <= 1 and the gradients equal the dense (max-shifted) softmax's."""
    rng = np.random.default_rng(14)
    Q, keys, values = _leaves(rng, 6, 6, 2, 2, spread=4.0)
    inputs = (Q, *keys, *values)
    out = tensor_attention(*inputs, causal=True, scale=40.0)
    want = dense_torch(Q, keys, values, scale=40.0, causal=True)
    torch.testing.assert_close(out, want, rtol=0, atol=TOL64)
    got = torch.autograd.grad(out.sum(), inputs)
    expected = torch.autograd.grad(want.sum(), inputs)
    for g, e in zip(got, expected, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10 * max(1.0, float(e.abs().max())))


@pytest.mark.parametrize("order", [2, 3, 4])
def test_only_the_inputs_that_require_grad_get_one(order):
    """needs_input_grad: a gradient for Q alone (or for the values alone) is the dense one."""
    rng = np.random.default_rng(3)
    pairs = order - 1
    Q, keys, values = _leaves(rng, 5, 5, 2, pairs)
    for wanted in ([Q], values, keys[:1]):
        leaves = [x.detach().requires_grad_(any(x is w for w in wanted))
                  for x in (Q, *keys, *values)]
        q, k, v = leaves[0], leaves[1 : 1 + pairs], leaves[1 + pairs :]
        grads = torch.autograd.grad(higher_order_attention(q, k, v, causal=True).sum(),
                                    [x for x in leaves if x.requires_grad])
        ref = [x.detach().requires_grad_(x.requires_grad) for x in leaves]
        want = torch.autograd.grad(
            dense_torch(ref[0], ref[1 : 1 + pairs], ref[1 + pairs :], causal=True).sum(),
            [x for x in ref if x.requires_grad])
        for g, e in zip(grads, want, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=TOL64)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("order", [2, 3])
def test_backward_keeps_only_o_n_d_numbers(order, causal, retained_numbers):
    """The graph keeps the inputs, the output and one log-sum-exp per query: (2t - 1) n d +
    n d + n numbers, whatever the number of tuples n^(t-1). Storing the weights would keep
    n^t numbers, which the same count finds in autograd's graphs of the dense formula and of
    the array-API code (the path torch tensors took before)."""
    from sci.tensor_attention import _array

    n, d, pairs = 40, 2, order - 1
    Q, keys, values = _leaves(np.random.default_rng(5), n, n, d, pairs)
    out = _call(pairs, causal)(Q, *keys, *values)
    assert retained_numbers(out) <= (2 * order - 1) * n * d + n * d + n
    out.sum().backward()  # and the backward runs from what was kept
    assert all(torch.isfinite(x.grad).all() for x in (Q, *keys, *values))
    # the count is not blind to stored weights
    dense = dense_torch(Q, keys, values, causal=causal)
    assert retained_numbers(dense) >= n**order
    standard = _array.standard_exact_attention(Q, keys, values, 1.0 / d, causal)
    assert retained_numbers(standard) >= n**order


def test_saved_tensors_of_the_node_are_inputs_output_and_log_sum_exp():
    rng = np.random.default_rng(6)
    Q, keys, values = _leaves(rng, 9, 9, 3, 2)
    out = tensor_attention(Q, *keys, *values, causal=True)
    saved = out.grad_fn.saved_tensors
    assert [tuple(t.shape) for t in saved] == [(9, 3)] * 6 + [(9,)]
    torch.testing.assert_close(saved[-2], out.detach(), rtol=0, atol=0)
    # the log-sum-exp is that of the masked, scaled logits (i = 0 sees one tuple: lse = logit)
    lse = saved[-1]
    s = 1.0 / 3
    with torch.no_grad():
        logit_00 = s * (Q[0] * keys[0][0] * keys[1][0]).sum()
        torch.testing.assert_close(lse[0], logit_00, rtol=0, atol=TOL64)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_causal_first_query_sees_one_tuple_without_nan(order, monkeypatch):
    """Query 0 attends to (0, ..., 0) alone: its output is V1[0] * ... and its logit has zero
    gradient (a softmax over one entry is constant); every gradient is finite."""
    _small_blocks(monkeypatch)  # blocks in which some queries see no tuple at all
    rng = np.random.default_rng(8)
    pairs = order - 1
    Q, keys, values = _leaves(rng, 5, 5, 2, pairs, spread=3.0)
    out = higher_order_attention(Q, keys, values, causal=True)
    expected_row = torch.stack([v[0] for v in values]).prod(dim=0)
    torch.testing.assert_close(out[0], expected_row, rtol=0, atol=TOL64)
    grads = torch.autograd.grad(out[0].sum(), (Q, *keys, *values), retain_graph=True)
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.count_nonzero(grads[0]) == 0  # dQ
    for g in grads[1 : 1 + pairs]:  # dK: the one logit does not move the output
        assert torch.count_nonzero(g) == 0
    for m, g in enumerate(grads[1 + pairs :]):  # dV_m[0] = prod of the other V's row 0
        others = [v[0] for mm, v in enumerate(values) if mm != m]
        want = torch.stack(others).prod(dim=0) if others else torch.ones(2, dtype=g.dtype)
        torch.testing.assert_close(g[0], want.detach(), rtol=0, atol=TOL64)
        assert torch.count_nonzero(g[1:]) == 0
    # the whole output's backward: finite everywhere
    grads = torch.autograd.grad(out.sum(), (Q, *keys, *values))
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("causal", [False, True])
def test_float32_gradients(causal):
    """float32 in, float32 out and gradients, close to the float64 dense ones."""
    rng = np.random.default_rng(9)
    Q, keys, values = _leaves(rng, 8, 8, 4, 2, dtype=torch.float32, spread=1.5)
    out = tensor_attention(Q, *keys, *values, causal=causal)
    assert out.dtype == torch.float32
    grads = torch.autograd.grad(out.sum(), (Q, *keys, *values))
    assert all(g.dtype == torch.float32 for g in grads)
    ref = [x.detach().double().requires_grad_() for x in (Q, *keys, *values)]
    want = dense_torch(ref[0], ref[1:3], ref[3:], causal=causal)
    expected = torch.autograd.grad(want.sum(), ref)
    # float32: logits ~ s d 1.5^3 ~ 3 rounded at 6e-8 relative; sums of 64 terms: 1e-5
    torch.testing.assert_close(out.double(), want, rtol=0, atol=1e-5)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g.double(), e, rtol=0, atol=1e-5 * max(1.0, e.abs().max()))


def test_double_backward_is_refused():
    """once_differentiable: a second derivative raises instead of coming back wrong."""
    rng = np.random.default_rng(10)
    Q, K, V = (torch.tensor(rng.standard_normal((3, 2)), requires_grad=True) for _ in range(3))
    (gq,) = torch.autograd.grad(softmax_attention(Q, K, V).sum(), Q, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        torch.autograd.grad(gq.sum(), K)


def test_without_grad_the_same_forward_and_no_graph():
    rng = np.random.default_rng(12)
    Q, keys, values = _leaves(rng, 6, 6, 2, 2)
    with_grad = tensor_attention(Q, *keys, *values, causal=True)
    plain = tensor_attention(*(x.detach() for x in (Q, *keys, *values)), causal=True)
    with torch.no_grad():
        no_grad = tensor_attention(Q, *keys, *values, causal=True)
    assert plain.grad_fn is None and no_grad.grad_fn is None and not no_grad.requires_grad
    torch.testing.assert_close(plain, with_grad.detach(), rtol=0, atol=0)
    torch.testing.assert_close(no_grad, with_grad.detach(), rtol=0, atol=0)


def test_importing_tensor_attention_does_not_import_torch():
    """The torch module is imported on the first torch call only."""
    code = ("import sys, numpy as np; import sci.tensor_attention as ta; "
            "ta.tensor_attention(*np.ones((5, 3, 2))); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_api_page_torch_example_runs():
    """The torch examples of docs/api/tensor_attention.rst run as doctests (gradients; batch
    axes and scale="sqrt" against torch's scaled_dot_product_attention)."""
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "api" / "tensor_attention.rst"
    result = doctest.testfile(str(page), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 21
    assert result.failed == 0


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_tensors_give_the_cpu_values_and_gradients_on_the_device(causal):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    rng = np.random.default_rng(13)
    Q, keys, values = _leaves(rng, 7, 7, 3, 2)
    on_cpu = (Q, *keys, *values)
    on_gpu = [x.detach().cuda().requires_grad_() for x in on_cpu]
    out_cpu = _call(2, causal)(*on_cpu)
    out_gpu = _call(2, causal)(*on_gpu)
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), out_cpu.detach(), rtol=0, atol=TOL64)
    weight = torch.tensor(rng.standard_normal((7, 3)))
    grads_cpu = torch.autograd.grad((out_cpu * weight).sum(), on_cpu)
    grads_gpu = torch.autograd.grad((out_gpu * weight.cuda()).sum(), on_gpu)
    for g, e in zip(grads_gpu, grads_cpu, strict=True):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g.cpu(), e, rtol=0, atol=TOL64)

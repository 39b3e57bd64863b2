"""The fused GPU kernel on the CPU: its own CUDA C text compiled for the host, how it shares
out the work, and how its per-thread partial sums are combined.

``_gpu.py``'s kernel runs on a CUDA device only under CuPy (there, every exact-attention test of
the ``cupy`` backend runs it: ``gpu``). Its text lives in ``_gpu_source.py``; here it is
compiled by the host's C++ compiler with a few lines that stand in for CUDA (``__global__``,
the thread indices, ``__longlong_as_double``) and run thread by thread over the grid the
launcher would use, with the launcher's plan (:func:`fused_plan`) and argument order
(``fused_attention_arguments``), then combined by :func:`combine_partials` in each leg's
library and checked against the dense oracle. (``tests/test_cuda_sources.py`` compiles the
text with ``nvcc``: valid CUDA, no register spill at the widths the launcher sends it.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensor_attention_host_cuda import random_case, run_fused_kernel

from sci.tensor_attention._array import combine_partials, fused_plan

TOL = 1e-13  # means of <= 6^3 positive weights of terms of size <= 1: a few ulps each

def _covered(plan, n_outer, n_k):
    """(o, k) -> how many threads of one query take it."""
    counts = np.zeros((n_outer, n_k), dtype=int)
    n_items = n_outer * plan.n_splits
    for u in range(plan.units):
        for w in range(u * plan.per_unit, min((u + 1) * plan.per_unit, n_items)):
            o, s = divmod(w, plan.n_splits)
            counts[o, s * plan.split:min((s + 1) * plan.split, n_k)] += 1
    return counts


@given(n_q=st.integers(1, 64), n_k=st.integers(1, 24), n_pairs=st.integers(1, 3),
       threads=st.integers(1, 1 << 20))
def test_plan_gives_every_tuple_and_key_to_exactly_one_thread(n_q, n_k, n_pairs, threads):
    plan = fused_plan(n_q, n_k, n_pairs, threads)
    n_outer = n_k ** (n_pairs - 1)
    n_items = n_outer * plan.n_splits
    assert np.all(_covered(plan, n_outer, n_k) == 1)
    assert (plan.n_splits - 1) * plan.split < n_k <= plan.n_splits * plan.split  # no empty slice
    assert (plan.units - 1) * plan.per_unit < n_items <= plan.units * plan.per_unit  # no idle
    # about `threads` in all (items are whole: within a factor 2), at most one per item
    want = -(-threads // n_q)
    assert min(want, n_items) <= 2 * plan.units and plan.units <= max(want, 1)


def test_plan_of_the_issue_sizes():
    """The device sizes of issue 19: enough threads for 132 multiprocessors at every n."""
    for n_q, n_pairs in ((256, 2), (512, 2), (1024, 2), (2048, 2), (8192, 1), (512, 3)):
        plan = fused_plan(n_q, n_q, n_pairs, 1 << 19)
        assert n_q * plan.units >= 1 << 18
        assert n_q * plan.units * 18 * 8 <= 1 << 27  # partials of width 16: <= 128 MiB


@pytest.mark.parametrize("causal", [False, True])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
@given(data=st.data())
def test_kernel_plan_and_combination_match_the_dense_oracle(xp, dense_reference, causal, data):
    """The kernel's own code with the launcher's plan, combined in the leg's library, against
    the dense attention; thread counts from one per query to one per (tuple, key), so that
    keys are split among threads (matrix attention) and tuples too (order 3, 4)."""
    n = data.draw(st.integers(1, 6), label="n")
    n_pairs = data.draw(st.integers(1, 3), label="pairs")
    d = data.draw(st.integers(1, 3), label="d")
    threads = data.draw(st.integers(1, 4 * n ** (n_pairs + 1)), label="threads")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    Q = rng.uniform(-2, 2, (n, d))
    keys = [rng.uniform(-2, 2, (n, d)) for _ in range(n_pairs)]
    values = [rng.uniform(-1, 1, (n, d)) for _ in range(n_pairs)]
    plan = fused_plan(n, n, n_pairs, threads)
    partials = run_fused_kernel(Q, keys, values, 1.0 / d, causal, plan)
    assert not any(np.isnan(p).any() for p in partials)  # every thread wrote its slot
    got = combine_partials(*(xp.asarray(p) for p in partials), xp.float64)
    assert xp.is_leg_array(got)
    want = dense_reference(Q, keys, values, causal=causal)
    np.testing.assert_allclose(xp.to_numpy(got), want, rtol=0, atol=TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_kernel_in_float32_and_its_log_sum_exp(dense_reference, causal):
    """float32 inputs (logits and exponentials in float, sums and partials in float64), at a size
    with several threads per query; and the log-sum-exp the torch Function keeps for its
    backward, against log sum exp of the dense logits."""
    rng = np.random.default_rng(3)
    n, d = 9, 4
    Q, K1, K2, V1, V2 = (rng.uniform(-1, 1, (n, d)) for _ in range(5))
    Q, K1, K2 = (x.astype(np.float32).astype(np.float64) for x in (Q, K1, K2))
    V1, V2 = (x.astype(np.float32).astype(np.float64) for x in (V1, V2))
    plan = fused_plan(n, n, 2, 5 * n)
    assert plan.units > 1
    out, lse = combine_partials(*run_fused_kernel(Q, [K1, K2], [V1, V2], 1.0 / d, causal, plan,
                                             "float32"), np.float32, with_lse=True)
    assert out.dtype == np.float32 and lse.dtype == np.float32
    np.testing.assert_allclose(out, dense_reference(Q, [K1, K2], [V1, V2], causal=causal),
                               rtol=0, atol=1e-6)  # the float32 rounding of the result
    logits = (Q[:, None, None, :] * K1[None, :, None, :] * K2[None, None, :, :]).sum(-1) / d
    if causal:
        j, k = np.arange(n)[:, None], np.arange(n)[None, :]
        logits = np.where((np.maximum(j, k)[None] > np.arange(n)[:, None, None]), -np.inf,
                          logits)
    want = np.log(np.exp(logits).sum(axis=(1, 2)))
    np.testing.assert_allclose(lse, want, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_combination_returns_the_input_precision(xp, dtype):
    """The partials are float64 whatever the inputs; the result takes the inputs' dtype, and a
    thread that saw no key (maximum -inf, zero sums) weighs nothing."""
    part_max = xp.asarray(np.array([[0.0, -np.inf, 1.0]]))
    part_mass = xp.asarray(np.array([[2.0, 0.0, 1.0]]))
    part_numerator = xp.asarray(np.array([[[2.0], [0.0], [3.0]]]))
    got = combine_partials(part_max, part_mass, part_numerator, getattr(xp, dtype))
    assert got.dtype == getattr(xp, dtype)
    e = math.exp(-1.0)
    np.testing.assert_allclose(xp.to_numpy(got), [[(2 * e + 3) / (2 * e + 1)]], rtol=1e-7)


# ------------------------------------------------------------------ on a CUDA device (gpu)
_DEVICE_CASES = [  # (order t, n, d, d_v, causal): splits of keys, of tuples, both paths
    (2, 3000, 4, 4, False), (2, 3000, 4, 4, True), (3, 300, 4, 4, False),
    (3, 300, 3, 5, True), (4, 40, 2, 2, True), (3, 200, 32, 32, False), (2, 2000, 64, 64, True),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("order, n, d, d_v, causal", _DEVICE_CASES)
def test_cupy_attention_at_sizes_that_split_the_work(order, n, d, d_v, causal, dtype):
    """The per-thread kernel (widths <= 16) and the tiled kernel (wider) on CuPy arrays
    against the blocked NumPy code, at sizes where a query's work is shared by many threads."""
    import cupy

    import sci
    from sci.tensor_attention import higher_order_attention

    Q, keys, values, want = random_case(order, n, d, d_v, causal)
    with sci.use_backend("cupy"):
        got = higher_order_attention(cupy.asarray(Q, dtype=dtype),
                                     [cupy.asarray(k, dtype=dtype) for k in keys],
                                     [cupy.asarray(v, dtype=dtype) for v in values],
                                     causal=causal)
    assert isinstance(got, cupy.ndarray) and got.dtype == dtype
    tolerance = 1e-12 if dtype == "float64" else 2e-6  # float32: the inputs' own rounding
    np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=0, atol=tolerance)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_torch_cuda_tensors_take_the_fused_kernel_and_its_lse(causal):
    """torch CUDA tensors: the forward through DLPack (the fused kernel), the backward from its
    log-sum-exp, both against the same call on CPU tensors."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("cupy")
    from sci.tensor_attention import tensor_attention
    from sci.tensor_attention._torch import _fused_on_cuda

    rng = np.random.default_rng(5)
    on_cpu = [torch.tensor(rng.uniform(-1, 1, (300, 4)), requires_grad=True) for _ in range(5)]
    on_gpu = [x.detach().cuda().requires_grad_() for x in on_cpu]
    assert _fused_on_cuda(on_gpu[0], on_gpu[1:3], on_gpu[3:5], 0.25, causal) is not None
    weight = torch.tensor(rng.standard_normal((300, 4)))
    out_cpu = tensor_attention(*on_cpu, causal=causal)
    out_gpu = tensor_attention(*on_gpu, causal=causal)
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), out_cpu.detach(), rtol=0, atol=1e-12)
    grads_cpu = torch.autograd.grad((out_cpu * weight).sum(), on_cpu)
    grads_gpu = torch.autograd.grad((out_gpu * weight.cuda()).sum(), on_gpu)
    for g, e in zip(grads_gpu, grads_cpu, strict=True):
        torch.testing.assert_close(g.cpu(), e, rtol=0, atol=1e-10)

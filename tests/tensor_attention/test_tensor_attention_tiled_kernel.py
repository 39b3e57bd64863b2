"""The tiled tensor-core GPU kernel on the CPU: its own CUDA C text compiled for the host, every
thread of a block run concurrently, with CUDA's barrier and the ``wmma`` tile operations stood
in for; its plan, and its partials combined, against the dense oracle.

``_gpu.py``'s tiled kernel (rows wider than the per-thread kernel's 16 columns) runs on a CUDA
device only under CuPy (there every exact-attention test of the ``cupy`` backend runs it:
``gpu``). Here its text (``_gpu_source.py``) is compiled by the host's C++ compiler with a
stand-in for CUDA that keeps what the kernel relies on (``_host_cuda.py``): the threads of a
block run at once with a barrier for ``__syncthreads``; ``wmma`` tiles are read, multiplied
(TF32 rounding included) and written as CUDA does, with its alignment, leading-dimension and
warp-uniformity rules checked; shared memory and guard rows around the inputs are NaN, so that
a missing barrier, an out-of-bounds read or an unwritten partial shows as a wrong result. The
launcher (``_gpu.py``) runs too, against a stand-in for CuPy whose ``RawKernel`` runs the text.

``tests/test_cuda_sources.py`` compiles the same text with ``nvcc`` for sm_90 (valid CUDA, the
real ``mma.h``, no register spill).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensor_attention_host_cuda import RawKernel, random_case, run_tiled_kernel

from sci.tensor_attention import _gpu_source
from sci.tensor_attention._array import combine_partials, tile_plan


def _covered(plan, n_q, n_k, n_pairs, rows):
    """(query, outer tuple, key) -> how many blocks take it, and the slots each block writes."""
    n_outer = n_k ** (n_pairs - 1)
    counts = np.zeros((n_q, n_outer, n_k), dtype=int)
    slots = np.zeros((n_q, plan.units), dtype=int)
    for x in range(plan.row_tiles):
        for y in range(plan.n_splits):
            k0, k1 = y * plan.split, min(n_k, (y + 1) * plan.split)
            if plan.tiles_per_query == 0:
                queries = range(x * rows, min(n_q, (x + 1) * rows))
                outer, unit = range(1), y
            else:
                tile = x % plan.tiles_per_query
                queries = [x // plan.tiles_per_query]
                outer = range(tile * rows, min(n_outer, (tile + 1) * rows))
                unit = tile * plan.n_splits + y
            for i in queries:
                slots[i, unit] += 1
                for o in outer:
                    counts[i, o, k0:k1] += 1
    return counts, slots


@given(n_q=st.integers(1, 40), n_k=st.integers(1, 40), n_pairs=st.integers(1, 3),
       rows=st.sampled_from([8, 64]), keys=st.sampled_from([4, 32, 64]),
       blocks=st.integers(1, 5000))
def test_plan_gives_every_logit_to_one_block_and_every_slot_one_writer(n_q, n_k, n_pairs,
                                                                       rows, keys, blocks):
    if n_pairs == 3:
        n_k = min(n_k, 12)
    plan = tile_plan(n_q, n_k, n_pairs, rows, keys, blocks)
    counts, slots = _covered(plan, n_q, n_k, n_pairs, rows)
    assert np.all(counts == 1)
    assert np.all(slots == 1)  # every partial slot written once: no race, none left NaN
    assert plan.split % keys == 0  # slices of whole key tiles
    assert (plan.n_splits - 1) * plan.split < n_k <= plan.n_splits * plan.split
    # as many blocks as asked for where the keys allow it
    assert plan.row_tiles * plan.n_splits >= min(blocks, plan.row_tiles * -(-n_k // keys)) / 2


def test_plan_and_layout_of_the_issue_sizes():
    """The device sizes of issue 19 (n = 256..2048, d up to 64; matrix n = 8192): hundreds of
    blocks or more for 132 multiprocessors, partials far under the logits, and every layout
    within the 227 KB of shared memory a block of an H100/H200 may take."""
    for dtype in ("float32", "float64"):
        for d in range(1, _gpu_source.TILED_WIDTH + 1):
            assert _gpu_source.tile_layout(d, dtype).shared_bytes <= 227 * 1024
        for n, n_pairs, d in ((256, 2, 64), (1024, 2, 64), (2048, 2, 64), (8192, 1, 64),
                              (2048, 1, 16), (128, 3, 32)):
            layout = _gpu_source.tile_layout(d, dtype)
            plan = tile_plan(n, n, n_pairs, layout.rows, layout.keys, 1024)
            assert plan.row_tiles * plan.n_splits >= 256
            assert n * plan.units * (d + 2) * 8 <= 1 << 28  # partials <= 256 MiB


@pytest.mark.parametrize("causal", [False, True])
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
@given(data=st.data())
def test_tiled_kernel_and_combination_match_the_dense_oracle(xp, dense_reference, causal, data):
    """The kernel's own code with the launcher's layout and plan, combined in the leg's
    library, against the dense attention in float64: matrix attention over several query
    tiles and key slices, order 3 and 4 with several tiles of outer tuples per query, widths
    that pad to the tensor-core tile and beyond one, d_v != d, and rows (queries, tuples,
    keys) that end inside a tile."""
    n_pairs = data.draw(st.integers(1, 3), label="pairs")
    n = data.draw(st.integers(1, {1: 140, 2: 70, 3: 10}[n_pairs]), label="n")
    d = data.draw(st.integers(1, 40), label="d")
    d_v = data.draw(st.sampled_from([d, data.draw(st.integers(1, 40), label="d_v")]))
    blocks = data.draw(st.integers(1, 16), label="blocks")  # small: slices of the keys
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    Q = rng.uniform(-2, 2, (n, d))
    keys = [rng.uniform(-2, 2, (n, d)) for _ in range(n_pairs)]
    values = [rng.uniform(-1, 1, (n, d_v)) for _ in range(n_pairs)]
    partials, _ = run_tiled_kernel(Q, keys, values, 1.0 / d, causal, "float64", blocks)
    got = combine_partials(*(xp.asarray(p) for p in partials), xp.float64)
    assert xp.is_leg_array(got)
    want = dense_reference(Q, keys, values, causal=causal)
    # DMMA products are exact float64 fused multiply-adds in another order: a few ulps
    np.testing.assert_allclose(xp.to_numpy(got), want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("order, n, d, d_v", [(2, 150, 40, 24), (3, 70, 20, 20), (4, 9, 5, 7)])
@pytest.mark.parametrize("causal", [False, True])
def test_tiled_kernel_in_float32_and_its_log_sum_exp(dense_reference, order, n, d, d_v, causal):
    """float32 inputs: three TF32 products per logit tile (hi*hi + hi*lo + lo*hi) keep float32
    accuracy, where TF32 alone (10-bit mantissas) would err by about 1e-3; and the log-sum-exp
    the torch Function keeps for its backward, against log sum exp of the dense logits."""
    rng = np.random.default_rng(order * n + d)

    def rounded(shape, scale):
        return rng.uniform(-scale, scale, shape).astype(np.float32).astype(np.float64)

    Q = rounded((n, d), 2)
    keys = [rounded((n, d), 2) for _ in range(order - 1)]
    values = [rounded((n, d_v), 1) for _ in range(order - 1)]
    partials, plan = run_tiled_kernel(Q, keys, values, 1.0 / d, causal, "float32", blocks=6)
    assert plan.units > 1
    out, lse = combine_partials(*partials, np.float32, with_lse=True)
    assert out.dtype == np.float32 and lse.dtype == np.float32
    want = dense_reference(Q, keys, values, causal=causal)
    # logits of size <= 2^(t+1) d / d to ~2^-22 relative, weights and sums in float32
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-6)
    logits = Q / d
    for K in keys:
        logits = logits[..., None, :] * K.reshape((1,) * (logits.ndim - 1) + K.shape)
    logits = logits.sum(-1).reshape(n, -1)
    if causal:
        grids = np.meshgrid(*[np.arange(n)] * (order - 1), indexing="ij")
        latest = np.max(np.stack([g.reshape(-1) for g in grids]), axis=0)
        logits = np.where(latest[None, :] > np.arange(n)[:, None], -np.inf, logits)
    top = logits.max(axis=1, keepdims=True)
    want_lse = (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))[:, 0]
    np.testing.assert_allclose(lse, want_lse, rtol=0, atol=4e-6)


# ------------------------------------------------------------------ on a CUDA device (gpu)
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tiled_kernel_compiles_on_the_device(dtype):
    """NVRTC finds CUDA's mma.h and the layout fits the device's shared memory: the tiled
    kernel runs, not the GEMM-tiled fallback (whose warning would fail this test)."""
    pytest.importorskip("cupy")
    import warnings

    from sci.tensor_attention import _gpu

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for d in (17, 64, _gpu_source.TILED_WIDTH):
            assert _gpu._tiled_kernel(d, dtype) is not None


_TILED_DEVICE_CASES = [  # (order t, n, d, d_v, causal): query tiles, key slices, tuple tiles
    (2, 3000, 64, 64, False), (2, 3000, 40, 24, True), (3, 200, 4, 4, True),
    (3, 130, 17, 33, False), (4, 30, 128, 128, True),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("order, n, d, d_v, causal", _TILED_DEVICE_CASES)
def test_tiled_kernel_on_the_device_against_numpy(order, n, d, d_v, causal, dtype, monkeypatch):
    """The tiled kernel on CuPy arrays at every width it takes (narrow rows sent to it too),
    against the blocked NumPy code; the log-sum-exp against the per-thread kernel's."""
    cupy = pytest.importorskip("cupy")
    import sci
    from sci.tensor_attention import _gpu, higher_order_attention

    monkeypatch.setattr(_gpu, "_TILED_FROM", 1)
    Q, keys, values, want = random_case(order, n, d, d_v, causal)
    Qc, kc, vc = (cupy.asarray(Q, dtype=dtype), [cupy.asarray(k, dtype=dtype) for k in keys],
                  [cupy.asarray(v, dtype=dtype) for v in values])
    out, lse = _gpu.tiled_attention(Qc, kc, vc, 1.0 / d, causal)
    assert out.dtype == dtype and lse.dtype == dtype
    tolerance = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(cupy.asnumpy(out), want, rtol=0, atol=tolerance)
    with sci.use_backend("cupy"):
        got = higher_order_attention(Qc, kc, vc, causal=causal)
    np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=0, atol=tolerance)
    if max(d, d_v) <= _gpu._FUSED_WIDTH:
        _, lse_fused = _gpu.fused_attention(Qc, kc, vc, 1.0 / d, causal)
        np.testing.assert_allclose(cupy.asnumpy(lse), cupy.asnumpy(lse_fused), rtol=0,
                                   atol=100 * tolerance)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_torch_cuda_tensors_of_wide_rows_take_the_tiled_kernel(causal):
    """torch CUDA tensors 40 wide: the forward through DLPack (the tiled kernel), the backward
    from its log-sum-exp, both against the same call on CPU tensors."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("cupy")
    from sci.tensor_attention import tensor_attention
    from sci.tensor_attention._torch import _fused_on_cuda

    rng = np.random.default_rng(6)
    on_cpu = [torch.tensor(rng.uniform(-1, 1, (200, 40)), requires_grad=True) for _ in range(5)]
    on_gpu = [x.detach().cuda().requires_grad_() for x in on_cpu]
    assert _fused_on_cuda(on_gpu[0], on_gpu[1:3], on_gpu[3:5], 1 / 40, causal) is not None
    weight = torch.tensor(rng.standard_normal((200, 40)))
    out_cpu = tensor_attention(*on_cpu, causal=causal)
    out_gpu = tensor_attention(*on_gpu, causal=causal)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu.detach(), rtol=0, atol=1e-12)
    grads_cpu = torch.autograd.grad((out_cpu * weight).sum(), on_cpu)
    grads_gpu = torch.autograd.grad((out_gpu * weight.cuda()).sum(), on_gpu)
    for g, e in zip(grads_gpu, grads_cpu, strict=True):
        torch.testing.assert_close(g.cpu(), e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("order, n, d, d_v, causal", [
    (2, 70, 4, 4, True), (3, 12, 3, 5, False), (4, 5, 16, 2, True),  # the per-thread kernel
    (2, 100, 40, 24, True), (3, 30, 20, 36, False), (4, 7, 17, 17, True),  # the tiled kernel
])
def test_launcher_pads_plans_and_combines(host_gpu_module, dense_reference, order, n, d, d_v,
                                          causal, dtype):
    """``_gpu.kernel_attention`` and ``exact_attention`` on the stand-in for CuPy: the kernel
    for the width (per-thread up to 16 columns, tiled above), d_v != d brought to one width,
    the plan and launch, the partials combined; result and log-sum-exp in the inputs' dtype,
    against the dense oracle."""
    rng = np.random.default_rng(n + d)
    Q = rng.uniform(-1, 1, (n, d)).astype(dtype)
    keys = [rng.uniform(-1, 1, (n, d)).astype(dtype) for _ in range(order - 1)]
    values = [rng.uniform(-1, 1, (n, d_v)).astype(dtype) for _ in range(order - 1)]
    want = dense_reference(Q.astype(float), [k.astype(float) for k in keys],
                           [v.astype(float) for v in values], causal=causal)
    out, lse = host_gpu_module.kernel_attention(Q, keys, values, 1.0 / d, causal)
    assert out.dtype == dtype and lse.dtype == dtype and out.shape == (n, d_v)
    tolerance = 1e-13 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(out, want, rtol=0, atol=tolerance)
    np.testing.assert_allclose(host_gpu_module.exact_attention(Q, keys, values, 1.0 / d, causal),
                               want, rtol=0, atol=tolerance)
    kernel = (_gpu_source.FUSED_ATTENTION_NAME if max(d, d_v) <= _gpu_source.FUSED_WIDTH
              else _gpu_source.TILED_ATTENTION_NAME)
    assert host_gpu_module.cp.RawKernel.launches == [kernel, kernel]


def test_launcher_without_cuda_headers_warns_and_runs_the_blocked_code(host_gpu_module,
                                                                       dense_reference):
    """A CuPy that cannot compile the tiled kernel (NVRTC without CUDA's mma.h): one warning
    that names the cause, then the GEMM-tiled array code, with the same result."""
    RawKernel.fail_compile = True
    try:
        rng = np.random.default_rng(0)
        Q, K1, K2, V1, V2 = (rng.uniform(-1, 1, (20, 24)) for _ in range(5))
        with pytest.warns(RuntimeWarning, match="mma.h"):
            assert host_gpu_module.kernel_attention(Q, [K1, K2], [V1, V2], 1 / 24, False) is None
        got = host_gpu_module.exact_attention(Q, [K1, K2], [V1, V2], 1 / 24, False)
    finally:
        RawKernel.fail_compile = False
    np.testing.assert_allclose(got, dense_reference(Q, [K1, K2], [V1, V2]), rtol=0, atol=1e-13)


def test_launcher_on_a_device_without_tf32_tensor_cores_runs_the_blocked_code(
        monkeypatch, dense_reference):
    """Compute capability 7.5 (no TF32 or float64 wmma): no tiled kernel is compiled, no
    warning is given, and the GEMM-tiled array code gives the same result."""
    import importlib
    import sys
    import warnings

    from tensor_attention_host_cuda import stand_in_cupy

    import sci.tensor_attention

    monkeypatch.setitem(sys.modules, "cupy", stand_in_cupy(compute_capability="75"))
    sys.modules.pop("sci.tensor_attention._gpu", None)
    vars(sci.tensor_attention).pop("_gpu", None)
    try:
        gpu = importlib.import_module("sci.tensor_attention._gpu")
        rng = np.random.default_rng(1)
        Q, K, V = (rng.uniform(-1, 1, (50, 24)) for _ in range(3))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert gpu.kernel_attention(Q, [K], [V], 1 / 24, True) is None
            got = gpu.exact_attention(Q, [K], [V], 1 / 24, True)
    finally:
        sys.modules.pop("sci.tensor_attention._gpu", None)
        vars(sci.tensor_attention).pop("_gpu", None)
    np.testing.assert_allclose(got, dense_reference(Q, [K], [V], causal=True), rtol=0,
                               atol=1e-13)


def test_the_include_folder_named_is_one_that_holds_crt_mma_h(tmp_path):
    """A pip wheel's include folder with mma.h but no crt/ (CUDA 13 moved it to a package of
    its own) is passed over for one that has crt/mma.h; none found, nothing is added."""
    wheel, toolkit = tmp_path / "wheel" / "include", tmp_path / "toolkit" / "include"
    (wheel).mkdir(parents=True)
    (wheel / "mma.h").write_text("")
    (toolkit / "crt").mkdir(parents=True)
    (toolkit / "crt" / "mma.h").write_text("")
    assert _gpu_source.mma_include_options([wheel, toolkit]) == (f"-I{toolkit}",)
    assert _gpu_source.mma_include_options([wheel]) == ()

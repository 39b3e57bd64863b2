"""The Fourier method's work per call: a few large operations whatever L, constants placed once.

On a GPU every array operation is a kernel launch (~10 us from Python) and every NumPy table
turned into a device array is a synchronous copy, so at small L the time of a product is their
number, not its arithmetic (issue 17: ~2 ms at every L <= 6 on an H200). These tests count
them on the CPU, on the two paths device arrays take:

* ``"array"`` (torch CUDA tensors; here torch CPU, counted as aten operations with a
  ``TorchDispatchMode``, and ``array_api_strict`` on a non-default device);
* ``"cupy"`` (CuPy arrays; here the counting stand-in ``tests/_counting_cupy.py``, NumPy
  underneath).

and check the fused form (``_product.fused_tables``) against the direct contraction.
"""

from __future__ import annotations

import collections
import importlib.util
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sci
from sci.backend import _arrays
from sci.gaunt import _product, gaunt_power, gaunt_tensor_product

# Operations of one product call on the fused path: two matrix products and a pointwise
# product for the factors, one matrix product back, and the one finite check of both inputs
# (isfinite and all per input, stack, all, the read). Independent of L.
MAX_ATEN_OPS = 20
MAX_CUPY_OPS = 12


def _inputs(rng, lmax, batch=1024, dtype=np.float32):
    n = (lmax + 1) ** 2
    return (rng.standard_normal((batch, n)).astype(dtype),
            rng.standard_normal((batch, n)).astype(dtype))


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


class _Uploads:
    """Counts NumPy arrays converted to a non-NumPy namespace (``ArrayContext.asarray``)."""

    def __init__(self, monkeypatch):
        self.count = 0
        original = _arrays.ArrayContext.asarray

        def counted(ctx, x, dtype=None):
            if isinstance(x, np.ndarray) and not ctx.is_numpy:
                self.count += 1
            return original(ctx, x, dtype)

        monkeypatch.setattr(_arrays.ArrayContext, "asarray", counted)


# ------------------------------------------------------------------ the array path (torch)


def _aten_counts(fn):
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    views = {"view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "slice",
             "select", "unsqueeze", "squeeze", "alias", "as_strided", "detach", "lift_fresh",
             "_reshape_alias", "view_as_real", "view_as_complex", "real", "imag", "_conj"}

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count() as count:
        fn()
    kernels = sum(v for k, v in count.ops.items() if k not in views)
    reads = count.ops["_local_scalar_dense"] + count.ops["item"]
    return kernels, reads


def test_torch_fourier_ops_per_call_do_not_grow_with_l(rng, monkeypatch):
    torch = pytest.importorskip("torch")
    uploads = _Uploads(monkeypatch)
    counts = {}
    for lmax in range(1, 9):
        x, y = (torch.asarray(a) for a in _inputs(rng, lmax))
        gaunt_tensor_product(x, y, method="fourier")  # tables built and placed
        before = uploads.count
        kernels, reads = _aten_counts(lambda x=x, y=y: gaunt_tensor_product(x, y,
                                                                            method="fourier"))
        assert uploads.count == before, f"L={lmax}: a constant was copied to the device again"
        assert reads == 1, f"L={lmax}: {reads} reads of device values (the finite check: 1)"
        counts[lmax] = kernels
    assert max(counts.values()) <= MAX_ATEN_OPS, counts
    assert len(set(counts.values())) == 1, f"operations per call vary with L: {counts}"


def test_torch_fourier_without_check_finite_reads_nothing(rng):
    torch = pytest.importorskip("torch")
    x, y = (torch.asarray(a) for a in _inputs(rng, 3, batch=8))
    gaunt_tensor_product(x, y, method="fourier", check_finite=False)
    kernels, reads = _aten_counts(
        lambda: gaunt_tensor_product(x, y, method="fourier", check_finite=False))
    assert reads == 0
    assert kernels <= 4  # two products into the grid, the pointwise product, one back


def test_strict_second_call_places_no_constant(rng, monkeypatch):
    strict = pytest.importorskip("array_api_strict")
    uploads = _Uploads(monkeypatch)
    device = strict.Device("device1")
    for lmax in (1, 4, 8):
        x, y = (strict.asarray(a, device=device) for a in _inputs(rng, lmax, batch=4))
        for basis in ("real", "complex"):
            if basis == "complex":
                x, y = x * (1 + 0.5j), y * (1 - 0.25j)
            gaunt_tensor_product(x, y, method="fourier", basis=basis)
            before = uploads.count
            z = gaunt_tensor_product(x, y, method="fourier", basis=basis)
            assert uploads.count == before, (lmax, basis)
            assert z.device == device


# ------------------------------------------------------- the CuPy path (counting stand-in)


def _cupy_call(cupy, fn):
    cupy.COUNTS.clear()
    fn()
    return dict(cupy.COUNTS)


@pytest.mark.parametrize("basis", ["real", "complex"])
def test_cupy_fourier_ops_per_call_do_not_grow_with_l(counting_cupy, rng, basis):
    cupy = counting_cupy
    counts = {}
    with sci.use_backend("cupy"):
        for lmax in range(1, 9):
            x, y = _inputs(rng, lmax, dtype=np.float64)
            if basis == "complex":
                x, y = x * (1 + 0.5j), y * (1 - 0.25j)
            x, y = cupy.asarray(x), cupy.asarray(y)
            z = gaunt_tensor_product(x, y, method="fourier", basis=basis)  # tables placed
            assert type(z).__module__ == "cupy"
            c = _cupy_call(cupy, lambda x=x, y=y: gaunt_tensor_product(
                x, y, method="fourier", basis=basis))
            assert c.get("h2d", 0) == 0, f"L={lmax}: {c['h2d']} host-to-device copies per call"
            assert c.get("d2h", 0) == 1, f"L={lmax}: the finite check's one read, got {c}"
            counts[lmax] = c["op"]
            with sci.use_backend("numpy"):
                ref = gaunt_tensor_product(x.get(), y.get(), method="direct", basis=basis)
            assert _rel(z.get(), ref) <= 1e-13
    assert max(counts.values()) <= MAX_CUPY_OPS, counts
    assert len(set(counts.values())) == 1, f"operations per call vary with L: {counts}"


def test_cupy_factored_path_uploads_nothing_per_call(counting_cupy, rng, monkeypatch):
    # Above the fused form's size the factored form runs: its gathers read index tables that
    # are device constants too (they were NumPy arrays indexing device arrays: ~10 uploads).
    cupy = counting_cupy
    monkeypatch.setattr(_product, "fused_is_cheaper", lambda *a, **k: False)
    with sci.use_backend("cupy"):
        for lmax in (2, 6):
            x, y = (cupy.asarray(a) for a in _inputs(rng, lmax, batch=16, dtype=np.float64))
            z = gaunt_tensor_product(x, y, method="fourier")
            c = _cupy_call(cupy, lambda x=x, y=y: gaunt_tensor_product(x, y, method="fourier"))
            assert c.get("h2d", 0) == 0, c
            with sci.use_backend("numpy"):
                ref = gaunt_tensor_product(x.get(), y.get(), method="direct")
            assert _rel(z.get(), ref) <= 1e-13


# ---------------------------------------------------------------------- the fused form


def test_fused_choice():
    # the host picks it at small L only (measured: it does up to ~3x the factored flops);
    # a device, launch-bound, for every L up to the table limit at batch 1024
    assert _product.fused_is_cheaper((1, 1), (1, 1), 2, "real", 1024, on_device=False)
    assert not _product.fused_is_cheaper((8, 8), (1, 1), 16, "real", 1024, on_device=False)
    for lmax in range(1, 9):
        assert _product.fused_is_cheaper((lmax, lmax), (1, 1), 2 * lmax, "real", 1024,
                                         on_device=True)
    assert not _product.fused_fits((32, 32), (1, 1), 64)


@pytest.mark.parametrize("basis", ["real", "complex"])
def test_fused_tables_cached_per_dtype(basis):
    a = _product.fused_tables((2, 1), (1, 1), 3, basis)
    assert _product.fused_tables((2, 1), (1, 1), 3, basis) is a
    single = _product.fused_tables((2, 1), (1, 1), 3, basis,
                                   "float32" if basis == "real" else "complex64")
    assert single[1].dtype == (np.float32 if basis == "real" else np.complex64)
    assert not single[1].flags.writeable


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(l1=st.integers(0, 6), l2=st.integers(0, 6), cut=st.integers(0, 12),
       batch=st.integers(1, 5), single=st.booleans(), complex_basis=st.booleans(),
       fused=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fourier_matches_direct_in_both_forms(l1, l2, cut, batch, single, complex_basis, fused,
                                             seed):
    # Oracle: the direct Gaunt contraction in float64. Both forms (fused, factored) are the same
    # exact linear maps; float64: sums of O((L+1)^2) terms, a few hundred ulps; float32: the
    # inputs are rounded the same way, the sums over <= 2500 grid points carry ~1e-6.
    basis = "complex" if complex_basis else "real"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, (l1 + 1) ** 2))
    y = rng.standard_normal((batch, (l2 + 1) ** 2))
    if complex_basis:
        x = x + 1j * rng.standard_normal(x.shape)
        y = y + 1j * rng.standard_normal(y.shape)
    lmax_out = min(cut, l1 + l2)
    if single:
        x = x.astype(np.complex64 if complex_basis else np.float32)
        y = y.astype(np.complex64 if complex_basis else np.float32)
    ref = gaunt_tensor_product(x.astype(np.complex128 if complex_basis else np.float64),
                               y.astype(np.complex128 if complex_basis else np.float64),
                               method="direct", basis=basis, lmax_out=lmax_out)
    original = _product.fused_is_cheaper
    _product.fused_is_cheaper = lambda *a, **k: fused
    try:
        z = gaunt_tensor_product(x, y, method="fourier", basis=basis, lmax_out=lmax_out)
    finally:
        _product.fused_is_cheaper = original
    assert z.dtype == x.dtype
    assert _rel(z, ref) <= (2e-5 if single else 1e-13)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lmax=st.integers(0, 8), batch=st.integers(1, 4), single=st.booleans(),
       leg=st.sampled_from(["torch", "strict"]), seed=st.integers(0, 2**32 - 1))
def test_array_path_fourier_matches_direct(lmax, batch, single, leg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, (lmax + 1) ** 2))
    y = rng.standard_normal((1, (lmax + 1) ** 2))  # broadcast along the batch
    ref = gaunt_tensor_product(x, y, method="direct")
    dtype = np.float32 if single else np.float64
    if leg == "torch":
        torch = pytest.importorskip("torch")
        xs, ys = torch.asarray(x.astype(dtype)), torch.asarray(y.astype(dtype))
    else:
        strict = pytest.importorskip("array_api_strict")
        device = strict.Device("device1")
        xs = strict.asarray(x.astype(dtype), device=device)
        ys = strict.asarray(y.astype(dtype), device=device)
    z = sci.backend.to_numpy(gaunt_tensor_product(xs, ys, method="fourier"))
    assert z.dtype == dtype
    assert _rel(z, ref) <= (2e-5 if single else 1e-13)


@pytest.mark.parametrize("nu", [2, 3])
def test_fused_power_matches_direct(rng, nu):
    x = rng.standard_normal((3, 9))
    fused = gaunt_power(x, nu, method="fourier")
    assert _product.fused_is_cheaper((2,), (nu,), 2 * nu, "real", 3, on_device=False)
    assert _rel(fused, gaunt_power(x, nu, method="direct")) <= 1e-13


def test_torch_fused_gradient_matches_direct(rng):
    torch = pytest.importorskip("torch")
    x = torch.asarray(rng.standard_normal((2, 9)), requires_grad=True)
    y = torch.asarray(rng.standard_normal((2, 4)))
    gaunt_tensor_product(x, y, method="fourier").square().sum().backward()
    g_fourier = x.grad.clone()
    x.grad = None
    gaunt_tensor_product(x, y, method="direct").square().sum().backward()
    assert _rel(g_fourier.numpy(), x.grad.numpy()) <= 1e-13


def test_cupy_direct_tables_go_to_the_device_once(counting_cupy):
    """The direct method's kernel reads the Gaunt table's index and value arrays: each host
    array is copied to the device once (the tables are cached on the host), not per call, and
    the copy is dropped with its host array."""
    import gc

    cupy = counting_cupy
    import sci.gaunt

    previous = sys.modules.pop("sci.gaunt._gpu", None)  # imported anew against the stand-in
    attribute = sci.gaunt.__dict__.pop("_gpu", None)
    try:
        _check_device_copies(cupy, importlib.import_module("sci.gaunt._gpu"), gc)
    finally:  # never leave the stand-in's kernels module behind for a real CuPy
        sys.modules.pop("sci.gaunt._gpu", None)
        sci.gaunt.__dict__.pop("_gpu", None)
        if previous is not None:
            sys.modules["sci.gaunt._gpu"] = previous
        if attribute is not None:
            sci.gaunt._gpu = attribute


def _check_device_copies(cupy, _gpu, gc):
    host = np.arange(10, dtype=np.int64)
    cupy.COUNTS.clear()
    first, again = _gpu._device_copy(host), _gpu._device_copy(host)
    assert again is first and cupy.COUNTS.get("h2d", 0) == 1
    values = _gpu._device_copy(host, cupy.float64)  # another dtype: another copy
    assert values.dtype == np.float64 and values is not first
    assert len(_gpu._DEVICE_COPIES) >= 2
    del host
    gc.collect()
    assert not any(v is first for v in _gpu._DEVICE_COPIES.values())

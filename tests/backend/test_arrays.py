"""The namespace comes from the inputs (issue 13): array_context, to_numpy, cached constants."""

from __future__ import annotations

import array_api_strict as strict
import numpy as np
import pytest

import sci
from sci.backend import (
    ArrayContext,
    array_context,
    asarray,
    cached_constant,
    implementation,
    register,
    switch_context,
    to_numpy,
)

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason=(
    "torch is not installed (the test extra installs it on Python 3.11 only: PyPI's "
    "Linux torch wheels for 3.12+ are 5 GB CUDA builds); pip install torch to run it"))

DEVICE1 = strict.Device("device1")


def test_numpy_lists_and_scalars_follow_the_switch():
    for name in ("numpy", "numba"):
        with sci.use_backend(name):
            ctx = array_context(np.ones(3), [1.0, 2.0], 3.0, None, names=("a", "b", "c", "d"))
            assert ctx.is_numpy and ctx.backend == name and ctx.device == "cpu"
            assert ctx == switch_context()


@needs_torch
def test_arrays_of_a_library_give_that_library_and_device():
    x = strict.ones(3, device=DEVICE1)
    ctx = array_context(x, [1.0], 2.0, names=("x", "y", "z"))
    assert ctx.library == "array_api_strict" and ctx.device == DEVICE1 and ctx.backend == "array"
    y = ctx.asarray([1.0, 2.0])  # an array-like follows the arrays: onto device1
    assert y.device == DEVICE1
    t = array_context(torch.ones(2, dtype=torch.float64))
    assert t.library == "torch" and str(t.device) == "cpu" and t.backend == "array"


@needs_torch
def test_two_libraries_are_refused_naming_the_arguments():
    with pytest.raises(TypeError, match=r"x and w are arrays of different libraries: "
                                        r"x \(numpy.ndarray on cpu\), w \(torch.Tensor on cpu\)"):
        array_context(np.ones(2), [1.0], torch.ones(2), names=("x", "y", "w"))
    with pytest.raises(TypeError, match=r"a and b are arrays of different libraries.*torch.*"
                                        r"array_api_strict"):
        array_context(torch.ones(2), strict.ones(2), names=("a", "b"))


def test_two_devices_are_refused_naming_the_arguments():
    with pytest.raises(TypeError, match=r"H and W are on different devices: H \(.*device1.*\), "
                                        r"W \(.*CPU_DEVICE.*\)"):
        array_context(strict.ones(2, device=DEVICE1), strict.ones(2), names=("H", "W"))


def test_non_arrays_are_refused():
    with pytest.raises(TypeError, match="x must be an array"):
        array_context(object(), names=("x",))


@needs_torch
def test_to_numpy_from_every_library():
    np.testing.assert_array_equal(to_numpy(strict.asarray([1.0, 2.0], device=DEVICE1)), [1, 2])
    t = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    np.testing.assert_array_equal(to_numpy(t * 2), [2.0, 4.0])
    c = torch.tensor([1 + 2j]).conj()  # a lazily conjugated view is resolved
    np.testing.assert_array_equal(to_numpy(c), [1 - 2j])
    a = np.ones(2)
    assert to_numpy(a) is a


@needs_torch
def test_old_asarray_refuses_foreign_arrays_instead_of_copying_them():
    with sci.use_backend("numpy"):
        with pytest.raises(TypeError, match=r"H is a torch.Tensor on cpu, which this function "
                                            r"does not take yet.*to_numpy"):
            asarray(torch.ones(2), name="H")
        with pytest.raises(TypeError, match=r"array_api_strict.*to_numpy"):
            asarray(strict.ones(2, device=DEVICE1), name="H")


def test_array_key_dispatches_to_array_code_only():
    register("test.arrays_only", "numpy", lambda: "numpy")
    register("test.arrays_only", "array", lambda: "array")
    assert implementation("test.arrays_only", "array")() == "array"
    assert implementation("test.arrays_only", "numba")() == "numpy"
    register("test.numpy_only", "numpy", lambda: "numpy")
    with pytest.raises(NotImplementedError, match="no implementation for backend 'array'"):
        implementation("test.numpy_only", "array")


def test_constants_are_converted_once_per_namespace_device_and_dtype():
    calls = []

    def build():
        calls.append(1)
        return np.arange(3.0)

    ctx = ArrayContext(strict, DEVICE1, "array")
    a = cached_constant(("test.constant", 3), build, ctx, strict.float32)
    b = cached_constant(("test.constant", 3), build, ctx, strict.float32)
    assert a is b and len(calls) == 1
    assert a.device == DEVICE1 and a.dtype == strict.float32
    c = cached_constant(("test.constant", 3), build, ctx, strict.float64)
    d = cached_constant(("test.constant", 3), build, ArrayContext(strict, strict.Device(), "array"))
    assert len(calls) == 3 and c.dtype == strict.float64 and d.device != DEVICE1


def test_functions_without_array_input_take_xp_and_device(xp):
    from sci.chebyshev_tucker import chebyshev_points
    from sci.gaunt import random_rotation
    from sci.neural_collapse import orthogonal_frame, simplex_etf

    r = random_rotation(rng=0, xp=xp.namespace, device=xp.device)
    assert xp.is_leg_array(r) and r.dtype == xp.float64
    host = to_numpy(r)
    np.testing.assert_allclose(host @ host.T, np.eye(3), atol=1e-14)
    np.testing.assert_array_equal(host, random_rotation(rng=0))  # the same draw
    m = simplex_etf(4, 5, rng=1, xp=xp.namespace, device=xp.device)
    assert xp.is_leg_array(m) and tuple(m.shape) == (4, 5)
    gram = to_numpy(m) @ to_numpy(m).T
    np.testing.assert_allclose(gram, (4 * np.eye(4) - 1) / 3, atol=1e-14)
    assert xp.is_leg_array(orthogonal_frame(2, 3, xp=xp.namespace, device=xp.device))
    c = chebyshev_points(3, dtype=np.float32, xp=xp.namespace, device=xp.device)
    assert xp.is_leg_array(c) and c.dtype == xp.float32
    assert to_numpy(c).tolist() == [-1.0, 0.0, 1.0]


@needs_torch
def test_creation_context_refuses_bad_requests():
    from sci.backend import creation_context

    with sci.use_backend("numpy"):
        assert creation_context().is_numpy
        with pytest.raises(ValueError, match="device='cuda:0' needs a device library"):
            creation_context(device="cuda:0")
        with pytest.raises(ValueError, match="NumPy arrays live on 'cpu'"):
            creation_context(np, device="cuda:0")
    with pytest.raises(TypeError, match="xp must be an array library module"):
        creation_context("torch")


def test_dask_arrays_are_refused_where_they_are_not_taken():
    da = pytest.importorskip("dask.array")
    from sci.gaunt import gaunt_tensor_product

    with pytest.raises(TypeError, match=r"x is a Dask array, which this function does not take"):
        gaunt_tensor_product(da.ones(4), np.ones(4))


@needs_torch
def test_host_values_reach_torch_in_float64_and_keep_their_shape():
    # torch's default dtype is float32: a Python float or list must not pass through it
    ctx = array_context(torch.ones(2, dtype=torch.float64))
    for value in (0.2**0.5, [0.2**0.5], np.float64(0.2**0.5), np.array(0.2**0.5)):
        got = ctx.asarray(value)
        assert got.dtype == torch.float64, value
        assert float(got.reshape(-1)[0]) == 0.2**0.5
        assert tuple(got.shape) == np.shape(value)
    source = np.ones(3)
    copy = ctx.asarray(source)
    copy[0] = 5.0
    assert source[0] == 1.0  # a copy, not a view of the caller's buffer

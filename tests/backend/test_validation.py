"""The shared argument checks give errors that name the argument and never mutate input."""

from __future__ import annotations

import numpy as np
import pytest

from sci._validation import (
    MemoryLimitError,
    as_complex_array,
    as_float_array,
    as_int_array,
    check_dask_rows,
    check_integer,
    check_memory,
    check_real,
    chunk_length,
    format_bytes,
    memory_limit,
    resolve_dtype,
    resolve_rng,
)


def test_as_float_array_promotes_and_keeps_float32():
    assert as_float_array([1, 2], "x").dtype == np.float64
    assert as_float_array(np.ones(2, np.float32), "x").dtype == np.float32
    assert as_float_array(np.ones(2, np.float32), "x", dtype=np.float64).dtype == np.float64
    assert as_float_array([True, False], "x").dtype == np.float64


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([1.0, np.nan], ValueError, "x must be finite"),
        ([np.inf], ValueError, "x must be finite"),
        ([1j], TypeError, "x must be real"),
        (["a"], TypeError, "array of real numbers"),
        ("abc", TypeError, "real array_like"),
    ],
)
def test_as_float_array_refuses(value, error, match):
    with pytest.raises(error, match=match):
        as_float_array(value, "x")


def test_as_float_array_checks_ndim_and_copies():
    with pytest.raises(ValueError, match=r"x must have 2 dimension\(s\); got shape \(3,\)"):
        as_float_array(np.zeros(3), "x", ndim=2)
    original = np.zeros(3)
    copy = as_float_array(original, "x", copy=True)
    copy[0] = 1.0
    assert original[0] == 0.0


def test_dtype_resolution():
    assert resolve_dtype(None) == np.float64
    assert resolve_dtype("float32") == np.float32
    with pytest.raises(TypeError, match="dtype must be float32 or float64; got int64"):
        resolve_dtype(np.int64)


def test_integer_and_real_checks():
    assert check_integer(np.int64(3), "degree", minimum=0) == 3
    with pytest.raises(TypeError, match="degree must be an integer; got float"):
        check_integer(3.0, "degree")
    with pytest.raises(TypeError, match="degree must be an integer; got bool"):
        check_integer(True, "degree")
    with pytest.raises(ValueError, match="degree must be >= 0; got -1"):
        check_integer(-1, "degree", minimum=0)
    assert check_real(2, "tol", low=0, low_inclusive=False) == 2.0
    with pytest.raises(ValueError, match="tol must be > 0"):
        check_real(0.0, "tol", low=0, low_inclusive=False)
    with pytest.raises(ValueError, match="tol must be finite"):
        check_real(float("nan"), "tol")
    with pytest.raises(ValueError, match="tol must be <= 1"):
        check_real(2.0, "tol", high=1)


def test_int_arrays():
    np.testing.assert_array_equal(as_int_array([1.0, 2.0], "l"), [1, 2])
    with pytest.raises(TypeError, match="l must be integers"):
        as_int_array([1.5], "l")
    with pytest.raises(ValueError, match="l must be >= 0"):
        as_int_array([-1], "l", minimum=0)


def test_rng():
    assert isinstance(resolve_rng(None), np.random.Generator)
    a, b = resolve_rng(5).random(3), resolve_rng(5).random(3)
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(1)
    assert resolve_rng(g) is g
    with pytest.raises(TypeError, match="rng must be None, an int seed"):
        resolve_rng("seed")


def test_memory_refusal_states_the_figure(monkeypatch):
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    assert memory_limit() == 2**20
    message = r"the table would need 2\.0 MiB, more than .*1\.0 MiB"
    with pytest.raises(MemoryLimitError, match=message):
        check_memory(2 * 2**20, "the table", hint="use a smaller lmax")
    check_memory(2**19, "a small table")
    assert issubclass(MemoryLimitError, ValueError) and issubclass(MemoryLimitError, MemoryError)
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="SCI_MEMORY_LIMIT"):
        memory_limit()
    assert format_bytes(1536) == "1.5 KiB"


def test_finiteness_check_of_broadcast_views_is_cheap_and_correct():
    huge = np.broadcast_to(np.array([1.0, 2.0]), (10**9, 2))  # 16 GB if materialised
    assert as_float_array(huge, "x").shape == (10**9, 2)
    bad = np.broadcast_to(np.array([1.0, np.nan]), (10**9, 2))
    with pytest.raises(ValueError, match="x must be finite"):
        as_float_array(bad, "x")


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (1023.96 * 2**20, "1.0 GiB"),  # rounds up to the next unit, not "1024.0 MiB"
        (5 * 2**60, "5.0 EiB"),
        (2**70, "1.2e+21 B"),  # beyond EiB: plain bytes in scientific notation
        (3.9e34 * 2**50, "4.4e+49 B"),  # once printed as "3.9e34 PiB"
    ],
)
def test_format_bytes_readable_at_every_size(nbytes, text):
    assert format_bytes(nbytes) == text


def test_memory_error_for_absurd_size_is_readable():
    with pytest.raises(MemoryLimitError, match=r"would need 4\.4e\+49 B, more than"):
        check_memory(3.9e34 * 2**50, "the table")
def test_float16_is_refused_not_upcast():
    # issue 15: float16 was silently upcast to float64; it is refused, naming what is accepted
    with pytest.raises(TypeError, match=r"x has dtype float16.*accepted: float32 or float64"):
        as_float_array(np.ones(3, np.float16), "x")
    with pytest.raises(TypeError, match=r"float16.*accepted: float32 or float64"):
        resolve_dtype(None, like=np.ones(3, np.float16))
    with pytest.raises(TypeError, match=r"y has dtype float16"):
        as_complex_array(np.ones(3, np.float16), "y")


def test_validation_in_another_namespace_and_device():
    import array_api_strict as strict

    from sci.backend import array_context

    x = strict.asarray([1, 2], device=strict.Device("device1"))
    ctx = array_context(x)
    got = as_float_array(x, "x", ctx=ctx)
    assert got.dtype == strict.float64 and got.device == x.device
    c = as_complex_array(strict.astype(x, strict.float32), "x", ctx=ctx)
    assert c.dtype == strict.complex64 and c.device == x.device
    with pytest.raises(ValueError, match="x must be finite"):
        as_float_array(strict.asarray([1.0, strict.nan], device=x.device), "x", ctx=ctx)
    # check_finite=False skips the reduction (and its synchronisation on a GPU)
    as_float_array(strict.asarray([strict.nan], device=x.device), "x", ctx=ctx, check_finite=False)
    with pytest.raises(TypeError, match="x must be real"):
        as_float_array(strict.asarray([1j], device=x.device), "x", ctx=ctx)
    with pytest.raises(ValueError, match=r"x must have 2 dimension\(s\)"):
        as_float_array(x, "x", ctx=ctx, ndim=2)


def test_as_complex_array_promotes_and_checks():
    assert as_complex_array([1, 2], "x").dtype == np.complex128
    assert as_complex_array(np.ones(2, np.float32), "x").dtype == np.complex64
    with pytest.raises(ValueError, match="x must be finite"):
        as_complex_array([1j * np.inf], "x")
    with pytest.raises(TypeError, match="x must be numeric"):
        as_complex_array(np.array(["a"]), "x")


def test_chunk_length():
    assert chunk_length(1000, 8.0, budget=800.0) == 100
    assert chunk_length(1000, 8.0, budget=800.0, max_items=30) == 30
    assert chunk_length(50, 8.0, budget=800.0) == 50
    assert chunk_length(10, 1e12, budget=1.0) == 1
    assert chunk_length(10_000, 8.0, budget=80.0, minimum=256) == 256


def test_check_dask_rows():
    da = pytest.importorskip("dask.array")
    x = da.ones((10, 3), chunks=(4, 2))
    out = check_dask_rows(x, "points", ndim=2, columns=3, shape="(M, 3)")
    assert out.chunks == ((4, 4, 2), (3,))
    with pytest.raises(ValueError, match=r"points must have shape \(M, 3\); got \(10, 2\)"):
        check_dask_rows(da.ones((10, 2)), "points", ndim=2, columns=3, shape="(M, 3)")
    with pytest.raises(TypeError, match="points must be an array of real numbers"):
        check_dask_rows(da.ones((10, 3), dtype=complex), "points", ndim=2, columns=3)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        check_dask_rows(x[x[:, 0] > 0], "points", ndim=2, columns=3)
    wrapped = check_dask_rows(np.ones((5, 3)), "points", ndim=2, columns=3,
                              host=lambda v: as_float_array(v, "points", ndim=2))
    assert wrapped.chunks == ((5,), (3,))


def test_memory_limit_of_device_arrays_is_the_device_free_memory(monkeypatch):
    # Where arrays live on a GPU the limit is that device's free memory, not host RAM. No
    # GPU here: a stand-in torch CUDA device answers mem_get_info as the real one would.
    import types

    torch = pytest.importorskip("torch")

    from sci.backend import ArrayContext

    monkeypatch.delenv("SCI_MEMORY_LIMIT", raising=False)
    calls = []

    def mem_get_info(device):
        calls.append(device)
        return 3 * 2**20, 80 * 2**30

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    ctx = ArrayContext(types.SimpleNamespace(__name__="array_api_compat.torch"),
                       torch.device("cuda", 1), "array")
    assert memory_limit(ctx) == 3 * 2**20 and calls == [torch.device("cuda", 1)]
    with pytest.raises(MemoryLimitError, match=r"more than the limit of 3\.0 MiB"):
        check_memory(4 * 2**20, "a table", ctx=ctx)
    # CPU tensors and host arrays keep the host limit
    cpu = ArrayContext(types.SimpleNamespace(__name__="array_api_compat.torch"),
                       torch.device("cpu"), "array")
    assert memory_limit(cpu) == memory_limit() > 3 * 2**20
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")  # the variable still decides when set
    assert memory_limit(ctx) == 2**20

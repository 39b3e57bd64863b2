"""The backend switch: defaults, errors, context handling across threads and tasks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import sci
from sci.backend import BACKENDS, BackendNotAvailableError, _switch, asarray, to_numpy


def test_numpy_always_available():
    assert "numpy" in sci.available_backends()
    assert set(sci.available_backends()) <= set(BACKENDS)


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown backend 'torch'.*'numpy', 'numba', 'cupy'"):
        sci.set_backend("torch")
    with pytest.raises(ValueError, match="unknown backend"):
        with sci.use_backend("jax"):
            pass


def test_backend_name_must_be_a_string():
    with pytest.raises(TypeError, match="must be a str"):
        sci.set_backend(3)


def test_name_is_normalised():
    with sci.use_backend(" NumPy ") as name:
        assert name == "numpy" == sci.get_backend()


@pytest.mark.skipif("cupy" in sci.available_backends(), reason="a CUDA device is present")
def test_unavailable_cupy_says_what_is_missing():
    with pytest.raises(BackendNotAvailableError, match=r"'cupy' is not available: .*(CuPy|CUDA)"):
        sci.set_backend("cupy")
    # The default is untouched by the failed call.
    assert sci.get_backend() in sci.available_backends()


def test_use_backend_nests_and_restores():
    outer = sci.get_backend()
    with sci.use_backend("numpy"):
        assert sci.get_backend() == "numpy"
        for inner in sci.available_backends():
            with sci.use_backend(inner):
                assert sci.get_backend() == inner
            assert sci.get_backend() == "numpy"
    assert sci.get_backend() == outer


def test_use_backend_restores_after_exception():
    outer = sci.get_backend()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with sci.use_backend("numpy"):
            raise Boom
    assert sci.get_backend() == outer


def test_set_backend_changes_default_but_not_an_active_context():
    previous = sci.get_backend()
    try:
        with sci.use_backend("numpy"):
            sci.set_backend(sci.available_backends()[-1])
            assert sci.get_backend() == "numpy"
        assert sci.get_backend() == sci.available_backends()[-1]
    finally:
        sci.set_backend(previous)


def test_use_backend_is_thread_local():
    """Threads inside their own `use_backend` never see each other's choice."""
    names = list(sci.available_backends())
    barrier = threading.Barrier(8)
    errors: list[str] = []

    def worker(i: int) -> None:
        name = names[i % len(names)]
        with sci.use_backend(name):
            barrier.wait()  # every thread is inside its block at the same time
            for _ in range(200):
                if sci.get_backend() != name:
                    errors.append(f"thread {i} saw {sci.get_backend()} instead of {name}")
                    return
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_use_backend_is_task_local():
    names = list(sci.available_backends())

    async def task(name: str) -> bool:
        with sci.use_backend(name):
            await asyncio.sleep(0)
            ok = sci.get_backend() == name
            await asyncio.sleep(0)
            return ok and sci.get_backend() == name

    async def main():
        return await asyncio.gather(*(task(names[i % len(names)]) for i in range(10)))

    assert all(asyncio.run(main()))


def _import_default(env_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SCI_BACKEND"}
    if env_value is not None:
        env["SCI_BACKEND"] = env_value
    return subprocess.run(
        [sys.executable, "-c", "import sci; print(sci.get_backend())"],
        capture_output=True, text=True, env=env, check=False,
    )


def test_environment_variable_sets_the_default():
    result = _import_default("numpy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy"


def test_bad_environment_variable_warns_and_falls_back():
    # a setting in the environment must not break `import sci` (issue 15): a warning that
    # names the variable and the accepted values, and the CPU default
    result = _import_default("fortran")
    assert result.returncode == 0, result.stderr
    assert "SCI_BACKEND" in result.stderr and "unknown backend 'fortran'" in result.stderr
    assert "'numpy', 'numba', 'cupy'" in result.stderr and "RuntimeWarning" in result.stderr
    expected = "numba" if "numba" in sci.available_backends() else "numpy"
    assert result.stdout.strip() == expected


@pytest.mark.skipif("cupy" in sci.available_backends(), reason="a CUDA device is present")
def test_cupy_environment_variable_without_a_device_warns_and_falls_back():
    result = _import_default("cupy")
    assert result.returncode == 0, result.stderr
    assert "SCI_BACKEND='cupy' is ignored" in result.stderr
    assert "backend 'cupy' is not available" in result.stderr
    assert result.stdout.strip() in ("numpy", "numba")


def test_default_prefers_numba_when_installed():
    result = _import_default(None)
    expected = "numba" if "numba" in sci.available_backends() else "numpy"
    assert result.stdout.strip() == expected


def test_import_sci_does_not_import_cupy_numba_or_torch():
    # every subpackage, and the first NumPy call (the fast path needs no array_api_compat)
    code = ("import sys, numpy as np, sci, sci.gaunt, sci.tensor_attention, sci.neural_collapse, "
            "sci.chebyshev_tucker, sci.generalization\n"
            "with sci.use_backend('numpy'):\n"
            "    sci.gaunt.gaunt_tensor_product(np.ones(4), np.ones(4))\n"
            "print(*(m in sys.modules for m in ('cupy', 'numba', 'torch', 'array_api_strict')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False", "False"]


class FakeCupyArray:
    """Stands in for a cupy.ndarray: only its module name matters to the check."""

    __module__ = "cupy._core.core"


def test_cupy_array_on_cpu_backend_is_refused():
    for name in ("numpy", "numba"):
        if name not in sci.available_backends():
            continue
        with sci.use_backend(name):
            with pytest.raises(TypeError, match=r"CuPy \(GPU\) array.*use_backend\('cupy'\)"):
                asarray(FakeCupyArray(), name="lam")


def test_asarray_moves_to_the_backend_and_to_numpy_back(backend, backend_xp):
    x = [1.0, 2.0]
    arr = asarray(x)
    assert isinstance(arr, backend_xp.ndarray)
    host = to_numpy(arr)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, x)


def test_probe_is_cached():
    assert _switch._unavailable_reason.cache_info().currsize >= 1

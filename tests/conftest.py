"""Shared fixtures: hypothesis profiles, backends, the ``gpu`` marker, shared data."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import sci
from sci.datasets import DataUnavailableError, fetch

# `ci`: derandomised and without deadlines (shared 2-core machines, JIT warm-up) so a run is
# reproducible; `dev`: random exploration with more examples.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=25, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


CPU_BACKENDS = [b for b in ("numpy", "numba") if b in sci.available_backends()]


def _backend_params():
    params = [pytest.param(b, id=b) for b in CPU_BACKENDS]
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    return params


def pytest_collection_modifyitems(config, items):
    if "cupy" in sci.available_backends():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(params=_backend_params())
def backend(request):
    """Each backend in turn, active for the test (cupy only where a CUDA device exists)."""
    with sci.use_backend(request.param):
        yield request.param


@pytest.fixture
def backend_xp(backend):
    """The switch's array module (numpy or cupy) for the active backend: for the tests of
    subpackages not yet on the array API (their functions take NumPy/CuPy only)."""
    return sci.backend.array_namespace(backend)


class ArrayLeg:
    """One leg of the ``xp`` fixture: an array namespace, a device and the switch it runs under.

    It answers every attribute of the namespace (``xp.float32``, ``xp.sum``, ...); its
    :meth:`asarray` places data on the leg's device, so a test written as
    ``f(xp.asarray(data))`` runs on that device, and ``to_numpy`` brings results back.
    """

    def __init__(self, name, namespace, device, backend):
        self.name, self.namespace, self.device, self.backend = name, namespace, device, backend

    def __getattr__(self, attribute):
        return getattr(self.namespace, attribute)

    def __repr__(self):
        return f"<xp leg {self.name}: {self.namespace.__name__} on {self.device}>"

    @property
    def is_numpy(self):
        return self.name in ("numpy", "numba")

    def asarray(self, x, dtype=None):
        """``x`` (NumPy data, a list) as an array of this leg, on its device."""
        if self.is_numpy:
            return np.asarray(x, dtype=dtype)
        if isinstance(dtype, str):
            dtype = getattr(self.namespace, dtype)
        if self.name == "torch":
            x = np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x
        return self.namespace.asarray(x, dtype=dtype, device=self.device)

    def to_numpy(self, x):
        return sci.backend.to_numpy(x)

    def is_leg_array(self, x) -> bool:
        """True when ``x`` is an array of this leg's library, on its device."""
        if self.is_numpy:
            return isinstance(x, np.ndarray)
        import array_api_compat

        return (array_api_compat.array_namespace(x).__name__ == self.namespace.__name__
                and array_api_compat.device(x) == self.device)


def _leg(name):
    import array_api_compat

    if name in ("numpy", "numba"):
        return ArrayLeg(name, np, "cpu", name)
    if name == "strict":
        import array_api_strict

        # a non-default device: any host constant mixed in, any implicit conversion to
        # NumPy, fails here as it does on a GPU (the CPU sessions' check of GPU discipline)
        return ArrayLeg(name, array_api_strict, array_api_strict.Device("device1"), "numpy")
    if name == "torch":
        try:
            import torch
        except ImportError:
            pytest.skip("torch is not installed (the test extra installs it on Python 3.11 only: "
                        "PyPI's Linux torch wheels for 3.12+ are 5 GB CUDA builds); pip install "
                        "torch to run the torch leg")

        return ArrayLeg(name, array_api_compat.array_namespace(torch.zeros(0)),
                        torch.device("cpu"), "numpy")
    if name == "cupy":
        import cupy

        return ArrayLeg(name, array_api_compat.array_namespace(cupy.zeros(0)), cupy.cuda.Device(),
                        "cupy")
    raise AssertionError(name)


def _xp_params():
    params = [pytest.param(b, id=b) for b in CPU_BACKENDS]
    params.append(pytest.param("strict", id="strict"))
    params.append(pytest.param("torch", id="torch"))
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    return params


@pytest.fixture(params=_xp_params())
def xp(request):
    """Each array library in turn: numpy and numba (NumPy arrays under that switch),
    array_api_strict on a non-default device, torch (CPU), cupy (``gpu``: a CUDA device only).

    Yields an :class:`ArrayLeg`; build inputs with ``xp.asarray(...)``.
    """
    leg = _leg(request.param)
    with sci.use_backend(leg.backend):
        yield leg


@pytest.fixture
def to_numpy():
    return sci.backend.to_numpy


@pytest.fixture(scope="session")
def dataset() -> Callable[[str], Path]:
    """``dataset(name)``: the path of a :mod:`sci.datasets` registry file (a local copy,
    ``SCI_DATA_DIR`` or ``../shared/data`` beside the checkout, else the download cache or a
    download); skips the calling test, with the reason, where the file cannot be had."""

    def get(name: str) -> Path:
        try:
            return fetch(name)
        except DataUnavailableError as exc:
            pytest.skip(f"data unavailable: {exc}")

    return get


@pytest.fixture(scope="session")
def figure_cache() -> Path | None:
    """Where quick figures computed by tests are cached: ``SCI_FIGURES_CACHE`` if set (CI sets
    a fresh folder so the docs build reuses them), else nowhere (always recompute)."""
    path = os.environ.get("SCI_FIGURES_CACHE")
    return Path(path) if path else None


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


@pytest.fixture
def torch_ops():
    """A context manager counting the torch operators (aten ops) run inside it.

    ``with torch_ops() as ops: ...`` leaves in ``ops`` a ``collections.Counter`` of operator
    names: on a GPU each is (at least) one kernel launch, so a count that does not grow with
    the trials or the steps is what the batching promises (``ops.launches()``: the count
    without the operators that only make views, which launch nothing). ``_local_scalar_dense``
    is a read of a device value by the host (``float()``, ``bool()``, ``.item()``): a
    synchronisation.
    """
    pytest.importorskip("torch")
    from collections import Counter
    from contextlib import contextmanager

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    views = {"view", "_unsafe_view", "unsqueeze", "squeeze", "expand", "select", "slice",
             "permute", "transpose", "t", "detach", "alias", "as_strided", "lift_fresh",
             "_reshape_alias", "unbind", "split", "diagonal"}

    class Operators(Counter):
        dtypes: dict  # operator name -> the dtypes of its first tensor argument

        def launches(self):
            return sum(n for name, n in self.items() if name not in views)

    class Counting(TorchDispatchMode):
        def __init__(self, counter):
            super().__init__()
            self.counter = counter

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            self.counter[name] += 1
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if first is not None:
                self.counter.dtypes.setdefault(name, set()).add(str(first.dtype))
            return func(*args, **(kwargs or {}))

    @contextmanager
    def counting():
        counter = Operators()
        counter.dtypes = {}
        with Counting(counter):
            yield counter

    return counting


@pytest.fixture
def counting_cupy(monkeypatch):
    """``cupy`` replaced, for one test, by the counting stand-in; everything it left behind
    (modules, cached constants of its namespace) removed afterwards."""
    from sci.backend import _arrays, _switch

    path = Path(__file__).with_name("_counting_cupy.py")
    before = set(sys.modules)
    for name in [m for m in sys.modules if m == "cupy" or m.startswith("cupy.")]:
        monkeypatch.delitem(sys.modules, name)
    spec = importlib.util.spec_from_file_location("cupy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["cupy"] = module
    sys.modules.update(module.submodules())
    real = _switch._unavailable_reason
    monkeypatch.setattr(_switch, "_unavailable_reason",
                        lambda name: None if name == "cupy" else real(name))
    try:
        yield module
    finally:
        for name in set(sys.modules) - before:
            if name.split(".")[0] == "cupy" or name.startswith("array_api_compat.cupy"):
                del sys.modules[name]
        with _arrays._constants_lock:
            for key in [k for k in _arrays._constants if "cupy" in k[1]]:
                del _arrays._constants[key]

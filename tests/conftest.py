"""Shared fixtures: hypothesis profiles, backends, the ``gpu`` marker, shared data."""

from __future__ import annotations

import os
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
def xp(backend):
    """The array namespace of the active backend."""
    return sci.backend.array_namespace(backend)


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

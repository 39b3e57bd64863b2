"""Root conftest: doctest collection of ``sci`` and ``theory`` without touching CUDA."""

import importlib.util

import sci

# GPU kernel modules import CuPy at module level; collecting their doctests without a CUDA
# device would fail on import, so they are collected only where the cupy backend runs.
collect_ignore_glob = ["docs/*", "figures/*", "benchmarks/*"]
if "cupy" not in sci.available_backends():
    collect_ignore_glob.append("sci/*/_gpu.py")
if importlib.util.find_spec("numba") is None:
    collect_ignore_glob.append("sci/*/_cpu.py")
# torch is installed by the test extra on Python 3.11 only (tests/conftest.py says why): without
# it, the torch Functions' module is not collected, and the docstring examples that show torch
# tensors are skipped with that reason (the same examples run on the 3.11 leg).
_HAVE_TORCH = importlib.util.find_spec("torch") is not None
if not _HAVE_TORCH:
    collect_ignore_glob.append("sci/*/_torch.py")


def pytest_collection_modifyitems(config, items):
    if _HAVE_TORCH:
        return
    import pytest

    skip = pytest.mark.skip(reason="the example uses torch, which is not installed (the test "
                            "extra installs it on Python 3.11 only)")
    for item in items:
        dtest = getattr(item, "dtest", None)  # a doctest item
        if dtest is not None and any("import torch" in ex.source for ex in dtest.examples):
            item.add_marker(skip)

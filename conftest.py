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

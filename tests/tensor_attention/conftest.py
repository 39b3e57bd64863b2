"""Fixtures of the tensor_attention tests: an independent dense reference, and the GPU
kernels' text run on the host (``_host_cuda.py``)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# The host stand-ins for CUDA and CuPy, importable by the test modules of this folder as
# ``tensor_attention_host_cuda`` (tests/ is no package; the file is loaded by its path).
_spec = importlib.util.spec_from_file_location("tensor_attention_host_cuda",
                                               Path(__file__).with_name("_host_cuda.py"))
host_cuda = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = host_cuda
_spec.loader.exec_module(host_cuda)


def dense_attention(Q, keys, values, *, scale=None, causal=False, weight=None):
    """Att = D^{-1} A (V1 ⊘ ... ) with A formed explicitly (max-shifted exp, or ``weight``)."""
    Q = np.asarray(Q, float)
    n, d = Q.shape
    m = len(keys[0])
    s = 1.0 / d if scale is None else scale
    tuples = list(itertools.product(range(m), repeat=len(keys)))

    def khatri_rao(arrays):
        return np.array(
            [np.prod([X[j] for X, j in zip(arrays, J, strict=True)], axis=0) for J in tuples]
        )

    khatri_rao_k, khatri_rao_v = khatri_rao(keys), khatri_rao(values)
    logits = s * Q @ khatri_rao_k.T
    future = np.array([max(J) for J in tuples])[None, :] > np.arange(n)[:, None]
    if weight is None:
        # shift by the largest logit a query may attend to: a larger future one would make
        # every allowed weight underflow to 0 (and the row 0/0)
        allowed = np.where(future, -np.inf, logits) if causal else logits
        A = np.exp(allowed - allowed.max(axis=1, keepdims=True))
    else:
        A = weight(logits)
    if causal:
        A = np.where(future, 0.0, A)
    return (A @ khatri_rao_v) / A.sum(axis=1, keepdims=True)


@pytest.fixture(scope="session")
def dense_reference():
    """The naive dense attention (every tuple formed), an oracle independent of sci."""
    return dense_attention


@pytest.fixture(scope="session")
def retained_numbers():
    """Counts the numbers an autograd graph keeps for the backward (torch tests only): the
    benchmarks' counter, so that the tests hold the measure the records use."""
    from benchmarks._autograd import kept_numbers

    return kept_numbers


@pytest.fixture
def host_gpu_module(monkeypatch):
    """``sci.tensor_attention._gpu`` imported against the stand-in ``cupy`` of
    ``_host_cuda.py``: NumPy arrays, the kernels' text run on the host."""
    monkeypatch.setitem(sys.modules, "cupy", host_cuda.stand_in_cupy())
    _forget_gpu_module()
    yield importlib.import_module("sci.tensor_attention._gpu")
    _forget_gpu_module()


def _forget_gpu_module():
    """``_gpu.py`` out of ``sys.modules`` and its package, so that the next import binds the
    ``cupy`` of the moment (``from . import _gpu`` would find the package's attribute)."""
    import sci.tensor_attention

    sys.modules.pop("sci.tensor_attention._gpu", None)
    vars(sci.tensor_attention).pop("_gpu", None)


@pytest.fixture
def cupy_running_kernels(counting_cupy, monkeypatch):
    """The counting stand-in for CuPy whose ``RawKernel`` runs the attention kernels on the
    host, with 227 KB of shared memory per block (an H100/H200); ``_gpu.py`` imported afresh
    against it, and the dispatch table's entry for it restored afterwards."""
    from sci.backend import _dispatch

    counting_cupy.RawKernel = type("RawKernel", (host_cuda.RawKernel,), {"launches": []})
    counting_cupy.cuda.compiler = SimpleNamespace(CompileException=RuntimeError)
    monkeypatch.setattr(counting_cupy._Device, "attributes",
                        {"MaxSharedMemoryPerBlockOptin": 227 * 1024}, raising=False)
    monkeypatch.setitem(_dispatch._table, ("tensor_attention.exact", "cupy"),
                        "sci.tensor_attention._gpu:exact_attention")
    _forget_gpu_module()
    yield counting_cupy
    _forget_gpu_module()

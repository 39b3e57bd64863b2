"""Every CUDA kernel's text compiles, with no register spill, on a machine with no GPU.

The kernels run under CuPy (NVRTC) on a device only; their texts live in the subpackages'
``_gpu_source.py`` modules, importable without CuPy. ``nvcc`` (the CUDA toolkit's compiler,
installed on the CI and development machines without a GPU) compiles each for the H100/H200
architecture (sm_90), so that a syntax or type error is found before a device is lent.
(What the fused attention kernel computes is checked too, by compiling it for the host:
``tests/tensor_attention/test_tensor_attention_fused_plan.py``.)
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess

import pytest

import sci


def _source_modules():
    names = []
    for package in pkgutil.iter_modules(sci.__path__):
        if not package.ispkg:
            continue
        name = f"sci.{package.name}._gpu_source"
        try:
            names.append(importlib.import_module(name))
        except ModuleNotFoundError:
            continue
    return names


_CASES = [pytest.param(text, id=f"{module.__name__.split('.')[1]}: {label}")
          for module in _source_modules() for label, text in module.sources().items()]


def test_every_subpackage_with_cuda_kernels_lists_them():
    """The subpackages whose ``_gpu.py`` compiles a RawKernel keep its text in
    ``_gpu_source.py`` (so that this check sees it)."""
    from pathlib import Path

    root = Path(sci.__file__).parent
    with_kernels = {p.parent.name for p in root.glob("*/_gpu.py")
                    if "RawKernel(" in p.read_text()}
    listed = {m.__name__.split(".")[1] for m in _source_modules()}
    assert with_kernels <= listed, with_kernels - listed


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA compiler) not installed")
@pytest.mark.parametrize("text", _CASES)
def test_kernel_compiles_for_sm90_without_spills(text, tmp_path):
    source = tmp_path / "kernel.cu"
    source.write_text(text)
    done = subprocess.run(["nvcc", "-cubin", "-arch=sm_90", "-Xptxas", "-v", "-o",
                           str(tmp_path / "kernel.cubin"), str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert " 0 bytes spill stores" in done.stderr, done.stderr

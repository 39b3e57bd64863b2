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


def _nvrtc():
    """NVRTC (CUDA's runtime compiler, what CuPy compiles with), loaded from a pip wheel of
    CUDA (torch's) or the CUDA toolkit, its builtins library first (it is opened by name), or
    None. It needs no GPU."""
    import ctypes
    import importlib.util
    from pathlib import Path

    folders = [Path("/usr/local/cuda/lib64")]
    spec = importlib.util.find_spec("nvidia")
    for place in (spec.submodule_search_locations or []) if spec else []:
        folders = sorted(Path(place).glob("*/lib")) + folders
    for folder in folders:
        libraries = sorted(folder.glob("libnvrtc.so*"))  # not the ".alt." builds
        builtins = sorted(folder.glob("libnvrtc-builtins.so*"))
        if not libraries or not builtins:
            continue
        try:
            ctypes.CDLL(str(builtins[0]), mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(str(libraries[0]))
        except OSError:
            continue
    return None


def _nvrtc_compile(nvrtc, text, options):
    """NVRTC's verdict on ``text``: (0 when it compiled, its log)."""
    import ctypes

    program = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), text.encode(), b"kernel.cu", 0,
                                    None, None) == 0
    encoded = [o.encode() for o in options]
    status = nvrtc.nvrtcCompileProgram(program, len(encoded),
                                       (ctypes.c_char_p * len(encoded))(*encoded))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return status, log.value.decode(errors="replace")


def test_tiled_attention_kernel_compiles_under_nvrtc_with_the_include_sci_names():
    """The tiled kernel includes CUDA's mma.h, which includes crt/mma.h. CuPy 14 hands NVRTC
    the include folder of a pip wheel of CUDA, which from CUDA 13 on has mma.h but not crt/;
    sci names a folder that has it (``mma_include_options``). Compiled here as CuPy would,
    that wheel's folder first, for sm_90."""
    from sci.tensor_attention import _gpu_source

    nvrtc = _nvrtc()
    if nvrtc is None:
        pytest.skip("no NVRTC library (CUDA's runtime compiler) on this machine")
    extra = _gpu_source.mma_include_options()
    if not extra:
        pytest.skip("no CUDA include folder with crt/mma.h on this machine")
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("nvidia")
    wheels = [f"-I{p}" for place in (spec.submodule_search_locations or []) if spec
              for p in sorted(Path(place).glob("*/include"))] if spec else []
    for d in (17, _gpu_source.TILED_WIDTH):
        for dtype in ("float32", "float64"):
            status, log = _nvrtc_compile(
                nvrtc, _gpu_source.tiled_attention_source(d, dtype),
                ["--std=c++17", *wheels, *extra, "-arch=sm_90", "-ftz=true",
                 "--ptxas-options=-v"])
            assert status == 0, log
            assert " 0 bytes spill stores" in log, log  # CuPy's build, not nvcc's, spills none

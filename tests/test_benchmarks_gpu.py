"""The benchmark harness on a GPU (issue 18), checked without one.

Where a CUDA device would be, fake ``cupy`` and ``torch`` modules stand in (only what the
harness touches: the device count, the device's ``synchronize``, ``torch.cuda``), and NumPy
stands in for CuPy as the array module of the device's ceilings. What is checked: timings wait
for the device and a CPU run never does (nor imports a GPU library), a GPU run's record goes
beside the CPU one and names the device, the ceilings' work counts, and the performance page's
GPU sections.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import sci


class _Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def _fake_cupy(devices=1, counter=None, props=None):
    """A module with what the harness asks CuPy: the device count, the current device's
    ``synchronize`` and (for the record) its properties and the CUDA versions."""
    counter = counter or _Counter()

    def get_device_count():
        if devices is None:  # CuPy installed on a machine without a driver
            raise RuntimeError("cudaErrorNoDevice")
        return devices

    runtime = types.SimpleNamespace(
        getDeviceCount=get_device_count,
        getDeviceProperties=lambda i: props or {
            "name": b"Fake H200", "totalGlobalMem": 141 * 2**30, "multiProcessorCount": 132,
            "major": 9, "minor": 0},
        runtimeGetVersion=lambda: 13000,
        driverGetVersion=lambda: 13010,
    )
    device = types.SimpleNamespace(id=0, synchronize=counter)
    cuda = types.SimpleNamespace(runtime=runtime, Device=lambda: device)
    return types.SimpleNamespace(cuda=cuda, __version__="14.2.0", __name__="cupy"), counter


def _fake_torch(initialized, counter=None):
    counter = counter or _Counter()
    cuda = types.SimpleNamespace(is_initialized=lambda: initialized, synchronize=counter)
    return types.SimpleNamespace(cuda=cuda, __version__="2.11.0"), counter


# --------------------------------------------------------------------------------------------
# time_callable waits for the device
# --------------------------------------------------------------------------------------------


def test_timings_wait_for_the_device_once_per_batch(monkeypatch):
    from benchmarks._harness import time_callable

    cupy, cupy_syncs = _fake_cupy()
    torch, torch_syncs = _fake_torch(initialized=True)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "torch", torch)
    calls = _Counter()
    # min_time=0: one call per batch, so the batches are the `repeats` measurements; the
    # device is waited for once before the first (the warm-up's work must not be timed) and
    # at the end of each.
    timing = time_callable(calls, repeats=4, warmup=2, min_time=0)
    assert timing["calls_per_repeat"] == 1 and calls.calls == 2 + 4
    assert cupy_syncs.calls == torch_syncs.calls == 1 + 4


def test_timings_wait_at_the_end_of_each_batch_not_each_call(monkeypatch):
    from benchmarks._harness import time_callable

    calls = _Counter()
    synced_after = []  # how many calls had been made at each wait for the device
    cupy, _ = _fake_cupy(counter=lambda: synced_after.append(calls.calls))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    timing = time_callable(calls, repeats=3, warmup=1, min_time=0.005)
    number = timing["calls_per_repeat"]
    batches = np.diff(synced_after).tolist()
    # after the warm-up; then the autorange's growing batches, the last of which is the first
    # measurement, and two more measurements of as many calls; nothing after the last wait
    assert synced_after[0] == 1 and synced_after[-1] == calls.calls
    assert number > 1 and batches[-3:] == [number] * 3 and min(batches) >= 1


@pytest.mark.parametrize("cupy_devices, torch_initialized", [
    (0, False),  # CuPy imported on a machine with no device; torch never touched CUDA
    (None, None),  # CuPy's runtime raises (no driver); no torch at all
])
def test_timings_never_synchronise_without_a_device(monkeypatch, cupy_devices,
                                                    torch_initialized):
    from benchmarks._harness import _device_synchronizer, time_callable

    cupy, cupy_syncs = _fake_cupy(devices=cupy_devices)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    torch_syncs = _Counter()
    if torch_initialized is None:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    else:
        torch, torch_syncs = _fake_torch(torch_initialized)
        monkeypatch.setitem(sys.modules, "torch", torch)
    assert _device_synchronizer() is None
    time_callable(lambda: None, repeats=3, min_time=0)
    assert cupy_syncs.calls == torch_syncs.calls == 0


def test_timings_on_a_cpu_machine_import_no_gpu_library(monkeypatch):
    from benchmarks._harness import _device_synchronizer, time_callable

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert _device_synchronizer() is None
    assert time_callable(lambda: 3, repeats=2)["result"] == 3
    assert "cupy" not in sys.modules and "torch" not in sys.modules


# --------------------------------------------------------------------------------------------
# A GPU run's record: its own file, the device named
# --------------------------------------------------------------------------------------------


def test_record_names_keep_gpu_and_smoke_runs_apart():
    from benchmarks._harness import record_name

    assert record_name("gaunt") == "gaunt.json"
    assert record_name("gaunt", quick=True) == "gaunt.quick.json"
    assert record_name("gaunt", gpu=True) == "gaunt.gpu.json"
    # every smoke run ends in .quick.json (never reported), every full GPU run in .gpu.json
    assert record_name("gaunt", quick=True, gpu=True) == "gaunt.gpu.quick.json"


@pytest.mark.parametrize("quick", [False, True])
def test_a_gpu_run_goes_beside_the_cpu_record(monkeypatch, tmp_path, quick):
    import benchmarks._harness as harness

    cpu_record = tmp_path / ("toy.quick.json" if quick else "toy.json")
    cpu_record.write_text('{"recorded": "on the CPU"}')
    monkeypatch.setattr(harness, "machine_info", lambda: {
        "backend": "cupy", "gpu": {"name": "Fake H200"}})
    bench = harness.Benchmark("toy", "a toy", cases=lambda q: [harness.Case("one", lambda: 1)])
    record = harness.run_benchmark(bench, quick=quick, out=tmp_path, repeats=1, echo=False)
    expected = tmp_path / ("toy.gpu.quick.json" if quick else "toy.gpu.json")
    assert record["path"] == str(expected)
    assert json.loads(expected.read_text())["machine"]["gpu"] == {"name": "Fake H200"}
    assert cpu_record.read_text() == '{"recorded": "on the CPU"}'


def test_the_device_is_recorded_when_the_run_used_it(monkeypatch):
    import benchmarks._harness as harness

    cupy, _ = _fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    # no nvidia-smi here, whatever the machine: the NVIDIA driver's version is then left out
    monkeypatch.setattr(harness.subprocess, "run", _no_nvidia_smi)
    monkeypatch.setattr(sci, "available_backends", lambda: ("numpy", "cupy"))
    monkeypatch.setattr(sci, "get_backend", lambda: "cupy")
    info = harness.machine_info()
    gpu = info["gpu"]
    assert gpu["name"] == "Fake H200" and gpu["memory_gib"] == 141.0
    assert gpu["multiprocessors"] == 132 and gpu["compute_capability"] == "9.0"
    assert (gpu["cupy"], gpu["cuda_runtime"], gpu["cuda_driver"]) == ("14.2.0", "13.0", "13.1")
    assert "nvidia_driver" not in gpu and info["cupy"] == "14.2.0"
    if "torch" in sys.modules or _has("torch"):
        import torch

        assert gpu["torch"] == torch.__version__
    # a CPU run on the same machine was not timed on the device: its record does not name it
    monkeypatch.setattr(sci, "get_backend", lambda: "numpy")
    assert "gpu" not in harness.machine_info()


def _no_nvidia_smi(*args, **kwargs):
    raise FileNotFoundError("nvidia-smi")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------------------------
# The device's ceilings
# --------------------------------------------------------------------------------------------


def test_machine_cases_are_chosen_by_backend(monkeypatch):
    from benchmarks import machine

    assert set(machine.CASES) == set(sci.backend.BACKENDS)
    assert machine.CASES["numpy"] is machine.CASES["numba"] is machine._host_cases
    assert machine.CASES["cupy"] is machine._device_cases
    asked = []
    monkeypatch.setitem(machine.CASES, "cupy", lambda quick: asked.append(quick) or ["device"])
    monkeypatch.setattr(sci, "get_backend", lambda: "cupy")
    assert list(machine.BENCHMARK.cases(True)) == ["device"] and asked == [True]


def test_device_ceilings_count_their_work():
    # NumPy as the device's array module: the same calls CuPy takes, run on the host.
    from benchmarks.machine import _device_cases

    cases = {c.label: c for c in _device_cases(True, xp=np)}
    n, m = 1024, 1 << 22
    assert set(cases) == {
        f"numpy.matmul float64 n={n} [device]", f"numpy.matmul float32 n={n} [device]",
        "copy float64 n=2^22 [device]", "exp float64 n=2^22 [device]",
        "exp float32 n=2^22 [device]"}
    for case in cases.values():
        p = case.params
        assert p["device"] is True and p["kind"] in {"flops", "bytes", "exp"}
        out = case.ours()
        if p["kind"] == "flops":
            assert p["flops"] == 2.0 * n**3 and out.shape == (n, n) and out.dtype == p["dtype"]
        elif p["kind"] == "bytes":  # one read and one write of each float64
            assert p["bytes"] == 16.0 * m and p["n"] == m
        else:
            assert p["exps"] == m and out.dtype == p["dtype"]
            assert 0 < out.min() and out.max() <= 1  # exp of [-30, 0]


def test_device_ceilings_from_a_record():
    from benchmarks.machine import limits

    def row(best, **params):
        return {"case": "c", "params": {**params, "device": True}, "ours_min_s": best}

    record = {"rows": [
        row(2e-2, kind="flops", flops=2.0 * 8192**3, n=8192, dtype="float64"),
        row(2.5e-2, kind="flops", flops=2.0 * 8192**3, n=8192, dtype="float32"),
        row(1e-3, kind="bytes", bytes=16.0 * 2**28, n=2**28, dtype="float64"),
        row(1.25e-3, kind="exp", exps=2.0**28, n=2**28, dtype="float64"),
        row(1e-3, kind="exp", exps=2.0**28, n=2**28, dtype="float32"),
    ]}
    ceil = limits(record)
    assert ceil == pytest.approx({
        "float64_flops": 2 * 8192**3 / 2e-2, "float32_flops": 2 * 8192**3 / 2.5e-2,
        "bytes_per_s": 16 * 2**28 / 1e-3,
        "float64_exp_per_s": 2**28 / 1.25e-3, "float32_exp_per_s": 2**28 / 1e-3,
    })
    assert "exp_per_s_one_core" not in ceil  # a device ceiling is the whole device's


# --------------------------------------------------------------------------------------------
# The performance page's GPU sections
# --------------------------------------------------------------------------------------------


def _record(name, rows, machine):
    return {"benchmark": name, "description": f"{name} test", "quick": False,
            "machine": {"cpu": "test cpu", "cores": 2, "usable_cores": 2, "date": "2026-12-05",
                        "python": "3.12", **machine},
            "rows": rows}


def _timed(case, params, best, **peer):
    return {"case": case, "params": params, "ours_name": "sci", "ours_median_s": best,
            "ours_min_s": best, "repeats": 3, **peer}


_GPU = {"backend": "cupy", "gpu": {"name": "Fake H200", "memory_gib": 141.0,
                                   "cupy": "14.2.0", "cuda_runtime": "13.0"}}


def _write(folder, record, suffix=".json"):
    (folder / f"{record['benchmark']}{suffix}").write_text(json.dumps(record))


def _cpu_records(folder):
    _write(folder, _record("machine", [
        _timed("dgemm", {"kind": "flops", "flops": 4e9, "dtype": "float64"}, 1.0)],
        {"backend": "numba"}))
    _write(folder, _record("tensor_attention", [
        _timed("exact n=10", {"series": "exact", "n": 10, "d": 4}, 1e-3)], {"backend": "numba"}))
    _write(folder, _record("generalization", [_timed("curve", {}, 1e-3)], {"backend": "numba"}))


def _check_rst(page):
    # Each title's underline is as long as the title (reStructuredText's rule) ...
    lines = page.splitlines()
    for i, line in enumerate(lines):
        if i and re.fullmatch(r"([-=~])\1{2,}", line):
            assert len(line) == len(lines[i - 1]), lines[i - 1]
    # ... and where docutils is installed (the docs extra), the page parses without a warning.
    try:
        from docutils.core import publish_doctree
    except ImportError:
        return
    publish_doctree(page, settings_overrides={"report_level": 2, "halt_level": 2})


def test_performance_page_says_there_is_no_gpu_record_yet(tmp_path):
    from benchmarks._report import render

    _cpu_records(tmp_path)
    # smoke runs on the GPU are not reported, like those on the CPU
    _write(tmp_path, _record("tensor_attention", [], _GPU), ".gpu.quick.json")
    page = render(tmp_path)
    assert "No GPU record yet: ``python -m benchmarks --backend cupy``" in page
    assert "Fake H200" not in page
    _check_rst(page)


def test_performance_page_holds_gpu_records_against_the_device(tmp_path):
    from benchmarks._report import load_records, render

    _cpu_records(tmp_path)
    gpu = {"kind": "exp", "device": True}
    _write(tmp_path, _record("machine", [
        _timed("dgemm [device]", {"kind": "flops", "flops": 6e12, "dtype": "float64",
                                  "device": True}, 0.1),
        _timed("copy [device]", {"kind": "bytes", "bytes": 4e9, "dtype": "float64",
                                 "device": True}, 1e-3),
        _timed("exp float64 [device]", {**gpu, "exps": 2e9, "dtype": "float64"}, 1e-2),
    ], _GPU), ".gpu.json")
    # n = 10: 1000 logits, one exp each, in 5 ns = 2e11 exp/s: all of the device's exp rate;
    # the host row of the same record (numba, no device) is not held against the GPU.
    _write(tmp_path, _record("tensor_attention", [
        _timed("exact n=10 [cupy]", {"series": "exact", "n": 10, "d": 4, "backend": "cupy"},
               5e-9),
        _timed("exact n=10 [numba]", {"series": "exact", "n": 10, "d": 4,
                                      "backend": "numba"}, 1e-3),
    ], _GPU), ".gpu.json")
    assert set(load_records(tmp_path)) == {"machine", "tensor_attention", "generalization"}
    assert set(load_records(tmp_path, gpu=True)) == {"machine", "tensor_attention"}
    page = render(tmp_path)
    assert "On Fake H200" in page and "No GPU record yet: " not in page
    assert "No GPU record yet of ``generalization``." in page
    assert "60 TFLOP/s" in page and "4 TB/s" in page and "200 Gexp/s" in page
    assert "exact tensor attention (GPU)" in page and "100% of exp rate" in page
    gpu_part = page[page.index("On Fake H200"):page.index("``tensor_attention``\n")]
    assert "exact n=10 [numba]" not in gpu_part
    # each GPU record has a section of its own, after the CPU record of the same benchmark
    title = "``tensor_attention`` on Fake H200"
    assert page.index("``tensor_attention``\n---") < page.index(title)
    assert "``python -m benchmarks tensor_attention --backend cupy``" in page
    assert "GPU Fake H200, 141.0 GiB, CuPy 14.2.0, CUDA runtime 13.0" in page
    assert "``machine`` on Fake H200" in page
    _check_rst(page)


def test_performance_page_reads_the_device_name_of_older_records(tmp_path):
    from benchmarks._report import render

    _cpu_records(tmp_path)
    _write(tmp_path, _record("generalization", [_timed("curve", {}, 1e-3)],
                             {"backend": "cupy", "gpu": "Old GPU"}), ".gpu.json")
    page = render(tmp_path)
    assert "On Old GPU" in page and "``generalization`` on Old GPU" in page
    assert "No ceilings of this device" in page
    _check_rst(page)


# --------------------------------------------------------------------------------------------
# The prepared run on a lent GPU machine
# --------------------------------------------------------------------------------------------


def test_device_scripts_parse_and_name_real_benchmarks():
    from benchmarks._harness import discover

    ci = Path(__file__).resolve().parents[1] / ".ci"
    for script in ("device-check", "device-prepare"):
        path = ci / script
        assert os.access(path, os.X_OK), f"{path} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)
    text = (ci / "device-check").read_text()
    names = re.search(r'BENCHMARKS:=([^}"]*)', text).group(1).split()
    # the ceilings are measured first, on their own clock, then every benchmark named
    assert names and set(names) <= set(discover()) - {"machine"}
    assert "bench machine" in text


def test_gpu_attention_cases_run_and_agree_with_their_peers():
    """The cases of ``tensor_attention --backend cupy`` (issue 19), dry-run on NumPy arrays and
    torch CPU tensors at small sizes: every sci call and its torch peer (the probe's chunked
    einsum + softmax, SDPA) run, and agree to the precision's round-off."""
    pytest.importorskip("torch")
    from benchmarks import _attention_gpu

    seen = set()
    for case in _attention_gpu.cases(quick=True, device="cpu"):
        ours = case.ours()
        seen.add(case.params["series"])
        if case.peer is None:
            continue
        difference = case.check(ours, case.peer())
        tolerance = 1e-5 if case.params.get("dtype") == "float32" else 1e-12
        assert difference <= tolerance, (case.label, difference)
    assert seen == {"gpu-exact", "gpu-exact-order", "gpu-exact-matrix"}


def test_gpu_attention_rows_count_their_logits(tmp_path):
    """Matrix, order-t and causal rows are modelled by their own logit count (a causal
    tensor row by sum_i (i + 1)^2), not by the CPU rows' n^3."""
    from benchmarks._attention_gpu import _exact_params
    from benchmarks._report import _attention_kernels

    causal = _exact_params("exact", 4, 4, 3, "float32", False, causal=True)
    assert causal["logits"] == 1 + 4 + 9 + 16
    matrix = _exact_params("exact-matrix", 8, 4, 2, "float64", False)
    record = _record("tensor_attention", [
        _timed("gpu matrix", matrix, 1e-3, peer_name="sdpa", peer_min_s=2e-3,
               peer_median_s=2e-3),
        _timed("gpu causal", causal, 1e-3)], _GPU)
    kernels = list(_attention_kernels(record))
    assert [k["kernel"] for k in kernels] == [
        "exact matrix attention (GPU)", "exact matrix attention (sdpa)",
        "exact tensor attention (GPU)"]
    assert [k["exps"] for k in kernels] == [64.0, 64.0, 30.0]
    assert kernels[2]["dtype"] == "float32"

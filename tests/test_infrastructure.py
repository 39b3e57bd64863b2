"""The plumbing every subpackage relies on: README contract, CI, figures runner, benchmarks."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_command_module():
    path = ROOT / ".ci" / "readme_command.py"
    spec = importlib.util.spec_from_file_location("readme_command", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_holds_the_two_commands():
    module = _readme_command_module()
    figures = module.readme_command("figures")
    tests = module.readme_command("tests")
    assert figures.endswith("python -m figures")
    assert "python -m pytest" in tests
    for command in (figures, tests):
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")


def test_readme_command_extraction_refuses_ambiguity():
    module = _readme_command_module()
    text = "<!-- command: tests -->\n```bash\na\n```\n<!-- command: tests -->\n```bash\nb\n```\n"
    with pytest.raises(SystemExit, match="exactly one 'tests' command; found 2"):
        module.readme_command("tests", text)
    with pytest.raises(SystemExit, match="found 0"):
        module.readme_command("figures", text)


def test_ci_runs_the_readme_command_and_the_docs():
    script = (ROOT / ".ci" / "run").read_text()
    assert "readme_command.py tests" in script
    assert "sphinx -W" in script
    assert "set -euo pipefail" in script


def test_figure_registry_is_complete():
    from figures._registry import discover

    registry = discover()
    assert "marchenko_pastur" in registry
    for name, fig in registry.items():
        assert fig.name == name
        assert fig.reproduces.strip(), f"{name} must say which paper figure it reproduces"
        assert fig.subpackage.startswith("sci."), f"{name} must name its subpackage"
        assert set(fig.quick) == set(fig.full), f"{name}: quick and full take the same parameters"


def test_figures_cli_lists_and_rejects_unknown_names():
    listing = subprocess.run(
        [sys.executable, "-m", "figures", "--list"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    )
    assert "marchenko_pastur" in listing.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "figures", "no_such_figure"], cwd=ROOT, capture_output=True,
        text=True, check=False,
    )
    assert bad.returncode == 2
    assert "unknown figure(s) no_such_figure" in bad.stderr


def test_figure_runner_writes_outputs_and_caches(tmp_path):
    from figures._registry import discover
    from figures._runner import run_figure

    fig = discover()["marchenko_pastur"]
    first = run_figure(fig, quick=True, out=tmp_path / "out", cache_dir=tmp_path / "cache",
                       progress=False)
    assert not first["from_cache"]
    for suffix in (".png", ".pdf", ".json"):
        assert (tmp_path / "out" / f"marchenko_pastur{suffix}").stat().st_size > 0
    record = json.loads((tmp_path / "out" / "marchenko_pastur.json").read_text())
    assert record["quick"] is True and record["reproduces"] == fig.reproduces
    second = run_figure(fig, quick=True, out=tmp_path / "out", cache_dir=tmp_path / "cache",
                        progress=False)
    assert second["from_cache"] and second["data"] == first["data"]
    # No temporary files are left behind by the atomic writes.
    leftovers = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_cache_key_depends_on_parameters_and_version(monkeypatch):
    import sci
    from sci._cache import cache_key

    a = cache_key(figure="f", parameters={"n": 1})
    assert a == cache_key(figure="f", parameters={"n": 1})
    assert a != cache_key(figure="f", parameters={"n": 2})
    monkeypatch.setattr(sci, "__version__", "999")
    assert a != cache_key(figure="f", parameters={"n": 1})


def test_disk_cache_ignores_corrupt_entries(tmp_path):
    from sci._cache import DiskCache

    cache = DiskCache(tmp_path)
    cache.put("k", {"x": [1.0, float("nan")]})
    assert cache.get("k") == {"x": [1.0, "nan"]}
    cache.path("k").write_text("{truncated")
    assert cache.get("k") is None


def test_benchmark_harness_times_and_records(tmp_path):
    from benchmarks._harness import Benchmark, Case, fitted_exponent, run_benchmark, time_callable

    timing = time_callable(lambda: sum(range(100)), repeats=3)
    assert timing["repeats"] == 3 and 0 < timing["min_s"] <= timing["median_s"]
    assert timing["result"] == 4950
    bench = Benchmark(
        name="toy",
        description="sum against a slower sum",
        cases=lambda quick: [
            Case("sum", ours=lambda: sum(range(1000)), peer=lambda: sum(list(range(1000))),
                 peer_name="list", check=lambda a, b: abs(a - b))
        ],
        summarize=lambda rows: {"cases": len(rows)},
    )
    record = run_benchmark(bench, quick=True, out=tmp_path, echo=False)
    saved = json.loads((tmp_path / "toy.quick.json").read_text())
    assert saved["rows"][0]["discrepancy"] == 0
    assert saved["rows"][0]["ratio"] > 0 and saved["summary"] == {"cases": 1}
    assert {"cpu", "cores", "python", "numpy"} <= set(saved["machine"])
    assert record["path"].endswith("toy.quick.json")
    assert fitted_exponent([1, 2, 4, 8], [1, 8, 64, 512]) == pytest.approx(3.0)
    assert math.isnan(fitted_exponent([256], [1.0]))


def test_single_threaded_restores_thread_counts():
    # Per-core timings pin every library to one thread; the next benchmark (or figure) in the
    # same process must get its threads back, even when the timed block raises.
    numba = pytest.importorskip("numba")
    from benchmarks._harness import single_threaded

    before = numba.get_num_threads()
    with single_threaded() as threads:
        assert threads["numba"] == numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError), single_threaded():
        raise RuntimeError("timed block failed")
    assert numba.get_num_threads() == before


def _record(name, rows, cores=2):
    return {"benchmark": name, "description": f"{name} test", "quick": False,
            "machine": {"cpu": "test cpu", "cores": cores, "usable_cores": cores,
                        "date": "2026-01-01", "python": "3.11"},
            "rows": rows}


def test_performance_page_divides_by_measured_ceilings(tmp_path):
    from benchmarks._report import render

    machine = _record("machine", [
        {"case": "dgemm", "params": {"kind": "flops", "flops": 4e9, "dtype": "float64"},
         "ours_name": "matmul", "ours_median_s": 1.0, "ours_min_s": 1.0, "repeats": 1},
        {"case": "exp", "params": {"kind": "exp", "exps": 1e6, "threads": 1},
         "ours_name": "numpy.exp", "ours_median_s": 1.0, "ours_min_s": 1.0, "repeats": 1},
    ])
    # n = 10: 1000 logits (one exp each) in 1 ms on 2 cores = 1e6 exp/s = half of 2 x 1e6.
    attention = _record("tensor_attention", [
        {"case": "exact n=10", "params": {"series": "exact", "n": 10, "d": 4},
         "ours_name": "numba kernel", "ours_median_s": 2e-3, "ours_min_s": 1e-3, "repeats": 3,
         "peer_name": "blocked NumPy", "peer_median_s": 4e-3, "peer_min_s": 4e-3, "ratio": 2.0,
         "discrepancy": 1e-17},
    ])
    for rec in (machine, attention):
        (tmp_path / f"{rec['benchmark']}.json").write_text(json.dumps(rec))
    (tmp_path / "ignored.quick.json").write_text("{not json: quick runs are not reported")
    page = render(tmp_path)
    assert "50% of exp rate" in page  # the Numba row
    assert "12% of exp rate" in page  # the peer: 1000 exps in 4 ms against 2e6 exp/s
    assert "python -m benchmarks tensor_attention" in page and "2x" in page
    assert "4 GFLOP/s" in page  # the float64 ceiling as measured


def test_performance_page_renders_the_recorded_results():
    from benchmarks._report import RESULTS, load_records, render

    page = render()
    for name in load_records(RESULTS):
        assert f"python -m benchmarks {name}" in page
    assert "Hot kernels against the machine's limits" in page


def _benchmark_names():
    from benchmarks._harness import discover

    return sorted(discover())


_BENCHMARKS_ON_TORCH = {"tensor_attention_window"}


@pytest.mark.parametrize("name", _benchmark_names())
def test_every_benchmark_runs_in_quick_mode(name, tmp_path):
    # The benchmarks are not timed here (they live in benchmarks/); this only keeps every one
    # of them runnable as the code under it changes: cases build, run and record, and each
    # discrepancy against its peer is a finite number.
    from benchmarks._harness import discover, run_benchmark

    if name in _BENCHMARKS_ON_TORCH:  # its peer and its subject are torch code
        pytest.importorskip("torch")
    record = run_benchmark(discover()[name], quick=True, out=tmp_path, repeats=1, echo=False)
    assert record["rows"] and (tmp_path / f"{name}.quick.json").exists()
    for row in record["rows"]:
        assert row["ours_min_s"] > 0
        if "discrepancy" in row:
            assert math.isfinite(row["discrepancy"])


def test_benchmarks_cli_lists():
    listing = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list"], cwd=ROOT, capture_output=True,
        text=True, check=True,
    )
    assert "marchenko_pastur" in listing.stdout


def test_progress_bar_can_be_silenced(monkeypatch, capsys):
    from sci._progress import progress_bar

    monkeypatch.setenv("SCI_PROGRESS", "0")
    assert list(progress_bar(range(3), progress=True, desc="x")) == [0, 1, 2]
    assert "x:" not in capsys.readouterr().err

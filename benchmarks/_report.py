"""The performance page: every recorded benchmark's table and each hot kernel against the machine.

``python -m benchmarks --report PATH`` (and the docs build, through ``docs/conf.py``) turns the
JSON records in ``benchmarks/results/`` into reStructuredText: per benchmark the machine it ran
on, its timings with the ratios against the peers, and its summary (fitted exponents,
crossovers); then a table holding each hot kernel's achieved rate (FLOP/s, bytes/s or exp/s, from
a work model stated in the table) against the ceiling measured on the machine by
``python -m benchmarks machine``. Records made on a GPU (``--backend cupy``, ``NAME.gpu.json``)
get sections of their own beside the CPU ones, each device's kernels held against that device's
ceilings (``machine.gpu.json``); without them the page says that there is no GPU record yet.
Nothing here is typed in by hand: rerunning a benchmark and rebuilding the docs updates the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._harness import RESULTS
from ._harness import _format_seconds as _seconds

# --------------------------------------------------------------------------------------------
# Work models: (record) -> kernel rows. Each row: kernel, case, code (whose time), seconds, and
# the work it did in one or more of flops / bytes / exps, with the model in words.
# --------------------------------------------------------------------------------------------


def _rows(record: dict, prefix: str) -> list[dict]:
    return [r for r in record.get("rows", []) if r["case"].startswith(prefix)]


def _on_device(row: dict) -> bool:
    """Whether a row's ``sci`` code ran on the GPU: its params say ``device`` (the machine
    benchmark's device cases) or ``backend: cupy``. A GPU record may hold host rows too (a
    benchmark that times its CPU backends whatever the switch); those are not held against the
    device's ceilings."""
    p = row.get("params", {})
    return bool(p.get("device")) or p.get("backend") == "cupy"


def _engine(row: dict, host: str) -> str:
    return "GPU" if _on_device(row) else host


def _mp_kernels(record: dict) -> Iterable[dict]:
    for row in _rows(record, "pdf n="):
        p = row["params"]
        if p.get("backend") != "numba" or p["n"] < 1_000_000:
            continue
        yield dict(kernel="Marchenko-Pastur density (Numba)", case=row["case"], code="sci",
                   seconds=row["ours_min_s"], bytes=16.0 * p["n"],
                   model="16 B per point (read lambda, write rho)")


def _attention_kernels(record: dict) -> Iterable[dict]:
    for row in record.get("rows", []):
        p = row["params"]
        series = p.get("series")
        if series not in {"exact", "exact-1-thread", "gpu-exact", "gpu-exact-order",
                          "gpu-exact-matrix"} or row["case"] == "":
            continue
        n, d = p["n"], p["d"]
        one = series == "exact-1-thread"
        # the GPU rows carry their logit count (matrix n^2, order t n^t, causal masks excluded)
        logits = float(p.get("logits", float(n) ** 3))
        work = dict(exps=logits, flops=logits * (4 * d + 1), dtype=p.get("dtype", "float64"),
                    model=f"{'n^3' if 'logits' not in p else _number(logits)} logits: one exp "
                          f"and 4d+1 = {4 * d + 1} flops each")
        what = {"gpu-exact-matrix": "exact matrix attention",
                "gpu-exact-order": f"exact order-{p.get('order')} attention"}.get(
                    series, "exact tensor attention")
        yield dict(kernel=f"{what} ({_engine(row, 'Numba kernel')})", case=row["case"],
                   code="sci", seconds=row["ours_min_s"], cores=1 if one else None, **work)
        if "peer_min_s" in row and not one:
            peer = "blocked NumPy" if series.startswith("exact") else row["peer_name"]
            yield dict(kernel=f"{what} ({peer})", case=row["case"],
                       code=row["peer_name"], seconds=row["peer_min_s"], **work)


def _nc_kernels(record: dict) -> Iterable[dict]:
    for row in _rows(record, "nc_metrics"):
        p = row["params"]
        N, d, K = p["N"], p["d"], p["K"]
        # sci accumulates in float64 whatever the features' dtype: the float64 ceiling applies.
        itemsize = 4 if p.get("dtype") == "float32" else 8
        yield dict(kernel=f"nc_metrics, streaming ({p['backend']})", case=row["case"],
                   code="sci", seconds=row["ours_min_s"], dtype="float64",
                   flops=float(N) * d * d + 6.0 * N * K * d, bytes=float(N) * d * itemsize,
                   model="float64 accumulation: within-class Gram by syrk (N d^2), class sums "
                         "(2 N K d), NC4 products with means and classifier (4 N K d)")


def _ct_kernels(record: dict) -> Iterable[dict]:
    build = _rows(record, "ADK build")
    ranks = build[0]["params"].get("ranks") if build else None
    for row in _rows(record, "ADK long-range on"):
        p = row["params"]
        n = round(p["grid_points"] ** (1 / 3))
        if ranks:
            r1, r2, r3 = ranks
            yield dict(kernel="Chebyshev-Tucker grid export (mode products)", case=row["case"],
                       code="sci", seconds=row["ours_min_s"],
                       flops=2.0 * (n * r1 * r2 * r3 + n * n * r2 * r3 + float(n) ** 3 * r3),
                       bytes=8.0 * n**3,
                       model=f"ranks {r1},{r2},{r3}: 2(n r1 r2 r3 + n^2 r2 r3 + n^3 r3) flops, "
                             "8 B per grid value written")
        if "peer_min_s" in row and build:
            bp = build[0]["params"]
            yield dict(kernel="direct long-range sum (Numba)", case=row["case"],
                       code=row["peer_name"], seconds=row["peer_min_s"],
                       exps=float(p["peer_points"]) * bp["atoms"] * bp["n_long"],
                       model=f"points x atoms x {bp['n_long']} Gaussians: one exp each")


def _gaunt_kernels(record: dict) -> Iterable[dict]:
    from sci.gaunt import gaunt_table

    for row in _rows(record, "fourier vs direct"):
        p = row["params"]
        L = p["L"]
        # The direct method contracts with the table of the full product (lmax_out = 2L).
        nnz = gaunt_table(L).nnz
        yield dict(kernel="Gaunt product, direct sparse contraction", case=row["case"],
                   code=row["peer_name"], seconds=row["peer_min_s"],
                   flops=2.0 * nnz * p["batch"],
                   model=f"2 flops per nonzero real Gaunt coefficient ({nnz} at L = {L}) per row")


KERNELS: dict[str, Callable[[dict], Iterable[dict]]] = {
    "marchenko_pastur": _mp_kernels,
    "tensor_attention": _attention_kernels,
    "neural_collapse": _nc_kernels,
    "chebyshev_tucker": _ct_kernels,
    "gaunt": _gaunt_kernels,
}
NOT_MODELLED = {
    "generalization": "its time goes to LAPACK eigendecompositions and SciPy quadrature, whose "
                      "operation counts depend on iteration counts; the page reports the speed-ups "
                      "over the peers only",
}

# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def load_records(results: str | Path = RESULTS, *, gpu: bool = False) -> dict[str, dict]:
    """The full (not ``--quick``) records in ``results``, by benchmark name: the CPU records
    (``NAME.json``), or with ``gpu=True`` the GPU ones (``NAME.gpu.json``)."""
    records = {}
    for path in sorted(Path(results).glob("*.json")):
        if path.name.endswith(".quick.json") or path.name.endswith(".gpu.json") != gpu:
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        records[record["benchmark"]] = record
    return records


def _number(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3g}"
    if isinstance(x, dict):
        return ", ".join(f"{k}: {_number(v)}" for k, v in x.items())
    if isinstance(x, list):
        return ", ".join(_number(v) for v in x)
    return str(x)


def _cell(text: str) -> str:
    # Escape what reStructuredText would read as markup: a trailing underscore (a reference),
    # stars (emphasis), bars (substitutions), backquotes (roles).
    for char in "\\|*_`":
        text = text.replace(char, "\\" + char)
    return text or " "


def _list_table(header: list[str], rows: list[list[str]], widths: str | None = None) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [header, *rows]:
        lines.append(f"   * - {_cell(row[0])}")
        lines += [f"     - {_cell(c)}" for c in row[1:]]
    return lines + [""]


def _machine_line(machine: dict) -> str:
    parts = [f"{machine.get('cpu', '?')}, {machine.get('usable_cores', machine.get('cores'))} "
             f"cores, {machine.get('memory_gib', '?')} GiB",
             f"recorded {machine.get('date', '?')}"]
    if "load_average" in machine:
        parts.append("load average " + "/".join(f"{x:g}" for x in machine["load_average"]))
    versions = [f"{k} {machine[k]}" for k in ("python", "numpy", "scipy", "numba", "cupy")
                if k in machine]
    parts.append(", ".join(versions))
    if "numba_threads" in machine:
        parts.append(f"{machine['numba_threads']} Numba threads")
    if "gpu" in machine:
        parts.append(f"GPU {_device_line(machine['gpu'])}")
    return "; ".join(parts)


def _device_name(machine: dict) -> str:
    gpu = machine.get("gpu", "unnamed GPU")
    return gpu.get("name", "unnamed GPU") if isinstance(gpu, dict) else str(gpu)


def _device_line(gpu: dict | str) -> str:
    # Records before issue 18 hold the device's name alone.
    if not isinstance(gpu, dict):
        return str(gpu)
    parts = [gpu.get("name", "unnamed GPU")]
    if "memory_gib" in gpu:
        parts.append(f"{gpu['memory_gib']} GiB")
    versions = [f"{label} {gpu[key]}" for key, label in (
        ("cupy", "CuPy"), ("cuda_runtime", "CUDA runtime"), ("cuda_driver", "CUDA driver"),
        ("nvidia_driver", "NVIDIA driver"), ("torch", "torch")) if gpu.get(key)]
    return ", ".join(parts + versions)


def _benchmark_section(record: dict) -> list[str]:
    name = record["benchmark"]
    gpu = record["machine"].get("backend") == "cupy"
    # a title of its own for the GPU record: two sections titled alike would share an anchor
    title = f"``{name}`` on {_device_name(record['machine'])}" if gpu else f"``{name}``"
    command = f"python -m benchmarks {name}" + (" --backend cupy" if gpu else "")
    lines = [title, "-" * len(title), "", record.get("description", ""), "",
             f"Command: ``{command}``. Machine: {_machine_line(record['machine'])}.",
             ""]
    has_peer = any("peer_name" in r for r in record["rows"])
    header = ["case", "sci (median)"]
    if has_peer:
        header += ["peer (median)", "peer / sci", "peer", "discrepancy"]
    rows = []
    for r in record["rows"]:
        row = [r["case"], f"{_seconds(r['ours_median_s'])} ({r['ours_name']})"]
        if has_peer:
            row += [_seconds(r.get("peer_median_s")),
                    f"{r['ratio']:.3g}x" if "ratio" in r else "",
                    r.get("peer_name") or "",
                    _number(r["discrepancy"]) if "discrepancy" in r else ""]
        rows.append(row)
    lines += _list_table(header, rows)
    summary = record.get("summary") or {}
    if summary:
        lines += ["Summary:", ""]
        lines += [f"* {_cell(str(k))}: {_cell(_number(v))}" for k, v in summary.items()]
        lines.append("")
    return lines


def _limits_section(records: dict[str, dict]) -> list[str]:
    machine = records.get("machine")
    lines = ["Hot kernels against the machine's limits", "-" * 40, ""]
    if machine is None:
        return lines + ["No machine record: run ``python -m benchmarks machine``.", ""]
    from .machine import limits

    ceil = limits(machine)
    cores = machine["machine"].get("usable_cores") or machine["machine"].get("cores") or 1
    lines += [
        "The ceilings are measured on the machine itself (``python -m benchmarks machine``, "
        f"{_machine_line(machine['machine'])}), not taken from a data sheet:",
        "",
    ]
    lines += _list_table(["ceiling", "measured"], [
        [label, text] for label, text in (
            ("float64 FLOP/s, all cores (BLAS dgemm)", _rate(ceil.get("float64_flops"), "FLOP/s")),
            ("float64 FLOP/s, one core", _rate(ceil.get("float64_flops_one_core"), "FLOP/s")),
            ("float32 FLOP/s, all cores (BLAS sgemm)", _rate(ceil.get("float32_flops"), "FLOP/s")),
            ("memory bandwidth (best triad)", _rate(ceil.get("bytes_per_s"), "B/s")),
            ("exp per second, one core (NumPy SIMD exp)", _rate(ceil.get("exp_per_s_one_core"),
                                                                "exp/s")),
            (f"exp per second, all {cores} cores", _rate(
                ceil["exp_per_s_one_core"] * cores if "exp_per_s_one_core" in ceil else None,
                "exp/s")),
        )
    ])
    lines += [
        "Each kernel's work follows the model in its row (the fraction is achieved / ceiling for "
        "each kind of work it does; the largest fraction names what binds it). A kernel timed "
        "on another machine than the ceilings is marked.",
        "",
    ]
    rows = []
    for name, model in KERNELS.items():
        record = records.get(name)
        if record is None:
            continue
        other = record["machine"].get("cpu") != machine["machine"].get("cpu")
        for k in model(record):
            n_cores = k.get("cores") or cores
            one_core = k.get("cores") == 1 and ceil.get("float64_flops_one_core")
            exp_peak = ceil["exp_per_s_one_core"] * n_cores if "exp_per_s_one_core" in ceil \
                else None
            rows.append(_kernel_row(
                k, ceil, other, flops_peak=one_core or None, exp_peak=exp_peak,
            ))
    lines += _kernel_table(rows)
    for name, why in NOT_MODELLED.items():
        lines += [f"``{name}`` is not modelled: {why}.", ""]
    return lines


def _kernel_row(k: dict, ceil: dict[str, float], other: bool, *, flops_peak: float | None,
                exp_peak: float | None) -> list[str]:
    """One kernel against the ceilings: achieved rates and the fraction of each ceiling.

    ``flops_peak`` overrides the FLOP/s ceiling of the kernel's dtype (the one-core ceiling for a
    one-core float64 kernel); ``exp_peak`` is the exp rate available to it."""
    fractions = []
    achieved = []
    if "flops" in k:
        key = "float32_flops" if k.get("dtype") == "float32" else "float64_flops"
        peak = flops_peak if flops_peak and key == "float64_flops" else ceil.get(key)
        rate = k["flops"] / k["seconds"]
        achieved.append(_rate(rate, "FLOP/s"))
        if peak:
            fractions.append((rate / peak, "FLOP/s"))
    if "bytes" in k:
        rate = k["bytes"] / k["seconds"]
        achieved.append(_rate(rate, "B/s"))
        if ceil.get("bytes_per_s"):
            fractions.append((rate / ceil["bytes_per_s"], "bandwidth"))
    if "exps" in k:
        rate = k["exps"] / k["seconds"]
        achieved.append(_rate(rate, "exp/s"))
        if exp_peak:
            fractions.append((rate / exp_peak, "exp rate"))
    fraction = ", ".join(f"{f:.0%} of {what}" if f >= 0.01 else f"{f:.1%} of {what}"
                         for f, what in sorted(fractions, reverse=True))
    return [
        k["kernel"] + (" (other machine)" if other else ""),
        k["case"] + (", one core" if k.get("cores") == 1 else ""),
        k["model"], _seconds(k["seconds"]), "; ".join(achieved), fraction,
    ]


def _kernel_table(rows: list[list[str]]) -> list[str]:
    return _list_table(["kernel", "case", "work model", "best time", "achieved", "of ceiling"],
                       rows, widths="18 14 30 8 15 15")


def _device_rows(record: dict) -> dict:
    """``record`` with its device rows alone: the models see only what ran on the GPU."""
    return {**record, "rows": [r for r in record.get("rows", []) if _on_device(r)]}


def _gpu_section(gpu_records: dict[str, dict], cpu_names: Iterable[str]) -> list[str]:
    title = "Hot kernels against the GPU's limits"
    lines = [title, "-" * len(title), ""]
    if not gpu_records:
        return lines + [
            "No GPU record yet: ``python -m benchmarks --backend cupy`` on a machine with a CUDA "
            "device records each benchmark in ``benchmarks/results/NAME.gpu.json``, and "
            "``python -m benchmarks machine --backend cupy`` the device's ceilings.",
            "",
        ]
    missing = [n for n in cpu_names if n not in gpu_records]
    if missing:
        lines += ["No GPU record yet of " + ", ".join(f"``{n}``" for n in missing) + ".", ""]
    from .machine import limits

    devices: dict[str, dict[str, dict]] = {}
    for name, record in gpu_records.items():
        devices.setdefault(_device_name(record["machine"]), {})[name] = record
    for device, records in devices.items():
        heading = f"On {device}"
        lines += [heading, "~" * len(heading), ""]
        machine = records.get("machine")
        if machine is None:
            lines += ["No ceilings of this device: run "
                      "``python -m benchmarks machine --backend cupy`` on it.", ""]
            ceil: dict[str, float] = {}
        else:
            ceil = limits(machine)
            lines += [
                "The ceilings are measured on the device itself (``python -m benchmarks machine "
                f"--backend cupy``; {_machine_line(machine['machine'])}):",
                "",
            ]
            lines += _list_table(["ceiling", "measured"], [
                ["float64 FLOP/s (cuBLAS dgemm)", _rate(ceil.get("float64_flops"), "FLOP/s")],
                ["float32 FLOP/s (cuBLAS sgemm)", _rate(ceil.get("float32_flops"), "FLOP/s")],
                ["memory bandwidth (device copy, read + write)",
                 _rate(ceil.get("bytes_per_s"), "B/s")],
                ["exp per second, float64", _rate(ceil.get("float64_exp_per_s"), "exp/s")],
                ["exp per second, float32", _rate(ceil.get("float32_exp_per_s"), "exp/s")],
            ])
        rows = []
        for name, model in KERNELS.items():
            record = records.get(name)
            if record is None:
                continue
            for k in model(_device_rows(record)):
                exp_peak = ceil.get(f"{k.get('dtype', 'float64')}_exp_per_s")
                rows.append(_kernel_row(k, ceil, False, flops_peak=None, exp_peak=exp_peak))
        if rows:
            lines += ["Each kernel's work follows the model in its row, as for the CPU; only "
                      "the rows that ran on the device are held against its ceilings.", ""]
            lines += _kernel_table(rows)
        else:
            lines += ["No GPU record of this device holds a modelled kernel run on the device "
                      "yet.", ""]
    return lines


def _rate(x: float | None, unit: str) -> str:
    if x is None:
        return "not recorded"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def render(results: str | Path = RESULTS) -> str:
    """The performance page as reStructuredText, from the records in ``results``."""
    records = load_records(results)
    lines = [
        "Performance",
        "===========",
        "",
        "Generated from the JSON records in ``benchmarks/results/`` by the docs build "
        "(``benchmarks/_report.py``); each section names the command that reproduces it and the "
        "machine it ran on. Ratios are peer time over ``sci`` time in the same run (> 1: ``sci`` "
        "is faster). Timings on a shared machine carry its load average; compare ratios, not "
        "absolute times, across machines.",
        "",
    ]
    gpu_records = load_records(results, gpu=True)
    lines += _limits_section(records)
    lines += _gpu_section(gpu_records, [n for n in records if n != "machine"])
    # each benchmark's GPU record beside its CPU one; the machines' ceilings last
    names = [n for n in records if n != "machine"]
    names += [n for n in gpu_records if n not in records and n != "machine"]
    for name in [*names, "machine"]:
        for record in (records.get(name), gpu_records.get(name)):
            if record is not None:
                lines += _benchmark_section(record)
    return "\n".join(lines) + "\n"


def write(path: str | Path, results: str | Path = RESULTS) -> Path:
    from sci._cache import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render(results))
    return path

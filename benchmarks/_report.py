"""The performance page: every recorded benchmark's table and each hot kernel against the machine.

``python -m benchmarks --report PATH`` (and the docs build, through ``docs/conf.py``) turns the
JSON records in ``benchmarks/results/`` into reStructuredText: per benchmark the machine it ran
on, its timings with the ratios against the peers, and its summary (fitted exponents,
crossovers); then a table holding each hot kernel's achieved rate (FLOP/s, bytes/s or exp/s, from
a work model stated in the table) against the ceiling measured on the machine by
``python -m benchmarks machine``. Nothing here is typed in by hand: rerunning a benchmark and
rebuilding the docs updates the page.
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
        if p.get("series") not in {"exact", "exact-1-thread"} or row["case"] == "":
            continue
        n, d = p["n"], p["d"]
        one = p["series"] == "exact-1-thread"
        work = dict(exps=float(n) ** 3, flops=float(n) ** 3 * (4 * d + 1),
                    model=f"n^3 logits: one exp and 4d+1 = {4 * d + 1} flops each")
        yield dict(kernel="exact tensor attention (Numba kernel)", case=row["case"],
                   code="sci", seconds=row["ours_min_s"], cores=1 if one else None, **work)
        if "peer_min_s" in row and not one:
            yield dict(kernel="exact tensor attention (blocked NumPy)", case=row["case"],
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


def load_records(results: str | Path = RESULTS) -> dict[str, dict]:
    """The full (not ``--quick``) records in ``results``, by benchmark name."""
    records = {}
    for path in sorted(Path(results).glob("*.json")):
        if path.name.endswith(".quick.json"):
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
        parts.append(f"GPU {machine['gpu']}")
    return "; ".join(parts)


def _benchmark_section(record: dict) -> list[str]:
    name = record["benchmark"]
    title = f"``{name}``"
    lines = [title, "-" * len(title), "", record.get("description", ""), "",
             f"Command: ``python -m benchmarks {name}``. "
             f"Machine: {_machine_line(record['machine'])}.",
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
            fractions = []
            achieved = []
            if "flops" in k:
                key = "float32_flops" if k.get("dtype") == "float32" else "float64_flops"
                peak = ceil.get(key)
                if k.get("cores") == 1 and key == "float64_flops":
                    peak = ceil.get("float64_flops_one_core", peak)
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
                if ceil.get("exp_per_s_one_core"):
                    fractions.append((rate / (ceil["exp_per_s_one_core"] * n_cores), "exp rate"))
            fraction = ", ".join(f"{f:.0%} of {what}" if f >= 0.01 else f"{f:.1%} of {what}"
                                 for f, what in sorted(fractions, reverse=True))
            rows.append([
                k["kernel"] + (" (other machine)" if other else ""),
                k["case"] + (", one core" if k.get("cores") == 1 else ""),
                k["model"], _seconds(k["seconds"]), "; ".join(achieved), fraction,
            ])
    lines += _list_table(["kernel", "case", "work model", "best time", "achieved", "of ceiling"],
                         rows, widths="18 14 30 8 15 15")
    for name, why in NOT_MODELLED.items():
        lines += [f"``{name}`` is not modelled: {why}.", ""]
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
    lines += _limits_section(records)
    for name, record in records.items():
        if name != "machine":
            lines += _benchmark_section(record)
    if "machine" in records:
        lines += _benchmark_section(records["machine"])
    return "\n".join(lines) + "\n"


def write(path: str | Path, results: str | Path = RESULTS) -> Path:
    from sci._cache import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render(results))
    return path

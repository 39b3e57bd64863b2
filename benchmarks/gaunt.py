"""Gaunt tensor products: the Fourier method against the direct contraction and e3nn.

Cases (one process, same inputs):

* ``<method> vs e3nn L=.. <dtype>``: ``gaunt_tensor_product`` with each method ("auto", the
  default, and the three exact ones it chooses from) against e3nn ``o3.FullTensorProduct``
  (torch on the same device: CPU, or CUDA under ``--backend cupy``; every path) in float32 and
  float64, batch 1024, L = 1..12 (e3nn's limit). The e3nn product has more paths (the odd ones)
  and another normalisation: it is the tool a user replaces, not the same numbers, so no
  discrepancy is recorded. The summary gives each method's speed-up, the auto choice and its
  ratio to the best method measured in the same run.
* ``fourier vs direct L=..``: the Fourier method against the sparse Gaunt contraction
  (float64), with the largest relative discrepancy.
* ``fourier L=..``: the Fourier method alone up to L = 64 (smaller batch, recorded), for the
  fitted exponent of time in L.
* ``gaunt coefficients``: ``gaunt`` on 200 index tuples (l <= 8) against sympy's ``gaunt``.
* ``tables L=..``: the first-call cost of the Fourier method, building its cached tables for a
  product of two degree-L inputs kept to degree L (caches cleared before every call), at
  L = 64 and 128 (16 and 32 quick). One-liner::

      python -c "from benchmarks.gaunt import build_tables as b; import timeit; \\
          print(timeit.timeit(lambda: b(128), number=1))"

Threads: torch, Numba and BLAS are limited to one thread each (recorded), so the comparison is
per core.

The complete Clebsch-Gordan product (issue 14) is the benchmark ``gaunt_cg`` (its cases are
here; ``benchmarks/gaunt_cg.py`` only registers them): ``python -m benchmarks gaunt_cg``.

* ``cg all vs e3nn L=..``: ``cg_tensor_product(x, y, paths="all")`` (float32, grid method)
  against e3nn ``o3.FullTensorProduct`` (float32): every path on both sides, batch 1024,
  L = 1..8. The discrepancy recorded is e3nn's output against ours mapped path by path to e3nn's
  basis and normalisation (``to_e3nn``, ``e3nn_path_factor``), relative to its largest entry.
* ``cg {all,even,odd} L=..``: sci alone, batch 1024, L = 8..64 (``--quick``: smaller), for the
  fitted exponent of time in L between 8 and 64.
"""

from __future__ import annotations

import numpy as np

from ._harness import Benchmark, Case, fitted_exponent, single_threaded

BATCH = 1024
E3NN_LMAX = 12


def _inputs(lmax: int, batch: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed + lmax)
    n = (lmax + 1) ** 2
    return (rng.standard_normal((batch, n)).astype(dtype),
            rng.standard_normal((batch, n)).astype(dtype))


def _e3nn_peer(lmax: int, dtype):
    """e3nn's FullTensorProduct (every path) on the device the switch computes on, or None."""
    try:
        import torch
        from e3nn import o3
    except ImportError:
        return None
    import sci

    device = "cuda" if sci.get_backend() == "cupy" and torch.cuda.is_available() else "cpu"
    irreps = o3.Irreps("+".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1)))
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tp = o3.FullTensorProduct(irreps, irreps).to(device=device, dtype=tdtype)
    return tp, device, torch


def _method_cases(lmax: int, batch: int, dtype):
    """Every method (and "auto") against e3nn, same inputs, one precision."""
    from sci.backend import asarray
    from sci.backend._arrays import switch_context
    from sci.gaunt import gaunt_tensor_product
    from sci.gaunt._auto import choose_method, platform_of

    x, y = _inputs(lmax, batch, dtype)
    peer_parts = _e3nn_peer(lmax, dtype)
    if peer_parts is None:
        print(f"  (e3nn not installed: the e3nn peer of L={lmax} omitted)")
        peer = None
    else:
        tp, device, torch = peer_parts
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

        def peer():
            with torch.no_grad():
                out = tp(xt, yt)
            if device != "cpu":
                torch.cuda.synchronize()
            return out
    xd, yd = asarray(x), asarray(y)  # on the switch's device once, not per call
    ctx = switch_context()
    chosen = choose_method("product", lmax, batch, np.dtype(dtype), ctx)
    name = np.dtype(dtype).name
    for method in ("auto", "fourier", "direct", "grid"):
        yield Case(
            label=f"{method} vs e3nn L={lmax} {name}",
            ours=lambda m=method: _synchronised(gaunt_tensor_product(xd, yd, method=m)),
            peer=peer,
            params={"L": lmax, "batch": batch, "dtype": name, "method": method,
                    "auto_choice": chosen, "platform": platform_of(ctx),
                    "paths_e3nn": len(tp.instructions) if peer is not None else None},
            ours_name=f"sci {method}",
            peer_name="e3nn FullTensorProduct" if peer is not None else None,
        )


def _synchronised(z):
    """Wait for a GPU result (CuPy): its time is the time of its kernels."""
    if type(z).__module__.split(".")[0] == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    return z


def _direct_case(lmax: int, batch: int):
    from sci.gaunt import gaunt_tensor_product

    x, y = _inputs(lmax, batch, np.float64)

    def check(a, b):
        return float(np.abs(a - b).max() / np.abs(b).max())

    return Case(
        label=f"fourier vs direct L={lmax}",
        ours=lambda: gaunt_tensor_product(x, y, method="fourier"),
        peer=lambda: gaunt_tensor_product(x, y, method="direct"),
        params={"L": lmax, "batch": batch, "dtype": "float64"},
        ours_name="sci fourier",
        peer_name="sci direct",
        check=check,
    )


def _fourier_case(lmax: int, batch: int):
    from sci.gaunt import gaunt_tensor_product

    x, y = _inputs(lmax, batch, np.float32)
    return Case(
        label=f"fourier L={lmax}",
        ours=lambda: gaunt_tensor_product(x, y, method="fourier"),
        params={"L": lmax, "batch": batch, "dtype": "float32"},
        ours_name="sci fourier",
        repeats=3,
    )


def build_tables(lmax: int) -> None:
    """Build, from an empty cache, every table of a degree-``lmax`` x degree-``lmax`` product."""
    from sci.gaunt import _fourier
    from sci.gaunt._product import _torus_sizes

    for cached in (_fourier.legendre_fourier_coefficients, _fourier._torus_synthesis,
                   _fourier._torus_analysis):
        cached.cache_clear()
    degree = 2 * lmax
    n_theta, _ = _torus_sizes((lmax, lmax), degree, lmax)
    _fourier._torus_synthesis(lmax, n_theta)
    _fourier._torus_analysis(lmax, n_theta, degree)


def _tables_case(lmax: int):
    return Case(
        label=f"tables L={lmax}",
        ours=lambda: build_tables(lmax),
        params={"L": lmax, "product_degree": 2 * lmax},
        ours_name="sci fourier tables",
        repeats=3,
    )


def _coefficient_case():
    from sci.backend import to_numpy
    from sci.gaunt import gaunt

    rng = np.random.default_rng(1)
    rows = []
    while len(rows) < 200:
        l1, l2 = (int(v) for v in rng.integers(0, 9, 2))
        l3 = int(rng.integers(abs(l1 - l2), l1 + l2 + 1))
        m1 = int(rng.integers(-l1, l1 + 1))
        m2 = int(rng.integers(-l2, l2 + 1))
        if abs(m1 + m2) > l3:
            continue
        rows.append((l1, l2, l3, m1, m2, -m1 - m2))
    args = np.array(rows).T
    try:
        from sympy.physics.wigner import gaunt as sympy_gaunt
    except ImportError:
        print("  (sympy not installed: coefficient case without peer)")
        sympy_gaunt = None

    def peer():
        return np.array([float(sympy_gaunt(*r)) for r in rows])

    return Case(
        label="gaunt coefficients x200 (l<=8)",
        ours=lambda: gaunt(*args),
        peer=peer if sympy_gaunt else None,
        params={"count": len(rows), "lmax": 8},
        ours_name="sci gaunt",
        peer_name="sympy gaunt",
        check=lambda a, b: float(np.abs(to_numpy(a) - b).max()),  # explicit device-to-host
        repeats=3,
    )


def _e3nn_layout(lmax):
    """e3nn's FullTensorProduct of "0e+1o+..+L" with itself (every path, odd ones included)."""
    from e3nn import o3

    irreps = o3.Irreps("+".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1)))
    return o3.FullTensorProduct(irreps, irreps)


def e3nn_layout_output(x, y, lmax, tp):
    """Our complete product in e3nn's FullTensorProduct layout: each path (l1, l2, l3) from
    inputs restricted to degrees l1 and l2, mapped by ``to_e3nn`` and ``e3nn_path_factor``
    (a check of the benchmark's numbers, not the timed call)."""
    from sci.gaunt import cg_tensor_product, e3nn_path_factor, to_e3nn

    blocks = []
    for ins in tp.instructions:
        l1 = tp.irreps_in1[ins.i_in1].ir.l
        l2 = tp.irreps_in2[ins.i_in2].ir.l
        l3 = tp.irreps_out[ins.i_out].ir.l
        xa = np.zeros_like(x[:, :(l1 + 1) ** 2])
        xa[:, l1 * l1:] = x[:, l1 * l1:(l1 + 1) ** 2]
        yb = np.zeros_like(y[:, :(l2 + 1) ** 2])
        yb[:, l2 * l2:] = y[:, l2 * l2:(l2 + 1) ** 2]
        z = cg_tensor_product(xa, yb)[:, (l1 + l2 + l3) % 2]
        block = np.zeros_like(z)
        block[:, l3 * l3:(l3 + 1) ** 2] = z[:, l3 * l3:(l3 + 1) ** 2]
        blocks.append((ins.i_out, e3nn_path_factor(l1, l2, l3)
                       * to_e3nn(block)[:, l3 * l3:(l3 + 1) ** 2]))
    blocks.sort(key=lambda b: b[0])
    return np.concatenate([b for _, b in blocks], axis=1)


def _cg_e3nn_case(lmax: int, batch: int):
    try:
        import torch
        from e3nn import o3  # noqa: F401
    except ImportError:
        print(f"  (e3nn not installed: case cg all vs e3nn L={lmax} omitted)")
        return None
    from sci.gaunt import cg_tensor_product, to_e3nn

    x, y = _inputs(lmax, batch, np.float32)
    tp = _e3nn_layout(lmax)
    # e3nn works in its own basis: it gets the same functions (to_e3nn of ours)
    xt = torch.from_numpy(np.ascontiguousarray(to_e3nn(x)))
    yt = torch.from_numpy(np.ascontiguousarray(to_e3nn(y)))

    def peer():
        with torch.no_grad():
            return tp(xt, yt).numpy()

    def check(_ours, theirs):
        mapped = e3nn_layout_output(x.astype(np.float64), y.astype(np.float64), lmax, tp)
        return float(np.abs(mapped - theirs).max() / np.abs(theirs).max())

    return Case(
        label=f"cg all vs e3nn L={lmax}",
        ours=lambda: cg_tensor_product(x, y, paths="all"),
        peer=peer,
        params={"L": lmax, "batch": batch, "dtype": "float32", "paths": "all",
                "paths_e3nn": len(tp.instructions)},
        ours_name="sci cg grid",
        peer_name="e3nn FullTensorProduct",
        check=check,
    )


def _cg_case(lmax: int, batch: int, paths: str):
    from sci.gaunt import cg_tensor_product

    x, y = _inputs(lmax, batch, np.float32)
    return Case(
        label=f"cg {paths} L={lmax}",
        ours=lambda: cg_tensor_product(x, y, paths=paths),
        params={"L": lmax, "batch": batch, "dtype": "float32", "paths": paths},
        ours_name="sci cg grid",
        repeats=3,
    )


def cg_cases(quick: bool):
    with single_threaded() as threads:
        _THREADS.update(threads)
        batch = 128 if quick else BATCH
        for lmax in ((1, 2, 4) if quick else tuple(range(1, 9))):
            case = _cg_e3nn_case(lmax, batch)
            if case is not None:
                yield case
        for lmax in ((8, 16) if quick else (8, 12, 16, 24, 32, 48, 64)):
            for paths in ("all", "even", "odd"):
                yield _cg_case(lmax, batch, paths)


def cg_summarize(rows):
    out: dict = {"threads": dict(_THREADS)}
    e3nn = [r for r in rows if r["case"].startswith("cg all vs e3nn")]
    if e3nn:
        out["speedup_vs_e3nn"] = {r["params"]["L"]: round(r["ratio"], 3) for r in e3nn}
        out["max_discrepancy_vs_e3nn"] = max(r.get("discrepancy", 0.0) for r in e3nn)
        big = [r for r in e3nn if r["params"]["L"] >= 4]
        if len(big) >= 2:
            out["e3nn_fitted_exponent_L4_8"] = fitted_exponent(
                [r["params"]["L"] for r in big], [r["peer_median_s"] for r in big])
    for paths in ("all", "even", "odd"):
        alone = [r for r in rows if r["case"].startswith(f"cg {paths} L=")]
        if len(alone) >= 2:
            sizes = [r["params"]["L"] for r in alone]
            out[f"{paths}_fitted_exponent"] = fitted_exponent(
                sizes, [r["ours_median_s"] for r in alone])
            out[f"{paths}_seconds"] = dict(zip(sizes, [r["ours_median_s"] for r in alone],
                                               strict=True))
    return out


CG_BENCHMARK = Benchmark(
    name="gaunt_cg",
    description="complete Clebsch-Gordan product (even + odd paths) vs e3nn; scaling to L=64",
    cases=cg_cases,
    summarize=cg_summarize,
)


_THREADS: dict = {}


def cases(quick: bool):
    # The comparison is per core: every library on one thread while the cases run (the
    # generator's ``with`` spans the timing of every case it yields), restored afterwards.
    with single_threaded() as threads:
        _THREADS.update(threads)
        yield from _all_cases(quick)


def _all_cases(quick: bool):
    batch = 128 if quick else BATCH
    lmaxes = (1, 2, 4) if quick else tuple(range(1, E3NN_LMAX + 1))
    for dtype in (np.float32, np.float64):
        for lmax in lmaxes:
            yield from _method_cases(lmax, batch, dtype)
    for lmax in ((2, 4) if quick else (2, 4, 8)):
        yield _direct_case(lmax, batch)
    big_batch = 16 if quick else 64
    for lmax in ((8, 16) if quick else (8, 12, 16, 24, 32, 48, 64)):
        yield _fourier_case(lmax, big_batch)
    for lmax in ((16, 32) if quick else (64, 128)):
        yield _tables_case(lmax)
    yield _coefficient_case()


def summarize(rows):
    out: dict = {"threads": dict(_THREADS)}
    out["methods_timed"] = sorted({r["ours_name"] for r in rows}
                                  | {r["peer_name"] for r in rows if r.get("peer_name")})
    for name in ("float32", "float64"):
        versus = [r for r in rows if " vs e3nn " in r["case"] and r["params"]["dtype"] == name
                  and r.get("ratio") is not None]
        if not versus:
            continue
        by_method: dict = {}
        for r in versus:
            by_method.setdefault(r["params"]["method"], {})[r["params"]["L"]] = round(
                r["ratio"], 3)
        auto = by_method.get("auto", {})
        out[f"speedup_vs_e3nn_{name}"] = by_method
        out[f"auto_choice_{name}"] = {r["params"]["L"]: r["params"]["auto_choice"]
                                      for r in versus if r["params"]["method"] == "auto"}
        # the auto choice against the best measured method at each L, in this same run
        out[f"auto_vs_best_{name}"] = {
            L: round(auto[L] / max(v[L] for v in by_method.values() if L in v), 3)
            for L in auto
        }
        out[f"auto_below_1.5x_e3nn_at_L_{name}"] = [L for L, v in auto.items() if v < 1.5]
        e3nn = {r["params"]["L"]: r["peer_median_s"] for r in versus
                if r["params"]["method"] == "auto" and r["params"]["L"] >= 4}
        if len(e3nn) >= 2:
            out[f"e3nn_fitted_exponent_{name}"] = fitted_exponent(list(e3nn), list(e3nn.values()))
    alone = [r for r in rows if r["case"].startswith("fourier L=")]
    if len(alone) >= 2:
        sizes = [r["params"]["L"] for r in alone]
        per_row = [r["ours_median_s"] / r["params"]["batch"] for r in alone]
        out["fourier_fitted_exponent_L8_64"] = fitted_exponent(sizes, per_row)
        out["fourier_seconds_per_row"] = dict(zip(sizes, per_row, strict=True))
    tables = [r for r in rows if r["case"].startswith("tables L=")]
    if tables:
        out["table_build_seconds"] = {r["params"]["L"]: r["ours_median_s"] for r in tables}
    direct = [r for r in rows if r["case"].startswith("fourier vs direct")]
    if direct:
        out["max_discrepancy_vs_direct"] = max(r.get("discrepancy", 0.0) for r in direct)
    coeff = [r for r in rows if r["case"].startswith("gaunt coefficients")]
    if coeff and "peer_median_s" in coeff[0]:
        n = coeff[0]["params"]["count"]
        out["gaunt_per_coefficient_s"] = coeff[0]["ours_median_s"] / n
        out["sympy_per_coefficient_s"] = coeff[0]["peer_median_s"] / n
    return out


BENCHMARK = Benchmark(
    name="gaunt",
    description="Gaunt tensor product: every method and the auto choice vs e3nn (float32 and "
    "float64); Fourier scaling to L=64; coefficients",
    cases=cases,
    summarize=summarize,
)

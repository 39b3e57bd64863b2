"""Benchmarks of sci.chebyshev_tucker against full-grid Tucker (TensorLy), direct summation
(Numba) and the fast multipole method (fmm3dpy).

Cases
-----
* build: Chebyshev-Tucker (m = 65, sampling + DCT + HOSVD) against a full-grid Tucker at equal
  error, on 128^3 and 256^3 grids: sci.hosvd and TensorLy's tucker (HOOI, SVD init), both
  including the sampling of their input. Errors are measured once, outside the timing.
* protein grid: the long-range potential of adenylate kinase (3341 atoms) on a 256^3 grid
  (ChebTucker mode products) against the Numba direct long-range sum on a subsample of the
  grid; the direct time is extrapolated linearly to the whole grid in the summary (labelled).
* protein points: the total Coulomb potential (long-range tensor + short-range neighbour sum)
  at scattered points against fmm3dpy (total, 1/(4 pi r) rescaled) and the Numba direct sum.
* rank vs N: build time and ranks of the long-range potential of random particles and of
  lattices with alternating charges, N from 10 to 10^5.

Timings are taken on a shared machine under load from other jobs: ratios, not absolute times,
are the result.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks._harness import Benchmark, Case, fitted_exponent

SIGMA = 0.15


def _erf_kernel(x, y, z):
    from scipy.special import erf

    r = np.sqrt(x * x + y * y + z * z)
    safe = np.where(r == 0, 1.0, r)
    return np.where(r == 0, 2 / (SIGMA * np.sqrt(np.pi)), erf(safe / SIGMA) / safe)


def _grid(n):
    return -1 + (np.arange(n) + 0.5) * 2 / n


def _build_cases(quick):
    from sci.chebyshev_tucker import ChebTucker, hosvd

    eps = 1e-6
    rng = np.random.default_rng(0)
    sizes = [64] if quick else [128, 256]
    for n in sizes:
        g = _grid(n)

        def ours():
            return ChebTucker.from_function(_erf_kernel, domain=(-1, 1), degree=64, tol=eps)

        def full_grid(g=g):
            return _erf_kernel(g[:, None, None], g[None, :, None], g[None, None, :])

        def sci_full():
            return hosvd(full_grid(), tol=eps)

        ct = ours()
        full = full_grid()
        ref = hosvd(full, tol=eps)
        idx = rng.integers(0, n, (20000, 3))
        exact = full[idx[:, 0], idx[:, 1], idx[:, 2]]
        scale = np.max(np.abs(exact))
        ct_err = float(np.max(np.abs(ct(g[idx]) - exact)) / scale)
        approx = ref.to_full()[idx[:, 0], idx[:, 1], idx[:, 2]]
        grid_err = float(np.max(np.abs(approx - exact)) / scale)
        del full, approx
        params = {"grid": n, "eps": eps, "degree": 64, "chebtucker_ranks": ct.ranks,
                  "full_grid_ranks": ref.ranks, "chebtucker_max_rel_error": ct_err,
                  "full_grid_max_rel_error": grid_err, "chebtucker_nbytes": ct.nbytes,
                  "full_grid_tucker_nbytes": int(ref.core.nbytes
                                                 + sum(u.nbytes for u in ref.factors)),
                  "full_grid_nbytes": 8 * n**3}
        yield Case(f"build erf kernel {n}^3 vs sci.hosvd", ours=ours, peer=sci_full,
                   params=params, peer_name="sci.hosvd on the full grid",
                   repeats=1 if n >= 256 else 3)
        try:
            import tensorly
            from tensorly.decomposition import tucker
        except ImportError:
            print("  (tensorly not installed: TensorLy HOOI case skipped)")
            continue
        ranks = list(ref.ranks)

        def tensorly_hooi(ranks=ranks):
            with tensorly.backend_context("numpy"):
                return tucker(tensorly.tensor(full_grid()), rank=ranks, init="svd",
                              n_iter_max=10, tol=1e-10)

        core, factors = tensorly_hooi()
        approx = tensorly.tucker_to_tensor((core, factors))[idx[:, 0], idx[:, 1], idx[:, 2]]
        tl_params = dict(params, tensorly_ranks=ranks,
                         tensorly_max_rel_error=float(np.max(np.abs(approx - exact)) / scale))
        yield Case(f"build erf kernel {n}^3 vs TensorLy", ours=ours, peer=tensorly_hooi,
                   params=tl_params, peer_name="tensorly tucker (HOOI, full grid)",
                   repeats=1 if n >= 256 else 3)


def _protein():
    from sci.datasets import DataUnavailableError, adk_open

    try:
        return adk_open()
    except DataUnavailableError as exc:
        print(f"  (protein cases skipped: {exc})")
        return None


def _protein_cases(quick):
    from sci.chebyshev_tucker import RangeSeparatedPotential, direct_potential

    data = _protein()
    if data is None:
        return
    x, q, _ = data
    tol = 1e-6
    degree = 48 if quick else 64
    n = 64 if quick else 256
    v = RangeSeparatedPotential(x, q, tol=tol, degree=degree)

    def build():
        return RangeSeparatedPotential(x, q, tol=tol, degree=degree)

    yield Case("ADK build (RS potential)", ours=build,
               params={"atoms": len(q), "tol": tol, "degree": degree,
                       "ranks": v.long_range.ranks, "n_long": v.n_long, "cutoff_A": v.cutoff,
                       "nbytes": v.long_range.nbytes}, repeats=1)
    axes = [np.linspace(lo, hi, n) for lo, hi in v.domain]
    rng = np.random.default_rng(1)
    sub = 2000 if quick else 20000
    idx = rng.integers(0, n, (sub, 3))
    sub_pts = np.stack([axes[d][idx[:, d]] for d in range(3)], axis=1)
    long_sum = v.long_range.exponential_sum

    def ours_grid():
        return v.long_range.on_grid(*axes)

    def direct_sub():
        return direct_potential(x, q, sub_pts, kernel="long_range", exponential_sum=long_sum)

    grid = ours_grid()
    ref = direct_sub()
    err = float(np.max(np.abs(grid[idx[:, 0], idx[:, 1], idx[:, 2]] - ref))
                / np.max(np.abs(ref)))
    del grid
    yield Case(f"ADK long-range on {n}^3 grid", ours=ours_grid, peer=direct_sub,
               params={"grid_points": n**3, "peer_points": sub, "max_rel_error": err,
                       "note": "peer timed on peer_points grid points; extrapolated in summary"},
               peer_name="numba direct long-range sum (subsample)", repeats=3)

    targets = rng.uniform([b[0] for b in v.domain], [b[1] for b in v.domain],
                          (5000 if quick else 50000, 3))

    def ours_total():
        return v(targets)

    def direct_total():
        return direct_potential(x, q, targets)

    ref_total = direct_total()
    err_total = float(np.max(np.abs(ours_total() - ref_total)) / np.max(np.abs(ref_total)))
    yield Case(f"ADK total at {len(targets)} points vs direct", ours=ours_total,
               peer=direct_total, params={"points": len(targets), "max_rel_error": err_total},
               peer_name="numba direct Coulomb sum", repeats=3)
    try:
        import fmm3dpy
    except ImportError:
        print("  (fmm3dpy not installed: FMM case skipped)")
        return
    sources = np.ascontiguousarray(x.T)
    tt = np.ascontiguousarray(targets.T)

    def fmm_total(eps=tol):
        out = fmm3dpy.lfmm3d(eps=eps, sources=sources, charges=q, targets=tt, pgt=1)
        return out.pottarg * (4 * math.pi)  # fmm3d's kernel is 1/(4 pi r)

    fmm_err = float(np.max(np.abs(fmm_total() - ref_total)) / np.max(np.abs(ref_total)))
    yield Case(f"ADK total at {len(targets)} points vs FMM", ours=ours_total, peer=fmm_total,
               params={"points": len(targets), "max_rel_error": err_total,
                       "fmm_eps": tol, "fmm_max_rel_error": fmm_err},
               peer_name="fmm3dpy lfmm3d", repeats=3)


def _scaling_cases(quick):
    """Each configuration is built once and timed with perf_counter (a 10^5-particle build
    is too long to repeat on a shared machine); the timed case is the mesh-free evaluation at
    10^4 points, the build time and ranks go to the params."""
    import time

    from sci.chebyshev_tucker import long_range_potential

    rng = np.random.default_rng(2)
    points = rng.uniform(-1, 1, (10_000, 3))
    configs = []
    for n in ([10, 100, 1000] if quick else [10, 100, 1000, 10_000, 100_000]):
        configs.append(("random", n, rng.uniform(-0.6, 0.6, (n, 3)), rng.choice([-1.0, 1.0], n)))
    for side in ([2, 4, 8] if quick else [2, 4, 8, 16, 32]):
        s = np.linspace(-0.8, 0.8, side)
        x = np.stack(np.meshgrid(s, s, s, indexing="ij"), -1).reshape(-1, 3)
        configs.append(("lattice", side**3, x, (-1.0) ** np.indices((side,) * 3).sum(0).ravel()))
    long_range_potential(configs[0][2], configs[0][3], tol=1e-6, degree=64, domain=(-1, 1),
                         n_long=10)  # warm-up
    for kind, n, x, q in configs:
        t0 = time.perf_counter()
        v = long_range_potential(x, q, tol=1e-6, degree=64, domain=(-1, 1), n_long=10)
        seconds = time.perf_counter() - t0
        yield Case(f"rank vs N: {kind} N={n} (eval 1e4 pts)", ours=lambda v=v: v(points),
                   params={"kind": kind, "N": n, "ranks": v.ranks, "n_long": 10,
                           "degree": 64, "tol": 1e-6, "build_seconds_single_run": seconds,
                           "nbytes": v.nbytes}, repeats=3)


def cases(quick):
    yield from _build_cases(quick)
    yield from _protein_cases(quick)
    yield from _scaling_cases(quick)


def summarize(rows):
    out = {}
    for row in rows:
        if row["case"].startswith("build erf kernel") and "ratio" in row:
            key = f"speedup {row['params']['grid']}^3 vs {row['peer_name']}"
            out[key] = round(row["ratio"], 1)
        if "long-range on" in row["case"] and "peer_median_s" in row:
            p = row["params"]
            extrapolated = row["peer_median_s"] * p["grid_points"] / p["peer_points"]
            out["ADK grid: direct sum extrapolated to the full grid [s]"] = round(extrapolated, 1)
            out["ADK grid: speedup vs extrapolated direct sum"] = round(
                extrapolated / row["ours_median_s"], 1)
    for kind in ("random", "lattice"):
        rows_k = [r for r in rows if r["params"].get("kind") == kind]
        if len(rows_k) >= 2:
            n = [r["params"]["N"] for r in rows_k]
            out[f"{kind}: max rank by N"] = {str(k): max(r["params"]["ranks"])
                                             for k, r in zip(n, rows_k, strict=True)}
            build = [r["params"]["build_seconds_single_run"] for r in rows_k]
            out[f"{kind}: build seconds by N (single runs)"] = {
                str(k): round(b, 3) for k, b in zip(n, build, strict=True)}
            big = [(k, b) for k, b in zip(n, build, strict=True) if k >= 1000]
            if len(big) >= 2:
                out[f"{kind}: build-time exponent in N (N >= 1000)"] = round(
                    fitted_exponent(*zip(*big, strict=True)), 2)
    return out


BENCHMARK = Benchmark(
    name="chebyshev_tucker",
    description="Chebyshev-Tucker vs full-grid Tucker (sci.hosvd, TensorLy), ADK potential vs "
                "direct sum and FMM, rank/time vs N",
    cases=cases,
    summarize=summarize,
)

"""Chebyshev-Tucker ranks against the accuracy (vs full-grid HOSVD) and against the number of
particles (random clusters and lattices)."""

from __future__ import annotations

import time

import numpy as np

from figures._registry import Figure
from sci._progress import progress_bar


def _erf_kernel(sigma):
    from scipy.special import erf

    def f(x, y, z):
        r = np.sqrt(x * x + y * y + z * z)
        safe = np.where(r == 0, 1.0, r)
        return np.where(r == 0, 2 / (sigma * np.sqrt(np.pi)), erf(safe / sigma) / safe)

    return f


# The two sweeps below time each step (the seconds are drawn): they stay serial and in this
# process, not on sci.parallel, where workers would share the cores and distort the timings
# (like gaunt_efficiency and tensor_attention_scaling).


def compute_eps(*, sigma, degree, grid, eps, progress=None):
    from sci.chebyshev_tucker import ChebTucker, hosvd

    f = _erf_kernel(sigma)
    g = -1 + (np.arange(grid) + 0.5) * 2 / grid
    t0 = time.perf_counter()
    full = f(g[:, None, None], g[None, :, None], g[None, None, :])
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (5000, 3))
    ref = f(*pts.T)
    ct_ranks, grid_ranks, ct_err, ct_time, grid_time = [], [], [], [], []
    for e in progress_bar(eps, progress=progress, desc="eps"):
        t0 = time.perf_counter()
        ct = ChebTucker.from_function(f, domain=(-1, 1), degree=degree, tol=e)
        ct_time.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        grid_ranks.append(max(hosvd(full, tol=e).ranks))
        grid_time.append(time.perf_counter() - t0)
        ct_ranks.append(max(ct.ranks))
        ct_err.append(float(np.max(np.abs(ct(pts) - ref)) / np.max(np.abs(ref))))
    return {"eps": list(eps), "chebtucker_rank": ct_ranks, "full_grid_rank": grid_ranks,
            "chebtucker_error": ct_err, "chebtucker_seconds": ct_time,
            "full_grid_seconds": grid_time, "degree": degree, "grid": grid, "sigma": sigma}


def plot_eps(data):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    eps = np.asarray(data["eps"])
    a.semilogx(eps, data["chebtucker_rank"], "o-",
               label=f"Chebyshev-Tucker, m = {data['degree'] + 1}")
    a.semilogx(eps, data["full_grid_rank"], "s--", label=f"full-grid HOSVD, {data['grid']}³")
    a.set_xlabel("ε")
    a.set_ylabel("Tucker rank (max over modes)")
    a.invert_xaxis()
    a.set_title(f"erf(r/σ)/r, σ = {data['sigma']}")
    a.legend()
    b.loglog(eps, data["chebtucker_error"], "o-", label="max rel. error at random points")
    b.loglog(eps, 3 * eps, "k:", label="3ε")
    b.set_xlabel("ε")
    b.invert_xaxis()
    b.legend()
    fig.tight_layout()
    return fig


def compute_n(*, sizes, lattice_sides, n_long, degree, tol, progress=None):
    from sci.chebyshev_tucker import long_range_potential

    rng = np.random.default_rng(1)
    # warm-up (imports, first FFT plans) so the first timing is not an outlier
    long_range_potential(rng.uniform(-0.6, 0.6, (3, 3)), [1.0, -1.0, 1.0], tol=tol,
                         degree=degree, domain=(-1, 1), n_long=n_long)
    random_ranks, random_seconds = [], []
    for n in progress_bar(sizes, progress=progress, desc="random N"):
        x = rng.uniform(-0.6, 0.6, (n, 3))
        q = rng.choice([-1.0, 1.0], n)
        t0 = time.perf_counter()
        v = long_range_potential(x, q, tol=tol, degree=degree, domain=(-1, 1), n_long=n_long)
        random_seconds.append(time.perf_counter() - t0)
        random_ranks.append(list(v.ranks))
    lattice_ranks, lattice_n, lattice_seconds = [], [], []
    for side in progress_bar(lattice_sides, progress=progress, desc="lattices"):
        s = np.linspace(-0.8, 0.8, side)
        x = np.stack(np.meshgrid(s, s, s, indexing="ij"), -1).reshape(-1, 3)
        q = (-1.0) ** np.indices((side,) * 3).sum(0).ravel()
        t0 = time.perf_counter()
        v = long_range_potential(x, q, tol=tol, degree=degree, domain=(-1, 1), n_long=n_long)
        lattice_seconds.append(time.perf_counter() - t0)
        lattice_ranks.append(list(v.ranks))
        lattice_n.append(side**3)
    return {"sizes": list(sizes), "random_ranks": random_ranks, "random_seconds": random_seconds,
            "lattice_n": lattice_n, "lattice_ranks": lattice_ranks,
            "lattice_seconds": lattice_seconds, "n_long": n_long, "degree": degree, "tol": tol}


def plot_n(data):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.semilogx(data["sizes"], np.max(data["random_ranks"], axis=1), "o-",
               label="random charges ±1 in [-0.6, 0.6]³")
    a.semilogx(data["lattice_n"], np.max(data["lattice_ranks"], axis=1), "s-",
               label="lattice, alternating charges")
    a.set_xlabel("number of particles N")
    a.set_ylabel("Tucker rank (max over modes)")
    # Headroom above the data for the legend: it must not cover a point.
    top = max(np.max(data["random_ranks"]), np.max(data["lattice_ranks"]))
    a.set_ylim(0, 1.45 * top)
    a.set_title(f"long-range part, $R_l$ = {data['n_long']}, m = {data['degree'] + 1}, "
                f"ε = {data['tol']:g}")
    a.legend(loc="upper left", fontsize=8)
    b.loglog(data["sizes"], data["random_seconds"], "o-", label="random")
    b.loglog(data["lattice_n"], data["lattice_seconds"], "s-", label="lattice")
    b.set_xlabel("number of particles N")
    b.set_ylabel("build time [s] (shared machine)")
    b.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


FIGURES = [
    Figure(
        name="chebyshev_tucker_ranks_eps",
        title="Chebyshev-Tucker and full-grid ranks against the accuracy",
        reproduces="Benner et al. 2025 (arXiv:2503.01696), ranks of the long-range kernel "
                   "erf(r/σ)/r against ε (Chebyshev-Tucker vs full-grid HOSVD)",
        compute=compute_eps, plot=plot_eps,
        full={"sigma": 0.15, "degree": 64, "grid": 128,
              "eps": [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]},
        quick={"sigma": 0.15, "degree": 64, "grid": 40,
               "eps": [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]},
        subpackage="sci.chebyshev_tucker",
    ),
    Figure(
        name="chebyshev_tucker_ranks_n",
        title="Tucker rank of the multi-particle long-range potential against N",
        reproduces="Benner et al. 2025 (arXiv:2503.01696), ranks for random particles "
                   "(N = 10..) and lattices with alternating charges",
        compute=compute_n, plot=plot_n,
        full={"sizes": [10, 30, 100, 300, 1000, 3000, 10000], "lattice_sides": [2, 4, 8, 16],
              "n_long": 14, "degree": 64, "tol": 1e-6},
        quick={"sizes": [10, 30, 100, 300], "lattice_sides": [2, 3, 4, 6],
               "n_long": 14, "degree": 64, "tol": 1e-6},
        subpackage="sci.chebyshev_tucker",
    ),
]

"""Time of a Gaunt tensor product against the degree L, per method; equivariance error vs L.

Reproduces the efficiency comparison of Luo, Chen, Krishnapriyan (ICLR 2024), Fig. 2 (time of
the feature interaction against L, log-log, e3nn against the Fourier method), on the CPU, with
every exact method and the one ``method="auto"`` (the default) chooses at each L, and adds the
equivariance error of the Fourier method against L.
"""

from __future__ import annotations

import time

import numpy as np

from ._registry import Figure


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up: JIT, FFT plans, cached tables
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return float(best)


def e3nn_missing() -> str | None:
    """Why e3nn cannot be timed here (None when it can)."""
    try:
        import torch  # noqa: F401
        from e3nn import o3  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _e3nn_product(lmax):
    if e3nn_missing() is not None:
        return None
    import torch
    from e3nn import o3

    torch.set_num_threads(1)
    irreps = o3.Irreps("+".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1)))
    tp = o3.FullTensorProduct(irreps, irreps)

    def run(x, y):
        with torch.no_grad():
            return tp(torch.from_numpy(x), torch.from_numpy(y))

    return run


# This figure times code: it runs serially in this process, never through sci.parallel
# (a process pool or a cluster would time the scheduling, not the kernels).
def compute(*, lmaxes, lmax_direct, lmax_e3nn, lmax_equivariance, batch, repeats, progress=None):
    from benchmarks._harness import single_threaded
    from sci._progress import progress_bar
    from sci.backend._arrays import switch_context
    from sci.gaunt import gaunt_tensor_product, random_rotation, rotate
    from sci.gaunt._auto import choose_method

    # One thread for BLAS, Numba and torch while timing: the comparison is per core
    # (recorded); the previous thread counts come back afterwards.
    rng = np.random.default_rng(0)
    with single_threaded() as threads:
        times: dict[str, list] = {"auto": [], "fourier": [], "direct": [], "grid": [],
                                  "e3nn": []}
        chosen: list[str] = []
        timed_l: dict[str, list] = {k: [] for k in times}
        for lmax in progress_bar(lmaxes, progress=progress, desc="gaunt timing"):
            n = (lmax + 1) ** 2
            x = rng.standard_normal((batch, n)).astype(np.float32)
            y = rng.standard_normal((batch, n)).astype(np.float32)
            methods = ["auto", "fourier", "grid"] + (["direct"] if lmax <= lmax_direct else [])
            chosen.append(choose_method("product", lmax, batch, np.dtype(np.float32),
                                        switch_context()))
            for method in methods:
                times[method].append(_best_time(
                    lambda m=method, a=x, b=y: gaunt_tensor_product(a, b, method=m), repeats))
                timed_l[method].append(lmax)
            if lmax <= lmax_e3nn:
                run = _e3nn_product(lmax)
                if run is not None:
                    times["e3nn"].append(_best_time(lambda r=run, a=x, b=y: r(a, b), repeats))
                    timed_l["e3nn"].append(lmax)
    errors = []
    eq_l = list(range(1, lmax_equivariance + 1))
    for lmax in eq_l:
        n = (lmax + 1) ** 2
        x, y = rng.standard_normal((2, 4, n))
        r = random_rotation(rng=rng)
        z = gaunt_tensor_product(x, y, method="fourier")
        zr = gaunt_tensor_product(rotate(x, r), rotate(y, r), method="fourier")
        errors.append(float(np.abs(zr - rotate(z, r)).max() / np.abs(z).max()))
    return {
        "batch": batch,
        "e3nn_missing": e3nn_missing() if lmax_e3nn >= min(lmaxes) else None,
        "threads": threads,
        "lmax": {k: v for k, v in timed_l.items() if v},
        "seconds": {k: v for k, v in times.items() if v},
        "methods_timed": [k for k, v in times.items() if v],
        "auto_choice": chosen,
        "equivariance_lmax": eq_l,
        "equivariance_error": errors,
    }


def plot(data):
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"fourier": "o-", "direct": "s--", "grid": "^:", "e3nn": "d-."}
    labels = {"fourier": "Gaunt, 2D Fourier (sci)", "direct": "Gaunt, sparse direct (sci)",
              "grid": "Gaunt, S² quadrature (sci)", "e3nn": "e3nn FullTensorProduct"}
    for method in data["methods_timed"]:
        if method == "auto":
            continue
        ax.loglog(data["lmax"][method], np.asarray(data["seconds"][method]) * 1e3,
                  styles[method], label=labels[method], alpha=0.6)
    if "auto" in data["methods_timed"]:
        # the default: a thick line, each point lettered with the method the table chose
        auto_ms = np.asarray(data["seconds"]["auto"]) * 1e3
        ax.loglog(data["lmax"]["auto"], auto_ms, "-", color="black", lw=2.5, alpha=0.35,
                  label="method='auto' (default; letter = its choice)")
        for L, t, m in zip(data["lmax"]["auto"], auto_ms, data.get("auto_choice", []),
                           strict=False):
            ax.annotate(m[0].upper(), (L, t), textcoords="offset points", xytext=(0, -11),
                        ha="center", fontsize=7)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks(sorted({l for v in data["lmax"].values() for l in v}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("max degree L (both inputs)")
    ax.set_ylabel(f"time per batch of {data['batch']} products (ms)")
    ax.set_title("Feature interaction, one CPU thread")
    ax.legend(fontsize=8, loc="upper left")
    missing = data.get("e3nn_missing")
    if missing:  # the comparison the figure exists for: its absence is said, above the panels
        fig.text(0.5, 1.0, "e3nn is not installed here, so the comparison with e3nn's "
                 "FullTensorProduct (Luo et al., Fig. 2) is MISSING\n"
                 f"({missing.splitlines()[0][:70]}; pip install torch e3nn, then "
                 "python -m figures gaunt_efficiency --no-cache)",
                 ha="center", va="bottom", fontsize=9, color="#a00000",
                 bbox=dict(boxstyle="round", fc="#fff0f0", ec="#a00000"))
    bx.semilogy(data["equivariance_lmax"], data["equivariance_error"], "o-")
    bx.axhline(1e-13, color="gray", ls="--", lw=1, label="1e-13")
    bx.set_xlabel("max degree L")
    bx.set_ylabel("relative equivariance error (float64)")
    bx.set_title("‖GTP(Dx, Dy) − D GTP(x, y)‖ / ‖GTP‖")
    bx.legend(fontsize=8)
    bx.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


FIGURE = Figure(
    name="gaunt_efficiency",
    title="Gaunt tensor product: time against degree, and equivariance error",
    reproduces="Luo, Chen, Krishnapriyan (ICLR 2024) Fig. 2 (efficiency comparison), on CPU",
    compute=compute,
    plot=plot,
    full={"lmaxes": [1, 2, 3, 4, 6, 8, 10, 12, 16, 24, 32], "lmax_direct": 10, "lmax_e3nn": 12,
          "lmax_equivariance": 16, "batch": 256, "repeats": 3},
    quick={"lmaxes": [1, 2, 4, 6], "lmax_direct": 6, "lmax_e3nn": 4, "lmax_equivariance": 6,
           "batch": 16, "repeats": 2},
    subpackage="sci.gaunt",
)

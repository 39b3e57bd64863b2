"""Marchenko–Pastur density: sci (each CPU backend) against scikit-rmt on the same points.

scikit-rmt pins numpy<=1.26 and scipy<=1.12, so it is not among the ``peers`` extras; run this
benchmark in an environment made for it (``pip install -e . scikit-rmt``). Its
``MarchenkoPasturDistribution(ratio=1/alpha)`` uses another scaling; with
rho(lambda) = pdf(lambda / alpha) / alpha the two are the same function, so the peer is timed
including that rescaling, and the discrepancy between the two outputs is recorded.
"""

from __future__ import annotations

import numpy as np

import sci
from sci.backend import to_numpy
from sci.generalization import marchenko_pastur_pdf

from ._harness import Benchmark, Case


def _cases(quick: bool):
    try:
        from skrmt.ensemble.spectral_law import MarchenkoPasturDistribution
    except ImportError as exc:
        MarchenkoPasturDistribution = None
        print(
            f"  (scikit-rmt not importable: {exc}; it needs numpy<=1.26 and scipy<=1.12, so "
            "install it in an environment of its own: pip install -e . scikit-rmt. "
            "Timing sci alone.)"
        )
    alpha = 2.0
    sizes = [10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
    for n in sizes:
        lam = np.linspace(0.0, 6.0, n)
        peer = None
        if MarchenkoPasturDistribution is not None:
            law = MarchenkoPasturDistribution(ratio=1 / alpha, beta=1, sigma=1.0)

            def peer(law=law, lam=lam):
                return law.pdf(lam / alpha) / alpha

        for backend in sci.available_backends():
            if backend == "cupy":
                continue  # host arrays here; the GPU timing belongs to a device run

            def ours(backend=backend, lam=lam):
                with sci.use_backend(backend):
                    return marchenko_pastur_pdf(lam, alpha)

            yield Case(
                label=f"pdf n={n:.0e} [{backend}]",
                ours=ours,
                peer=peer,
                params={"n": n, "alpha": alpha, "backend": backend},
                ours_name=f"sci[{backend}]",
                peer_name="scikit-rmt" if peer else None,
                check=lambda a, b: float(np.max(np.abs(to_numpy(a) - b))),
            )


def _summarize(rows):
    summary = {}
    for backend in ("numpy", "numba"):
        mine = [r for r in rows if r["params"]["backend"] == backend]
        if mine:
            big = max(mine, key=lambda r: r["params"]["n"])
            n, seconds = big["params"]["n"], big["ours_median_s"]
            summary[f"{backend}: evaluations per second at n={n}"] = f"{n / seconds:.3g}"
            # The density is memory-bound: at least 8 bytes read and 8 written per point.
            summary[f"{backend}: effective bandwidth at n={n} (16 B/point)"] = (
                f"{16 * n / seconds / 1e9:.2f} GB/s"
            )
            if "ratio" in big:
                summary[f"{backend}: speed-up over scikit-rmt at n={big['params']['n']}"] = (
                    f"{big['ratio']:.2f}x"
                )
    return summary


BENCHMARK = Benchmark(
    name="marchenko_pastur",
    description="Marchenko–Pastur pdf, sci backends against scikit-rmt",
    cases=_cases,
    summarize=_summarize,
)

"""Generalization curves and simulations: sci against direct quadrature and naive loops.

* Closed-form curves: E_g on a grid of times x alphas, sci's fixed composite rule (each CPU
  backend) against scipy.integrate.quad called point by point on the same integrand; the largest
  relative difference is recorded.
* Linear simulations: trials per second of simulate_linear (batched eigendecomposition + the
  closed-form modes) on each backend, against a per-trial loop that integrates the flow by
  matrix exponentials (scipy.linalg.expm), the textbook way.
* Two-layer students: the exact random-features iterates against explicit descent steps to the
  same epoch, and the both-layer descent on each backend.
"""

from __future__ import annotations

import math

import numpy as np

import sci
from sci.backend import to_numpy
from sci.generalization import (
    draw_linear_problem,
    generalization_error,
    simulate_linear,
    simulate_two_layer,
)

from ._harness import Benchmark, Case

SIGMA_EPS = math.sqrt(0.2)


def _quad_curves(t, alpha):
    """E_g by scipy.integrate.quad, one call per (t, alpha)."""
    from scipy.integrate import quad

    out = np.empty((t.size, alpha.size))
    noise = SIGMA_EPS**2
    for j, a in enumerate(alpha):
        lower, upper = (1 - math.sqrt(a)) ** 2, (1 + math.sqrt(a)) ** 2

        for i, time in enumerate(t):

            def integrand(x, time=time, lower=lower, upper=upper):
                rho = math.sqrt(max((upper - x) * (x - lower), 0.0)) / (2 * math.pi * x)
                return rho * (math.exp(-2 * x * time) + noise * math.expm1(-x * time) ** 2 / x)

            value, _ = quad(integrand, lower, upper, limit=200, epsabs=0.0, epsrel=1e-12)
            out[i, j] = value + max(0.0, 1 - a) + noise
    return out


def _relative(a, b):
    a, b = np.asarray(to_numpy(a)), np.asarray(to_numpy(b))
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _curve_cases(quick):
    n_t, n_alpha = (100, 10) if quick else (1000, 50)
    t = np.logspace(-2, 3, n_t)
    # alpha away from 1 by at least 0.02: quad's accuracy degrades next to the peak, where the
    # 1/lambda pole nears the lower edge (sci's rule does not; see the tests against mpmath).
    alpha = np.concatenate([np.linspace(0.1, 0.98, n_alpha // 2),
                            np.linspace(1.02, 4.0, n_alpha - n_alpha // 2)])

    first = True
    for backend in sci.available_backends():
        if backend == "cupy":
            continue  # host arrays; GPU timings belong to a device run

        def ours(backend=backend):
            with sci.use_backend(backend):
                return generalization_error(t[:, None], alpha=alpha, sigma_eps=SIGMA_EPS)

        # quad is timed on the first backend only (tens of seconds at full size).
        yield Case(
            label=f"E_g {n_t} t x {n_alpha} alpha [{backend}]",
            ours=ours,
            peer=(lambda: _quad_curves(t, alpha)) if first else None,
            params={"n_times": n_t, "n_alpha": n_alpha, "backend": backend},
            ours_name=f"sci[{backend}]",
            peer_name="scipy.integrate.quad" if first else None,
            check=_relative if first else None,
            repeats=1,
        )
        first = False


def _expm_loop(n, p, t, n_trials, seed):
    """Per-trial flow by matrix exponentials of the augmented generator (the naive way)."""
    import scipy.linalg

    problem = draw_linear_problem(n, p, sigma_eps=SIGMA_EPS, n_trials=n_trials, rng=seed)
    out = np.empty((n_trials, len(t)))
    for k in range(n_trials):
        x, wbar, w0, eps = (problem[name][k] for name in ("inputs", "teacher", "initial",
                                                         "noise"))
        y = wbar @ x + eps
        m = np.zeros((n + 1, n + 1))
        m[:n, :n] = -x @ x.T
        m[n, :n] = y @ x.T
        for j, time in enumerate(t):
            w = (np.append(w0, 1.0) @ scipy.linalg.expm(m * time))[:n]
            out[k, j] = np.sum((wbar - w) ** 2) / n + SIGMA_EPS**2
    return out


def _simulation_cases(quick):
    n, p = (100, 200) if quick else (400, 800)
    n_trials = 4 if quick else 10
    t = np.logspace(-1, 2, 10)
    for backend in sci.available_backends():
        if backend == "cupy":
            continue

        def ours(backend=backend):
            with sci.use_backend(backend):
                return simulate_linear(n, p, t, sigma_eps=SIGMA_EPS, n_trials=n_trials,
                                       rng=0)[0]

        yield Case(
            label=f"linear flow N={n} P={p} x{n_trials} [{backend}]",
            ours=ours,
            peer=lambda: _expm_loop(n, p, t, n_trials, 0),
            params={"n_inputs": n, "n_examples": p, "n_trials": n_trials, "n_times": t.size,
                    "backend": backend, "kind": "linear"},
            ours_name=f"sci[{backend}]",
            peer_name="per-trial scipy.linalg.expm",
            check=_relative,
            repeats=3,
        )


def _explicit_output_descent(n_hidden, last, kwargs):
    with sci.use_backend("numpy"):
        # the trainer's both-layer loop with the first layer held: the same iterates, by steps
        from sci.generalization import draw_two_layer_problem

        data = draw_two_layer_problem(n_hidden, **kwargs)
    x, y = data["train_inputs"], data["train_labels"]
    phi = np.maximum(data["student_hidden"] @ x, 0) / math.sqrt(n_hidden)
    phi_test = np.maximum(data["student_hidden"] @ data["test_inputs"], 0) / math.sqrt(n_hidden)
    a = data["student_output"].copy()
    p = x.shape[2]
    for _ in range(last):
        residual = np.einsum("th,thp->tp", a, phi) - y
        a -= np.einsum("thp,tp->th", phi, residual) / p
    test = np.einsum("th,thp->tp", a, phi_test) - data["test_labels"]
    return np.mean(test**2, axis=1) + data["noise_variance"]


def _two_layer_cases(quick):
    last = 2000 if quick else 20000
    n_trials = 4 if quick else 10
    kwargs = {"n_examples": 300, "n_test": 500, "n_trials": n_trials, "rng": 0}

    def ours():
        with sci.use_backend("numpy"):
            return simulate_two_layer(300, [last], **kwargs)[0][:, 0]

    yield Case(
        label=f"random features H=300 to epoch {last}",
        ours=ours,
        peer=lambda: _explicit_output_descent(300, last, {**kwargs}),
        params={"n_hidden": 300, "epoch": last, "n_trials": n_trials, "kind": "features"},
        ours_name="sci exact iterates",
        peer_name="explicit descent steps (numpy)",
        check=_relative,
        repeats=1,
    )
    epochs = [0, 500] if quick else [0, 2000]
    for backend in sci.available_backends():
        if backend == "cupy":
            continue

        def both(backend=backend):
            with sci.use_backend(backend):
                return simulate_two_layer(20, epochs, train_hidden=True, learning_rate=0.5,
                                          **kwargs)[0]

        yield Case(
            label=f"both layers H=20 {epochs[-1]} epochs [{backend}]",
            ours=both,
            params={"n_hidden": 20, "epochs": epochs[-1], "n_trials": n_trials,
                    "backend": backend, "kind": "both"},
            ours_name=f"sci[{backend}]",
            repeats=3,
        )


def _cases(quick):
    yield from _curve_cases(quick)
    yield from _simulation_cases(quick)
    yield from _two_layer_cases(quick)


def _summarize(rows):
    summary = {}
    for row in rows:
        params = row["params"]
        if "n_alpha" in params:
            points = params["n_times"] * params["n_alpha"]
            summary[f"E_g points per second [{params['backend']}]"] = (
                f"{points / row['ours_median_s']:.3g}")
            if "ratio" in row:
                summary["speed-up over quad"] = f"{row['ratio']:.0f}x"
                summary["max relative difference from quad"] = f"{row['discrepancy']:.1e}"
        elif params.get("kind") == "linear":
            summary[f"linear trials per second [{params['backend']}]"] = (
                f"{params['n_trials'] / row['ours_median_s']:.3g}")
            summary["linear: per-trial expm trials per second"] = (
                f"{params['n_trials'] / row['peer_median_s']:.3g}")
        elif params.get("kind") == "both":
            summary[f"both-layer trial-epochs per second [{params['backend']}]"] = (
                f"{params['n_trials'] * params['epochs'] / row['ours_median_s']:.3g}")
        elif params.get("kind") == "features":
            summary["random features: exact iterates speed-up over steps"] = (
                f"{row['ratio']:.0f}x")
    return summary


BENCHMARK = Benchmark(
    name="generalization",
    description="closed-form curves vs scipy quad; simulation throughput per backend",
    cases=_cases,
    summarize=_summarize,
)

"""Exact tensor attention (Numba kernel vs blocked NumPy) and the polynomial method vs exact.

Four series, d = 4, entries uniform in [-1, 1] (±1 for the accuracy table):

* ``accuracy``: errors of Taylor and Chebyshev at degrees 4, 6, 8 against exact, and at
  degree 6 for n = 64, 256, 1024 (recorded in the case parameters);
* ``exact n=...``: the exact Numba kernel against the blocked NumPy array code (the ``numpy``
  backend of the same function), O(n^3 d) each, and once with both on one thread (Numba and
  BLAS pinned); at the largest n also the CPU time of one call of each (``process_time``,
  minimum of 5: less sensitive than wall time to other jobs on a shared machine);
* ``poly n=...``: the polynomial method (Taylor, degree 6, rank C(10, 6) = 210) against the
  exact Numba kernel while that fits the time budget (n <= 1024; 512 in quick mode), alone
  beyond, up to n = 262 144 (16 384 in quick mode);
* ``poly19 ...``: the workloads of issue 19 (d = 4; tensor attention at degree 4, matrix at
  degree 6; causal and not) at n = 2^16, 2^18, 2^20 (2^14, 2^16 in quick mode; 2^22 too under
  ``--backend cupy``), computed on the benchmark's backend (under ``cupy`` the inputs are moved
  to the device once, before the timing), with the NumPy path on the host as the peer when the
  backend is ``cupy`` (its ratio is the issue's "at least 20x the host NumPy path"; the peer is
  left out above 2^18: a causal call at 2^20 takes seconds there). ``summarize`` fits the slope
  of time against n per workload;
* the peak Python-heap memory (tracemalloc) of the NumPy paths, in the case parameters;
* ``torch grad ...`` (when torch is installed): torch CPU tensors that require grad, the
  forward (the ``torch.autograd.Function`` of ``sci/tensor_attention/_torch.py``) against its
  recomputing backward (``ratio`` = backward / forward time), for t = 3 (causal and not) and
  t = 2, with the numbers the node saves for the backward (inputs, output, log-sum-exp)
  against the n^t weights; and forward + backward of the Function against autograd through the
  array-API code (which stores every block's weights), with their gradients' difference.
* ``torch grad window ...`` and ``torch grad poly ...``: the same for windowed 2-simplicial
  attention (n = 2048, window (32, 32); 256 in quick mode) and for the polynomial method
  (degree 6, rank 210, n = 4096, causal and not; degree 4, n = 512 in quick mode): forward and
  backward time (``ratio``), their one-thread CPU times, and the numbers kept for the backward
  (distinct storages of the saved tensors, the inputs included) against those kept by plain
  autograd through the array-API code (the path before the
  recomputing Functions; the same path for non-causal polynomial sums).
  The torch cases run on one thread: on a shared machine torch's intra-op threads waiting for
  a descheduled sibling made a 6 ms call take 600 ms.

Under ``--backend cupy`` the record (``tensor_attention.gpu.json``) holds the GPU cases of
``_attention_gpu.py`` instead: exact matrix, tensor and order-4 attention against torch on the
same device (the chunked einsum + softmax of the GPU probe, and ``scaled_dot_product_attention``),
and the polynomial method against the host's NumPy path.

``summarize`` fits log-log slopes, finds the crossover and extrapolates the exact time to the
largest n (labelled as an extrapolation: it is not measured).
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np

import sci
from sci.backend import to_numpy
from sci.tensor_attention import (
    poly_higher_order_attention,
    poly_tensor_attention,
    tensor_attention,
)

from . import _attention_gpu
from ._autograd import kept_numbers, saved_numbers
from ._harness import Benchmark, Case, fitted_exponent, single_threaded

D = 4
DEGREE = 6


def _inputs(n: int, seed: int = 0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (5, n, D))


def _exact(inputs, backend):
    def run():
        with sci.use_backend(backend):
            return tensor_attention(*inputs)

    return run


def _poly(inputs):
    def run():
        with sci.use_backend("numpy"):
            return poly_tensor_attention(*inputs, degree=DEGREE)

    return run


# The workloads of issue 19: (order t, degree)
POLY19_WORKLOADS = ((3, 4), (2, 6))


def _poly19(arrays, order: int, degree: int, causal: bool, backend: str | None = None):
    """Polynomial attention of order t on ``arrays`` (Q, the keys, the values), on the active
    backend or on ``backend``."""
    import contextlib

    def run():
        context = sci.use_backend(backend) if backend else contextlib.nullcontext()
        with context:
            return poly_higher_order_attention(arrays[0], list(arrays[1:order]),
                                               list(arrays[order:]), degree=degree,
                                               causal=causal)

    return run


def _poly19_cases(quick: bool):
    on_gpu = sci.get_backend() == "cupy"
    sizes = (1 << 14, 1 << 16) if quick else (1 << 16, 1 << 18, 1 << 20)
    if on_gpu and not quick:
        sizes = (*sizes, 1 << 22)
    for order, degree in POLY19_WORKLOADS:
        for causal in (False, True):
            for n in sizes:
                host = np.random.default_rng(n).uniform(-1.0, 1.0, (2 * order - 1, n, D))
                # moved to the backend's device once (a no-op on the host backends)
                arrays = [sci.backend.asarray(a) for a in host]
                # the host's peer up to 2^18 (a causal call at 2^20 takes ~8 s there: the
                # device run's budget)
                with_peer = on_gpu and n <= 1 << 18
                label = (f"poly19 t={order} g={degree}{' causal' if causal else ''} "
                         f"n=2^{n.bit_length() - 1}")
                yield Case(
                    label=label,
                    ours=_poly19(arrays, order, degree, causal),
                    peer=_poly19(list(host), order, degree, causal, "numpy")
                    if with_peer else None,
                    ours_name=f"polynomial on {sci.get_backend()}",
                    peer_name="polynomial, NumPy on the host" if with_peer else None,
                    params={"series": "poly19", "order": order, "degree": degree,
                            "causal": causal, "n": n, "d": D,
                            "rank": math.comb(D + degree, degree)},
                    check=_max_abs_difference if with_peer else None,
                    repeats=3,
                )


def _peak_bytes(fn) -> int:
    """Peak traced allocation of one call beyond what existed before (NumPy paths only)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _max_abs_difference(a, b) -> float:
    return float(np.abs(to_numpy(a) - to_numpy(b)).max())  # explicit device-to-host


def _single_thread(fn):
    """``fn`` with Numba and BLAS on one thread (restored afterwards)."""

    def run():
        # Numba, BLAS (where threadpoolctl is installed) and torch on one thread, restored after.
        with single_threaded():
            return fn()

    return run


def _cpu_seconds(fn, repeats: int = 5) -> float:
    """Minimum over ``repeats`` calls (after one warm-up) of the process CPU time of one call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _torch_leaves(order: int, n: int, seed: int = 3):
    import torch

    arrays = np.random.default_rng(seed).uniform(-1.0, 1.0, (2 * order - 1, n, D))
    return [torch.tensor(a, requires_grad=True) for a in arrays]


def _torch_forward(leaves, causal: bool, *, array_code: bool = False):
    """Exact order-t attention of torch leaves: the autograd.Function (what the public functions
    run) or, with ``array_code``, the array-API code differentiated by autograd."""
    from sci.tensor_attention import _array, higher_order_attention

    pairs = (len(leaves) - 1) // 2
    q, keys, values = leaves[0], leaves[1 : 1 + pairs], leaves[1 + pairs :]
    if array_code:
        return _array.standard_exact_attention(q, keys, values, 1.0 / D, causal)
    return higher_order_attention(q, keys, values, causal=causal)


def _torch_grad_cases(quick: bool):
    """Backward against forward of exact attention on torch CPU tensors (see the docstring)."""
    try:
        import torch
    except ImportError:
        print("  (torch not installed: the torch grad cases omitted)")
        return
    n3 = 64 if quick else 256
    n2 = 512 if quick else 4096
    for order, n, causal in ((3, n3, False), (3, n3, True), (2, n2, False)):
        leaves = _torch_leaves(order, n)
        out = _torch_forward(leaves, causal)
        upstream = torch.ones_like(out)

        def forward(leaves=leaves, causal=causal):
            return _torch_forward(leaves, causal)

        def backward(out=out, leaves=leaves, upstream=upstream):
            # the graph is kept (retain_graph): each repeat runs the backward alone
            return torch.autograd.grad(out, leaves, upstream, retain_graph=True)

        params = {"series": "torch-grad", "order": order, "n": n, "d": D, "causal": causal,
                  "dtype": "float64", "torch_threads": 1,
                  "node_saved_numbers": sum(t.numel() for t in out.grad_fn.saved_tensors),
                  "weights_n_to_the_t": n**order}
        if order == 3 and not causal:
            params["cpu_s"] = {
                "forward, one thread": _cpu_seconds(_single_thread(forward)),
                "backward, one thread": _cpu_seconds(_single_thread(backward)),
            }
        yield Case(
            label=f"torch grad t={order} n={n}{' causal' if causal else ''}",
            ours=_single_thread(forward),
            peer=_single_thread(backward),
            ours_name="torch forward (autograd.Function)",
            peer_name="recomputing backward",
            params=params,
            repeats=3 if quick else 5,
        )
    leaves = _torch_leaves(3, n3)

    def gradients(array_code):
        def run():
            out = _torch_forward(leaves, False, array_code=array_code)
            return torch.autograd.grad(out.sum(), leaves)

        return run

    def difference(a, b):
        return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))

    yield Case(
        label=f"torch fwd+bwd t=3 n={n3}",
        ours=_single_thread(gradients(False)),
        peer=_single_thread(gradients(True)),
        ours_name="autograd.Function (recomputing)",
        peer_name="autograd through the array code (stores weights)",
        params={"series": "torch-grad-vs-array", "order": 3, "n": n3, "d": D,
                "saved_numbers_function": saved_numbers(lambda: _torch_forward(leaves, False)),
                "saved_numbers_array_code": saved_numbers(
                    lambda: _torch_forward(leaves, False, array_code=True))},
        check=difference,
        repeats=3 if quick else 5,
    )


def _plain_autograd():
    """A context in which torch tensors take the array-API code of every method (autograd
    through it: the path before the recomputing Functions), for the saved-numbers baselines."""
    import contextlib

    from sci.tensor_attention import _array, _polynomial

    @contextlib.contextmanager
    def context():
        tables = (_array._WINDOWED_LIBRARY_IMPLEMENTATIONS,
                  _polynomial._STREAMED_SUMS_LIBRARY_IMPLEMENTATIONS)
        saved = [dict(t) for t in tables]
        try:
            for t in tables:
                t.clear()
            yield
        finally:
            for t, old in zip(tables, saved, strict=True):
                t.update(old)

    return context()


def _torch_window_and_poly_grad_cases(quick: bool):
    """Backward against forward of windowed tensor attention and of the polynomial method on
    torch CPU tensors, with the numbers autograd saves for the backward against those the plain
    autograd path (through the array-API code) saves."""
    try:
        import torch
    except ImportError:
        return
    n_window = 256 if quick else 2048
    window = (32, 32)
    n_poly = 512 if quick else 4096
    poly_degree = 4 if quick else DEGREE
    cases = [("window", n_window, True)] + [("poly", n_poly, c) for c in (True, False)]
    for kind, n, causal in cases:
        leaves = _torch_leaves(3, n, seed=5)

        def forward(leaves=leaves, kind=kind, causal=causal):
            if kind == "window":
                return tensor_attention(*leaves, window=window)
            return poly_tensor_attention(*leaves, degree=poly_degree, causal=causal)

        out = forward()
        upstream = torch.ones_like(out)

        def backward(out=out, leaves=leaves, upstream=upstream):
            # the graph is kept (retain_graph): each repeat runs the backward alone
            return torch.autograd.grad(out, leaves, upstream, retain_graph=True)

        with _plain_autograd():
            plain = kept_numbers(forward())
        params = {"series": f"torch-grad-{kind}", "order": 3, "n": n, "d": D, "d_v": D,
                  "causal": causal, "dtype": "float64", "torch_threads": 1,
                  "kept_numbers": kept_numbers(forward()),
                  "kept_numbers_plain_autograd": plain,
                  "input_numbers": sum(x.numel() for x in leaves),
                  "cpu_s": {"forward, one thread": _cpu_seconds(_single_thread(forward), 3),
                            "backward, one thread": _cpu_seconds(_single_thread(backward), 3)}}
        if kind == "window":
            params["window"] = list(window)
            label = f"torch grad window n={n} w={window[0]},{window[1]}"
        else:
            params["degree"] = poly_degree
            params["rank"] = math.comb(D + poly_degree, poly_degree)
            label = f"torch grad poly g={poly_degree} n={n}{' causal' if causal else ''}"
        yield Case(
            label=label,
            ours=_single_thread(forward),
            peer=_single_thread(backward),
            ours_name="torch forward",
            peer_name="backward (recomputing where causal/windowed)",
            params=params,
            repeats=3,
        )


def _accuracy(n: int) -> dict:
    """Errors against exact at n (entries ±1, so R = 1 is attained), and at g = 6 against n."""
    rng = np.random.default_rng(2)
    args = rng.choice([-1.0, 1.0], (5, n, D))
    exact = tensor_attention(*args)
    table = {}
    for method in ("taylor", "chebyshev"):
        for g in (4, 6, 8):
            approx = poly_tensor_attention(*args, degree=g, method=method)
            table[f"{method} g={g}"] = _max_abs_difference(approx, exact)
    for size in (64, 256, 1024):
        args = rng.choice([-1.0, 1.0], (5, size, D))
        table[f"taylor g=6 n={size}"] = _max_abs_difference(
            poly_tensor_attention(*args, degree=6), tensor_attention(*args))
    return table


def _cases(quick: bool):
    if sci.get_backend() == "cupy":  # the GPU record (issue 19): its own cases
        yield from _attention_gpu.cases(quick)
        yield from _poly19_cases(quick)
        return
    accuracy_n = 128 if quick else 256
    inputs = np.random.default_rng(2).choice([-1.0, 1.0], (5, accuracy_n, D))
    yield Case(
        label=f"accuracy n={accuracy_n}",
        ours=_poly(inputs),
        params={"series": "accuracy", "n": accuracy_n, "d": D, "entries": "±1",
                "max_abs_error": _accuracy(accuracy_n)},
        repeats=3,
    )
    exact_sizes = (64, 128, 256) if quick else (128, 256, 512)
    for n in exact_sizes:
        inputs = _inputs(n)
        numpy_peak = _peak_bytes(_exact(inputs, "numpy"))
        params = {"series": "exact", "n": n, "d": D, "numpy_peak_bytes": numpy_peak,
                  "input_bytes": int(inputs.nbytes)}
        if n == exact_sizes[-1]:
            params["cpu_s"] = {
                "numba kernel": _cpu_seconds(_exact(inputs, "numba")),
                "numba kernel, one thread": _cpu_seconds(_single_thread(_exact(inputs, "numba"))),
                "blocked NumPy": _cpu_seconds(_exact(inputs, "numpy")),
                "blocked NumPy, one thread": _cpu_seconds(_single_thread(_exact(inputs, "numpy"))),
            }
        yield Case(
            label=f"exact n={n}",
            ours=_exact(inputs, "numba"),
            peer=_exact(inputs, "numpy"),
            ours_name="numba kernel",
            peer_name="blocked NumPy",
            params=params,
            check=_max_abs_difference,
            repeats=7,
        )
    n = exact_sizes[-1]
    inputs = _inputs(n)
    yield Case(
        label=f"exact n={n}, 1 thread",
        ours=_single_thread(_exact(inputs, "numba")),
        peer=_single_thread(_exact(inputs, "numpy")),
        ours_name="numba kernel, one thread",
        peer_name="blocked NumPy, one thread",
        params={"series": "exact-1-thread", "n": n, "d": D},
        check=_max_abs_difference,
        repeats=7,
    )
    poly_sizes = (64, 256, 1024, 4096, 16384) if quick else (
        64, 256, 1024, 4096, 16384, 65536, 262144)
    exact_limit = 512 if quick else 1024
    for n in poly_sizes:
        inputs = _inputs(n, seed=1)
        with_exact = n <= exact_limit
        yield Case(
            label=f"poly n={n}",
            ours=_poly(inputs),
            peer=_exact(inputs, "numba") if with_exact else None,
            ours_name=f"polynomial (Taylor g={DEGREE}, r=210)",
            peer_name="exact numba kernel" if with_exact else None,
            params={"series": "poly", "n": n, "d": D, "degree": DEGREE,
                    "poly_peak_bytes": _peak_bytes(_poly(inputs)),
                    "input_bytes": int(inputs.nbytes)},
            check=_max_abs_difference if with_exact else None,
            repeats=2 if n >= 65536 or n >= 512 and with_exact else 3,
        )
    yield from _poly19_cases(quick)
    yield from _torch_grad_cases(quick)
    yield from _torch_window_and_poly_grad_cases(quick)


def _summarize(rows):
    if any(r["params"].get("series", "").startswith("gpu-") for r in rows):
        return {**_attention_gpu.summarize(rows), **_summarize_poly19(rows)}
    exact_rows = [r for r in rows if r["params"]["series"] == "exact"]
    poly_rows = [r for r in rows if r["params"]["series"] == "poly"]
    single = [r for r in rows if r["params"]["series"] == "exact-1-thread"]
    accuracy = [r for r in rows if r["params"]["series"] == "accuracy"]
    summary = {
        "speedup_numba_over_blocked_numpy": {
            r["params"]["n"]: round(r["ratio"], 2) for r in exact_rows
        },
        "speedup_one_numba_thread_over_blocked_numpy": {
            r["params"]["n"]: round(r["ratio"], 2) for r in single
        },
        "speedup_min_times_numba_over_blocked_numpy": {
            r["params"]["n"]: round(r["peer_min_s"] / r["ours_min_s"], 2) for r in exact_rows
        },
        "speedup_min_times_one_thread_each": {
            r["params"]["n"]: round(r["peer_min_s"] / r["ours_min_s"], 2) for r in single
        },
        "accuracy_max_abs_error_entries_pm1": accuracy[0]["params"]["max_abs_error"],
        "exact_max_abs_difference_numba_vs_numpy": max(r["discrepancy"] for r in exact_rows),
    }
    largest = exact_rows[-1]
    cpu = largest["params"]["cpu_s"]
    n_cubed = largest["params"]["n"] ** 3
    summary["cpu_seconds_at_largest_exact_n"] = {key: round(t, 4) for key, t in cpu.items()}
    summary["cpu_time_ratio_blocked_numpy_over_numba_one_thread_each"] = round(
        cpu["blocked NumPy, one thread"] / cpu["numba kernel, one thread"], 2)
    summary["numba_ns_per_logit_one_thread_cpu"] = round(
        cpu["numba kernel, one thread"] / n_cubed * 1e9, 3)
    # exact (Numba) timings: the exact series and the peers of the poly series
    exact_times = {r["params"]["n"]: r["ours_median_s"] for r in exact_rows}
    exact_times.update({r["params"]["n"]: r["peer_median_s"] for r in poly_rows if "ratio" in r})
    # n >= 256: below, a call lasts milliseconds and waking the second thread on a busy
    # machine (not the O(n^3) work) sets its time
    exact_n = sorted(n for n in exact_times if n >= 256)
    slope_exact = fitted_exponent(exact_n, [exact_times[n] for n in exact_n])
    summary["exact_fitted_exponent"] = round(slope_exact, 3)
    poly_n = [r["params"]["n"] for r in poly_rows]
    poly_t = [r["ours_median_s"] for r in poly_rows]
    large = [(n, t) for n, t in zip(poly_n, poly_t, strict=True) if n >= 1024]
    summary["poly_fitted_exponent_all_n"] = round(fitted_exponent(poly_n, poly_t), 3)
    if len(large) >= 2:
        summary["poly_fitted_exponent_n_ge_1024"] = round(
            fitted_exponent(*zip(*large, strict=True)), 3)
    faster = [r["params"]["n"] for r in poly_rows if "ratio" in r and r["ratio"] > 1]
    compared = [r["params"]["n"] for r in poly_rows if "ratio" in r]
    summary["crossover_n"] = (
        f"<= {min(compared)}" if faster and min(faster) == min(compared)
        else (min(faster) if faster else f"> {max(compared)}")
    )
    summary["poly_over_exact_max_abs_error"] = max(
        r["discrepancy"] for r in poly_rows if "discrepancy" in r)
    n_big = max(poly_n)
    largest_exact = max(exact_times)
    extrapolated = exact_times[largest_exact] * (n_big / largest_exact) ** slope_exact
    summary[f"EXTRAPOLATED_exact_seconds_at_n={n_big}"] = float(f"{extrapolated:.3g}")
    summary[f"measured_poly_seconds_at_n={n_big}"] = round(poly_t[-1], 3)
    summary["numpy_peak_MiB"] = {
        f"exact n={r['params']['n']}": round(r["params"]["numpy_peak_bytes"] / 2**20, 2)
        for r in exact_rows
    } | {
        f"poly n={r['params']['n']}": round(r["params"]["poly_peak_bytes"] / 2**20, 2)
        for r in poly_rows
    }
    summary.update(_summarize_poly19(rows))
    grad_rows = [r for r in rows if r["params"]["series"] == "torch-grad"]
    if grad_rows:
        summary["torch_backward_over_forward_time"] = {
            r["case"]: round(r["ratio"], 2) for r in grad_rows}
        cpu_grad = [r["params"]["cpu_s"] for r in grad_rows if "cpu_s" in r["params"]]
        if cpu_grad:
            summary["torch_backward_over_forward_cpu_time_t3_one_thread"] = round(
                cpu_grad[0]["backward, one thread"] / cpu_grad[0]["forward, one thread"], 2)
        summary["torch_node_saved_numbers_over_weights"] = {
            r["case"]: float(f"{p['node_saved_numbers'] / p['weights_n_to_the_t']:.3g}")
            for r in grad_rows for p in (r["params"],)}
    for kind in ("window", "poly"):
        kind_rows = [r for r in rows if r["params"]["series"] == f"torch-grad-{kind}"]
        if kind_rows:
            summary[f"torch_{kind}_backward_over_forward"] = {
                r["case"]: {"wall": round(r["ratio"], 2), "cpu_one_thread": round(
                    r["params"]["cpu_s"]["backward, one thread"]
                    / r["params"]["cpu_s"]["forward, one thread"], 2)}
                for r in kind_rows}
            summary[f"torch_{kind}_kept_numbers_plain_autograd_over_ours"] = {
                r["case"]: round(r["params"]["kept_numbers_plain_autograd"]
                                 / r["params"]["kept_numbers"], 1)
                for r in kind_rows}
    versus = [r for r in rows if r["params"]["series"] == "torch-grad-vs-array"]
    if versus:
        summary["torch_fwd_bwd_array_code_over_function_time"] = round(versus[0]["ratio"], 2)
        summary["torch_saved_numbers_array_code_over_function"] = round(
            versus[0]["params"]["saved_numbers_array_code"]
            / versus[0]["params"]["saved_numbers_function"], 1)
    summary["note"] = (
        "wall ratios depend on the machine's load (see machine.load_average): "
        "'speedup_*' are ratios of medians, 'speedup_min_times_*' of "
        "minima, the CPU times (process_time, minimum of 5) the least load-sensitive; exact times "
        f"beyond n={largest_exact} are extrapolated with the fitted exponent, not measured; "
        "peaks are tracemalloc (Python heap, NumPy paths; the Numba kernel allocates O(d) "
        "doubles per query, and n per query when d > 4, outside its view)"
    )
    return summary


def _summarize_poly19(rows) -> dict:
    """Seconds, slope of time against n and (on a GPU) speedup over the host NumPy path, per
    issue-19 workload."""
    out: dict = {}
    for order, degree in POLY19_WORKLOADS:
        for causal in (False, True):
            mine = [r for r in rows if r["params"]["series"] == "poly19"
                    and r["params"]["order"] == order and r["params"]["causal"] == causal]
            if not mine:
                continue
            key = f"t={order} g={degree}{' causal' if causal else ''}"
            sizes = [r["params"]["n"] for r in mine]
            times = [r["ours_median_s"] for r in mine]
            out.setdefault("poly19_seconds", {})[key] = {
                n: float(f"{t:.3g}") for n, t in zip(sizes, times, strict=True)}
            if len(mine) >= 2:
                out.setdefault("poly19_fitted_exponent", {})[key] = round(
                    fitted_exponent(sizes, times), 3)
            ratios = {r["params"]["n"]: round(r["ratio"], 1) for r in mine if "ratio" in r}
            if ratios:
                out.setdefault("poly19_speedup_over_host_numpy", {})[key] = ratios
    return out


BENCHMARK = Benchmark(
    name="tensor_attention",
    description="exact tensor attention (Numba vs blocked NumPy); polynomial method vs exact",
    cases=_cases,
    summarize=_summarize,
)

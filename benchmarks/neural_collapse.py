"""nc_metrics on large feature sets against plain NumPy; the UFM trainer per backend.

``nc_metrics``: N samples (1e6 in the full run), d = 512, K = 100 classes, float32 features
as a network would give them. ``sci`` streams the array in chunks with one d x d
accumulator (float64, BLAS syrk); the peer is the textbook two-pass NumPy code of the same
definitions on the whole array (class means by a one-hot product, H - mu_y, (H-mu_y)^T (H-mu_y),
the logits and the distances to the means for NC4), in the input's float32.

``train_ufm``: steps per second of full-batch gradient descent on the deep linear UFM, per
backend, against the same model and updates written with PyTorch autograd (CPU) when
installed; both start from the same initial point, and the final losses are compared.
"""

from __future__ import annotations

import os

import numpy as np

import sci
from benchmarks._harness import Benchmark, Case


def _features(N, d, K, seed=0):
    """Clustered float32 features generated chunk by chunk (no float64 copy of the whole)."""
    rng = np.random.default_rng(seed)
    centres = (3.0 * rng.standard_normal((K, d))).astype(np.float32)
    labels = rng.integers(0, K, size=N)
    H = np.empty((N, d), dtype=np.float32)
    step = 1 << 16
    for start in range(0, N, step):
        stop = min(N, start + step)
        H[start:stop] = rng.standard_normal((stop - start, d), dtype=np.float32)
        H[start:stop] += centres[labels[start:stop]]
    W = rng.standard_normal((K, d)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    return H, labels, W, b


def _plain_numpy_metrics(H, labels, W, b):
    """The definitions written directly with NumPy on the whole array (the peer)."""
    N, _ = H.shape
    K = W.shape[0]
    onehot = np.zeros((N, K), dtype=H.dtype)
    onehot[np.arange(N), labels] = 1
    counts = onehot.sum(axis=0)
    means = (onehot.T @ H) / counts[:, None]
    mu_G = H.mean(axis=0)
    dev = H - means[labels]
    sigma_W = dev.T @ dev / N
    centred = means - mu_G
    sigma_B = centred.T @ centred / K
    # The pseudo-inverse needs a cutoff at the float32 rounding level, or Sigma_B's null space
    # (d - K + 1 directions of rounding noise) dominates the trace.
    nc1 = np.trace(sigma_W @ np.linalg.pinv(sigma_B.astype(np.float64), rcond=1e-5,
                                            hermitian=True)) / K
    nc3 = np.linalg.norm(W.T / np.linalg.norm(W) - centred.T / np.linalg.norm(centred)) ** 2
    nearest = np.argmin((means * means).sum(1)[None, :] - 2 * H @ means.T, axis=1)
    nc4 = np.mean((H @ W.T + b).argmax(1) != nearest)
    return {"nc1": float(nc1), "nc3": float(nc3), "nc4": float(nc4)}


def _metrics_cases(quick):
    from sci.neural_collapse import nc_metrics

    # The full size of the issue is N = 1e6; on a loaded shared machine the recorded run may
    # use fewer samples (SCI_BENCH_NC_SAMPLES), which scales every timing linearly in N.
    N_full = int(os.environ.get("SCI_BENCH_NC_SAMPLES", 1_000_000))
    N, d, K = (100_000, 128, 20) if quick else (N_full, 512, 100)
    H, labels, W, b = _features(N, d, K)

    def check(ours, peer):
        # Relative NC1 difference: the peer accumulates in float32, sci in float64.
        return abs(ours.nc1 - peer["nc1"]) / abs(ours.nc1)

    for backend in ("numpy", "numba"):
        if backend not in sci.available_backends():
            continue

        def ours(backend=backend):
            with sci.use_backend(backend):
                return nc_metrics(H, labels, W=W, b=b)

        yield Case(
            label=f"nc_metrics N={N} d={d} K={K} [{backend}]",
            ours=ours, peer=lambda: _plain_numpy_metrics(H, labels, W, b),
            params=dict(N=N, d=d, K=K, backend=backend, dtype="float32"),
            peer_name="plain NumPy, two passes, in memory", check=check, repeats=3,
        )


def _torch_trainer(counts, depth, width, lam, steps, lr, seeds, seed):
    import torch

    K, N = len(counts), int(sum(counts))
    gen = np.random.default_rng(seed)
    shapes = [(width, width)] * (depth - 1) + [(K, width)]
    init = [gen.standard_normal((seeds, *s)) / np.sqrt(s[1]) for s in shapes]
    init.append(gen.standard_normal((seeds, N, width)) / np.sqrt(width))
    labels = torch.as_tensor(np.repeat(np.arange(K), counts))
    Y = torch.nn.functional.one_hot(labels, K).to(torch.float64)

    def run():
        params = [torch.tensor(p, requires_grad=True) for p in init]
        velocity = [torch.zeros_like(p) for p in params]
        for _ in range(steps):
            out = params[-1]
            for W in params[:-1]:
                out = out @ W.transpose(1, 2)
            loss = 0.5 * ((out - Y) ** 2).sum(dim=(1, 2)) / N
            loss = loss + 0.5 * lam * sum((p * p).sum(dim=tuple(range(1, p.ndim))) for p in params)
            total = loss.sum()
            grads = torch.autograd.grad(total, params)
            with torch.no_grad():
                for i, g in enumerate(grads):
                    velocity[i] = 0.9 * velocity[i] + g
                    params[i] -= lr * velocity[i]
        with torch.no_grad():  # the loss after the last update, as train_ufm reports it
            out = params[-1]
            for W in params[:-1]:
                out = out @ W.transpose(1, 2)
            loss = 0.5 * ((out - Y) ** 2).sum(dim=(1, 2)) / N
            loss = loss + 0.5 * lam * sum((p * p).sum(dim=tuple(range(1, p.ndim)))
                                          for p in params)
        return float(loss[0])

    return run


def _trainer_cases(quick):
    from sci.neural_collapse import train_ufm

    counts = [100] * 10
    depth, width, lam, lr, seeds = 3, 64, 5e-3, 0.02, 4
    steps = 20 if quick else 50
    try:
        import torch  # noqa: F401

        peer = _torch_trainer(counts, depth, width, lam, steps, lr, seeds, seed=0)
    except ImportError:
        print("  (torch not installed: the trainer runs without a peer)")
        peer = None
    for backend in ("numpy", "numba"):
        if backend not in sci.available_backends():
            continue

        def ours(backend=backend):
            with sci.use_backend(backend):
                run = train_ufm(counts, depth=depth, width=width, lambda_W=lam, lambda_H=lam,
                                steps=steps, lr=lr, momentum=0.9, num_seeds=seeds, rng=0,
                                record_every=steps, progress=False)
            return float(run.loss[0, -1])

        yield Case(
            label=f"train_ufm {steps} steps x{seeds} seeds [{backend}]",
            ours=ours, peer=peer if backend == "numpy" else None,
            params=dict(steps=steps, seeds=seeds, N=sum(counts), K=10, d=width, depth=depth,
                        backend=backend),
            peer_name="PyTorch autograd (CPU)" if peer and backend == "numpy" else None,
            check=lambda a, b: abs(a - b) / abs(b), repeats=3,
        )


def _cases(quick):
    yield from _metrics_cases(quick)
    yield from _trainer_cases(quick)


def _summarize(rows):
    out = {}
    for row in rows:
        if row["case"].startswith("train_ufm"):
            p = row["params"]
            out[f"train_ufm steps/s [{p['backend']}]"] = round(p["steps"] / row["ours_median_s"], 1)
            if "peer_median_s" in row:
                out["train_ufm steps/s [torch]"] = round(p["steps"] / row["peer_median_s"], 1)
        else:
            p = row["params"]
            rate = p["N"] / row["ours_median_s"]
            out[f"nc_metrics samples/s [{p['backend']}]"] = f"{rate:.3g}"
    return out


BENCHMARK = Benchmark(
    name="neural_collapse",
    description="nc_metrics (N=1e6, d=512, K=100) vs plain NumPy; train_ufm steps/s",
    cases=_cases,
    summarize=_summarize,
)

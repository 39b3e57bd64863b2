"""The GPU cases of ``python -m benchmarks tensor_attention --backend cupy`` (issue 19).

Every case runs side by side in one process on one device, the inputs the same on both sides
(entries uniform in [-1, 1], seeded), and checks the largest difference of the results:

* ``gpu tensor n=.. d=.. <dtype>``: exact 2-simplicial attention (``tensor_attention``, scale
  1/d) on CuPy arrays against the torch peer of ``../shared/gpu/probe.py``: per chunk of
  queries the (chunk, n^2) logits by ``einsum('il,jl,kl->ijk')``, ``softmax``, and a product
  with ``V1 ⊘ V2``; chunks of 2^27 logits. ``causal``: the same with the future pairs masked.
  ``torch-in``: the same call on torch CUDA tensors (sci's ``autograd.Function``, whose
  forward is the fused CuPy kernel reached through DLPack). ``tiled kernel``: the same call
  with every width sent to the tiled tensor-core kernel (at d = 4 and 16, where the per-thread
  kernel runs by default), to place the crossover between the two (``_gpu._TILED_FROM``).
* ``gpu order-4 n=..``: exact order-4 attention against the same peer with three key factors.
* ``gpu matrix n=.. d=.. <dtype>``: ``softmax_attention`` against torch's
  ``scaled_dot_product_attention`` (the same scale 1/d; ``causal`` with ``is_causal``).

The polynomial method's GPU cases are the ``poly19`` series of ``tensor_attention.py`` (run
under ``--backend cupy`` after these).

Each exact row records its logit count (``logits``) and the work per logit, so that the
performance page sets its achieved exp and FLOP rates against the device's measured ceilings
(``python -m benchmarks machine --backend cupy``). ``cases(quick, device="cpu")`` runs the
same cases on NumPy arrays and torch CPU tensors at small sizes: the dry run of a session
with no device.
"""

from __future__ import annotations

import numpy as np

from sci.backend import to_numpy
from sci.tensor_attention import softmax_attention, tensor_attention

from ._harness import Case

_PEER_CHUNK_LOGITS = 1 << 27  # the probe's chunk of the torch peer


def _max_abs_difference(a, b) -> float:
    return float(np.max(np.abs(np.asarray(to_numpy(a), dtype=np.float64)
                               - np.asarray(to_numpy(b), dtype=np.float64))))


def _host(n: int, d: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.0, 1.0, (n, d)) for _ in range(count)]


def torch_kronecker_peer(Q, keys, values, causal: bool = False):
    """The probe's torch formulation for order t = len(keys) + 1: per chunk of queries every
    logit s <Q_i, K1_j * ... * K_k> by one einsum, softmax over the n^(t-1) tuples (future
    tuples masked to -inf when ``causal``), product with the Kronecker values."""
    import torch

    n, d = Q.shape
    p = len(keys)
    letters = "jkmo"[:p]
    values_kron = values[0]
    for V in values[1:]:
        values_kron = (values_kron[:, None, :] * V[None, :, :]).reshape(-1, V.shape[1])
    chunk = max(1, min(n, _PEER_CHUNK_LOGITS // n**p))
    spec = "il," + ",".join(f"{c}l" for c in letters) + "->i" + letters
    if causal:
        grids = torch.meshgrid(*(torch.arange(n, device=Q.device),) * p, indexing="ij")
        latest = grids[0]
        for g in grids[1:]:
            latest = torch.maximum(latest, g)
        latest = latest.reshape(-1)
    out = torch.empty((n, values_kron.shape[1]), dtype=Q.dtype, device=Q.device)
    for s in range(0, n, chunk):
        logits = torch.einsum(spec, Q[s:s + chunk], *keys).reshape(-1, n**p) / d
        if causal:
            rows = torch.arange(s, min(n, s + chunk), device=Q.device)
            logits = logits.masked_fill(latest[None, :] > rows[:, None], -torch.inf)
        out[s:s + chunk] = torch.softmax(logits, dim=1) @ values_kron
    return out


def _sdpa(Q, K, V, causal: bool):
    import torch

    d = Q.shape[1]
    return torch.nn.functional.scaled_dot_product_attention(
        Q[None], K[None], V[None], is_causal=causal, scale=1.0 / d)[0]


def _with_tiled_kernel(fn, *args, **kwargs):
    """``fn`` with every width sent to the tiled kernel (rows of 16 or fewer columns go to the
    per-thread fused kernel otherwise)."""
    from sci.tensor_attention import _gpu

    before = _gpu._TILED_FROM
    _gpu._TILED_FROM = 1
    try:
        return fn(*args, **kwargs)
    finally:
        _gpu._TILED_FROM = before


def cases(quick: bool, *, device: str = "cuda"):
    """The cases above; ``device="cpu"`` runs them on NumPy arrays and torch CPU tensors at
    small sizes (a dry run of the code, not a measurement)."""
    import torch

    dry = device == "cpu"
    if dry:
        xp = np
    else:
        import cupy as xp

    def arrays(host, dtype):
        return [xp.asarray(h, dtype=dtype) for h in host]

    def tensors(host, dtype):
        return [torch.tensor(h, dtype=getattr(torch, dtype), device=device) for h in host]

    def run(fn, *args, **kwargs):
        def call():
            return fn(*args, **kwargs)
        return call

    dtypes = ("float64", "float32")
    scale = 8 if dry else 1
    tensor_sizes = [(256, 4), (512, 4)] if quick else [
        (256, 4), (512, 4), (1024, 4), (2048, 4), (1024, 16), (1024, 32), (256, 64),
        (1024, 64), (2048, 64)]
    for n, d in tensor_sizes:
        n //= scale
        host = _host(n, d, 5, seed=n + d)
        for dtype in dtypes:
            a, t = arrays(host, dtype), tensors(host, dtype)
            yield Case(
                label=f"gpu tensor n={n} d={d} {dtype}",
                ours=run(tensor_attention, *a),
                peer=run(torch_kronecker_peer, t[0], t[1:3], t[3:5]),
                ours_name="sci on CuPy" if not dry else "sci on NumPy (dry run)",
                peer_name="torch einsum + softmax (chunked)",
                params=_exact_params("exact", n, d, 3, dtype, dry),
                check=_max_abs_difference, repeats=3)
    if not dry:
        # the two kernels at the widths both take: where the tiled tensor-core kernel
        # overtakes the per-thread one (``_gpu._TILED_FROM``) is read off these rows
        for n, d in ([(512, 16)] if quick else [(1024, 4), (1024, 16)]):
            host = _host(n, d, 5, seed=n + d)
            for dtype in dtypes:
                a, t = arrays(host, dtype), tensors(host, dtype)
                yield Case(
                    label=f"gpu tensor n={n} d={d} {dtype} tiled kernel",
                    ours=run(_with_tiled_kernel, tensor_attention, *a),
                    peer=run(torch_kronecker_peer, t[0], t[1:3], t[3:5]),
                    ours_name="sci on CuPy, tiled kernel forced",
                    peer_name="torch einsum + softmax (chunked)",
                    params={**_exact_params("exact", n, d, 3, dtype, dry), "kernel": "tiled"},
                    check=_max_abs_difference, repeats=3)
    n = 256 if quick else 1024
    n //= scale
    host = _host(n, 4, 5, seed=7)
    a, t = arrays(host, "float64"), tensors(host, "float64")
    yield Case(
        label=f"gpu tensor n={n} d=4 float64 causal",
        ours=run(tensor_attention, *a, causal=True),
        peer=run(torch_kronecker_peer, t[0], t[1:3], t[3:5], causal=True),
        ours_name="sci on CuPy, causal", peer_name="torch einsum + softmax, masked",
        params=_exact_params("exact", n, 4, 3, "float64", dry, causal=True),
        check=_max_abs_difference, repeats=3)
    for dtype in dtypes:
        t = tensors(host, dtype)  # no requires_grad: the forward alone
        yield Case(
            label=f"gpu tensor torch-in n={n} d=4 {dtype}",
            ours=run(tensor_attention, *t),
            peer=run(torch_kronecker_peer, t[0], t[1:3], t[3:5]),
            ours_name="sci on torch tensors", peer_name="torch einsum + softmax (chunked)",
            params=_exact_params("exact", n, 4, 3, dtype, dry, inputs="torch"),
            check=_max_abs_difference, repeats=3)
    n = (64 if quick else 128) // scale * (2 if dry else 1)
    host = _host(n, 4, 7, seed=11)
    a, t = arrays(host, "float64"), tensors(host, "float64")
    from sci.tensor_attention import higher_order_attention

    yield Case(
        label=f"gpu order-4 n={n} d=4 float64",
        ours=run(higher_order_attention, a[0], a[1:4], a[4:7]),
        peer=run(torch_kronecker_peer, t[0], t[1:4], t[4:7]),
        ours_name="sci on CuPy", peer_name="torch einsum + softmax (chunked)",
        params=_exact_params("exact-order", n, 4, 4, "float64", dry),
        check=_max_abs_difference, repeats=3)
    matrix_cases = [(2048, 64, False)] if quick else [
        (8192, 64, False), (8192, 64, True), (8192, 4, False)]
    for n, d, causal in matrix_cases:
        n //= scale
        host = _host(n, d, 3, seed=n + d)
        for dtype in dtypes:
            a, t = arrays(host, dtype), tensors(host, dtype)
            yield Case(
                label=f"gpu matrix n={n} d={d} {dtype}{' causal' if causal else ''}",
                ours=run(softmax_attention, *a, causal=causal),
                peer=run(_sdpa, *t, causal),
                ours_name="sci on CuPy", peer_name="torch scaled_dot_product_attention",
                params=_exact_params("exact-matrix", n, d, 2, dtype, dry, causal=causal),
                check=_max_abs_difference, repeats=5)


def _exact_params(series, n, d, order, dtype, dry, *, causal=False, inputs=None):
    """A row's parameters, with its work: logits (masked ones excluded for a causal mask),
    one exp each and 2 d flops for the logit plus 2 d flops for the weighted values."""
    if causal:
        # tuples whose largest index is <= i: sum_i (i + 1)^(t - 1)
        logits = float(sum((i + 1) ** (order - 1) for i in range(n)))
    else:
        logits = float(n) ** order
    return {"series": f"gpu-{series}", "n": n, "d": d, "d_v": d, "order": order,
            "dtype": dtype, "causal": causal, "logits": logits,
            "flops_per_logit": 4 * d + 1, "backend": "numpy" if dry else "cupy",
            "inputs": inputs or ("numpy" if dry else "cupy")}


def summarize(rows) -> dict:
    """Ratios against the torch peers, and each exact kernel's logits per second."""
    out: dict = {}
    for row in rows:
        p = row["params"]
        if not p.get("series", "").startswith("gpu-"):
            continue
        if "ratio" in row:
            out[f"{row['case']}: peer / sci"] = round(row["ratio"], 3)
        if "logits" in p:
            out[f"{row['case']}: logits per s"] = float(f"{p['logits'] / row['ours_min_s']:.3g}")
    return out

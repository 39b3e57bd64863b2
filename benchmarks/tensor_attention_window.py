"""Windowed 2-simplicial attention against the reference formulation models use, in torch.

``tensor_attention(Q, K1, K2, V1, V2, window=(w1, w2))`` (causal: query i attends to the key
pairs (j, k) with i - w1 < j <= i and i - w2 < k <= i; Roy et al., "Fast and Simplex:
2-Simplicial Attention in Triton", 2025) on torch tensors, against the formulation of the
reference implementations (FBGEMM's and lucidrains' torch references): gather each query's
windows of K1, K2, V1, V2 (``unfold`` of the left-padded keys), form the (n, w1, w2) logits by
one einsum, mask the padding to -inf, softmax over the w1 w2 pairs, contract with the value
windows. That peer keeps the n w1 w2 weights (and its autograd graph keeps them again); sci's
forward streams blocks with the online softmax and its ``torch.autograd.Function`` saves
O(n d) numbers for the backward.

Cases (one process, the same inputs on both sides; the device is the CPU, or CUDA under
``--backend cupy`` where torch sees a GPU):

* ``window fwd n=.. w=.. <dtype>``: the forward alone;
* ``window fwd+bwd n=.. w=.. <dtype>``: forward and backward (gradients of all five inputs for
  a fixed upstream gradient), with the numbers each side's autograd graph saves recorded in
  ``params`` and the largest difference of the gradients as the discrepancy.

On the CPU, torch runs on one thread (the harness's ``single_threaded``), so the ratio is per
core. The summary gives the ratios and the saved-numbers ratio.
"""

from __future__ import annotations

import numpy as np

import sci

from ._autograd import kept_numbers
from ._harness import Benchmark, Case, single_threaded

D = 32


def _device():
    import torch

    if sci.get_backend() == "cupy" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _leaves(n: int, dtype, device, seed: int = 0):
    import torch

    rng = np.random.default_rng(seed)
    # entries ~ N(0, 1): logits s <Q, K1 * K2> with s = 1/sqrt(d) are O(1), as in a model
    arrays = rng.standard_normal((5, n, D))
    return [torch.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in arrays]


def reference_windowed(Q, K1, K2, V1, V2, window, scale):
    """The reference formulation (module docstring): every window gathered, n w1 w2 logits."""
    import torch

    w1, w2 = window

    def windows(X, w):  # (n, w, width): row i holds X[i - w + 1 .. i], zeros before 0
        padded = torch.nn.functional.pad(X, (0, 0, w - 1, 0))
        return padded.unfold(0, w, 1).transpose(1, 2)

    n = Q.shape[0]
    logits = scale * torch.einsum("nd,nad,nbd->nab", Q, windows(K1, w1), windows(K2, w2))
    i = torch.arange(n, device=Q.device)[:, None]
    valid1 = (i - w1 + 1 + torch.arange(w1, device=Q.device)[None, :]) >= 0
    valid2 = (i - w2 + 1 + torch.arange(w2, device=Q.device)[None, :]) >= 0
    logits = logits.masked_fill(~(valid1[:, :, None] & valid2[:, None, :]), -torch.inf)
    weights = torch.softmax(logits.reshape(n, -1), dim=1).reshape(n, w1, w2)
    return torch.einsum("nab,nad,nbd->nd", weights, windows(V1, w1), windows(V2, w2))


def _sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _cases(quick: bool):
    try:
        import torch
    except ImportError:
        print("  (torch not installed: no windowed-attention cases)")
        return
    from sci.tensor_attention import tensor_attention

    device = _device()
    sizes = [(256, (16, 16))] if quick else [(1024, (32, 32)), (2048, (64, 64)),
                                              (4096, (32, 128))]
    dtypes = [torch.float64] if quick else [torch.float32, torch.float64]
    scale = 1.0 / np.sqrt(D)
    for dtype in dtypes:
        name = str(dtype).split(".")[-1]
        for n, window in sizes:
            leaves = _leaves(n, dtype, device)
            upstream = torch.randn(n, D, dtype=dtype, device=device,
                                   generator=torch.Generator(device).manual_seed(1))

            def ours(leaves=leaves, window=window):
                with torch.no_grad():
                    out = tensor_attention(*leaves, window=window, scale="sqrt")
                _sync(device)
                return out

            def peer(leaves=leaves, window=window):
                with torch.no_grad():
                    out = reference_windowed(*leaves, window, scale)
                _sync(device)
                return out

            def both_ways(fn, leaves=leaves, upstream=upstream):
                def run():
                    out = fn()
                    grads = torch.autograd.grad(out, leaves, upstream)
                    _sync(device)
                    return torch.cat([g.reshape(-1) for g in grads])

                return run

            ours_grad = both_ways(
                lambda leaves=leaves, window=window: tensor_attention(
                    *leaves, window=window, scale="sqrt"))
            peer_grad = both_ways(
                lambda leaves=leaves, window=window: reference_windowed(
                    *leaves, window, scale))
            w1, w2 = window
            params = {"n": n, "w1": w1, "w2": w2, "d": D, "dtype": name, "device": device,
                      "pairs_per_query": w1 * w2}
            label = f"n={n} w={w1}x{w2} {name}"
            yield Case(
                label=f"window fwd {label}", ours=_threads(ours, device),
                peer=_threads(peer, device), params={**params, "pass": "forward"},
                ours_name="sci tensor_attention(window=)",
                peer_name="torch reference (gathered windows, einsum, softmax)",
                check=_max_difference, repeats=3 if quick else 5,
            )
            saved = {
                "ours_saved_numbers": kept_numbers(
                    tensor_attention(*leaves, window=window, scale="sqrt")),
                "peer_saved_numbers": kept_numbers(reference_windowed(*leaves, window, scale)),
            }
            yield Case(
                label=f"window fwd+bwd {label}", ours=_threads(ours_grad, device),
                peer=_threads(peer_grad, device),
                params={**params, "pass": "forward+backward", **saved},
                ours_name="sci tensor_attention(window=) + recomputing backward",
                peer_name="torch reference + autograd",
                check=_max_difference, repeats=3 if quick else 5,
            )


def _threads(fn, device):
    if device == "cuda":
        return fn

    def run():
        with single_threaded():
            return fn()

    return run


def _max_difference(ours, peer) -> float:
    """Largest difference relative to the peer's largest entry (both on one device)."""
    scale = float(peer.abs().max())
    return float((ours - peer).abs().max()) / max(scale, np.finfo(float).tiny)


def summarize(rows):
    summary = {}
    for row in rows:
        if "ratio" not in row:
            continue
        p = row["params"]
        key = f"{p['pass']} n={p['n']} w={p['w1']}x{p['w2']} {p['dtype']}"
        summary[f"speedup {key}"] = round(row["ratio"], 3)
        if "ours_saved_numbers" in p:
            summary[f"saved numbers peer/ours {key}"] = round(
                p["peer_saved_numbers"] / max(p["ours_saved_numbers"], 1), 1)
        summary[f"discrepancy {key}"] = row.get("discrepancy")
    return summary


BENCHMARK = Benchmark(
    name="tensor_attention_window",
    description="windowed 2-simplicial attention (forward, forward+backward) vs the torch "
    "reference formulation",
    cases=_cases,
    summarize=summarize,
)

"""nc_metrics for arrays of any array-API library (torch, array_api_strict, ...).

The heavy part, the class sums and the within-class scatter over N samples (O(N d^2)), runs in
the features' namespace and on their device, in row chunks of bounded memory, with the shift
of ``_accumulate._FeatureStatistics`` (each class's first sample is subtracted first, so nothing
cancels when the features have collapsed). The metrics are host floats: the small statistics
(K x d means, d x d covariance) are brought to the host once, explicitly, and the metrics
computed there by the NumPy code; NC4's second pass over H runs on the device. Labels are
integer indices and are read on the host (:func:`sci._validation.as_int_array`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._validation import as_float_array, as_int_array, check_integer, chunk_length
from ..backend import to_numpy, use_backend

_CHUNK_BYTES = 1 << 26


def nc_metrics_array(H, labels, *, W, b, num_classes, chunk_size, ctx):
    from ._metrics import _metrics

    xp = ctx.xp
    if num_classes is not None:
        num_classes = check_integer(num_classes, "num_classes", minimum=2)
    if chunk_size is not None:
        chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    H = xp.astype(as_float_array(H, "H", ndim=2, ctx=ctx), xp.float64)
    labels_host = as_int_array(labels, "labels")
    if labels_host.ndim != 1 or labels_host.shape[0] != H.shape[0]:
        raise ValueError(
            f"features and labels must have the same length: H has {H.shape[0]} rows, labels "
            f"has shape {tuple(labels_host.shape)}"
        )
    N, d = H.shape
    if d == 0:
        raise ValueError("H must have at least one feature column; got d = 0")
    if W is not None:
        W = xp.astype(as_float_array(W, "W", ndim=2, ctx=ctx), xp.float64)
        if num_classes is not None and check_integer(num_classes, "num_classes") != W.shape[0]:
            raise ValueError(
                f"num_classes={num_classes} but W has {W.shape[0]} rows (one per class)"
            )
        num_classes = int(W.shape[0])
    if b is not None:
        if W is None:
            raise ValueError("a bias b was given without a classifier W")
        b = xp.astype(as_float_array(b, "b", ndim=1, ctx=ctx), xp.float64)
        if b.shape[0] != W.shape[0]:
            raise ValueError(f"b must have shape ({W.shape[0]},) like W's rows; got {b.shape}")
    if N == 0:
        raise ValueError("no samples were given (H is empty)")
    low, high = int(labels_host.min()), int(labels_host.max())
    K = num_classes if num_classes is not None else high + 1
    if low < 0 or high >= K:
        raise ValueError(
            f"labels must be class indices in 0..{K - 1}; got values from {low} to {high}"
        )
    counts = np.bincount(labels_host, minlength=K)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"every class 0..{K - 1} needs at least one sample; classes "
            f"{empty.tolist()[:10]}{' ...' if empty.size > 10 else ''} have none"
        )
    if K < 2:
        raise ValueError(f"neural-collapse metrics need at least 2 classes; got {K}")
    _, first = np.unique(labels_host, return_index=True)
    shift = xp.take(H, ctx.asarray(first), axis=0)  # (K, d): a sample of each class
    classes = ctx.asarray(np.arange(K))
    sums = xp.zeros((K, d), dtype=xp.float64, device=ctx.device)
    gram = xp.zeros((d, d), dtype=xp.float64, device=ctx.device)
    step = chunk_size or chunk_length(N, 8 * (d + K), budget=_CHUNK_BYTES, minimum=256)
    for s in range(0, N, step):
        e = min(N, s + step)  # the standard leaves out-of-bounds slice ends unspecified
        y = ctx.asarray(labels_host[s:e])
        D = H[s:e, :] - xp.take(shift, y, axis=0)
        onehot = xp.astype(y[None, :] == classes[:, None], xp.float64)
        sums = sums + onehot @ D
        gram = gram + D.T @ D
    counts_dev = ctx.asarray(counts.astype(np.float64))
    offsets = sums / counts_dev[:, None]
    means = shift + offsets
    global_mean = (counts_dev @ means) / N
    within = (gram - (offsets * counts_dev[:, None]).T @ offsets) / N
    within = 0.5 * (within + within.T)
    summary = {"N": int(N), "counts": counts, "means": to_numpy(means),
               "global_mean": to_numpy(global_mean), "within": to_numpy(within)}

    def nc4(_means_host):
        # the second pass, on the device: classifier vs nearest class mean, one count read
        mean_sq = xp.sum(means * means, axis=1)
        mismatches = 0
        for s in range(0, N, step):
            h = H[s:min(N, s + step), :]
            logits = h @ W.T + (b if b is not None else 0.0)
            nearest = xp.argmin(mean_sq[None, :] - 2.0 * (h @ means.T), axis=1)
            mismatches = mismatches + xp.sum(xp.astype(xp.argmax(logits, axis=1) != nearest,
                                                       xp.int64))
        return int(mismatches) / N

    with use_backend("numpy"):
        result = _metrics(summary, K, d, None if W is None else to_numpy(W),
                          None if b is None else to_numpy(b), nc4)
    return dataclasses.replace(result, class_means=means, global_mean=global_mean,
                               within_class_covariance=within)

"""nc_metrics for arrays of any array-API library (CuPy, torch, array_api_strict, ...).

The heavy part, the class sums and the within-class scatter over N samples (O(N d^2)), runs in
the features' namespace and on their device, in row chunks of bounded memory, with the shift
of ``_accumulate._FeatureStatistics`` (each class's first sample is subtracted first, so nothing
cancels when the features have collapsed). The metrics are host floats: the small statistics
(K x d means, d x d covariance) are brought to the host once, explicitly, and the metrics
computed there by the NumPy code; NC4's second pass over H runs on the device. Labels are
integer indices and are read on the host (:func:`sci._validation.as_int_array`).

The pass is GEMM-shaped: per chunk of rows, one gather of the shifts, one subtraction, the
class sums as a one-hot product (K x n by n x d) and the scatter as D^T D, each chunk's
products added to float64 accumulators; on a GPU the chunks are as large as its free memory
allows (one or a few chunks: about a dozen launches each). float32 features are multiplied
in float32 (the GPU's fast path) in chunks of at most 2^16 rows.
Why the float32 products are accurate: D = h - s_y holds differences of samples of one class,
of the size of the within-class spread (the shift removes the class means' magnitude before
anything is squared, so the correction n_c m_c m_c^T is of the size of the scatter itself: at
most a bit is lost to it, never the ratio |mu|^2 / spread^2 that the one-pass sum h h^T
loses); the subtraction of two float32 samples rounds once, relatively to D; and a float32
dot product over n rows errs by about sqrt(n) eps32 relative to the sum of |D_i D_j|,
1.5e-5 at 2^16 rows, bounded in n by the chunk size since the chunks are added in float64.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._validation import as_float_array, as_int_array, check_integer, chunk_length, memory_limit
from ..backend import to_numpy, use_backend
from ..backend._arrays import library_of

_CHUNK_BYTES = 1 << 26
# Rows of float32 features multiplied in float32 at once: the rounding of a product of two
# float32 columns over n rows grows like sqrt(n) eps32 (about 1.5e-5 at 2^16 rows, against the
# inputs' own 6e-8); the chunks' products are added in float64, so N does not enter it.
FLOAT32_CHUNK_ROWS = 1 << 16


def _same_library(x, ctx) -> bool:
    """Whether ``x`` is an array of ``ctx``'s library on its device (used there, uncopied)."""
    if isinstance(x, list | tuple) or library_of(x) != ctx.library:
        return False
    import array_api_compat

    return array_api_compat.device(x) == ctx.device


def _on_gpu(ctx) -> bool:
    return ctx.library == "cupy" or getattr(ctx.device, "type", None) == "cuda"


def _chunk_rows(N: int, d: int, K: int, float32: bool, ctx) -> int:
    """Rows per chunk of the pass: on a GPU as many rows of D and of the one-hot block as an
    eighth of its free memory holds (the gathered shifts, as large as D, fit in the rest), so
    that a pass is a few large
    products rather than many small launches; elsewhere about 64 MiB (BLAS runs at full speed
    and no copy of the whole input is made). float32: at most FLOAT32_CHUNK_ROWS."""
    itemsize = 4 if float32 else 8
    budget = memory_limit(ctx) / 8 if _on_gpu(ctx) else _CHUNK_BYTES
    rows = chunk_length(N, itemsize * (d + K), budget=budget, minimum=256)
    return min(rows, FLOAT32_CHUNK_ROWS) if float32 else rows


def first_indices(labels: np.ndarray, K: int) -> np.ndarray:
    """The index of the first sample of each class 0..K-1 (every class present), reading
    only as far into ``labels`` as the last class's first appearance, in growing blocks
    (``np.unique`` of all N labels is a sort: 80 ms at N = 1e6)."""
    first = np.full(K, -1, dtype=np.int64)
    start, size = 0, 1024
    while start < labels.shape[0]:
        block = labels[start:start + size]
        present, where = np.unique(block, return_index=True)
        new = first[present] < 0
        first[present[new]] = where[new] + start
        if not (first < 0).any():
            break
        start, size = start + size, 4 * size
    return first


def nc_metrics_array(H, labels, *, W, b, num_classes, chunk_size, ctx):
    from ._metrics import _metrics

    xp = ctx.xp
    if num_classes is not None:
        num_classes = check_integer(num_classes, "num_classes", minimum=2)
    if chunk_size is not None:
        chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    # float32 features are read and multiplied in float32 (see _chunk_rows for the accuracy),
    # every other dtype in float64; the accumulators are float64 whatever the input.
    H = as_float_array(H, "H", ndim=2, ctx=ctx)
    work = xp.float32 if H.dtype == xp.float32 else xp.float64
    H = xp.astype(H, work, copy=False)
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
    # the labels on the device once (no copy when they are there already)
    labels_dev = ctx.asarray(labels) if _same_library(labels, ctx) \
        and xp.isdtype(labels.dtype, "integral") else ctx.asarray(labels_host)
    shift = xp.take(H, ctx.asarray(first_indices(labels_host, K)), axis=0)  # (K, d)
    classes = xp.arange(K, device=ctx.device)
    sums = gram = None
    step = chunk_size or _chunk_rows(N, d, K, work == xp.float32, ctx)
    for s in range(0, N, step):
        e = min(N, s + step)  # the standard leaves out-of-bounds slice ends unspecified
        y = labels_dev[s:e]
        D = H[s:e, :] - xp.take(shift, y, axis=0)
        onehot = xp.astype(y[None, :] == classes[:, None], work)
        part_sums = xp.astype(onehot @ D, xp.float64, copy=False)
        part_gram = xp.astype(D.T @ D, xp.float64, copy=False)
        sums = part_sums if sums is None else sums + part_sums
        gram = part_gram if gram is None else gram + part_gram
    counts_dev = ctx.asarray(counts.astype(np.float64))
    offsets = sums / counts_dev[:, None]
    means = xp.astype(shift, xp.float64) + offsets
    global_mean = (counts_dev @ means) / N
    within = (gram - (offsets * counts_dev[:, None]).T @ offsets) / N
    within = 0.5 * (within + within.T)
    # the one read of the statistics: means, global mean and covariance packed together
    packed = to_numpy(xp.concat([xp.reshape(means, (-1,)), global_mean,
                                 xp.reshape(within, (-1,))]))
    summary = {"N": int(N), "counts": counts, "means": packed[:K * d].reshape(K, d),
               "global_mean": packed[K * d:K * d + d],
               "within": packed[K * d + d:].reshape(d, d)}

    def nc4(_means_host):
        # the second pass, on the device: classifier vs nearest class mean, one count read
        mean_sq = xp.sum(means * means, axis=1)
        mismatches = 0
        for s in range(0, N, step):
            h = xp.astype(H[s:min(N, s + step), :], xp.float64, copy=False)
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

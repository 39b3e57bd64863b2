"""nc_metrics of Dask arrays: per-chunk statistics merged by a tree reduction (never two
chunks in a task), and NC4 as a second pass of one task per chunk."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .._validation import as_float_array, as_int_array, check_dask_rows
from ..backend import array_namespace, asarray
from ._accumulate import _FeatureStatistics, _nc4_counts, _symmetrised_gram


def _chunk_statistics(H: Any, labels: Any, num_classes: int | None) -> dict[str, Any]:
    """Counts, shifts, mean offsets and within-class scatter of one chunk (see ``_merge``)."""
    stats = _FeatureStatistics(num_classes)
    stats.update(H, labels)
    xp = stats.xp
    counts = stats.counts
    offsets = stats.sums / asarray(np.maximum(counts, 1).astype(np.float64))[:, None]
    gram = _symmetrised_gram(stats.gram, xp, stats.gram_upper_only)
    scatter = gram - (offsets * asarray(counts.astype(np.float64))[:, None]).T @ offsets
    return {"counts": counts, "shift": stats.shift, "offsets": offsets, "scatter": scatter}


def _padded(part: dict[str, Any], K: int) -> dict[str, Any]:
    """``part`` with zero rows for the classes ``part["counts"].size .. K - 1``."""
    extra = K - part["counts"].size
    if extra == 0:
        return part
    xp = array_namespace()
    d = part["scatter"].shape[0]
    pad = xp.zeros((extra, d))
    return {
        "counts": np.concatenate([part["counts"], np.zeros(extra, dtype=np.int64)]),
        "shift": xp.concatenate([part["shift"], pad]),
        "offsets": xp.concatenate([part["offsets"], pad]),
        "scatter": part["scatter"],
    }


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Statistics of two disjoint sets of samples from those of each.

    Class c of each side has the mean ``shift + offset``; the merged one keeps side a's shift
    (a sample of the class) and the within-class scatter gains ``n_a n_b / n delta delta^T``
    with ``delta = (shift_b - shift_a) + (offset_b - offset_a)``: differences of samples and
    of offsets, both of the size of the within-class spread, so nothing cancels when the
    features have collapsed (the argument of ``_FeatureStatistics``).
    """
    xp = array_namespace()
    K = max(a["counts"].size, b["counts"].size)
    a, b = _padded(a, K), _padded(b, K)
    n_a, n_b = a["counts"], b["counts"]
    n = n_a + n_b
    both = (n_a > 0) & (n_b > 0)
    weight = np.where(both, n_a * n_b / np.maximum(n, 1), 0.0)  # n_a n_b / n; 0 if one is empty
    fraction = np.where(both, n_b / np.maximum(n, 1), 0.0)  # n_b / n: the mean's update
    has_a = asarray(n_a > 0)[:, None]
    delta = (b["shift"] - a["shift"]) + (b["offsets"] - a["offsets"])
    delta = xp.where(asarray(both)[:, None], delta, 0.0)
    scatter = a["scatter"] + b["scatter"] + (delta * asarray(weight)[:, None]).T @ delta
    return {
        "counts": n,
        "shift": xp.where(has_a, a["shift"], b["shift"]),
        "offsets": xp.where(has_a, a["offsets"] + asarray(fraction)[:, None] * delta,
                            b["offsets"]),
        "scatter": scatter,
    }


def _summary_of(part: dict[str, Any], num_classes: int | None) -> dict[str, Any]:
    """The merged statistics in the accumulator's form, finalised (with its checks)."""
    if num_classes is not None:
        part = _padded(part, num_classes)
    stats = _FeatureStatistics(num_classes)
    stats.K = part["counts"].size
    stats.d = int(part["scatter"].shape[0])
    stats.counts = part["counts"]
    counts = asarray(part["counts"].astype(np.float64))[:, None]
    stats.shift = part["shift"]
    stats.sums = part["offsets"] * counts
    # finalise subtracts sum_c n_c m_c m_c^T again: the offsets m_c are of the size of the
    # within-class spread, so the round trip costs rounding of that size only.
    stats.gram = part["scatter"] + (part["offsets"] * counts).T @ part["offsets"]
    stats.gram_upper_only = False
    return stats.finalise()


def _tree(items: list, combine: Callable[[Any, Any], Any]) -> Any:
    """Pairwise reduction of ``items`` (Delayed objects), in order: depth log2(len)."""
    while len(items) > 1:
        items = [combine(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


def _dask_inputs(H: Any, labels: Any):
    """H (N, d) with whole rows per chunk and labels chunked alike, checked from the graph."""
    from .. import _dask

    label_chunks = -1
    if not _dask.is_dask_array(H):
        H = as_float_array(H, "H", ndim=2)
        if _dask.is_dask_array(labels) and labels.ndim == 1 and labels.shape[0] == H.shape[0]:
            label_chunks = labels.chunks[0]  # else the length check below says what is wrong
    H = check_dask_rows(H, "H", ndim=2, shape="(N, d), one row per sample",
                        row_chunks=label_chunks)
    if not _dask.is_dask_array(labels):
        labels = as_int_array(labels, "labels")
    if labels.ndim != 1 or labels.shape[0] != H.shape[0]:
        raise ValueError(
            f"features and labels must have the same length: H has {H.shape[0]} rows, labels "
            f"has shape {tuple(labels.shape)}"
        )
    if labels.dtype.kind not in "iuf":
        raise TypeError(f"labels must be integers; got dtype {labels.dtype}")
    if _dask.is_dask_array(labels):
        _dask.check_known_chunks(labels, "labels")
        labels = labels.rechunk((H.chunks[0],))
    else:
        labels = _dask.as_dask(labels, chunks=(H.chunks[0],))
    return H, labels


def _dask_statistics(H: Any, labels: Any, num_classes: int | None, W: Any, b: Any):
    """(summary, K, d, nc4) of Dask features: per-chunk statistics and a tree of merges,
    computed now; ``nc4(means)``: a second pass, one task per chunk."""
    from dask import compute, delayed

    from .. import _dask

    H, labels = _dask_inputs(H, labels)
    backend = _dask.task_backend(H, labels)
    run = functools.partial(_dask.in_backend, backend=backend)
    H_blocks = H.to_delayed().ravel().tolist()
    label_blocks = labels.to_delayed().ravel().tolist()
    parts = [delayed(run(_chunk_statistics))(h, y, num_classes)
             for h, y in zip(H_blocks, label_blocks, strict=True)]
    merged = _tree(parts, lambda x, y: delayed(run(_merge))(x, y))
    (summary,) = compute(delayed(run(_summary_of))(merged, num_classes))

    def nc4(means: Any) -> float:
        tasks = [delayed(run(_nc4_counts))([(h, y)], W, b, means)
                 for h, y in zip(H_blocks, label_blocks, strict=True)]
        (pairs,) = compute(tasks)
        mismatches = sum(m for m, _ in pairs)
        total = sum(t for _, t in pairs)
        return mismatches / total

    return summary, int(summary["counts"].size), int(H.shape[1]), nc4

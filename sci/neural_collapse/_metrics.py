"""Neural-collapse metrics NC1-NC4 of real features, in one streaming pass over chunks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import (
    as_float_array,
    as_int_array,
    check_dask_rows,
    check_integer,
    check_memory,
    chunk_length,
)
from ..backend import (
    array_context,
    array_namespace,
    asarray,
    implementation,
    register,
    to_numpy,
)

__all__ = ["NCMetrics", "nc_metrics"]

# Rows per chunk when an in-memory array is streamed: about 64 MiB of float64 per chunk,
# big enough for BLAS to run at full speed, small enough never to copy the whole input.
_CHUNK_BYTES = 1 << 26


# ----------------------------------------------------------------------------------------
# Kernels (dispatch table): per-class sums of rows, and the accumulated Gram matrix D^T D.
# ----------------------------------------------------------------------------------------


@register("neural_collapse.class_sums", "array")
def _class_sums_array(D: Any, labels: Any, K: int) -> Any:
    """Per-class row sums as a one-hot matrix product (BLAS; also NumPy's fastest way)."""
    xp = array_namespace()
    onehot = (labels[None, :] == xp.arange(K)[:, None]).astype(D.dtype)
    return onehot @ D


@register("neural_collapse.accumulate_gram", "array")
def _accumulate_gram_array(gram: Any, D: Any) -> Any:
    """``gram + D^T D`` (full matrix)."""
    return gram + D.T @ D


@register("neural_collapse.accumulate_gram", "numpy")
def _accumulate_gram_numpy(gram: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``gram + D^T D`` on the upper triangle only, with BLAS syrk (half the flops of gemm).

    ``gram`` must be Fortran-ordered; a C-ordered ``D`` (n, d) is a Fortran-ordered ``D^T``,
    so syrk with ``trans=0`` reads it without a copy. The lower triangle is left stale and is
    restored by :func:`_symmetrised_gram`.
    """
    from scipy.linalg import blas

    syrk = blas.dsyrk if D.dtype == np.float64 else blas.ssyrk
    D = np.ascontiguousarray(D)
    return syrk(1.0, D.T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)


# What each implementation leaves in the Gram accumulator is part of its registration, read
# from the table by the accumulator (not an identity test on the function).
_accumulate_gram_numpy.upper_only = True


register("neural_collapse.class_sums", "numba", "sci.neural_collapse._cpu:class_sums")
register("neural_collapse.nc_metrics", "array", "sci.neural_collapse._array:nc_metrics_array")
register("neural_collapse.class_sums", "cupy", "sci.neural_collapse._gpu:class_sums")


def _symmetrised_gram(gram: Any, xp: Any, upper_only: bool) -> Any:
    if upper_only:
        upper = xp.triu(gram)
        return upper + xp.triu(gram, 1).T
    return 0.5 * (gram + gram.T)


# ----------------------------------------------------------------------------------------
# The streaming accumulator.
# ----------------------------------------------------------------------------------------


class _FeatureStatistics:
    """Sufficient statistics of (features, labels) chunks for NC1-NC3 in one pass.

    For each class c a shift s_c (the first sample of class c) is subtracted before anything
    is accumulated: D_i = h_i - s_{y_i}. Kept are the counts n_c,
    the per-class sums of D and one d x d matrix sum_i D_i D_i^T, from which
    N Sigma_W = sum_i D_i D_i^T - sum_c n_c m_c m_c^T with m_c = mean of D over class c.
    Shifting by a point of the class makes m_c of the order of the within-class spread, so the
    subtraction does not cancel even when the features have collapsed (Sigma_W << Sigma_B),
    which is exactly the regime these metrics are used in.
    """

    def __init__(self, num_classes: int | None):
        self.xp = array_namespace()
        self.K = num_classes or 0
        self.fixed_K = num_classes is not None
        self.d: int | None = None
        self.counts = np.zeros(self.K, dtype=np.int64)
        self.gram_upper_only = False

    def _grow(self, K: int) -> None:
        xp = self.xp
        extra = K - self.K
        self.counts = np.concatenate([self.counts, np.zeros(extra, dtype=np.int64)])
        self.sums = xp.concatenate([self.sums, xp.zeros((extra, self.d))])
        self.shift = xp.concatenate([self.shift, xp.zeros((extra, self.d))])
        self.K = K

    def update(self, H: Any, labels: Any) -> None:
        xp = self.xp
        H = as_float_array(H, "H", ndim=2)
        labels = as_int_array(labels, "labels")
        if labels.ndim != 1 or labels.shape[0] != H.shape[0]:
            raise ValueError(
                f"labels must have one entry per row of H; got labels of shape "
                f"{tuple(labels.shape)} for H of shape {tuple(H.shape)}"
            )
        if self.d is None:
            self.d = int(H.shape[1])
            if self.d == 0:
                raise ValueError("H must have at least one feature column; got d = 0")
            check_memory(
                8.0 * (2 * self.d * self.d + 2 * max(self.K, 1) * self.d),
                f"the float64 accumulators of nc_metrics for d = {self.d}",
                hint="project the features to fewer dimensions first",
            )
            self.sums = xp.zeros((self.K, self.d))
            self.shift = xp.zeros((self.K, self.d))
            accumulate = implementation("neural_collapse.accumulate_gram")
            self.gram_upper_only = getattr(accumulate, "upper_only", False)
            order = "F" if self.gram_upper_only else "C"
            self.gram = xp.zeros((self.d, self.d), order=order)
        elif H.shape[1] != self.d:
            raise ValueError(
                f"every chunk of H must have the same number of columns; got {H.shape[1]} "
                f"after {self.d}"
            )
        if labels.size == 0:
            return
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (self.fixed_K and high >= self.K):
            bound = f"0..{self.K - 1}" if self.fixed_K else "non-negative integers"
            raise ValueError(
                f"labels must be class indices in {bound}; got values from {low} to {high}"
            )
        if high >= self.K:
            self._grow(high + 1)
        chunk_counts = np.bincount(labels, minlength=self.K)
        labels_dev = asarray(labels)
        new = np.flatnonzero((chunk_counts > 0) & (self.counts == 0))
        if new.size:
            # The first sample of a class is its shift: any point of the class keeps the
            # shifted values at the scale of the within-class spread.
            present, first = np.unique(labels, return_index=True)
            first_of = dict(zip(present.tolist(), first.tolist(), strict=True))
            rows = asarray(np.array([first_of[c] for c in new.tolist()]))
            self.shift[asarray(new)] = H[rows].astype(np.float64)
        D = xp.subtract(H, self.shift[labels_dev], dtype=np.float64)
        self.sums += implementation("neural_collapse.class_sums")(D, labels_dev, self.K)
        self.gram = implementation("neural_collapse.accumulate_gram")(self.gram, D)
        self.counts += chunk_counts

    def finalise(self) -> dict[str, Any]:
        xp = self.xp
        if self.d is None or self.counts.sum() == 0:
            raise ValueError("no samples were given (H is empty)")
        empty = np.flatnonzero(self.counts == 0)
        if empty.size:
            raise ValueError(
                f"every class 0..{self.K - 1} needs at least one sample; classes "
                f"{empty.tolist()[:10]}{' ...' if empty.size > 10 else ''} have none"
            )
        if self.K < 2:
            raise ValueError(f"neural-collapse metrics need at least 2 classes; got {self.K}")
        N = int(self.counts.sum())
        counts = asarray(self.counts.astype(np.float64))
        offsets = self.sums / counts[:, None]
        means = self.shift + offsets
        global_mean = (counts @ means) / N
        gram = _symmetrised_gram(self.gram, xp, self.gram_upper_only)
        within = (gram - (offsets * counts[:, None]).T @ offsets) / N
        return {
            "N": N,
            "counts": self.counts.copy(),
            "means": means,
            "global_mean": global_mean,
            "within": 0.5 * (within + within.T),
        }


# ----------------------------------------------------------------------------------------
# Dask arrays: per-chunk statistics merged by a tree reduction (never two chunks in a task).
# ----------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------
# Input handling: an array (streamed in row chunks) or an iterable of (H, labels) chunks.
# ----------------------------------------------------------------------------------------


def _chunks_of_arrays(H: Any, labels: Any, chunk_size: int) -> Callable[[], Iterator]:
    if isinstance(H, str | bytes):
        raise TypeError(f"H must be an array of shape (N, d); got {type(H).__name__}")
    H = asarray(H, name="H")
    if H.ndim != 2:
        raise ValueError(f"H must have shape (N, d), one row per sample; got {tuple(H.shape)}")
    labels = as_int_array(labels, "labels")
    if labels.ndim != 1 or labels.shape[0] != H.shape[0]:
        raise ValueError(
            f"features and labels must have the same length: H has {H.shape[0]} rows, labels "
            f"has shape {tuple(labels.shape)}"
        )
    N = H.shape[0]
    size = chunk_size or chunk_length(N, 8 * max(1, H.shape[1]), budget=_CHUNK_BYTES,
                                      minimum=256)

    def chunks() -> Iterator:
        for start in range(0, max(N, 1), size):
            yield H[start:start + size], labels[start:start + size]

    return chunks


def _chunks_of_iterable(source: Any) -> tuple[Callable[[], Iterator], bool]:
    """A factory of fresh chunk iterators and whether it can be called more than once."""
    if callable(source):
        return (lambda: iter(source())), True
    if not isinstance(source, Iterable) or isinstance(source, str | bytes):
        raise TypeError(
            "without labels, H must be an iterable of (features, labels) chunks or a function "
            f"returning one; got {type(source).__name__}"
        )
    if iter(source) is source:  # a generator or iterator: it can be read once only
        return (lambda: source), False
    return (lambda: iter(source)), True


def _pairs(chunks: Iterator) -> Iterator[tuple[Any, Any]]:
    for item in chunks:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(
                "each chunk must be a pair (features of shape (n, d), labels of shape (n,)); "
                f"got {type(item).__name__}"
            )
        yield item[0], item[1]


# ----------------------------------------------------------------------------------------
# The metrics.
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NCMetrics:
    """Neural-collapse metrics of one set of features (see :func:`nc_metrics`).

    Attributes ending in ``_classifiers`` and the NC3/NC4 values are ``None`` when no
    classifier ``W`` was given. Scalars are Python floats; arrays belong to the backend.
    """

    nc1: float
    """Tr(Sigma_W Sigma_B^+)/K (Papyan et al.)."""
    nc2_equinorm_means: float
    """Std_c / Avg_c of the centred class-mean norms ``||mu_c - mu_G||``."""
    nc2_equiangle: float
    """Std over pairs c < c' of the cosines of the centred class means."""
    nc2_maxangle: float
    """Avg over pairs c < c' of ``|cos(mu_c - mu_G, mu_c' - mu_G) + 1/(K-1)|``."""
    nc2_etf_error_means: float
    """Distance of the centred means' normalised Gram matrix to the simplex ETF's."""
    nc2_of_error_means: float
    """Distance of the (uncentred) means' normalised Gram matrix to an orthogonal frame's."""
    nc2_gof_error_means: float
    """Off-diagonal part of the (uncentred) means' normalised Gram matrix."""
    nc2_equinorm_classifiers: float | None
    nc2_equiangle_classifiers: float | None
    nc2_maxangle_classifiers: float | None
    nc2_etf_error: float | None
    """``||WW^T/||WW^T||_F - (I - 11^T/K)/sqrt(K-1)||_F`` (Zhu et al.)."""
    nc2_of_error: float | None
    """``||WW^T/||WW^T||_F - I/sqrt(K)||_F`` (orthogonal frame, Dang et al.)."""
    nc2_gof_error: float | None
    """``||offdiag(WW^T)||_F/||WW^T||_F`` (general orthogonal frame, Dang et al.)."""
    nc3: float | None
    """``||W^T/||W||_F - M/||M||_F||_F^2`` with M the centred class means."""
    nc3_uncentred: float | None
    """As nc3 with the uncentred class means (the bias-free geometry)."""
    nc4: float | None
    """Fraction of samples where the classifier and the nearest class mean disagree."""
    num_samples: int
    class_counts: np.ndarray = field(repr=False)
    class_means: Any = field(repr=False)
    """(K, d) class means mu_c."""
    global_mean: Any = field(repr=False)
    within_class_covariance: Any = field(repr=False)
    """(d, d) Sigma_W."""


def _std_over_mean(values: Any) -> float:
    values = to_numpy(values)
    mean = np.mean(values)
    if mean == 0.0:  # all norms zero (the centred means vanish): undefined, as the cosines
        return float("nan")
    return float(np.std(values, ddof=1) / mean)


def _cosine_pairs(V: Any) -> np.ndarray:
    """Cosines between rows c < c' of V (host array)."""
    xp = array_namespace()
    norms = xp.linalg.norm(V, axis=1)
    if float(to_numpy(norms).min()) == 0.0:
        return np.full(V.shape[0] * (V.shape[0] - 1) // 2, np.nan)
    cos = to_numpy((V @ V.T) / (norms[:, None] * norms[None, :]))
    return cos[np.triu_indices(V.shape[0], 1)]


def _gram_errors(V: Any) -> tuple[float, float, float]:
    """(ETF error, orthogonal-frame error, general-orthogonal-frame error) of the rows of V."""
    xp = array_namespace()
    K = V.shape[0]
    gram = V @ V.T
    norm = float(xp.linalg.norm(gram))
    if norm == 0.0:
        return float("nan"), float("nan"), float("nan")
    gram = gram / norm
    eye = xp.eye(K)
    etf = float(xp.linalg.norm(gram - (eye - 1.0 / K) / np.sqrt(K - 1.0)))
    of = float(xp.linalg.norm(gram - eye / np.sqrt(K)))
    gof = float(xp.linalg.norm(gram - xp.diag(xp.diag(gram))))
    return etf, of, gof


def _nc1(within: Any, centred: Any, counts: np.ndarray, scale: float) -> float:
    """Tr(Sigma_W Sigma_B^+)/K with Sigma_B = centred^T centred / K, via a thin SVD.

    The centred means always satisfy sum_c n_c (mu_c - mu_G) = 0, so that direction of class
    space is removed exactly first (Q: orthonormal basis of n-perp); otherwise its rounding
    residue, of the size of the *uncentred* means times eps, would enter the pseudo-inverse
    as a huge eigenvalue. With centred^T Q = U S V^T, Sigma_B^+ = K U S^-2 U^T and
    NC1 = sum_i u_i^T Sigma_W u_i / s_i^2 over singular values above
    max(d, K) * eps * (s_max + scale), scale the size of the uncentred means.
    """
    xp = array_namespace()
    K = centred.shape[0]
    weights = counts / np.linalg.norm(counts)
    # Householder reflection mapping e_K to the unit count vector: its first K-1 columns
    # are an orthonormal basis of the complement of the counts.
    v = weights.copy()
    v[-1] -= 1.0
    reflect = np.eye(K) - 2.0 * np.outer(v, v) / (v @ v) if v @ v > 0 else np.eye(K)
    Q = asarray(reflect[:, : K - 1])
    U, s, _ = xp.linalg.svd(centred.T @ Q, full_matrices=False)
    s_host = to_numpy(s)
    if s_host.size == 0 or s_host[0] == 0.0:
        return float("inf")
    tol = max(centred.shape) * np.finfo(np.float64).eps * (s_host[0] + scale)
    keep_host = np.flatnonzero(s_host > tol)
    if keep_host.size == 0:
        # The class means coincide to rounding: no between-class spread to divide by (a
        # pseudo-inverse would say 0, i.e. perfect collapse, the opposite of the truth).
        return float("inf")
    keep = asarray(keep_host)
    U = U[:, keep]
    projected = xp.sum(U * (within @ U), axis=0)
    return float(to_numpy(xp.sum(projected / s[keep] ** 2)))


def _nc4(chunks: Iterator, W: Any, b: Any, means: Any) -> float:
    mismatches, total = _nc4_counts(chunks, W, b, means)
    return mismatches / total


def _nc4_counts(chunks: Iterator, W: Any, b: Any, means: Any) -> tuple[int, int]:
    """(samples where the classifier and the nearest mean disagree, samples)."""
    xp = array_namespace()
    K = W.shape[0]
    mean_sq = xp.sum(means * means, axis=1)
    both = xp.concatenate([W, means]).T  # one product gives the logits and h . mu_c
    mismatches = 0
    total = 0
    for H, _ in _pairs(chunks):
        H = as_float_array(H, "H", ndim=2).astype(np.float64, copy=False)
        products = H @ both
        logits = products[:, :K] + (b if b is not None else 0.0)
        nearest = xp.argmin(mean_sq[None, :] - 2.0 * products[:, K:], axis=1)
        mismatches += int(xp.sum(xp.argmax(logits, axis=1) != nearest))
        total += H.shape[0]
    return mismatches, total


def nc_metrics(
    H: Any,
    labels: Any = None,
    *,
    W: Any = None,
    b: Any = None,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> NCMetrics:
    """Neural-collapse metrics NC1-NC4 of features, streamed in one pass.

    Parameters
    ----------
    H : array_like of shape (N, d), or iterable of (features, labels) chunks
        The last-layer features, one row per sample. For data that do not fit in memory,
        pass (with ``labels=None``) an iterable of pairs ``(H_chunk (n, d), labels_chunk
        (n,))``, or a function with no arguments returning such an iterator (e.g. a loop over
        a data loader). A list or a function can be read twice, which NC4 needs; a one-shot
        generator gives NC1-NC3 only.
    labels : array_like of int, shape (N,), optional
        Class of each row, in ``0 .. K-1``. Required when ``H`` is an array.
    W : array_like, shape (K, d), optional
        Last-layer classifier (one row ``w_c`` per class); enables the ``*_classifiers``,
        NC3 and NC4 values.
    b : array_like, shape (K,), optional
        Classifier bias (used by NC4 only).
    num_classes : int, optional
        K. Default: ``W.shape[0]`` if ``W`` is given, else ``max(labels) + 1``.
    chunk_size : int, optional
        Rows per chunk when ``H`` is an array (default: about 64 MiB of float64). Dask
        arrays keep their own chunks.

    Returns
    -------
    NCMetrics
        ``nc1``, ``nc2_*``, ``nc3``, ``nc4`` and the class means, counts and :math:`\\Sigma_W`.

    Raises
    ------
    ValueError
        Labels outside ``0..K-1``, a class with no sample, fewer than 2 classes, features
        and labels of different lengths, NaN or infinite values, shapes that do not match
        (a transposed ``W`` is named as such), constant features (NC1-NC3 undefined), NC4
        asked of a one-shot iterator.
    TypeError
        Non-numeric features, non-integral labels, malformed chunks.

    Notes
    -----
    With class means :math:`\\mu_c`, global mean :math:`\\mu_G` (the mean of all samples),
    :math:`\\Sigma_W = \\frac1N\\sum_i (h_i-\\mu_{y_i})(h_i-\\mu_{y_i})^\\top` and
    :math:`\\Sigma_B = \\frac1K\\sum_c(\\mu_c-\\mu_G)(\\mu_c-\\mu_G)^\\top`
    :cite:p:`nc_papyan2020`:

    * NC1 :math:`= \\mathrm{Tr}(\\Sigma_W\\Sigma_B^\\dagger)/K`;
    * NC2: equinorm :math:`\\mathrm{Std}_c\\|\\mu_c-\\mu_G\\|/\\mathrm{Avg}_c\\|\\mu_c-\\mu_G\\|`
      (and for :math:`\\|w_c\\|`), equiangularity :math:`\\mathrm{Std}_{c<c'}\\cos`,
      max-angle :math:`\\mathrm{Avg}_{c<c'}|\\cos+1/(K-1)|` (standard deviations with
      ``ddof=1`` as in the reference code of Papyan et al.), the ETF error
      :math:`\\|WW^\\top/\\|WW^\\top\\|_F-(I-\\mathbf 1\\mathbf 1^\\top/K)/\\sqrt{K-1}\\|_F`
      :cite:p:`nc_zhu2021`, and the orthogonal-frame (target :math:`I/\\sqrt K`) and
      general-orthogonal-frame (off-diagonal part) errors of :cite:t:`dang2023`;
    * NC3 :math:`=\\|W^\\top/\\|W\\|_F-\\dot M/\\|\\dot M\\|_F\\|_F^2`, :math:`\\dot M` the
      centred means as columns;
    * NC4: the fraction of samples with
      :math:`\\arg\\max_c(w_c\\cdot h+b_c)\\neq\\arg\\min_c\\|h-\\mu_c\\|`.

    One pass accumulates the counts, the per-class sums and one :math:`d\\times d` matrix
    (memory :math:`O(Kd + d^2)`, independent of N), each sample shifted by the first sample
    of its class so that the one-pass formula
    :math:`N\\Sigma_W=\\sum_i D_iD_i^\\top-\\sum_c n_c m_cm_c^\\top` does not cancel when
    the features have collapsed. NC4 needs the final means, so it reads the data a second
    time. Everything is accumulated in float64.

    Dask arrays (:doc:`/dask`): ``H`` (N, d) chunked along the samples and ``labels`` (Dask,
    rechunked like ``H``'s rows, or NumPy) give one task per chunk computing that chunk's
    counts, class means and within-class scatter (each shifted by a sample of its class, as
    above), merged pairwise by a tree reduction with the parallel-variance update of Chan,
    Golub and LeVeque (1979), :math:`S = S_a + S_b + \\sum_c\\frac{n^a_cn^b_c}{n^a_c+n^b_c}
    \\delta_c\\delta_c^\\top`, :math:`\\delta_c = \\mu^b_c - \\mu^a_c`; NC4 is a second pass
    of one task per chunk. No task holds more than one chunk of ``H``; the result equals the
    in-memory one to rounding. Errors in a chunk (non-finite values, labels out of range)
    are raised when the graph is computed, i.e. by this call.


    Arrays of any library (the Backends page of the docs): NumPy arrays follow the switch (CuPy
    under ``use_backend("cupy")``) and stream through the accumulator above; torch tensors (CPU
    or CUDA), ``array_api_strict`` and other array-API arrays take the array path
    (``sci/neural_collapse/_array.py``): the class sums and the within-class scatter are
    accumulated on their device in row chunks, then the small statistics (K x d, d x d) are
    brought to the host once for the scalar metrics; the result's arrays stay in the features'
    library and device. Labels are read on the host. Not differentiable (the metrics are host
    floats).

    References
    ----------
    Papyan, Han, Donoho, PNAS 117 (2020) :cite:p:`nc_papyan2020`; Zhu et al., NeurIPS 2021
    :cite:p:`nc_zhu2021`; Dang et al., ICML 2023, Sec. 3 :cite:p:`dang2023`.

    Examples
    --------
    Features on a simplex ETF with isotropic noise:

    >>> import numpy as np
    >>> from sci.neural_collapse import nc_metrics, simplex_etf
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 500)
    >>> H = 5.0 * simplex_etf(4, 8)[labels] + 0.1 * rng.standard_normal((2000, 8))
    >>> m = nc_metrics(H, labels, W=simplex_etf(4, 8))
    >>> round(m.nc1, 4), m.nc4      # theory: 0.1**2 * (4 - 1)**2 / (4 * 5**2) = 0.0009
    (0.0009, 0.0)
    """
    from .. import _dask

    if labels is not None and not _dask.any_dask(H, labels):
        # torch, array_api_strict, ...: the "array" registration (NumPy and CuPy go on below)
        ctx = array_context(H, W, b, names=("H", "W", "b"))
        if ctx.backend == "array":
            return implementation("neural_collapse.nc_metrics", "array")(
                H, labels, W=W, b=b, num_classes=num_classes, chunk_size=chunk_size, ctx=ctx)
    if W is not None:
        W = as_float_array(W, "W", ndim=2).astype(np.float64, copy=False)
        features = getattr(H, "shape", None)
        if labels is not None and features is not None and len(features) == 2 \
                and W.shape[1] != features[1]:
            # Checked first: K is read from W's rows, so a transposed W would otherwise be
            # reported as classes without samples.
            hint = " (W looks transposed: pass W.T)" if W.shape[0] == features[1] else ""
            raise ValueError(
                f"W must have shape (K, d) with d = {features[1]} (H's columns), one row per "
                f"class; got {tuple(W.shape)}{hint}"
            )
        if num_classes is not None and check_integer(num_classes, "num_classes") != W.shape[0]:
            raise ValueError(
                f"num_classes={num_classes} but W has {W.shape[0]} rows (one per class)"
            )
        num_classes = int(W.shape[0])
    if b is not None:
        if W is None:
            raise ValueError("a bias b was given without a classifier W")
        b = as_float_array(b, "b", ndim=1).astype(np.float64, copy=False)
        if b.shape[0] != W.shape[0]:
            raise ValueError(f"b must have shape ({W.shape[0]},) like W's rows; got {b.shape}")
    if num_classes is not None:
        num_classes = check_integer(num_classes, "num_classes", minimum=2)
    if chunk_size is not None:
        chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)

    if labels is None and _dask.is_dask_array(H):
        raise ValueError("labels are required with Dask features H (a Dask or NumPy array)")
    if labels is not None and _dask.any_dask(H, labels):
        summary, K, d, nc4 = _dask_statistics(H, labels, num_classes, W, b)
        return _metrics(summary, K, d, W, b, nc4)
    if labels is not None:
        factory, rereadable = _chunks_of_arrays(H, labels, chunk_size), True
    else:
        factory, rereadable = _chunks_of_iterable(H)
    if W is not None and not rereadable:
        raise ValueError(
            "NC4 needs the class means before it can compare predictions, i.e. a second pass "
            "over the data, but H is a one-shot iterator; pass a list of chunks or a function "
            "returning a fresh iterator (or leave W out for NC1-NC3 only)"
        )

    stats = _FeatureStatistics(num_classes)
    for H_chunk, labels_chunk in _pairs(factory()):
        stats.update(H_chunk, labels_chunk)
    summary = stats.finalise()
    return _metrics(summary, stats.K, stats.d, W, b,
                    lambda means: _nc4(factory(), W, b, means))


def _metrics(summary: dict, K: int, d: int, W: Any, b: Any,
             nc4: Callable[[Any], float]) -> NCMetrics:
    """NC1-NC4 from the accumulated statistics (``nc4(means)`` reads the data again)."""
    means, global_mean = summary["means"], summary["global_mean"]
    if W is not None and W.shape[1] != d:
        raise ValueError(f"W must have shape (K, d) = ({K}, {d}); got {tuple(W.shape)}")
    xp = array_namespace()
    centred = means - global_mean[None, :]
    # one reduction read back, not two (a synchronisation each on a GPU)
    spread = xp.maximum(xp.max(xp.abs(centred)), xp.max(xp.abs(summary["within"])))
    if float(spread) == 0.0:
        # Sigma_W = Sigma_B = 0: NC1 = Tr(Sigma_W Sigma_B^+) / K is 0/0, NC2/NC3 have no
        # directions to compare. Said plainly rather than as inf and a RuntimeWarning.
        raise ValueError(
            "H is constant (every sample has the same features): the within-class and "
            "between-class covariances are both zero, so NC1-NC3 are undefined"
        )
    cos_means = _cosine_pairs(centred)
    etf_m, _, _ = _gram_errors(centred)
    _, of_m, gof_m = _gram_errors(means)
    values: dict[str, Any] = {
        "nc1": _nc1(summary["within"], centred, summary["counts"].astype(np.float64),
                    float(xp.linalg.norm(global_mean)) * np.sqrt(K)),
        "nc2_equinorm_means": _std_over_mean(xp.linalg.norm(centred, axis=1)),
        "nc2_equiangle": float(np.std(cos_means, ddof=1)) if K > 2 else 0.0,
        "nc2_maxangle": float(np.mean(np.abs(cos_means + 1.0 / (K - 1)))),
        "nc2_etf_error_means": etf_m,
        "nc2_of_error_means": of_m,
        "nc2_gof_error_means": gof_m,
    }
    if W is not None:
        cos_w = _cosine_pairs(W)
        etf_w, of_w, gof_w = _gram_errors(W)

        def nc3(M: Any) -> float:
            target = M / xp.linalg.norm(M)
            return float(xp.linalg.norm(W / xp.linalg.norm(W) - target) ** 2)

        values.update(
            nc2_equinorm_classifiers=_std_over_mean(xp.linalg.norm(W, axis=1)),
            nc2_equiangle_classifiers=float(np.std(cos_w, ddof=1)) if K > 2 else 0.0,
            nc2_maxangle_classifiers=float(np.mean(np.abs(cos_w + 1.0 / (K - 1)))),
            nc2_etf_error=etf_w, nc2_of_error=of_w, nc2_gof_error=gof_w,
            nc3=nc3(centred), nc3_uncentred=nc3(means),
            nc4=nc4(means),
        )
    else:
        values.update(
            nc2_equinorm_classifiers=None, nc2_equiangle_classifiers=None,
            nc2_maxangle_classifiers=None, nc2_etf_error=None, nc2_of_error=None,
            nc2_gof_error=None, nc3=None, nc3_uncentred=None, nc4=None,
        )
    return NCMetrics(
        **values,
        num_samples=summary["N"],
        class_counts=summary["counts"],
        class_means=means,
        global_mean=global_mean,
        within_class_covariance=summary["within"],
    )

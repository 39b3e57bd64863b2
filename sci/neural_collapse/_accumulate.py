"""The one-pass accumulator of nc_metrics: per-class sums and the Gram matrix of features
streamed in chunks (with the kernels it dispatches to), and the chunk readers.

The dispatch table decides which kernel accumulates the Gram matrix and, as its own entry
(``neural_collapse.gram_layout``), what that kernel leaves in the accumulator: the NumPy
kernel (BLAS syrk) fills the upper triangle only, the others the full matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .._validation import as_float_array, as_int_array, check_memory, chunk_length
from ..backend import array_namespace, asarray, implementation, register

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


# What each Gram kernel leaves in the accumulator, in the table beside the kernel: "upper"
# (syrk: the upper triangle; the lower one is stale) or "full".
register("neural_collapse.gram_layout", "numpy", lambda: "upper")
register("neural_collapse.gram_layout", "array", lambda: "full")
register("neural_collapse.class_sums", "numba", "sci.neural_collapse._cpu:class_sums")
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
            self.gram_upper_only = implementation("neural_collapse.gram_layout")() == "upper"
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

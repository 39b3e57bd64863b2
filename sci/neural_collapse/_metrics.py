"""Neural-collapse metrics NC1-NC4 of real features, in one streaming pass over chunks.

The pass itself is in ``_accumulate`` (NumPy and CuPy arrays, iterables of chunks), Dask
arrays go through ``_dask_tree``, other array-API libraries through ``_array``; this module
turns the accumulated statistics into the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import as_float_array, check_integer
from ..backend import array_context, array_namespace, asarray, implementation, register, to_numpy
from ._accumulate import (
    _chunks_of_arrays,
    _chunks_of_iterable,
    _FeatureStatistics,
    _nc4_counts,
    _pairs,
)
from ._dask_tree import _dask_statistics

__all__ = ["NCMetrics", "nc_metrics"]

register("neural_collapse.nc_metrics", "array", "sci.neural_collapse._array:nc_metrics_array")


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
        Rows per chunk when ``H`` is an array (default: about 64 MiB of float64; on a GPU an
        eighth of its free memory). Dask arrays keep their own chunks.

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
    time. Everything is accumulated in float64 (NumPy arrays are also multiplied in it).

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
    under ``use_backend("cupy")``) and stream through the accumulator above; CuPy arrays, torch
    tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array path
    (``sci/neural_collapse/_array.py``): per chunk of rows the class sums are one one-hot
    product and the within-class scatter one product :math:`D^\top D` (a GPU gets chunks as
    large as an eighth of its free memory: a few large products, not many small launches),
    added in float64; then the small statistics (K x d, d x d) are brought to the host in one
    read for the scalar metrics; the result's arrays stay in the features' library and
    device. There float32 features are multiplied in float32, in chunks of at most
    :math:`2^{16}` rows, so the statistics hold to about :math:`10^{-5}` relative to the
    within-class scatter (the shift keeps that free of the means' magnitude). Labels are
    read on the host. Not differentiable (the metrics are host floats).

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
        # CuPy, torch, array_api_strict, ...: the "array" registration, GEMM-shaped on the
        # device (NumPy arrays go on below)
        ctx = array_context(H, W, b, names=("H", "W", "b"))
        if ctx.backend == "array" or (ctx.backend == "cupy" and ctx.library == "cupy"
                                      and not isinstance(H, np.ndarray)):
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

"""Neural collapse: ETF geometry, NC metrics, deep linear unconstrained-feature models.

Frames
------
simplex_etf           -- K unit vectors with pairwise cosine -1/(K-1), in any d >= K-1
orthogonal_frame      -- K orthonormal vectors in any d >= K
frame_error           -- distance of a normalised Gram matrix to a frame's
is_simplex_etf        -- check: rows form a scaled, rotated simplex ETF
is_orthogonal_frame   -- check: rows are orthogonal with equal norms

Measuring collapse
------------------
nc_metrics            -- NC1-NC4 of real features, streamed in one pass over chunks
NCMetrics             -- the result

Deep linear unconstrained-feature models (Dang et al. 2023)
-----------------------------------------------------------
ufm_minimizer         -- the exact global minimiser (MSE imbalanced/balanced, CE balanced)
UFMMinimizer          -- the result: singular values, norms, Gram matrices, realised W_j, H
collapse_threshold    -- (M-1)^((M-1)/M)/M: class k collapses iff b/n_k >= it
ufm_objective         -- the regularised loss of given W_1..W_M, H (, b)
train_ufm             -- gradient descent on the model, batched over seeds, with NC history
UFMTraining           -- the result of train_ufm
"""

from ._frames import (
    frame_error,
    is_orthogonal_frame,
    is_simplex_etf,
    orthogonal_frame,
    simplex_etf,
)
from ._metrics import NCMetrics, nc_metrics
from ._train import UFMTraining, train_ufm
from ._ufm import UFMMinimizer, collapse_threshold, ufm_minimizer, ufm_objective

__all__ = [
    "NCMetrics",
    "UFMMinimizer",
    "UFMTraining",
    "collapse_threshold",
    "frame_error",
    "is_orthogonal_frame",
    "is_simplex_etf",
    "nc_metrics",
    "orthogonal_frame",
    "simplex_etf",
    "train_ufm",
    "ufm_minimizer",
    "ufm_objective",
]

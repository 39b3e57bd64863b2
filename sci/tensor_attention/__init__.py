"""Exact and bounded-entry polynomial-method matrix, tensor and order-t attention.

The algorithms of Alman and Song (arXiv:2302.13214, NeurIPS 2023; arXiv:2310.04064, ICLR 2024):
for entries bounded by B below (log n)^{1/t}, exp is replaced by a low-degree polynomial and the
order-t attention factors through rank C(d + g, g), in n^{1+o(1)} time.

Exact attention (online max shift, O(n d) memory beyond the inputs)
-------------------------------------------------------------------
softmax_attention            D^{-1} exp(s Q K^T) V
tensor_attention             D^{-1} A (V1 ⊘ V2), A[i,(j,k)] = exp(s Σ_l Q_il K1_jl K2_kl)
higher_order_attention       order t, with t - 1 key/value pairs

Every attention takes leading batch axes (..., n, d), broadcast as torch's
scaled_dot_product_attention does, values of any width d_v, and scale=None (1/d, the papers'),
"sqrt" (1/sqrt(d), torch's) or a number; tensor_attention(..., window=(w1, w2)) is the
windowed causal 2-simplicial attention, O(n w1 w2 d).

The polynomial method
---------------------
poly_attention               matrix attention, near-linear for B = o(sqrt(log n))
poly_tensor_attention        tensor attention, near-linear for B = o((log n)^{1/3})
poly_higher_order_attention  order t (Taylor, Chebyshev or random features; causal)
PolyAttentionInfo            what a polynomial run did (bound, degree, rank, predicted error)
NonPositiveDenominatorError  a polynomial gave a row sum <= 0

Building blocks
---------------
polynomial_features          the factor matrices (monomials of degree <= g)
feature_rank                 C(d + g, g)
exp_polynomial_coefficients  Taylor or Chebyshev coefficients of p ≈ exp on [-R, R]
exp_approximation_error      the predicted relative error of p on [-R, R]
select_degree                the smallest degree meeting a tolerance
logit_bound                  entrywise (B^t) or Hölder bound R on the logits
"""

from ._approximation import (
    exp_approximation_error,
    exp_polynomial_coefficients,
    logit_bound,
    select_degree,
)
from ._exact import higher_order_attention, softmax_attention, tensor_attention
from ._features import feature_rank, polynomial_features
from ._polynomial import (
    NonPositiveDenominatorError,
    PolyAttentionInfo,
    poly_attention,
    poly_higher_order_attention,
    poly_tensor_attention,
)

__all__ = [
    "NonPositiveDenominatorError",
    "PolyAttentionInfo",
    "exp_approximation_error",
    "exp_polynomial_coefficients",
    "feature_rank",
    "higher_order_attention",
    "logit_bound",
    "poly_attention",
    "poly_higher_order_attention",
    "poly_tensor_attention",
    "polynomial_features",
    "select_degree",
    "softmax_attention",
    "tensor_attention",
]

"""Random-matrix generalization and training curves (Advani, Saxe & Sompolinsky 2020).

The Marchenko–Pastur law
------------------------
marchenko_pastur_support      -- edges (1 -/+ sqrt(alpha))^2 of the bulk
marchenko_pastur_pdf          -- density of the continuous part (mass min(1, alpha))
marchenko_pastur_quadrature   -- Gauss rule of the bulk (exact mass and mean for every alpha)
"""

from ._marchenko_pastur import (
    marchenko_pastur_pdf,
    marchenko_pastur_quadrature,
    marchenko_pastur_support,
)

__all__ = [
    "marchenko_pastur_pdf",
    "marchenko_pastur_quadrature",
    "marchenko_pastur_support",
]

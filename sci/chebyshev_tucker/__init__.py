"""Chebyshev-Tucker format and range-separated long-range electrostatics.

A function on a box is interpolated at Chebyshev (Lobatto) points, its coefficient tensor
compressed to Tucker form with epsilon-ranks; sums of separable terms (the multi-particle
long-range Coulomb potential) go through the reduced HOSVD without forming the full tensor
(Benner, Khoromskij, Khoromskaia, Sun, arXiv:2503.01696). Factor samples on equispaced grids
are fitted by Floater-Hormann rational interpolation (stable between the grid points).

Chebyshev interpolation
-----------------------
chebyshev_points          -- Lobatto points, ascending, on any interval
values_to_coefficients    -- values at the points -> Chebyshev coefficients (DCT-I per axis)
coefficients_to_values    -- the inverse
chebyshev_vandermonde     -- T_p at arbitrary points

Tucker decompositions
---------------------
TuckerTensor              -- core + orthonormal factors (+ mode singular values, error)
hosvd                     -- truncated HOSVD with epsilon-ranks or fixed ranks
hooi                      -- HOOI (ALS) refinement with a subspace convergence test
reduced_hosvd             -- RHOSVD of a CP tensor, recompressed to epsilon-ranks

The format
----------
ChebTucker                -- from_function, from_cp, evaluation, on_grid, to_tucker
IllConditionedFitWarning  -- grid samples too coarse for tol, or an unstable least-squares fit

Range-separated electrostatics
------------------------------
newton_exponential_sum    -- sinc-quadrature sum of Gaussians for 1/r
ExponentialSum            -- the sum, its long-range / short-range split
long_range_potential      -- long-range potential of N charges as a ChebTucker
RangeSeparatedPotential   -- long (Chebyshev-Tucker) + short (neighbour sum) = Coulomb
direct_potential          -- O(N M) direct sum (Newton, long- and short-range kernels)
COULOMB_CONSTANT          -- kcal A / (mol e^2)

Input
-----
read_pqr                  -- positions (A), charges (e), radii (A) from a PQR file
read_xyz                  -- XYZ with a charge column
"""

from ._chebyshev import (
    chebyshev_points,
    chebyshev_vandermonde,
    coefficients_to_values,
    values_to_coefficients,
)
from ._direct import direct_potential
from ._format import ChebTucker, IllConditionedFitWarning
from ._io import read_pqr, read_xyz
from ._newton import (
    COULOMB_CONSTANT,
    ExponentialSum,
    RangeSeparatedPotential,
    long_range_potential,
    newton_exponential_sum,
)
from ._tucker import TuckerTensor, hooi, hosvd, reduced_hosvd

__all__ = [
    "COULOMB_CONSTANT",
    "ChebTucker",
    "IllConditionedFitWarning",
    "ExponentialSum",
    "RangeSeparatedPotential",
    "TuckerTensor",
    "chebyshev_points",
    "chebyshev_vandermonde",
    "coefficients_to_values",
    "direct_potential",
    "hooi",
    "hosvd",
    "long_range_potential",
    "newton_exponential_sum",
    "read_pqr",
    "read_xyz",
    "reduced_hosvd",
    "values_to_coefficients",
]

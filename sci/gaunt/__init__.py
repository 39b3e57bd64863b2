"""Gaunt coefficients and Gaunt tensor products in the 2D Fourier basis.

Luo, Chen, Krishnapriyan, "Enabling efficient equivariant operations in the Fourier basis via
Gaunt tensor products", ICLR 2024 (arXiv:2401.10216).

Spherical harmonics and bases
-----------------------------
spherical_harmonics     real or complex harmonics at points (stable recursion, any degree)
coefficient_index       flat index l^2 + l + m
degree_order            the (l, m) of every flat index
real_to_complex         real-basis coefficients -> complex-basis coefficients
complex_to_real         complex-basis coefficients (of a real function) -> real basis
to_e3nn, from_e3nn      this package's real basis <-> e3nn's real basis

Gaunt coefficients
------------------
wigner_3j               Wigner 3j symbols (Schulten-Gordon recursion)
gaunt                   integral of Y Y Y (sympy's ``gaunt``)
real_gaunt              integral of Z Z Z (sympy's ``real_gaunt``)
gaunt_table             every nonzero coupling coefficient up to a degree (sparse)
GauntTable              the sparse table

2D Fourier basis
----------------
sh_to_fourier           harmonic coefficients -> 2D Fourier coefficients on the torus
fourier_to_sh           2D Fourier coefficients -> harmonic coefficients
legendre_fourier_coefficients   the sparse conversion coefficients y^{lm}_u

Gaunt tensor products
---------------------
gaunt_tensor_product    channel-wise product x (x) y (methods "auto", "fourier", "direct", "grid")
gaunt_convolution       features times harmonics of edge directions
gaunt_power             many-body features x^{(x) nu}
calibrate_methods       measure the methods here for method="auto" (python -m sci.gaunt.calibrate)

The complete Clebsch-Gordan product
-----------------------------------
cg_tensor_product       every path l1 (x) l2 -> l3: the Gaunt (even) and the bracket (odd) ones
bracket_table           the antisymmetric coefficients int Z {Z, Z} (sparse)
cg_path_constant        the reduced (Wigner-Eckart) constant of a path
e3nn_path_factor        e3nn's FullTensorProduct path = factor x this package's

Rotations
---------
wigner_D                the rotation matrices of the harmonic basis
rotate                  rotate coefficient vectors
random_rotation         Haar-random rotation matrices
"""

from ._auto import calibrate_methods
from ._clebsch_gordan import (
    bracket_table,
    cg_path_constant,
    cg_tensor_product,
    e3nn_path_factor,
)
from ._coefficients import GauntTable, gaunt, gaunt_table, real_gaunt, wigner_3j
from ._fourier import fourier_to_sh, legendre_fourier_coefficients, sh_to_fourier
from ._harmonics import (
    coefficient_index,
    complex_to_real,
    degree_order,
    from_e3nn,
    real_to_complex,
    spherical_harmonics,
    to_e3nn,
)
from ._product import gaunt_convolution, gaunt_power, gaunt_tensor_product
from ._rotation import random_rotation, rotate, wigner_D

__all__ = [
    "GauntTable",
    "bracket_table",
    "calibrate_methods",
    "cg_path_constant",
    "cg_tensor_product",
    "coefficient_index",
    "complex_to_real",
    "degree_order",
    "e3nn_path_factor",
    "fourier_to_sh",
    "from_e3nn",
    "gaunt",
    "gaunt_convolution",
    "gaunt_power",
    "gaunt_table",
    "gaunt_tensor_product",
    "legendre_fourier_coefficients",
    "random_rotation",
    "real_gaunt",
    "real_to_complex",
    "rotate",
    "sh_to_fourier",
    "spherical_harmonics",
    "to_e3nn",
    "wigner_3j",
    "wigner_D",
]

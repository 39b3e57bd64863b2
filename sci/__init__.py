"""sci: reference implementations of five theory results, on NumPy, Numba and CuPy.

Subpackages
-----------
sci.generalization       random-matrix generalization curves (Advani, Saxe, Sompolinsky)
sci.neural_collapse      neural collapse in deep linear networks (Dang et al.)
sci.chebyshev_tucker     Chebyshev-Tucker format, long-range electrostatics (Benner et al.)
sci.gaunt                Gaunt coefficients and Gaunt tensor products (Luo, Chen, Krishnapriyan)
sci.tensor_attention     exact and polynomial-method tensor attention (Alman, Song)

The backend switch
------------------
set_backend, use_backend, get_backend, available_backends (see :mod:`sci.backend`).

Sweeps and Monte-Carlo simulations
----------------------------------
sci.parallel             one executor: in-process, local processes or a Dask cluster
"""

from .backend import (
    BackendNotAvailableError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "BackendNotAvailableError",
    "__version__",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
]

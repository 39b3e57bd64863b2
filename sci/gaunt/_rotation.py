"""Wigner D-matrices of the (real or complex) spherical-harmonic basis; rotating coefficients."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import as_float_array, check_integer, resolve_rng
from ..backend import (
    array_context,
    array_namespace,
    creation_context,
    implementation,
    register,
)

__all__ = ["random_rotation", "rotate", "wigner_D"]


@functools.lru_cache(maxsize=64)
def sphere_quadrature(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Gauss-Legendre x equispaced points exact for band-limit ``degree`` on the sphere.

    Returns (theta, phi, weights) flattened, and the grid shape (n_theta, n_phi).
    """
    n_theta = degree // 2 + 1
    n_phi = degree + 1
    x, w = np.polynomial.legendre.leggauss(n_theta)
    theta = np.arccos(x)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    weights = np.repeat(w * (2 * np.pi / n_phi), n_phi)
    return th.ravel(), ph.ravel(), weights, n_theta, n_phi


def _check_rotation(rotation: Any):
    r = as_float_array(rotation, "rotation", dtype=np.float64)
    if r.ndim < 2 or r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (..., 3, 3); got {tuple(r.shape)}")
    xp = array_namespace()
    eye = xp.eye(3)
    gram = xp.swapaxes(r, -1, -2) @ r
    if float(xp.max(xp.abs(gram - eye))) > 1e-6 or bool((xp.linalg.det(r) < 0).any()):
        raise ValueError("rotation must be a proper rotation matrix (orthogonal, det +1)")
    return r


def wigner_D(l: int, rotation: Any, *, basis: str = "real") -> Array:
    r"""The matrix of a rotation on the degree-``l`` spherical harmonics.

    Parameters
    ----------
    l : int
        Degree (>= 0).
    rotation : array_like, shape (..., 3, 3)
        Rotation matrices.
    basis : {"real", "complex"}

    Returns
    -------
    array, shape (..., 2l+1, 2l+1)
        :math:`D^l(R)_{mm'} = \int \overline{Y_l^m(r)}\, Y_l^{m'}(R^{-1} r)\, d\Omega`: the
        coefficients of the rotated function :math:`f(R^{-1} r)` are :math:`D(R)\,x`
        (:func:`rotate`). Real and orthogonal for ``basis="real"``, unitary for complex.
        In the library and on the device of ``rotation``, in its precision (float32 in,
        float32 or complex64 out; computed in float64).

    Notes
    -----
    The integrand is a polynomial of degree :math:`2l` on the sphere, so a Gauss-Legendre
    :math:`\times` equispaced quadrature with :math:`l+1` by :math:`2l+1` points computes it
    exactly (up to rounding), with the harmonics from the stable Legendre recursion. It is a
    representation: :math:`D(R_1 R_2) = D(R_1) D(R_2)`.

    Examples
    --------
    >>> import numpy as np
    >>> rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    >>> np.round(wigner_D(1, rz), 12) + 0.0
    array([[ 0.,  0.,  1.],
           [ 0.,  1.,  0.],
           [-1.,  0.,  0.]])
    """
    ctx = array_context(rotation, names=("rotation",))
    if ctx.backend == "array":  # torch, strict, ...: the quadrature in their namespace
        return implementation("gaunt.wigner_D", "array")(l, rotation, basis=basis, ctx=ctx)
    from ._harmonics import _check_basis, spherical_harmonics

    l = check_integer(l, "l", minimum=0, maximum=4096)
    basis = _check_basis(basis)
    single = getattr(rotation, "dtype", None) == np.float32
    r = _check_rotation(rotation)
    xp = array_namespace()
    theta, phi, w, _, _ = sphere_quadrature(2 * l)
    pts = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    pts = xp.asarray(pts)
    sl = slice(l * l, (l + 1) ** 2)
    y = spherical_harmonics(l, pts, basis=basis)[..., sl]
    # R^{-1} r = R^T r; as row vectors r @ R.
    moved = pts @ r  # (..., n, 3)
    yr = spherical_harmonics(l, moved, basis=basis)[..., sl]
    yw = xp.conj(y) * xp.asarray(w)[:, None]
    d = xp.swapaxes(yw, -1, -2) @ yr
    return d.astype(np.complex64 if basis == "complex" else np.float32) if single else d


def rotate(x: Any, rotation: Any, *, basis: str = "real") -> Array:
    r"""Coefficients of the rotated function :math:`f(R^{-1} r)`.

    Parameters
    ----------
    x : array_like, shape (..., (L+1)**2)
        Coefficients (real basis: real array; complex basis: real or complex array).
    rotation : array_like, shape (3, 3)
    basis : {"real", "complex"}

    Returns
    -------
    array, shape (..., (L+1)**2)
        :math:`x'_{l} = D^l(R)\, x_l` on each degree.

    Notes
    -----
    Arrays of any library (the Backends page of the docs): NumPy arrays and lists follow the
    switch (NumPy/Numba, or CuPy under ``use_backend("cupy")``); CuPy arrays stay on their GPU;
    torch tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array
    path (``sci/gaunt/_array.py``, written against the standard) and come back in their library,
    on their device. Through torch the result is differentiable: autograd differentiates the
    array path (no custom backward) in ``x`` (the rotation is read on the host, explicitly, to
    build the Wigner matrices: not differentiated); the backward keeps nothing beyond the
    (2l+1)^2 matrices.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.0, 0.0, 0.0, 1.0])           # Z_1^1, proportional to -x
    >>> rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> np.round(rotate(x, rz), 12) + 0.0             # rotated about z: Z_1^-1 ~ -y
    array([0., 1., 0., 0.])
    """
    ctx = array_context(x, names=("x",))
    return implementation("gaunt.rotate", ctx.backend)(x, rotation, basis=basis, ctx=ctx)


def _rotate_switch(x: Any, rotation: Any, *, basis: str = "real", ctx: Any = None):
    """rotate on NumPy (the numpy/numba kernels) and CuPy: the measured paths."""
    from ._harmonics import _check_basis, coefficient_array

    basis = _check_basis(basis)
    xp = array_namespace()
    a, lmax = coefficient_array(x, "x", basis)
    r = _check_rotation(rotation)
    if r.ndim != 2:
        raise ValueError(f"rotation must be one (3, 3) matrix; got shape {tuple(r.shape)}")
    out = xp.empty_like(a)
    for l in range(lmax + 1):
        d = wigner_D(l, r, basis=basis).astype(a.dtype)
        sl = slice(l * l, (l + 1) ** 2)
        out[..., sl] = a[..., sl] @ d.T
    return out


register("gaunt.rotate", "numpy", _rotate_switch)
register("gaunt.rotate", "cupy", _rotate_switch)
register("gaunt.rotate", "array", "sci.gaunt._array:rotate_entry")


def random_rotation(
    size: int | None = None, *, rng: Any = None, xp: Any = None, device: Any = None
) -> Array:
    """Uniformly random rotation matrices (Haar measure), shape (3, 3) or (size, 3, 3).

    Parameters
    ----------
    size : int, optional
        Number of matrices (default: one, without the leading axis).
    rng : None, int or numpy.random.Generator
    xp : module, optional
        The array library of the result (numpy, cupy, torch, array_api_strict, ...); default:
        the switch's (NumPy, or CuPy under ``use_backend("cupy")``).
    device : optional
        The device of the result in that library (default: its default device).

    Returns
    -------
    array of float64
        Drawn on the host (from ``rng``) and created in ``xp`` on ``device``.

    Examples
    --------
    >>> import numpy as np
    >>> r = random_rotation(rng=0)
    >>> bool(np.allclose(r @ r.T, np.eye(3))), bool(np.isclose(np.linalg.det(r), 1.0))
    (True, True)
    """
    gen = resolve_rng(rng)
    n = 1 if size is None else check_integer(size, "size", minimum=0)
    q = gen.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    mats = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(n, 3, 3)
    out = mats[0] if size is None else mats
    ctx = creation_context(xp, device)
    return ctx.asarray(out, dtype=ctx.xp.float64)


register("gaunt.wigner_D", "array", "sci.gaunt._array:wigner_D_entry")

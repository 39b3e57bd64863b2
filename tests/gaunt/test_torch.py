"""Torch tensors in, torch tensors out, with gradients (issue 13).

Torch takes the array path (sci/gaunt/_array.py), differentiated by autograd; each public
function is checked with ``torch.autograd.gradcheck`` in float64 (finite differences against
the analytic backward), and its values against the NumPy path.
"""

from __future__ import annotations

import numpy as np
import pytest

import sci
from sci.backend import to_numpy
from sci.gaunt import (
    GauntTable,
    fourier_to_sh,
    gaunt_convolution,
    gaunt_power,
    gaunt_table,
    gaunt_tensor_product,
    random_rotation,
    rotate,
    sh_to_fourier,
    spherical_harmonics,
)

torch = pytest.importorskip("torch")
METHODS = ("fourier", "direct", "grid")


def _leaf(a):
    return torch.tensor(np.asarray(a), dtype=torch.complex128 if np.iscomplexobj(a)
                        else torch.float64, requires_grad=True)


def _coefficients(rng, shape, basis):
    x = rng.standard_normal(shape)
    return x + 1j * rng.standard_normal(shape) if basis == "complex" else x


def _gradcheck(f, *inputs):
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("basis", ["real", "complex"])
@pytest.mark.parametrize("method", METHODS)
def test_tensor_product_gradients(method, basis):
    rng = np.random.default_rng(1)
    x = _leaf(_coefficients(rng, (2, 9), basis))
    y = _leaf(_coefficients(rng, (2, 4), basis))
    z = gaunt_tensor_product(x, y, method=method, basis=basis)
    assert isinstance(z, torch.Tensor) and z.requires_grad and z.dtype == x.dtype
    with sci.use_backend("numpy"):
        ref = gaunt_tensor_product(to_numpy(x), to_numpy(y), method=method, basis=basis)
    np.testing.assert_allclose(to_numpy(z), ref, rtol=1e-12, atol=1e-13)
    _gradcheck(lambda a, b: gaunt_tensor_product(a, b, method=method, basis=basis), x, y)


@pytest.mark.parametrize("method", METHODS)
def test_tensor_product_weights_and_truncation_gradients(method):
    rng = np.random.default_rng(2)
    x, y = _leaf(rng.standard_normal((2, 9))), _leaf(rng.standard_normal(4))
    w = [_leaf(rng.standard_normal(3)), _leaf(rng.standard_normal(2)),
         _leaf(rng.standard_normal(6))]
    z = gaunt_tensor_product(x, y, method=method, lmax_out=5, weights=w)
    with sci.use_backend("numpy"):
        ref = gaunt_tensor_product(to_numpy(x), to_numpy(y), method=method, lmax_out=5,
                                   weights=[to_numpy(v) for v in w])
    np.testing.assert_allclose(to_numpy(z), ref, rtol=1e-12, atol=1e-13)
    _gradcheck(lambda a, b, w1, w2, w3: gaunt_tensor_product(
        a, b, method=method, lmax_out=1, weights=[w1, w2, w3[:2]]), x, y, *w)


@pytest.mark.parametrize("method", METHODS)
def test_power_gradients(method):
    rng = np.random.default_rng(3)
    x = _leaf(rng.standard_normal((2, 4)))
    _gradcheck(lambda a: gaunt_power(a, 3, method=method), x)


def test_convolution_gradients_in_features_and_edges():
    rng = np.random.default_rng(4)
    x = _leaf(rng.standard_normal((3, 2, 4)))
    edges = _leaf(rng.standard_normal((3, 3)))
    _gradcheck(lambda a, e: gaunt_convolution(a, e, lmax_edge=2), x, edges)


@pytest.mark.parametrize("basis", ["real", "complex"])
def test_harmonics_rotation_and_fourier_gradients(basis):
    rng = np.random.default_rng(5)
    v = _leaf(rng.standard_normal((4, 3)))
    _gradcheck(lambda a: spherical_harmonics(3, a, basis=basis), v)
    theta, phi = _leaf(rng.uniform(0.1, 3.0, 5)), _leaf(rng.uniform(0, 6.0, 5))
    _gradcheck(lambda t, p: spherical_harmonics(2, theta=t, phi=p, basis=basis), theta, phi)
    x = _leaf(_coefficients(rng, (2, 9), basis))
    rotation = random_rotation(rng=6)
    _gradcheck(lambda a: rotate(a, rotation, basis=basis), x)
    _gradcheck(lambda a: sh_to_fourier(a, basis=basis), x)
    F = _leaf(to_numpy(sh_to_fourier(x, basis=basis)))
    _gradcheck(lambda f: fourier_to_sh(f, 2, basis=basis), F)


def test_float32_stays_float32_and_devices_are_kept():
    x = torch.ones((2, 4), dtype=torch.float32)
    z = gaunt_tensor_product(x, x)
    assert z.dtype == torch.float32 and z.device == x.device


def test_two_libraries_are_refused():
    x = torch.ones(4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x and y are arrays of different libraries: "
                                        r"x \(torch.Tensor on cpu\), y \(numpy.ndarray on cpu\)"):
        gaunt_tensor_product(x, np.ones(4))
    with pytest.raises(TypeError, match=r"x and weights\[2\] are arrays of different"):
        gaunt_tensor_product(x, [1.0], weights=(None, None, np.ones(3)))
    # lists and scalars follow the tensors
    z = gaunt_tensor_product(x, [1.0, 0.0, 0.0, 0.0])
    assert isinstance(z, torch.Tensor)


def test_gaunt_table_is_a_host_table():
    # The sparse table is host metadata (NumPy indices and values); products convert it to
    # the inputs' namespace and device once (cached), whatever library asks.
    assert isinstance(gaunt_table(2), GauntTable)
    assert isinstance(gaunt_table(2).value, np.ndarray)


def test_basis_conversion_gradients():
    from sci.gaunt import complex_to_real, from_e3nn, real_to_complex, to_e3nn

    rng = np.random.default_rng(7)
    x = _leaf(rng.standard_normal((2, 9)))
    _gradcheck(real_to_complex, x)
    _gradcheck(lambda a: complex_to_real(real_to_complex(a)), x)
    _gradcheck(to_e3nn, x)
    _gradcheck(from_e3nn, x)


@pytest.mark.parametrize("basis", ["real", "complex"])
def test_wigner_D_of_a_torch_rotation_is_differentiable(basis):
    from sci.gaunt import wigner_D

    R = random_rotation(rng=3)
    with sci.use_backend("numpy"):
        ref = wigner_D(2, R, basis=basis)
    Rt = torch.tensor(R, requires_grad=True)
    got = wigner_D(2, Rt, basis=basis)
    assert isinstance(got, torch.Tensor) and got.requires_grad
    np.testing.assert_allclose(to_numpy(got), ref, rtol=0, atol=1e-14)
    # eps 1e-7 keeps the perturbed matrices within the orthogonality check (1e-6); D is a
    # smooth function of the entries through the quadrature formula
    assert torch.autograd.gradcheck(lambda r: wigner_D(2, r, basis=basis), (Rt,), eps=1e-7,
                                    atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="proper rotation"):
        wigner_D(1, torch.eye(3, dtype=torch.float64) * 2)

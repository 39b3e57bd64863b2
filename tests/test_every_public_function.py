"""Audit of issue 13: arrays of any library in, the same library, device and dtype out.

Every name in ``__all__`` of the five subpackages is either in one of the tables below or in
:data:`EXEMPT` with the reason; :func:`test_every_public_name_is_audited_or_exempt` fails
when a public name is neither, so a new public function cannot be added without saying how
it round-trips.

* :data:`ARRAY_CASES`: functions (and classes) that take arrays. Each is called with small
  inputs built by the leg of the ``xp`` fixture and, as the oracle, with the same numbers as
  NumPy float64 arrays under the ``"numpy"`` switch. Every array of the result (tuples,
  dicts, dataclass fields, walked recursively) must be of the inputs' library, on their
  device, in their precision (float32 in, float32 out, except where the docstring says
  float64), and equal the oracle's to the tolerance below; results the docstring puts on
  the host (NumPy summaries, Python numbers) are checked to stay there.
* :data:`CREATION_CASES`: functions with no array input; their ``xp=``/``device=``
  (and ``dtype=`` where documented) must place the result.
* On torch, inputs with ``requires_grad`` must give outputs with a ``grad_fn`` where the
  docstring claims differentiability (a smoke test: gradcheck lives in the subpackages'
  tests).

Tolerances. The inputs are rounded to float32 first, so both legs see the same numbers and
only the arithmetic differs. float64 legs may run another exact algorithm than NumPy's
(array code against the standard instead of Numba/NumPy kernels, another LAPACK, another
"auto" method of the Gaunt products): at these sizes they agree to ~1e-13 relative to the
largest entry, so ``1e-9`` leaves four digits of margin while any real mismatch is O(1).
float32 legs: unit roundoff 6e-8 times a growth below ~1e3 for these tiny problems, hence
``2e-4``; a case that needs more says why.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import sci
from sci import chebyshev_tucker as ct
from sci import gaunt as ga
from sci import generalization as ge
from sci import neural_collapse as nc
from sci import tensor_attention as ta

SUBPACKAGES = ("generalization", "neural_collapse", "chebyshev_tucker", "gaunt",
               "tensor_attention")

# The legs of the ``xp`` fixture: NumPy and Numba (NumPy arrays through the host kernels,
# float32 included), array_api_strict on a non-default device (any implicit host
# conversion fails there, as on a GPU), torch, and CuPy where a GPU exists.
LEGS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("numba", id="numba"),
    pytest.param("strict", id="strict"),
    pytest.param("torch", id="torch"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.gpu),
]

TOL = {"float64": 1e-9, "float32": 2e-4}


# --------------------------------------------------------------------------------------------
# The tables


@dataclass(frozen=True)
class Case:
    """How to call one public function (or class) that takes arrays.

    ``call(**inputs)`` with ``inputs`` the arrays of :attr:`inputs` in the leg's library
    (floating ones in the precision under test, integer ones as they are).
    """

    name: str
    inputs: dict[str, np.ndarray]
    call: Callable[..., Any]
    variant: str = ""
    # float32 inputs give float32 (complex64) results, as documented; False where the
    # docstring says float64 whatever the inputs (or the inputs are integers)
    float32: bool = True
    # torch: every floating array of the result has a grad_fn (the docstring says
    # differentiable); False: no claim; a tuple: only these result paths
    grad: bool | tuple[str, ...] = True
    # result paths (prefixes) documented as host values: NumPy arrays, Python numbers
    host: tuple[str, ...] = ()
    # result paths whose values are defined up to signs (SVD factors): library, device and
    # dtype checked, values compared through a sign-free quantity the call also returns
    # (and, in _compare, any path whose values are not compared)
    unsigned: tuple[str, ...] = ()
    # result paths that depend on the precision by design (an estimate of the rounding
    # error): values compared in float64 only
    precision_dependent: tuple[str, ...] = ()
    # a documented float becomes a 0-d array of the library outside NumPy
    scalar_arrays: bool = False
    tol: dict[str, float] = field(default_factory=lambda: dict(TOL))

    @property
    def id(self) -> str:
        return self.name + (f"[{self.variant}]" if self.variant else "")


@dataclass(frozen=True)
class CreationCase:
    """A function with no array input: ``call(xp, device, dtype)`` (``None``s: the default)."""

    name: str
    call: Callable[..., Any]
    variant: str = ""
    dtype: bool = False  # takes dtype= (float32 documented)
    host: tuple[str, ...] = ()
    unsigned: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.name + (f"[{self.variant}]" if self.variant else "")


_rng = np.random.default_rng(13)


def _data(*shape, low=-1.0, high=1.0):
    """Uniform data rounded to float32, so every leg and precision sees the same numbers."""
    return _rng.uniform(low, high, shape).astype(np.float32).astype(np.float64)


def _dtype_name(x) -> str:
    """``"float32"`` or ``"float64"``, for a ``dtype=`` argument following an input."""
    return "float32" if "float32" in str(x.dtype) else "float64"


def _cplx(x):
    return x.astype(np.complex128)


# shared data
ALPHA = np.array([0.5, 2.0, 3.0])
SIGMA = np.array(0.75)
X1 = _data(2, 4)  # degree-1 coefficients, two rows
X2 = _data(2, 9)  # degree 2
ROTATION = ga.random_rotation(rng=3).astype(np.float32).astype(np.float64)
F1 = ga.sh_to_fourier(X1)  # complex torus coefficients of degree 1
C1 = ga.real_to_complex(X1)  # complex-basis coefficients of a real function
VECTORS = _data(4, 3) + np.array([0.0, 0.0, 2.0])  # nonzero
Q, K1, K2, V1, V2 = (_data(5, 3) for _ in range(5))
POS, TARGETS = _data(6, 3), _data(3, 3, low=-0.5, high=0.5)
CHARGES = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
H_FEATURES = _data(12, 4)
LABELS = np.repeat(np.arange(3), 4)
TENSOR = _data(4, 5, 3)
NEWTON = ct.newton_exponential_sum(tol=1e-6, r_min=1e-2, r_max=1.0)
L_INT = (np.array([1, 2, 2]), np.array([1, 1, 2]), np.array([2, 1, 2]),
         np.array([0, 1, -1]), np.array([0, -1, 1]), np.array([0, 0, 0]))

_GAUNT_INTS = dict(zip(("l1", "l2", "l3", "m1", "m2", "m3"), L_INT, strict=True))
# _tucker's core and factors are defined up to the signs of the singular vectors: their
# values are compared through the full tensor, result 0
_TUCKER_SIGNS = ("1", "2")


# PolyAttentionInfo's estimate of the rounding error scales with the unit roundoff
_ROUNDING = ("1.rounding_error", "1.predicted_error")


def _tucker(t):
    return (t.to_full(), t.core, t.factors, t.singular_values, t.error)


def _cheb(v, points):
    return (v(points), v.core, v.factors)


ARRAY_CASES = [
    # ---- sci.generalization
    Case("asymptotic_errors", dict(alpha=ALPHA, sigma_eps=SIGMA),
         lambda alpha, sigma_eps: ge.asymptotic_errors(alpha, sigma_eps=sigma_eps)),
    Case("asymptotic_errors", dict(alpha=ALPHA, sigma_eps=SIGMA), variant="finite",
         call=lambda alpha, sigma_eps: ge.asymptotic_errors(alpha, sigma_eps=sigma_eps,
                                                            n_inputs=20)),
    Case("frozen_subspace_error", dict(alpha=ALPHA, sigma_w0=SIGMA),
         lambda alpha, sigma_w0: ge.frozen_subspace_error(alpha, sigma_w0=sigma_w0)),
    Case("generalization_error", dict(t=np.array([0.0, 1.0, 4.0]), alpha=ALPHA),
         lambda t, alpha: ge.generalization_error(t, alpha=alpha, sigma_eps=0.5)),
    Case("training_error", dict(t=np.array([0.0, 1.0, 4.0]), alpha=ALPHA),
         lambda t, alpha: ge.training_error(t, alpha=alpha, sigma_eps=0.5)),
    Case("marchenko_pastur_pdf", dict(lam=np.array([0.5, 1.0, 2.0]), alpha=ALPHA),
         ge.marchenko_pastur_pdf),
    Case("marchenko_pastur_support", dict(alpha=ALPHA), ge.marchenko_pastur_support),
    # the rule is computed on the host and carries no gradient (documented)
    Case("marchenko_pastur_quadrature", dict(alpha=ALPHA),
         lambda alpha: ge.marchenko_pastur_quadrature(alpha, 8), grad=False),
    Case("mode_optimal_stopping", dict(lam=np.array([0.0, 1.0, 3.0]), sigma_eps=SIGMA),
         lambda lam, sigma_eps: ge.mode_optimal_stopping(lam, sigma_eps=sigma_eps)),
    Case("optimal_stopping", dict(alpha=ALPHA, sigma_eps=SIGMA),
         lambda alpha, sigma_eps: ge.optimal_stopping(alpha, sigma_eps=sigma_eps,
                                                      n_iterations=30)),
    Case("ridge_error", dict(alpha=ALPHA, sigma_eps=SIGMA),
         lambda alpha, sigma_eps: ge.ridge_error(alpha, sigma_eps=sigma_eps)),
    # the precision is dtype= (default float64); the flow is differentiable in t
    Case("simulate_linear", dict(t=np.array([0.0, 0.5, 2.0])),
         lambda t: ge.simulate_linear(4, 6, t, sigma_eps=0.5, n_trials=2, rng=0,
                                      dtype=_dtype_name(t)),
         tol=dict(float64=1e-9, float32=1e-3)),
    # epochs (integers, read on the host) place the simulation as t does simulate_linear's
    Case("simulate_two_layer", dict(epochs=np.array([0, 2])),
         lambda epochs: ge.simulate_two_layer(3, epochs, n_inputs=2, n_teacher_hidden=3,
                                              n_examples=4, n_test=5, n_trials=2, rng=0),
         float32=False, grad=False),
    # ---- sci.neural_collapse
    Case("frame_error", dict(M=_data(3, 4)), nc.frame_error, host=("",), grad=False),
    Case("is_orthogonal_frame", dict(M=_data(3, 4)), nc.is_orthogonal_frame, host=("",),
         grad=False),
    Case("is_simplex_etf", dict(M=_data(3, 4)), nc.is_simplex_etf, host=("",), grad=False),
    # metrics are host floats, not differentiable; the means and covariance stay in the
    # features' library, accumulated in float64 (all documented)
    Case("nc_metrics", dict(H=H_FEATURES, labels=LABELS, W=_data(3, 4), b=_data(3)),
         lambda H, labels, W, b: nc.nc_metrics(H, labels, W=W, b=b),
         host=("class_counts",), grad=False, float32=False),
    Case("ufm_objective", dict(W1=_data(4, 4), W2=_data(3, 4), H=H_FEATURES, labels=LABELS),
         lambda W1, W2, H, labels: nc.ufm_objective([W1, W2], H, labels, lambda_W=1e-2,
                                                    lambda_H=1e-2),
         scalar_arrays=True),
    # ---- sci.chebyshev_tucker
    Case("ChebTucker", dict(core=_data(2, 2, 2), U=_data(5, 2), V=_data(4, 2),
                            W=_data(3, 2), points=_data(4, 3)),
         lambda core, U, V, W, points: _cheb(ct.ChebTucker(core, [U, V, W], domain=(-1, 1)),
                                             points)),
    Case("ChebTucker", dict(coefficients=_data(5, 4, 3), points=_data(4, 3)),
         variant="from_coefficients",
         call=lambda coefficients, points: _cheb(ct.ChebTucker.from_coefficients(
             coefficients, domain=(-1, 1), ranks=2), points),
         unsigned=("1", "2")),
    Case("ChebTucker", dict(core=_data(2, 2, 2), U=_data(5, 2), V=_data(4, 2), W=_data(3, 2),
                            x=_data(3), y=_data(2), z=_data(4)), variant="on_grid",
         call=lambda core, U, V, W, x, y, z: ct.ChebTucker(
             core, [U, V, W], domain=(-1, 1)).on_grid(x, y, z)),
    Case("ChebTucker", dict(core=_data(2, 2, 2), U=_data(5, 2), V=_data(4, 2), W=_data(3, 2),
                            x=_data(3), y=_data(2), z=_data(4)), variant="to_tucker",
         call=lambda core, U, V, W, x, y, z: _tucker(ct.ChebTucker(
             core, [U, V, W], domain=(-1, 1)).to_tucker(x, y, z)),
         host=("3", "4"), unsigned=_TUCKER_SIGNS),
    Case("ExponentialSum", dict(r=np.array([0.05, 0.3, 0.9])), lambda r: NEWTON(r)),
    # the potentials are float64 whatever the inputs' precision (documented)
    Case("RangeSeparatedPotential", dict(positions=POS, charges=CHARGES, targets=TARGETS),
         lambda positions, charges, targets: ct.RangeSeparatedPotential(
             positions, charges, tol=1e-4, degree=16, domain=(-2, 2))(targets),
         float32=False),
    Case("RangeSeparatedPotential", dict(positions=POS, charges=CHARGES, x=_data(2),
                                         y=_data(3), z=_data(2)), variant="on_grid",
         call=lambda positions, charges, x, y, z: ct.RangeSeparatedPotential(
             positions, charges, tol=1e-4, degree=16, domain=(-2, 2)).on_grid(x, y, z),
         float32=False),
    Case("TuckerTensor", dict(core=_data(2, 2, 2), U=_data(4, 2), V=_data(3, 2),
                              W=_data(5, 2)),
         lambda core, U, V, W: ct.TuckerTensor(core, [U, V, W]).to_full()),
    Case("chebyshev_vandermonde", dict(x=_data(5)),
         lambda x: ct.chebyshev_vandermonde(x, 3)),
    Case("coefficients_to_values", dict(c=_data(5, 4)),
         lambda c: ct.coefficients_to_values(c, axes=0)),
    Case("values_to_coefficients", dict(v=_data(5, 4)),
         lambda v: ct.values_to_coefficients(v)),
    # float64 whatever the inputs (documented)
    Case("direct_potential", dict(positions=POS, charges=CHARGES, targets=TARGETS),
         ct.direct_potential, float32=False),
    Case("hosvd", dict(tensor=TENSOR), lambda tensor: _tucker(ct.hosvd(tensor, ranks=2)),
         host=("3", "4"), unsigned=_TUCKER_SIGNS, grad=False),
    Case("hooi", dict(tensor=TENSOR), lambda tensor: _tucker(ct.hooi(tensor, 2)),
         host=("3", "4"), unsigned=_TUCKER_SIGNS, grad=False),
    Case("reduced_hosvd", dict(w=_data(4), A=_data(5, 4), B=_data(6, 4), C=_data(3, 4)),
         lambda w, A, B, C: _tucker(ct.reduced_hosvd(w, [A, B, C], tol=1e-10)),
         host=("3", "4"), unsigned=_TUCKER_SIGNS),
    Case("long_range_potential", dict(positions=POS, charges=CHARGES, targets=TARGETS),
         lambda positions, charges, targets: _cheb(
             ct.long_range_potential(positions, charges, tol=1e-4, degree=16,
                                     domain=(-2, 2)), targets),
         unsigned=("1", "2"), float32=False),
    # ---- sci.gaunt
    Case("gaunt_tensor_product", dict(x=X1, y=X2), ga.gaunt_tensor_product),
    *[Case("gaunt_tensor_product", dict(x=X1, y=X2), variant=method,
           call=lambda x, y, method=method: ga.gaunt_tensor_product(x, y, method=method))
      for method in ("fourier", "direct", "grid")],
    Case("gaunt_tensor_product", dict(x=_cplx(X1), y=_cplx(X2)), variant="complex",
         call=lambda x, y: ga.gaunt_tensor_product(x, y, basis="complex")),
    Case("cg_tensor_product", dict(x=X1, y=X2), ga.cg_tensor_product),
    Case("cg_tensor_product", dict(x=X1, y=X2), variant="direct",
         call=lambda x, y: ga.cg_tensor_product(x, y, method="direct")),
    Case("gaunt_power", dict(x=X1), lambda x: ga.gaunt_power(x, 3)),
    Case("gaunt_convolution", dict(x=_data(2, 1, 4), edges=_data(2, 3) + 2.0),
         lambda x, edges: ga.gaunt_convolution(x, edges, lmax_edge=1)),
    Case("spherical_harmonics", dict(vectors=VECTORS),
         lambda vectors: ga.spherical_harmonics(2, vectors)),
    Case("spherical_harmonics", dict(theta=_data(3, low=0.2, high=3.0),
                                     phi=_data(3, low=0.0, high=6.0)), variant="angles",
         call=lambda theta, phi: ga.spherical_harmonics(2, theta=theta, phi=phi,
                                                        basis="complex")),
    Case("sh_to_fourier", dict(x=X1), ga.sh_to_fourier),
    Case("fourier_to_sh", dict(F=F1), lambda F: ga.fourier_to_sh(F, 1)),
    Case("real_to_complex", dict(x=X1), ga.real_to_complex),
    Case("complex_to_real", dict(c=C1), ga.complex_to_real),
    Case("to_e3nn", dict(x=X2), ga.to_e3nn),
    Case("from_e3nn", dict(x=X2), ga.from_e3nn),
    # the rotation is read on the host to build the Wigner matrices: differentiable in x
    Case("rotate", dict(x=X2, rotation=ROTATION), ga.rotate),
    Case("wigner_D", dict(rotation=ROTATION), lambda rotation: ga.wigner_D(2, rotation),
         grad=False),
    # integer degrees and orders in, float64 coefficients out (documented)
    Case("gaunt", _GAUNT_INTS, ga.gaunt, float32=False, grad=False),
    Case("real_gaunt", _GAUNT_INTS, ga.real_gaunt, float32=False, grad=False),
    Case("wigner_3j", _GAUNT_INTS, ga.wigner_3j, float32=False, grad=False),
    Case("coefficient_index", dict(l=L_INT[0], m=L_INT[3]), ga.coefficient_index,
         float32=False, grad=False),
    # ---- sci.tensor_attention
    Case("softmax_attention", dict(Q=Q, K=K1, V=V1), ta.softmax_attention),
    Case("softmax_attention", dict(Q=Q, K=K1, V=V1), variant="causal",
         call=lambda Q, K, V: ta.softmax_attention(Q, K, V, causal=True)),
    Case("tensor_attention", dict(Q=Q, K1=K1, K2=K2, V1=V1, V2=V2), ta.tensor_attention),
    Case("tensor_attention", dict(Q=Q, K1=K1, K2=K2, V1=V1, V2=V2), variant="window",
         call=lambda **a: ta.tensor_attention(**a, window=(2, 3))),
    Case("higher_order_attention", dict(Q=Q, K1=K1, K2=K2, V1=V1, V2=V2),
         lambda Q, K1, K2, V1, V2: ta.higher_order_attention(Q, [K1, K2], [V1, V2])),
    Case("poly_attention", dict(Q=Q, K=K1, V=V1),
         lambda Q, K, V: ta.poly_attention(Q, K, V, degree=4, return_info=True),
         host=("1",), precision_dependent=_ROUNDING),
    Case("poly_tensor_attention", dict(Q=Q, K1=K1, K2=K2, V1=V1, V2=V2),
         lambda **a: ta.poly_tensor_attention(**a, degree=4, method="chebyshev")),
    Case("poly_higher_order_attention", dict(Q=Q, K1=K1, K2=K2, V1=V1, V2=V2),
         lambda Q, K1, K2, V1, V2: ta.poly_higher_order_attention(
             Q, [K1, K2], [V1, V2], degree=2, method="random", num_features=8, rng=0,
             on_nonpositive="taylor", return_info=True),
         host=("1",), precision_dependent=_ROUNDING),
    Case("logit_bound", dict(Q=Q, K1=K1, K2=K2),
         lambda Q, K1, K2: ta.logit_bound(Q, [K1, K2]), host=("",), grad=False),
    Case("polynomial_features", dict(X=Q), lambda X: ta.polynomial_features(X, 2),
         grad=False),
]


def _user_module(xp):
    """The module a user passes as ``xp=``: torch itself, the strict library, ..."""
    if xp.name == "torch":
        return importlib.import_module("torch")
    if xp.name == "cupy":
        return importlib.import_module("cupy")
    return xp.namespace


def _cheb_from_function(xp, device):
    """A ChebTucker sampled in ``xp`` on ``device``, evaluated at points placed there."""
    v = ct.ChebTucker.from_function(lambda x, y, z: 1.0 / (3.0 + x + 0.5 * y * z),
                                    domain=(-1, 1), degree=6, tol=1e-8, xp=xp, device=device)
    points = np.array([[0.1, -0.2, 0.3], [0.5, 0.5, -0.7]])
    if xp is not None:
        points = xp.asarray(points, device=device)
    return _cheb(v, points)


_UFM = dict(depth=2, lambda_W=1e-2, lambda_H=1e-2)
_UFM_HOST = ("singular_values", "feature_norms", "classifier_norms", "objective",
             "collapsed", "classifier_gram", "feature_gram", "logits_of_means",
             "layer_singular_values", "labels", "proven_global", "depth", "loss",
             "lambda_W", "lambda_H", "n_per_class")

CREATION_CASES = [
    CreationCase("draw_linear_problem", lambda xp, device, dtype: ge.draw_linear_problem(
        3, 4, sigma_eps=0.1, n_trials=2, rng=0, xp=xp, device=device)),
    CreationCase("draw_two_layer_problem", lambda xp, device, dtype: ge.draw_two_layer_problem(
        3, n_inputs=2, n_teacher_hidden=3, n_examples=4, n_test=5, rng=0, xp=xp,
        device=device)),
    CreationCase("simulate_linear", lambda xp, device, dtype: ge.simulate_linear(
        4, 6, [0.0, 1.0], sigma_eps=0.5, n_trials=2, rng=0, xp=xp, device=device,
        dtype=dtype), dtype=True),
    CreationCase("simulate_two_layer", lambda xp, device, dtype: ge.simulate_two_layer(
        3, [0, 2], n_inputs=2, n_teacher_hidden=3, n_examples=4, n_test=5, n_trials=2,
        rng=0, xp=xp, device=device, dtype=dtype), dtype=True),
    CreationCase("simulate_two_layer", lambda xp, device, dtype: ge.simulate_two_layer(
        3, [0, 2], n_inputs=2, n_teacher_hidden=3, n_examples=4, n_test=5, n_trials=2,
        train_hidden=True, rng=0, xp=xp, device=device, dtype=dtype), variant="hidden",
        dtype=True),
    CreationCase("simplex_etf", lambda xp, device, dtype: nc.simplex_etf(
        3, 4, rng=0, xp=xp, device=device)),
    CreationCase("orthogonal_frame", lambda xp, device, dtype: nc.orthogonal_frame(
        3, 4, rng=0, xp=xp, device=device)),
    CreationCase("ufm_minimizer", lambda xp, device, dtype: nc.ufm_minimizer(
        [3, 2, 2], **_UFM, width=3, rng=0, xp=xp, device=device), host=_UFM_HOST),
    CreationCase("train_ufm", lambda xp, device, dtype: nc.train_ufm(
        [3, 2], **_UFM, steps=4, lr=0.05, rng=0, record_every=2, progress=False, xp=xp,
        device=device, dtype=dtype),
        host=("steps", "loss", "metrics", "singular_values", "classifier_norms",
              "feature_norms", "labels"), dtype=True),
    CreationCase("chebyshev_points", lambda xp, device, dtype: ct.chebyshev_points(
        5, domain=(-2.0, 3.0), xp=xp, device=device, dtype=dtype), dtype=True),
    CreationCase("ChebTucker", lambda xp, device, dtype: _cheb_from_function(xp, device),
                 variant="from_function", unsigned=("1", "2")),
    CreationCase("random_rotation", lambda xp, device, dtype: ga.random_rotation(
        2, rng=0, xp=xp, device=device)),
]

# Public names that take no arrays (or are not functions), with the reason.
EXEMPT = {
    # result types: built by the functions above, whose arrays the tables check
    "NCMetrics": "result type of nc_metrics (its arrays are checked there)",
    "UFMMinimizer": "result type of ufm_minimizer (checked there)",
    "UFMTraining": "result type of train_ufm (checked there)",
    "PolyAttentionInfo": "result type of the poly_* functions: Python numbers only",
    "GauntTable": "result type of gaunt_table/bracket_table: host index tables (NumPy)",
    # exceptions, warnings, constants
    "IllConditionedFitWarning": "a warning class",
    "NonPositiveDenominatorError": "an exception class",
    "COULOMB_CONSTANT": "a float constant",
    # numbers in, numbers (or documented host tables) out
    "collapse_threshold": "an int in, a float out",
    "cg_path_constant": "degrees in, a float out",
    "e3nn_path_factor": "degrees in, a float out",
    "degree_order": "an int in; documented NumPy index arrays out (host bookkeeping)",
    "legendre_fourier_coefficients": "an int in; a documented cached NumPy table, converted "
                                     "to the inputs' library by the functions using it",
    "gaunt_table": "degrees in; a documented host (NumPy) sparse table, no xp=; the "
                   "products convert it to their inputs' device once",
    "bracket_table": "as gaunt_table",
    "exp_approximation_error": "numbers in, a float out",
    "exp_polynomial_coefficients": "numbers in; documented NumPy coefficients (host), "
                                   "which polynomial_features accepts in any library",
    "feature_rank": "ints in, an int out",
    "select_degree": "numbers in, an int out",
    "newton_exponential_sum": "numbers in; an ExponentialSum of documented host arrays, "
                              "whose evaluation is audited as 'ExponentialSum'",
    # files and timing harnesses
    "read_pqr": "reads a file into documented NumPy arrays",
    "read_xyz": "reads a file into documented NumPy arrays",
    "calibrate_methods": "a timing harness writing a table of measured times (its xp=/device= "
                         "say where to time, not what to return)",
}


# --------------------------------------------------------------------------------------------
# Walking and comparing results


def _is_array(x) -> bool:
    if isinstance(x, np.ndarray):
        return True
    import array_api_compat

    return array_api_compat.is_array_api_obj(x) and not isinstance(x, np.generic)


def _leaves(obj, path=""):
    """``(path, value)`` for every array and scalar of a result, walked recursively."""
    if _is_array(obj):
        yield path, obj
    elif isinstance(obj, tuple | list):
        for i, item in enumerate(obj):
            yield from _leaves(item, f"{path}.{i}" if path else str(i))
    elif isinstance(obj, dict):
        for key in sorted(obj):
            yield from _leaves(obj[key], f"{path}.{key}" if path else str(key))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _leaves(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
    else:
        yield path, obj


def _under(path: str, prefixes) -> bool:
    return any(p == "" or path == p or path.startswith(p + ".") for p in prefixes)


def _expected_dtype(xp, want: np.ndarray, precision: str):
    kind = "complex" if np.iscomplexobj(want) else "float"
    bits = {"float32": {"float": 32, "complex": 64}, "float64": {"float": 64, "complex": 128}}
    return getattr(xp, f"{kind}{bits[precision][kind]}")


def _compare(xp, got, want, *, precision, tol, host=(), unsigned=(), scalar_arrays=False):
    """Every leaf of ``got`` where ``want`` (the NumPy oracle) says, as the module's
    docstring describes; returns the leaves of ``got`` (for the gradient check)."""
    got_leaves, want_leaves = list(_leaves(got)), list(_leaves(want))
    assert [p for p, _ in got_leaves] == [p for p, _ in want_leaves], "result structure"
    for (path, g), (_, w) in zip(got_leaves, want_leaves, strict=True):
        where = f"result {path or '(the value)'}: "
        if isinstance(w, np.ndarray):
            if _under(path, host):
                assert isinstance(g, np.ndarray), where + f"a host NumPy array, got {type(g)}"
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol * _scale(w), err_msg=where)
                continue
            assert xp.is_leg_array(g), (
                where + f"{type(g).__module__}.{type(g).__name__} on "
                f"{getattr(g, 'device', 'cpu')}, not {xp!r}")
            if np.issubdtype(w.dtype, np.inexact):
                want_dtype = _expected_dtype(xp, w, precision)
                assert g.dtype == want_dtype, where + f"dtype {g.dtype}, want {want_dtype}"
            else:
                import array_api_compat

                ns = array_api_compat.array_namespace(g)
                assert ns.isdtype(g.dtype, "integral" if w.dtype.kind in "iu" else "bool"), (
                    where + f"dtype {g.dtype} for NumPy's {w.dtype}")
            if not _under(path, unsigned):
                np.testing.assert_allclose(xp.to_numpy(g), w, rtol=tol, atol=tol * _scale(w),
                                           err_msg=where)
        elif isinstance(w, bool | np.bool_):
            assert isinstance(g, bool | np.bool_) and bool(g) == bool(w), where + repr(g)
        elif isinstance(w, int | float) and scalar_arrays and _is_array(g):
            assert xp.is_leg_array(g) and tuple(g.shape) == (), where + repr(g)
            np.testing.assert_allclose(float(xp.to_numpy(g)), w, rtol=tol, err_msg=where)
        elif isinstance(w, int | np.integer):
            assert isinstance(g, int | np.integer) and g == w, where + repr(g)
        elif isinstance(w, float | np.floating):
            assert isinstance(g, float | np.floating), where + f"a float, got {type(g)}"
            if not _under(path, unsigned):
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol * abs(w), err_msg=where)
        else:
            assert g == w, where + f"{g!r} != {w!r}"
    return got_leaves


def _scale(w: np.ndarray) -> float:
    finite = np.abs(w[np.isfinite(w)]) if w.size else np.zeros(0)
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _leg_inputs(xp, case: Case, precision: str, requires_grad: bool = False) -> dict:
    out = {}
    for key, value in case.inputs.items():
        if np.iscomplexobj(value):
            dtype = "complex64" if precision == "float32" else "complex128"
        elif np.issubdtype(value.dtype, np.floating):
            dtype = precision
        else:
            dtype = None
        if xp.is_numpy:
            out[key] = np.asarray(value, dtype=dtype)
        else:
            out[key] = xp.asarray(value, dtype=dtype)
        if requires_grad and dtype is not None:
            out[key].requires_grad_(True)
    return out


def _oracle(case: Case):
    with sci.use_backend("numpy"):
        return case.call(**case.inputs)


def _array_params():
    params = []
    for case in ARRAY_CASES:
        params.append(pytest.param(case, "float64", id=f"{case.id}-float64"))
        if any(np.issubdtype(v.dtype, np.inexact) for v in case.inputs.values()):
            params.append(pytest.param(case, "float32", id=f"{case.id}-float32"))
    return params


# --------------------------------------------------------------------------------------------
# The tests


def test_every_public_name_is_audited_or_exempt():
    audited = {c.name for c in ARRAY_CASES} | {c.name for c in CREATION_CASES}
    public = set()
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"sci.{sub}")
        public |= set(module.__all__)
    missing = sorted(public - audited - set(EXEMPT))
    assert not missing, (
        f"public names neither audited nor exempt: {missing}. Add a Case (it takes arrays) "
        "or a CreationCase (it has xp=/device=) to tests/test_every_public_function.py, or "
        "an EXEMPT entry saying why it takes no arrays.")
    assert not (audited & set(EXEMPT)), sorted(audited & set(EXEMPT))
    stale = sorted((audited | set(EXEMPT)) - public)
    assert not stale, f"audited or exempt names no longer public: {stale}"
    assert all(reason.strip() for reason in EXEMPT.values())


@pytest.mark.parametrize("xp", LEGS, indirect=True)
@pytest.mark.parametrize(("case", "precision"), _array_params())
def test_arrays_come_back_in_their_library_device_and_dtype(xp, case, precision):
    want = _oracle(case)
    got = case.call(**_leg_inputs(xp, case, precision))
    output_precision = precision if case.float32 else "float64"
    unsigned = case.unsigned + (case.precision_dependent if precision == "float32" else ())
    _compare(xp, got, want, precision=output_precision, tol=case.tol[precision],
             host=case.host, unsigned=unsigned, scalar_arrays=case.scalar_arrays)


@pytest.mark.parametrize("xp", [pytest.param("torch", id="torch")], indirect=True)
@pytest.mark.parametrize("case", [c for c in ARRAY_CASES if c.grad],
                         ids=[c.id for c in ARRAY_CASES if c.grad])
def test_torch_results_carry_gradients_where_documented(xp, case):
    inputs = _leg_inputs(xp, case, "float64", requires_grad=True)
    got = case.call(**inputs)
    checked = [
        (path, leaf) for path, leaf in _leaves(got)
        if _is_array(leaf) and not isinstance(leaf, np.ndarray)
        and (leaf.dtype.is_floating_point or leaf.dtype.is_complex)
        and (case.grad is True or _under(path, case.grad))
    ]
    assert checked, "no floating torch output"
    for path, leaf in checked:
        # a grad_fn, or an input passed through (a leaf that requires grad)
        assert leaf.requires_grad, f"result {path or '(the value)'} has no grad_fn"
    sum(_real_sum(leaf) for _, leaf in checked).backward()
    assert any(v.grad is not None for v in inputs.values() if v.requires_grad)


def _real_sum(leaf):
    return leaf.real.sum() + leaf.imag.sum() if leaf.dtype.is_complex else leaf.sum()


def _creation_params():
    params = []
    for case in CREATION_CASES:
        params.append(pytest.param(case, "float64", id=f"{case.id}-float64"))
        if case.dtype:
            params.append(pytest.param(case, "float32", id=f"{case.id}-float32"))
    return params


@pytest.mark.parametrize("xp", LEGS, indirect=True)
@pytest.mark.parametrize(("case", "precision"), _creation_params())
def test_creation_functions_place_their_result(xp, case, precision):
    dtype = precision if case.dtype else None
    with sci.use_backend("numpy"):
        want = case.call(None, None, dtype)
    got = case.call(_user_module(xp), xp.device, dtype)
    _compare(xp, got, want, precision=precision, tol=TOL[precision], host=case.host,
             unsigned=case.unsigned)

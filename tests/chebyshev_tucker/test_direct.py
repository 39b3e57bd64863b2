"""The direct-sum oracle: backends agree, kernels are consistent, bad input is refused."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sci
from sci.chebyshev_tucker import direct_potential, newton_exponential_sum


def _loop(x, q, t):
    out = np.zeros(len(t))
    for i, p in enumerate(t):
        for xj, qj in zip(x, q, strict=True):
            r = np.linalg.norm(p - xj)
            if r > 0:
                out[i] += qj / r
    return out


def test_newton_against_python_loop(xp, rng):
    x = rng.standard_normal((20, 3))
    q = rng.standard_normal(20)
    t = np.concatenate([rng.standard_normal((15, 3)), x[:2]])  # includes particle positions
    out = direct_potential(xp.asarray(x), xp.asarray(q), xp.asarray(t), chunk=7)
    assert xp.is_leg_array(out)
    np.testing.assert_allclose(xp.to_numpy(out), _loop(x, q, t), rtol=1e-12)


@given(n=st.integers(0, 30), m=st.integers(0, 30), seed=st.integers(0, 2**31 - 1),
       kernel=st.sampled_from(["newton", "long_range", "short_range"]))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_legs_agree_with_numpy(xp, n, m, seed, kernel):
    rng = np.random.default_rng(seed)
    x, q, t = rng.uniform(-1, 1, (n, 3)), rng.standard_normal(n), rng.uniform(-1, 1, (m, 3))
    s = newton_exponential_sum(tol=1e-6, r_min=1e-3, r_max=4.0).long_range(8)
    with sci.use_backend("numpy"):
        expected = direct_potential(x, q, t, kernel=kernel, exponential_sum=s, cutoff=0.7)
    out = direct_potential(xp.asarray(x), xp.asarray(q), xp.asarray(t), kernel=kernel,
                           exponential_sum=s, cutoff=0.7, chunk=11)
    assert xp.is_leg_array(out)
    assert out.shape == (m,)
    np.testing.assert_allclose(xp.to_numpy(out), expected, rtol=1e-12, atol=1e-12)


def test_mixed_libraries_are_refused(xp):
    import array_api_strict as strict

    # the leg's sources with targets of another library (NumPy, or strict for the NumPy legs)
    other = strict.ones((1, 3), dtype=strict.float64) if xp.is_numpy else np.ones((1, 3))
    with pytest.raises(TypeError, match="positions and targets are arrays of different"):
        direct_potential(xp.asarray(np.zeros((1, 3))), xp.asarray([1.0]), other)


@pytest.mark.parametrize("kernel", ["newton", "short_range"])
def test_torch_gradients_pass_gradcheck(kernel, rng):
    torch = pytest.importorskip("torch")
    x, q = rng.uniform(-1, 1, (6, 3)), rng.standard_normal(6)
    t = rng.uniform(-1, 1, (4, 3))
    s = newton_exponential_sum(tol=1e-6, r_min=1e-3, r_max=4.0).long_range(6)
    pos, charges = torch.from_numpy(x), torch.from_numpy(q)
    targets = torch.from_numpy(t).requires_grad_(True)

    def f(targets):
        # a large cutoff: no pair sits on the cutoff sphere within gradcheck's steps
        return direct_potential(pos, charges, targets, kernel=kernel, exponential_sum=s,
                                cutoff=10.0, chunk=3)

    assert torch.autograd.gradcheck(f, (targets,))
    # and the gradient is the field: -grad of sum_j q_j / r is sum_j q_j (t - x_j) / r^3
    if kernel == "newton":
        (grad,) = torch.autograd.grad(f(targets).sum(), targets)
        d = t[:, None, :] - x[None, :, :]
        r = np.linalg.norm(d, axis=2)
        field = -(q[None, :, None] * d / r[:, :, None] ** 3).sum(axis=1)
        np.testing.assert_allclose(grad.numpy(), field, rtol=1e-10)


def test_kernels_add_up(rng):
    x, q = rng.uniform(-1, 1, (40, 3)), rng.standard_normal(40)
    t = rng.uniform(-1, 1, (30, 3))
    s = newton_exponential_sum(tol=1e-10, r_min=1e-4, r_max=4.0)
    n_long = s.split_index(0.5)
    long = s.long_range(n_long)
    lr = direct_potential(x, q, t, kernel="long_range", exponential_sum=long)
    sr = direct_potential(x, q, t, kernel="short_range", exponential_sum=long, cutoff=0.5)
    full = direct_potential(x, q, t)
    np.testing.assert_allclose(lr + sr, full, atol=1e-9 * np.sum(np.abs(q)))


def test_bad_input():
    with pytest.raises(ValueError, match="kernel must be one of"):
        direct_potential([[0, 0, 0]], [1.0], [[1, 0, 0]], kernel="yukawa")
    with pytest.raises(ValueError, match="needs exponential_sum"):
        direct_potential([[0, 0, 0]], [1.0], [[1, 0, 0]], kernel="long_range")
    s = newton_exponential_sum(tol=1e-6)
    with pytest.raises(ValueError, match="needs a cutoff"):
        direct_potential([[0, 0, 0]], [1.0], [[1, 0, 0]], kernel="short_range",
                         exponential_sum=s)
    with pytest.raises(ValueError, match="targets must have shape"):
        direct_potential([[0, 0, 0]], [1.0], [[1, 0]])
    with pytest.raises(ValueError, match="positions must be finite"):
        direct_potential([[0, np.nan, 0]], [1.0], [[1, 0, 0]])
    with pytest.raises(ValueError, match="charges has 1 entries"):
        direct_potential([[0, 0, 0], [1, 1, 1]], [1.0], [[1, 0, 0]])
    assert direct_potential(np.zeros((0, 3)), [], [[1, 0, 0]]).tolist() == [0.0]

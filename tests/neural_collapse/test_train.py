"""train_ufm: gradient descent reaches the closed form where the theory says it should."""

import numpy as np
import pytest

import sci
from sci.neural_collapse import train_ufm, ufm_minimizer


def run_and_exact(steps, lr, momentum=0.9, seeds=2, **case):
    exact = ufm_minimizer(**case)
    run = train_ufm(**case, steps=steps, lr=lr, momentum=momentum, num_seeds=seeds, rng=0,
                    record_every=steps)
    return run, exact


@pytest.mark.parametrize(
    "case",
    [
        dict(n_per_class=[20, 10, 5, 5], depth=3, lambda_W=5e-3, lambda_H=5e-3, width=8),
        dict(n_per_class=[10] * 4, depth=3, lambda_W=5e-3, lambda_H=5e-3, bias=True, width=8),
        dict(n_per_class=[10] * 4, depth=1, lambda_W=5e-3, lambda_H=5e-3, loss="ce"),
        dict(n_per_class=[10] * 4, depth=1, lambda_W=5e-3, lambda_H=5e-3, loss="ce", bias=True),
    ],
)
def test_gradient_descent_reaches_closed_form(case):
    run, exact = run_and_exact(2500, 0.05, **case)
    # Linear convergence at a rate ~ lr * lambda per step: after 2500 steps with momentum the
    # loss gap measured is below 4e-6 relative; the loss is quadratic near the minimum, so
    # the parameters are within ~sqrt of that: singular values to 5e-3.
    np.testing.assert_allclose(run.loss[:, -1], exact.objective, rtol=1e-5)
    assert run.loss[:, -1].min() >= exact.objective * (1 - 1e-12)
    np.testing.assert_allclose(run.singular_values, np.tile(exact.singular_values, (2, 1)),
                               rtol=5e-3, atol=5e-3)
    np.testing.assert_allclose(np.sort(run.feature_norms, axis=1),
                               np.tile(np.sort(exact.feature_norms), (2, 1)), rtol=5e-3)
    assert run.metrics["nc1"][:, -1].max() < 1e-6
    assert run.metrics["nc1"][:, 0].min() > 1e-2  # random start: not collapsed


def test_history_shapes_and_monotone_loss():
    run = train_ufm([6, 4, 2], depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=200, lr=0.05,
                    num_seeds=3, rng=1, record_every=20)
    assert run.steps.tolist() == list(range(0, 201, 20))
    assert run.loss.shape == (3, 11)
    assert all(v.shape == (3, 11) for v in run.metrics.values())
    assert np.all(np.diff(run.loss, axis=1) <= 1e-12)  # small-step GD descends
    assert run.weights[0].shape == (3, 3, 3) and run.features.shape == (3, 12, 3)


def test_stable_near_threshold_from_theory():
    """Near the collapse threshold GD from random starts may miss the small basin; from the
    theoretical point (perturbed) it stays, and the loss does not go below the minimum."""
    M, N = 2, 200
    lam = (2.5e-3 / N) ** (1 / 3)
    counts = [160, 40]  # b / n_2 = 0.5: exactly at the threshold (collapsed by the rule)
    exact = ufm_minimizer(counts, depth=M, lambda_W=lam, lambda_H=lam)
    run = train_ufm(counts, depth=M, lambda_W=lam, lambda_H=lam, steps=400, lr=0.05,
                    start=exact, init_scale=1e-3, num_seeds=2, rng=3, record_every=400)
    assert run.loss[:, -1].min() >= exact.objective - 1e-12
    np.testing.assert_allclose(run.loss[:, -1], exact.objective, rtol=1e-5)


def test_ce_etf_is_beaten_at_depth_three():
    """The low-rank bias: at M = 3 GD finds a rank-2 point below the ETF critical point."""
    case = dict(n_per_class=[10] * 4, depth=3, lambda_W=5e-3, lambda_H=5e-3, loss="ce")
    run, exact = run_and_exact(3000, 0.05, seeds=1, width=8, **case)
    assert not exact.proven_global
    assert run.loss[0, -1] < exact.objective - 0.01  # measured 0.125698 vs 0.137273
    assert int(np.sum(run.singular_values[0] > 1e-3 * run.singular_values[0, 0])) == 2


def test_ce_etf_is_beaten_at_depth_two_with_bias():
    """With an unregularised bias, already at M = 2 a rank-2 point beats the ETF."""
    case = dict(n_per_class=[10] * 4, depth=2, lambda_W=5e-3, lambda_H=5e-3, loss="ce",
                bias=True)
    run, exact = run_and_exact(3000, 0.05, seeds=1, **case)
    assert run.loss[0, -1] < exact.objective - 5e-4  # measured 0.160999 vs 0.161730


def test_backends_and_dtypes_agree(backend):
    kwargs = dict(depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=50, lr=0.05, rng=5,
                  record_every=50, loss="ce", bias=True)
    got = train_ufm([5, 3, 4], **kwargs)
    with sci.use_backend("numpy"):
        ref = train_ufm([5, 3, 4], **kwargs)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-12)
    f32 = train_ufm([5, 3, 4], dtype=np.float32, **kwargs)
    assert f32.features.dtype == np.float32
    np.testing.assert_allclose(f32.loss, ref.loss, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr=1e3, steps=50), "diverged"),
        (dict(lr=-1.0), "lr must be >"),
        (dict(momentum=1.0), "momentum must be <"),
        (dict(num_seeds=0), "num_seeds must be >="),
        (dict(num_seeds=2, seeds_per_task=0), "seeds_per_task must be >="),
        (dict(lambda_H=0.0), "lambda_H must be >"),
        (dict(init_scale=0.0), "init_scale must be >"),
        (dict(loss="l1"), "loss must be"),
    ],
)
def test_bad_input(kwargs, match):
    base = dict(depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=5, lr=0.01, rng=0)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_ufm([4, 3], **base)


def test_start_must_match():
    exact = ufm_minimizer([4, 3], depth=2, lambda_W=1e-2, lambda_H=1e-2)
    with pytest.raises(ValueError, match="does not match"):
        train_ufm([4, 3], depth=3, lambda_W=1e-2, lambda_H=1e-2, steps=1, start=exact)

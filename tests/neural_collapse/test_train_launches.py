"""train_ufm's loop as a GPU sees it: the operators per step (launches), none reading the
device, and the divergence step found from the losses checked at the records."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sci.neural_collapse import train_ufm

KW = dict(depth=3, lambda_W=5e-3, lambda_H=5e-3, lr=0.05, num_seeds=4, rng=0, progress=False)


def _runs(torch_ops, torch, **kw):
    counts = []
    for steps in (40, 80):
        with torch_ops() as ops:
            train_ufm([5] * 4, **{**KW, **kw}, steps=steps, record_every=40, xp=torch)
        counts.append(ops)
    return counts


@pytest.mark.parametrize(("loss", "momentum", "launches"), [("mse", 0.0, 37), ("ce", 0.0, 43),
                                                           ("mse", 0.9, 57)])
def test_operators_per_step(torch_ops, loss, momentum, launches):
    """Depth 3, no bias: 9 batched products, the loss's five sums of squares weighted at once,
    and an update of three operators per parameter (more with momentum); nothing read from
    the device (40 more steps and one more record: 40 times one step, plus a record)."""
    torch = pytest.importorskip("torch")
    short, long = _runs(torch_ops, torch, loss=loss, momentum=momentum)
    record = 200  # an upper bound of a record's operators (metrics, SVD, the loss check)
    assert (long.launches() - short.launches() - record) / 40 <= launches, dict(long - short)
    assert long["bmm"] - short["bmm"] >= 9 * 40
    assert short["_local_scalar_dense"] == long["_local_scalar_dense"] == 0


@settings(max_examples=10, deadline=None)
@given(every=st.integers(1, 13), lr=st.sampled_from([40.0, 200.0, 1e3]))
def test_divergence_step_does_not_depend_on_the_records(every, lr):
    """The first step whose loss is not finite, found from the windows of losses checked at
    each record, is the step-by-step answer (record_every=1)."""
    kw = dict(depth=2, lambda_W=1e-2, lambda_H=1e-2, steps=60, lr=lr, rng=0, num_seeds=2)
    messages = []
    for record_every in (1, every):
        with pytest.raises(ValueError, match="diverged") as info:
            train_ufm([4, 3], record_every=record_every, **kw)
        messages.append(int(re.search(r"step (\d+)", str(info.value)).group(1)))
    assert messages[0] == messages[1]


def test_momentum_update_is_the_heavy_ball():
    """With momentum the update is v <- mu v + grad (the full gradient, weight decay in it),
    p <- p - lr v: two steps by hand from the same start agree with the trainer."""
    from sci.neural_collapse._ufm import _loss_and_gradients

    run0 = train_ufm([3, 2], depth=1, lambda_W=1e-2, lambda_H=2e-2, steps=0, rng=5,
                     record_every=1)
    run = train_ufm([3, 2], depth=1, lambda_W=1e-2, lambda_H=2e-2, steps=2, lr=0.3,
                    momentum=0.5, rng=5, record_every=1)
    params = [np.asarray(run0.weights[0]), np.asarray(run0.features)]
    velocity = [np.zeros_like(p) for p in params]
    for _ in range(2):
        _, dW, dH, _ = _loss_and_gradients(params[:1], params[1], run0.labels, None, [1e-2],
                                           2e-2, "mse")
        for i, g in enumerate([*dW, dH]):
            velocity[i] = 0.5 * velocity[i] + g
            params[i] = params[i] - 0.3 * velocity[i]
    np.testing.assert_allclose(np.asarray(run.weights[0]), params[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(run.features), params[1], rtol=1e-12, atol=1e-15)

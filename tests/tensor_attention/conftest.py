"""Fixtures of the tensor_attention tests: an independent dense reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest


def dense_attention(Q, keys, values, *, scale=None, causal=False, weight=None):
    """Att = D^{-1} A (V1 ⊘ ... ) with A formed explicitly (max-shifted exp, or ``weight``)."""
    Q = np.asarray(Q, float)
    n, d = Q.shape
    m = len(keys[0])
    s = 1.0 / d if scale is None else scale
    tuples = list(itertools.product(range(m), repeat=len(keys)))

    def khatri_rao(arrays):
        return np.array(
            [np.prod([X[j] for X, j in zip(arrays, J, strict=True)], axis=0) for J in tuples]
        )

    khatri_rao_k, khatri_rao_v = khatri_rao(keys), khatri_rao(values)
    logits = s * Q @ khatri_rao_k.T
    future = np.array([max(J) for J in tuples])[None, :] > np.arange(n)[:, None]
    if weight is None:
        # shift by the largest logit a query may attend to: a larger future one would make
        # every allowed weight underflow to 0 (and the row 0/0)
        allowed = np.where(future, -np.inf, logits) if causal else logits
        A = np.exp(allowed - allowed.max(axis=1, keepdims=True))
    else:
        A = weight(logits)
    if causal:
        A = np.where(future, 0.0, A)
    return (A @ khatri_rao_v) / A.sum(axis=1, keepdims=True)


@pytest.fixture(scope="session")
def dense_reference():
    """The naive dense attention (every tuple formed), an oracle independent of sci."""
    return dense_attention


def _retained_numbers(out):
    """How many numbers the autograd graph of ``out`` keeps for the backward: the tensors saved
    by every node reachable from ``out.grad_fn``, each storage counted once (an input saved
    by two nodes is one array in memory)."""
    import torch

    storages: dict[int, int] = {}
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        saved = list(getattr(node, "saved_tensors", ()))  # a custom Function's node
        for name in dir(node):  # built-in nodes: _saved_self, _saved_result, ...
            if name.startswith("_saved_"):
                value = getattr(node, name)
                items = value if isinstance(value, tuple | list) else (value,)
                saved.extend(v for v in items if isinstance(v, torch.Tensor))
        for t in saved:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes() // t.element_size()
        stack.extend(f for f, _ in node.next_functions)
    return sum(storages.values())


@pytest.fixture(scope="session")
def retained_numbers():
    """Counts the numbers an autograd graph keeps for the backward (torch tests only)."""
    return _retained_numbers

"""What torch's autograd keeps for a backward: the memory claims of the recomputing backwards
(exact, windowed and polynomial attention) are measured with these, in the benchmarks and in
the tests (tests/tensor_attention/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def saved_numbers(fn: Callable[[], Any]) -> int:
    """Numbers autograd saves for the backward while ``fn`` runs (``saved_tensors_hooks``):
    every save counted, an input saved by two nodes twice, graphs dropped during the call
    included. An upper bound of :func:`kept_numbers`."""
    import torch

    total = 0

    def pack(t):
        nonlocal total
        total += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def kept_numbers(out: Any) -> int:
    """Numbers the autograd graph of ``out`` keeps for its backward: the tensors saved by every
    node reachable from ``out.grad_fn``, each storage counted once (an input saved by several
    nodes is one array in memory; a saved view keeps its whole storage). Graphs built during
    the call and dropped (a bound read as a float) are not counted."""
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

"""The figure registry: every module ``figures/<name>.py`` that defines ``FIGURE``.

A figure is two functions and two parameter sets:

* ``compute(**params, progress)`` returns the numbers drawn, as a dict of JSON-able values
  (arrays are fine); it is the expensive part and is cached on disk;
* ``plot(data)`` draws a :class:`matplotlib.figure.Figure` from those numbers only, so the JSON
  beside each PNG is everything a reader needs to check it;
* ``full`` reproduces the paper; ``quick`` computes the same thing smaller (tests, docs).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    reproduces: str
    """Which figure of which paper this reproduces (or "new: ..." for an extension)."""
    compute: Callable[..., Mapping[str, Any]]
    plot: Callable[[Mapping[str, Any]], Any]
    full: Mapping[str, Any] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)
    subpackage: str = ""
    """The ``sci`` subpackage it illustrates (groups the gallery)."""

    def parameters(self, quick: bool) -> dict[str, Any]:
        return dict(self.quick if quick else self.full)


def discover() -> dict[str, Figure]:
    """All registered figures by name, in module order."""
    import figures

    found: dict[str, Figure] = {}
    for info in sorted(pkgutil.iter_modules(figures.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"figures.{info.name}")
        declared = getattr(module, "FIGURES", None) or [getattr(module, "FIGURE", None)]
        for fig in declared:
            if fig is None:
                continue
            if fig.name in found:
                raise RuntimeError(f"two figures are named {fig.name!r}")
            found[fig.name] = fig
    return found

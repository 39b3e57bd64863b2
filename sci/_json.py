"""Conversion of results (NumPy/CuPy arrays and scalars, tuples, dataclasses) to JSON types."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .backend import to_numpy


def to_jsonable(value: Any) -> Any:
    """``value`` with arrays as nested lists, NumPy scalars as Python numbers.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` so the output is
    strict JSON.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") or hasattr(value, "get") and hasattr(value, "dtype"):
        return to_jsonable(to_numpy(value).tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, complex):
        return {"real": to_jsonable(value.real), "imag": to_jsonable(value.imag)}
    return value

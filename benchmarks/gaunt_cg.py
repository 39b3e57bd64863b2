"""The complete Clebsch-Gordan product: its cases live in ``benchmarks/gaunt.py``; this module
registers them as the benchmark ``gaunt_cg`` (``python -m benchmarks gaunt_cg``)."""

from .gaunt import CG_BENCHMARK as BENCHMARK

__all__ = ["BENCHMARK"]

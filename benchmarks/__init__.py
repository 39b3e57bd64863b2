"""Benchmarks against the tools users would otherwise pick: ``python -m benchmarks``.

Each module defines ``BENCHMARK`` (see :mod:`benchmarks._harness`); results are recorded in
``benchmarks/results/`` with the machine that produced them.
"""

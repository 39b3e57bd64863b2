"""Reproduce every figure: ``python -m figures`` (``--list``, ``--quick``, ``--out``, ...).

Each module here defines ``FIGURE`` (see :mod:`figures._registry`) and names the paper figure
it reproduces; the runner discovers them, so adding a figure means adding a module.
"""

"""Exact and high-precision counterparts of :mod:`sci`, used as oracles by tests and docs.

One module per subpackage (``theory.generalization``, ``theory.gaunt``, ...), built on sympy
(exact expressions) and mpmath (arbitrary precision). ``sci`` never imports ``theory``.
"""

"""The array path of sci.chebyshev_tucker: code written once against the array API standard.

It serves every library without kernels of its own (torch on CPU or CUDA, ``array_api_strict``,
...): the dispatch key ``"array"`` of :func:`sci.backend.array_context`. NumPy keeps its
vectorised blocks and Numba kernel, CuPy its CUDA kernel (``_direct.py``, ``_cpu.py``,
``_gpu.py``).

Everything here composes standard operations without in-place updates, so torch's autograd
differentiates it as it stands. The kernel parameters (the exponential-sum weights and
exponents, the cutoff) are host numbers: they enter as Python floats, never as a device read.
"""

from __future__ import annotations

from typing import Any

import array_api_compat


def direct(pos: Any, q: Any, tgt: Any, code: int, weights: Any, exponents: Any, cutoff: float,
           chunk: int) -> Any:
    """Blocks of ``chunk`` targets against all sources (``_direct._direct_xp`` without
    in-place writes). ``weights`` and ``exponents`` are NumPy arrays (host constants)."""
    xp = array_api_compat.array_namespace(tgt, pos, q)
    terms = list(zip(weights.tolist(), exponents.tolist(), strict=True))
    blocks = []
    for start in range(0, tgt.shape[0], chunk):
        block = tgt[start:min(start + chunk, tgt.shape[0]), :]
        diff = block[:, None, :] - pos[None, :, :]
        r2 = xp.sum(diff * diff, axis=2)
        blocks.append(_pair_kernel(xp, r2, code, terms, cutoff) @ q)
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks)


def _pair_kernel(xp: Any, r2: Any, code: int, terms: list, cutoff: float) -> Any:
    zero = r2 == 0
    smooth = None
    if code in (1, 2):
        smooth = xp.zeros_like(r2)
        for a, t2 in terms:
            smooth = smooth + a * xp.exp(-t2 * r2)
    if code == 1:
        return smooth
    # sqrt is never taken at 0 (its derivative there is infinite, and autograd would carry
    # 0 * inf = NaN through the masked branch)
    inv = 1.0 / xp.sqrt(xp.where(zero, xp.ones_like(r2), r2))
    inv = xp.where(zero, xp.zeros_like(r2), inv)
    if code == 0:
        return inv
    inside = r2 < cutoff * cutoff
    return xp.where(inside, inv - smooth, xp.zeros_like(r2))


def vandermonde(xp: Any, t: Any, degree: int) -> Any:
    r"""``T_0(t), ..., T_degree(t)`` as columns, in :math:`O(\log \text{degree})` array
    operations.

    The block ``T_0..T_K`` is doubled to ``T_0..T_2K`` at once by the product formula
    :math:`T_{K+j} = 2T_KT_j - T_{K-j}` (:math:`j = 1..K`), so a degree-64 matrix takes six
    steps of five operations each, whatever the number of points: on a GPU, a few large
    launches instead of one per column (the three-term recurrence). Its rounding error is of
    the recurrence's size (both grow polynomially in the degree; ``tests/chebyshev_tucker``
    compares them with exact values), and it composes standard operations without in-place
    updates, so torch's autograd differentiates it.
    """
    v = xp.stack([xp.ones_like(t), t], axis=1) if degree >= 1 else xp.ones_like(t)[:, None]
    while v.shape[1] < degree + 1:
        k = v.shape[1] - 1
        later = 2 * v[:, k:k + 1] * v[:, 1:k + 1] - xp.flip(v[:, :k], axis=1)
        v = xp.concat([v, later], axis=1)
    return v[:, :degree + 1] if v.shape[1] > degree + 1 else v


def mode_matrices(xp: Any, coordinates: list, factors: list, domain: tuple) -> list:
    """``T(x_k) U_k`` for the three modes, the Chebyshev polynomials of all the coordinates
    in one :func:`vandermonde` (the reference coordinates of the modes concatenated, to the
    highest degree), then one matrix product per mode."""
    dtype = factors[0].dtype
    degree = max(u.shape[0] for u in factors) - 1
    reference = [(2 * xp.astype(c, dtype, copy=False) - (a + b)) / (b - a)
                 for c, (a, b) in zip(coordinates, domain, strict=True)]
    v = vandermonde(xp, reference[0] if len(reference) == 1 else xp.concat(reference), degree)
    out, start = [], 0
    for c, u in zip(coordinates, factors, strict=True):
        stop = start + c.shape[0]
        out.append(v[start:stop, :u.shape[0]] @ u)
        start = stop
    return out


def evaluate(xp: Any, core: Any, mode_matrices, pts: Any, chunk: int) -> Any:
    """``sum_ijk G_ijk u_i(x) v_j(y) w_k(z)`` at the rows of ``pts``, ``chunk`` at a time;
    ``mode_matrices([x, y, z])`` samples the three factors."""
    r1, r2, r3 = core.shape
    g = xp.reshape(core, (r1, r2 * r3))
    n = pts.shape[0]
    blocks = []
    for start in range(0, n, chunk):
        block = pts[start:min(start + chunk, n), :]
        fx, fy, fz = mode_matrices([block[:, k] for k in range(3)])
        tmp = xp.reshape(fx @ g, (-1, r2, r3))
        blocks.append(xp.sum(xp.sum(tmp * fz[:, None, :], axis=2) * fy, axis=1))
    if not blocks:
        return xp.zeros((0,), dtype=core.dtype, device=array_api_compat.device(core))
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks)


# -- where a stateful object lives, and how it moves ----------------------------------------


def bound_context(owner: str, own: Any, arrays: tuple, names: tuple) -> Any:
    """The context of a call on an object built in context ``own``.

    Arrays of the object's library and device are served (under the switch's kernels for
    NumPy); lists and scalars follow the object; arrays of another library or device raise
    :class:`TypeError` naming both, and how to move the object.
    """
    from ..backend import array_context

    ctx = array_context(*arrays, names=names)
    if ctx.library == own.library and ctx.device == own.device:
        return ctx
    if all(isinstance(a, list | tuple | int | float) for a in arrays):
        return own  # array-likes follow the object
    given = ", ".join(names)
    raise TypeError(
        f"{given} {'is' if len(names) == 1 else 'are'} {ctx.describe()}, but this {owner} "
        f"holds {own.describe()}; convert {given} to {own.library} on {own.device}, or move "
        f"the {owner} with .to(xp=..., device=...)"
    )


def move(x: Any, target: Any) -> Any:
    """``x`` as an array of ``target``'s library and device (shared where it already is; an
    explicit copy through the host between libraries)."""
    from ..backend import to_numpy
    from ..backend._arrays import library_of

    if target.is_numpy:
        return to_numpy(x)
    if library_of(x) == target.library:
        return array_api_compat.to_device(x, target.device)
    return target.asarray(to_numpy(x))


def own_context(array: Any) -> Any:
    """The context an object holding ``array`` lives in (NumPy: the host, whatever the switch
    says; for restoring a pickled object, whose context holds a module and is not pickled)."""
    import numpy as np

    from ..backend import array_context, creation_context

    if isinstance(array, np.ndarray):
        return creation_context(np)
    return array_context(array)


class PlacedState:
    """Pickling for objects that keep their array context in ``_ctx`` (a module does not
    pickle): the context is dropped and rebuilt from the arrays on loading."""

    _placed_by: str = "core"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_ctx", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._ctx = own_context(state[self._placed_by])

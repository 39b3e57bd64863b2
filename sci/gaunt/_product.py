"""The Gaunt tensor product and the operations built on it (Luo, Chen, Krishnapriyan 2024)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .._typing import Array
from .._validation import (
    as_float_array,
    check_all_finite,
    check_integer,
    check_memory,
    chunk_length,
    format_bytes,
    memory_limit,
)
from ..backend import array_context, array_namespace, implementation, register, use_backend
from ..backend._arrays import switch_context
from ._auto import choose_method
from ._coefficients import gaunt_table
from ._fourier import (
    _full_spectrum_complex,
    _half_to_complex,
    _project,
    _torus_coefficients_real,
    _torus_grid_real,
    fourier_tables_bytes,
)
from ._harmonics import (
    LMAX_LIMIT,
    _check_basis,
    _harmonics_first,
    coefficient_array,
    lmax_from_size,
    spherical_harmonics,
)
from ._rotation import sphere_quadrature

__all__ = ["gaunt_convolution", "gaunt_power", "gaunt_tensor_product"]

METHODS = ("auto", "fourier", "direct", "grid")
_PRODUCT_ARGS = ("x", "y", "weights[0]", "weights[1]", "weights[2]")
_CONVOLUTION_ARGS = ("x", "edge_vectors", "weights[0]", "weights[1]", "weights[2]")
_CHUNK_BYTES = 64 * 2**20


def _fft_numpy():
    import scipy.fft

    return scipy.fft


def _fft_array():
    return array_namespace().fft


register("gaunt.fft", "numpy", _fft_numpy)
register("gaunt.fft", "array", _fft_array)


def _fast_len(n: int) -> int:
    import scipy.fft

    return scipy.fft.next_fast_len(int(n), real=True)


# --------------------------------------------------------------------------- validation


def _pair(x, y, basis, check_finite=True):
    xp = array_namespace()
    a, l1 = coefficient_array(x, "x", basis, check_finite=False)
    b, l2 = coefficient_array(y, "y", basis, check_finite=False)
    if check_finite:  # one reduction for both (on a GPU, one synchronisation), not one each
        check_all_finite(xp, {"x": a, "y": b})
    try:
        batch = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except ValueError as exc:
        raise ValueError(
            "the leading (batch and channel) axes of x and y must broadcast; got x "
            f"{tuple(a.shape)} and y {tuple(b.shape)}"
        ) from exc
    dtype = xp.result_type(a.dtype, b.dtype)
    return a, b, l1, l2, batch, dtype


def _method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    return method


def _resolve(method, operation, degree, rows, dtype, ctx, nu=1):
    """An exact method for ``method="auto"``: the measured-fastest here (sci/gaunt/_auto.py)."""
    if method != "auto":
        return method
    if ctx is None:
        ctx = switch_context()
    return choose_method(operation, degree, rows, dtype, ctx, nu=nu)


def _degree_weights(w: Any, lmax: int, name: str, dtype, xp):
    """Per-degree weights (..., lmax+1) spread over the flat coefficient axis."""
    if w is None:
        return None
    arr = as_float_array(w, name, dtype=np.float32 if dtype in (xp.float32, xp.complex64)
                         else np.float64)
    if arr.ndim == 0 or arr.shape[-1] != lmax + 1:
        raise ValueError(
            f"{name} must have a last axis of lmax+1 = {lmax + 1} per-degree weights; got shape "
            f"{tuple(arr.shape)}"
        )
    degrees = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    return arr[..., degrees]


def _unpack_weights(weights):
    if weights is None:
        return None, None, None
    if not isinstance(weights, list | tuple) or len(weights) != 3:
        raise TypeError(
            "weights must be None or a sequence (w1, w2, w_out) of per-degree weights (each "
            f"None or array_like of shape (..., L+1)); got {type(weights).__name__}"
        )
    return tuple(weights)


def _weight_arrays(weights) -> tuple:
    """The weights' arrays, for the namespace check (a malformed ``weights`` is refused later
    with its own message)."""
    if isinstance(weights, list | tuple) and len(weights) == 3:
        return tuple(weights)
    return ()


def _output_lmax(lmax_out, default):
    if lmax_out is None:
        return default
    return check_integer(lmax_out, "lmax_out", minimum=0, maximum=LMAX_LIMIT)


def _gather_budget() -> float:
    """Bytes the array code of the direct contraction may gather at a time."""
    return min(_CHUNK_BYTES, memory_limit() / 8)


def _row_source(a, batch, dtype, xp):
    """rows(s, e): rows s:e of ``a`` broadcast to ``batch + (n,)`` and seen as (rows, n).

    Only the rows asked for are materialised (as ``dtype``): a broadcast input (a channel axis
    of stride 0, a float32 factor beside a float64 one) is never expanded or cast as a whole.
    """
    n = a.shape[-1]
    if tuple(a.shape[:-1]) == tuple(batch) and (a.ndim <= 2 or a.flags.c_contiguous):
        flat = a.reshape((-1, n))

        def rows(s, e):
            return flat[s:e].astype(dtype, copy=False)

        return rows
    full = xp.broadcast_to(a, tuple(batch) + (n,))
    if len(batch) == 1:
        return lambda s, e: full[s:e].astype(dtype, copy=False)

    def gather(s, e):
        idx = np.unravel_index(np.arange(s, e), batch)
        return full[tuple(xp.asarray(i) for i in idx)].astype(dtype, copy=False)

    return gather


def _run_rows(sources, rows, n_keep, n_total, dtype, per_row, compute, w_out, what, xp,
              extra=0.0):
    """Evaluate ``compute`` chunk by chunk into a preallocated (rows, n_total) output.

    The output, the working memory of one chunk and ``extra`` (scratch of bounded size) are
    checked against the memory limit up front (a chunk holds at most a quarter of the limit
    left after the output and the scratch, and at most _CHUNK_BYTES); results are written in
    place, never concatenated.
    """
    itemsize = np.dtype(dtype).itemsize
    out_bytes = float(rows) * n_total * itemsize
    budget = min(_CHUNK_BYTES, max(memory_limit() - out_bytes - extra, 0) / 4)
    step = chunk_length(rows, per_row, budget=budget)
    work = step * per_row + extra
    check_memory(
        out_bytes + work,
        f"{what}: the output of {rows} rows x {n_total} coefficients "
        f"({format_bytes(out_bytes)}) plus {format_bytes(work)} of working memory "
        f"for {step} row(s) at a time",
        hint="process the rows in smaller batches or lower lmax_out",
    )
    if step >= rows and n_total == n_keep and w_out is None:
        # one chunk, nothing to pad: its result is the output (no allocation, no copy)
        return compute([src(0, rows) for src in sources]).astype(dtype, copy=False)
    out = (xp.zeros if n_total > n_keep else xp.empty)((rows, n_total), dtype=dtype)
    for s in range(0, rows, step):
        e = min(rows, s + step)
        z = compute([src(s, e) for src in sources])
        if w_out is not None:
            z = z * w_out(s, e)[:, :n_keep]
        out[s:e, :n_keep] = z
    return out


def _weighted(src, wsrc):
    if wsrc is None:
        return src
    return lambda s, e: src(s, e) * wsrc(s, e)


# --------------------------------------------------------------------------- fourier method


@functools.lru_cache(maxsize=256)
def _torus_sizes(lmax_in: tuple[int, ...], degree: int, lmax_keep: int):
    """Grid sizes that sample a product of total degree ``degree`` without aliasing."""
    widest = max(lmax_in)
    n_theta = _fast_len(2 * degree + 1)
    n_phi = _fast_len(max(degree + lmax_keep + 1, 2 * widest + 1))
    return n_theta, n_phi


def _to_grid_real(a, lmax, n_theta, n_phi, xp, fft):
    return _torus_grid_real(a, lmax, n_theta, n_phi, xp, fft)


def _from_grid_real(h, degree, lmax_keep, xp, fft):
    return _torus_coefficients_real(h, lmax_keep, degree, xp, fft)


def _to_grid_complex(c, lmax, n_theta, n_phi, xp, fft):
    full = _full_spectrum_complex(c, lmax, xp)  # (B, u, v)
    spec = xp.zeros((full.shape[0], n_theta, n_phi), dtype=full.dtype)
    idx = np.arange(-lmax, lmax + 1)
    spec[:, (idx % n_theta)[:, None], (idx % n_phi)[None, :]] = full
    return fft.ifft2(spec, axes=(-2, -1)) * (n_theta * n_phi)


def _from_grid_complex(h, degree, lmax_keep, xp, fft):
    n_theta, n_phi = h.shape[-2:]
    spec = fft.fft2(h, axes=(-2, -1)) / (n_theta * n_phi)
    rows = np.arange(-degree, degree + 1) % n_theta
    ms = np.arange(lmax_keep + 1)
    cpos = _project(spec[:, rows[:, None], (ms % n_phi)[None, :]], lmax_keep, degree, xp)
    sign = xp.asarray(np.where(ms % 2 == 0, 1.0, -1.0)[:, None]).astype(h.dtype)
    cneg = _project(spec[:, rows[:, None], (-ms % n_phi)[None, :]], lmax_keep, degree, xp) * sign
    return _half_to_complex(cpos, cneg, lmax_keep, xp)


def _fourier_plan(lmaxes, powers, lmax_keep, basis, xp, rows=None):
    """(keep, bytes per row, chunk -> coefficients of prod_i f_i^{p_i} up to keep).

    Pointwise products on a torus grid fine enough for the total degree are exactly the
    zero-padded 2D convolutions of the Fourier coefficients (the convolution theorem); a power
    is taken by repeated squaring on the grid (binary splitting). Given the number of ``rows``,
    small products run in the fused form (:func:`fused_tables`) where it is the cheaper.
    """
    fft = implementation("gaunt.fft")()
    degree = sum(l * p for l, p in zip(lmaxes, powers, strict=True))
    keep = min(lmax_keep, degree)
    n_theta, n_phi = _torus_sizes(tuple(lmaxes), degree, keep)
    if rows is not None and fused_is_cheaper(tuple(lmaxes), tuple(powers), keep, basis, rows,
                                             on_device=xp is not np):
        # its tables are checked against the memory limit when built (once)
        itemsize = 16 if basis == "complex" else 8
        per_row = (2 * n_theta * n_phi + (keep + 1) ** 2) * itemsize  # h, one factor, out
        return keep, per_row, _fused_compute(tuple(lmaxes), tuple(powers), keep, basis, xp)
    # The tables (cached, built on first use) are refused here, before any row is computed.
    check_memory(
        fourier_tables_bytes(lmaxes, keep, degree, n_theta, basis),
        f"the Fourier method's tables for inputs of degree {'+'.join(map(str, lmaxes))} "
        f"(product degree {degree}, output degree {keep}, {n_theta} θ nodes)",
        hint="lower the degrees or lmax_out (the tables grow like L^3)",
    )
    itemsize = 16 if basis == "complex" else 8
    per_row = (n_theta * n_phi * itemsize * (len(lmaxes) + 3) + (2 * degree + 1) ** 2 * 16
               + (sum((l + 1) ** 2 for l in lmaxes) + (keep + 1) ** 2) * 16)
    to_grid = _to_grid_real if basis == "real" else _to_grid_complex
    from_grid = _from_grid_real if basis == "real" else _from_grid_complex

    def compute(chunks):
        h = None
        for a, lm, p in zip(chunks, lmaxes, powers, strict=True):
            g = to_grid(a, lm, n_theta, n_phi, xp, fft)
            g = g**p if p != 1 else g
            h = g if h is None else h * g
        return from_grid(h, degree, keep, xp, fft)

    return keep, per_row, compute


# ----------------------------------------------------------------- the fused Fourier method
#
# Every step of the Fourier method but the pointwise product is linear: harmonic coefficients
# -> 2D Fourier coefficients -> values on the torus grid is one matrix per factor, and values
# -> Fourier coefficients -> harmonic coefficients is another. At small degrees these dense
# matrices are small, and the whole product is a handful of large operations (two matrix
# products, one pointwise product, one matrix product) instead of some twenty small ones per
# chunk: on a GPU, where each operation is a kernel launch of ~10 us whatever its size, that
# is what the time was (about 2 ms at every L <= 6 on an H200, issue 17).

_FUSED_BUILD_BLOCK = 256

_FUSED_MAX_ENTRIES = 2**21
"""The fused form is used only while its tables hold at most this many entries (16 MiB in
float64): beyond, their O(L^4) size and work lose to the factored O(L^3) form anyway."""

# A cost model, time = flops / rate + operations * overhead, to pick the form: the host's
# rate is that of one core's BLAS on the fused form's large matrix products; the factored
# form's small batched products and transposing copies run at a third of it (measured on the
# host, single-threaded: the fused form wins up to L = 5, where it does 3x the flops). A
# device's overhead is a kernel launch from Python (CuPy, torch). Not measured on a device
# yet: the device figures are order-of-magnitude estimates.
_COST = {False: (1.0e10, 3.0e-6), True: (1.0e13, 1.5e-5)}
_FACTORED_EFFICIENCY = 1 / 3


def _grid_points(lmaxes: tuple[int, ...], powers: tuple[int, ...], keep: int) -> tuple[int, int]:
    degree = sum(l * p for l, p in zip(lmaxes, powers, strict=True))
    return _torus_sizes(lmaxes, degree, min(keep, degree))


def fused_table_entries(lmaxes: tuple[int, ...], powers: tuple[int, ...], keep: int) -> int:
    """Entries of the fused tables: one synthesis matrix per distinct input degree, one
    analysis matrix."""
    n_theta, n_phi = _grid_points(lmaxes, powers, keep)
    points = n_theta * n_phi
    return points * (sum((l + 1) ** 2 for l in set(lmaxes)) + (keep + 1) ** 2)


def fused_fits(lmaxes: tuple[int, ...], powers: tuple[int, ...], keep: int) -> bool:
    """Whether the fused tables are small enough to use (``_FUSED_MAX_ENTRIES``)."""
    return fused_table_entries(lmaxes, powers, keep) <= _FUSED_MAX_ENTRIES


def fused_is_cheaper(lmaxes: tuple[int, ...], powers: tuple[int, ...], keep: int, basis: str,
                     rows: int, *, on_device: bool) -> bool:
    """Whether the fused form of the Fourier method (:func:`fused_tables`) is expected to be
    faster than the factored one for ``rows`` rows (the cost model ``_COST``)."""
    if not fused_fits(lmaxes, powers, keep):
        return False
    n_theta, n_phi = _grid_points(lmaxes, powers, keep)
    points = n_theta * n_phi
    mk = keep + 1
    fused = 2 * points * (sum((l + 1) ** 2 for l in lmaxes) + mk * mk) + points * len(lmaxes)
    factored = points * len(lmaxes) + 4 * n_theta * n_phi * mk + 4 * mk * n_theta * mk
    for l in lmaxes:
        factored += 4 * (l + 1) ** 2 * n_theta + 4 * n_theta * (l + 1) * n_phi
    fused_ops, factored_ops = 2 * len(lmaxes) + 2, 8 * len(lmaxes) + 12
    if basis == "complex":  # complex arithmetic, and the factored form's 2D FFTs
        fused *= 4
        factored *= 4
    rate, overhead = _COST[on_device]
    return (rows * fused / rate + fused_ops * overhead
            <= rows * factored / (rate * _FACTORED_EFFICIENCY) + factored_ops * overhead)


@functools.lru_cache(maxsize=32)
def fused_tables(lmaxes: tuple[int, ...], powers: tuple[int, ...], keep: int, basis: str,
                 dtype: str = "float64") -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The fused Fourier method's matrices: synthesis S_i (n_i, N) and analysis A (N, n_keep).

    ``prod_i (a_i @ S_i) ** p_i @ A`` is the product of the Fourier method, exactly: S_i maps
    harmonic coefficients of degree lmaxes[i] to values at the N = n_theta x n_phi nodes of
    the torus grid of the product's degree (the sparse conversion to 2D Fourier coefficients,
    then the inverse DFT), and A maps values on that grid to the coefficients up to ``keep``
    (the DFT, then the projection). They are the factored form's maps applied to identity
    matrices, in float64 (complex128 for ``basis="complex"``), then rounded once to ``dtype``.
    Cached per (degrees, powers, keep, basis, dtype); refused if over the memory limit.
    """
    if dtype not in ("float64", "complex128"):
        synthesis, analysis = fused_tables(lmaxes, powers, keep, basis)
        return (tuple(_as_readonly(s.astype(dtype)) for s in synthesis),
                _as_readonly(analysis.astype(dtype)))
    degree = sum(l * p for l, p in zip(lmaxes, powers, strict=True))
    n_theta, n_phi = _grid_points(lmaxes, powers, keep)
    points = n_theta * n_phi
    itemsize = 16 if basis == "complex" else 8
    check_memory(fused_table_entries(lmaxes, powers, keep) * itemsize * 3,
                 f"the fused Fourier tables for degrees {lmaxes} ({points} grid points)")
    fft = _fft_numpy()
    to_grid = _to_grid_real if basis == "real" else _to_grid_complex
    from_grid = _from_grid_real if basis == "real" else _from_grid_complex
    cdtype = np.float64 if basis == "real" else np.complex128
    with use_backend("numpy"):  # host tables, whatever the switch says
        synthesis = {l: _as_readonly(np.ascontiguousarray(
            to_grid(np.eye((l + 1) ** 2, dtype=cdtype), l, n_theta, n_phi, np, fft)
            .reshape((l + 1) ** 2, points))) for l in set(lmaxes)}
        # The analysis matrix row by row of the identity, in blocks (O(block x N) scratch).
        analysis = np.empty((points, (keep + 1) ** 2), dtype=cdtype)
        for start in range(0, points, _FUSED_BUILD_BLOCK):
            stop = min(points, start + _FUSED_BUILD_BLOCK)
            grid = np.zeros((stop - start, points), dtype=cdtype)
            grid[np.arange(stop - start), np.arange(start, stop)] = 1
            analysis[start:stop] = from_grid(grid.reshape(-1, n_theta, n_phi), degree, keep,
                                             np, fft)
        analysis = _as_readonly(analysis)
    return tuple(synthesis[l] for l in lmaxes), analysis


def _as_readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _fused_compute(lmaxes, powers, keep, basis, xp):
    """chunk -> coefficients by the fused tables, as constants of the switch's library."""
    from ._fourier import _switch_constant

    def compute(chunks):
        dtype = np.dtype(chunks[0].dtype).name
        key = ("fused", lmaxes, powers, keep, basis, dtype)
        synthesis = [
            _switch_constant(key + ("S", i), lambda i=i: fused_tables(
                lmaxes, powers, keep, basis, dtype)[0][i], None)
            for i in range(len(lmaxes))
        ]
        analysis = _switch_constant(key + ("A",), lambda: fused_tables(
            lmaxes, powers, keep, basis, dtype)[1], None)
        h = None
        for a, s, p in zip(chunks, synthesis, powers, strict=True):
            g = a @ s
            g = g**p if p != 1 else g
            if h is None:
                h = g
            else:
                h *= g  # in place: h is this call's own array (no autograd on this path)
        return h @ analysis

    return compute


# --------------------------------------------------------------------------- direct method


def _segments(table, n_out):
    starts = np.searchsorted(table.index3, np.arange(n_out + 1))
    return starts


def _direct_contract_array(x, y, i1, i2, starts, vals, n_out):
    """Sparse contraction written against xp: gather, multiply, padded segment sums."""
    xp = array_namespace()
    counts = np.diff(starts)
    width = int(counts.max(initial=0))
    rows = x.shape[0]
    if width == 0:
        return xp.zeros((rows, n_out), dtype=x.dtype)
    # Pad every output's segment to the same width with an entry of value zero.
    pos = starts[:-1, None] + np.arange(width)[None, :]
    valid = np.arange(width)[None, :] < counts[:, None]
    pos = np.where(valid, pos, 0)
    g1 = xp.asarray(i1[pos])
    g2 = xp.asarray(i2[pos])
    gv = xp.asarray(np.where(valid, vals[pos], 0.0)).astype(xp.real(x[:0]).dtype)
    out = xp.empty((rows, n_out), dtype=x.dtype)
    gather_row = n_out * width * x.dtype.itemsize * 3
    step = chunk_length(rows, gather_row, budget=_gather_budget())
    for s in range(0, rows, step):
        xs, ys = x[s: s + step], y[s: s + step]
        out[s: s + step] = xp.sum(xs[:, g1] * ys[:, g2] * gv, axis=-1)
    return out


register("gaunt.direct_contract", "array", _direct_contract_array)
register("gaunt.direct_contract", "numba", "sci.gaunt._cpu:direct_contract")
register("gaunt.direct_contract", "cupy", "sci.gaunt._gpu:direct_contract")


def _direct(a, b, l1, l2, lmax_keep, basis, xp):
    table = gaunt_table(l1, lmax2=l2, lmax_out=lmax_keep, basis=basis)
    n_out = (lmax_keep + 1) ** 2
    starts = _segments(table, n_out)
    return implementation("gaunt.direct_contract")(
        a, b, table.index1, table.index2, starts, table.value, n_out
    )


def _direct_row_bytes(l1, l2, lmax_keep, basis):
    """Bytes per row of one contraction: (contiguous copies and output, padded gathers).

    The compiled kernels need only the first; the array code also gathers, in sub-chunks of
    at most :func:`_gather_budget` bytes (counted once, as scratch).
    """
    table = gaunt_table(l1, lmax2=l2, lmax_out=lmax_keep, basis=basis)
    n_out = (lmax_keep + 1) ** 2
    width = int(np.diff(_segments(table, n_out)).max(initial=0))
    return ((l1 + 1) ** 2 + (l2 + 1) ** 2 + n_out) * 16 * 2, n_out * width * 16 * 3


def _gather_scratch(rows, gather_row):
    return min(float(rows) * gather_row, max(gather_row, _gather_budget()))


def _direct_power_stages(lmax, nu):
    """The contractions (l_a, l_b, l_out) of the binary splitting of x^nu, in order."""
    if nu == 1:
        return [], lmax
    stages, lh = _direct_power_stages(lmax, nu // 2)
    stages = stages + [(lh, lh, 2 * lh)]
    lz = 2 * lh
    if nu % 2:
        stages.append((lz, lmax, lz + lmax))
        lz += lmax
    return stages, lz


# --------------------------------------------------------------------------- grid method


def _grid_plan(lmaxes, powers, lmax_keep, basis, dtype, xp):
    """(bytes per row, chunk -> coefficients): Gauss-Legendre x equispaced grid, multiply
    pointwise, project back."""
    degree = sum(l * p for l, p in zip(lmaxes, powers, strict=True)) + lmax_keep
    theta, phi, w, _, _ = sphere_quadrature(degree)
    rdtype = xp.float32 if dtype in (xp.float32, xp.complex64) else xp.float64
    th = xp.asarray(theta).astype(rdtype)
    ph = xp.asarray(phi).astype(rdtype)
    cos, sin = xp.cos(th), xp.sin(th)
    check_memory(theta.size * (max(max(lmaxes), lmax_keep) + 1) ** 2 * 16 * (len(lmaxes) + 1),
                 "the quadrature grid of the 'grid' method", hint="use method='fourier'")
    # Coefficient axis first (ncoef, npoints): rows are written contiguously.
    out_y = _harmonics_first(lmax_keep, cos, sin, ph, basis, xp)
    proj = (xp.conj(out_y) if basis == "complex" else out_y) * xp.asarray(w).astype(rdtype)
    basis_vals = [_harmonics_first(lm, cos, sin, ph, basis, xp) for lm in lmaxes]
    per_row = (theta.size * 16 * (len(lmaxes) + 1)
               + (sum((l + 1) ** 2 for l in lmaxes) + (lmax_keep + 1) ** 2) * 16)

    def compute(chunks):
        h = None
        for a, yv, p in zip(chunks, basis_vals, powers, strict=True):
            g = a @ yv
            g = g**p if p != 1 else g
            h = g if h is None else h * g
        return h @ proj.T

    return per_row, compute


# --------------------------------------------------------------------------- public API


def gaunt_tensor_product(
    x: Any,
    y: Any,
    *,
    lmax_out: int | None = None,
    method: str = "auto",
    basis: str = "real",
    weights: Any = None,
    check_finite: bool = True,
) -> Array:
    r"""The Gaunt tensor product: the harmonic coefficients of the pointwise product.

    Parameters
    ----------
    x : array_like, shape (..., (L1+1)**2)
        Coefficients of the first factor; the leading axes (batch, channels) broadcast with
        those of ``y`` (the product is channel-wise).
    y : array_like, shape (..., (L2+1)**2)
    lmax_out : int, optional
        Highest output degree (default ``L1 + L2``: the full product, nothing lost).
    method : {"auto", "fourier", "direct", "grid"}
        ``"auto"`` (default): the fastest of the three exact methods for this degree, number of
        rows, precision and platform, from a table of measured times (the packaged one, or
        the user's from ``python -m sci.gaunt.calibrate``; see :func:`calibrate_methods`);
        all three agree to round-off. ``"fourier"``: 2D Fourier basis and FFT convolution,
        :math:`O(L^3)` per channel (the paper's algorithm); ``"direct"``: sparse contraction
        with the Gaunt table (the reference, :math:`O(L^5)`); ``"grid"``: Gauss-Legendre
        quadrature on the sphere.
    basis : {"real", "complex"}
        Real harmonics (real arrays in and out) or complex (complex arrays).
    weights : (w1, w2, w_out), optional
        Per-degree weights, each None or array_like with last axis ``L+1`` (broadcasting with
        the leading axes): applied to x and y before the forward conversion and to the output
        after the backward one.

    check_finite : bool
        Check the inputs for NaN and infinities (default): one reduction per input, on a GPU a
        synchronisation with the host, which ``False`` saves (non-finite input then gives
        non-finite output).
    Returns
    -------
    array, shape (..., (lmax_out+1)**2)
        :math:`z_{l_3m_3} = \sum G(l_1m_1, l_2m_2; l_3m_3)\, x_{l_1m_1} y_{l_2m_2}` with
        :math:`G = \int Y_{l_1}^{m_1} Y_{l_2}^{m_2} \overline{Y_{l_3}^{m_3}}` (complex) or
        :math:`\int Z Z Z` (real). float32 in, float32 out.

    Raises
    ------
    ValueError
        A coefficient axis whose length is not a square, leading axes that do not broadcast,
        NaN/inf, an unknown method or basis, a request too large for memory.
    TypeError
        Complex input with ``basis="real"``, non-numeric input.

    Notes
    -----
    Only paths with :math:`l_1 + l_2 + l_3` even appear (the Gaunt coefficient contains
    :math:`(l_1\,l_2\,l_3; 0\,0\,0)`): the product is symmetric, ``GTP(x, y) = GTP(y, x)``,
    and the antisymmetric 1 x 1 -> 1 path (the cross product) is absent.

    Fourier method: convert each factor to 2D Fourier coefficients on the torus
    (:func:`sh_to_fourier`, sparse, :math:`O(L^3)`), multiply on a torus grid of
    :math:`\ge (2K+1) \times (K + L_{out} + 1)` points, K = L1 + L2 (a zero-padded FFT
    convolution, :math:`O(L^2 \log L)`), and project back (:func:`fourier_to_sh`).

    Arrays of any library (the Backends page of the docs): NumPy arrays and lists follow the
    switch (NumPy/Numba, or CuPy under ``use_backend("cupy")``); CuPy arrays stay on their GPU;
    torch tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array
    path (``sci/gaunt/_array.py``, written against the standard) and come back in their library,
    on their device. Through torch the result is differentiable: autograd differentiates the
    array path (no custom backward): the backward of a Gaunt product is again a Gaunt-type
    contraction, and autograd runs it through the same FFT convolutions (``"fourier"``, keeping
    the grids: O(rows x (2K+1)^2) complex numbers), the padded table gathers (``"direct"``:
    O(rows x nnz-per-output x (lmax_out+1)^2)) or the quadrature values (``"grid"``: O(rows x
    points)). The NumPy path is not differentiated.

    References
    ----------
    Luo, Chen, Krishnapriyan, "Enabling efficient equivariant operations in the Fourier basis
    via Gaunt tensor products", ICLR 2024, arXiv:2401.10216, Sec. 3.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.0, 0.0, 1.0, 0.0])    # Z_1^0 (~ z)
    >>> z = gaunt_tensor_product(x, x)         # Z_1^0 squared: degrees 0 and 2 only
    >>> np.round(z, 6) + 0.0
    array([0.282095, 0.      , 0.      , 0.      , 0.      , 0.      ,
           0.252313, 0.      , 0.      ])
    >>> bool(np.allclose(z, gaunt_tensor_product(x, x, method="direct")))
    True
    """
    ctx = array_context(x, y, *_weight_arrays(weights), names=_PRODUCT_ARGS)
    run = implementation("gaunt.gaunt_tensor_product", ctx.backend)
    return run(x, y, lmax_out=lmax_out, method=method, basis=basis, weights=weights,
               check_finite=check_finite, ctx=ctx)


def _gaunt_tensor_product_switch(
    x: Any,
    y: Any,
    *,
    lmax_out: int | None = None,
    method: str = "auto",
    basis: str = "real",
    weights: Any = None,
    check_finite: bool = True,
    ctx: Any = None,
) -> Any:
    """gaunt_tensor_product on NumPy (the numpy/numba kernels) and CuPy: the measured paths."""
    basis = _check_basis(basis)
    method = _method(method)
    xp = array_namespace()
    a, b, l1, l2, batch, dtype = _pair(x, y, basis, check_finite)
    lo = _output_lmax(lmax_out, l1 + l2)
    w1, w2, w3 = _unpack_weights(weights)
    w1 = _degree_weights(w1, l1, "weights[0]", dtype, xp)
    w2 = _degree_weights(w2, l2, "weights[1]", dtype, xp)
    w3 = _degree_weights(w3, lo, "weights[2]", dtype, xp)
    # Weights broadcast with the leading axes: the output batch is the common shape of all.
    batch = np.broadcast_shapes(batch, *(w.shape[:-1] for w in (w1, w2, w3) if w is not None))
    keep = min(lo, l1 + l2)
    rows = math.prod(batch)
    method = _resolve(method, "product", -(-(l1 + l2) // 2), rows, dtype, ctx)
    src_a = _weighted(_row_source(a, batch, dtype, xp),
                      None if w1 is None else _row_source(w1, batch, dtype, xp))
    src_b = _weighted(_row_source(b, batch, dtype, xp),
                      None if w2 is None else _row_source(w2, batch, dtype, xp))
    w_out = None if w3 is None else _row_source(w3, batch, dtype, xp)
    what = f"gaunt_tensor_product (method={method!r})"
    extra = 0.0
    if method == "fourier":
        keep, per_row, compute = _fourier_plan([l1, l2], [1, 1], keep, basis, xp, rows)
    elif method == "direct":
        per_row, gather_row = _direct_row_bytes(l1, l2, keep, basis)
        extra = _gather_scratch(rows, gather_row)

        def compute(chunks):
            return _direct(chunks[0], chunks[1], l1, l2, keep, basis, xp)
    else:
        per_row, compute = _grid_plan([l1, l2], [1, 1], keep, basis, dtype, xp)
    per_row += ((l1 + 1) ** 2 + (l2 + 1) ** 2) * np.dtype(dtype).itemsize * 2
    z = _run_rows([src_a, src_b], rows, (keep + 1) ** 2, (lo + 1) ** 2, dtype, per_row,
                  compute, w_out, what, xp, extra)
    return z.reshape(tuple(batch) + z.shape[-1:])


register("gaunt.gaunt_tensor_product", "numpy", _gaunt_tensor_product_switch)
register("gaunt.gaunt_tensor_product", "cupy", _gaunt_tensor_product_switch)
register("gaunt.gaunt_tensor_product", "array", "sci.gaunt._array:gaunt_tensor_product_entry")


def gaunt_convolution(
    x: Any,
    edge_vectors: Any,
    *,
    lmax_edge: int,
    lmax_out: int | None = None,
    method: str = "auto",
    basis: str = "real",
    weights: Any = None,
    check_finite: bool = True,
) -> Array:
    r"""Equivariant convolution: features times spherical harmonics of edge directions.

    Parameters
    ----------
    x : array_like, shape (E, C, (L+1)**2) or (..., C, (L+1)**2)
        Features of the source node of each edge (channels on the second-last axis).
    edge_vectors : array_like, shape (E, 3) or (..., 3)
        Edge vectors :math:`r_{ij}` (nonzero); the leading axes match those of ``x`` before
        the channel axis.
    lmax_edge : int
        Degree of the edge harmonics :math:`Y(\hat r_{ij})`.
    lmax_out, method, basis, weights
        As in :func:`gaunt_tensor_product` (``weights[1]`` weights the edge harmonics).

    check_finite : bool
        Check the inputs for NaN and infinities (default): one reduction per input, on a GPU a
        synchronisation with the host, which ``False`` saves (non-finite input then gives
        non-finite output).
    Returns
    -------
    array, shape (..., C, (lmax_out+1)**2)
        :math:`x_j \otimes_{Gaunt} Y(\hat r_{ij})` channel-wise; summing over the edges into a
        node is left to the caller (e.g. ``numpy.add.at``).

    Notes
    -----
    Arrays of any library (the Backends page of the docs): NumPy arrays and lists follow the
    switch (NumPy/Numba, or CuPy under ``use_backend("cupy")``); CuPy arrays stay on their GPU;
    torch tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array
    path (``sci/gaunt/_array.py``, written against the standard) and come back in their library,
    on their device. Through torch the result is differentiable: autograd differentiates the
    array path (no custom backward), in the features and in the edge vectors; memory as
    :func:`gaunt_tensor_product`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((2, 1, 1))                 # scalar features, 2 edges, 1 channel
    >>> out = gaunt_convolution(x, [[0, 0, 1.0], [1.0, 0, 0]], lmax_edge=1)
    >>> out.shape
    (2, 1, 4)
    """
    ctx = array_context(x, edge_vectors, *_weight_arrays(weights), names=_CONVOLUTION_ARGS)
    run = implementation("gaunt.gaunt_convolution", ctx.backend)
    return run(x, edge_vectors, lmax_edge=lmax_edge, lmax_out=lmax_out, method=method,
               basis=basis, weights=weights, check_finite=check_finite, ctx=ctx)


def _gaunt_convolution_switch(
    x: Any,
    edge_vectors: Any,
    *,
    lmax_edge: int,
    lmax_out: int | None = None,
    method: str = "auto",
    basis: str = "real",
    weights: Any = None,
    check_finite: bool = True,
    ctx: Any = None,
) -> Any:
    """gaunt_convolution on NumPy (the numpy/numba kernels) and CuPy: the measured paths."""
    lmax_edge = check_integer(lmax_edge, "lmax_edge", minimum=0, maximum=LMAX_LIMIT)
    basis = _check_basis(basis)
    a, _ = coefficient_array(x, "x", basis, check_finite=check_finite)
    if a.ndim < 2:
        raise ValueError(f"x must have shape (..., C, (L+1)^2); got {tuple(a.shape)}")
    rdtype = np.float32 if a.dtype in (np.float32, np.complex64) else np.float64
    # Refuse an oversized output before the edge harmonics are computed (the tensor product
    # checks it again with its working memory).
    lo = _output_lmax(lmax_out, lmax_from_size(a.shape[-1], "x") + lmax_edge)
    n_edges = math.prod(a.shape[:-2])
    out_bytes = float(math.prod(a.shape[:-1])) * (lo + 1) ** 2 * a.dtype.itemsize
    # The edge harmonics and their temporaries (the estimate spherical_harmonics checks).
    edge_bytes = float(n_edges) * (lmax_edge + 1) ** 2 * a.dtype.itemsize * 3
    check_memory(
        out_bytes + edge_bytes,
        f"gaunt_convolution (method={method!r}): the output of {math.prod(a.shape[:-1])} "
        f"rows x {(lo + 1) ** 2} coefficients ({format_bytes(out_bytes)}) plus the edge "
        f"harmonics ({format_bytes(edge_bytes)})",
        hint="process the edges in smaller batches or lower lmax_out",
    )
    y = spherical_harmonics(lmax_edge, edge_vectors, basis=basis, dtype=rdtype)
    if tuple(y.shape[:-1]) != tuple(a.shape[:-2]):
        raise ValueError(
            "edge_vectors must have one vector per row of x (shape x.shape[:-2] + (3,)); got x "
            f"{tuple(a.shape)} and edge_vectors with leading shape {tuple(y.shape[:-1])}"
        )
    return gaunt_tensor_product(
        a, y[..., None, :], lmax_out=lmax_out, method=method, basis=basis, weights=weights,
        check_finite=False,  # x was checked above, the harmonics are finite
    )


register("gaunt.gaunt_convolution", "numpy", _gaunt_convolution_switch)
register("gaunt.gaunt_convolution", "cupy", _gaunt_convolution_switch)
register("gaunt.gaunt_convolution", "array", "sci.gaunt._array:gaunt_convolution_entry")


def gaunt_power(
    x: Any,
    nu: int,
    *,
    lmax_out: int | None = None,
    method: str = "auto",
    basis: str = "real",
    check_finite: bool = True,
) -> Array:
    r"""Many-body features :math:`x^{\otimes\nu}`: the coefficients of :math:`f^\nu`.

    Parameters
    ----------
    x : array_like, shape (..., (L+1)**2)
    nu : int
        Body order (>= 1).
    lmax_out : int, optional
        Highest output degree (default ``nu * L``, nothing lost).
    method : {"auto", "fourier", "direct", "grid"}
        ``"auto"`` (default): the measured-fastest exact method (as in
        :func:`gaunt_tensor_product`, keyed by ``L`` and ``nu``). ``"fourier"``: one forward
        conversion, the power on a torus grid fine enough for degree
        :math:`\nu L` (repeated FFT convolution by binary splitting), one backward conversion;
        ``"direct"``: repeated Gaunt contractions (binary splitting); ``"grid"``: quadrature.
    basis : {"real", "complex"}

    check_finite : bool
        Check the inputs for NaN and infinities (default): one reduction per input, on a GPU a
        synchronisation with the host, which ``False`` saves (non-finite input then gives
        non-finite output).
    Returns
    -------
    array, shape (..., (lmax_out+1)**2)

    Notes
    -----
    Arrays of any library (the Backends page of the docs): NumPy arrays and lists follow the
    switch (NumPy/Numba, or CuPy under ``use_backend("cupy")``); CuPy arrays stay on their GPU;
    torch tensors (CPU or CUDA), ``array_api_strict`` and other array-API arrays take the array
    path (``sci/gaunt/_array.py``, written against the standard) and come back in their library,
    on their device. Through torch the result is differentiable: autograd differentiates the
    array path (no custom backward); memory as :func:`gaunt_tensor_product` for each of the
    O(log nu) squarings.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([np.sqrt(4 * np.pi), 0, 0, 0])   # the constant function 1
    >>> round(float(gaunt_power(x, 3)[0] / np.sqrt(4 * np.pi)), 12)
    1.0
    """
    ctx = array_context(x, names=("x",))
    run = implementation("gaunt.gaunt_power", ctx.backend)
    return run(x, nu, lmax_out=lmax_out, method=method, basis=basis,
               check_finite=check_finite, ctx=ctx)


def _gaunt_power_switch(
    x: Any,
    nu: int,
    *,
    lmax_out: int | None = None,
    method: str = "auto",
    basis: str = "real",
    check_finite: bool = True,
    ctx: Any = None,
) -> Any:
    """gaunt_power on NumPy (the numpy/numba kernels) and CuPy: the measured paths."""
    basis = _check_basis(basis)
    method = _method(method)
    nu = check_integer(nu, "nu", minimum=1, maximum=LMAX_LIMIT)
    xp = array_namespace()
    a, lmax = coefficient_array(x, "x", basis, check_finite=check_finite)
    lo = _output_lmax(lmax_out, nu * lmax)
    if nu * lmax > LMAX_LIMIT:
        raise ValueError(f"nu * L = {nu * lmax} exceeds the degree limit {LMAX_LIMIT}")
    batch = tuple(a.shape[:-1])
    rows = math.prod(batch)
    method = _resolve(method, "power", lmax, rows, a.dtype, ctx, nu=nu)
    keep = min(lo, nu * lmax)
    src = _row_source(a, batch, a.dtype, xp)
    what = f"gaunt_power (nu={nu}, method={method!r})"
    extra = 0.0
    if method == "fourier":
        keep, per_row, compute = _fourier_plan([lmax], [nu], keep, basis, xp, rows)
    elif method == "grid":
        per_row, compute = _grid_plan([lmax], [nu], keep, basis, a.dtype, xp)
    else:
        stages, have = _direct_power_stages(lmax, nu)
        # Every intermediate power is held until the chunk is done (a conservative bound).
        sizes = [_direct_row_bytes(*st, basis) for st in stages]
        per_row = (max((b[0] for b in sizes), default=0)
                   + sum((st[2] + 1) ** 2 for st in stages) * 16)
        extra = _gather_scratch(rows, max((b[1] for b in sizes), default=0))
        n_keep = (keep + 1) ** 2

        def compute(chunks):
            z, _ = _direct_power(chunks[0], lmax, nu, basis, xp)
            return z[:, :n_keep]
    per_row += (lmax + 1) ** 2 * a.dtype.itemsize * 2
    z = _run_rows([src], rows, (keep + 1) ** 2, (lo + 1) ** 2, a.dtype, per_row, compute,
                  None, what, xp, extra)
    return z.reshape(batch + z.shape[-1:])


register("gaunt.gaunt_power", "numpy", _gaunt_power_switch)
register("gaunt.gaunt_power", "cupy", _gaunt_power_switch)
register("gaunt.gaunt_power", "array", "sci.gaunt._array:gaunt_power_entry")


def _direct_power(a, lmax, nu, basis, xp):
    if nu == 1:
        return a, lmax
    half, lh = _direct_power(a, lmax, nu // 2, basis, xp)
    z = _direct(half, half, lh, lh, 2 * lh, basis, xp)
    lz = 2 * lh
    if nu % 2:
        z = _direct(z, a, lz, lmax, lz + lmax, basis, xp)
        lz += lmax
    return z, lz


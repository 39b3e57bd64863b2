"""Reading charged particles: PQR (positions, charges, radii) and XYZ with charges."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["read_pqr", "read_xyz"]


def _finite(arr: np.ndarray, what: str, path: Any) -> np.ndarray:
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: {what} contain NaN or infinity")
    return arr


def read_pqr(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a PQR file (PDB2PQR): positions in Å, charges in e, radii in Å.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    positions : ndarray, shape (N, 3)
    charges : ndarray, shape (N,)
    radii : ndarray, shape (N,)

    Raises
    ------
    ValueError
        A malformed ATOM/HETATM record (the line number is given), non-finite numbers, or no
        atoms at all.

    Notes
    -----
    Records ``ATOM`` and ``HETATM`` are read; the last five whitespace-separated fields are
    x, y, z, charge, radius (the PQR convention, which tolerates a missing chain identifier).

    Examples
    --------
    >>> import tempfile, os
    >>> from sci.chebyshev_tucker import read_pqr
    >>> text = ("ATOM      1  N   MET A   1      -1.000   2.000   3.000 -0.3000 1.8500\\n"
    ...         "ATOM      2  CA  MET A   1       0.000   0.000   0.000  0.2100 2.2750\\n")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "two.pqr")
    ...     _ = open(p, "w").write(text)
    ...     x, q, r = read_pqr(p)
    >>> x.shape, q.tolist(), r.tolist()
    ((2, 3), [-0.3, 0.21], [1.85, 2.275])
    """
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.startswith(("ATOM", "HETATM")):
                continue
            fields = line.split()
            try:
                rows.append([float(v) for v in fields[-5:]])
            except ValueError:
                raise ValueError(
                    f"{path}:{number}: cannot read x y z charge radius from {line.strip()!r}"
                ) from None
            if len(fields) < 7:
                raise ValueError(f"{path}:{number}: too few fields in {line.strip()!r}")
    if not rows:
        raise ValueError(f"{path}: no ATOM or HETATM records")
    data = _finite(np.asarray(rows, dtype=np.float64), "the numbers", path)
    return data[:, :3].copy(), data[:, 3].copy(), data[:, 4].copy()


def read_xyz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read an XYZ file whose fifth column is the charge (``element x y z q``).

    The first line is the atom count, the second a comment (standard XYZ).

    Returns
    -------
    positions : ndarray, shape (N, 3)
    charges : ndarray, shape (N,)
    elements : list of str

    Raises
    ------
    ValueError
        A wrong count, a line without five fields or a non-number.
    """
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    try:
        count = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise ValueError(f"{path}: the first line must be the number of atoms") from None
    body = [ln for ln in lines[2:] if ln.strip()]
    if len(body) != count:
        raise ValueError(f"{path}: header says {count} atoms but {len(body)} lines follow")
    elements, rows = [], []
    for number, line in enumerate(body, start=3):
        fields = line.split()
        if len(fields) < 5:
            raise ValueError(
                f"{path}:{number}: expected 'element x y z charge', got {line.strip()!r}"
            )
        try:
            rows.append([float(v) for v in fields[1:5]])
        except ValueError:
            raise ValueError(f"{path}:{number}: not a number in {line.strip()!r}") from None
        elements.append(fields[0])
    data = _finite(np.asarray(rows, dtype=np.float64).reshape(-1, 4), "the numbers", path)
    return data[:, :3].copy(), data[:, 3].copy(), elements

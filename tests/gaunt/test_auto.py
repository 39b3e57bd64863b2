"""``method="auto"`` (issue 17): the measured-fastest exact method, and the table behind it.

The oracle is the direct sparse contraction: whatever auto chooses must agree with it to
float64 round-off at every degree on every leg (the three methods are exact for band-limited
inputs; their differences are rounding of sums of O(L^2) terms). The lookup rules are checked
on synthetic tables, where the right answer is known by construction.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sci
from sci.backend._arrays import ArrayContext, creation_context
from sci.gaunt import _auto, calibrate_methods, gaunt_convolution, gaunt_power, gaunt_tensor_product


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("lmax", [0, 1, 2, 3, 4, 6, 8, 12])
def test_auto_agrees_with_direct_at_every_degree(xp, lmax):
    rng = np.random.default_rng(lmax)
    n = (lmax + 1) ** 2
    x, y = rng.standard_normal((2, 3, n))
    auto = gaunt_tensor_product(xp.asarray(x), xp.asarray(y))  # the default is "auto"
    assert xp.is_leg_array(auto)
    direct = gaunt_tensor_product(xp.asarray(x), xp.asarray(y), method="direct")
    # sums of ~(L+1)^2 products of O(1) terms: a few hundred ulps at most
    assert _rel(xp.to_numpy(auto), xp.to_numpy(direct)) <= 1e-13
    if lmax <= 6:
        p_auto = gaunt_power(xp.asarray(x), 3)
        p_direct = gaunt_power(xp.asarray(x), 3, method="direct")
        assert _rel(xp.to_numpy(p_auto), xp.to_numpy(p_direct)) <= 1e-12


def test_auto_convolution_agrees_with_direct(xp):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 2, 16))
    edges = rng.standard_normal((5, 3))
    auto = gaunt_convolution(xp.asarray(x), xp.asarray(edges), lmax_edge=2)
    direct = gaunt_convolution(xp.asarray(x), xp.asarray(edges), lmax_edge=2, method="direct")
    assert _rel(xp.to_numpy(auto), xp.to_numpy(direct)) <= 1e-13


def test_unknown_method_lists_auto():
    with pytest.raises(ValueError, match="method must be one of 'auto', 'fourier'"):
        gaunt_tensor_product(np.ones(4), np.ones(4), method="fastest")


# -- the lookup ---------------------------------------------------------------------------


def _row(L, best, batch=1024, dtype="float32", operation="product", nu=1):
    return {"operation": operation, "dtype": dtype, "batch": batch, "L": L, "nu": nu,
            "times_s": {best: 1.0}, "best": best}


@pytest.fixture
def table(tmp_path, monkeypatch):
    """A user table at a temporary path and no packaged one: ``table(platform, rows)``."""
    path = tmp_path / "methods.json"
    monkeypatch.setenv(_auto.TABLE_VARIABLE, str(path))
    monkeypatch.setattr(_auto, "PACKAGED_TABLE", tmp_path / "absent.json")
    _auto.clear_table_cache()

    def write(platform, rows):
        _auto.write_table(path, {platform: {"machine": {}, "rows": rows}})
        return path

    yield write
    _auto.clear_table_cache()


def _numba():
    return ArrayContext(None, "cpu", "numba")


def test_lookup_degree_batch_precision_and_power(table):
    table("numba", [
        _row(1, "direct"), _row(2, "grid"), _row(4, "fourier"),
        _row(1, "grid", batch=16), _row(2, "direct", dtype="float64"),
        _row(3, "grid", operation="power", nu=2), _row(3, "direct", operation="power", nu=4),
    ])
    ctx, f32 = _numba(), np.dtype("float32")
    assert _auto.choose_method("product", 1, 1024, f32, ctx) == "direct"
    assert _auto.choose_method("product", 3, 1024, f32, ctx) == "grid"  # nearest L below
    assert _auto.choose_method("product", 0, 1024, f32, ctx) == "direct"  # below all: smallest
    assert _auto.choose_method("product", 1, 20, f32, ctx) == "grid"  # nearest batch (log)
    assert _auto.choose_method("product", 1, 500, f32, ctx) == "direct"
    assert _auto.choose_method("product", 2, 1024, np.dtype("float64"), ctx) == "direct"
    assert _auto.choose_method("product", 2, 1024, np.dtype("complex64"), ctx) == "grid"
    assert _auto.choose_method("power", 3, 1024, f32, ctx, nu=2) == "grid"
    assert _auto.choose_method("power", 3, 1024, f32, ctx, nu=5) == "direct"  # nearest nu


def _scan(rows, operation, degree, n_rows, precision, nu):
    """The lookup by a plain scan of the rows, written from the rules (the oracle of the
    indexed lookup): operation; precision, else the other; nearest nu; nearest batch in log;
    nearest measured degree not above (else the smallest); never direct beyond the largest."""
    rows = [r for r in rows if r["operation"] == operation]
    rows = [r for r in rows if r["dtype"] == precision] or rows
    if not rows:
        return "fourier"
    nu = min(sorted({r["nu"] for r in rows}), key=lambda v: abs(v - nu))
    rows = [r for r in rows if r["nu"] == nu]
    batch = min(sorted({r["batch"] for r in rows}),
                key=lambda b: abs(math.log(b) - math.log(max(n_rows, 1))))
    rows = [r for r in rows if r["batch"] == batch]
    degrees = sorted({r["L"] for r in rows})
    use = max([d for d in degrees if d <= degree], default=degrees[0])
    best = next(r["best"] for r in rows if r["L"] == use)
    return "fourier" if degree > degrees[-1] and best == "direct" else best


PRECISIONS = st.sampled_from(["float32", "float64"])
OPERATIONS = st.sampled_from(["product", "power"])


@given(
    rows=st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["fourier", "direct", "grid"]),
                            st.sampled_from([64, 1024]), PRECISIONS, OPERATIONS,
                            st.integers(1, 3)),
                  min_size=8, max_size=40),
    n_rows=st.integers(0, 5000), data=st.data(),
)
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_lookup_equals_a_scan_of_the_table(table, rows, n_rows, data):
    # Queries mostly like a measured row (so the group they land in holds several degrees), at,
    # between and beyond the measured degrees (the edges of the "not above" rule).
    like = data.draw(st.sampled_from(rows))
    group = [r[0] for r in rows if r[2:] == like[2:]]  # the degrees measured like it
    degree = data.draw(st.one_of(st.sampled_from(group), st.integers(0, 20)))
    operation = data.draw(st.one_of(st.just(like[4]), OPERATIONS))
    precision = data.draw(st.one_of(st.just(like[3]), PRECISIONS))
    nu = data.draw(st.one_of(st.just(like[5]), st.integers(1, 5)))
    rows = [_row(L, best, batch=b, dtype=dt, operation=op, nu=k) for L, best, b, dt, op, k in rows]
    table("numba", rows)
    _auto.clear_table_cache()
    got = _auto.choose_method(operation, degree, n_rows, np.dtype(precision), _numba(), nu=nu)
    assert got == _scan(rows, operation, degree, n_rows, precision, nu)


def test_direct_is_never_chosen_beyond_the_measured_degrees(table):
    table("numba", [_row(1, "grid"), _row(8, "direct")])
    ctx, f32 = _numba(), np.dtype("float32")
    assert _auto.choose_method("product", 8, 1024, f32, ctx) == "direct"
    assert _auto.choose_method("product", 9, 1024, f32, ctx) == "fourier"


def test_unmeasured_platform_or_operation_gets_fourier(table):
    table("numpy", [_row(1, "grid")])
    f32 = np.dtype("float32")
    assert _auto.choose_method("product", 1, 1024, f32, _numba()) == "fourier"
    assert _auto.choose_method("power", 1, 1024, f32, ArrayContext(None, "cpu", "numpy"),
                               nu=2) == "fourier"


def test_platform_names(xp):
    name = _auto.platform_of(creation_context(xp.namespace, xp.device))
    expected = {"numpy": "numpy", "numba": "numba", "strict": "array_api_strict:device1",
                "torch": "torch:cpu", "cupy": "cupy"}
    assert name == expected[xp.name]


def test_a_broken_table_is_a_clear_error(table, tmp_path):
    path = table("numba", [_row(1, "grid")])
    path.write_text("{not json")
    _auto.clear_table_cache()
    with pytest.raises(ValueError, match="cannot be read.*sci.gaunt.calibrate"):
        gaunt_tensor_product(np.ones(4), np.ones(4))
    path.write_text(json.dumps({"format": 99, "platforms": {}}))
    _auto.clear_table_cache()
    with pytest.raises(ValueError, match="format 99"):
        gaunt_tensor_product(np.ones(4), np.ones(4))


def test_packaged_table_covers_the_cpu_backends():
    data = json.loads(_auto.PACKAGED_TABLE.read_text())
    assert data["format"] == _auto.FORMAT
    for platform in ("numpy", "numba"):
        rows = data["platforms"][platform]["rows"]
        degrees = {r["L"] for r in rows if r["operation"] == "product"}
        assert set(range(1, 9)) <= degrees  # every small degree models use is measured
        for r in rows:  # "best" is the fastest of the times recorded beside it
            assert r["best"] == min(r["times_s"], key=r["times_s"].get)
            assert all(math.isfinite(t) and t > 0 for t in r["times_s"].values())


def test_calibration_writes_and_auto_reads_it(table, tmp_path):
    path = tmp_path / "methods.json"
    table("numpy", [_row(1, "grid")])  # another platform's entry is kept
    with sci.use_backend("numba"):
        entry = calibrate_methods(degrees=(1, 2), batches=(4,), dtypes=("float64",),
                                  powers=(2,), repeats=1)
    data = json.loads(path.read_text())
    assert set(data["platforms"]) == {"numpy", "numba"}
    assert data["platforms"]["numba"] == json.loads(json.dumps(entry))
    ops = {(r["operation"], r["nu"], r["L"]) for r in entry["rows"]}
    assert ops == {("product", 1, 1), ("product", 1, 2), ("power", 2, 1)}  # 2 * 2 > max L
    first = entry["rows"][0]
    assert set(first["times_s"]) == {"fourier", "direct", "grid"}
    with sci.use_backend("numba"):
        got = _auto.choose_method("product", 1, 4, np.dtype("float64"), creation_context())
    assert got == first["best"]


def test_the_cache_variable_is_the_datasets_one():
    """_auto names the data-cache variable itself (no import per call): it must stay the one
    sci.datasets reads."""
    from sci import datasets

    assert _auto._CACHE_VARIABLE == datasets.CACHE_VARIABLE


def test_a_changed_table_variable_is_read(table, tmp_path, monkeypatch):
    """The memoised lookup is keyed by the table's path: pointing SCI_GAUNT_METHODS elsewhere
    takes effect without clearing any cache."""
    ctx, f32 = _numba(), np.dtype("float32")
    table("numba", [_row(2, "grid")])
    assert _auto.choose_method("product", 2, 1024, f32, ctx) == "grid"
    other = tmp_path / "other.json"
    _auto.write_table(other, {"numba": {"machine": {}, "rows": [_row(2, "direct")]}})
    monkeypatch.setenv(_auto.TABLE_VARIABLE, str(other))
    assert _auto.choose_method("product", 2, 1024, f32, ctx) == "direct"

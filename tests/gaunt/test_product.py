"""The Gaunt tensor product: three methods agree, symmetry, equivariance, e3nn, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sci
from sci.gaunt import (
    gaunt,
    gaunt_convolution,
    gaunt_power,
    gaunt_table,
    gaunt_tensor_product,
    random_rotation,
    rotate,
    spherical_harmonics,
    wigner_3j,
)

METHODS = ("fourier", "direct", "grid")


def _random(rng, shape, basis, dtype=np.float64):
    x = rng.standard_normal(shape)
    if basis == "complex":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype if basis == "real" else np.result_type(dtype, np.complex64))


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("basis", ["real", "complex"])
def test_methods_agree_l8(xp, rng, basis):
    # Spec: Fourier product vs direct Gaunt contraction, L <= 8: <= 1e-13 relative.
    x = _random(rng, (3, 2, 81), basis)
    y = _random(rng, (2, 64), basis)
    out = {}
    for m in METHODS:
        z = gaunt_tensor_product(xp.asarray(x), xp.asarray(y), method=m, basis=basis)
        assert xp.is_leg_array(z)
        out[m] = xp.to_numpy(z)
    assert out["fourier"].shape == (3, 2, (8 + 7 + 1) ** 2)
    assert _rel(out["fourier"], out["direct"]) <= 1e-13
    assert _rel(out["grid"], out["direct"]) <= 1e-13


def test_fourier_vs_grid_l32(rng):
    # Spec: Fourier vs the S^2 quadrature reference <= 1e-12 relative up to L = 32.
    x = rng.standard_normal((2, 33 * 33))
    y = rng.standard_normal((2, 33 * 33))
    a = gaunt_tensor_product(x, y, method="fourier")
    b = gaunt_tensor_product(x, y, method="grid")
    assert _rel(a, b) <= 1e-12


def test_symmetric_and_no_cross_product(rng):
    x = rng.standard_normal((4, 36))
    y = rng.standard_normal((4, 36))
    # Spec: GTP(x, y) = GTP(y, x) to <= 1e-14 (relative to the output's size).
    assert _rel(gaunt_tensor_product(x, y), gaunt_tensor_product(y, x)) <= 1e-14
    # Only l1 + l2 + l3 even: two l = 1 vectors give no l = 1 output (no cross product).
    v = np.zeros((2, 4))
    v[:, 1:] = rng.standard_normal((2, 3))
    z = gaunt_tensor_product(v[0], v[1])
    assert np.abs(z[1:4]).max() <= 1e-15 * np.abs(z).max()
    t = gaunt_table(1)
    assert not np.any((t.index1 >= 1) & (t.index2 >= 1) & (t.index3 >= 1) & (t.index3 < 4))


def test_definition_against_gaunt_coefficients(rng):
    # z_{l3 m3} = sum gaunt-coupling * x * y, written out with sci.gaunt.gaunt (complex).
    l1, l2 = 2, 3
    x = _random(rng, (9,), "complex")
    y = _random(rng, (16,), "complex")
    z = np.zeros(36, complex)
    for i1 in range(9):
        a = int(np.sqrt(i1))
        for i2 in range(16):
            b = int(np.sqrt(i2))
            for i3 in range(36):
                c = int(np.sqrt(i3))
                m1, m2, m3 = i1 - a * a - a, i2 - b * b - b, i3 - c * c - c
                z[i3] += (-1) ** m3 * gaunt(a, b, c, m1, m2, -m3) * x[i1] * y[i2]
    np.testing.assert_allclose(gaunt_tensor_product(x, y, basis="complex"), z, atol=1e-14)
    del l1, l2


def test_pointwise_product(rng):
    # The output is the pointwise product: check at points.
    x = rng.standard_normal(25)
    y = rng.standard_normal(9)
    pts = rng.standard_normal((6, 3))
    z = gaunt_tensor_product(x, y)
    np.testing.assert_allclose(
        spherical_harmonics(6, pts) @ z,
        (spherical_harmonics(4, pts) @ x) * (spherical_harmonics(2, pts) @ y), atol=1e-13)


@given(
    l1=st.integers(0, 6), l2=st.integers(0, 6), lo=st.integers(0, 13),
    batch=st.lists(st.integers(1, 3), max_size=2),
    float32=st.booleans(), seed=st.integers(0, 2**31 - 1),
    basis=st.sampled_from(["real", "complex"]),
)
def test_equivariance_hypothesis(l1, l2, lo, batch, float32, seed, basis):
    # Spec: equivariance under random rotations <= 1e-13 relative for L <= 6 in float64.
    rng = np.random.default_rng(seed)
    dtype = np.float32 if float32 else np.float64
    x = _random(rng, (*batch, (l1 + 1) ** 2), basis, dtype)
    y = _random(rng, (*batch, (l2 + 1) ** 2), basis, dtype)
    r = random_rotation(rng=rng)
    with sci.use_backend("numpy"):
        z = gaunt_tensor_product(x, y, lmax_out=lo, basis=basis)
        zr = gaunt_tensor_product(rotate(x, r, basis=basis), rotate(y, r, basis=basis),
                                  lmax_out=lo, basis=basis)
        want = rotate(z, r, basis=basis)
    assert z.dtype == x.dtype
    assert z.shape == (*batch, (lo + 1) ** 2)
    scale = max(np.abs(x).max() * np.abs(y).max(), 1e-30)
    tol = 2e-5 if float32 else 1e-13
    assert np.abs(zr - want).max() <= tol * scale


@given(
    l1=st.integers(0, 5), l2=st.integers(0, 5), lo=st.integers(0, 11),
    seed=st.integers(0, 2**31 - 1), float32=st.booleans(),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the leg is stateless
def test_methods_and_backends_agree_hypothesis(xp, l1, l2, lo, seed, float32):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if float32 else np.float64
    x = rng.standard_normal((2, (l1 + 1) ** 2)).astype(dtype)
    y = rng.standard_normal((2, (l2 + 1) ** 2)).astype(dtype)
    with sci.use_backend("numpy"):  # the reference: NumPy's direct contraction in float64
        ref = gaunt_tensor_product(x.astype(np.float64), y.astype(np.float64), lmax_out=lo,
                                   method="direct")
    for m in METHODS:
        z = gaunt_tensor_product(xp.asarray(x), xp.asarray(y), lmax_out=lo, method=m)
        assert xp.is_leg_array(z) and z.dtype == getattr(xp, np.dtype(dtype).name)
        tol = 1e-5 if float32 else 1e-13
        assert np.abs(xp.to_numpy(z) - ref).max() <= tol * (np.abs(x).max() * np.abs(y).max())


def test_weights_per_degree(rng):
    x = rng.standard_normal((2, 3, 9))
    y = rng.standard_normal((2, 3, 4))
    w1 = rng.standard_normal(3)
    w2 = rng.standard_normal((3, 2))      # per channel
    w3 = rng.standard_normal(4)
    deg = lambda L: np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)  # noqa: E731
    ref = gaunt_tensor_product(x * w1[deg(2)], y * w2[:, deg(1)]) * w3[deg(3)]
    for m in METHODS:
        out = gaunt_tensor_product(x, y, weights=(w1, w2, w3), method=m)
        np.testing.assert_allclose(out, ref, atol=1e-13)


def test_convolution(rng):
    x = rng.standard_normal((5, 2, 9))
    edges = rng.standard_normal((5, 3))
    out = gaunt_convolution(x, edges, lmax_edge=3)
    ref = gaunt_tensor_product(x, spherical_harmonics(3, edges)[:, None, :])
    np.testing.assert_allclose(out, ref, atol=1e-14)
    r = random_rotation(rng=rng)
    # Rotating features and edges together rotates the output.
    rot = gaunt_convolution(rotate(x, r), edges @ r.T, lmax_edge=3)
    np.testing.assert_allclose(rot, rotate(out, r), atol=1e-12)


@pytest.mark.parametrize("basis", ["real", "complex"])
def test_power(rng, basis):
    x = _random(rng, (2, 9), basis)
    z = {m: gaunt_power(x, 3, method=m, basis=basis) for m in METHODS}
    xx = gaunt_tensor_product(gaunt_tensor_product(x, x, basis=basis), x, basis=basis)
    for m in METHODS:
        assert _rel(z[m], xx) <= 1e-13
    z1 = gaunt_power(x, 1, basis=basis, lmax_out=1)
    np.testing.assert_allclose(z1, x[..., :4], atol=1e-14)
    zs = gaunt_power(x, 4, lmax_out=3, basis=basis)
    zd = gaunt_power(x, 4, lmax_out=3, basis=basis, method="direct")
    assert _rel(zs, zd) <= 1e-13


def test_e3nn_wigner_3j_times_gaunt_factor(rng):
    # Real Gaunt table = c(l1, l2, l3) x e3nn's real-basis 3j tensor (after the basis map).
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    from sci.gaunt._harmonics import _E3NN_ROTATION
    from sci.gaunt._rotation import wigner_D

    dense = gaunt_table(3, basis="real").dense()
    for l1, l2, l3 in [(1, 1, 2), (2, 1, 1), (2, 2, 2), (3, 2, 1), (3, 3, 4), (1, 1, 0)]:
        block = dense[l1 * l1:(l1 + 1) ** 2, l2 * l2:(l2 + 1) ** 2, l3 * l3:(l3 + 1) ** 2]
        d = [wigner_D(l, _E3NN_ROTATION) for l in (l1, l2, l3)]
        # Into e3nn's basis on every index.
        ours = np.einsum("abc,ai,bj,ck->ijk", block, *d)
        w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()
        c = np.sqrt((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) / (4 * np.pi)) * abs(
            float(wigner_3j(l1, l2, l3, 0, 0, 0)))
        # The factor sqrt((2l1+1)(2l2+1)(2l3+1)/4pi) |3j(000)|, up to e3nn's overall sign.
        ratio = ours.ravel() @ w3j.ravel() / (w3j.ravel() @ w3j.ravel())
        np.testing.assert_allclose(ours, ratio * w3j, atol=1e-12)
        np.testing.assert_allclose(abs(ratio), abs(c), rtol=1e-12)


def test_bad_input(rng):
    x = rng.standard_normal((2, 9))
    with pytest.raises(ValueError, match=r"length \(L\+1\)\^2"):
        gaunt_tensor_product(np.ones((2, 8)), x)
    with pytest.raises(ValueError, match="must broadcast"):
        gaunt_tensor_product(np.ones((3, 9)), x)
    with pytest.raises(ValueError, match="finite"):
        gaunt_tensor_product(np.full(9, np.nan), x)
    with pytest.raises(ValueError, match="finite"):
        gaunt_tensor_product(x, np.full(4, np.inf), basis="complex")
    with pytest.raises(TypeError, match="must be real"):
        gaunt_tensor_product(x * 1j, x)
    with pytest.raises(TypeError, match="real numbers"):
        gaunt_tensor_product(np.array(["a"] * 4), x)
    with pytest.raises(ValueError, match="method must be"):
        gaunt_tensor_product(x, x, method="fft")
    with pytest.raises(ValueError, match="lmax_out must be >= 0"):
        gaunt_tensor_product(x, x, lmax_out=-1)
    with pytest.raises(ValueError, match="per-degree weights"):
        gaunt_tensor_product(x, x, weights=(np.ones(2), None, None))
    with pytest.raises(TypeError, match="weights must be"):
        gaunt_tensor_product(x, x, weights=np.ones(3))
    with pytest.raises(ValueError, match="nu must be >= 1"):
        gaunt_power(x, 0)
    with pytest.raises(ValueError, match="would need"):
        gaunt_tensor_product(np.ones(4001 ** 2, np.float32), np.ones(4001 ** 2, np.float32))
    with pytest.raises(ValueError, match="one vector per row"):
        gaunt_convolution(np.ones((3, 2, 4)), np.ones((4, 3)), lmax_edge=1)
    # Integers are accepted as float64 (never silently truncated).
    assert gaunt_tensor_product(np.ones(4, int), np.ones(4, int)).dtype == np.float64


@pytest.mark.parametrize("method", METHODS)
def test_empty_batch(method):
    z = gaunt_tensor_product(np.ones((0, 3, 4)), np.ones((0, 3, 9)), method=method)
    assert z.shape == (0, 3, 16)
    assert gaunt_power(np.ones((0, 4)), 2, method=method).shape == (0, 9)


def test_inputs_not_mutated(rng):
    x = rng.standard_normal((2, 9))
    keep = x.copy()
    for m in METHODS:
        gaunt_tensor_product(x, x, method=m, weights=(np.ones(3), np.ones(3), None))
    np.testing.assert_array_equal(x, keep)


# --------------------------------------------------------------------------- memory limits

_BIG = 2_000_000  # rows: a 2e6 x 9 float64 output is 137.3 MiB, far above a 1 MiB limit


def _big_calls(method):
    big = np.broadcast_to(np.ones(4), (_BIG, 4))  # a view: no memory of its own
    edges = np.broadcast_to(np.array([0.0, 0.3, 1.0]), (_BIG, 3))
    return {
        "gaunt_tensor_product": lambda: gaunt_tensor_product(big, np.ones(4), method=method),
        "gaunt_power": lambda: gaunt_power(big, 2, method=method),
        "gaunt_convolution": lambda: gaunt_convolution(
            big[:, None, :], edges, lmax_edge=1, method=method
        ),
    }


@pytest.mark.parametrize("function", ["gaunt_tensor_product", "gaunt_power", "gaunt_convolution"])
@pytest.mark.parametrize("method", METHODS)
def test_output_counted_against_memory_limit(backend, monkeypatch, method, function):
    from sci._validation import MemoryLimitError

    monkeypatch.setenv("SCI_MEMORY_LIMIT", "1MiB")
    call = _big_calls(method)[function]
    pattern = (rf"{function} \((nu=2, )?method='{method}'\): the output of 2000000 rows x 9 "
               r"coefficients \(137\.3 MiB\).* would need .* more than the limit of 1\.0 MiB")
    with pytest.raises(MemoryLimitError, match=pattern):
        call()


@pytest.mark.parametrize("method", METHODS)
def test_chunked_output_matches_unchunked(monkeypatch, rng, method):
    # Broadcast inputs (a stride-0 channel axis), mixed float32/float64 and weights: the rows
    # are gathered and cast chunk by chunk and written into one preallocated output.
    x = rng.standard_normal((300, 1, 9))
    y = rng.standard_normal((1, 4, 4)).astype(np.float32)
    w = (rng.standard_normal(3), None, rng.standard_normal((4, 5)))
    edges = rng.standard_normal((300, 3))
    ref = gaunt_tensor_product(x, y, method=method, weights=w, lmax_out=4)
    ref_pow = gaunt_power(x, 3, method=method, lmax_out=5)
    ref_conv = gaunt_convolution(x, edges, lmax_edge=2, method=method)
    # 400 KiB: the largest output (1200 rows x 25 x 8 B = 234 KiB) fits; the working memory
    # left gives chunks of a few dozen rows, so every call runs in many chunks.
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "400KiB")
    got = gaunt_tensor_product(x, y, method=method, weights=w, lmax_out=4)
    assert got.shape == (300, 4, 25) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gaunt_power(x, 3, method=method, lmax_out=5), ref_pow,
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gaunt_convolution(x, edges, lmax_edge=2, method=method),
                               ref_conv, rtol=1e-13, atol=1e-13)
    # Against the definition row by row (independent of any chunking).
    i = 123
    one = gaunt_tensor_product(x[i, 0] * w[0][[0, 1, 1, 1, 2, 2, 2, 2, 2]], y[0, 2],
                               method="direct", lmax_out=4)
    scale = w[2][2][np.repeat(np.arange(5), 2 * np.arange(5) + 1)]
    np.testing.assert_allclose(got[i, 2], one * scale, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_output_held_once(monkeypatch, method):
    import tracemalloc

    # 200000 x 9 float64 = 13.7 MiB of output; a 20 MiB limit leaves chunks of ~1.5 MiB.
    # Concatenating per-chunk results held the output twice (peak >= 2x); now it is written
    # in place, so the peak stays within the output plus one chunk (< 1.3x measured ~1.08x).
    monkeypatch.setenv("SCI_MEMORY_LIMIT", "20MiB")
    a = np.broadcast_to(np.arange(1.0, 5.0), (200_000, 4))
    gaunt_tensor_product(a[:10], np.ones(4), method=method)  # warm caches (tables, JIT)
    tracemalloc.start()
    try:
        z = gaunt_tensor_product(a, np.ones(4), method=method)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert z.shape == (200_000, 9)
    assert peak < 1.3 * z.nbytes
    np.testing.assert_allclose(z[-1], gaunt_tensor_product(a[0], np.ones(4), method="direct"),
                               rtol=1e-12, atol=1e-12)


def test_check_finite_can_be_skipped(xp):
    # check_finite=False saves the one reduction (a host synchronisation on a GPU); non-finite
    # input then propagates instead of being refused
    x = xp.asarray(np.array([np.nan, 0.0, 1.0, 0.0]))
    y = xp.asarray(np.array([1.0, 0.0, 0.0, 0.0]))
    for f in (lambda **k: gaunt_tensor_product(x, y, **k), lambda **k: gaunt_power(x, 2, **k)):
        with pytest.raises(ValueError, match="x must be finite"):
            f()
        for method in METHODS:
            with np.errstate(all="ignore"):  # NumPy's own warnings about NaN arithmetic
                out = f(method=method, check_finite=False)
            assert xp.is_leg_array(out) and not np.all(np.isfinite(xp.to_numpy(out)))
    edges = xp.asarray(np.array([[0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="x must be finite"):
        gaunt_convolution(xp.asarray(np.full((1, 1, 1), np.inf)), edges, lmax_edge=1)
    with np.errstate(all="ignore"):
        out = gaunt_convolution(xp.asarray(np.full((1, 1, 1), np.inf)), edges, lmax_edge=1,
                                check_finite=False)
    assert not np.all(np.isfinite(xp.to_numpy(out)))

"""Numba kernels of :mod:`sci.generalization` (registered lazily in the dispatch table)."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _mp_density(x, lower, upper):
    # Branch-free, so that LLVM vectorises the loop (the public function got about 3x faster
    # at 1e7 points: benchmarks/results/marchenko_pastur.json). (upper - x)(x - lower) > 0
    # exactly inside the support and is clamped to 0 outside it, where the denominator is kept
    # away from 0 by a select. Inside the support the same operations as
    # sqrt((upper - x)(x - lower)) / (2 pi x) run, so the values are bitwise the plain formula's.
    t = (upper - x) * (x - lower)
    d = x if x > 0.0 else 1.0
    return math.sqrt(t if t > 0.0 else 0.0) / (2.0 * math.pi * d)


@numba.njit(cache=True)
def _mp_edges(a):
    root = math.sqrt(a)
    # (1 - sqrt a)^2 without cancellation as a -> 1, as in the array implementation.
    return ((1.0 - a) / (1.0 + root)) ** 2, (1.0 + root) ** 2


def _mp_pdf_one_alpha(lam, a, out):
    lower, upper = _mp_edges(a)
    for i in numba.prange(lam.size):
        out[i] = _mp_density(lam[i], lower, upper)


def _mp_pdf_flat(lam, alpha, out):
    for i in numba.prange(lam.size):
        lower, upper = _mp_edges(alpha[i])
        out[i] = _mp_density(lam[i], lower, upper)


# Each kernel compiled twice: waking the thread team costs more than the whole evaluation for
# small inputs (milliseconds on a busy machine against microseconds of work), so they run on
# the calling thread; prange is a plain range there.
_PARALLEL_SIZE = 1 << 16
_KERNELS = {
    parallel: (
        numba.njit(cache=True, parallel=parallel)(_mp_pdf_one_alpha),
        numba.njit(cache=True, parallel=parallel)(_mp_pdf_flat),
    )
    for parallel in (False, True)
}


def mp_pdf(lam: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Marchenko–Pastur density for arrays of one float dtype (see the public API)."""
    shape = np.broadcast_shapes(lam.shape, alpha.shape)
    if alpha.size == 1 and lam.shape == shape:
        # The common case (one alpha, many eigenvalues): edges computed once, no broadcast copy.
        lam_flat = np.ascontiguousarray(lam).reshape(-1)
        out = np.empty_like(lam_flat)
        _KERNELS[out.size >= _PARALLEL_SIZE][0](lam_flat, alpha.reshape(()).item(), out)
        return out.reshape(shape)
    # Materialise the broadcast (writeable, contiguous) so the kernel sees flat arrays.
    lam_full = np.empty(shape, lam.dtype)
    lam_full[...] = lam
    alpha_full = np.empty(shape, lam.dtype)
    alpha_full[...] = alpha
    out = np.empty(lam_full.size, lam.dtype)
    _KERNELS[out.size >= _PARALLEL_SIZE][1](lam_full.reshape(-1), alpha_full.reshape(-1), out)
    return out.reshape(shape)


@numba.njit(cache=True, parallel=True, fastmath=False)
def _bulk_integrals_flat(s, alpha, amplitude, noise, s2, c2, gw, gen, train, slope):
    n_nodes = s2.size
    for i in numba.prange(s.size):
        root = math.sqrt(alpha[i])
        lower = ((1.0 - alpha[i]) / (1.0 + root)) ** 2
        width = 4.0 * root
        amp, sig2, time = amplitude[i], noise[i], s[i]
        g = 0.0
        tr = 0.0
        sl = 0.0
        for j in range(n_nodes):
            lam = lower + width * s2[j]
            weight = gw[j] * width * width * c2[j] * (s2[j] / lam) / (2.0 * math.pi)
            x = -lam * time
            decay = math.exp(x)
            growth = math.expm1(x)
            g += weight * (amp * decay * decay + sig2 * growth * growth / lam)
            tr += weight * (lam * amp + sig2) * decay * decay
            sl += weight * decay * (-sig2 * growth - lam * amp * decay)
        gen[i] = g
        train[i] = tr
        slope[i] = sl


def bulk_integrals(s, alpha, amplitude, noise, s2, c2, gw):
    """Numba version of ``_curves._bulk_integrals_array`` (flat arrays of one dtype)."""
    gen = np.empty_like(s)
    train = np.empty_like(s)
    slope = np.empty_like(s)
    _bulk_integrals_flat(s, alpha, amplitude, noise, s2, c2, gw, gen, train, slope)
    return gen, train, slope


@numba.njit(cache=True, parallel=True, fastmath=False)
def _linear_errors_kernel(lam, z0, drive, fit0, frozen, noise_out, s, eta, weights, residual):
    n_trials, n_modes = lam.shape
    n_times = s.size
    for flat in numba.prange(n_trials * n_times):
        trial = flat // n_times
        time = s[flat % n_times]
        total = 0.0
        fit = 0.0
        for i in range(n_modes):
            lm = lam[trial, i]
            if eta > 0.0:
                steps = np.rint(time / eta)
                base = 1.0 - eta * lm
                if base > 0.0:
                    log_base = math.log1p(-eta * lm)
                    decay = math.exp(steps * log_base)
                    gain = -math.expm1(steps * log_base) / lm
                else:
                    decay = base**steps
                    gain = (1.0 - decay) / lm
            else:
                decay = math.exp(-lm * time)
                gain = -math.expm1(-lm * time) / lm
            z = z0[trial, i] * decay - drive[trial, i] * gain
            total += z * z
            fit += decay * decay * fit0[trial, i]
        weights[trial, flat % n_times] = total + frozen[trial]
        residual[trial, flat % n_times] = fit + noise_out[trial]


def linear_errors(lam, z0, drive, fit0, frozen, noise_out, s, learning_rate):
    """Numba version of ``_simulation._linear_errors_array`` (trials x times in parallel)."""
    weights = np.empty((lam.shape[0], s.size), dtype=lam.dtype)
    residual = np.empty_like(weights)
    eta = -1.0 if learning_rate is None else float(learning_rate)
    c = np.ascontiguousarray
    _linear_errors_kernel(
        c(lam), c(z0), c(drive), c(fit0), c(frozen), c(noise_out), c(s), eta, weights, residual
    )
    return weights, residual


@numba.njit(cache=True, parallel=True, fastmath=False)
def _two_layer_kernel(train_x, train_y, test_x, test_y, hidden, output, epochs, eta,
                      generalization, training):
    n_trials, n_hidden, n_inputs = hidden.shape
    n_examples = train_x.shape[2]
    n_test = test_x.shape[2]
    scale = 1.0 / math.sqrt(n_hidden)
    step = eta * scale / n_examples
    last = epochs[epochs.size - 1]
    for trial in numba.prange(n_trials):
        w = hidden[trial].copy()
        a = output[trial].copy()
        x = train_x[trial]
        xt = np.ascontiguousarray(x.T)
        # work arrays in the inputs' dtype: the products below need one dtype (float32 runs)
        pre = np.empty((n_hidden, n_examples), dtype=hidden.dtype)
        active = np.empty((n_hidden, n_examples), dtype=hidden.dtype)
        back = np.empty((n_hidden, n_examples), dtype=hidden.dtype)
        residual = np.empty(n_examples, dtype=hidden.dtype)
        record = 0
        for epoch in range(last + 1):
            pre[:, :] = w @ x
            for mu in range(n_examples):
                acc = 0.0
                for j in range(n_hidden):
                    if not pre[j, mu] <= 0.0:  # NaN counts as active (relu(NaN) = NaN)
                        acc += a[j] * pre[j, mu]
                residual[mu] = acc * scale - train_y[trial, mu]
            while record < epochs.size and epochs[record] == epoch:
                test_pre = w @ test_x[trial]
                err = 0.0
                for nu in range(n_test):
                    acc = 0.0
                    for j in range(n_hidden):
                        if not test_pre[j, nu] <= 0.0:
                            acc += a[j] * test_pre[j, nu]
                    d = acc * scale - test_y[trial, nu]
                    err += d * d
                generalization[trial, record] = err / n_test
                fit = 0.0
                for mu in range(n_examples):
                    fit += residual[mu] * residual[mu]
                training[trial, record] = fit / n_examples
                record += 1
            if epoch == last:
                break
            # Both gradients from the same forward pass, then one simultaneous update; the
            # two products go to BLAS through np.dot.
            for j in range(n_hidden):
                for mu in range(n_examples):
                    if not pre[j, mu] <= 0.0:  # NaN counts as active (relu(NaN) = NaN)
                        active[j, mu] = pre[j, mu]
                        back[j, mu] = a[j] * residual[mu]
                    else:
                        active[j, mu] = 0.0
                        back[j, mu] = 0.0
            grad_a = active @ residual
            grad_w = back @ xt
            for j in range(n_hidden):
                a[j] -= step * grad_a[j]
                for i in range(n_inputs):
                    w[j, i] -= step * grad_w[j, i]


def two_layer_descent(train_inputs, train_labels, test_inputs, test_labels, hidden, output,
                      epochs, learning_rate):
    """Numba version of ``_two_layer._two_layer_descent_array`` (trials in parallel)."""
    n_trials = hidden.shape[0]
    generalization = np.empty((n_trials, epochs.size), dtype=hidden.dtype)
    training = np.empty_like(generalization)
    c = np.ascontiguousarray
    _two_layer_kernel(c(train_inputs), c(train_labels), c(test_inputs), c(test_labels),
                      c(hidden), c(output), c(epochs.astype(np.int64)), float(learning_rate),
                      generalization, training)
    return generalization, training

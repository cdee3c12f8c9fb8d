"""The seed model's forward pass and BPTT compiled with numba: the ``numba`` backend of ``manual.gradients``.

Same equations, in the same order, as the array-API backend (``manual.bptt``,
``manual.cells.elman``, ``manual.readout``, ``manual.losses``; the README's),
on NumPy float32/float64 arrays, in one compiled call: at small sizes the cost
of ``manual.gradients`` is the interpreter's per-operation overhead, not
arithmetic, and here there is none. Matrix products call BLAS (numba's
``np.dot``, through SciPy), so large sizes run at BLAS speed too. Inputs are
checked before (``contract.check_inputs``, shared); a result that is not
finite is handed back to the array-API backend, which raises the same
``NonFiniteGradientError`` naming the same step.

numba and SciPy are the optional extra ``fast`` (``pip install
'bptt-reference[fast]'``); without them ``available()`` is False and the
array-API backend serves every call.
"""

from __future__ import annotations

import numpy as np

try:  # the optional extra: manual works without it
    import numba
    import scipy.linalg.cython_blas  # noqa: F401  numba's np.dot calls SciPy's BLAS
except ImportError:  # pragma: no cover - exercised where the extra is absent
    numba = None

ACT_CODE = {"tanh": 0, "sigmoid": 1, "relu": 2, "identity": 3}
LOSS_CODE = {"mse": 0, "cross_entropy": 1, "bce": 2}
TOPOLOGY_CODE = {"many-to-one": 0, "many-to-many": 1, "one-to-many": 2}


def pays(B: int, H: int) -> bool:
    """Whether the compiled backend beats the array-API one at batch B, hidden size H (``backend="auto"``).

    Per step, the array-API backend pays ~10 µs of interpreter overhead; the compiled one pays nothing there
    but computes act(z) one scalar at a time (~16 ns per tanh: numba has no SIMD math library here, NumPy
    does, ~2 ns). Measured crossover (README, "Backends"), AMD EPYC, T = 100, float64: B·H = 128 faster
    (1.8×), B = 1, H = 512 faster (1.2×), B·H ≥ 256 with B ≥ 4 slower.
    """
    return B * H <= 128 or (B == 1 and H <= 512)


def available() -> bool:
    """Whether the compiled backend can run here (numba and SciPy importable)."""
    return numba is not None


def _jit(f):
    return numba.njit(cache=True, nogil=True)(f) if numba is not None else f


@_jit
def _sigmoid(s):
    e = np.exp(-abs(s))  # never overflows: exponent ≤ 0 (manual.activations.sigmoid)
    return 1.0 / (1.0 + e) if s >= 0 else e / (1.0 + e)


@_jit
def _act(s, code):
    if code == 0:
        return np.tanh(s)
    if code == 1:
        return _sigmoid(s)
    if code == 2:  # max(s, 0), NaN kept (it must reach the overflow check)
        return s if s > 0 or s != s else 0.0
    return s


@_jit
def forward(z, hs, WhhT, code):
    """z (T, B, H): x_t W_xhᵀ + b_h on entry, z_t on return; hs (T+1, B, H): h0 in hs[0], h_t in hs[t].

    z_t = x_t Wxhᵀ + bh + h_{t-1} Whhᵀ;  h_t = act(z_t)    (t = 1 … T)
    """
    T, B, H = z.shape
    for t in range(T):
        z[t] += np.dot(hs[t], WhhT)  # + h_{t-1} Whhᵀ                                      (B, H)
        for b in range(B):
            for i in range(H):
                hs[t + 1, b, i] = _act(z[t, b, i], code)  # h_t = act(z_t)


@_jit
def backward(Whh, dA, dh, dz, first_direct, tiny):
    """BPTT, t = T … 1; returns dL/dh0 (B, H). As ``manual.cells.elman.run_backward`` (no lengths, no dL/dh_n).

    dL/dh_t = ∂L_t/∂h_t (t ≥ first_direct) + dL/dz_{t+1} Whh;   dL/dz_t = dL/dh_t ⊙ act'(z_t),
    flushed to 0 below ``tiny`` (the smallest normal; README "Vanishing gradients").
    """
    T, B, H = dh.shape
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            if first_direct > t:
                dh[t] = 0.0
        elif t < first_direct:
            dh[t] = np.dot(dz[t + 1], Whh)  # dL/dh_t = dL/dz_{t+1} Whh                      (B, H)
        else:
            dh[t] += np.dot(dz[t + 1], Whh)  # + ∂L_t/∂h_t, the direct term already there
        for b in range(B):
            for i in range(H):
                v = dh[t, b, i] * dA[t, b, i]  # dL/dz_t = dL/dh_t ⊙ act'(z_t)
                dz[t, b, i] = 0.0 if abs(v) < tiny else v  # NaN is kept: it must reach the check
    return np.dot(dz[0], Whh)  # dL/dh0 = dz_1 Whh                                          (B, H)


@_jit
def _dact(z, h, code):
    """act'(z_t), every step at once, from z or h as manual.activations does (T, B, H)."""
    if code == 0:
        return ((1.0 - h) * (1.0 + h)).astype(z.dtype)  # tanh' = 1 − h², factored
    if code == 1:
        return (h * (1.0 - h)).astype(z.dtype)  # σ' = σ(1 − σ)
    if code == 2:
        return (z > 0).astype(z.dtype)  # 0 at z = 0, as torch
    return np.ones_like(z)


@_jit
def _dloss(o, y_f, y_i, code, B, O):
    """dL/do (S·B, O) from o (S·B, O), as manual.losses (fy's derivative folded in). Targets: y_f floats,
    y_i classes."""
    n = B * O
    if code == 0:  # mse: fy = identity, dL/do = 2/n (o − y)
        return ((2.0 / n) * (o - y_f)).astype(o.dtype)
    d = np.empty_like(o)
    if code == 2:  # bce: fy = σ, dL/do = (σ(o) − y)/n
        for r in range(o.shape[0]):
            for j in range(O):
                d[r, j] = (_sigmoid(o[r, j]) - y_f[r, j]) / n
        return d
    for r in range(o.shape[0]):  # cross-entropy: fy = softmax, dL/do = (p − onehot)/B
        m = o[r].max()  # shift: exp never overflows
        s = 0.0
        for j in range(O):
            s += np.exp(o[r, j] - m)
        for j in range(O):
            d[r, j] = (np.exp(o[r, j] - m - np.log(s)) - (1.0 if j == y_i[r] else 0.0)) / B
    return d


@_jit
def seed_gradients(Wxh, Whh, bh, Why, by, x, y_f, y_i, h0, act, loss, topology, tiny):
    """The seed model's gradient set (manual.gradients' equations): dWxh, dWhh, dbh, dWhy, dby, dh0, dx, dh, dz,
    and whether all of it is finite (a sum that overflows counts as not: the array-API backend then decides).

    x (T·B, D), or (B, D) one-to-many; y_f (S·B, O) float targets or y_i (S·B,) classes; h0 (B, H); every
    array C-contiguous; act, loss, topology: the codes above. The caller reshapes dx, dh, dz.
    """
    H, D = Wxh.shape
    B = h0.shape[0]
    O = Why.shape[0]
    T = x.shape[0] // B if topology != 2 else (y_f.shape[0] if loss != 1 else y_i.shape[0]) // B
    z = np.empty((T, B, H), Wxh.dtype)  # (T, B, H)
    if topology == 2:  # one-to-many: x at step 1, zero input after
        z[:] = bh
        z[0] += np.dot(x, Wxh.T)
    else:  # input projection of every step at once: x_t Wxhᵀ + bh
        z.reshape(T * B, H)[:] = np.dot(x, Wxh.T) + bh
    hs = np.empty((T + 1, B, H), Wxh.dtype)  # (T+1, B, H)
    hs[0] = h0
    forward(z, hs, Whh.T, act)  # z_t = x_t Wxhᵀ + bh + h_{t-1} Whhᵀ, h_t = act(z_t)
    S = 1 if topology == 0 else T
    hr = hs[T - S + 1:].reshape(S * B, H)  # the steps the loss reads                        (S·B, H)
    o = np.dot(hr, Why.T) + by  # o = h Whyᵀ + by                                       (S·B, O)
    do = _dloss(o, y_f, y_i, loss, B, O)  # dL/do                                              (S·B, O)
    dWhy = np.dot(do.T, hr)  # Σ_t do_tᵀ h_t                                            (O, H)
    dby = do.sum(axis=0)  # Σ_t Σ_b do_t                                                       (O,)
    dh = np.empty((T, B, H), Wxh.dtype)  # (T, B, H)
    dh[T - S:] = np.dot(do, Why).reshape(S, B, H)  # direct terms ∂L_t/∂h_t = do_t Why
    dz = np.empty((T, B, H), Wxh.dtype)  # (T, B, H)
    dh0 = backward(Whh, _dact(z, hs[1:], act), dh, dz, T - S, tiny)  # dL/dh_t, dL/dz_t, t = T … 1
    dz2 = dz.reshape(T * B, H)  # (T·B, H)
    dz2T = dz2.T  # (H, T·B)
    dWhh = np.dot(dz2T, hs[:T].reshape(T * B, H))  # Σ_t dz_tᵀ h_{t-1}                         (H, H)
    dbh = dz2.sum(axis=0)  # Σ_t Σ_b dz_t                                                      (H,)
    if topology == 2:
        dWxh = np.dot(dz[0].T, x)  # only x_1 is nonzero                                (H, D)
        dx = np.dot(dz[0], Wxh)  # dL/dx_1 = dz_1 Wxh                                          (B, D)
    else:
        dWxh = np.dot(dz2T, x)  # Σ_t dz_tᵀ x_t                                                (H, D)
        dx = np.dot(dz2, Wxh)  # dL/dx_t = dz_t Wxh                                            (T·B, D)
    # a sum of finite numbers is finite unless it overflows; NaN/Inf anywhere makes it NaN/Inf
    finite = np.isfinite(dWxh.sum() + dWhh.sum() + dbh.sum() + dWhy.sum() + dby.sum() + dh0.sum() + dx.sum()
                         + dh.sum() + dz.sum())
    return dWxh, dWhh, dbh, dWhy, dby, dh0, dx, dh, dz, finite

"""What the minimal gated cells share (minGRU, minLSTM: "Were RNNs all we needed?"): no recurrent weights, the
gates from x_t alone, and a recurrence linear in h,

    h_t = A_t ⊙ h_{t−1} + B_t          A_t, B_t functions of step t's pre-activations a_t = x_t W_ihᵀ + b_ih alone

so every gate is computed for all steps at once, and only the carry is a loop. Backward, t = T … 1:

    dL/dh_t     = dL/doutput_t + A_{t+1} ⊙ dL/dh_{t+1}         (through the future; dL/dh_n added at T)
    dL/dA_t     = dL/dh_t ⊙ h_{t−1}      dL/dB_t = dL/dh_t
    dL/da_t     = the cell's own map of (dL/dA_t, dL/dB_t) to its gates (``gate_grads``), for all steps at once
    dL/dh_0     = A_1 ⊙ dL/dh_1

A padded step (``lengths``) keeps the state: A_t = 1, B_t = 0 there, so its gates get zero gradient. The
candidate h̃ goes through the positive map g(a) = a + ½ (a ≥ 0), σ(a) (a < 0), with g'(a) = 1 and σ(a)(1 − σ(a)):
h̃ > 0, which the log-space scan (``log_space_scan``) needs.
"""

from __future__ import annotations

from array_api_compat import device, is_numpy_namespace


def sigmoid(xp, k, a):
    """σ(a), by the backend's own kernel (torch's fused one rounds once in a low precision)."""
    out = xp.empty_like(a)
    k.sigmoid_into(a, out)
    return out


def positive(xp, k, a):
    """(g(a), g′(a)): g(a) = a + ½ for a ≥ 0, σ(a) below, continuous and positive; g′ = 1, σ(1 − σ) (its
    derivative jumps from ¼ to 1 at 0)."""
    s = sigmoid(xp, k, xp.minimum(a, xp.zeros_like(a)))  # σ(min(a, 0))
    return xp.where(a >= 0, a + 0.5, s), xp.where(a >= 0, xp.ones_like(a), s * (1 - s))


def forward(xp, k, xproj, h0, masks, coefficients):
    """(output (T, B, H), h_T, None, cache): ``coefficients(xp, k, xproj)`` gives (A, B, extra), each (T, B, H)."""
    A, Bc, extra = coefficients(xp, k, xproj)
    if masks is not None:  # a padded step: h_t = h_{t−1}
        A, Bc = masks * A + (1 - masks), masks * Bc
    T, B, H = A.shape
    hs = xp.empty((T + 1, B, H), dtype=xproj.dtype, device=device(xproj))  # (T+1, B, H)
    hs[0, ...] = h0
    for t in range(T):
        hs[t + 1, ...] = A[t, ...] * hs[t, ...] + Bc[t, ...]  # h_t = A_t ⊙ h_{t−1} + B_t            (B, H)
    out = hs[1:, ...]  # h_t of every step (manual.stack zeroes a padded step's)
    return out, hs[T, ...], None, (A, hs, extra)


def backward(xp, cache, d_out, dhn, masks, gate_grads, kinds):
    """(dL/dxproj (T, B, G·H), dL/dh0, None, {}, per-step {"h": dL/dh_t, kind: dL/da_kind}): ``gate_grads(xp,
    dB, h_prev, extra)`` maps dL/dB_t = dL/dh_t and h_{t−1} (so dL/dA_t = dL/dB_t ⊙ h_{t−1}) to the gates'
    pre-activations, a tuple in ``kinds``' order; a cell subtracts h_{t−1} from h̃ before it multiplies, as
    rounding in a low precision wants."""
    A, hs, extra = cache
    T, B, H = A.shape
    dh = xp.zeros((T, B, H), dtype=A.dtype, device=device(A)) if d_out is None else xp.asarray(d_out, copy=True)
    if dhn is not None:
        dh[T - 1, ...] += dhn
    for t in range(T - 2, -1, -1):
        dh[t, ...] += A[t + 1, ...] * dh[t + 1, ...]  # dL/dh_t += A_{t+1} ⊙ dL/dh_{t+1}             (B, H)
    dh0 = A[0, ...] * dh[0, ...]  # dL/dh_0 = A_1 ⊙ dL/dh_1                                            (B, H)
    dB = dh if masks is None else dh * masks  # dL/dB_t (zero at a padded step)                      (T, B, H)
    gates = gate_grads(xp, dB, hs[:T, ...], extra)  # each (T, B, H)
    steps = {"h": dh, **dict(zip(kinds, gates, strict=True))}
    return xp.concat(gates, axis=-1), dh0, None, {}, steps


def cell(coefficients, gate_grads, kinds: tuple):
    """(forward, backward, scan) of one minimal cell, the cell interface of ``manual.cells`` around this module's
    loop: ``coefficients(xp, k, xproj)`` → (A, B, what the backward reuses), ``gate_grads(xp, dB, h_prev,
    extra)`` → its gates' gradients in ``kinds``' order."""
    from manual.kernels import kernels

    def forward_(xp, k, config, xproj, h0, c0, W: dict, masks):
        """(output (T, B, H), h_T, None, cache) from xproj = x_t W_ihᵀ + b_ih (T, B, G·H) and h0 (B, H)."""
        return forward(xp, k, xproj, h0, masks, coefficients)

    def backward_(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
        """(dL/dxproj (T, B, G·H), dL/dh0, None, {}, {"h": dL/dh_t, kind: dL/da_kind for each of kinds})."""
        return backward(xp, cache, d_out, dhn, masks, gate_grads, kinds)

    def scan(xp, xproj, h0):
        """h_t for every t by the log-space parallel scan the paper trains with (h0 > 0): the loop's equal."""
        A, Bc, _ = coefficients(xp, kernels(xp, "tanh"), xproj)
        return log_space_scan(xp, A, Bc, h0)

    return forward_, backward_, scan


def log_space_scan(xp, A, Bc, h0):
    """h_t = A_t ⊙ h_{t−1} + B_t for every t at once, in log space (A, B, h0 > 0): log h_t = a*_t +
    logcumsumexp_{s ≤ t}(log b_s − a*_s), a*_t = Σ_{s ≤ t} log A_s, b_0 = h0. (T, B, H) → (T, B, H)."""
    log_a = xp.cumulative_sum(xp.log(A), axis=0)  # a*_t                                          (T, B, H)
    terms = xp.concat([xp.log(h0)[None, ...], xp.log(Bc) - log_a], axis=0)  # (T+1, B, H)
    if is_numpy_namespace(xp):
        import numpy as np

        acc = np.logaddexp.accumulate(terms, axis=0)
    else:  # a torch tensor's own method: manual imports no torch
        acc = terms.logcumsumexp(0)
    return xp.exp(log_a + acc[1:, ...])  # (T, B, H)

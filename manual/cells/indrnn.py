"""The IndRNN cell (independently recurrent: each unit sees only its own past): one step forward, one step back.

Forward, batch rows (B, ·), with the input projection of every step made
before the loop (``manual.stack``); u (H,) is the layer's recurrent weight
vector, stored as ``weight_hh_l{k}``:

    z_t = x_t W_ihᵀ + b_ih + u ⊙ h_{t-1} + b_hh        h_t = act(z_t)

Backward, given dL/dh_t, everything that reaches h_t (the layer's output
gradient at t plus what comes back from step t+1). The recurrence is a
diagonal matrix, so every product with it is an element-wise one:

    dL/dz_t     = dL/dh_t ⊙ act'(z_t)
    dL/dh_{t-1} += dL/dz_t ⊙ u                         (through the future)
    du = Σ_t Σ_b dz_t ⊙ h_{t-1}    db_ih = db_hh = Σ_t Σ_b dz_t    dW_ih = Σ_t dz_tᵀ x_t
    dL/dx_t = dz_t W_ih

u's gradient pairs dz_t with h_{t-1}, the state the step read, not h_t;
and it is a vector: the full matrix dz_tᵀ h_{t-1} of the Elman cell has
only its diagonal here. A padded step of a shorter sequence (``lengths``)
leaves the state as it was, as in the Elman cell:
h_t = m_t ⊙ act(z_t) + (1 − m_t) ⊙ h_{t-1}, so

    dL/dz_t = m_t ⊙ dL/dh_t ⊙ act'(z_t)      dL/dh_{t-1} += (1 − m_t) ⊙ dL/dh_t
"""

from __future__ import annotations

from manual.cells import single_state


def run_forward(xp, k, z, hs, u, masks=None) -> None:
    """One direction's recurrence, in place: z (T, B, H) holds x_t W_ihᵀ + b on entry and z_t on return;
    hs (T+1, B, H) holds h0 in hs[0] on entry and h_t in hs[t+1] on return. ``masks``: (T, B, 1) or None."""
    for t in range(z.shape[0]):
        z[t, ...] += u * hs[t, ...]  # z_t = x_t W_ihᵀ + b + u ⊙ h_{t-1}                         (B, H)
        k.act_into(z[t, ...], hs[t + 1, ...])  # h_t = act(z_t)
        if masks is not None:  # a padded step carries the state through unchanged
            hs[t + 1, ...] = masks[t] * hs[t + 1, ...] + (1 - masks[t]) * hs[t, ...]


def run_backward(xp, k, u, dA, dh, dz, first_direct: int, dhn=None, masks=None):
    """One direction's BPTT, t = T … 1; returns dL/dh0 (B, H). Arguments as ``manual.cells.elman.run_backward``:
    ``dA`` act'(z_t), ``dh`` the direct terms on entry and the total dL/dh_t on return, ``dz`` dL/dz_t."""
    T = dh.shape[0]
    for t in range(T - 1, -1, -1):
        if t == T - 1:  # dL/dh_T = direct term + dL/dh_n
            if first_direct > t:
                dh[t, ...] = 0 if dhn is None else dhn
            elif dhn is not None:
                dh[t, ...] += dhn
        else:  # dL/dh_t = direct term + dL/dz_{t+1} ⊙ u (through the future)
            back = dz[t + 1, ...] * u  # (B, H)
            if masks is not None:
                back = back + (1 - masks[t + 1]) * dh[t + 1, ...]
            if t < first_direct:
                dh[t, ...] = back
            else:
                dh[t, ...] += back
        k.mul_into(dh[t, ...], dA[t, ...], dz[t, ...])  # dL/dz_t = dL/dh_t ⊙ act'(z_t)
        if masks is not None:
            dz[t, ...] *= masks[t]
        k.flush(dz[t, ...])  # a vanishing gradient stops at zero, never crawls through subnormals
    dh0 = dz[0, ...] * u  # dL/dh0 = dz_1 ⊙ u                                                   (B, H)
    if masks is not None:
        dh0 = dh0 + (1 - masks[0]) * dh[0, ...]
    return dh0


# ---------------------------------------------------------------- one direction of one layer, for manual.stack

def _recurrent_grad(xp, dz2, h2):
    return xp.sum(dz2 * h2, axis=0)  # du = Σ_t Σ_b dz_t ⊙ h_{t-1}: the diagonal alone                   (H,)


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, H), h_T, None, cache) from xproj = x_t W_ihᵀ + b_ih (T, B, H) and h0 (B, H)."""
    return single_state.forward(xp, k, xproj, h0, W, masks, run_forward)


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/dxproj (T, B, H), dL/dh0, None, {weight_hh: du (H,), bias_hh}, {"h": dL/dh_t, "z": dL/dz_t})."""
    return single_state.backward(xp, k, config, cache, W, d_out, dhn, masks, run_backward, _recurrent_grad)

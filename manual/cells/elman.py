"""The Elman cell (torch.nn.RNN's): one step forward, one step back.

Forward, batch rows (B, ·), with the input projection of every step made
before the loop (``manual.stack``):

    z_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh        h_t = act(z_t)

Backward, given dL/dh_t, everything that reaches h_t (the layer's output
gradient at t plus what comes back from step t+1):

    dL/dz_t     = dL/dh_t ⊙ act'(z_t)
    dL/dh_{t-1} += dL/dz_t W_hh                       (through the future)
    dW_ih = Σ_t dz_tᵀ x_t    dW_hh = Σ_t dz_tᵀ h_{t-1}    db_ih = db_hh = Σ_t Σ_b dz_t
    dL/dx_t = dz_t W_ih

A padded step of a shorter sequence (``lengths``) leaves the state as it
was: h_t = m_t ⊙ act(z_t) + (1 − m_t) ⊙ h_{t-1}, m_t ∈ {0, 1} per row, so

    dL/dz_t = m_t ⊙ dL/dh_t ⊙ act'(z_t)      dL/dh_{t-1} += (1 − m_t) ⊙ dL/dh_t

The sums over steps are one matrix product each, after the loop (``manual.stack``).
"""

from __future__ import annotations

from array_api_compat import device

from manual.cells import single_state


def step(k, z_t, h_prev, W_hhT, h_t, m_t=None) -> None:
    """z_t += h_{t-1} W_hhᵀ; h_t = act(z_t) (kept at h_{t-1} where m_t = 0). In place."""
    k.mm_add(z_t, h_prev, W_hhT)  # z_t = x_t W_ihᵀ + b + h_{t-1} W_hhᵀ
    k.act_into(z_t, h_t)  # h_t = act(z_t)
    if m_t is not None:  # a padded step carries the state through unchanged
        h_t[...] = m_t * h_t + (1 - m_t) * h_prev


def step_back(k, dh_t, dact_t, dz_t, m_t=None) -> None:
    """dL/dz_t = dL/dh_t ⊙ act'(z_t) (zero where m_t = 0), flushed below the smallest normal. In place."""
    k.mul_into(dh_t, dact_t, dz_t)
    if m_t is not None:
        dz_t *= m_t
    k.flush(dz_t)  # a vanishing gradient stops at zero, never crawls through subnormals (README)


def into_previous(k, dz_t, W_hh, dh_prev, first: bool, dh_t=None, m_t=None) -> None:
    """dL/dh_{t-1} (+)= dL/dz_t W_hh (+ the carried (1 − m_t) ⊙ dL/dh_t); ``first``: overwrite, not add."""
    if first:
        k.mm_into(dz_t, W_hh, dh_prev)
    else:
        k.mm_add(dh_prev, dz_t, W_hh)
    if m_t is not None:
        dh_prev += (1 - m_t) * dh_t


def _rows(xp, a) -> tuple:
    """Per-step views a[0], a[1], …, made in one call."""
    return xp.unstack(a, axis=0)


def run_forward(xp, k, z, hs, W_hh, masks=None) -> None:
    """One direction's recurrence, in place: z (T, B, H) holds x_t W_ihᵀ + b on entry and z_t on return;
    hs (T+1, B, H) holds h0 in hs[0] on entry and h_t in hs[t+1] on return. ``masks``: (T, B, 1) or None."""
    WhhT = xp.empty(W_hh.shape[::-1], dtype=W_hh.dtype, device=device(W_hh))  # (H, H)
    WhhT[...] = W_hh.T  # a row-major copy: BLAS streams it faster than the transposed view
    zt, ht = _rows(xp, z), _rows(xp, hs)
    mt = _rows(xp, masks) if masks is not None else None
    for t in range(z.shape[0]):
        step(k, zt[t], ht[t], WhhT, ht[t + 1], None if mt is None else mt[t])


def run_backward(xp, k, W_hh, dA, dh, dz, first_direct: int, dhn=None, masks=None):
    """One direction's BPTT, t = T … 1; returns dL/dh0 (B, H).

    ``dA`` (T, B, H): act'(z_t) of every step; ``dh`` (T, B, H): on entry the
    direct terms (what reaches h_t from outside the recurrence) at steps
    t ≥ ``first_direct`` (garbage before), on return the total dL/dh_t;
    ``dz`` (T, B, H) receives dL/dz_t; ``dhn``: dL/dh_T from outside (h_n's gradient).
    """
    T = dh.shape[0]
    dht, dzt, dAt = _rows(xp, dh), _rows(xp, dz), _rows(xp, dA)
    mt = _rows(xp, masks) if masks is not None else None
    for t in range(T - 1, -1, -1):
        m_t = None if mt is None else mt[t]
        if t == T - 1:  # dL/dh_T = direct term + dL/dh_n
            if first_direct > t:
                dht[t][...] = 0 if dhn is None else dhn
            elif dhn is not None:
                dht[t][...] += dhn
        else:  # dL/dh_t = direct term + dL/dz_{t+1} W_hh (through the future)
            into_previous(k, dzt[t + 1], W_hh, dht[t], first=t < first_direct, dh_t=dht[t + 1],
                               m_t=None if mt is None else mt[t + 1])
        step_back(k, dht[t], dAt[t], dzt[t], m_t)  # dL/dz_t = dL/dh_t ⊙ act'(z_t)
    dh0 = dz[0, ...] @ W_hh  # dL/dh0 = dz_1 W_hh                                      (B, H)
    if mt is not None:
        dh0 = dh0 + (1 - mt[0]) * dh[0, ...]
    return dh0



# ---------------------------------------------------------------- one direction of one layer, for manual.stack

def _recurrent_grad(xp, dz2, h2):
    return dz2.T @ h2  # Σ_t dz_tᵀ h_{t-1}                                                        (H, H)


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, H), h_T, None, cache) from xproj = x_t W_ihᵀ + b_ih (T, B, H) and h0 (B, H)."""
    return single_state.forward(xp, k, xproj, h0, W, masks, run_forward)


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/dxproj (T, B, H), dL/dh0, None, {weight_hh, bias_hh}, {"h": dL/dh_t, "z": dL/dz_t})."""
    return single_state.backward(xp, k, config, cache, W, d_out, dhn, masks, run_backward, _recurrent_grad)

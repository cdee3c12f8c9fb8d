"""The GRU cell, in torch's form and in the original paper's: one direction of one layer, forward and back.

Gates in torch's row order r, z, n; x_t W_ihᵀ + b_ih = (ax_r, ax_z, ax_n), and for the recurrence
h_{t-1} W_hhᵀ + b_hh = (ah_r, ah_z, ah_n):

    r = σ(ax_r + ah_r)      z = σ(ax_z + ah_z)
    torch (linear_before_reset):  n = tanh(ax_n + r ⊙ (h_{t-1} W_hnᵀ + b_hn))
    paper (ONNX's default):       n = tanh(ax_n + (r ⊙ h_{t-1}) W_hnᵀ + b_hn)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

Backward, t = T … 1, with a_n the pre-activation of n:

    dL/dn = dL/dh_t ⊙ (1 − z)      dL/dz = dL/dh_t ⊙ (h_{t-1} − n)     dL/da_n = dL/dn ⊙ (1 − n²)
    torch: dL/dr = dL/da_n ⊙ ah_n,  and the recurrence's n part gets dL/da_n ⊙ r
           (so dL/db_hn = Σ r ⊙ dL/da_n, not dL/db_in = Σ dL/da_n)
    paper: dL/d(r ⊙ h_{t-1}) = dL/da_n W_hn;  dL/dr = that ⊙ h_{t-1};  dW_hn = Σ dL/da_nᵀ (r ⊙ h_{t-1})
    dL/da_r = dL/dr ⊙ r(1 − r)     dL/da_z = dL/dz ⊙ z(1 − z)
    dL/dh_{t-1} = dL/dh_t ⊙ z + (the recurrence's gradients) W_hh (+ paper: dL/d(r ⊙ h) ⊙ r)

A padded step (m_t = 0) carries h through unchanged, as in ``manual.cells.elman``.
"""

from __future__ import annotations

from array_api_compat import device

from manual.activations import sigmoid

GATES = 3


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, H), h_T, None, cache) from xproj = x_t W_ihᵀ + b_ih (T, B, 3H)."""
    T, B, G = xproj.shape
    H = config.hidden_size
    dev, dt = device(xproj), xproj.dtype
    Whh, bhh, torch_form = W["weight_hh"], W["bias_hh"], config.linear_before_reset
    gates = xp.empty((T, B, G), dtype=dt, device=dev)  # r, z, n after their functions             (T, B, 3H)
    rec = xp.empty((T, B, H), dtype=dt, device=dev)  # torch: ah_n; paper: r ⊙ h_{t-1}              (T, B, H)
    hs = xp.empty((T + 1, B, H), dtype=dt, device=dev)  # (T+1, B, H)
    hs[0, ...] = h0
    for t in range(T):
        hp, ax = hs[t, ...], xproj[t, ...]
        if torch_form:
            ah = hp @ Whh.T if bhh is None else hp @ Whh.T + bhh  # (B, 3H)
            r, z = sigmoid(ax[:, :H] + ah[:, :H]), sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
            rec[t, ...] = ah[:, 2 * H:]
            n = xp.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])  # n = tanh(ax_n + r ⊙ (h W_hnᵀ + b_hn))
        else:
            ah = hp @ Whh[:2 * H, :].T if bhh is None else hp @ Whh[:2 * H, :].T + bhh[:2 * H]  # (B, 2H)
            r, z = sigmoid(ax[:, :H] + ah[:, :H]), sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
            rh = r * hp  # r ⊙ h_{t-1}                                                           (B, H)
            rec[t, ...] = rh
            an = rh @ Whh[2 * H:, :].T if bhh is None else rh @ Whh[2 * H:, :].T + bhh[2 * H:]
            n = xp.tanh(ax[:, 2 * H:] + an)  # n = tanh(ax_n + (r ⊙ h) W_hnᵀ + b_hn)
        h = (1 - z) * n + z * hp  # h_t                                                           (B, H)
        if masks is not None:
            m = masks[t, ...]
            h = m * h + (1 - m) * hp
        gates[t, ...] = xp.concat([r, z, n], axis=-1)
        hs[t + 1, ...] = h
    out = hs[1:, ...] if masks is None else hs[1:, ...] * masks  # (T, B, H)
    return out, hs[T, ...], None, (gates, rec, hs)


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/dxproj (T, B, 3H), dL/dh0, None, {weight_hh, bias_hh}, per-step tensors by kind)."""
    gates, rec, hs = cache
    T, B, G = gates.shape
    H = config.hidden_size
    dev, dt = device(gates), gates.dtype
    Whh, torch_form = W["weight_hh"], config.linear_before_reset
    dax = xp.empty((T, B, G), dtype=dt, device=dev)  # dL/d(x W_ihᵀ + b_ih): r, z, n pre-activations (T, B, 3H)
    dah = xp.empty((T, B, G), dtype=dt, device=dev)  # dL/d(h W_hhᵀ + b_hh)                            (T, B, 3H)
    dH = xp.empty((T, B, H), dtype=dt, device=dev)  # dL/dh_t                                          (T, B, H)
    carry = xp.zeros((B, H), dtype=dt, device=dev) if dhn is None else dhn
    for t in range(T - 1, -1, -1):
        dh = carry if d_out is None else carry + d_out[t, ...]
        m = None if masks is None else masks[t, ...]
        dh_cell = dh if m is None else m * dh
        r, z, n, hp = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:], hs[t, ...]
        dn = dh_cell * (1 - z)  # dL/dn
        da_n = dn * (1 - n * n)  # dL/da_n
        k.flush(da_n)  # before any product reads it (the paper form's da_n W_hn, below)
        dzg = dh_cell * (hp - n)  # dL/dz
        new = dh_cell * z  # dL/dh_{t-1} through h_t = … + z ⊙ h_{t-1}
        if torch_form:
            dr = da_n * rec[t, ...]  # dL/dr = dL/da_n ⊙ ah_n
            dah_n = da_n * r  # the recurrence's n part
        else:
            drh = da_n @ Whh[2 * H:, :]  # dL/d(r ⊙ h_{t-1})                                      (B, H)
            dr = drh * hp
            new = new + drh * r
            dah_n = da_n  # dW_hn pairs with r ⊙ h_{t-1}, not h_{t-1}: kept apart below
        da_r, da_z = dr * r * (1 - r), dzg * z * (1 - z)
        dax[t, ...] = xp.concat([da_r, da_z, da_n], axis=-1)
        dah[t, ...] = xp.concat([da_r, da_z, dah_n], axis=-1)
        k.flush(dax[t, ...])  # below the smallest normal → 0: no subnormal enters a product (README)
        k.flush(dah[t, ...])
        dH[t, ...] = dh
        if torch_form:
            new = new + dah[t, ...] @ Whh  # dL/dh_{t-1} += dL/dah W_hh                           (B, H)
        else:
            new = new + dah[t, :, :2 * H] @ Whh[:2 * H, :]
        if m is not None:
            new = new + (1 - m) * dh
        carry = new
    hp2 = xp.reshape(hs[:T, ...], (T * B, H))  # (T·B, H)
    dah2 = xp.reshape(dah, (T * B, G))  # (T·B, 3H)
    if torch_form:
        dW_hh = dah2.T @ hp2  # Σ_t dah_tᵀ h_{t-1}                                                 (3H, H)
    else:
        dW_hh = xp.concat([dah2[:, :2 * H].T @ hp2,  # r, z rows: against h_{t-1}
                           dah2[:, 2 * H:].T @ xp.reshape(rec, (T * B, H))], axis=0)  # n rows: against r ⊙ h
    dW = {"weight_hh": dW_hh, "bias_hh": xp.sum(dah2, axis=0)}
    steps = {"h": dH, "gate_r": dax[..., :H], "gate_z": dax[..., H:2 * H], "gate_n": dax[..., 2 * H:]}
    return dax, carry, None, dW, steps

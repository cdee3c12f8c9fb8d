"""The GRU cell, in torch's form and in the original paper's: one direction of one layer, forward and back.

Gates in torch's row order r, z, n; x_t W_ihᵀ + b_ih = (ax_r, ax_z, ax_n), and for the recurrence
h_{t-1} W_hhᵀ + b_hh = (ah_r, ah_z, ah_n):

    r = σ(ax_r + ah_r)      z = σ(ax_z + ah_z)
    torch (linear_before_reset):  n = tanh(ax_n + r ⊙ (h_{t-1} W_hnᵀ + b_hn))
    paper (ONNX's default):       n = tanh(ax_n + (r ⊙ h_{t-1}) W_hnᵀ + b_hn)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}       (computed as n + z ⊙ (h_{t-1} − n): one product fewer)

Backward, t = T … 1, with a_n the pre-activation of n:

    dL/dn = dL/dh_t ⊙ (1 − z)      dL/dz = dL/dh_t ⊙ (h_{t-1} − n)     dL/da_n = dL/dn ⊙ (1 − n²)
    torch: dL/dr = dL/da_n ⊙ ah_n,  and the recurrence's n part gets dL/da_n ⊙ r
           (so dL/db_hn = Σ r ⊙ dL/da_n, not dL/db_in = Σ dL/da_n)
    paper: dL/d(r ⊙ h_{t-1}) = dL/da_n W_hn;  dL/dr = that ⊙ h_{t-1};  dW_hn = Σ dL/da_nᵀ (r ⊙ h_{t-1})
    dL/da_r = dL/dr ⊙ r(1 − r)     dL/da_z = dL/dz ⊙ z(1 − z)
    dL/dh_{t-1} = dL/dh_t ⊙ z + (the recurrence's gradients) W_hh (+ paper: dL/d(r ⊙ h) ⊙ r)

The factors that do not depend on the recurrence (1 − z)(1 − n²), (h_{t-1} − n) z(1 − z) and r(1 − r)·(ah_n or
h_{t-1}) are made for every step at once before the backward loop, which then holds only products with dL/dh_t.
A padded step (m_t = 0) carries h through unchanged, as in ``manual.cells.elman``.
"""

from __future__ import annotations

from array_api_compat import device


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, H), h_T, None, cache) from xproj = x_t W_ihᵀ + b_ih (T, B, 3H).

    In place, step by step: the recurrence's product into its buffer, σ over r and z at once, n and h_t each
    into theirs.
    """
    T, B, G = xproj.shape
    H = config.hidden_size
    dev, dt = device(xproj), xproj.dtype
    Whh, bhh, torch_form = W["weight_hh"], W["bias_hh"], config.linear_before_reset
    R = G if torch_form else 2 * H  # the rows of W_hh that read h_{t-1}: all (torch), r and z (paper)
    WhT = xp.empty((H, R), dtype=dt, device=dev)  # (H, 3H or 2H)
    WhT[...] = Whh[:R, :].T  # row-major: BLAS streams it faster than the transposed view
    gates = xp.empty((T, B, G), dtype=dt, device=dev)  # r, z, n after their functions             (T, B, 3H)
    a = xp.empty((B, R), dtype=dt, device=dev)  # h_{t-1} W_hhᵀ + b_hh (paper: its r, z rows), one step (B, R)
    rec = xp.empty((T, B, H), dtype=dt, device=dev)  # torch: ah_n; paper: r ⊙ h_{t-1}, kept for the backward
    WnT = None
    if not torch_form:
        WnT = xp.empty((H, H), dtype=dt, device=dev)  # (H, H)
        WnT[...] = Whh[2 * H:, :].T
    hs = xp.empty((T + 1, B, H), dtype=dt, device=dev)  # (T+1, B, H)
    tmp = xp.empty((B, H), dtype=dt, device=dev)  # a scratch row                                     (B, H)
    hs[0, ...] = h0
    for t in range(T):
        hp, ax, g = hs[t, ...], xproj[t, ...], gates[t, ...]
        k.mm_into(hp, WhT, a)  # ah = h_{t-1} W_hhᵀ                                                (B, R)
        if bhh is not None:
            a += bhh[:R]
        k.add_into(ax[:, :2 * H], a[:, :2 * H], g[:, :2 * H])  # a_r, a_z
        k.sigmoid_into(g[:, :2 * H], g[:, :2 * H])  # r, z = σ(a_r), σ(a_z)
        r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        if torch_form:
            rec[t, ...] = a[:, 2 * H:]  # ah_n = h_{t-1} W_hnᵀ + b_hn
            k.mul_into(r, a[:, 2 * H:], n)  # r ⊙ ah_n
        else:
            k.mul_into(r, hp, rec[t, ...])  # r ⊙ h_{t-1}
            k.mm_into(rec[t, ...], WnT, n)  # (r ⊙ h_{t-1}) W_hnᵀ
            if bhh is not None:
                n += bhh[2 * H:]
        n += ax[:, 2 * H:]
        k.tanh_into(n, n)  # n = tanh(a_n)
        k.sub_into(hp, n, tmp)
        k.mul_into(z, tmp, tmp)
        k.add_into(n, tmp, hs[t + 1, ...])  # h_t = n + z ⊙ (h_{t-1} − n)
        if masks is not None:  # a padded step carries the state through
            m = masks[t, ...]
            hs[t + 1, ...] = m * hs[t + 1, ...] + (1 - m) * hp  # (B, H)
    out = hs[1:, ...]  # h_t of every step (manual.stack zeroes a padded step's)
    return out, hs[T, ...], None, (gates, rec, hs)


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/dxproj (T, B, 3H), dL/dh0, None, {weight_hh, bias_hh}, per-step tensors by kind)."""
    gates, rec, hs = cache  # rec: torch ah_n = h_{t-1} W_hnᵀ + b_hn; paper r ⊙ h_{t-1}
    T, B, G = gates.shape
    H = config.hidden_size
    dev, dt = device(gates), gates.dtype
    Whh, torch_form = W["weight_hh"], config.linear_before_reset
    R = G if torch_form else 2 * H
    r, z, n, hp = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:], hs[:T, ...]
    # factors of every step at once (T, B, H)
    k_n = (1 - z) * ((1 - n) * (1 + n))  # dL/da_n = dL/dh_t ⊙ (1 − z)(1 − n²)                     (T, B, H)
    k_z = (hp - n) * (z * (1 - z))  # dL/da_z = dL/dh_t ⊙ (h_{t-1} − n) z(1 − z)                 (T, B, H)
    k_r = (rec if torch_form else hp) * (r * (1 - r))  # dL/da_r = (dL/da_n; paper dL/d(r ⊙ h)) ⊙ this (T, B, H)
    dah = xp.empty((T, B, R), dtype=dt, device=dev)  # dL/d(h W_hhᵀ + b_hh), the rows that read h  (T, B, R)
    dan = xp.empty((T, B, H), dtype=dt, device=dev)  # dL/da_n                                        (T, B, H)
    dH = xp.empty((T, B, H), dtype=dt, device=dev)  # dL/dh_t                                         (T, B, H)
    drh = None if torch_form else xp.empty((B, H), dtype=dt, device=dev)  # paper: dL/d(r ⊙ h_{t-1})  (B, H)
    Wr = Whh[:R, :]  # (R, H)
    bufs = [xp.empty((B, H), dtype=dt, device=dev) for _ in range(2)]  # dL/dh_{t-1}, two in turn    (B, H)
    carry = xp.zeros((B, H), dtype=dt, device=dev) if dhn is None else dhn  # dL/dh_T              (B, H)
    for t in range(T - 1, -1, -1):
        dh = dH[t, ...]
        if d_out is None:
            dh[...] = carry
        else:
            k.add_into(carry, d_out[t, ...], dh)  # dL/dh_t = output's + through the future
        m = None if masks is None else masks[t, ...]
        dh_cell = dh if m is None else m * dh
        da_n, da = dan[t, ...], dah[t, ...]
        k.mul_into(dh_cell, k_n[t, ...], da_n)  # dL/da_n
        k.flush(da_n)  # below the smallest normal → 0 before any product reads it (README "Vanishing gradients")
        k.mul_into(dh_cell, k_z[t, ...], da[:, H:2 * H])  # dL/da_z
        new = bufs[0] if carry is not bufs[0] else bufs[1]
        k.mul_into(dh_cell, z[t, ...], new)  # dL/dh_{t-1} through h_t = n + z ⊙ (h_{t-1} − n)
        if torch_form:
            k.mul_into(da_n, k_r[t, ...], da[:, :H])  # dL/da_r = dL/da_n ⊙ ah_n ⊙ r(1 − r)
            k.mul_into(da_n, r[t, ...], da[:, 2 * H:])  # the recurrence's n part: dL/da_n ⊙ r
        else:
            k.mm_into(da_n, Whh[2 * H:, :], drh)  # dL/d(r ⊙ h_{t-1}) = dL/da_n W_hn                   (B, H)
            k.mul_into(drh, k_r[t, ...], da[:, :H])  # dL/da_r = that ⊙ h_{t-1} ⊙ r(1 − r)
            k.mul_into(drh, r[t, ...], drh)
            new += drh  # dL/dh_{t-1} through r ⊙ h_{t-1}
        k.flush(da)
        k.mm_add(new, da, Wr)  # dL/dh_{t-1} += dL/dah W_hh (paper: its r, z rows)                  (B, H)
        if m is not None:
            new = new + (1 - m) * dh  # a padded step passes dL/dh_t through                  (B, H)
        carry = new
    dax = xp.concat([dah[..., :2 * H], dan], axis=-1)  # dL/d(x W_ihᵀ + b_ih): a_r, a_z, a_n    (T, B, 3H)
    hp2 = xp.reshape(hp, (T * B, H))  # (T·B, H)
    dah2 = xp.reshape(dah, (T * B, R))  # (T·B, R)
    if torch_form:
        dW = {"weight_hh": dah2.T @ hp2, "bias_hh": xp.sum(dah2, axis=0)}  # Σ_t dah_tᵀ h_{t-1}   (3H, H)
    else:
        dan2 = xp.reshape(dan, (T * B, H))  # (T·B, H)
        dW = {"weight_hh": xp.concat([dah2.T @ hp2,  # r, z rows: against h_{t-1}                        (3H, H)
                                      dan2.T @ xp.reshape(rec, (T * B, H))], axis=0),  # n rows: against r ⊙ h
              "bias_hh": xp.concat([xp.sum(dah2, axis=0), xp.sum(dan2, axis=0)])}  # (3H,)
    steps = {"h": dH, "gate_r": dax[..., :H], "gate_z": dax[..., H:2 * H], "gate_n": dax[..., 2 * H:]}
    return dax, carry, None, dW, steps

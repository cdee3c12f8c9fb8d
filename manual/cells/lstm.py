"""The LSTM cell (torch.nn.LSTM's, projections included): one direction of one layer, forward and back.

Gates in torch's row order i, f, g, o; a_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh (B, 4H):

    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g        h_t = o ⊙ tanh(c_t)        (with proj_size P: h_t = (o ⊙ tanh(c_t)) W_hrᵀ)

Backward, t = T … 1, given dL/dh_t and dL/dc_t from the future (and dL/doutput_t):

    dL/d(o ⊙ tanh c_t) = dL/dh_t  (with P: dL/dh_t W_hr;  dW_hr += dL/dh_tᵀ (o ⊙ tanh c_t))
    dL/do  = dL/d(o ⊙ tanh c_t) ⊙ tanh(c_t)
    dL/dc_t = dL/dc_t (from t+1) + dL/d(o ⊙ tanh c_t) ⊙ o ⊙ (1 − tanh²(c_t))
    dL/di = dL/dc_t ⊙ g    dL/dg = dL/dc_t ⊙ i    dL/df = dL/dc_t ⊙ c_{t-1}
    dL/dc_{t-1} = dL/dc_t ⊙ f                       (the cell carry)
    dL/da_i = dL/di ⊙ i(1 − i)   dL/da_f = dL/df ⊙ f(1 − f)   dL/da_g = dL/dg ⊙ (1 − g²)   dL/da_o = dL/do ⊙ o(1 − o)
    dL/dh_{t-1} = dL/da W_hh      dW_hh = Σ_t dL/da_tᵀ h_{t-1}    db_ih = db_hh = Σ_t Σ_b dL/da_t

A padded step (m_t = 0) carries h and c through unchanged, as in ``manual.cells.elman``.
"""

from __future__ import annotations

from array_api_compat import device

from manual.activations import sigmoid

GATES = 4


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, P or H), h_T, c_T, cache) from xproj = x_t W_ihᵀ + b_ih (T, B, 4H)."""
    T, B, G = xproj.shape
    H, P = config.hidden_size, config.out_size
    dev = device(xproj)
    a_all = xproj + W["bias_hh"] if W["bias_hh"] is not None else xproj  # (T, B, 4H)
    Whh, Whr = W["weight_hh"], W.get("weight_hr")
    acts = xp.empty((T, B, G), dtype=xproj.dtype, device=dev)  # i, f, g, o after their functions  (T, B, 4H)
    tcs = xp.empty((T, B, H), dtype=xproj.dtype, device=dev)  # tanh(c_t)                           (T, B, H)
    hhs = xp.empty((T, B, H), dtype=xproj.dtype, device=dev)  # o ⊙ tanh(c_t)                       (T, B, H)
    hs = xp.empty((T + 1, B, P), dtype=xproj.dtype, device=dev)  # (T+1, B, P)
    cs = xp.empty((T + 1, B, H), dtype=xproj.dtype, device=dev)  # (T+1, B, H)
    hs[0, ...], cs[0, ...] = h0, c0
    for t in range(T):
        a = a_all[t, ...] + hs[t, ...] @ Whh.T  # a_t = x_t W_ihᵀ + b + h_{t-1} W_hhᵀ        (B, 4H)
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 3 * H:])
        g = xp.tanh(a[:, 2 * H:3 * H])
        c = f * cs[t, ...] + i * g  # c_t = f ⊙ c_{t-1} + i ⊙ g                                (B, H)
        tc = xp.tanh(c)
        hh = o * tc  # o ⊙ tanh(c_t)                                                           (B, H)
        h = hh @ Whr.T if Whr is not None else hh  # h_t (projected when P > 0)                 (B, P)
        if masks is not None:  # a padded step carries the state through
            m = masks[t, ...]
            c, h = m * c + (1 - m) * cs[t, ...], m * h + (1 - m) * hs[t, ...]
        acts[t, ...] = xp.concat([i, f, g, o], axis=-1)
        tcs[t, ...], hhs[t, ...], cs[t + 1, ...], hs[t + 1, ...] = tc, hh, c, h
    out = hs[1:, ...] if masks is None else hs[1:, ...] * masks  # (T, B, P)
    return out, hs[T, ...], cs[T, ...], (acts, tcs, hhs, hs, cs)


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/dxproj (T, B, 4H), dL/dh0, dL/dc0, {weight_hh, bias_hh, weight_hr}, per-step tensors by kind)."""
    acts, tcs, hhs, hs, cs = cache
    T, B, G = acts.shape
    H, P = config.hidden_size, config.out_size
    dev, dt = device(acts), acts.dtype
    Whh, Whr = W["weight_hh"], W.get("weight_hr")
    da_all = xp.empty((T, B, G), dtype=dt, device=dev)  # dL/da_t, the gates' pre-activations     (T, B, 4H)
    dH = xp.empty((T, B, P), dtype=dt, device=dev)  # dL/dh_t                                     (T, B, P)
    dC = xp.empty((T, B, H), dtype=dt, device=dev)  # dL/dc_t                                     (T, B, H)
    dHc = xp.empty((T, B, P), dtype=dt, device=dev)  # what reaches the cell's own h_t (m ⊙ dL/dh_t)
    carry_h = xp.zeros((B, P), dtype=dt, device=dev) if dhn is None else dhn  # dL/dh_T from h_n
    carry_c = xp.zeros((B, H), dtype=dt, device=dev) if dcn is None else dcn  # dL/dc_T from c_n
    for t in range(T - 1, -1, -1):
        dh = carry_h if d_out is None else carry_h + d_out[t, ...]  # dL/dh_t: through the future + output
        m = None if masks is None else masks[t, ...]
        dh_cell = dh if m is None else m * dh
        dc_cell = carry_c if m is None else m * carry_c
        dhh = dh_cell @ Whr if Whr is not None else dh_cell  # dL/d(o ⊙ tanh c_t)                 (B, H)
        i, f, g, o = acts[t, :, :H], acts[t, :, H:2 * H], acts[t, :, 2 * H:3 * H], acts[t, :, 3 * H:]
        tc = tcs[t, ...]
        do = dhh * tc  # dL/do
        dc = dc_cell + dhh * o * (1 - tc * tc)  # dL/dc_t, total
        da = xp.concat([dc * g * i * (1 - i),  # dL/da_i = dL/dc ⊙ g ⊙ σ'
                        dc * cs[t, ...] * f * (1 - f),  # dL/da_f = dL/dc ⊙ c_{t-1} ⊙ σ'
                        dc * i * (1 - g * g),  # dL/da_g = dL/dc ⊙ i ⊙ tanh'
                        do * o * (1 - o)], axis=-1)  # dL/da_o = dL/do ⊙ σ'                    (B, 4H)
        da_all[t, ...], dH[t, ...], dHc[t, ...] = da, dh, dh_cell
        dC[t, ...] = dc if m is None else dc + (1 - m) * carry_c
        new_h = da @ Whh  # dL/dh_{t-1} = dL/da W_hh                                            (B, P)
        new_c = dc * f  # dL/dc_{t-1} = dL/dc_t ⊙ f: the cell carry                                (B, H)
        if m is not None:
            new_h, new_c = new_h + (1 - m) * dh, new_c + (1 - m) * carry_c
        carry_h, carry_c = new_h, new_c
    da2 = xp.reshape(da_all, (T * B, G))  # (T·B, 4H)
    dW = {"weight_hh": da2.T @ xp.reshape(hs[:T, ...], (T * B, P)),  # Σ_t da_tᵀ h_{t-1}        (4H, P)
          "bias_hh": xp.sum(da2, axis=0)}  # (4H,)
    if Whr is not None:
        dW["weight_hr"] = xp.reshape(dHc, (T * B, P)).T @ xp.reshape(hhs, (T * B, H))  # Σ dh_tᵀ (o ⊙ tanh c_t)  (P, H)
    steps = {"h": dH, "c": dC, "gate_i": da_all[..., :H], "gate_f": da_all[..., H:2 * H],
             "gate_g": da_all[..., 2 * H:3 * H], "gate_o": da_all[..., 3 * H:]}
    return da_all, carry_h, carry_c, dW, steps

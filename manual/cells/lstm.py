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


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, P or H), h_T, (c_T,), cache) from xproj = x_t W_ihᵀ + b_ih (T, B, 4H) and c0 = (c_0,).

    In place, step by step: a_t += h_{t-1} W_hhᵀ; σ over all four gates at once (g's σ is overwritten by
    tanh); c_t, tanh(c_t), o ⊙ tanh(c_t) and h_t each into its buffer.
    """
    T, B, G = xproj.shape
    H, P = config.hidden_size, config.out_size
    dev, dt = device(xproj), xproj.dtype
    a_all = xproj + W["bias_hh"] if W["bias_hh"] is not None else xp.asarray(xproj, copy=True)  # (T, B, 4H)
    Whh, Whr = W["weight_hh"], W.get("weight_hr")
    WhhT = xp.empty((P, G), dtype=dt, device=dev)  # (P, 4H)
    WhhT[...] = Whh.T  # row-major: BLAS streams it faster than the transposed view
    acts = xp.empty((T, B, G), dtype=dt, device=dev)  # i, f, g, o after their functions             (T, B, 4H)
    tcs = xp.empty((T, B, H), dtype=dt, device=dev)  # tanh(c_t)                                     (T, B, H)
    hhs = xp.empty((T, B, H), dtype=dt, device=dev)  # o ⊙ tanh(c_t)                                 (T, B, H)
    hs = xp.empty((T + 1, B, P), dtype=dt, device=dev)  # (T+1, B, P)
    cs = xp.empty((T + 1, B, H), dtype=dt, device=dev)  # (T+1, B, H)
    ig = xp.empty((B, H), dtype=dt, device=dev)  # i ⊙ g, a scratch row                                (B, H)
    hs[0, ...], cs[0, ...] = h0, c0[0]
    for t in range(T):
        a, act = a_all[t, ...], acts[t, ...]
        k.mm_add(a, hs[t, ...], WhhT)  # a_t = x_t W_ihᵀ + b + h_{t-1} W_hhᵀ                   (B, 4H)
        k.sigmoid_into(a, act)  # i, f, o = σ(a_i), σ(a_f), σ(a_o)
        k.tanh_into(a[:, 2 * H:3 * H], act[:, 2 * H:3 * H])  # g = tanh(a_g)
        i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
        c = cs[t + 1, ...]
        k.mul_into(f, cs[t, ...], c)  # c_t = f ⊙ c_{t-1} + i ⊙ g
        k.mul_into(i, g, ig)
        c += ig
        k.tanh_into(c, tcs[t, ...])
        k.mul_into(o, tcs[t, ...], hhs[t, ...])  # o ⊙ tanh(c_t)
        if Whr is not None:
            k.mm_into(hhs[t, ...], Whr.T, hs[t + 1, ...])  # h_t = (o ⊙ tanh c_t) W_hrᵀ             (B, P)
        else:
            hs[t + 1, ...] = hhs[t, ...]
        if masks is not None:  # a padded step carries the state through
            m = masks[t, ...]
            cs[t + 1, ...] = m * c + (1 - m) * cs[t, ...]
            hs[t + 1, ...] = m * hs[t + 1, ...] + (1 - m) * hs[t, ...]
    out = hs[1:, ...]  # h_t of every step (manual.stack zeroes a padded step's)
    return out, hs[T, ...], (cs[T, ...],), (acts, tcs, hhs, hs, cs)


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/dxproj (T, B, 4H), dL/dh0, (dL/dc0,), {weight_hh, bias_hh, weight_hr}, per-step tensors by kind), given
    dcn = (dL/dc_T or None,).

    Every factor that does not depend on the recurrence is made for all steps at once before the loop;
    the loop holds dL/dc_t, the four dL/da_t and the two carries.
    """
    acts, tcs, hhs, hs, cs = cache
    T, B, G = acts.shape
    H, P = config.hidden_size, config.out_size
    dev, dt = device(acts), acts.dtype
    Whh, Whr = W["weight_hh"], W.get("weight_hr")
    i, f, g, o = acts[..., :H], acts[..., H:2 * H], acts[..., 2 * H:3 * H], acts[..., 3 * H:]
    # factors of every step at once (T, B, H): dL/dc_t from u = dL/d(o ⊙ tanh c_t), and each gate's
    k_c = o * (1 - tcs * tcs)  # ∂(o ⊙ tanh c)/∂c = o ⊙ (1 − tanh² c)
    k_gates = xp.concat([g * i * (1 - i), cs[:T, ...] * f * (1 - f), i * (1 - g * g)], axis=-1)  # (T, B, 3H)
    k_o = tcs * o * (1 - o)  # dL/da_o = u ⊙ tanh(c_t) ⊙ o(1 − o)
    da_all = xp.empty((T, B, G), dtype=dt, device=dev)  # dL/da_t, the gates' pre-activations     (T, B, 4H)
    dH = xp.empty((T, B, P), dtype=dt, device=dev)  # dL/dh_t                                     (T, B, P)
    dC = xp.empty((T, B, H), dtype=dt, device=dev)  # dL/dc_t                                     (T, B, H)
    u_all = xp.empty((T, B, H), dtype=dt, device=dev) if Whr is not None else None  # dL/d(o ⊙ tanh c_t)
    carry_h = xp.zeros((B, P), dtype=dt, device=dev) if dhn is None else xp.asarray(dhn, copy=True)  # dL/dh_T
    carry_c = xp.zeros((B, H), dtype=dt, device=dev) if dcn[0] is None else xp.asarray(dcn[0], copy=True)  # dL/dc_T
    for t in range(T - 1, -1, -1):
        dh = dH[t, ...]
        if d_out is None:
            dh[...] = carry_h
        else:
            dh[...] = d_out[t, ...]
            dh += carry_h  # dL/dh_t = output's + through the future
        m = None if masks is None else masks[t, ...]
        dh_cell = dh if m is None else m * dh
        dc = dC[t, ...]
        if Whr is not None:
            u = u_all[t, ...]
            k.mm_into(dh_cell, Whr, u)  # u = dL/dh_t W_hr                                         (B, H)
        else:
            u = dh_cell
        k.mul_into(u, k_c[t, ...], dc)  # dL/dc_t = u ⊙ o ⊙ (1 − tanh² c_t) + dL/dc from t+1
        dc += carry_c if m is None else m * carry_c
        da = da_all[t, ...]
        k.mul_into(xp.concat([dc, dc, dc], axis=-1), k_gates[t, ...], da[:, :3 * H])  # dL/da_i, da_f, da_g
        k.mul_into(u, k_o[t, ...], da[:, 3 * H:])  # dL/da_o
        k.flush(da)  # below the smallest normal → 0: no subnormal enters a product (README "Vanishing gradients")
        new_h = da @ Whh  # dL/dh_{t-1} = dL/da W_hh                                            (B, P)
        new_c = dc * f[t, ...]  # dL/dc_{t-1} = dL/dc_t ⊙ f: the cell carry                       (B, H)
        if m is not None:
            new_h, new_c = new_h + (1 - m) * dh, new_c + (1 - m) * carry_c
            dC[t, ...] = dc + (1 - m) * carry_c
        carry_h, carry_c = new_h, new_c
    da2 = xp.reshape(da_all, (T * B, G))  # (T·B, 4H)
    dW = {"weight_hh": da2.T @ xp.reshape(hs[:T, ...], (T * B, P)),  # Σ_t da_tᵀ h_{t-1}        (4H, P)
          "bias_hh": xp.sum(da2, axis=0)}  # (4H,)
    if Whr is not None:
        dHc = dH if masks is None else dH * masks  # what reached each step's own h_t
        dW["weight_hr"] = xp.reshape(dHc, (T * B, P)).T @ xp.reshape(hhs, (T * B, H))  # Σ dh_tᵀ (o ⊙ tanh c_t)
    steps = {"h": dH, "c": dC, "gate_i": da_all[..., :H], "gate_f": da_all[..., H:2 * H],
             "gate_g": da_all[..., 2 * H:3 * H], "gate_o": da_all[..., 3 * H:]}
    return da_all, carry_h, (carry_c,), dW, steps

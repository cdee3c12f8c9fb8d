"""The sLSTM cell (xLSTM's scalar-memory LSTM): one direction of one layer, forward and back.

Gates in the rows of ``weight_ih`` and ``weight_hh`` in the order i, f, z, o (the public implementation's). The
recurrent weights are block-diagonal by head: with D = H / num_heads, head k's units k·D … (k+1)·D − 1 see only
their own head's part of h_{t−1}; ``weight_hh`` (4H, D) holds in row g·H + k·D + j the weights of gate g's unit
k·D + j on h_{t−1}[k·D : (k+1)·D] (with one head, the LSTM's (4H, H)). With ã_t = x_t W_ihᵀ + b_ih + R h_{t−1} +
b_hh (B, 4H):

    z = tanh(ã_z)    o = σ(ã_o)    log i = ã_i    log f = log σ(ã_f)   (forget_gate="exp": log f = ã_f)
    m_t = max(log f + m_{t−1}, log i)                                   the stabiliser
    i′ = exp(ã_i − m_t)    f′ = exp(log f + m_{t−1} − m_t)             both in (0, 1]: nothing overflows
    c_t = f′ ⊙ c_{t−1} + i′ ⊙ z      n_t = f′ ⊙ n_{t−1} + i′      h_t = o ⊙ c_t / n_t

Why the stabiliser has no gradient: (c_t, n_t, m_t) stand for the unstabilised C_t = c_t e^{m_t} and N_t =
n_t e^{m_t}, which follow C_t = f ⊙ C_{t−1} + i ⊙ z and N_t = f ⊙ N_{t−1} + i whatever m is; and h_t = o ⊙ C_t / N_t.
So h, and a loss that reads h alone, is the same function of the inputs for any m_t (t ≥ 1): the loss's total
derivative by m_t is zero, and the backward holds every m_t fixed. Backward, t = T … 1, given dL/dh_t, dL/dc_t and
dL/dn_t from the future (and dL/doutput_t):

    dL/dõ = dL/dh_t ⊙ c_t / n_t                 dL/dã_o = dL/dõ ⊙ o(1 − o)
    dL/dc_t += dL/dh_t ⊙ o / n_t                dL/dn_t −= dL/dh_t ⊙ o ⊙ c_t / n_t²
    dL/dã_i = (dL/dc_t ⊙ z + dL/dn_t) ⊙ i′      dL/dã_z = dL/dc_t ⊙ i′ ⊙ (1 − z²)
    dL/dlog f = (dL/dc_t ⊙ c_{t−1} + dL/dn_t ⊙ n_{t−1}) ⊙ f′    dL/dã_f = dL/dlog f ⊙ (1 − σ(ã_f))  (exp: ⊙ 1)
    dL/dc_{t−1} = dL/dc_t ⊙ f′      dL/dn_{t−1} = dL/dn_t ⊙ f′      dL/dh_{t−1} = dL/dã R  (block by block)

Two things do read m. The initial m_0 scales the initial states (C_0 = c_0 e^{m_0}), so
dL/dm_0 = c_0 ⊙ dL/dc_0 + n_0 ⊙ dL/dn_0. And a loss on the final states sees it: c_T = C_T e^{−m_T}, so with
g = dL/dm_T − c_T ⊙ dL/dc_T − n_T ⊙ dL/dn_T (the upstream gradients), g follows m_T back through its max: to
log f_t and on to m_{t−1} while the forget branch won (log f_t + m_{t−1} > ã_i), to ã_i where the input branch
won, and there it stops (or reaches m_0); a tie sends half each way, as torch's maximum does. A padded step carries
h, c, n and m through unchanged.
"""

from __future__ import annotations

from array_api_compat import device

GATES = 4  # i, f, z, o


def _blocks(xp, W, heads: int):
    """weight_hh (4H, D) as each head's (D, 4D) matrix, R[k, i, g·D + j] = W[g·H + k·D + j, i]: (heads, D, 4D)."""
    G_H, D = W.shape
    R = xp.reshape(W, (GATES, heads, D, D))  # [g, k, j, i]
    return xp.reshape(xp.permute_dims(R, (1, 3, 0, 2)), (heads, D, GATES * D))  # (heads, D, 4D)


def _recurrent(xp, h, R):
    """R h_{t−1} in ã's layout: h (B, H), R (heads, D, 4D) → (B, 4H)."""
    heads, D, _ = R.shape
    B = h.shape[0]
    hk = xp.permute_dims(xp.reshape(h, (B, heads, D)), (1, 0, 2))  # (heads, B, D)
    out = xp.reshape(xp.matmul(hk, R), (heads, B, GATES, D))  # (heads, B, 4, D)
    return xp.reshape(xp.permute_dims(out, (1, 2, 0, 3)), (B, GATES * heads * D))  # (B, 4H)


def _recurrent_back(xp, da, R):
    """dL/dh_{t−1} = dL/dã R, head by head: da (B, 4H), R (heads, D, 4D) → (B, H)."""
    heads, D, _ = R.shape
    B = da.shape[0]
    dk = xp.reshape(xp.permute_dims(xp.reshape(da, (B, GATES, heads, D)), (2, 0, 1, 3)), (heads, B, GATES * D))
    dh = xp.matmul(dk, xp.permute_dims(R, (0, 2, 1)))  # (heads, B, D)
    return xp.reshape(xp.permute_dims(dh, (1, 0, 2)), (B, heads * D))  # (B, H)


def _weight_grad(xp, da_all, hs, heads: int):
    """dW_hh[g·H + k·D + j, i] = Σ_t Σ_b dL/dã_t[b, g·H + k·D + j] h_{t−1}[b, k·D + i]: (T, B, 4H), (T, B, H) →
    (4H, D), one product per gate and head on column blocks (views: nothing is transposed in memory)."""
    T, B, G_H = da_all.shape
    H = G_H // GATES
    D = H // heads
    da, h = xp.reshape(da_all, (T * B, G_H)), xp.reshape(hs, (T * B, H))  # (T·B, 4H), (T·B, H)
    return xp.concat([da[:, g * H + k * D:g * H + (k + 1) * D].T @ h[:, k * D:(k + 1) * D]  # (D, D) each
                      for g in range(GATES) for k in range(heads)], axis=0)  # rows g·H + k·D + j          (4H, D)


def _log_sigmoid(xp, a):
    """log σ(a) = min(a, 0) − log(1 + e^{−|a|}), finite for every finite a."""
    return xp.minimum(a, xp.zeros_like(a)) - xp.log1p(xp.exp(-xp.abs(a)))


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, H), h_T, (c_T, n_T, m_T), cache) from xproj = x_t W_ihᵀ + b_ih (T, B, 4H), h0 (B, H) and
    c0 = (c_0, n_0, m_0), each (B, H)."""
    T, B, G = xproj.shape
    H, heads, exp_forget = config.hidden_size, config.num_heads, config.forget_gate == "exp"
    dev, dt = device(xproj), xproj.dtype
    a_all = xproj + W["bias_hh"] if W["bias_hh"] is not None else xp.asarray(xproj, copy=True)  # (T, B, 4H)
    R = _blocks(xp, W["weight_hh"], heads)  # (heads, D, 4D)
    empty = lambda *s: xp.empty(s, dtype=dt, device=dev)  # noqa: E731
    hs, cs, ns, ms = (empty(T + 1, B, H) for _ in range(4))  # h_t, c_t, n_t, m_t, t = 0 … T    (T+1, B, H)
    ip, fp, z, o, sf = (empty(T, B, H) for _ in range(5))  # i′, f′, tanh(ã_z), σ(ã_o), σ(ã_f)  (T, B, H)
    q, n_own = empty(T, B, H), empty(T, B, H)  # the step's own c_t / n_t and n_t (> 0), before a padded step's
    # carry: at a padded step n_t is n_{t−1}, which may be 0
    won = empty(T, B, H)  # the max's forget branch's share: 1 won, 0 lost, ½ a tie                (T, B, H)
    hs[0, ...], cs[0, ...], ns[0, ...], ms[0, ...] = h0, *c0
    for t in range(T):
        a = a_all[t, ...]
        a += _recurrent(xp, hs[t, ...], R)  # ã_t = x_t W_ihᵀ + b_ih + R h_{t−1} + b_hh        (B, 4H)
        ai, af, az, ao = (a[:, j * H:(j + 1) * H] for j in range(GATES))
        k.sigmoid_into(af, sf[t, ...])
        k.tanh_into(az, z[t, ...])
        k.sigmoid_into(ao, o[t, ...])
        lf = af if exp_forget else _log_sigmoid(xp, af)  # log f_t                              (B, H)
        carry = lf + ms[t, ...]  # log f_t + m_{t−1}                                             (B, H)
        won[t, ...] = xp.where(carry > ai, 1.0, xp.where(carry == ai, 0.5, 0.0))
        m_t = xp.maximum(carry, ai)  # m_t = max(log f_t + m_{t−1}, ã_i)                         (B, H)
        ip[t, ...] = xp.exp(ai - m_t)  # i′                                                      (B, H)
        fp[t, ...] = xp.exp(carry - m_t)  # f′                                                    (B, H)
        c_t = fp[t, ...] * cs[t, ...] + ip[t, ...] * z[t, ...]  # (B, H)
        n_t = fp[t, ...] * ns[t, ...] + ip[t, ...]  # (B, H)
        q[t, ...], n_own[t, ...] = c_t / n_t, n_t
        h_t = o[t, ...] * q[t, ...]  # h_t = o ⊙ c_t / n_t                                         (B, H)
        if masks is not None:  # a padded step carries every state through
            mk = masks[t, ...]
            c_t, n_t = mk * c_t + (1 - mk) * cs[t, ...], mk * n_t + (1 - mk) * ns[t, ...]
            m_t, h_t = mk * m_t + (1 - mk) * ms[t, ...], mk * h_t + (1 - mk) * hs[t, ...]
            won[t, ...] = mk * won[t, ...] + (1 - mk)  # m carried: its chain passes through
        hs[t + 1, ...], cs[t + 1, ...], ns[t + 1, ...], ms[t + 1, ...] = h_t, c_t, n_t, m_t
    out = hs[1:, ...]  # h_t of every step (manual.stack zeroes a padded step's)
    return out, hs[T, ...], (cs[T, ...], ns[T, ...], ms[T, ...]), (ip, fp, z, o, sf, won, hs, cs, ns, q, n_own, R)


def _chain(xp, g, won, masks):
    """g = dL/dm_T (at fixed C_T, N_T) followed back through every max: (to ã_i, to log f, to m_0), the first
    two (T, B, H)."""
    T = won.shape[0]
    alive = xp.ones_like(g)  # 1 while the chain from m_T has gone only through forget branches   (B, H)
    to_i, to_f = (xp.zeros((T, *g.shape), dtype=g.dtype, device=device(g)) for _ in range(2))  # (T, B, H)
    for t in range(T - 1, -1, -1):
        w = won[t, ...]
        inside = 1 if masks is None else masks[t, ...]
        to_f[t, ...] = g * alive * w * inside  # m_t = log f_t + m_{t−1}: to log f_t, and on
        to_i[t, ...] = g * alive * (1 - w) * inside  # m_t = ã_i: there it stops
        alive = alive * w
    return to_i, to_f, g * alive


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/dxproj (T, B, 4H), dL/dh0, (dL/dc0, dL/dn0, dL/dm0), {weight_hh, bias_hh}, per-step tensors by kind),
    given dcn = (dL/dc_T, dL/dn_T, dL/dm_T), each or None."""
    ip, fp, z, o, sf, won, hs, cs, ns, q, n_own, R = cache
    T, B, H = ip.shape
    dev, dt = device(ip), ip.dtype
    zeros = lambda: xp.zeros((B, H), dtype=dt, device=dev)  # noqa: E731
    g_c, g_n, g_m = dcn
    # factors of every step at once (T, B, H)
    k_c = o / n_own  # ∂h/∂c_t = o / n_t   (and ∂h/∂n_t = −k_c ⊙ q, q = c_t / n_t)
    k_o = q * o * (1 - o)  # dL/dã_o = dL/dh_t ⊙ q ⊙ o(1 − o)
    k_z = ip * (1 - z * z)  # dL/dã_z = dL/dc_t ⊙ i′ ⊙ (1 − z²)
    k_lf = xp.ones_like(sf) if config.forget_gate == "exp" else 1 - sf  # ∂log f/∂ã_f: 1, or 1 − σ(ã_f)
    g = None
    if any(v is not None for v in dcn):  # the final states read m_T: g = dL/dm_T at fixed C_T, N_T
        g = (zeros() if g_m is None else g_m) - (0 if g_c is None else cs[T, ...] * g_c) \
            - (0 if g_n is None else ns[T, ...] * g_n)
        to_i, to_f, g0 = _chain(xp, g, won, masks)
    da_all = xp.empty((T, B, GATES * H), dtype=dt, device=dev)  # dL/dã_t                          (T, B, 4H)
    dH, dC, dN = (xp.empty((T, B, H), dtype=dt, device=dev) for _ in range(3))  # (T, B, H)
    carry_h = zeros() if dhn is None else xp.asarray(dhn, copy=True)  # dL/dh_T                    (B, H)
    carry_c = zeros() if g_c is None else xp.asarray(g_c, copy=True)  # dL/dc_T                    (B, H)
    carry_n = zeros() if g_n is None else xp.asarray(g_n, copy=True)  # dL/dn_T                    (B, H)
    for t in range(T - 1, -1, -1):
        dh = dH[t, ...]
        dh[...] = carry_h if d_out is None else d_out[t, ...] + carry_h  # output's + through the future
        mk = None if masks is None else masks[t, ...]
        dh_cell = dh if mk is None else mk * dh
        dc = dh_cell * k_c[t, ...] + (carry_c if mk is None else mk * carry_c)  # dL/dc_t              (B, H)
        dn = (carry_n if mk is None else mk * carry_n) - dh_cell * k_c[t, ...] * q[t, ...]  # dL/dn_t  (B, H)
        da = da_all[t, ...]
        da[:, :H] = (dc * z[t, ...] + dn) * ip[t, ...]  # dL/dã_i
        dlf = (dc * cs[t, ...] + dn * ns[t, ...]) * fp[t, ...]  # dL/dlog f_t (m held fixed)        (B, H)
        if g is not None:  # the final states' share through the stabiliser's max
            da[:, :H] += to_i[t, ...]
            dlf = dlf + to_f[t, ...]
        da[:, H:2 * H] = dlf * k_lf[t, ...]  # dL/dã_f
        da[:, 2 * H:3 * H] = dc * k_z[t, ...]  # dL/dã_z
        da[:, 3 * H:] = dh_cell * k_o[t, ...]  # dL/dã_o
        k.flush(da)  # below the smallest normal → 0 (README "Vanishing gradients")
        new_h = _recurrent_back(xp, da, R)  # dL/dh_{t−1} = dL/dã R                                  (B, H)
        new_c, new_n = dc * fp[t, ...], dn * fp[t, ...]  # the carries                              (B, H)
        if mk is not None:
            new_h, new_c, new_n = new_h + (1 - mk) * dh, new_c + (1 - mk) * carry_c, new_n + (1 - mk) * carry_n
            dc, dn = dc + (1 - mk) * carry_c, dn + (1 - mk) * carry_n
        dC[t, ...], dN[t, ...] = dc, dn
        carry_h, carry_c, carry_n = new_h, new_c, new_n
    dm0 = cs[0, ...] * carry_c + ns[0, ...] * carry_n + (0 if g is None else g0)  # C_0 = c_0 e^{m_0}   (B, H)
    dW = {"weight_hh": _weight_grad(xp, da_all, hs[:T, ...], config.num_heads),  # (4H, D)
          "bias_hh": xp.sum(xp.reshape(da_all, (T * B, GATES * H)), axis=0)}  # (4H,)
    steps = {"h": dH, "c": dC, "n": dN, "gate_i": da_all[..., :H], "gate_f": da_all[..., H:2 * H],
             "gate_z": da_all[..., 2 * H:3 * H], "gate_o": da_all[..., 3 * H:]}
    return da_all, carry_h, (carry_c, carry_n, dm0), dW, steps

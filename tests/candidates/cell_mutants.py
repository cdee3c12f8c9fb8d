"""Mistakes in LSTM, LayerNorm-LSTM, GRU, IndRNN, minGRU, minLSTM and sLSTM backward passes, as candidates with
manual.module_gradients' signature.

``correct`` is an independent NumPy implementation, one layer and one
direction (the cases below use num_layers=1, unidirectional, full lengths),
written per batch row with plain loops apart from manual/; each mutant is it
with one mistake that public bug threads about hand-written LSTM and GRU
kernels show.
"""

from functools import partial

import numpy as np

import oracle


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _lstm(c, W, x, h0, c0, g_out, g_hn, g_cn, mistake):
    T, B, _ = x.shape
    H, P = c["hidden_size"], c.get("proj_size", 0) or c["hidden_size"]
    Wih, Whh, Whr = W["weight_ih_l0"], W["weight_hh_l0"], W.get("weight_hr_l0")
    b = W["bias_ih_l0"] + W["bias_hh_l0"] if "bias_ih_l0" in W else np.zeros(4 * H)
    g = {k: np.zeros_like(v) for k, v in W.items()}
    dx, dh0, dc0 = np.zeros_like(x), np.zeros_like(h0), np.zeros_like(c0)
    steps = {k: np.zeros((T, B, P if k == "h" else H)) for k in ("h", "c", "gate_i", "gate_f", "gate_g", "gate_o")}
    for row in range(B):
        h, cs = [h0[row]], [c0[row]]
        acts, hhs = [], []
        for t in range(T):
            a = Wih @ x[t, row] + Whh @ h[-1] + b
            i, f, gg, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
            if mistake == "i_and_f_swapped":
                i, f = f, i
            cs.append(f * cs[-1] + i * gg)
            hhs.append(o * np.tanh(cs[-1]))
            h.append(Whr @ hhs[-1] if Whr is not None else hhs[-1])
            acts.append((i, f, gg, o))
        dh_next = g_hn[row] if g_hn is not None else np.zeros(P)
        dc_next = g_cn[row] if g_cn is not None and mistake != "grad_cn_ignored" else np.zeros(H)
        for t in reversed(range(T)):
            i, f, gg, o = acts[t]
            dh = dh_next + (g_out[t, row] if g_out is not None else 0)
            if Whr is not None:
                if mistake != "projection_left_out":  # the projection's own gradient, forgotten by the mutant
                    g["weight_hr_l0"] += np.outer(dh, hhs[t])
                dhh = Whr.T @ dh
            else:
                dhh = dh
            tc = np.tanh(cs[t + 1])
            dc = dc_next + dhh * o * (1 - tc * tc)
            c_for_f = cs[t + 1] if mistake == "forget_from_c_t" else cs[t]
            da = np.concatenate([dc * gg * i * (1 - i), dc * c_for_f * f * (1 - f), dc * i * (1 - gg * gg),
                                 dhh * tc * o * (1 - o)])
            if mistake == "i_and_f_swapped":
                da = np.concatenate([da[H:2 * H], da[:H], da[2 * H:]])
            g["weight_ih_l0"] += np.outer(da, x[t, row])
            g["weight_hh_l0"] += np.outer(da, h[t])
            if "bias_ih_l0" in W:
                g["bias_ih_l0"] += da
                g["bias_hh_l0"] += da
            dx[t, row] = Wih.T @ da
            dh_next = Whh.T @ da
            dc_next = np.zeros(H) if mistake == "cell_carry_missing" else dc * f
            for k, v in (("h", dh), ("c", dc), ("gate_i", da[:H]), ("gate_f", da[H:2 * H]),
                         ("gate_g", da[2 * H:3 * H]), ("gate_o", da[3 * H:])):
                steps[k][t, row] = v
        dh0[row], dc0[row] = dh_next, dc_next
    return g, dx, dh0, dc0, steps


def _ln(v, gamma, beta):
    """(y, v̂, r) of a layer norm over v's entries (one vector): v̂ = (v − mean) r, r = 1 / √(var + 1e-5)."""
    r = 1 / np.sqrt(v.var() + 1e-5)
    vhat = (v - v.mean()) * r
    return gamma * vhat + beta, vhat, r


def _ln_back(dy, gamma, vhat, r, mistake):
    """dL/dv from dL/dy, through the mean and (unless the mutant forgets it) the projection onto v̂."""
    u = dy * gamma
    projection = 0 if mistake == "layer_norm_without_projection" else vhat * (u * vhat).mean()
    return r * (u - u.mean() - projection)


def _lnlstm(c, W, x, h0, c0, g_out, g_hn, g_cn, mistake):
    """The LayerNorm-LSTM per batch row: a = LN_ih(W_ih x) + LN_hh(W_hh h), h = o ⊙ tanh(LN_c(c)); torch's gate
    order; bias_ih and bias_hh the gate norms' β."""
    T, B, _ = x.shape
    H = c["hidden_size"]
    p = {k.removesuffix("_l0"): v for k, v in W.items()}
    zero = np.zeros(4 * H)
    b_ih, b_hh, b_c = p.get("bias_ih", zero), p.get("bias_hh", zero), p.get("ln_c_bias", np.zeros(H))
    g = {k: np.zeros_like(v) for k, v in W.items()}
    dx, dh0, dc0 = np.zeros_like(x), np.zeros_like(h0), np.zeros_like(c0)
    steps = {k: np.zeros((T, B, H)) for k in ("h", "c", "gate_i", "gate_f", "gate_g", "gate_o")}
    for row in range(B):
        hs, cs, cache = [h0[row]], [c0[row]], []
        for t in range(T):
            ax, xhat, rx = _ln(p["weight_ih"] @ x[t, row], p["ln_ih_weight"], b_ih)
            ah, hhat, rh = _ln(p["weight_hh"] @ hs[-1], p["ln_hh_weight"], b_hh)
            a = ax + ah
            i, f, gg, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
            cs.append(f * cs[-1] + i * gg)
            y, chat, rc = _ln(cs[-1], p["ln_c_weight"], b_c)
            hs.append(o * np.tanh(y))
            cache.append((xhat, rx, hhat, rh, (i, f, gg, o), np.tanh(y), chat, rc))
        dh_next = g_hn[row] if g_hn is not None else np.zeros(H)
        dc_next = g_cn[row] if g_cn is not None else np.zeros(H)
        for t in reversed(range(T)):
            xhat, rx, hhat, rh, (i, f, gg, o), ty, chat, rc = cache[t]
            dh = dh_next + (g_out[t, row] if g_out is not None else 0)
            dy = dh * o * (1 - ty * ty)
            dc = dc_next + _ln_back(dy, p["ln_c_weight"], chat, rc, mistake)
            da = np.concatenate([dc * gg * i * (1 - i), dc * cs[t] * f * (1 - f), dc * i * (1 - gg * gg),
                                 dh * ty * o * (1 - o)])
            dax, dah = _ln_back(da, p["ln_ih_weight"], xhat, rx, mistake), _ln_back(da, p["ln_hh_weight"], hhat, rh,
                                                                                  mistake)
            for name, v in (("weight_ih", np.outer(dax, x[t, row])), ("weight_hh", np.outer(dah, hs[t])),
                            ("ln_ih_weight", da * xhat), ("ln_hh_weight", da * hhat), ("ln_c_weight", dy * chat),
                            ("bias_ih", da), ("bias_hh", da), ("ln_c_bias", dy)):
                if f"{name}_l0" in g:
                    g[f"{name}_l0"] += v
            dx[t, row] = p["weight_ih"].T @ dax
            dh_next, dc_next = p["weight_hh"].T @ dah, dc * f
            for k, v in zip(steps, (dh, dc, *np.split(da, 4)), strict=True):
                steps[k][t, row] = v
        dh0[row], dc0[row] = dh_next, dc_next
    return g, dx, dh0, dc0, steps


def _gru(c, W, x, h0, g_out, g_hn, mistake, zm=None):
    """The GRU per batch row; ``zm`` (T, B, H): zoneout masks, h_t = m ⊙ h_{t−1} + (1 − m) ⊙ h̃_t."""
    T, B, _ = x.shape
    H = c["hidden_size"]
    torch_form = c.get("linear_before_reset", True) != (mistake == "reset_in_the_other_form")
    Wih, Whh = W["weight_ih_l0"], W["weight_hh_l0"]
    bih = W.get("bias_ih_l0", np.zeros(3 * H))
    bhh = W.get("bias_hh_l0", np.zeros(3 * H))
    g = {k: np.zeros_like(v) for k, v in W.items()}
    dx, dh0 = np.zeros_like(x), np.zeros_like(h0)
    steps = {k: np.zeros((T, B, H)) for k in ("h", "gate_r", "gate_z", "gate_n")}
    for row in range(B):
        hs, saved = [h0[row]], []
        for t in range(T):
            hp = hs[-1]
            ax = Wih @ x[t, row] + bih
            r = sigmoid(ax[:H] + Whh[:H] @ hp + bhh[:H])
            z = sigmoid(ax[H:2 * H] + Whh[H:2 * H] @ hp + bhh[H:2 * H])
            ahn = Whh[2 * H:] @ hp + bhh[2 * H:] if torch_form else Whh[2 * H:] @ (r * hp) + bhh[2 * H:]
            n = np.tanh(ax[2 * H:] + (r * ahn if torch_form else ahn))
            m = 0 if zm is None else zm[t, row]
            hs.append(m * hp + (1 - m) * ((1 - z) * n + z * hp))
            saved.append((r, z, n, ahn))
        dh_next = g_hn[row] if g_hn is not None else np.zeros(H)
        for t in reversed(range(T)):
            r, z, n, ahn = saved[t]
            hp = hs[t]
            dh_total = dh_next + (g_out[t, row] if g_out is not None else 0)
            m = 0 if zm is None else zm[0 if mistake == "zoneout_mask_of_step_1" else t, row]
            dh = (1 - m) * dh_total  # what reaches the step's own h̃; m ⊙ dL/dh_t goes straight to h_{t−1}
            dan = dh * (1 - z) * (1 - n * n)
            dz = dh * (hp - n) * z * (1 - z)
            new = dh * z + m * dh_total
            if torch_form:
                dr = dan * ahn * r * (1 - r)
                dahn = dan * r
                g["weight_hh_l0"][2 * H:] += np.outer(dahn, hp)
                new = new + Whh[2 * H:].T @ dahn
            else:
                drh = Whh[2 * H:].T @ dan
                dr = drh * hp * r * (1 - r)
                dahn = dan
                g["weight_hh_l0"][2 * H:] += np.outer(dan, r * hp)
                new = new + drh * r
            g["weight_hh_l0"][:H] += np.outer(dr, hp)
            g["weight_hh_l0"][H:2 * H] += np.outer(dz, hp)
            new = new + Whh[:H].T @ dr + Whh[H:2 * H].T @ dz
            dax = np.concatenate([dr, dz, dan])
            g["weight_ih_l0"] += np.outer(dax, x[t, row])
            if "bias_ih_l0" in W:
                g["bias_ih_l0"] += dax
                g["bias_hh_l0"] += np.concatenate([dr, dz, dan if mistake == "b_hn_as_b_in" else dahn])
            dx[t, row] = Wih.T @ dax
            dh_next = new
            for k, v in (("h", dh_total), ("gate_r", dr), ("gate_z", dz), ("gate_n", dan)):
                steps[k][t, row] = v
        dh0[row] = dh_next
    return g, dx, dh0, steps


def _indrnn(c, W, x, h0, g_out, g_hn, mistake):
    """IndRNN, per batch row: z_t = W_ih x_t + b_ih + u ⊙ h_{t-1} + b_hh, h_t = act(z_t)."""
    T, B, _ = x.shape
    H = c["hidden_size"]
    act, dact = {"tanh": (np.tanh, lambda h: 1 - h * h),
                 "relu": (lambda z: np.maximum(z, 0), lambda h: (h > 0).astype(float))}[c.get("nonlinearity", "tanh")]
    Wih, u = W["weight_ih_l0"], W["weight_hh_l0"]
    b = W["bias_ih_l0"] + W["bias_hh_l0"] if "bias_ih_l0" in W else np.zeros(H)
    U = np.diag(u) if mistake != "diagonal_as_matrix" else np.tile(u[:, None], (1, H))  # the recurrence as a matrix
    g = {k: np.zeros_like(v) for k, v in W.items()}
    dx, dh0 = np.zeros_like(x), np.zeros_like(h0)
    steps = {k: np.zeros((T, B, H)) for k in ("h", "z")}
    for row in range(B):
        hs = [h0[row]]
        for t in range(T):
            hs.append(act(Wih @ x[t, row] + b + u * hs[-1]))
        dh_next = g_hn[row] if g_hn is not None else np.zeros(H)
        for t in reversed(range(T)):
            dh = dh_next + (g_out[t, row] if g_out is not None else 0)
            dz = dh * dact(hs[t + 1])
            h_read = hs[t + 1] if mistake == "u_from_h_t" else hs[t]  # u multiplies h_{t-1}: its gradient pairs with it
            du = np.outer(dz, h_read)
            g["weight_hh_l0"] += du.sum(axis=1) if mistake == "diagonal_as_matrix" else np.diag(du)
            g["weight_ih_l0"] += np.outer(dz, x[t, row])
            if "bias_ih_l0" in W:
                g["bias_ih_l0"] += dz
                g["bias_hh_l0"] += dz
            dx[t, row] = Wih.T @ dz
            dh_next = U.T @ dz
            steps["h"][t, row], steps["z"][t, row] = dh, dz
        dh0[row] = dh_next
    return g, dx, dh0, steps


def _minimal(c, W, x, h0, g_out, g_hn, mistake):
    """minGRU / minLSTM, per batch row, each step's gradients by the chain rule through the normalised gates:
    h_t = A_t h_{t-1} + B_t with (A, B) = (1 − z, z h̃) or (f/(f+i), i/(f+i) h̃), h̃ = g(a_h)."""
    T, B, _ = x.shape
    H = c["hidden_size"]
    gru = c["mode"] == "MINGRU"
    kinds = ("gate_z", "gate_h") if gru else ("gate_f", "gate_i", "gate_h")
    Wih = W["weight_ih_l0"]
    b = W["bias_ih_l0"] if "bias_ih_l0" in W else np.zeros(len(kinds) * H)
    g = {k: np.zeros_like(v) for k, v in W.items()}
    dx, dh0 = np.zeros_like(x), np.zeros_like(h0)
    steps = {k: np.zeros((T, B, H)) for k in ("h", *kinds)}
    pos = lambda a: np.where(a >= 0, a + 0.5, sigmoid(np.minimum(a, 0)))  # noqa: E731
    dpos = lambda a: np.where(a >= 0, 1.0, sigmoid(np.minimum(a, 0)) * (1 - sigmoid(np.minimum(a, 0))))  # noqa: E731
    for row in range(B):
        hs, cache = [h0[row]], []
        for t in range(T):
            a = Wih @ x[t, row] + b
            ht = pos(a[-H:])
            if gru:
                z = sigmoid(a[:H])
                A, Bt = (z if mistake == "carry_by_z" else 1 - z), z * ht
                cache.append((a, ht, z))
            else:
                f, i = sigmoid(a[:H]), sigmoid(a[H:2 * H])
                A, Bt = f / (f + i), i / (f + i) * ht
                cache.append((a, ht, (f, i)))
            hs.append(A * hs[-1] + Bt)
        dh_next = g_hn[row] if g_hn is not None else np.zeros(H)
        for t in reversed(range(T)):
            dh = dh_next + (g_out[t, row] if g_out is not None else 0)
            a, ht, gates = cache[t]
            if gru:  # the mutant's own model, A = z, differentiated consistently: dA/dz = +1
                z = gates
                h_prev = -hs[t] if mistake == "carry_by_z" else hs[t]
                da = [dh * (ht - h_prev) * z * (1 - z), dh * z * dpos(a[-H:])]
                carry = z if mistake == "carry_by_z" else 1 - z
            else:
                f, i = gates
                s = f + i
                if mistake == "normalisation_not_differentiated":  # as if A = f, B = i h̃
                    df, di = dh * hs[t], dh * ht
                else:
                    df, di = dh * (hs[t] - ht) * i / s**2, dh * (ht - hs[t]) * f / s**2
                da = [df * f * (1 - f), di * i * (1 - i), dh * i / s * dpos(a[-H:])]
                carry = f / s
            da = np.concatenate(da)
            g["weight_ih_l0"] += np.outer(da, x[t, row])
            if "bias_ih_l0" in W:
                g["bias_ih_l0"] += da
            dx[t, row] = Wih.T @ da
            steps["h"][t, row] = dh
            for j, kind in enumerate(kinds):
                steps[kind][t, row] = da[j * H:(j + 1) * H]
            dh_next = carry * dh
        dh0[row] = dh_next
    return g, dx, dh0, steps


def _slstm(c, W, x, h0, s0, g_out, g_hn, g_s, mistake):
    """The sLSTM per batch row, the stabiliser differentiated through like any other variable (dL/dm_t carried
    back through f′_{t+1}, i′_t, f′_t and every max): an independent derivation of what manual gets by holding m
    fixed. Gates i, f, z, o; weight_hh (4H, D) block-diagonal by head."""
    T, B, _ = x.shape
    H, nh = c["hidden_size"], c.get("num_heads", 1)
    D = H // nh
    exp_f = c.get("forget_gate", "sigmoid") == "exp"
    Wih, Whh = W["weight_ih_l0"], W["weight_hh_l0"]
    b = W["bias_ih_l0"] + W["bias_hh_l0"] if "bias_ih_l0" in W else np.zeros(4 * H)
    R, Rb = np.zeros((4 * H, H)), np.zeros((4 * H, H))  # the block-diagonal matrix; the one the backward uses
    for g_, k in np.ndindex(4, nh):
        blk = Whh[g_ * H + k * D:g_ * H + (k + 1) * D]  # (D, D): rows its units, columns its head's h
        R[g_ * H + k * D:g_ * H + (k + 1) * D, k * D:(k + 1) * D] = blk
        Rb[g_ * H + k * D:g_ * H + (k + 1) * D, k * D:(k + 1) * D] = blk.T if mistake == "head_blocks_transposed" \
            else blk
    g = {k: np.zeros_like(v) for k, v in W.items()}
    dx, d0 = np.zeros_like(x), [np.zeros_like(h0), *(np.zeros_like(a) for a in s0)]
    steps = {k: np.zeros((T, B, H)) for k in ("h", "c", "n", "gate_i", "gate_f", "gate_z", "gate_o")}
    for row in range(B):
        h, cp, npr, mp = h0[row], s0[0][row], s0[1][row], s0[2][row]
        hs, cache = [h], []
        for t in range(T):
            a = Wih @ x[t, row] + R @ h + b
            ai, af, az, ao = np.split(a, 4)
            lf = af if exp_f else -np.logaddexp(0, -af)
            won = np.where(lf + mp > ai, 1.0, np.where(lf + mp == ai, 0.5, 0.0))  # a tie: half each way
            m = np.maximum(lf + mp, ai)
            ip, fp, z, o = np.exp(ai - m), np.exp(lf + mp - m), np.tanh(az), sigmoid(ao)
            cn, nn_ = fp * cp + ip * z, fp * npr + ip
            h = o * cn / nn_
            cache.append((a, cp, npr, ip, fp, z, o, cn, nn_, won))
            cp, npr, mp = cn, nn_, m
            hs.append(h)
        dh_next = g_hn[row] if g_hn is not None else np.zeros(H)
        dc, dn, dm = (gs[row] if gs is not None else np.zeros(H) for gs in g_s)
        for t in reversed(range(T)):
            a, cp, npr, ip, fp, z, o, cn, nn_, won = cache[t]
            dh = dh_next + (g_out[t, row] if g_out is not None else 0)
            do = dh * cn / nn_
            dc = dc + dh * o / nn_
            dn = dn - dh * o * cn / nn_**2
            dip, dfp = dc * z + dn, dc * cp + dn * npr
            dai, dlf, dmp = dip * ip, dfp * fp, dfp * fp  # i′ = e^{ã_i − m_t}, f′ = e^{log f + m_{t−1} − m_t}
            dm_t = (0 if mistake == "stabiliser_differentiated" else dm) - dip * ip - dfp * fp  # m_t's every use
            dlf, dmp, dai = dlf + won * dm_t, dmp + won * dm_t, dai + (1 - won) * dm_t  # through the max
            daf = dlf if exp_f else dlf * (1 - sigmoid(a[H:2 * H]))
            da = np.concatenate([dai, daf, dc * ip * (1 - z**2), do * o * (1 - o)])
            g["weight_ih_l0"] += np.outer(da, x[t, row])
            dR = np.outer(da, hs[t])
            for g_, k in np.ndindex(4, nh):  # only the blocks are parameters
                blk = dR[g_ * H + k * D:g_ * H + (k + 1) * D, k * D:(k + 1) * D]
                g["weight_hh_l0"][g_ * H + k * D:g_ * H + (k + 1) * D] += blk.T if mistake == "head_blocks_transposed" \
                    else blk
            if "bias_ih_l0" in W:
                g["bias_ih_l0"] += da
                g["bias_hh_l0"] += da
            dx[t, row] = Wih.T @ da
            for kind, v in zip(steps, (dh, dc, dn, *np.split(da, 4)), strict=True):
                steps[kind][t, row] = v
            dh_next = Rb.T @ da
            dc, dn, dm = dc * fp, dn * (ip if mistake == "normaliser_carried_by_i" else fp), dmp
        for j, v in enumerate((dh_next, dc, dn, dm)):
            d0[j][row] = v
    return g, dx, d0, steps


def cell_bptt(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None, lengths=None, grad_cn=None,
              grad_nn=None, grad_mn=None, zoneout_masks=None, mistake=None):
    c = config
    for what, ok in (("num_layers", c.get("num_layers", 1) == 1), ("bidirectional", not c.get("bidirectional")),
                     ("batch_first", not c.get("batch_first")), ("lengths", not lengths)):
        if not ok:
            raise oracle.Unsupported(what)  # one layer, one direction, time-major, whole sequences
    W = {k: np.asarray(v) for k, v in state_dict.items()}
    x = np.asarray(input)
    T, B, _ = x.shape
    g_hn = None if grad_hn is None else grad_hn[0]
    if c["mode"] in ("LSTM", "LNLSTM"):
        P = c.get("proj_size", 0) or c["hidden_size"]
        h0, c0 = hx if hx is not None else (np.zeros((1, B, P)), np.zeros((1, B, c["hidden_size"])))
        g, dx, dh0, dc0, steps = (_lstm if c["mode"] == "LSTM" else _lnlstm)(
            c, W, x, h0[0], c0[0], grad_output, g_hn, None if grad_cn is None else grad_cn[0], mistake)
        out = {**g, "input": dx, "hx": dh0[None], "cx": dc0[None]}
    elif c["mode"] == "SLSTM":
        zero = np.zeros((1, B, c["hidden_size"]))
        h0, *s0 = hx if hx is not None else (zero,) * 4
        g, dx, d0, steps = _slstm(c, W, x, h0[0], [a[0] for a in s0], grad_output, g_hn,
                                  [None if u is None else u[0] for u in (grad_cn, grad_nn, grad_mn)], mistake)
        out = {**g, "input": dx, **{f"{k}x": v[None] for k, v in zip("hcnm", d0, strict=True)}}
    else:
        h0 = hx if hx is not None else np.zeros((1, B, c["hidden_size"]))
        one = {"INDRNN": _indrnn, "MINGRU": _minimal, "MINLSTM": _minimal}.get(c["mode"], _gru)
        zm = {} if zoneout_masks is None else {"zm": np.asarray(zoneout_masks)[0]}  # (T, B, H): the GRU's alone
        g, dx, dh0, steps = one(c, W, x, h0[0], grad_output, g_hn, mistake, **zm)
        out = {**g, "input": dx, "hx": dh0[None]}
    out.update({f"{k}_l0": v for k, v in steps.items()})
    return out


correct = cell_bptt
forget_from_c_t = partial(cell_bptt, mistake="forget_from_c_t")
cell_carry_missing = partial(cell_bptt, mistake="cell_carry_missing")
i_and_f_swapped = partial(cell_bptt, mistake="i_and_f_swapped")
projection_left_out = partial(cell_bptt, mistake="projection_left_out")
grad_cn_ignored = partial(cell_bptt, mistake="grad_cn_ignored")
reset_in_the_other_form = partial(cell_bptt, mistake="reset_in_the_other_form")
b_hn_as_b_in = partial(cell_bptt, mistake="b_hn_as_b_in")
u_from_h_t = partial(cell_bptt, mistake="u_from_h_t")
diagonal_as_matrix = partial(cell_bptt, mistake="diagonal_as_matrix")
carry_by_z = partial(cell_bptt, mistake="carry_by_z")
normalisation_not_differentiated = partial(cell_bptt, mistake="normalisation_not_differentiated")
normaliser_carried_by_i = partial(cell_bptt, mistake="normaliser_carried_by_i")
stabiliser_differentiated = partial(cell_bptt, mistake="stabiliser_differentiated")
head_blocks_transposed = partial(cell_bptt, mistake="head_blocks_transposed")
layer_norm_without_projection = partial(cell_bptt, mistake="layer_norm_without_projection")
zoneout_mask_of_step_1 = partial(cell_bptt, mistake="zoneout_mask_of_step_1")

"""The LayerNorm-LSTM cell (as the fused-RNN libraries define it): one direction of one layer, forward and back.

torch's LSTM with layer normalisation of the input and recurrent pre-activations, each over its 4H features, and
of the cell state before its tanh, each with its own gain γ and bias β (``ln_ih_weight``/``bias_ih``,
``ln_hh_weight``/``bias_hh``, ``ln_c_weight``/``ln_c_bias``); LN(v) = γ ⊙ v̂ + β with v̂ = (v − mean v) · r and
r = 1 / √(var v + ε), ε = ``contract.cells.LAYER_NORM_EPS``. Gates in torch's order i, f, g, o:

    a_t = LN_ih(x_t W_ihᵀ) + LN_hh(h_{t−1} W_hhᵀ)                                        (B, 4H)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c_t = f ⊙ c_{t−1} + i ⊙ g        h_t = o ⊙ tanh(LN_c(c_t))

The layer norm's backward, for dL/dy with y = γ ⊙ v̂ + β over the last axis of n features:

    dγ = Σ dL/dy ⊙ v̂     dβ = Σ dL/dy     u = dL/dy ⊙ γ
    dL/dv = r ⊙ (u − mean(u) − v̂ ⊙ mean(u ⊙ v̂))       (the mean's part, and the projection onto v̂: the variance's)

Backward, t = T … 1, given dL/dh_t and dL/dc_t from the future (and dL/doutput_t):

    dL/da_o = dL/dh_t ⊙ tanh(y_c) ⊙ o(1 − o)            y_c = LN_c(c_t)
    dL/dc_t = dL/dc_t (from t+1) + LN_c's backward of dL/dh_t ⊙ o ⊙ (1 − tanh² y_c)
    dL/da_i = dL/dc_t ⊙ g ⊙ i(1 − i)   dL/da_f = dL/dc_t ⊙ c_{t−1} ⊙ f(1 − f)   dL/da_g = dL/dc_t ⊙ i ⊙ (1 − g²)
    dL/dh_{t−1} = LN_hh's backward of dL/da, times W_hh     dL/dc_{t−1} = dL/dc_t ⊙ f
    after the loop, every step at once: LN_ih's backward of dL/da gives dL/d(x_t W_ihᵀ) (``manual.stack`` does the
    rest: dW_ih, dL/dx)

A padded step carries h and c through unchanged, as in ``manual.cells.lstm``. In float16 and bfloat16 a norm's
statistics, its output and its backward are computed in float32 and rounded once, as torch's layer_norm does.
"""

from __future__ import annotations

from array_api_compat import device

from contract.cells import LAYER_NORM_EPS


def wide(xp, a):
    """``a`` in float32 where its dtype is narrower (float16, bfloat16), else ``a``: where a norm computes."""
    return xp.astype(a, xp.float32, copy=False) if xp.finfo(a.dtype).bits < 32 else a


def norm(xp, v):
    """(v̂, r) over the last axis, in ``wide``'s dtype: v̂ = (v − mean) · r, r = 1 / √(var + ε) (keepdims)."""
    v = wide(xp, v)
    centred = v - xp.mean(v, axis=-1, keepdims=True)
    r = 1 / xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + LAYER_NORM_EPS)
    return centred * r, r


def norm_back(xp, u, vhat, r):
    """dL/dv from u = dL/dv̂ (= dL/dy ⊙ γ): r ⊙ (u − mean(u) − v̂ ⊙ mean(u ⊙ v̂)), in u's dtype."""
    w = wide(xp, u)
    return xp.astype(r * (w - xp.mean(w, axis=-1, keepdims=True) - vhat * xp.mean(w * vhat, axis=-1, keepdims=True)),
                     u.dtype, copy=False)


def _affine(xp, W: dict, gain: str, bias: str, vhat, dtype):
    """γ ⊙ v̂ + β, computed in v̂'s dtype and rounded once to ``dtype``."""
    y = vhat * xp.astype(W[gain], vhat.dtype, copy=False)
    return xp.astype(y + xp.astype(W[bias], vhat.dtype, copy=False) if W[bias] is not None else y, dtype, copy=False)


def forward(xp, k, config, xproj, h0, c0, W: dict, masks):
    """(output (T, B, H), h_T, (c_T,), cache) from xproj = x_t W_ihᵀ (T, B, 4H), unbiased: its layer norm comes
    first, and bias_ih is that norm's β."""
    T, B, G = xproj.shape
    H = config.hidden_size
    dev, dt = device(xproj), xproj.dtype
    xhat, rx = norm(xp, xproj)  # (T, B, 4H), (T, B, 1)
    ax = _affine(xp, W, "ln_ih_weight", "bias_ih", xhat, dt)  # LN_ih(x_t W_ihᵀ), every step     (T, B, 4H)
    empty = lambda *s, dtype=dt: xp.empty(s, dtype=dtype, device=dev)  # noqa: E731
    acts, ty = empty(T, B, G), empty(T, B, H)  # the gates; tanh(y_c)
    rhat, rr, chat, rc = (empty(*s, dtype=xhat.dtype) for s in ((T, B, G), (T, B, 1), (T, B, H), (T, B, 1)))
    # LN_hh's and LN_c's v̂ and r
    hs, cs = empty(T + 1, B, H), empty(T + 1, B, H)  # (T+1, B, H)
    hs[0, ...], cs[0, ...] = h0, c0[0]
    for t in range(T):
        rhat[t, ...], rr[t, ...] = norm(xp, hs[t, ...] @ W["weight_hh"].T)  # LN_hh(h_{t−1} W_hhᵀ)   (B, 4H)
        a = ax[t, ...] + _affine(xp, W, "ln_hh_weight", "bias_hh", rhat[t, ...], dt)  # a_t        (B, 4H)
        act = acts[t, ...]
        k.sigmoid_into(a, act)  # i, f, o = σ(·)
        k.tanh_into(a[:, 2 * H:3 * H], act[:, 2 * H:3 * H])  # g = tanh(a_g)
        i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
        c = f * cs[t, ...] + i * g  # c_t                                                         (B, H)
        chat[t, ...], rc[t, ...] = norm(xp, c)
        k.tanh_into(_affine(xp, W, "ln_c_weight", "ln_c_bias", chat[t, ...], dt), ty[t, ...])  # tanh(LN_c(c_t))
        h = o * ty[t, ...]  # h_t                                                                 (B, H)
        if masks is not None:  # a padded step carries the state through
            mk = masks[t, ...]
            c, h = mk * c + (1 - mk) * cs[t, ...], mk * h + (1 - mk) * hs[t, ...]
        hs[t + 1, ...], cs[t + 1, ...] = h, c
    out = hs[1:, ...]  # h_t of every step (manual.stack zeroes a padded step's)
    return out, hs[T, ...], (cs[T, ...],), (acts, xhat, rx, rhat, rr, chat, rc, ty, hs, cs)


def backward(xp, k, config, cache, W: dict, d_out, dhn, dcn, masks):
    """(dL/d(x_t W_ihᵀ) (T, B, 4H), dL/dh0, (dL/dc0,), {weight_hh, the norms' gains and biases}, per-step tensors
    by kind), given dcn = (dL/dc_T or None,)."""
    acts, xhat, rx, rhat, rr, chat, rc, ty, hs, cs = cache
    T, B, G = acts.shape
    H = config.hidden_size
    dev, dt = device(acts), acts.dtype
    i, f, g, o = acts[..., :H], acts[..., H:2 * H], acts[..., 2 * H:3 * H], acts[..., 3 * H:]
    k_y = o * (1 - ty * ty) * W["ln_c_weight"]  # dL/dv̂_c = dL/dh_t ⊙ this (⊙ o ⊙ (1 − tanh² y_c) ⊙ γ_c)
    k_gates = xp.concat([g * i * (1 - i), cs[:T, ...] * f * (1 - f), i * (1 - g * g)], axis=-1)  # (T, B, 3H)
    k_o = ty * o * (1 - o)  # dL/da_o = dL/dh_t ⊙ tanh(y_c) ⊙ o(1 − o)
    da_all, dr_all = (xp.empty((T, B, G), dtype=dt, device=dev) for _ in range(2))  # dL/da_t; dL/d(h W_hhᵀ)
    dH, dC = (xp.empty((T, B, H), dtype=dt, device=dev) for _ in range(2))  # (T, B, H)
    dyc = xp.empty((T, B, H), dtype=dt, device=dev)  # dL/dy_c, LN_c's output                      (T, B, H)
    carry_h = xp.zeros((B, H), dtype=dt, device=dev) if dhn is None else xp.asarray(dhn, copy=True)
    carry_c = xp.zeros((B, H), dtype=dt, device=dev) if dcn[0] is None else xp.asarray(dcn[0], copy=True)
    for t in range(T - 1, -1, -1):
        dh = dH[t, ...]
        dh[...] = carry_h if d_out is None else d_out[t, ...] + carry_h  # output's + through the future
        mk = None if masks is None else masks[t, ...]
        dh_cell = dh if mk is None else mk * dh
        dyc[t, ...] = dh_cell * o[t, ...] * (1 - ty[t, ...] * ty[t, ...])  # dL/dy_c                   (B, H)
        dc = norm_back(xp, dh_cell * k_y[t, ...], chat[t, ...], rc[t, ...])  # through LN_c            (B, H)
        dc = dc + (carry_c if mk is None else mk * carry_c)  # dL/dc_t
        da = da_all[t, ...]
        da[:, :3 * H] = xp.concat([dc, dc, dc], axis=-1) * k_gates[t, ...]  # dL/da_i, da_f, da_g
        da[:, 3 * H:] = dh_cell * k_o[t, ...]  # dL/da_o
        k.flush(da)  # below the smallest normal → 0 (README "Vanishing gradients")
        dr_all[t, ...] = norm_back(xp, da * W["ln_hh_weight"], rhat[t, ...], rr[t, ...])  # through LN_hh (B, 4H)
        new_h, new_c = dr_all[t, ...] @ W["weight_hh"], dc * f[t, ...]  # the carries               (B, H)
        if mk is not None:
            new_h, new_c = new_h + (1 - mk) * dh, new_c + (1 - mk) * carry_c
            dc = dc + (1 - mk) * carry_c
        dC[t, ...] = dc
        carry_h, carry_c = new_h, new_c
    flat = lambda a: xp.reshape(a, (T * B, a.shape[-1]))  # noqa: E731
    sums = lambda a, b: xp.astype(xp.sum(flat(wide(xp, a) * b), axis=0), dt, copy=False)  # noqa: E731 - Σ a ⊙ v̂
    db = xp.sum(flat(da_all), axis=0)  # both gate norms' β add into a_t                           (4H,)
    dW = {"weight_hh": flat(dr_all).T @ flat(hs[:T, ...]),  # Σ_t dL/d(h W_hhᵀ)ᵀ h_{t−1}          (4H, H)
          "ln_ih_weight": sums(da_all, xhat), "ln_hh_weight": sums(da_all, rhat), "ln_c_weight": sums(dyc, chat),
          "bias_ih": db, "bias_hh": db, "ln_c_bias": xp.sum(flat(dyc), axis=0)}
    dxproj = norm_back(xp, da_all * W["ln_ih_weight"], xhat, rx)  # through LN_ih, every step       (T, B, 4H)
    steps = {"h": dH, "c": dC, "gate_i": da_all[..., :H], "gate_f": da_all[..., H:2 * H],
             "gate_g": da_all[..., 2 * H:3 * H], "gate_o": da_all[..., 3 * H:]}
    return dxproj, carry_h, (carry_c,), dW, steps

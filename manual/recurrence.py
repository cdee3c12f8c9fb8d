"""Matrix-state recurrences (linear attention, gated linear attention, the delta rule and its gated forms): the
forward pass and the BPTT, derived by hand. No autodiff.

Per batch row b and head h the state is a matrix S_t (K × V). Every variant is one step of two parts:

    S'_t = decay_t(S_{t−1})                       none; e^{g_t} S (one g per head); diag(e^{g_t}) S (one per key)
    S_t  = S'_t + k_t v_tᵀ                        linear_attention, gla_head, gla
    S_t  = S'_t + β_t k_t (v_t − S'_tᵀ k_t)ᵀ       delta_rule, gated_delta_rule, kda  (= (I − β k kᵀ) S' + β k vᵀ)
    o_t  = S_tᵀ (s q_t)

(gated_delta_rule: e^{g_t}(I − β kkᵀ) S_{t−1}, the scalar decay commuting with the correction; kda:
(I − β kkᵀ) diag(e^{g_t}) S_{t−1}, the decay first.) β is one per head, or one per value channel (then β ⊙ u).

The backward pass, with G = dL/dS_t (from dL/dfinal_state at t = T, then carried):

    G    += s q_t do_tᵀ ;   dq_t = s S_t do_t                       (the output)
    u     = v_t − S'_tᵀ k_t ;  dβ_t = (Gᵀ k_t) ⊙ u (summed over V per head)
    du    = β_t ⊙ (Gᵀ k_t) ;  dv_t = du ;  dk_t = G (β_t ⊙ u) − S'_t du ;  dS' = G − k_t duᵀ   (delta)
    dk_t  = G v_t ;  dv_t = Gᵀ k_t ;  dS' = G                                                (no delta)
    dg_t  = Σ dS' ⊙ S'_t (over K and V per head, over V per key) ;  G ← decay_t(dS')          (the carry)

and dL/dinitial_state is the last G. This first module takes unpacked input with one value head per key head
(HV = H) and no L2 norm inside: issue 17's packing, grouped heads and the norm come next.
"""

from __future__ import annotations

from array_api_compat import array_namespace

VARIANTS = {  # variant → (decay: None, "head" or "key"; delta rule)
    "linear_attention": (None, False),
    "gla_head": ("head", False),
    "gla": ("key", False),
    "delta_rule": (None, True),
    "gated_delta_rule": ("head", True),
    "kda": ("key", True),
}


def _decay(xp, S, g_t, kind):
    """S'_t = decay_t(S): S (B, H, K, V); g_t (B, H) or (B, H, K)."""
    if kind is None:
        return S
    e = xp.exp(g_t)
    return S * (e[..., None, None] if kind == "head" else e[..., :, None])  # (B, H, K, V)


def _mv(S, x):
    """S (…, K, V) times x (…, V) → (…, K)."""
    return (S @ x[..., :, None])[..., 0]


def _tv(S, y):
    """Sᵀ (…, V, K) times y (…, K) → (…, V)."""
    return (y[..., None, :] @ S)[..., 0, :]


def recurrence_forward(variant: str, q, k, v, g=None, beta=None, *, scale=None, initial_state=None):
    """(o [B, T, H, V], final_state [B, H, K, V], states [T + 1, B, H, K, V]) of ``variant``."""
    xp = array_namespace(q)
    decay, delta = VARIANTS[variant]
    B, T, H, K = q.shape
    V = v.shape[-1]
    s = K ** -0.5 if scale is None else scale
    S = xp.zeros((B, H, K, V), dtype=q.dtype) if initial_state is None else initial_state  # (B, H, K, V)
    states, outs = [S], []
    for t in range(T):
        Sp = _decay(xp, S, None if g is None else g[:, t], decay)  # (B, H, K, V)
        kt, vt = k[:, t], v[:, t]  # (B, H, K), (B, H, V)
        if delta:
            u = vt - _tv(Sp, kt)  # (B, H, V)
            bu = beta[:, t][..., None] * u if beta.ndim == 3 else beta[:, t] * u  # (B, H, V)
            S = Sp + kt[..., :, None] * bu[..., None, :]  # (B, H, K, V)
        else:
            S = Sp + kt[..., :, None] * vt[..., None, :]  # (B, H, K, V)
        states.append(S)
        outs.append(_tv(S, s * q[:, t]))  # (B, H, V)
    return xp.stack(outs, axis=1), S, states


def recurrence_gradients(variant: str, q, k, v, g=None, beta=None, *, scale=None, initial_state=None,
                         grad_o=None, grad_final_state=None) -> dict:
    """dL/dq, dk, dv (and dg, dbeta, dinitial_state where they apply) and dL/dS_t per step (``S``,
    [B, T, H, K, V]) for L driven by ``grad_o`` (dL/do) and ``grad_final_state``; the step order of the module's
    docstring, t = T … 1."""
    xp = array_namespace(q)
    decay, delta = VARIANTS[variant]
    B, T, H, K = q.shape
    s = K ** -0.5 if scale is None else scale
    _, final, states = recurrence_forward(variant, q, k, v, g, beta, scale=scale, initial_state=initial_state)
    G = xp.zeros_like(final) if grad_final_state is None else grad_final_state  # (B, H, K, V)
    dq, dk, dv, dg, db, dS = ([None] * T for _ in range(6))
    for t in range(T - 1, -1, -1):
        kt, vt = k[:, t], v[:, t]  # (B, H, K), (B, H, V)
        if grad_o is not None:
            G = G + (s * q[:, t])[..., :, None] * grad_o[:, t][..., None, :]  # (B, H, K, V)
            dq[t] = s * _mv(states[t + 1], grad_o[:, t])  # (B, H, K)
        else:
            dq[t] = xp.zeros_like(q[:, t])
        dS[t] = G
        Sp = _decay(xp, states[t], None if g is None else g[:, t], decay)  # (B, H, K, V)
        if delta:
            u = vt - _tv(Sp, kt)  # (B, H, V)
            per_head = beta.ndim == 3
            b_t = beta[:, t][..., None] if per_head else beta[:, t]  # (B, H, 1) or (B, H, V)
            Gk = _tv(G, kt)  # (B, H, V)
            db[t] = xp.sum(Gk * u, axis=-1) if per_head else Gk * u  # (B, H) or (B, H, V)
            du = b_t * Gk  # (B, H, V)
            dv[t] = du
            dk[t] = _mv(G, b_t * u) - _mv(Sp, du)  # (B, H, K)
            dSp = G - kt[..., :, None] * du[..., None, :]  # (B, H, K, V)
        else:
            dk[t] = _mv(G, vt)  # (B, H, K)
            dv[t] = _tv(G, kt)  # (B, H, V)
            dSp = G
        if decay is not None:
            prod = dSp * Sp  # (B, H, K, V)
            dg[t] = xp.sum(prod, axis=(-2, -1)) if decay == "head" else xp.sum(prod, axis=-1)
        G = _decay(xp, dSp, None if g is None else g[:, t], decay)  # dL/dS_{t−1}
    out = {"q": xp.stack(dq, axis=1), "k": xp.stack(dk, axis=1), "v": xp.stack(dv, axis=1),
           "S": xp.stack(dS, axis=1)}
    if decay is not None:
        out["g"] = xp.stack(dg, axis=1)
    if delta:
        out["beta"] = xp.stack(db, axis=1)
    if initial_state is not None:
        out["initial_state"] = G
    return out


__all__ = ["VARIANTS", "recurrence_forward", "recurrence_gradients"]

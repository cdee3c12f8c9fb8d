"""Matrix-state recurrences (linear attention, gated linear attention, the delta rule and its gated forms): the
forward pass and the BPTT, derived by hand. No autodiff.

Per sequence and value head the state is a matrix S_t (K × V). Every variant is one step of two parts:

    S'_t = decay_t(S_{t−1})                       none; e^{g_t} S (one g per head); diag(e^{g_t}) S (one per key)
    S_t  = S'_t + k_t v_tᵀ                        linear_attention, gla_head, gla
    S_t  = S'_t + k_t (β_t ⊙ u_t)ᵀ,  u_t = v_t − S'_tᵀ k_t     delta_rule, gated_delta_rule, kda
                                                  (= (I − β k kᵀ) S' + β k vᵀ for one β per head)
    o_t  = S_tᵀ (s q_t)

(gated_delta_rule: e^{g_t}(I − β kkᵀ) S_{t−1} + β k vᵀ, the scalar decay commuting with the correction; kda:
(I − β kkᵀ) diag(e^{g_t}) S_{t−1} + β k vᵀ, the decay first.) With ``use_qk_l2norm`` q and k are first
x̂ = x / r, r = √(Σx² + ε). Value head j reads key head j // (HV/H).

The backward pass, t = T … 1 within each sequence, with G = dL/dS_t (from dL/dfinal_state at its last step):

    G    += s q_t do_tᵀ ;   dq_t = s S_t do_t                       (the output)
    u     = v_t − S'_tᵀ k_t ;  dβ_t = (Gᵀ k_t) ⊙ u (summed over V for one β per head)
    du    = β_t ⊙ (Gᵀ k_t) ;  dv_t = du ;  dk_t = G (β_t ⊙ u) − S'_t du ;  dS' = G − k_t duᵀ   (delta)
    dk_t  = G v_t ;  dv_t = Gᵀ k_t ;  dS' = G                                                (no delta)
    dg_t  = Σ dS' ⊙ S'_t (over K and V per head, over V per key) ;  G ← decay_t(dS')          (the carry)

dL/dinitial_state is the last G of each sequence. Then dq, dk are summed over each group of value heads, and
through the norm: dx = (dx̂ − x̂ (x̂·dx̂)) / r. Packed sequences (cu_seqlens) each start from their own state and
carry nothing across a boundary; the padding after the last one has zero output and exactly zero gradient.

Memory: the forward pass keeps the state every c = ⌈√L⌉ steps of a sequence of L; the backward pass recomputes
the c states of one block at a time from its checkpoint: O(√L) states held, for one more forward pass.
"""

from __future__ import annotations

import math

from contract import NonFiniteGradientError, all_finite, first_nonfinite_step
from contract.checks import quiet_errors
from contract.recurrence import INPUTS, L2NORM_EPS, VARIANTS, RecurrenceProblem, check_recurrence_inputs
from manual.bptt import detached


def _mv(S, x):
    """S (…, K, V) times x (…, V) → (…, K)."""
    return (S @ x[..., :, None])[..., 0]


def _tv(S, y):
    """Sᵀ (…, V, K) times y (…, K) → (…, V)."""
    return (y[..., None, :] @ S)[..., 0, :]


def _factors(xp, p: RecurrenceProblem, x: dict) -> dict:
    """A span's inputs with what every step multiplies by computed once: ``e`` = e^{g} shaped to scale S's rows
    ((B, L, HV, 1, 1) per head, (B, L, HV, K, 1) per key; None without a decay), ``b`` = β shaped to scale u
    ((B, L, HV, 1) or (B, L, HV, V)), ``sq`` = s q."""
    e = None if not p.decay else xp.exp(x["g"])[..., None, None] if p.decay == "head" else xp.exp(x["g"])[..., None]
    b = None if not p.delta else x["beta"] if p.beta_per_channel else x["beta"][..., None]
    return {**x, "e": e, "b": b, "sq": p.scale * x["q"]}


def _step(p: RecurrenceProblem, x: dict, t: int, S) -> tuple:
    """(S'_t, u_t, S_t) from S_{t−1}: the decay, then the update (u_t None without the delta rule)."""
    Sp = S if x["e"] is None else S * x["e"][:, t]  # (B, HV, K, V)
    kt = x["k"][:, t]  # (B, HV, K)
    if not p.delta:
        return Sp, None, Sp + kt[..., :, None] * x["v"][:, t][..., None, :]  # (B, HV, K, V)
    u = x["v"][:, t] - _tv(Sp, kt)  # (B, HV, V)
    return Sp, u, Sp + kt[..., :, None] * (x["b"][:, t] * u)[..., None, :]  # (B, HV, K, V)


def _step_backward(xp, p: RecurrenceProblem, x: dict, t: int, Sp, u, S_t, G, do, out: dict):
    """dL/dS_{t−1} from G = dL/dS_t (less the output's share, added here); step t's gradients into ``out``.
    ``Sp``, ``u``, ``S_t``: the step's S'_t, u_t and S_t from the forward pass."""
    kt = x["k"][:, t]  # (B, HV, K)
    if do is not None:
        G = G + x["sq"][:, t][..., :, None] * do[:, t][..., None, :]  # (B, HV, K, V)
        out["q"][t] = p.scale * _mv(S_t, do[:, t])  # (B, HV, K)
    else:
        out["q"][t] = xp.zeros_like(kt)  # (B, HV, K)
    if out["S"] is not None:
        out["S"][t] = G  # (B, HV, K, V)
    if p.delta:
        b_t = x["b"][:, t]  # (B, HV, 1) or (B, HV, V)
        Gk = _tv(G, kt)  # Gᵀk  (B, HV, V)
        out["beta"][t] = Gk * u if p.beta_per_channel else xp.sum(Gk * u, axis=-1)  # (B, HV, V) or (B, HV)
        du = b_t * Gk  # (B, HV, V)
        out["v"][t] = du  # (B, HV, V)
        out["k"][t] = _mv(G, b_t * u) - _mv(Sp, du)  # (B, HV, K)
        dSp = G - kt[..., :, None] * du[..., None, :]  # (B, HV, K, V)
    else:
        out["k"][t] = _mv(G, x["v"][:, t])  # (B, HV, K)
        out["v"][t] = _tv(G, kt)  # (B, HV, V)
        dSp = G  # (B, HV, K, V)
    if x["e"] is None:
        return dSp  # dL/dS_{t−1}
    prod = dSp * Sp  # (B, HV, K, V)
    out["g"][t] = xp.sum(prod, axis=(-2, -1)) if p.decay == "head" else xp.sum(prod, axis=-1)  # (B, HV[, K])
    return dSp * x["e"][:, t]  # dL/dS_{t−1}  (B, HV, K, V)


def _span_gradients(xp, p: RecurrenceProblem, x: dict, S0, G, do, per_step: bool) -> tuple[dict, object]:
    """({name: [dL/d of step t]}, dL/dS0) of one sequence (or all B unpacked rows), its state checkpointed."""
    x = _factors(xp, p, x)
    L = x["k"].shape[1]
    c = math.isqrt(L - 1) + 1  # ⌈√L⌉
    checkpoints, S = [S0], S0
    for t in range((L - 1) // c * c):  # the state before every block's first step
        S = _step(p, x, t, S)[2]
        if (t + 1) % c == 0:
            checkpoints.append(S)
    out = {n: [None] * L for n in ("q", "k", "v", "g", "beta")}
    out["S"] = [None] * L if per_step else None
    for t0 in reversed(range(0, L, c)):
        steps, S = [], checkpoints[t0 // c]  # the block's (S'_t, u_t, S_t), recomputed
        for t in range(t0, min(L, t0 + c)):
            steps.append(_step(p, x, t, S))
            S = steps[-1][2]
        for t in reversed(range(t0, min(L, t0 + c))):
            G = _step_backward(xp, p, x, t, *steps[t - t0], G, do, out)
    return {n: xp.stack(a, axis=1) for n, a in out.items() if a is not None and a[0] is not None}, G


def _to_value_heads(xp, a, groups: int):
    """(B, T, H, K) → (B, T, H·groups, K): value head j reads key head j // groups."""
    if groups == 1:
        return a
    B, T, H, K = a.shape
    return xp.reshape(xp.broadcast_to(a[:, :, :, None, :], (B, T, H, groups, K)), (B, T, H * groups, K))


def _to_key_heads(xp, da, groups: int):
    """(B, T, HV, K) → (B, T, HV/groups, K): each group's sum (the backward of ``_to_value_heads``)."""
    if groups == 1:
        return da
    B, T, HV, K = da.shape
    return xp.sum(xp.reshape(da, (B, T, HV // groups, groups, K)), axis=3)


def _l2norm(xp, a):
    """(a / r, r), r = √(Σa² + ε) over the last axis."""
    r = xp.sqrt(xp.sum(a * a, axis=-1, keepdims=True) + L2NORM_EPS)  # (…, 1)
    return a / r, r


def _prepared(xp, p: RecurrenceProblem, q, k) -> tuple:
    """(q̂ and k̂ on the value heads, {"q": (q̂, r), "k": (k̂, r)} when normalised)."""
    norms = {"q": _l2norm(xp, q), "k": _l2norm(xp, k)} if p.use_qk_l2norm else {}
    q, k = (norms[n][0] if norms else a for n, a in (("q", q), ("k", k)))
    return _to_value_heads(xp, q, p.groups), _to_value_heads(xp, k, p.groups), norms


def _spans(xp, p: RecurrenceProblem, arrays: dict, initial_state):
    """(rows, {name: the span's slice}, its S0) per sequence: rows index initial_state and final_state."""
    for i, (bos, eos) in enumerate(p.spans):
        rows = slice(i, i + 1) if p.packed else slice(None)
        x = {n: None if a is None else a[:, bos:eos] for n, a in arrays.items()}
        S0 = xp.zeros((x["k"].shape[0], p.HV, p.K, p.V), dtype=p.dtype, device=p.device) \
            if initial_state is None else initial_state[rows]  # (B or 1, HV, K, V)
        yield bos, rows, x, S0


def _padded(xp, p: RecurrenceProblem, pieces: list):
    """The spans' pieces along T, and zeros for the padding after the last sequence."""
    pad = p.T - p.spans[-1][1]
    if pad:
        last = pieces[-1]
        pieces = [*pieces, xp.zeros((last.shape[0], pad, *last.shape[2:]), dtype=p.dtype, device=p.device)]
    return pieces[0] if len(pieces) == 1 else xp.concat(pieces, axis=1)


def _overflow(xp, p: RecurrenceProblem, x: dict, S0, bos: int, grads: dict) -> NonFiniteGradientError:
    """The error for a sequence whose results are not finite from finite inputs: the first step whose state S_t
    overflowed in the forward pass, else the first step, in the backward pass's order, of the first gradient
    that did."""
    S = S0
    for t in range(x["k"].shape[1]):
        S = _step(p, x, t, S)[2]
        if not all_finite(xp, S):
            return NonFiniteGradientError("S (forward pass)", bos + t + 1)
    for n, a in grads.items():
        bad = first_nonfinite_step(xp, xp.permute_dims(a, (1, 0, *range(2, a.ndim))), backward=True)
        if bad is not None or not all_finite(xp, a):
            return NonFiniteGradientError(n, None if bad is None else bos + bad)
    return NonFiniteGradientError("initial_state", None)


def _detached(*arrays) -> tuple:
    """The arrays, a torch tensor that requires grad detached: manual never builds a graph."""
    return tuple(detached(a) for a in arrays)


def recurrence_forward(variant: str, q, k, v, g=None, beta=None, *, scale=None, initial_state=None,
                       cu_seqlens=None, use_qk_l2norm: bool = False) -> tuple:
    """(o [B, T, HV, V], final_state [N, HV, K, V]) of ``variant`` (shapes: ``contract.recurrence``); the
    padding after the last packed sequence has o = 0. ``NonFiniteGradientError`` names the step where the
    state overflows (a g > 0 grows it)."""
    q, k, v, g, beta, initial_state = _detached(q, k, v, g, beta, initial_state)
    p = check_recurrence_inputs(variant, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm, upstream=False)
    xp = p.xp
    qv, kv, _ = _prepared(xp, p, q, k)
    outs, finals = [], []
    with quiet_errors(xp):
        for bos, _, x, S in _spans(xp, p, {"q": qv, "k": kv, "v": v, "g": g, "beta": beta}, initial_state):
            x, o, S0 = _factors(xp, p, x), [], S
            for t in range(x["k"].shape[1]):
                S = _step(p, x, t, S)[2]  # (B or 1, HV, K, V)
                o.append(_tv(S, x["sq"][:, t]))  # (B or 1, HV, V)
            outs.append(xp.stack(o, axis=1))
            finals.append(S)
            if not (all_finite(xp, S) and all_finite(xp, outs[-1])):
                raise _overflow(xp, p, x, S0, bos, {})
    return _padded(xp, p, outs), finals[0] if len(finals) == 1 else xp.concat(finals, axis=0)


def recurrence_gradients(variant: str, q, k, v, g=None, beta=None, *, scale=None, initial_state=None,
                         cu_seqlens=None, use_qk_l2norm: bool = False, grad_o=None, grad_final_state=None,
                         wrt=None, per_step: bool = True) -> dict:
    """dL/d of every input named in ``wrt`` (all given by default: q, k, v, g, beta, initial_state, in their own
    shapes) and, with ``per_step``, ``S``: dL/dS_t per step [B, T, HV, K, V] (zero on padding), for L driven by
    ``grad_o`` (dL/do) and ``grad_final_state``. Arrays of NumPy or torch (CPU or CUDA), as the inputs.
    ``NonFiniteGradientError`` names the step where the forward or the backward pass overflows."""
    q, k, v, g, beta, initial_state, grad_o, grad_final_state = _detached(q, k, v, g, beta, initial_state, grad_o,
                                                                         grad_final_state)
    p = check_recurrence_inputs(variant, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm, grad_o=grad_o,
                                grad_final_state=grad_final_state, wrt=wrt, per_step=per_step)
    xp = p.xp
    qv, kv, norms = _prepared(xp, p, q, k)
    pieces, dinit = {}, []
    arrays = {"q": qv, "k": kv, "v": v, "g": g, "beta": beta, "do": grad_o}
    with quiet_errors(xp):
        for bos, rows, x, S0 in _spans(xp, p, arrays, initial_state):
            G = xp.zeros(S0.shape, dtype=p.dtype, device=p.device) if grad_final_state is None \
                else grad_final_state[rows]  # (B or 1, HV, K, V)
            grads, dS0 = _span_gradients(xp, p, x, S0, G, x["do"], per_step)
            if not (all_finite(xp, dS0) and all(all_finite(xp, a) for a in grads.values())):
                raise _overflow(xp, p, _factors(xp, p, x), S0, bos, grads)
            for n, a in grads.items():
                pieces.setdefault(n, []).append(a)
            dinit.append(dS0)
        out = {n: _padded(xp, p, a) for n, a in pieces.items()}
        for n in ("q", "k"):  # the group's sum, then the norm's backward
            out[n] = _to_key_heads(xp, out[n], p.groups)  # (B, T, H, K)
            if n in norms:
                y, r = norms[n]
                out[n] = (out[n] - y * xp.sum(y * out[n], axis=-1, keepdims=True)) / r  # (B, T, H, K)
        out["initial_state"] = dinit[0] if len(dinit) == 1 else xp.concat(dinit, axis=0)  # (N, HV, K, V)
    return {n: out[n] for n in (*p.wrt, *(("S",) if per_step else ())) if n in out}


__all__ = ["INPUTS", "VARIANTS", "recurrence_forward", "recurrence_gradients"]

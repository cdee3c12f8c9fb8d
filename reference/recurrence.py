"""The matrix-state recurrences in torch, each step written in its own matrix form ((I − β k kᵀ) S + β k vᵀ,
diag(e^g) S …), unrolled over each sequence, differentiated by torch.autograd: the truth ``manual.recurrence``
is judged by. Grouped value heads by ``repeat_interleave``, the L2 norm as written, packed sequences one by one."""

from __future__ import annotations

import torch

from contract.recurrence import INPUTS, L2NORM_EPS, check_recurrence_inputs


def _correction(S, k, v, beta):
    """(I − β k kᵀ) S + β k vᵀ, β one per head (B, H) as a matrix factor, or per value channel (B, H, V) on the
    columns: S (B, H, K, V), k (B, H, K), v (B, H, V)."""
    kkT = k[..., :, None] * k[..., None, :]  # (B, H, K, K)
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    if beta.dim() == 2:
        return (eye - beta[..., None, None] * kkT) @ S + beta[..., None, None] * (k[..., :, None] * v[..., None, :])
    return S - (kkT @ S) * beta[..., None, :] + k[..., :, None] * (beta * v)[..., None, :]


def _outer(k, v):
    """k vᵀ: (B, H, K), (B, H, V) → (B, H, K, V)."""
    return k[..., :, None] * v[..., None, :]


# variant → S_t from (S_{t−1} (B, H, K, V), k (B, H, K), v (B, H, V), g (B, H) or (B, H, K), β (B, H) or (B, H, V))
STEP = {
    "linear_attention": lambda S, k, v, g, beta: S + _outer(k, v),
    "gla_head": lambda S, k, v, g, beta: torch.exp(g)[..., None, None] * S + _outer(k, v),
    "gla": lambda S, k, v, g, beta: torch.diag_embed(torch.exp(g)) @ S + _outer(k, v),
    "delta_rule": lambda S, k, v, g, beta: _correction(S, k, v, beta),
    # e^g (I − β k kᵀ) S + β k vᵀ: the decayed state corrected
    "gated_delta_rule": lambda S, k, v, g, beta: _correction(torch.exp(g)[..., None, None] * S, k, v, beta),
    # (I − β k kᵀ) diag(e^g) S + β k vᵀ
    "kda": lambda S, k, v, g, beta: _correction(torch.diag_embed(torch.exp(g)) @ S, k, v, beta),
}


def _leaves(args: dict) -> dict:
    return {n: torch.as_tensor(a).detach().clone().requires_grad_(True) for n, a in args.items() if a is not None}


def _unrolled(variant: str, x: dict, p, per_step: bool = True) -> tuple:
    """(o [B, T, HV, V], final_state [N, HV, K, V], [S_t per position, None on padding]) from leaves ``x``."""
    q, k = x["q"], x["k"]
    if p.use_qk_l2norm:
        q, k = (a / torch.sqrt((a * a).sum(-1, keepdim=True) + L2NORM_EPS) for a in (q, k))
    q, k = (a.repeat_interleave(p.groups, dim=2) for a in (q, k))  # (B, T, HV, K)
    states, outs, finals = [None] * p.T, [], []
    for i, (bos, eos) in enumerate(p.spans):
        rows = slice(i, i + 1) if p.packed else slice(None)
        S = x["initial_state"][rows] if "initial_state" in x else \
            torch.zeros(q.shape[0], p.HV, p.K, p.V, dtype=q.dtype, device=q.device)
        for t in range(bos, eos):
            S = STEP[variant](S, k[:, t], x["v"][:, t], x["g"][:, t] if "g" in x else None,
                      x["beta"][:, t] if "beta" in x else None)
            if per_step and S.requires_grad:
                S.retain_grad()
            states[t] = S
            outs.append((p.scale * q[:, t])[..., None, :] @ S)  # (B, HV, 1, V)
        finals.append(S)
    o = torch.cat(outs, dim=-2).permute(0, 2, 1, 3)  # (B, T', HV, V)
    o = torch.cat([o, o.new_zeros(o.shape[0], p.T - o.shape[1], *o.shape[2:])], dim=1)  # the padding's zeros
    return o, torch.cat(finals, dim=0), states


def recurrence_forward(variant: str, q, k, v, g=None, beta=None, *, scale=None, initial_state=None,
                       cu_seqlens=None, use_qk_l2norm=False) -> tuple:
    """(o, final_state) in torch, float64 or the inputs' dtype."""
    args = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "initial_state": initial_state}
    p = check_recurrence_inputs(variant, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm, upstream=False)
    with torch.no_grad():
        o, final, _ = _unrolled(variant, {n: torch.as_tensor(a) for n, a in args.items() if a is not None}, p)
    return o, final


def unrolled_recurrence_gradients(variant: str, q, k, v, g=None, beta=None, *, scale=None, initial_state=None,
                                  cu_seqlens=None, use_qk_l2norm=False, grad_o=None, grad_final_state=None,
                                  wrt=None, per_step=True) -> dict:
    """torch.autograd through the unrolled steps: the keys of ``manual.recurrence_gradients`` (``S`` per step,
    zero on padding, with ``per_step``), as torch tensors."""
    args = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "initial_state": initial_state}
    p = check_recurrence_inputs(variant, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm, grad_o=grad_o,
                                grad_final_state=grad_final_state, wrt=wrt, per_step=per_step)
    x = _leaves(args)
    o, final, states = _unrolled(variant, x, p, per_step)
    loss = 0.0
    if grad_o is not None:
        loss = loss + (o * torch.as_tensor(grad_o)).sum()
    if grad_final_state is not None:
        loss = loss + (final * torch.as_tensor(grad_final_state)).sum()
    loss.backward()
    out = {n: torch.zeros_like(x[n]) if x[n].grad is None else x[n].grad for n in INPUTS if n in p.wrt}
    if per_step:
        zero = torch.zeros(o.shape[0], p.HV, p.K, p.V, dtype=o.dtype, device=o.device)
        out["S"] = torch.stack([zero if s is None or s.grad is None else s.grad for s in states], dim=1)
    return out


__all__ = ["recurrence_forward", "unrolled_recurrence_gradients"]

"""The matrix-state recurrences in torch, each step written in its own matrix form ((I − β k kᵀ) S + β k vᵀ,
diag(e^g) S …), unrolled, differentiated by torch.autograd: the truth ``manual.recurrence`` is judged by."""

from __future__ import annotations

import torch


def _step(variant: str, S, k, v, g, beta):
    """S_t from S_{t−1} (B, H, K, V); k (B, H, K), v (B, H, V), g (B, H) or (B, H, K), beta (B, H) or (B, H, V)."""
    outer = k[..., :, None] * v[..., None, :]  # (B, H, K, V)
    if variant == "linear_attention":
        return S + outer
    if variant == "gla_head":
        return torch.exp(g)[..., None, None] * S + outer
    if variant == "gla":
        return torch.exp(g)[..., :, None] * S + outer
    if variant == "kda":
        S = torch.exp(g)[..., :, None] * S  # diag(e^g) S, then the delta correction
    kS = (k[..., None, :] @ S)[..., 0, :]  # kᵀ S (B, H, V)
    if beta.dim() == 2:  # (I − β k kᵀ) S + β k vᵀ
        new = S - beta[..., None, None] * k[..., :, None] * kS[..., None, :] + beta[..., None, None] * outer
    else:  # β per value channel: column j of S takes β_j
        new = S - k[..., :, None] * (beta * kS)[..., None, :] + k[..., :, None] * (beta * v)[..., None, :]
    if variant == "gated_delta_rule":  # e^g (I − β k kᵀ) S + β k vᵀ
        new = torch.exp(g)[..., None, None] * (new - (beta[..., None, None] * outer if beta.dim() == 2 else
                                                      k[..., :, None] * (beta * v)[..., None, :])) + \
            (beta[..., None, None] * outer if beta.dim() == 2 else k[..., :, None] * (beta * v)[..., None, :])
    return new


def unrolled_recurrence_gradients(variant: str, q, k, v, g=None, beta=None, *, scale=None, initial_state=None,
                                  grad_o=None, grad_final_state=None) -> dict:
    """torch.autograd through the unrolled steps: the same keys as ``manual.recurrence_gradients``."""
    inputs = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "initial_state": initial_state}
    leaves = {n: torch.as_tensor(a).detach().clone().requires_grad_(True) for n, a in inputs.items() if a is not None}
    B, T, H, K = leaves["q"].shape
    V = leaves["v"].shape[-1]
    s = K ** -0.5 if scale is None else scale
    S = leaves.get("initial_state", torch.zeros(B, H, K, V, dtype=leaves["q"].dtype))
    states, outs = [], []
    for t in range(T):
        S = _step(variant, S, leaves["k"][:, t], leaves["v"][:, t], leaves["g"][:, t] if "g" in leaves else None,
                  leaves["beta"][:, t] if "beta" in leaves else None)
        S.retain_grad()
        states.append(S)
        outs.append((s * leaves["q"][:, t])[..., None, :] @ S)
    o = torch.cat(outs, dim=-2).permute(0, 2, 1, 3)  # (B, T, H, V)
    loss = 0.0
    if grad_o is not None:
        loss = loss + (o * torch.as_tensor(grad_o)).sum()
    if grad_final_state is not None:
        loss = loss + (S * torch.as_tensor(grad_final_state)).sum()
    loss.backward()
    out = {n: torch.zeros_like(leaf) if leaf.grad is None else leaf.grad for n, leaf in leaves.items()}
    out["S"] = torch.stack([st.grad if st.grad is not None else torch.zeros_like(st) for st in states], dim=1)
    return out

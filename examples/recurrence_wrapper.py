"""A kernel with the public library's signature made a candidate for `bptt check`, `oracle.assert_gradients` and
the pytest plugin: the wrapper is `gated_delta_rule_gradients` below, a few lines around torch.autograd
(`gradients_through`, which any kernel's wrapper can share).

`chunk_gated_delta_rule` stands in for your kernel: the library's signature (q, k, v, g, beta, scale,
initial_state, output_final_state, cu_seqlens, use_qk_l2norm_in_kernel) → (o, final_state), differentiable by
torch.autograd. Here it is a plain step-by-step loop; yours is a Triton or CUDA kernel with its own backward.

    cd examples && bptt check --candidate recurrence_wrapper:gated_delta_rule_gradients \
        -k "recurrence and gated_delta_rule and float32"
"""

from __future__ import annotations

import torch

import oracle


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=True,
                           cu_seqlens=None, use_qk_l2norm_in_kernel=False):
    """S_t = e^{g_t}(I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ, o_t = S_tᵀ (s q_t): (o, final_state)."""
    B, T, H, K = q.shape
    HV, V = v.shape[2:]
    if use_qk_l2norm_in_kernel:
        q, k = (x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6) for x in (q, k))
    q = (K ** -0.5 if scale is None else scale) * q.repeat_interleave(HV // H, dim=2)  # value head j: key head j // G
    k = k.repeat_interleave(HV // H, dim=2)
    bounds = [(b, 0, T) for b in range(B)] if cu_seqlens is None else \
        [(0, int(a), int(e)) for a, e in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist(), strict=True)]
    o, finals = torch.zeros(B, T, HV, V, dtype=q.dtype), []
    for n, (b, bos, eos) in enumerate(bounds):
        S = torch.zeros(HV, K, V, dtype=q.dtype) if initial_state is None else initial_state[n]
        for t in range(bos, eos):
            beta_t = beta[b, t] if beta.dim() == 4 else beta[b, t, :, None]  # (HV, V) or (HV, 1)
            S = torch.exp(g[b, t])[:, None, None] * S
            u = v[b, t] - (k[b, t, :, None, :] @ S)[:, 0]  # (HV, V)
            S = S + k[b, t, :, :, None] * (beta_t * u)[:, None, :]
            o[b, t] = (q[b, t, :, None, :] @ S)[:, 0]  # (HV, V); the padding's o stays 0
        finals.append(S)
    return o, torch.stack(finals) if output_final_state else None


def gradients_through(forward, given: dict, wrt, grad_o, grad_final_state) -> dict:
    """The gradients of the inputs named in ``wrt`` through ``forward(x) -> (o, final_state)``, driven by the case's
    upstream gradients: the lines every kernel's wrapper has (``given``: name → array or None)."""
    x = {n: None if a is None else torch.as_tensor(a).clone().requires_grad_(n in wrt) for n, a in given.items()}
    o, final = forward(x)
    driven = [(y, torch.as_tensor(d)) for y, d in ((o, grad_o), (final, grad_final_state)) if d is not None]
    grads = torch.autograd.grad([y for y, _ in driven], [x[n] for n in wrt], [d for _, d in driven],
                                allow_unused=True)  # q reaches only o: driven by the final state alone, dq = 0
    return {n: torch.zeros_like(x[n]) if d is None else d for n, d in zip(wrt, grads, strict=True)}


def gated_delta_rule_gradients(variant, q, k, v, g, beta, *, scale, initial_state, cu_seqlens, use_qk_l2norm,
                               grad_o, grad_final_state, wrt):
    """manual.recurrence_gradients' signature around the kernel."""
    if variant != "gated_delta_rule":
        raise oracle.Unsupported(f"a gated delta rule kernel, not {variant}")
    cu = None if cu_seqlens is None else torch.as_tensor(cu_seqlens)
    return gradients_through(
        lambda x: chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], scale=scale,
                                         initial_state=x["initial_state"], output_final_state=True, cu_seqlens=cu,
                                         use_qk_l2norm_in_kernel=use_qk_l2norm),
        {"q": q, "k": k, "v": v, "g": g, "beta": beta, "initial_state": initial_state}, wrt, grad_o,
        grad_final_state)

"""Mistakes in the matrix-state recurrences' BPTT, as candidates with manual.recurrence_gradients' signature.

``correct`` is an independent NumPy implementation written apart from manual/: one sequence and one value head at
a time, each step on plain K × V matrices, every state kept. Each mutant is it with one mistake that kernels
for this family have shipped, or that the derivation invites.
"""

from functools import partial

import numpy as np

DECAY = {"gla_head": "head", "gated_delta_rule": "head", "gla": "key", "kda": "key"}
DELTA = ("delta_rule", "gated_delta_rule", "kda")
EPS = 1e-6  # the L2 norm's, inside the root


def _norm(x):
    r = np.sqrt((x * x).sum(-1, keepdims=True) + EPS)
    return x / r, r


def _spans(B, T, cu_seqlens):
    """(batch row, bos, eos) per sequence."""
    if cu_seqlens is None:
        return [(b, 0, T) for b in range(B)]
    cu = [int(c) for c in cu_seqlens]
    return [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]


def recurrence_bptt(variant, q, k, v, g=None, beta=None, *, scale=None, initial_state=None, cu_seqlens=None,
                    use_qk_l2norm=False, grad_o=None, grad_final_state=None, wrt=None, mistake=None):
    decay, delta = DECAY.get(variant), variant in DELTA
    B, T, H, K = q.shape
    HV, V = v.shape[2:]
    s = K ** -0.5 if scale is None or mistake == "scale_ignored" else scale
    if mistake == "crash_without_initial_grad" and initial_state is not None and wrt is not None and \
            "initial_state" not in wrt:
        raise RuntimeError("a kernel's backward that assumes dh0 is wanted whenever h0 is given")
    (qn, rq), (kn, rk) = (_norm(q), _norm(k)) if use_qk_l2norm else ((q, None), (k, None))
    per_channel = beta is not None and beta.ndim == 4
    d = {n: np.zeros(a.shape) for n, a in (("q", qn), ("k", kn), ("v", v), ("g", g), ("beta", beta)) if a is not None}
    dS_steps = np.zeros((B, T, HV, K, V))
    spans = _spans(B, T, cu_seqlens)
    dh0 = np.zeros((len(spans), HV, K, V))
    for hv in range(HV):
        h = hv // (HV // H)
        carried = None
        for n, (b, bos, eos) in enumerate(spans):
            S = np.zeros((K, V)) if initial_state is None else initial_state[n, hv].copy()
            if mistake == "carry_across_boundary" and carried is not None:
                S = carried
            fwd = []  # (S_{t-1}, S', u, S_t) per step
            for t in range(bos, eos):
                kt, vt = kn[b, t, h], v[b, t, hv]
                e = None if decay is None else np.exp(g[b, t, hv])
                if decay == "head":
                    Sp = e * S
                elif decay == "key":
                    Sp = e[:, None] * S
                else:
                    Sp = S
                if mistake == "gate_after_correction" and decay == "key":  # kda's decay after the correction
                    Sp = S
                if delta:
                    bt = beta[b, t, hv]
                    u = vt - Sp.T @ kt
                    new = Sp + np.outer(kt, bt * u)
                    if mistake == "gate_after_correction" and decay == "key":
                        new = e[:, None] * new
                else:
                    u, new = None, Sp + np.outer(kt, vt)
                fwd.append((S, Sp, u, new))
                S = new
            carried = S
            Gm = np.zeros((K, V)) if grad_final_state is None else grad_final_state[n, hv].copy()
            for t in range(eos - 1, bos - 1, -1):
                S_prev, Sp, u, S_t = fwd[t - bos]
                kt, vt = kn[b, t, h], v[b, t, hv]
                if grad_o is not None:
                    Gm = Gm + np.outer(s * qn[b, t, h], grad_o[b, t, hv])
                    d["q"][b, t, h] += (s * s if mistake == "scale_twice" else s) * S_t @ grad_o[b, t, hv]
                dS_steps[b, t, hv] = Gm
                if mistake == "gate_after_correction" and decay == "key":  # undo the late gate first
                    e = np.exp(g[b, t, hv])
                    d["g"][b, t, hv] += (Gm * S_t).sum(-1)  # the gradient of the mutant's own model
                    Gm = e[:, None] * Gm
                if delta:
                    bt = beta[b, t, hv]
                    Gk = Gm.T @ kt
                    factor = vt if mistake == "dbeta_without_residual" else u
                    d["beta"][b, t, hv] += Gk * factor if per_channel else (Gk * factor).sum()
                    du = bt * Gk
                    d["v"][b, t, hv] += du
                    d["k"][b, t, h] += Gm @ (bt * u) - Sp @ du
                    dSp = Gm - np.outer(kt, du)
                else:
                    d["k"][b, t, h] += Gm @ vt
                    d["v"][b, t, hv] += Gm.T @ kt
                    dSp = Gm
                if decay == "head":
                    e = np.exp(g[b, t, hv])
                    d["g"][b, t, hv] += (dSp * Sp).sum()
                    Gm = e * dSp
                elif decay == "key" and mistake != "gate_after_correction":
                    e = np.exp(g[b, t, hv])
                    d["g"][b, t, hv] += (dSp * Sp).sum(0 if mistake == "gate_grad_wrong_axis" else -1)
                    Gm = e[:, None] * dSp
                else:
                    Gm = dSp
            if mistake == "initial_state_ungated" and decay == "head":
                Gm = Gm / np.exp(g[b, bos, hv])
            dh0[n, hv] = Gm
    if use_qk_l2norm:
        for n, x, r in (("q", qn, rq), ("k", kn, rk)):
            dy = d[n]
            d[n] = dy / r if mistake == "l2norm_without_projection" else (dy - x * (x * dy).sum(-1, keepdims=True)) / r
    if cu_seqlens is not None and mistake == "padding_written":  # a stale buffer past the last sequence
        end = int(cu_seqlens[-1])
        for n in ("q", "k", "v"):
            d[n][:, end:] = d[n][:, end - 1:end]
    if mistake == "dbeta_unwritten_past_32" and per_channel:
        d["beta"][..., 32:] = 1e30
    out = {n: d[n] for n in ("q", "k", "v", "g", "beta") if n in d}
    if initial_state is not None:
        out["initial_state"] = dh0
    out["S"] = dS_steps
    return out


correct = recurrence_bptt
MISTAKES = ("initial_state_ungated", "gate_after_correction", "dbeta_without_residual", "gate_grad_wrong_axis",
            "carry_across_boundary", "padding_written", "l2norm_without_projection", "scale_twice",
            "crash_without_initial_grad", "dbeta_unwritten_past_32", "scale_ignored")
for _m in MISTAKES:
    globals()[_m] = partial(recurrence_bptt, mistake=_m)

"""The read-out and the loss on top of the hidden states: the seed model's output layer.

    o_t = h_t Whyᵀ + by  at the S steps the topology reads (S = 1 for many-to-one, T otherwise)
    y_t = fy(o_t), L = Σ_t L_t  (manual.losses gives fy, L and dL/do together)

Backward: dL/dWhy = Σ_t do_tᵀ h_t, dL/dby = Σ_t Σ_b do_t, and the direct term
each step's loss sends into the recurrence, ∂L_t/∂h_t = do_t Why.
"""

from __future__ import annotations

from contract import Problem
from manual.losses import LOSSES


def _read(p: Problem, hs):
    """Hidden states the loss reads: (S, B, H)."""
    return hs[p.T :, ...] if p.topology == "many-to-one" else hs[1:, ...]


def read_logits(p: Problem, params, hs, target) -> tuple:
    """o = h Whyᵀ + by for the steps read (S, B, O), and their targets (S, B, O) or (S, B)."""
    xp = p.xp
    hr = _read(p, hs)  # (S, B, H)
    S = hr.shape[0]
    o = xp.reshape(xp.reshape(hr, (S * p.B, p.H)) @ params["Why"].T + params["by"], (S, p.B, p.O))
    y = target if p.topology != "many-to-one" else target[None, ...]  # (S, B, O) or (S, B)
    return o, y


def read_output(p: Problem, params, hs, target):
    """o = h Whyᵀ + by for the steps read, then (y, L, dL/do), each (S, B, O) but L."""
    return LOSSES[p.loss](*read_logits(p, params, hs, target))


def readout_backward(p: Problem, params, hs, do) -> tuple:
    """(dL/dWhy (O, H), dL/dby (O,), ∂L_t/∂h_t (S, B, H)) from dL/do (S, B, O)."""
    xp, B, H = p.xp, p.B, p.H
    S = do.shape[0]
    do2 = xp.reshape(do, (S * B, p.O))  # (S·B, O)
    hr2 = xp.reshape(_read(p, hs), (S * B, H))  # (S·B, H)
    dWhy = do2.T @ hr2  # dL/dWhy = Σ_t do_tᵀ h_t                     (O, H)
    dby = xp.sum(do2, axis=0)  # dL/dby = Σ_t Σ_b do_t                 (O,)
    direct = xp.reshape(do2 @ params["Why"], (S, B, H))  # ∂L_t/∂h_t = do_t Why       (S, B, H)
    return dWhy, dby, direct

"""The minLSTM cell: one direction of one layer, forward and back (the shared loop: ``manual.cells.minimal``).

Forward, batch rows (B, ·), from the input projection of every step (``manual.stack``), gates f, i and h in
``weight_ih``'s rows, no recurrent weights; the forget and input gates normalised to sum to one:

    f_t = σ(a_f,t)   i_t = σ(a_i,t)   h̃_t = g(a_h,t)   f′_t = f_t / (f_t + i_t)   i′_t = i_t / (f_t + i_t)
    h_t = f′_t ⊙ h_{t−1} + i′_t ⊙ h̃_t

that is A_t = f′_t, B_t = i′_t ⊙ h̃_t. Backward, with s = f + i, dL/dA_t = dL/dh_t ⊙ h_{t−1}, dL/dB_t = dL/dh_t:

    dL/df_t = (dL/dA_t − dL/dB_t ⊙ h̃_t) ⊙ i_t / s_t²          (∂f′/∂f = i/s², ∂i′/∂f = −i/s²: the normalisation)
    dL/di_t = (dL/dB_t ⊙ h̃_t − dL/dA_t) ⊙ f_t / s_t²          (∂f′/∂i = −f/s², ∂i′/∂i = f/s²)
    dL/da_f,t = dL/df_t ⊙ f_t(1 − f_t)     dL/da_i,t = dL/di_t ⊙ i_t(1 − i_t)
    dL/da_h,t = dL/dB_t ⊙ i′_t ⊙ g′(a_h,t)
    dL/dh_{t−1} += dL/dh_t ⊙ f′_t
"""

from __future__ import annotations

from manual.cells import minimal

KINDS = ("gate_f", "gate_i", "gate_h")


def coefficients(xp, k, xproj):
    """(A, B, what the backward reuses) of every step, from the pre-activations xproj (T, B, G·H)."""
    H = xproj.shape[-1] // 3
    f, i = minimal.sigmoid(xp, k, xproj[..., :H]), minimal.sigmoid(xp, k, xproj[..., H:2 * H])  # (T, B, H)
    s = f + i  # (T, B, H)
    ht, dg = minimal.positive(xp, k, xproj[..., 2 * H:])  # (T, B, H)
    return f / s, i / s * ht, (f, i, s, ht, dg)


def _gate_grads(xp, dB, h_prev, extra):
    f, i, s, ht, dg = extra
    mixed = dB * (h_prev - ht) / (s * s)  # (dL/dA − dL/dB ⊙ h̃) / s²                              (T, B, H)
    return mixed * i * (f * (1 - f)), -mixed * f * (i * (1 - i)), dB * (i / s) * dg  # da_f, da_i, da_h


forward, backward, scan = minimal.cell(coefficients, _gate_grads, KINDS)  # the interface of manual.cells

"""The minGRU cell: one direction of one layer, forward and back (the shared loop: ``manual.cells.minimal``).

Forward, batch rows (B, ·), from the input projection of every step (``manual.stack``), gates z and h in
``weight_ih``'s rows, no recurrent weights:

    z_t = σ(a_z,t)        h̃_t = g(a_h,t)        h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t

that is A_t = 1 − z_t, B_t = z_t ⊙ h̃_t. Backward, with dL/dh_t the total (output and future):

    dL/da_z,t = dL/dh_t ⊙ (h̃_t − h_{t−1}) ⊙ z_t(1 − z_t)       (= (dL/dB_t ⊙ h̃_t − dL/dA_t) ⊙ σ′)
    dL/da_h,t = dL/dh_t ⊙ z_t ⊙ g′(a_h,t)
    dL/dh_{t−1} += dL/dh_t ⊙ (1 − z_t)
"""

from __future__ import annotations

from manual.cells import minimal

KINDS = ("gate_z", "gate_h")


def coefficients(xp, k, xproj):
    """(A, B, what the backward reuses) of every step, from the pre-activations xproj (T, B, G·H)."""
    H = xproj.shape[-1] // 2
    z = minimal.sigmoid(xp, k, xproj[..., :H])  # z_t = σ(a_z)                                   (T, B, H)
    ht, dg = minimal.positive(xp, k, xproj[..., H:])  # h̃_t = g(a_h) > 0, g′(a_h)                (T, B, H)
    return 1 - z, z * ht, (z, ht, dg)


def _gate_grads(xp, dB, h_prev, extra):
    z, ht, dg = extra
    return dB * (ht - h_prev) * (z * (1 - z)), dB * z * dg  # dL/da_z, dL/da_h                     (T, B, H)


forward, backward, scan = minimal.cell(coefficients, _gate_grads, KINDS)  # the interface of manual.cells

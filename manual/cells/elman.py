"""The Elman cell (torch.nn.RNN's): one step forward, one step back.

Forward, batch rows (B, ·), with the input projection of every step made
before the loop (``manual.stack``):

    z_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh        h_t = act(z_t)

Backward, given dL/dh_t, everything that reaches h_t (the layer's output
gradient at t plus what comes back from step t+1):

    dL/dz_t     = dL/dh_t ⊙ act'(z_t)
    dL/dh_{t-1} += dL/dz_t W_hh                       (through the future)
    dW_ih = Σ_t dz_tᵀ x_t    dW_hh = Σ_t dz_tᵀ h_{t-1}    db_ih = db_hh = Σ_t Σ_b dz_t
    dL/dx_t = dz_t W_ih

A padded step of a shorter sequence (``lengths``) leaves the state as it
was: h_t = m_t ⊙ act(z_t) + (1 − m_t) ⊙ h_{t-1}, m_t ∈ {0, 1} per row, so

    dL/dz_t = m_t ⊙ dL/dh_t ⊙ act'(z_t)      dL/dh_{t-1} += (1 − m_t) ⊙ dL/dh_t

The sums over steps are one matrix product each, after the loop (``manual.stack``).
"""

from __future__ import annotations

GATES = 1  # rows of W_ih per hidden unit: z alone


def step(k, z_t, h_prev, W_hhT, h_t, m_t=None) -> None:
    """z_t += h_{t-1} W_hhᵀ; h_t = act(z_t) (kept at h_{t-1} where m_t = 0). In place."""
    k.mm_add(z_t, h_prev, W_hhT)  # z_t = x_t W_ihᵀ + b + h_{t-1} W_hhᵀ
    k.act_into(z_t, h_t)  # h_t = act(z_t)
    if m_t is not None:  # a padded step carries the state through unchanged
        h_t[...] = m_t * h_t + (1 - m_t) * h_prev


def step_back(k, dh_t, dact_t, dz_t, m_t=None) -> None:
    """dL/dz_t = dL/dh_t ⊙ act'(z_t) (zero where m_t = 0). In place."""
    k.mul_into(dh_t, dact_t, dz_t)
    if m_t is not None:
        dz_t *= m_t


def into_previous(k, dz_t, W_hh, dh_prev, first: bool, dh_t=None, m_t=None) -> None:
    """dL/dh_{t-1} (+)= dL/dz_t W_hh (+ the carried (1 − m_t) ⊙ dL/dh_t); ``first``: overwrite, not add."""
    if first:
        k.mm_into(dz_t, W_hh, dh_prev)
    else:
        k.mm_add(dh_prev, dz_t, W_hh)
    if m_t is not None:
        dh_prev += (1 - m_t) * dh_t

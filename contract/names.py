"""Vocabulary of the project: the names every side agrees on."""

from __future__ import annotations

ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")
LOSSES = ("mse", "cross_entropy", "bce")
TOPOLOGIES = ("many-to-one", "many-to-many", "one-to-many")

PARAM_NAMES = ("Wxh", "Whh", "bh", "Why", "by")
# The gradient set (docs/design.md): parameters, inputs, then the per-step tensors.
STEP_NAMES = ("h", "z")  # (T, B, H): total dL/dh_t and dL/dz_t
GRAD_NAMES = PARAM_NAMES + ("h0", "x") + STEP_NAMES


class NonFiniteGradientError(FloatingPointError):
    """BPTT produced a NaN or Inf from finite inputs (overflow).

    ``tensor`` names the quantity and ``t`` the first time step (1-based, the
    seed's numbering) where it stopped being finite, or None for a gradient
    that is a sum over steps (dWhh, …) and overflowed only there. Nothing is
    clipped.
    """

    def __init__(self, tensor: str, t: int | None):
        self.tensor, self.t = tensor, t
        where = (f"stops being finite at time step t={t} (1-based): the recurrence overflowed" if t is not None
                 else "is not finite: its sum over time steps and batch rows overflowed")
        super().__init__(
            f"{tensor} {where}. Nothing was clipped. Remedy: use smaller weights or inputs, a shorter "
            "sequence, or float64."
        )

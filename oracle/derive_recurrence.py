"""`bptt derive --recurrence VARIANT`: a matrix-state recurrence's backward pass, step by step, with real numbers.

A tiny case (one sequence, one head, K = V = 2, an initial state, driven by dL/do at every step and by
dL/dfinal_state): each per-step gradient of the derivation (docs/recurrences.md), from
``manual.recurrence_gradients``, beside autograd's through the unrolled steps (``reference.recurrence``, which
keeps every S_t), t = T … 1, then dL/dinitial_state.
"""

from __future__ import annotations

import numpy as np

import manual
from contract.recurrence import VARIANTS
from oracle.cases.recurrence import RecurrenceCase, run_recurrence
from oracle.derive import Sheet
from oracle.judge import tolerance

DECAY_TEXT = {None: "", "head": "e^(g_{t}) ", "key": "diag(e^(g_{t})) "}  # what S'_t and the carry multiply by


def _carried(decay: str | None, t: int) -> str:
    """dL/dS_t's share from step t + 1: the decay of step t + 1 applied to dS'_{t+1}."""
    return DECAY_TEXT[decay].replace("{t}", str(t + 1)) + f"dS'_{t + 1}"


def _equations(variant: str) -> list[tuple[str, str]]:
    """(gradient, its line) per step, in the order the backward computes them (one β per head)."""
    decay, delta = VARIANTS[variant]
    out = [("S", "dL/dS_{t} = {carry} + s q_{t} do_{t}ᵀ"), ("q", "dL/dq_{t} = s S_{t} do_{t}")]
    if delta:
        out += [("beta", "dL/dβ_{t} = Σ_v (dS_{t}ᵀ k_{t}) ⊙ u_{t},   "
                 "u_{t} = v_{t} − S'_{t}ᵀ k_{t}"),
                ("v", "dL/dv_{t} = β_{t} ⊙ (dS_{t}ᵀ k_{t})"),
                ("k", "dL/dk_{t} = dS_{t} (β_{t} ⊙ u_{t}) − S'_{t} dL/dv_{t}")]
        dsp = "dS'_{t} = dS_{t} − k_{t} dL/dv_{t}ᵀ"
    else:
        out += [("k", "dL/dk_{t} = dS_{t} v_{t}"), ("v", "dL/dv_{t} = dS_{t}ᵀ k_{t}")]
        dsp = "dS'_{t} = dS_{t}"
    if decay:
        where = "over K and V" if decay == "head" else "over V"
        out.append(("g", f"dL/dg_{{t}} = Σ dS'_{{t}} ⊙ S'_{{t}} ({where}),   {dsp},   S'_{{t}} = "
                         f"{DECAY_TEXT[decay]}S_{{t0}}"))
    return out


def recurrence_lines(variant: str, steps: int = 3, seed: int = 0) -> tuple[list[str], bool]:
    """The variant's backward as printable lines, and whether every quantity agreed with autograd."""
    from reference.recurrence import unrolled_recurrence_gradients

    decay, delta = VARIANTS[variant]
    case = RecurrenceCase(variant, steps, 1, 1, 2, 2, initial="grad", upstream="both")
    inputs = case.inputs()
    rng = np.random.default_rng(seed)  # the seed picks the numbers; the case fixes the shapes
    inputs = RecurrenceCase.map_arrays(lambda a: rng.normal(0, 0.7, a.shape), inputs)
    if decay:
        inputs["g"] = -np.abs(inputs["g"])  # a decay: e^g in (0, 1]
    if delta:
        inputs["beta"] = np.abs(inputs["beta"])
    mine = run_recurrence(manual.recurrence_gradients, inputs, None)
    auto = {k: v.numpy() for k, v in run_recurrence(unrolled_recurrence_gradients, inputs, None).items()}
    sheet = Sheet(tolerance("float64", steps, 4), [
        f"BPTT through {variant}: {steps} steps, one sequence, one head, K = V = 2, s = K^-1/2, an initial state, "
        f"driven by dL/do at every step and by dL/dfinal_state (seed {seed}).",
        "S_t is K × V; dS_t is dL/dS_t; ⊙ is element-wise; t counts from 1.", ""])
    for t in range(steps, 0, -1):
        sheet.out.append(f"t = {t}")
        for name, text in _equations(variant):
            line = text.replace("{carry}", "dL/dfinal_state" if t == steps else _carried(decay, t))
            line = line.replace("{t}", str(t)).replace("{t0}", str(t - 1))
            sheet.eq("  " + line, mine[name][0, t - 1], auto[name][0, t - 1])
    sheet.out.append("The initial state")
    sheet.eq(f"  dL/dinitial_state = {_carried(decay, 0)}", mine["initial_state"], auto["initial_state"])
    return sheet.out, sheet.ok


__all__ = ["recurrence_lines"]

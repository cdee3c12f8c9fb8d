"""`bptt derive --cell FILE`: one layer's backward pass, equation by equation, with real numbers.

FILE is a cell's file in manual/cells/; its equations are in its row of contract.cells.

A tiny module (one layer, B = 1, input 2, H = 2) driven by dL/doutput at
every step; each per-step quantity of the module contract's equations (docs/module-contract.md), computed by
``manual.module_gradients``, is set beside autograd's value of the same
quantity (``reference.unrolled_module_gradients`` keeps every step's h, c and
gate pre-activations), then the weight gradients, sums over the steps.
"""

from __future__ import annotations

import re

import numpy as np

import manual
from contract.cells import CELL_FILES
from oracle.cases.module import ModuleCase, run_module
from oracle.derive import Sheet
from oracle.judge import tolerance


def cell_lines(cell: str, steps: int = 3, seed: int = 0, activation: str = "") -> tuple[list[str], bool]:
    """The cell's backward as printable lines, and whether every quantity agreed with autograd."""
    from reference.module import unrolled_module_gradients

    row = CELL_FILES[cell]
    H = 4 if row.norms else 2  # a norm over two features is degenerate: v̂ = ±1 whatever v, its gradient ε's alone
    case = ModuleCase(row.mode, 1, False, False, True, steps, 1, 2, H, upstream="output", nonlinearity=activation)
    inputs = case.inputs()
    rng = np.random.default_rng(seed)  # the seed picks the numbers; the case fixes the shapes
    inputs["state_dict"] = {k: rng.normal(0, 0.7, v.shape) for k, v in inputs["state_dict"].items()}
    inputs["input"] = rng.normal(0, 1, inputs["input"].shape)
    inputs["grad_output"] = rng.normal(0, 1, inputs["grad_output"].shape)
    mine = run_module(manual.module_gradients, inputs)
    auto = run_module(unrolled_module_gradients, inputs)
    tol = tolerance("float64", steps, 8)
    act = f", act = {case.config.nonlinearity}" if len(row.nonlinearities) > 1 else ""
    sheet = Sheet(tol, [f"BPTT through one {row.mode} layer{act}: {steps} steps, B=1, input 2, H={H}, driven by "
                        f"dL/doutput at every step (seed {seed}).",
                        "⊙ is element-wise; t counts from 1; a is a gate's pre-activation (z a cell's without gates).",
                        ""])
    out, eq = sheet.out, sheet.eq

    for t in range(steps, 0, -1):
        out.append(f"t = {t}")
        for kind, text in row.equations:
            name = f"{kind}_l0"
            label = text.format(t=t, t1=t + 1, t0=t - 1)
            if t == steps:  # nothing comes back from the future at the last step: drop its term (c's, n's)
                label = label.split(" + ", 1)[0] if kind == "h" else re.sub(
                    rf"dL/d{kind}{t + 1} ⊙ \S+{t + 1} ([+−]) ", lambda m: "" if m.group(1) == "+" else "−", label)
            eq("  " + label, mine[name][t - 1], auto[name][t - 1])
    out.append("Totals over the steps")
    for param, text in row.totals:
        eq(f"  {text}", mine[f"{param}_l0"], auto[f"{param}_l0"])
    return out, sheet.ok

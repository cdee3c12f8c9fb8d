"""`bptt derive --cell lstm|gru`: each cell's backward pass, equation by equation, with real numbers.

A tiny module (one layer, B = 1, input 2, H = 2) driven by dL/doutput at
every step; each per-step quantity of the module contract's equations (docs/module-contract.md), computed by
``manual.module_gradients``, is set beside autograd's value of the same
quantity (``reference.unrolled_module_gradients`` keeps every step's h, c and
gate pre-activations), then the weight gradients, sums over the steps.
"""

from __future__ import annotations

import numpy as np

import manual
from oracle.cases.module import ModuleCase, run_module
from oracle.judge import tolerance

EQUATIONS = {  # per-step tensor kind → the equation that makes it (docs/module-contract.md)
    "lstm": [("h", "dL/dh{t} = dL/doutput{t} + dL/da{t1} W_hh          (through the future)"),
             ("c", "dL/dc{t} = dL/dc{t1} ⊙ f{t1} + dL/dh{t} ⊙ o{t} ⊙ (1 − tanh² c{t})"),
             ("gate_i", "dL/da_i{t} = dL/dc{t} ⊙ g{t} ⊙ i{t}(1 − i{t})"),
             ("gate_f", "dL/da_f{t} = dL/dc{t} ⊙ c{t0} ⊙ f{t}(1 − f{t})"),
             ("gate_g", "dL/da_g{t} = dL/dc{t} ⊙ i{t} ⊙ (1 − g{t}²)"),
             ("gate_o", "dL/da_o{t} = dL/dh{t} ⊙ tanh(c{t}) ⊙ o{t}(1 − o{t})")],
    "gru": [("h", "dL/dh{t} = dL/doutput{t} + dL/dh{t1} ⊙ z{t1} + (dL/da_r, dL/da_z, r ⊙ dL/da_n){t1} W_hh"),
            ("gate_n", "dL/da_n{t} = dL/dh{t} ⊙ (1 − z{t}) ⊙ (1 − n{t}²)"),
            ("gate_z", "dL/da_z{t} = dL/dh{t} ⊙ (h{t0} − n{t}) ⊙ z{t}(1 − z{t})"),
            ("gate_r", "dL/da_r{t} = dL/da_n{t} ⊙ (h{t0} W_hnᵀ + b_hn) ⊙ r{t}(1 − r{t})")],
}
MODE = {"lstm": "LSTM", "gru": "GRU"}


def cell_lines(cell: str, steps: int = 3, seed: int = 0) -> tuple[list[str], bool]:
    """The cell's backward as printable lines, and whether every quantity agreed with autograd."""
    from reference.module import unrolled_module_gradients

    case = ModuleCase(MODE[cell], 1, False, False, True, steps, 1, 2, 2, upstream="output")
    inputs = case.inputs()
    rng = np.random.default_rng(seed)  # the seed picks the numbers; the case fixes the shapes
    inputs["state_dict"] = {k: rng.normal(0, 0.7, v.shape) for k, v in inputs["state_dict"].items()}
    inputs["input"] = rng.normal(0, 1, inputs["input"].shape)
    inputs["grad_output"] = rng.normal(0, 1, inputs["grad_output"].shape)
    mine = run_module(manual.module_gradients, inputs)
    auto = run_module(unrolled_module_gradients, inputs)
    tol = tolerance("float64", steps, 8)
    fmt = lambda a: np.array2string(np.asarray(a), precision=6, separator=", ",  # noqa: E731
                                    max_line_width=10_000).replace("\n", "")
    out = [f"BPTT through one {MODE[cell]} layer: {steps} steps, B=1, input 2, H=2, driven by dL/doutput at every "
           f"step (seed {seed}).", "⊙ is element-wise; t counts from 1; a is a gate's pre-activation.", ""]
    ok = True

    def eq(label: str, got, want):
        nonlocal ok
        diff = float(np.abs(np.asarray(got) - np.asarray(want)).max())
        good = diff <= tol * max(float(np.abs(want).max()), np.finfo(float).tiny)
        ok &= good
        out.extend([label, f"    manual   {fmt(got)}", f"    autograd {fmt(want)}",
                    f"    |diff|   {diff:.1e}{'' if good else '   MISMATCH'}"])

    for t in range(steps, 0, -1):
        out.append(f"t = {t}")
        for kind, text in EQUATIONS[cell]:
            name = f"{kind}_l0"
            label = text.format(t=t, t1=t + 1, t0=t - 1)
            if t == steps:  # nothing comes back from the future at the last step
                drop = f"dL/dc{t + 1} ⊙ f{t + 1} + "
                label = label.split(" + dL/d", 1)[0] if kind == "h" else label.replace(drop, "")
            eq("  " + label, mine[name][t - 1], auto[name][t - 1])
    out.append("Totals over the steps")
    eq("  dW_hh = Σ_t dL/da_tᵀ h_{t−1}" + ("   (the n rows pair with r ⊙ ah_n's h)" if cell == "gru" else ""),
       mine["weight_hh_l0"], auto["weight_hh_l0"])
    eq("  dW_ih = Σ_t dL/da_tᵀ x_t", mine["weight_ih_l0"], auto["weight_ih_l0"])
    eq("  db_hh" + (" = Σ_t dL/da_t (= db_ih)" if cell == "lstm" else " = Σ_t (dL/da_r, dL/da_z, r ⊙ dL/da_n)"),
       mine["bias_hh_l0"], auto["bias_hh_l0"])
    if cell == "gru":
        eq("  db_ih = Σ_t (dL/da_r, dL/da_z, dL/da_n)   (b_hn's and b_in's differ)", mine["bias_ih_l0"],
           auto["bias_ih_l0"])
    return out, ok

"""`bptt derive`: the seed notes' derivation with real numbers, equation by equation.

Forward propagation first (h_t, y, L), then BPTT from t = T down to 1, then the total.

For 2 steps the equations are computed by ``manual.seed.two_step`` and for 4
by ``manual.seed.four_step`` (the notes written out line by line); for any
other N by ``manual.gradients``. Each is set beside autograd's value of the
same quantity (per-step contributions through untied weights) and the
difference.
"""

from __future__ import annotations

import numpy as np

import manual
import reference
from oracle.judge import tolerance

B, D, H, O = 1, 2, 2, 1  # tiny: every number fits on a line


class Sheet:
    """The learner's view: each equation's line, manual's numbers and autograd's beneath it, their largest
    difference, and MISMATCH past ``tol`` of the value's scale (``ok`` false then)."""

    def __init__(self, tol: float, head: list[str]):
        self.tol, self.out, self.ok = tol, list(head), True

    @staticmethod
    def fmt(a) -> str:
        return np.array2string(np.asarray(a), precision=6, separator=", ", max_line_width=10_000).replace("\n", "")

    def eq(self, label: str, got, want) -> None:
        diff = float(np.abs(np.asarray(got) - np.asarray(want)).max())
        good = diff <= self.tol * max(float(np.abs(want).max()), np.finfo(float).tiny)
        self.ok &= good
        self.out.extend([label, f"    manual   {self.fmt(got)}", f"    autograd {self.fmt(want)}",
                         f"    |diff|   {diff:.1e}{'' if good else '   MISMATCH'}"])


def tiny_model(steps: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"params": {"Wxh": rng.normal(0, 0.8, (H, D)), "Whh": rng.normal(0, 0.6, (H, H)),
                       "bh": rng.normal(0, 0.2, H), "Why": rng.normal(0, 0.8, (O, H)), "by": rng.normal(0, 0.2, O)},
            "x": rng.normal(0, 1, (steps, B, D)), "h0": rng.normal(0, 0.5, (B, H)), "target": rng.normal(0, 1, (B, O))}


def _manual_terms(m: dict, steps: int, activation: str) -> dict:
    """The notes' quantities, from the literal seed functions (2 and 4 steps) or the general loop."""
    P, x, h0, y = m["params"], m["x"], m["h0"], m["target"]
    if steps == 2 and activation == "tanh":
        return manual.seed.two_step(P, x[0], x[1], h0, y)
    if steps == 4:
        return manual.seed.four_step(P, *x, h0, y, activation=activation)
    g = manual.gradients(P, x, y, h0=h0, activation=activation)
    fwd = manual.forward(P, x, y, h0=h0, activation=activation)
    hs = np.concatenate([h0[None], fwd["h"]])
    out = {f"h{t}": fwd["h"][t - 1] for t in range(1, steps + 1)}
    out.update({"y": fwd["y"][0], "L": fwd["loss"]})
    out.update({f"dL/dh{t}": g["h"][t - 1] for t in range(1, steps + 1)})
    out.update({f"dL/dWhh (t={t})": g["z"][t - 1].T @ hs[t - 1] for t in range(1, steps + 1)})
    out["dL/dWhh"] = g["Whh"]
    return out


def lines(steps: int = 2, activation: str = "tanh", seed: int = 0) -> tuple[list[str], bool]:
    """The derivation as printable lines, and whether every equation agreed with autograd."""
    m = tiny_model(steps, seed)
    kw = {"h0": m["h0"], "activation": activation, "loss": "mse", "topology": "many-to-one"}
    auto = reference.gradients(m["params"], m["x"], m["target"], **kw)
    fwd = reference.forward(m["params"], m["x"], m["target"], **kw)
    per_step = reference.per_step_gradients(m["params"], m["x"], m["target"], **kw)
    mine = _manual_terms(m, steps, activation)
    tol = tolerance("float64", steps, max(B, D, H, O))
    dact = "(1 − h{t}²)" if activation == "tanh" else "act'(z{t})"
    sheet = Sheet(tol, [f"BPTT of the seed notes: {steps} steps, many-to-one, act = {activation}, y = Why h{steps} + "
                        f"by, L = mean((y − y_true)²); B={B} D={D} H={H} O={O}, seed {seed}.",
                        "Shorthand made precise: ⊙ is element-wise, ᵀ a transpose; rows are batch entries.", ""])
    out, eq = sheet.out, sheet.eq

    out.append("Forward propagation")
    for t in range(1, steps + 1):
        eq(f"  h{t} = {activation}(x{t} Wxhᵀ + h{t - 1} Whhᵀ + bh)", mine[f"h{t}"], fwd["h"][t - 1])
    eq(f"  y = h{steps} Whyᵀ + by", mine["y"], fwd["y"][0])
    eq("  L = mean((y − y_true)²)", mine["L"], fwd["loss"])
    out.append("BPTT")
    for t in range(steps, 0, -1):
        out.append(f"T = {t}")
        if t == steps:
            eq(f"  dL/dh{t} = dL/dy ⋅ Why", mine[f"dL/dh{t}"], auto["h"][t - 1])
        else:
            eq(f"  dL/dh{t} = (dL/dh{t + 1} ⊙ {dact.format(t=t + 1)}) Whh     (through the future)",
               mine[f"dL/dh{t}"], auto["h"][t - 1])
        eq(f"  dL/dWhh (t = {t}) = (dL/dh{t} ⊙ {dact.format(t=t)})ᵀ h{t - 1}",
           mine[f"dL/dWhh (t={t})"], per_step["Whh"][t - 1])
    out.append("Total")
    eq("  dL/dWhh = " + " + ".join(f"dL/dWhh (t = {t})" for t in range(1, steps + 1)), mine["dL/dWhh"], auto["Whh"])
    return out, sheet.ok

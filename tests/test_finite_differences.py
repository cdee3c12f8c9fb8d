"""A check that owes nothing to torch: central finite differences of manual's own loss, float64."""

import itertools

import numpy as np
import pytest

import manual
from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from oracle.cases import Case

CASES = [Case(top, act, loss, T=3, B=2, D=2, H=3, O=2)
         for top, act, loss in itertools.product(TOPOLOGIES, ACTIVATIONS, LOSSES)]
EPS_FD = 1e-6
# Central differences: truncation error ε²/6·|L'''| ≈ 1e-13 for these O(1)
# derivatives, rounding error ≈ eps·|L|/ε ≈ 2e-16·|L|/1e-6 = 2e-10·|L|.
# 1e-7 relative to the tensor's scale (and |L|) leaves 500× over the sum,
# while a wrong derivative is off by order 1.
FD_TOL = 1e-7


def numeric(case: Case, inputs: dict, which: str) -> np.ndarray:
    """dL/d(which) by central differences; ``which`` is a param name, 'x' or 'h0'."""
    def loss(inp):
        return float(manual.forward(inp["params"], inp["x"], inp["target"], h0=inp["h0"], **case.kwargs)["loss"])

    base = inputs["params"][which] if which in inputs["params"] else inputs[which]
    grad = np.zeros_like(base)  # same shape as the tensor
    for idx in np.ndindex(base.shape):
        vals = []
        for sign in (1, -1):
            a = base.copy()
            a[idx] += sign * EPS_FD
            inp = {**inputs, "params": dict(inputs["params"])}
            if which in inp["params"]:
                inp["params"][which] = a
            else:
                inp[which] = a
            vals.append(loss(inp))
        grad[idx] = (vals[0] - vals[1]) / (2 * EPS_FD)
    return grad


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_manual_equals_central_differences(case):
    inputs = case.inputs()
    g = manual.gradients(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **case.kwargs)
    L = float(manual.forward(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"],
                             **case.kwargs)["loss"])
    for name in ("Wxh", "Whh", "bh", "Why", "by", "h0", "x"):
        fd = numeric(case, inputs, name)
        scale = max(np.abs(fd).max(), abs(L), 1.0)
        err = np.abs(g[name] - fd).max() / scale
        assert err <= FD_TOL, f"{case.name}: {name} differs from finite differences by {err:.2e} (tol {FD_TOL})"

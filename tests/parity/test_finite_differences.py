"""A check that owes nothing to torch: central finite differences of manual's own loss, float64."""

import itertools

import pytest

import manual
from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from oracle.cases.seed import Case
from oracle.fd import fd_errors
from oracle.policy import FD_TOL

CASES = [Case(top, act, loss, T=3, B=2, D=2, H=3, O=2)
         for top, act, loss in itertools.product(TOPOLOGIES, ACTIVATIONS, LOSSES)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_manual_equals_central_differences(case):
    inputs = case.inputs()
    g = manual.gradients(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **case.kwargs)
    for name, err in fd_errors(g, inputs, case.kwargs).items():
        assert err <= FD_TOL, f"{case.name}: {name} differs from finite differences by {err:.2e} (tol {FD_TOL})"


def test_finite_differences_catch_a_wrong_gradient():
    case = CASES[0]
    inputs = case.inputs()
    g = manual.gradients(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **case.kwargs)
    g["Whh"] = g["Whh"].T
    assert fd_errors(g, inputs, case.kwargs)["Whh"] > 1e-3



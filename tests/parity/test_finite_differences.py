"""A check that owes nothing to torch: central finite differences of manual's own loss, float64."""

import itertools

import pytest

import manual
from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from oracle.cases.module import ModuleCase, run_module
from oracle.cases.seed import Case
from oracle.fd import fd_errors, module_fd_errors
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


# ------------------------------------------------------------------ the module contract, owing nothing to torch

MODULE_CASES = [ModuleCase(mode, L, bi, bf, bias, T=3, B=2, I=2, H=2, lengths=ln, upstream=up)
                for mode, L, bi, bf, bias, ln, up in [
                    ("RNN_TANH", 1, False, False, True, "full", "both"),
                    ("RNN_TANH", 2, True, False, True, "mixed", "both"),
                    ("RNN_RELU", 2, True, True, False, "mixed", "output"),
                    ("RNN_TANH", 3, False, True, True, "mixed", "hn"),
                    ("RNN_RELU", 1, True, False, True, "full", "hn")]]
MODULE_CASES += [ModuleCase("LSTM", 2, True, False, True, T=3, B=2, I=2, H=3, lengths="mixed", upstream="both",
                            proj_size=2),
                 ModuleCase("LSTM", 1, False, True, False, T=3, B=2, I=2, H=2, lengths="full", upstream="hn"),
                 ModuleCase("GRU", 2, True, True, True, T=3, B=2, I=2, H=2, lengths="mixed", upstream="both"),
                 ModuleCase("GRU", 2, True, False, True, T=3, B=2, I=2, H=2, lengths="mixed", upstream="output",
                            linear_before_reset=False),
                 ModuleCase("INDRNN", 2, True, True, True, T=3, B=2, I=2, H=3, lengths="mixed", upstream="both"),
                 ModuleCase("INDRNN", 1, False, False, False, T=4, B=2, I=2, H=2, lengths="full", upstream="hn",
                            nonlinearity="relu")]


@pytest.mark.parametrize("case", MODULE_CASES, ids=lambda c: c.name)
def test_module_equals_central_differences(case):
    inputs = case.inputs()
    g = run_module(manual.module_gradients, inputs)
    for name, err in module_fd_errors(g, inputs).items():
        assert err <= FD_TOL, f"{case.name}: {name} differs from finite differences by {err:.2e} (tol {FD_TOL})"


def test_module_finite_differences_catch_a_dropped_bias_hh():
    case = MODULE_CASES[1]
    inputs = case.inputs()
    g = run_module(manual.module_gradients, inputs)
    g["bias_hh_l1_reverse"] = 0 * g["bias_hh_l1_reverse"]
    assert module_fd_errors(g, inputs)["bias_hh_l1_reverse"] > 1e-3

"""The module contract, owing nothing to torch: central finite differences of Σ grad_output ⊙ output + Σ grad_hn ⊙ h_n
(+ Σ grad_cn ⊙ c_n), every cell and form, float64. Module code has one backend: these run once."""

import pytest

import manual
from oracle.cases.module import ModuleCase, run_module
from oracle.fd import module_fd_errors
from oracle.policy import FD_TOL

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



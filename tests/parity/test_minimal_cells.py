"""minGRU and minLSTM: the sequential loop and the log-space parallel scan the paper trains with are equal in
float64 (manual's both ways, on NumPy and torch, and the reference's scan), and manual's hand-derived backward of
the loop equals autograd through the scan. (Their parity with the unrolled step under autograd, per tensor, gate
and step, is the module matrix's: tests/parity/test_module.py.)"""

import numpy as np
import pytest
import torch

import manual
from manual.cells import mingru, minlstm
from manual.kernels import kernels
from oracle.cases.module import ModuleCase, run_module
from oracle.judge import compare
from reference.scan import scan_forward, scan_gradients

CELL_FILES = {"MINGRU": mingru, "MINLSTM": minlstm}


def positive_inputs(mode: str, seed: int = 0, T: int = 17) -> dict:
    """A one-layer case's inputs with h0 > 0, as the scan's logarithm needs."""
    inputs = ModuleCase(mode, 1, False, False, True, T, 3, 5, 8).inputs()
    rng = np.random.default_rng(seed)
    return {**inputs, "hx": np.abs(inputs["hx"]) + 0.1, "grad_output": rng.normal(size=inputs["grad_output"].shape)}


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("mode", list(CELL_FILES))
def test_the_scan_equals_the_loop(mode, lib):
    i = positive_inputs(mode)
    xproj = i["input"] @ i["state_dict"]["weight_ih_l0"].T + i["state_dict"]["bias_ih_l0"]  # (T, B, G·H)
    h0 = i["hx"][0]
    if lib == "torch":
        xproj, h0 = torch.from_numpy(xproj), torch.from_numpy(h0)
    from array_api_compat import array_namespace

    xp = array_namespace(xproj)
    loop = CELL_FILES[mode].forward(xp, kernels(xp, "tanh"), None, xproj, h0, None, {}, None)[0]
    assert np.allclose(np.asarray(CELL_FILES[mode].scan(xp, xproj, h0)), np.asarray(loop), rtol=1e-12, atol=0)


@pytest.mark.parametrize("mode", list(CELL_FILES))
def test_the_reference_scan_equals_manuals_loop(mode):
    i = positive_inputs(mode, seed=1)
    out = manual.module_forward(i["config"], i["state_dict"], i["input"], i["hx"])["output"]
    assert np.allclose(scan_forward(i["config"], i["state_dict"], i["input"], i["hx"]), out, rtol=1e-12, atol=0)


@pytest.mark.parametrize("mode", list(CELL_FILES))
def test_the_loops_backward_equals_autograd_through_the_scan(mode):
    i = positive_inputs(mode, seed=2)
    got = run_module(manual.module_gradients, i)
    want = scan_gradients(i["config"], i["state_dict"], i["input"], i["hx"], grad_output=i["grad_output"],
                          grad_hn=i["grad_hn"])
    report = compare({n: got[n] for n in want}, want, title=f"{mode}: manual's loop vs autograd through the scan")
    assert report.ok, str(report)


def test_the_scan_is_refused_for_what_it_does_not_cover():
    i = ModuleCase("MINGRU", 2, False, False, True, 3, 2, 3, 4).inputs()
    with pytest.raises(ValueError, match="one layer, one direction"):
        scan_gradients(i["config"], i["state_dict"], i["input"], np.abs(i["hx"]), grad_output=i["grad_output"])

"""The sLSTM's stabiliser: it changes no gradient a loss on h sees, it keeps the gradients finite where the
unstabilised form overflows, and what it does change (the final states c_n, n_n, m_n) is differentiated through
its max exactly. (The sLSTM's parity with the unrolled step under autograd, per tensor, gate and step, is the module
matrix's: tests/parity/test_module.py.)"""

from functools import partial

import numpy as np
import pytest

import manual
from oracle.cases.module import ModuleCase, module_truth, run_module
from oracle.judge import compare
from reference.module import _slstm, unrolled_module_gradients

FORMS = [dict(num_heads=1), dict(num_heads=2), dict(forget_gate="exp")]
# what the two forms share: every parameter, the input, the initial states and the gates; not c and n per step,
# which the stabilised form holds scaled by e^{−m_t}
SHARED = ("weight_", "bias_", "input", "hx", "cx", "nx", "mx", "gate_", "h_l")


def slstm_inputs(form: dict, upstream: str = "output", **edits) -> dict:
    """A two-layer bidirectional sLSTM case's inputs with mixed lengths; ``edits``: state_dict entries scaled or
    shifted by name prefix ("bias_ih": value added to the i gate's rows)."""
    case = ModuleCase("SLSTM", 2, True, False, True, 6, 3, 3, 4, lengths="mixed", upstream=upstream, **form)
    inputs = case.inputs()
    for name, shift in edits.items():  # e.g. gate_i=40.0: every layer's i-gate bias moved by 40
        row = {"gate_i": 0, "gate_f": 1}[name]
        for k, v in inputs["state_dict"].items():
            if k.startswith("bias_ih"):
                v[row * 4:(row + 1) * 4] += shift
    return inputs


def shared(grads: dict) -> dict:
    return {k: v for k, v in grads.items() if k.startswith(SHARED)}


@pytest.mark.parametrize("form", FORMS, ids=str)
@pytest.mark.parametrize("upstream", ["output", "hnonly", "outhn"])
def test_the_stabiliser_changes_no_gradient_of_a_loss_on_h(form, upstream):
    """Autograd through the published (stabilised) form, through the unstabilised one (m ≡ 0, C and N carried
    whole), and manual (m held fixed) agree wherever both forms are finite."""
    i = slstm_inputs(form, upstream)
    stabilised = run_module(unrolled_module_gradients, i)
    plain = run_module(partial(unrolled_module_gradients, step=partial(_slstm, stabilise=False)), i)
    got = run_module(manual.module_gradients, i)
    for title, a in (("stabilised vs unstabilised, autograd", stabilised), ("manual vs unstabilised", got)):
        report = compare(shared(a), shared(plain), title=f"sLSTM {form}: {title}")
        assert report.ok, str(report)


@pytest.mark.parametrize("form", FORMS[::2], ids=str)
def test_the_stabiliser_keeps_finite_what_the_unstabilised_form_overflows(form):
    """With the input gate's pre-activation near 800, e^{ã_i} overflows float64: the unstabilised form's
    gradients are not finite, the stabilised form's are, and manual equals autograd through it."""
    i = slstm_inputs(form, "both", gate_i=800.0)
    with np.errstate(all="ignore"):
        plain = run_module(partial(unrolled_module_gradients, step=partial(_slstm, stabilise=False)), i)
    assert not all(np.isfinite(v).all() for v in plain.values())
    truth = module_truth(i)  # autograd through the stabilised form, with its sensitivity to the inputs' rounding:
    # ã_i ≈ 800 is itself known to 800·eps only, and i′ = exp(ã_i − m_t) carries that as a relative error
    assert all(np.isfinite(v).all() for v in truth.grads.values())
    report = compare(run_module(manual.module_gradients, i), truth.grads, sens=truth.sens, amp=truth.amp,
                     steps=truth.steps, size=truth.size, title=f"sLSTM {form}, ã_i ≈ 800")
    assert report.ok, str(report)


def test_a_tie_of_the_max_is_split_as_torchs_maximum_splits_it():
    """With the exponential forget gate, no input weights, no biases and h_0 = m_0 = 0, log f_1 + m_0 = 0 = ã_i at
    every unit of step 1: the max ties, and a loss on the final states sends half of g each way, as autograd
    through torch.maximum does."""
    i = slstm_inputs({"forget_gate": "exp"}, "both")
    i["state_dict"] = {k: 0 * v if k.startswith(("weight_ih", "bias")) else v for k, v in i["state_dict"].items()}
    i["hx"] = (0 * i["hx"][0], i["hx"][1], i["hx"][2], 0 * i["hx"][3])
    report = compare(run_module(manual.module_gradients, i), run_module(unrolled_module_gradients, i),
                     title="sLSTM at a tie of the stabiliser's max")
    assert report.ok, str(report)


@pytest.mark.parametrize("branch", [{"gate_f": 6.0, "gate_i": -6.0}, {"gate_i": 6.0, "gate_f": -6.0}],
                         ids=["forget-branch-wins", "input-branch-wins"])
@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_a_loss_on_the_final_states_is_differentiated_through_the_max(branch, forget_gate):
    """dL/dm_n alone (and with dL/dc_n, dL/dn_n): it reaches the gates, and m_0 when the forget branch wins at
    every step, along the max's winning branch; manual equals autograd through the max."""
    i = slstm_inputs({"forget_gate": forget_gate}, "both", **branch)
    rng = np.random.default_rng(3)
    for drive in (("grad_mn",), ("grad_cn", "grad_nn", "grad_mn")):
        j = {**i, "grad_output": None, "grad_hn": None, "grad_cn": None, "grad_nn": None, "grad_mn": None}
        j.update({k: rng.normal(size=i["grad_hn"].shape) for k in drive})
        got, want = run_module(manual.module_gradients, j), run_module(unrolled_module_gradients, j)
        report = compare(got, want, title=f"sLSTM {forget_gate}, {branch}, driven by {drive}")
        assert report.ok, str(report)
        winner = "gate_f" if branch["gate_f"] > 0 else "gate_i"
        assert np.abs(want[f"{winner}_l1"]).max() > 0  # the max's winning branch carries the gradient

"""Every tensor of the gradient set, every topology × activation × loss, against both references."""

import itertools

import pytest
from helpers import assert_grads_match, call

import manual
import reference
from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from oracle.cases.seed import Case
from oracle.groundtruth import truth

SIZES = [(T, B) for T in (1, 2, 4, 17) for B in (1, 3)]
CASES = [Case(top, act, loss, T, B, D=4, H=5, O=3)
         for top, act, loss, (T, B) in itertools.product(TOPOLOGIES, ACTIVATIONS, LOSSES, SIZES)]
NN_RNN_CASES = [c for c in CASES if c.activation in reference.NN_RNN_ACTIVATIONS]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_manual_equals_unrolled_autograd(case):
    inputs = case.inputs()
    want = truth(inputs, case.kwargs)
    assert_grads_match(call(manual.gradients, inputs, case.kwargs), want, dtype="float64",
                       where=case.name)


@pytest.mark.parametrize("case", NN_RNN_CASES, ids=lambda c: c.name)
def test_manual_equals_torch_nn_rnn(case):
    inputs = case.inputs()
    # the truth is nn.RNN's wherever it gives a tensor; the per-step h and z
    # (which nn.RNN does not expose) stay autograd's
    want = truth(inputs, case.kwargs)
    want.grads = {**want.grads, **call(reference.nn_rnn_gradients, inputs, case.kwargs)}
    assert_grads_match(call(manual.gradients, inputs, case.kwargs), want, dtype="float64",
                       where=f"nn.RNN {case.name}")


@pytest.mark.parametrize("case", CASES[::7], ids=lambda c: c.name)
def test_h0_none_means_zeros(case):
    inputs = case.inputs()
    without = manual.gradients(inputs["params"], inputs["x"], inputs["target"], **case.kwargs)
    inputs["h0"] = 0 * inputs["h0"]
    assert_grads_match(without, call(reference.gradients, inputs, case.kwargs), where=case.name)

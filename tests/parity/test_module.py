"""manual.module_gradients against torch.nn.RNN itself and unrolled autograd, on the whole parity matrix.

Every tensor of the module's gradient set, float64 and float32, judged against
the float64 truth by the tolerance policy: layers 1…3 × bidirectional ×
batch_first × bias × tanh/relu × lengths (full, mixed with 1 and T) ×
upstream (output, h_n, both) × B ∈ {1, 3}.
"""

import numpy as np
import pytest
import torch
from conftest import needs_cuda
from helpers import STATS, fast_subset
from hypothesis import given, settings
from hypothesis import strategies as st

import manual
from contract.spec import MODES
from oracle.cases.module import VARIANTS, ModuleCase, map_arrays, module_truth, parity_matrix, run_module, to_time_major
from oracle.groundtruth import Truth
from reference.module import nn_module_gradients, unrolled_module_gradients

MATRIX = [c for mode, form in VARIANTS for c in parity_matrix(mode, **form)]  # every cell and form: 288 each
FLOAT32 = [c for mode, form in VARIANTS for c in parity_matrix(mode, "float32", **form)][::3]
VARIANT = lambda c: (c.mode, c.proj_size, c.linear_before_reset, c.nonlinearity, c.num_heads,  # noqa: E731
                     c.forget_gate, c.zoneout)  # a cell, its form


def judge(case, got, want, ref=None, where=""):
    report = want.compare(to_time_major(case, got), dtype=case.dtype,
                          ref=None if ref is None else to_time_major(case, ref), title=where or case.name)
    STATS["comparisons"] += len(report.tensors)
    if case.dtype == "float64" and report.worst > STATS["worst_float64"]:
        STATS["worst_float64"], STATS["worst_where"] = report.worst, case.name
    assert report.ok, str(report)
    return report


def test_matrix_size():
    assert len(MATRIX) == len(VARIANTS) * 288 and len({c.name for c in MATRIX}) == len(VARIANTS) * 288


@pytest.mark.parametrize("case", fast_subset(MATRIX, VARIANT))
def test_manual_equals_nn_rnn_and_unrolled_autograd(case):
    inputs = case.inputs()
    want = module_truth(inputs)  # unrolled autograd, every tensor, per-step ones included
    got = run_module(manual.module_gradients, inputs)
    assert list(got)[: len(inputs["state_dict"])] == list(inputs["state_dict"])  # state_dict's order
    judge(case, got, want)
    if not case.config.has_torch_module:  # the GRU's paper form: torch has no module for it
        return
    nn = to_time_major(case, run_module(nn_module_gradients, inputs))  # torch's module, packed when lengths
    both = Truth({**want.grads, **nn}, want.sens, want.amp, want.steps, want.size)  # nn.RNN's wherever it has one
    judge(case, got, both, where=f"nn.RNN {case.name}")


@pytest.mark.parametrize("case", fast_subset(FLOAT32, VARIANT))
def test_float32_against_the_float64_truth(case):
    inputs = case.inputs()
    want = module_truth(case.inputs("float64"))
    got = run_module(manual.module_gradients, inputs)
    assert all(v.dtype == np.float32 for v in got.values())
    judge(case, got, want, ref=run_module(unrolled_module_gradients, inputs))


@pytest.mark.parametrize("case", fast_subset(MATRIX[::29], lambda c: c.mode))
def test_torch_in_torch_out(case):
    inputs = case.inputs()
    t = map_arrays(torch.from_numpy, inputs)
    got = run_module(manual.module_gradients, t)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float64 for v in got.values())
    judge(case, {k: v.numpy() for k, v in got.items()}, module_truth(inputs))


CUDA_CASES = MATRIX[::23] + FLOAT32[::23]


@needs_cuda
@pytest.mark.parametrize("case", CUDA_CASES, ids=lambda c: c.name)
def test_cuda_in_cuda_out(case, monkeypatch):
    """Every cell on torch CUDA (TF32 off): results on the input's device and dtype, judged on the float64 truth,
    float32 next to unrolled autograd's own float32 error on the same device."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # restored after the test
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    inputs = case.inputs()
    t = map_arrays(lambda a: torch.from_numpy(a).to("cuda"), inputs)
    got = run_module(manual.module_gradients, t)
    assert all(v.device.type == "cuda" and v.dtype == getattr(torch, case.dtype) for v in got.values())
    ref = None
    if case.dtype != "float64":
        ref = {k: v.cpu().numpy() for k, v in run_module(unrolled_module_gradients, t).items()}
    judge(case, {k: v.cpu().numpy() for k, v in got.items()}, module_truth(case.inputs("float64")), ref=ref)


@pytest.mark.parametrize("case", fast_subset([c for c in MATRIX if c.lengths == "mixed" and c.B == 3][::5],
                                             lambda c: c.mode))
def test_padded_steps_get_exactly_zero(case):
    inputs = case.inputs()
    got = run_module(manual.module_gradients, inputs)
    dx = to_time_major(case, got)["input"]  # (T, B, I)
    for b, n in enumerate(case.length_list()):
        assert np.all(dx[n:, b] == 0), f"{case.name}: input gradient at padded steps of row {b}"
        for name, g in got.items():
            if name.startswith("z_l"):
                assert np.all(g[n:, b] == 0), f"{case.name}: {name} at padded steps of row {b}"


@pytest.mark.parametrize("case", fast_subset(MATRIX[::11], lambda c: c.mode))
def test_hx_none_means_zeros(case):
    inputs = case.inputs()
    got = run_module(manual.module_gradients, {**inputs, "hx": None})
    inputs["hx"] = map_arrays(lambda a: 0 * a, {"state_dict": {}, "hx": inputs["hx"]})["hx"]
    if case.mode == "SLSTM":  # from c_0 = n_0 = 0, h_1 = o ⊙ z whatever ã_i and ã_f are: their step-1 gradients
        # (and m_0's) are exactly 0, which autograd reaches as a rounding residue of O(1) terms, and a row of
        # length 1 holds nothing else to scale them by; None must mean zeros exactly
        want = run_module(manual.module_gradients, inputs)
        assert all(np.array_equal(got[k], want[k]) for k in want)
        return
    judge(case, got, module_truth(inputs))


def test_module_forward_equals_nn_rnn():
    case = ModuleCase("RNN_TANH", 2, True, True, True, 6, 3, 3, 4, lengths="mixed")
    i = case.inputs()
    out = manual.module_forward(i["config"], i["state_dict"], i["input"], i["hx"], lengths=i["lengths"])
    rnn = torch.nn.RNN(**case.config.torch_kwargs(), dtype=torch.float64)
    rnn.load_state_dict({k: torch.from_numpy(v) for k, v in i["state_dict"].items()})
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(i["input"]), torch.tensor(i["lengths"]),
                                                     batch_first=True, enforce_sorted=False)
    o, h_n = rnn(packed, torch.from_numpy(i["hx"]))
    o, _ = torch.nn.utils.rnn.pad_packed_sequence(o, batch_first=True, total_length=case.T)
    np.testing.assert_allclose(out["output"], o.detach().numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(out["h_n"], h_n.detach().numpy(), rtol=0, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(MODES), st.integers(1, 3), st.booleans(), st.booleans(), st.booleans(),
       st.integers(1, 7), st.integers(1, 4), st.integers(1, 4), st.integers(2, 5),
       st.sampled_from(["full", "mixed"]), st.sampled_from(["output", "hn", "both"]), st.integers(0, 4), st.booleans())
def test_random_sizes(mode, L, bi, bf, bias, T, B, I, H, lengths, up, proj, lbr):  # noqa: E741
    proj = proj % H if mode == "LSTM" else 0
    case = ModuleCase(mode, L, bi, bf, bias, T, B, I, H, lengths=lengths, upstream=up, proj_size=proj,
                      linear_before_reset=lbr or mode != "GRU")
    inputs = case.inputs()
    judge(case, run_module(manual.module_gradients, inputs), module_truth(inputs))


@pytest.mark.parametrize("mode", MODES)
def test_parameters_that_require_grad(mode):
    """``dict(rnn.named_parameters())`` and inputs that require grad give what ``rnn.state_dict()`` gives: manual
    detaches them (it builds no graph), and returns tensors that require no grad."""
    case = next(c for c in MATRIX if c.config.mode == mode and c.config.num_layers == 2 and c.config.bidirectional)
    t = map_arrays(torch.from_numpy, case.inputs())
    leaves = {**{k: v.clone().requires_grad_() for k, v in t["state_dict"].items()}}
    x = t["input"].clone().requires_grad_()
    got = run_module(manual.module_gradients, {**t, "state_dict": leaves, "input": x})
    want = run_module(manual.module_gradients, t)
    assert not any(v.requires_grad for v in got.values())
    for k in want:
        assert torch.equal(got[k], want[k]), k
    out = manual.module_forward(case.config.as_dict(), leaves, x, t["hx"], lengths=t["lengths"])
    assert not out["output"].requires_grad


def test_numpy_integers_and_bools_are_integers_and_bools():
    """config sizes and flags, and a list of lengths, as NumPy scalars (what indexing an array gives) work as
    Python's do."""
    case = next(c for c in MATRIX if c.config.mode == "GRU" and c.lengths == "mixed" and c.config.bidirectional)
    i = case.inputs()
    cfg = {k: (np.int64(v) if type(v) is int else np.bool_(v) if type(v) is bool else v)
           for k, v in i["config"].items()}
    got = run_module(manual.module_gradients, {**i, "config": cfg, "lengths": list(np.asarray(i["lengths"]))})
    want = run_module(manual.module_gradients, i)
    assert all(np.array_equal(got[k], want[k]) for k in want)

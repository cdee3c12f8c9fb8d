"""Namespace × device × dtype: the same manual code on NumPy and torch (CPU, CUDA), judged on float64 truth."""

import itertools

import numpy as np
import pytest
import torch
from conftest import needs_cuda
from helpers import assert_grads_match, call

import manual
import reference
from contract import ACTIVATIONS, LOSSES, TOPOLOGIES
from oracle.cases.seed import Case
from oracle.groundtruth import truth
from oracle.judge import dtype_name

BACKENDS = [
    pytest.param(("numpy", "cpu"), id="numpy-cpu"),
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("torch", "cuda"), id="torch-cuda", marks=needs_cuda),
]
COMBOS = list(itertools.product(TOPOLOGIES, ACTIVATIONS, LOSSES))


def on(backend, inputs):
    """The case's NumPy inputs moved to ``backend`` (library, device)."""
    lib, dev = backend
    if lib == "numpy":
        return inputs
    t = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    return {"params": {k: t(v) for k, v in inputs["params"].items()}, "x": t(inputs["x"]),
            "target": t(inputs["target"]), "h0": t(inputs["h0"])}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("combo", COMBOS, ids="/".join)
def test_manual_on_every_backend(combo, dtype, backend):
    """Float64 and float32 judged against the float64 truth; float32 next to autograd's own float32 error."""
    if backend[1] == "cuda":  # TF32 would break float32 parity for reasons unrelated to BPTT
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    case = Case(*combo, T=17, B=3, D=4, H=5, O=3, dtype=dtype)
    inputs = case.inputs()
    want = truth(inputs, case.kwargs)
    got = call(manual.gradients, on(backend, inputs), case.kwargs)
    ref = call(reference.gradients, on(backend, inputs), case.kwargs) if dtype != "float64" else None
    for k, v in got.items():  # caller's library, dtype and device
        assert isinstance(v, np.ndarray if backend[0] == "numpy" else torch.Tensor), f"{k}: {type(v)}"
        assert dtype_name(v) == dtype, f"{k}: dtype {v.dtype}"
        if backend[0] == "torch":
            assert v.device.type == backend[1], f"{k}: device {v.device}"
    assert_grads_match(got, want, dtype=dtype, ref=ref, where=f"{case.name} on {backend}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_on_torch(dtype, backend):
    """float16/bfloat16 (torch only; NumPy has no bfloat16) judged next to autograd in the same dtype."""
    if backend[0] == "numpy":
        pytest.skip("NumPy has no bfloat16 and no fast float16 matmul; float16/bfloat16 are tested on torch")
    case = Case("many-to-many", "tanh", "mse", T=17, B=3, D=4, H=5, O=3)
    inputs = case.inputs()
    dt = getattr(torch, dtype)
    cast = lambda a: a.to(dt) if a.is_floating_point() else a  # noqa: E731
    low = on(backend, inputs)
    low = {"params": {k: cast(v) for k, v in low["params"].items()}, "x": cast(low["x"]),
           "target": cast(low["target"]), "h0": cast(low["h0"])}
    exact = {"params": {k: v.double().cpu().numpy() for k, v in low["params"].items()},
             "x": low["x"].double().cpu().numpy(), "target": low["target"].double().cpu().numpy(),
             "h0": low["h0"].double().cpu().numpy()}
    want = truth(exact, case.kwargs)
    assert_grads_match(call(manual.gradients, low, case.kwargs), want, dtype=dtype,
                       ref=call(reference.gradients, low, case.kwargs), where=f"{dtype} on {backend}")


def test_requires_grad_inputs_are_detached():
    case = Case("many-to-one", "tanh", "mse", T=4, B=2, D=3, H=4, O=2)
    inputs = on(("torch", "cpu"), case.inputs())
    inputs["params"] = {k: v.clone().requires_grad_() for k, v in inputs["params"].items()}
    g = call(manual.gradients, inputs, case.kwargs)
    assert all(not v.requires_grad and v.grad_fn is None for v in g.values())
    assert all(v.grad is None for v in inputs["params"].values())  # no graph was built or run

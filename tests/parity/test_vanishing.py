"""A vanishing gradient stops at zero: no subnormal reaches a product, results stay in the policy, and the
caller's floating-point state is left as it was (docs/numerics.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import manual
from oracle.cases.module import module_truth
from oracle.groundtruth import truth

T, B, D, H, O = 160, 3, 6, 16, 2
TINY32 = np.finfo(np.float32).tiny


def vanishing(dtype="float32", seed=0):
    """Whh of spectral radius ≈ 0.25: dL/dz shrinks ~4× a step, through float32's subnormals by t ≈ 100."""
    rng = np.random.default_rng(seed)
    p = {"Wxh": rng.normal(0, 1 / np.sqrt(D), (H, D)), "Whh": rng.normal(0, 0.25 / np.sqrt(H), (H, H)),
         "bh": rng.normal(0, 0.1, H), "Why": rng.normal(0, 1 / np.sqrt(H), (O, H)), "by": rng.normal(0, 0.1, O)}
    x, y = rng.normal(0, 1, (T, B, D)), rng.normal(0, 1, (B, O))
    return {"params": {k: v.astype(dtype) for k, v in p.items()}, "x": x.astype(dtype), "target": y.astype(dtype)}


def subnormal(a) -> int:
    a = np.asarray(a)
    return int(np.count_nonzero((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))


def test_the_case_does_vanish_through_subnormals():
    """The float64 truth passes through float32's subnormal range: the test below has something to stop."""
    i = vanishing("float64")
    dz = manual.gradients(i["params"], i["x"], i["target"])["z"]
    assert ((np.abs(dz) < TINY32) & (np.abs(dz) > TINY32 * 2**-23)).any()


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_no_subnormal_dz_and_within_policy(lib):
    i = vanishing()
    want = truth({"params": {k: v.astype(np.float64) for k, v in i["params"].items()},
                  "x": i["x"].astype(np.float64), "target": i["target"].astype(np.float64), "h0": None},
                 {"activation": "tanh", "loss": "mse", "topology": "many-to-one"})
    args = i if lib == "numpy" else {"params": {k: torch.from_numpy(v) for k, v in i["params"].items()},
                                     "x": torch.from_numpy(i["x"]), "target": torch.from_numpy(i["target"])}
    got = manual.gradients(args["params"], args["x"], args["target"])
    got = {k: (v.numpy() if lib == "torch" else v) for k, v in got.items()}
    assert subnormal(got["z"]) == 0, "dL/dz holds subnormals: the flush did not run"
    assert (got["z"][:40] == 0).any(), "early steps should have vanished to exactly zero"
    report = want.compare(got, dtype="float32")
    assert report.ok, str(report)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "GRU-paper", "RNN_TANH"])
def test_cells_flush_their_gate_gradients(mode):
    rng = np.random.default_rng(1)
    config = {"mode": mode.split("-")[0], "input_size": D, "hidden_size": H, "num_layers": 1}
    if mode == "GRU-paper":
        config["linear_before_reset"] = False
    m = getattr(torch.nn, {"RNN_TANH": "RNN"}.get(config["mode"], config["mode"]))(D, H)
    sd = {k: (v.detach().numpy() * (0.1 if "weight_hh" in k else 1)).astype(np.float32)
          for k, v in m.state_dict().items()}
    x = rng.normal(0, 1, (T, B, D)).astype(np.float32)
    g_hn = rng.normal(0, 1, (1, B, H)).astype(np.float32)
    got = manual.module_gradients(config, sd, x, grad_hn=g_hn)
    steps = [k for k in got if k.startswith(("gate_", "z_"))]
    assert steps and all(subnormal(got[k]) == 0 for k in steps), {k: subnormal(got[k]) for k in steps}
    want = module_truth({"config": config, "state_dict": sd, "input": x, "hx": None, "grad_output": None,
                         "grad_hn": g_hn, "lengths": None})
    below = sum(int(((np.abs(want.grads[k]) < TINY32) & (want.grads[k] != 0)).sum()) for k in steps)
    assert below > 0, "the case never reaches float32's subnormal range: nothing to flush"
    report = want.compare(got, dtype="float32")
    assert report.ok, str(report)


def _subnormals_survive() -> tuple[bool, bool]:
    """(NumPy, torch) gradual underflow on in this thread: a subnormal quotient is not flushed to zero."""
    return (bool(np.float32(TINY32) / np.float32(4) != 0), bool((torch.tensor([TINY32]) / 4).item() != 0))


@pytest.mark.parametrize("flush_denormal", [False, True])
def test_caller_floating_point_state_is_untouched(flush_denormal):
    """torch has set_flush_denormal but no getter: the state is read by its effect, before and after."""
    i = vanishing()
    try:
        torch.set_flush_denormal(flush_denormal)
        before = _subnormals_survive()
        assert before[1] == (not flush_denormal) or not torch.backends.cpu.get_cpu_capability()
        manual.gradients(i["params"], i["x"], i["target"])
        manual.gradients({k: torch.from_numpy(v) for k, v in i["params"].items()}, torch.from_numpy(i["x"]),
                         torch.from_numpy(i["target"]))
        assert _subnormals_survive() == before
    finally:
        torch.set_flush_denormal(False)

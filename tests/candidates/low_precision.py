"""Candidates for the bfloat16 and float16 cases: the inputs come as NumPy (bfloat16's as float32 holding
bfloat16 numbers); each computes in the case's dtype, in torch."""

import numpy as np
import torch

import manual
import reference
from oracle.cases.module import map_arrays


def _in(dtype, args):
    config, state_dict, input, hx, kw = args
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a)).to(dtype)  # noqa: E731
    d = map_arrays(t, {"state_dict": state_dict, "input": input, "hx": hx, **kw})
    return config, d.pop("state_dict"), d.pop("input"), d.pop("hx"), d


def in_dtype(fn, dtype):
    def run(config, state_dict, input, hx=None, **kw):
        config, sd, x, h, more = _in(dtype, (config, state_dict, input, hx, kw))
        return fn(config, sd, x, h, **more)
    return run


manual_bf16 = in_dtype(manual.module_gradients, torch.bfloat16)
manual_f16 = in_dtype(manual.module_gradients, torch.float16)


def hx_dropped_bf16(config, state_dict, input, hx=None, **kw):
    g = manual_bf16(config, state_dict, input, hx, **kw)
    return {**g, "hx": torch.zeros_like(g["hx"])}


def forget_gate_a_step_late_bf16(config, state_dict, input, hx=None, **kw):
    """gate_f and the weights it makes taken one step late: dW_ih recomputed from the shifted gate gradients."""
    g = manual_bf16(config, state_dict, input, hx, **kw)
    H = config["hidden_size"]
    late = torch.roll(g["gate_f_l0"], 1, dims=0)
    x = torch.from_numpy(np.asarray(input)).to(torch.bfloat16)
    dW = g["weight_ih_l0"].clone()
    dW[H:2 * H] = torch.einsum("tbh,tbi->hi", late, x)
    return {**g, "gate_f_l0": late, "weight_ih_l0": dW}


def ten_times_autograds_error_bf16(config, state_dict, input, hx=None, **kw):
    """truth + 10 × (autograd in bfloat16 − truth): a candidate exactly 10× as far off as autograd."""
    low = reference.unrolled_module_gradients(*_in(torch.bfloat16, (config, state_dict, input, hx, kw))[:4],
                                              **_in(torch.bfloat16, (config, state_dict, input, hx, kw))[4])
    high = reference.unrolled_module_gradients(*_in(torch.float64, (config, state_dict, input, hx, kw))[:4],
                                               **_in(torch.float64, (config, state_dict, input, hx, kw))[4])
    return {k: high[k] + 10 * (low[k].double() - high[k]) for k in high}

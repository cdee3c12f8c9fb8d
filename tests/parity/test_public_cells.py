"""The public implementations of the minimal cells and of the sLSTM, run under torch.autograd: an independent check
of ``manual.module_forward`` and ``manual.module_gradients`` for modes MINGRU, MINLSTM and SLSTM.

Independent because neither the equations nor the layouts are ours: lucidrains' minGRU-pytorch (``minGRU``,
``minLSTM``: its sequential path one step per call, and its parallel log-space scan) and NX-AI's xlstm (the pure
torch "vanilla" ``slstm_forward`` and ``slstm_forward_pointwise``, what its sLSTMCell runs with backend="vanilla")
are handed our weights in their own layout; their outputs and final states must equal ours, and autograd through
their code must equal our hand-derived gradients (mapped back to our names), all at rtol 1e-10 in float64 on CPU.

Where they differ from our equations (so the tests compare only what coincides):

- minGRU-pytorch has no biases (``bias: False`` in our config) and its rows are [h̃; z] and [h̃; f; i] (ours [z; h̃]
  and [f; i; h̃]); its g is ours. Without ``prev_hidden`` it starts from h_0 = 0. Its parallel minGRU takes
  log(prev_hidden), so h_0 > 0 there; its parallel minLSTM takes log_g(prev_hidden), i.e. starts from
  h_0 = g(prev_hidden), whereas its own sequential path starts from prev_hidden as it is: we run ours from
  g(prev_hidden) and carry our dL/dh_0 through g.
- xlstm's vanilla sLSTM has the logsigmoid forget gate alone (its registry: "slstm", "lstm"; no exp forget gate,
  nor in its CUDA kernel), caps i′ and f′ at 1 (torch.minimum: the tie at a won max halves autograd's share
  through each path, which sums back to the true derivative), and takes m_1 = ã_i when all of n_0 is zero.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import manual
from contract.spec import config_from, param_shapes

T, B, I = 6, 3, 5  # noqa: E741
# mode → (lucidrains' module, its class, its blocks of weight rows in our order: [h̃; z] → [z; h̃], [h̃; f; i] → [f; i; h̃])
LUCIDRAINS = {"MINGRU": ("minGRU_pytorch.minGRU", "minGRU", (1, 0)),
              "MINLSTM": ("minGRU_pytorch.minLSTM", "minLSTM", (1, 2, 0))}
UPSTREAM = ("grad_output", "grad_hn", "grad_cn", "grad_nn", "grad_mn")


def _rand(rng, *shape, low=-1.0, high=1.0):
    return torch.tensor(rng.uniform(low, high, shape), dtype=torch.float64)


def _close(ours: dict, theirs: dict):
    """ours[name] == theirs[name] for every name in theirs, in float64; a failure names its tensor. rtol 1e-10:
    two float64 computations of one function in different orders (their log-space scan's logarithms and
    exponentials, their summations) differ by a few hundred eps at T = 6, and a wrong derivation or layout by O(1)
    relative (each test's mutation, a swapped row block or a left-out map, fails by more than 1e-2)."""
    for name, want in theirs.items():
        got = torch.as_tensor(ours[name])
        assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def _blocks(w, order, H):
    """w's blocks of H rows in ``order``: lucidrains' weight (or its gradient) in our layout."""
    return torch.cat([w[b * H:(b + 1) * H] for b in order])


@pytest.mark.parametrize("h0", ["given", "none"])
@pytest.mark.parametrize("path", ["sequential", "parallel"])
@pytest.mark.parametrize("mode", ["MINGRU", "MINLSTM"])
def test_lucidrains_minimal_cells(mode, path, h0, H=4):
    pytest.importorskip("minGRU_pytorch", reason="minGRU-pytorch (lucidrains' minGRU, minLSTM) is not installed: "
                                                 "pip install minGRU-pytorch")
    from minGRU_pytorch.minGRU import g
    path_, name, order = LUCIDRAINS[mode]
    rng = np.random.default_rng(7)
    cls = getattr(importlib.import_module(path_), name)
    module = cls(I, expansion_factor=H / I, proj_out=False).double()  # one Linear(I, G·H), no bias
    weight = next(module.parameters())
    with torch.no_grad():
        weight.copy_(_rand(rng, *weight.shape))
    x, go, gh = _rand(rng, T, B, I).requires_grad_(), _rand(rng, T, B, H), _rand(rng, 1, B, H)
    low = 0.1 if (mode, path) == ("MINGRU", "parallel") else -1.0  # its parallel minGRU takes log(prev_hidden)
    prev = _rand(rng, B, 1, H, low=low, high=1.5).requires_grad_() if h0 == "given" else None
    as_h0 = g if (mode, path) == ("MINLSTM", "parallel") else (lambda p: p)  # its h_0: g(prev_hidden) there
    if path == "parallel":
        out, last = module(x.transpose(0, 1), prev_hidden=prev, return_next_prev_hidden=True)
    else:  # one call per step (seq_len 1), each from the last one's next_prev_hidden
        outs, last = [], prev
        for t in range(T):
            o, last = module(x[t, :, None], prev_hidden=last, return_next_prev_hidden=True)
            outs.append(o)
        out = torch.cat(outs, dim=1)
    ((out * go.transpose(0, 1)).sum() + (last * gh.transpose(0, 1)).sum()).backward()
    config = {"mode": mode, "input_size": I, "hidden_size": H, "bias": False}
    sd = {"weight_ih_l0": _blocks(weight.detach(), order, H)}
    hx = None if prev is None else as_h0(prev.detach()).transpose(0, 1)  # (1, B, H)
    fwd = manual.module_forward(config, sd, x.detach(), hx)
    _close(fwd, {"output": out.detach().transpose(0, 1), "h_n": last.detach().transpose(0, 1)})
    ours = manual.module_gradients(config, sd, x.detach(), hx, grad_output=go, grad_hn=gh)
    if prev is not None:  # our dL/dh_0 carried through their map from prev_hidden to h_0
        p = prev.detach().requires_grad_()
        ours["prev_hidden"] = torch.autograd.grad(as_h0(p), p, ours["hx"].transpose(0, 1))[0]
    _close(ours, {"weight_ih_l0": _blocks(weight.grad, order, H), "input": x.grad,
                  **({} if prev is None else {"prev_hidden": prev.grad})})


def _xlstm_vanilla():
    """xlstm/blocks/slstm/src/vanilla (pure torch) as a package of its own, loaded by path without importing
    xlstm (whose top level imports its block stack and may reach for CUDA, ninja or mlstm_kernels), or skip."""
    spec = importlib.util.find_spec("xlstm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("xlstm (NX-AI's official xLSTM; its pure torch vanilla sLSTM) is not installed: "
                    "pip install xlstm (or --no-deps: these files need torch alone)")
    folder = Path(spec.submodule_search_locations[0]) / "blocks" / "slstm" / "src" / "vanilla"
    if not (folder / "__init__.py").is_file():
        pytest.skip(f"xlstm has no {folder}")
    name = "_xlstm_vanilla_slstm"
    if name not in sys.modules:
        module_spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                             submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # its relative imports (.slstm, .lstm) resolve under this name
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def xlstm_R(weight_hh, num_heads: int):
    """Our weight_hh as the R that xlstm's vanilla ``slstm_forward`` takes: (4H, D) → (K, 4D, D). With K heads,
    D = H / K, gate g in (i, f, z, o) (the order of both), head k, unit j of the head, unit i of the head's h_{t−1}:

        ours (shape)                          xlstm (shape)
        weight_hh[g·H + k·D + j, i] (4H, D)   R[k, g·D + j, i] (K, 4D, D): vanilla slstm_forward's argument
                                              recurrent_kernel[k, i, g, j] (K, D, 4, D): sLSTMCell's parameter
        bias_hh[g·H + k·D + j] (4H,)          b[g·H + k·D + j] (4H,): its argument; bias[k, g, j] (K, 4, D)
        x_t W_ihᵀ + b_ih (T, B, 4H)           Wx (S, B, 4H): its input, "SBGNH" (gate, head, unit)
        h0, c0, n0, m0, each (1, B, H)        states (4, B, H): y, c, n, m
        output, h_n, c_n, n_n, m_n            states_all[0, 1:], then its final states (4, B, H)
    """
    D = weight_hh.shape[1]
    return weight_hh.reshape(4, num_heads, D, D).transpose(0, 1).reshape(num_heads, 4 * D, D)


@pytest.mark.parametrize("state", ["given", "zero"])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_xlstm_vanilla_slstm(heads, state, H=8):
    vanilla = _xlstm_vanilla()
    rng = np.random.default_rng(11 + heads)
    config = {"mode": "SLSTM", "input_size": I, "hidden_size": H, "num_heads": heads}  # forget_gate "sigmoid"
    sd = {k: _rand(rng, *s).requires_grad_() for k, s in param_shapes(config_from(config)).items()}
    x = _rand(rng, T, B, I).requires_grad_()
    lows = (-1.0, -1.0, 0.2, -1.0)  # h0, c0, n0 > 0, m0
    hx = tuple(_rand(rng, 1, B, H, low=lo).requires_grad_() if state == "given" else torch.zeros(1, B, H,
               dtype=torch.float64, requires_grad=True) for lo in lows)
    # with all of n_0 zero their m_1 = ã_i (ours max(log f_1 + m_0, ã_i)): the same h, but (c, n, m) may be another
    # stabiliser's up to T, and dL/dc_0, dL/dn_0 differ (their f′_1 is capped to 1): judged on h and its gradients
    ups = [_rand(rng, T, B, H)] + [_rand(rng, 1, B, H) for _ in range(4 if state == "given" else 1)]
    Wx = x @ sd["weight_ih_l0"].T + sd["bias_ih_l0"]  # (T, B, 4H)
    R = xlstm_R(sd["weight_hh_l0"], heads)
    every, last, _ = vanilla.slstm_forward(Wx, torch.cat(hx), R, sd["bias_hh_l0"],
                                           vanilla.slstm_pointwise_function_registry["slstm"])
    theirs = {"output": every[0, 1:], **{f"{s}_n": last[j, None] for j, s in enumerate("hcnm")}}
    sum((theirs[n] * u).sum() for n, u in zip(theirs, ups, strict=False)).backward()  # output, h_n[, c_n …]
    fwd = manual.module_forward(config, sd, x, hx)
    _close(fwd, {n: v.detach() for n, v in theirs.items() if state == "given" or n in ("output", "h_n")})
    ours = manual.module_gradients(config, sd, x, hx, **dict(zip(UPSTREAM, ups, strict=False)))
    states = ("hx", "cx", "nx", "mx") if state == "given" else ("hx",)
    _close(ours, {**{k: v.grad for k, v in sd.items()}, "input": x.grad,
                  **{n: hx[j].grad for j, n in enumerate(states)}})

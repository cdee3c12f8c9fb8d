"""torch.nn.RNN's module contract, by autograd: through ``torch.nn.RNN`` itself, and unrolled.

* :func:`nn_module_gradients`: ``torch.nn.RNN`` loaded with the state_dict,
  packed input when ``lengths`` are given (``pack_padded_sequence``,
  ``enforce_sorted=False``), backward from ``grad_output`` and ``grad_hn``.
  Parameters, ``input`` and ``hx``; no per-step tensors (the module keeps none).
* :func:`unrolled_module_gradients`: the same module written as loops of
  torch operations, layer by layer and direction by direction, with
  ``retain_grad`` on every step's h and z, so autograd gives the per-step
  tensors too. A padded step keeps the state: h_t = where(step t inside row
  b, act(z_t), h_{t-1}).

Same arguments and return as ``manual.module_gradients`` (NumPy in, NumPy out).
"""

from __future__ import annotations

import numpy as np
import torch

from contract.module_checks import check_module_inputs
from contract.spec import step_names

ACT = {"tanh": torch.tanh, "relu": torch.relu}


def _torch_args(state_dict, input, hx, grad_output, grad_hn):
    numpy_in = isinstance(input, np.ndarray)
    t = (lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))) if numpy_in else \
        (lambda a: None if a is None else a.detach())
    return numpy_in, {k: t(v) for k, v in state_dict.items()}, t(input), t(hx), t(grad_output), t(grad_hn)


def _out(grads: dict, numpy_in: bool) -> dict:
    return {k: (v.detach().cpu().numpy() if numpy_in else v.detach()) for k, v in grads.items()}


def _backward(outputs: list, grads: list) -> None:
    pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])


def nn_module_gradients(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None,
                        lengths=None) -> dict:
    """Parameters', ``input``'s and ``hx``'s gradients through ``torch.nn.RNN`` itself."""
    p = check_module_inputs(config, state_dict, input, hx, grad_output, grad_hn, lengths)
    c = p.config
    numpy_in, sd, x, h0, g_out, g_hn = _torch_args(state_dict, input, hx, grad_output, grad_hn)
    rnn = torch.nn.RNN(**c.torch_kwargs(), dtype=x.dtype, device=x.device)
    rnn.load_state_dict(sd)
    with torch.enable_grad():
        x = x.clone().requires_grad_()
        h0 = torch.zeros(p.state_shape, dtype=x.dtype, device=x.device) if h0 is None else h0.clone()
        h0.requires_grad_()
        if p.lengths is None:
            out, h_n = rnn(x, h0)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(p.lengths), batch_first=c.batch_first,
                                                             enforce_sorted=False)
            out, h_n = rnn(packed, h0)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=c.batch_first, total_length=p.T)
        _backward([out, h_n], [g_out, g_hn])
    g = {k: v.grad for k, v in rnn.named_parameters()}
    g["input"], g["hx"] = x.grad, h0.grad
    return _out(g, numpy_in)


def unrolled_module_gradients(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None,
                              lengths=None) -> dict:
    """Every gradient of the module contract, per-step ``h_l{k}{s}`` and ``z_l{k}{s}`` included."""
    p = check_module_inputs(config, state_dict, input, hx, grad_output, grad_hn, lengths)
    c, T, B = p.config, p.T, p.B
    act = ACT[c.nonlinearity]
    numpy_in, sd, x, h0, g_out, g_hn = _torch_args(state_dict, input, hx, grad_output, grad_hn)
    with torch.enable_grad():
        leaf = {k: v.clone().requires_grad_() for k, v in sd.items()}
        x = x.clone().requires_grad_()
        h0 = torch.zeros(p.state_shape, dtype=x.dtype, device=x.device) if h0 is None else h0.clone()
        h0.requires_grad_()
        seq = x.transpose(0, 1) if c.batch_first else x  # (T, B, I)
        n = torch.tensor(p.lengths if p.lengths is not None else [T] * B, device=x.device)
        inside = [(t < n)[:, None] for t in range(T)]  # step t inside row b's sequence     T × (B, 1)
        steps, h_n = {}, []
        for layer in range(c.num_layers):
            outs = []
            for d, s in enumerate(c.suffixes):
                W_ih, W_hh = leaf[f"weight_ih_l{layer}{s}"], leaf[f"weight_hh_l{layer}{s}"]
                h = h0[layer * c.dirs + d]
                hs, zs = [None] * T, [None] * T
                for t in range(T) if d == 0 else range(T - 1, -1, -1):
                    z = seq[t] @ W_ih.T + h @ W_hh.T
                    if c.bias:
                        z = z + leaf[f"bias_ih_l{layer}{s}"] + leaf[f"bias_hh_l{layer}{s}"]
                    h = torch.where(inside[t], act(z), h)
                    z.retain_grad()
                    h.retain_grad()
                    hs[t], zs[t] = h, z
                h_n.append(h)
                steps[(layer, s)] = (hs, zs)
                outs.append(torch.stack([torch.where(inside[t], hs[t], 0) for t in range(T)]))  # (T, B, H)
            seq = torch.cat(outs, dim=-1)  # (T, B, H·dirs)
        out = seq.transpose(0, 1) if c.batch_first else seq
        _backward([out, torch.stack(h_n)], [g_out, g_hn])
    g = {k: v.grad if v.grad is not None else torch.zeros_like(v) for k, v in leaf.items()}
    g["input"], g["hx"] = x.grad, h0.grad
    for h_name, z_name, layer, s in step_names(c):
        hs, zs = steps[(layer, s)]
        g[h_name] = torch.stack([v.grad if v.grad is not None else torch.zeros_like(v) for v in hs])
        g[z_name] = torch.stack([v.grad if v.grad is not None else torch.zeros_like(v) for v in zs])
    return _out(g, numpy_in)

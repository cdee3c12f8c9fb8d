"""torch's recurrent modules by autograd, with ``manual.module_gradients``' contract.

* :func:`nn_module_gradients`: ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` loaded
  with the state_dict, packed input when ``lengths`` are given
  (``pack_padded_sequence``, ``enforce_sorted=False``), backward from the
  upstream gradients. Parameters, ``input``, ``hx`` (and ``cx``); no
  per-step tensors (the module keeps none). Not for the GRU's paper form,
  which torch has no module for.
* :func:`unrolled_module_gradients`: the same modules written as loops of
  torch operations, layer by layer and direction by direction, with
  ``retain_grad`` on every step's h (c) and pre-activations, so autograd
  gives the per-step tensors too; it covers the GRU's paper form. A padded
  step keeps the state: h_t = where(step t inside row b, new h, h_{t-1}).

Same arguments and return as ``manual.module_gradients`` (NumPy in, NumPy out).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from contract.cells import LAYER_NORM_EPS
from contract.errors import BadValue
from contract.module_checks import check_module_inputs, split_hx, upstream_states
from contract.spec import TORCH_MODULE, step_names
from reference.model import converter, from_torch

ACT = {"tanh": torch.tanh, "relu": torch.relu}


def _torch_args(state_dict, input, hx, *grads):
    numpy_in = isinstance(input, np.ndarray)
    t = converter(numpy_in)
    hx = tuple(t(a) for a in hx) if isinstance(hx, (tuple, list)) else t(hx)
    return numpy_in, {k: t(v) for k, v in state_dict.items()}, t(input), hx, *(t(g) for g in grads)


def _backward(outputs: list, grads: list) -> None:
    pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])


def _initial(p, c, hx, like):
    """(h0, (c0, …)) as leaves that require grad (zeros where hx is None): h0 and every other carried state's."""
    h0, rest = split_hx(c, hx)
    zeros = lambda shape: torch.zeros(shape, dtype=like.dtype, device=like.device)  # noqa: E731
    h0 = (zeros(p.state_shape) if h0 is None else h0.clone()).requires_grad_()
    return h0, tuple((zeros(p.cell_shape) if r is None else r.clone()).requires_grad_() for r in rest)


def nn_module_gradients(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None, lengths=None,
                        grad_cn=None) -> dict:
    """Parameters', ``input``'s, ``hx``'s (and ``cx``'s) gradients through torch's module itself."""
    p = check_module_inputs(config, state_dict, input, hx, grad_output, grad_hn, lengths, grad_cn=grad_cn)
    c = p.config
    if not c.has_torch_module:
        raise BadValue(f"torch has no module for mode {c.mode!r}" + (" with linear_before_reset=False (the "
                       "paper's form)" if not c.linear_before_reset else "") + ". Remedy: use "
                       "reference.unrolled_module_gradients.")
    numpy_in, sd, x, hx, g_out, g_hn, g_cn = _torch_args(state_dict, input, hx, grad_output, grad_hn, grad_cn)
    module = getattr(torch.nn, TORCH_MODULE[c.mode])(**c.torch_kwargs(), dtype=x.dtype, device=x.device)
    module.load_state_dict(sd)
    with torch.enable_grad(), warnings.catch_warnings():
        # torch says, once per process, that oneDNN has no projected LSTM and it uses its own kernel: a notice
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        x = x.clone().requires_grad_()
        h0, rest0 = _initial(p, c, hx, x)
        state = (h0, *rest0) if c.has_cell_state else h0
        if p.lengths is None:
            out, last = module(x, state)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(p.lengths), batch_first=c.batch_first,
                                                             enforce_sorted=False)
            out, last = module(packed, state)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=c.batch_first, total_length=p.T)
        h_n, c_n = last if c.has_cell_state else (last, None)
        _backward([out, h_n] + ([c_n] if c_n is not None else []), [g_out, g_hn] + ([g_cn] if c_n is not None else []))
    g = {k: v.grad if v.grad is not None else torch.zeros_like(v) for k, v in module.named_parameters()}
    g["input"], g["hx"] = x.grad, h0.grad
    g.update({f"{s}x": r.grad for s, r in zip(c.cell.carried[1:], rest0, strict=True)})
    return from_torch(g, numpy_in)


def _elman(c, leaf, layer, s, xt, h, cst, inside_t, act, keep):
    z = xt @ leaf[f"weight_ih_l{layer}{s}"].T + h @ leaf[f"weight_hh_l{layer}{s}"].T
    if c.bias:
        z = z + leaf[f"bias_ih_l{layer}{s}"] + leaf[f"bias_hh_l{layer}{s}"]
    keep["z"] = z
    return torch.where(inside_t, act(z), h), None


def _lstm(c, leaf, layer, s, xt, h, cst, inside_t, act, keep):
    H = c.hidden_size
    a = xt @ leaf[f"weight_ih_l{layer}{s}"].T + h @ leaf[f"weight_hh_l{layer}{s}"].T
    if c.bias:
        a = a + leaf[f"bias_ih_l{layer}{s}"] + leaf[f"bias_hh_l{layer}{s}"]
    gi, gf, gg, go = (a[:, j * H:(j + 1) * H] for j in range(4))
    keep.update({"gate_i": gi, "gate_f": gf, "gate_g": gg, "gate_o": go})
    cst, = cst
    cn = torch.where(inside_t, torch.sigmoid(gf) * cst + torch.sigmoid(gi) * torch.tanh(gg), cst)
    hn = torch.sigmoid(go) * torch.tanh(cn)
    if c.proj_size:
        hn = hn @ leaf[f"weight_hr_l{layer}{s}"].T
    keep["c"] = cn
    return torch.where(inside_t, hn, h), (cn,)


def _gru(c, leaf, layer, s, xt, h, cst, inside_t, act, keep):
    H = c.hidden_size
    W_ih, W_hh = leaf[f"weight_ih_l{layer}{s}"], leaf[f"weight_hh_l{layer}{s}"]
    b_ih = leaf[f"bias_ih_l{layer}{s}"] if c.bias else torch.zeros(3 * H, dtype=h.dtype, device=h.device)
    b_hh = leaf[f"bias_hh_l{layer}{s}"] if c.bias else torch.zeros(3 * H, dtype=h.dtype, device=h.device)
    ax = xt @ W_ih.T + b_ih
    ar = ax[:, :H] + h @ W_hh[:H].T + b_hh[:H]
    az = ax[:, H:2 * H] + h @ W_hh[H:2 * H].T + b_hh[H:2 * H]
    r, z = torch.sigmoid(ar), torch.sigmoid(az)
    if c.linear_before_reset:  # torch: n = tanh(ax_n + r ⊙ (h W_hnᵀ + b_hn))
        an = ax[:, 2 * H:] + r * (h @ W_hh[2 * H:].T + b_hh[2 * H:])
    else:  # the paper: n = tanh(ax_n + (r ⊙ h) W_hnᵀ + b_hn)
        an = ax[:, 2 * H:] + (r * h) @ W_hh[2 * H:].T + b_hh[2 * H:]
    keep.update({"gate_r": ar, "gate_z": az, "gate_n": an})
    n = torch.tanh(an)
    return torch.where(inside_t, (1 - z) * n + z * h, h), None


def _indrnn(c, leaf, layer, s, xt, h, cst, inside_t, act, keep):
    z = xt @ leaf[f"weight_ih_l{layer}{s}"].T + leaf[f"weight_hh_l{layer}{s}"] * h  # u ⊙ h_{t-1}: u is (H,)
    if c.bias:
        z = z + leaf[f"bias_ih_l{layer}{s}"] + leaf[f"bias_hh_l{layer}{s}"]
    keep["z"] = z
    return torch.where(inside_t, act(z), h), None


def _positive(a):
    """The minimal cells' candidate map: a + ½ for a ≥ 0, σ(a) below."""
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def _input_gates(c, leaf, layer, s, xt, kinds, keep):
    """The pre-activations x_t W_ihᵀ + b_ih of a cell whose gates read x_t alone, split by ``kinds``."""
    a = xt @ leaf[f"weight_ih_l{layer}{s}"].T + (leaf[f"bias_ih_l{layer}{s}"] if c.bias else 0)
    H = c.hidden_size
    gates = {kind: a[:, j * H:(j + 1) * H] for j, kind in enumerate(kinds)}
    keep.update(gates)
    return gates


def _mingru(c, leaf, layer, s, xt, h, cst, inside_t, act, keep):
    a = _input_gates(c, leaf, layer, s, xt, ("gate_z", "gate_h"), keep)
    z = torch.sigmoid(a["gate_z"])
    return torch.where(inside_t, (1 - z) * h + z * _positive(a["gate_h"]), h), None


def _minlstm(c, leaf, layer, s, xt, h, cst, inside_t, act, keep):
    a = _input_gates(c, leaf, layer, s, xt, ("gate_f", "gate_i", "gate_h"), keep)
    f, i = torch.sigmoid(a["gate_f"]), torch.sigmoid(a["gate_i"])
    return torch.where(inside_t, f / (f + i) * h + i / (f + i) * _positive(a["gate_h"]), h), None


def _lnlstm(c, leaf, layer, s, xt, h, cst, inside_t, act, keep):
    H = c.hidden_size
    p = lambda name: leaf.get(f"{name}_l{layer}{s}")  # noqa: E731 - None where the config has no such parameter
    ln = lambda v, g, b: torch.nn.functional.layer_norm(v, (v.shape[-1],), p(g), p(b), eps=LAYER_NORM_EPS)  # noqa: E731
    a = ln(xt @ p("weight_ih").T, "ln_ih_weight", "bias_ih") + ln(h @ p("weight_hh").T, "ln_hh_weight", "bias_hh")
    gi, gf, gg, go = (a[:, j * H:(j + 1) * H] for j in range(4))
    keep.update({"gate_i": gi, "gate_f": gf, "gate_g": gg, "gate_o": go})
    cst, = cst
    cn = torch.where(inside_t, torch.sigmoid(gf) * cst + torch.sigmoid(gi) * torch.tanh(gg), cst)
    keep["c"] = cn
    return torch.where(inside_t, torch.sigmoid(go) * torch.tanh(ln(cn, "ln_c_weight", "ln_c_bias")), h), (cn,)


def _slstm(c, leaf, layer, s, xt, h, cst, inside_t, act, keep, stabilise=True):
    """One sLSTM step; ``stabilise=False``: the unstabilised form, carrying C = c e^m and N = n e^m with m = 0
    (what the stabiliser's no-gradient test compares against)."""
    H, nh = c.hidden_size, c.num_heads
    D = H // nh
    R = leaf[f"weight_hh_l{layer}{s}"].reshape(4, nh, D, D)  # [g, k, j, i]
    rec = torch.einsum("bki,gkji->bgkj", h.reshape(-1, nh, D), R).reshape(-1, 4 * H)  # R h_{t−1}, head by head
    a = xt @ leaf[f"weight_ih_l{layer}{s}"].T + rec
    if c.bias:
        a = a + leaf[f"bias_ih_l{layer}{s}"] + leaf[f"bias_hh_l{layer}{s}"]
    ai, af, az, ao = (a[:, j * H:(j + 1) * H] for j in range(4))
    keep.update({"gate_i": ai, "gate_f": af, "gate_z": az, "gate_o": ao})
    cp, npr, mp = cst
    lf = af if c.forget_gate == "exp" else torch.nn.functional.logsigmoid(af)
    m = torch.maximum(lf + mp, ai) if stabilise else torch.zeros_like(mp)
    ip, fp = torch.exp(ai - m), torch.exp(lf + mp - m)
    cn = torch.where(inside_t, fp * cp + ip * torch.tanh(az), cp)
    nn_ = torch.where(inside_t, fp * npr + ip, npr)
    m = torch.where(inside_t, m, mp)
    keep.update({"c": cn, "n": nn_})
    n_safe = torch.where(inside_t, nn_, 1)  # a padded step's n may be an initial 0: h there is h_{t−1} anyway
    return torch.where(inside_t, torch.sigmoid(ao) * cn / n_safe, h), (cn, nn_, m)


STEP = {"elman": _elman, "lstm": _lstm, "gru": _gru, "indrnn": _indrnn, "mingru": _mingru,
        "minlstm": _minlstm, "slstm": _slstm, "lnlstm": _lnlstm}  # a cell's file (contract.cells) → its step


def unrolled_module_gradients(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None,
                              lengths=None, grad_cn=None, grad_nn=None, grad_mn=None, zoneout_masks=None,
                              step=None) -> dict:
    """Every gradient of the module contract, per-step tensors included (``step``: another step function of
    STEP's signature, for a test's variant of the cell)."""
    p = check_module_inputs(config, state_dict, input, hx, grad_output, grad_hn, lengths, grad_cn=grad_cn,
                            grad_nn=grad_nn, grad_mn=grad_mn, zoneout_masks=zoneout_masks)
    c, T, B = p.config, p.T, p.B
    act = ACT[c.nonlinearity]
    step = step or STEP[c.cell.file]
    ups = upstream_states(c, grad_cn, grad_nn, grad_mn)
    numpy_in, sd, x, hx, zm, g_out, g_hn, *g_states = _torch_args(state_dict, input, hx, zoneout_masks,
                                                                   grad_output, grad_hn, *ups.values())
    names = {(layer, s): n for layer, s, n in step_names(c)}
    with torch.enable_grad():
        leaf = {k: v.clone().requires_grad_() for k, v in sd.items()}
        x = x.clone().requires_grad_()
        h0, rest0 = _initial(p, c, hx, x)
        seq = x.transpose(0, 1) if c.batch_first else x  # (T, B, I)
        n = torch.tensor(p.lengths if p.lengths is not None else [T] * B, device=x.device)
        inside = [(t < n)[:, None] for t in range(T)]  # step t inside row b's sequence     T × (B, 1)
        kept, h_n, finals = {}, [], []
        for layer in range(c.num_layers):
            outs = []
            for d, s in enumerate(c.suffixes):
                i = layer * c.dirs + d
                h, cst = h0[i], tuple(r[i] for r in rest0)
                per_step = [None] * T
                for t in range(T) if d == 0 else range(T - 1, -1, -1):
                    keep = {}
                    # a zoned-out unit keeps its states at step t as a padded step does (the where of each step)
                    live = inside[t] if zm is None else inside[t] & (zm[i, t] == 0)  # (B, 1) or (B, H)
                    h, cst = step(c, leaf, layer, s, seq[t], h, cst, live, act, keep)
                    keep["h"] = h
                    for v in keep.values():
                        v.retain_grad()
                    per_step[t] = keep
                h_n.append(h)
                finals.append(cst)
                kept[(layer, s)] = per_step
                outs.append(torch.stack([torch.where(inside[t], per_step[t]["h"], 0) for t in range(T)]))
            seq = torch.cat(outs, dim=-1)  # (T, B, P·dirs)
        out = seq.transpose(0, 1) if c.batch_first else seq
        states_n = [torch.stack([f[j] for f in finals]) for j in range(len(rest0))]  # c_n, n_n, m_n …
        _backward([out, torch.stack(h_n), *states_n], [g_out, g_hn, *g_states])
    g = {k: v.grad if v.grad is not None else torch.zeros_like(v) for k, v in leaf.items()}
    g["input"], g["hx"] = x.grad, h0.grad
    g.update({f"{s}x": r.grad if r.grad is not None else torch.zeros_like(r)
              for s, r in zip(c.cell.carried[1:], rest0, strict=True)})
    for (layer, s), per_step in kept.items():
        for kind, name in names[(layer, s)].items():
            g[name] = torch.stack([v[kind].grad if v[kind].grad is not None else torch.zeros_like(v[kind])
                                   for v in per_step])
    return from_torch(g, numpy_in)

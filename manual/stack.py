"""A cell run over time, directions and layers: torch.nn.RNN's module, and BPTT through it.

One direction of one layer is a cell's ``forward`` / ``backward``
(``manual.cells``): the time loops, which hold only what is sequential. The
input projection x_t W_ihᵀ + b_ih of every step is one matrix product before
them, dW_ih, db_ih and dL/dx one each after them. The reverse direction is
the same loops on the time-flipped sequence. Layer k+1 reads
layer k's outputs (both directions side by side, (T, B, H·dirs)); its input
gradient is what layer k's outputs receive from above.

Variable lengths follow torch's packed sequences (``pack_padded_sequence``
with ``enforce_sorted=False``): a row's steps past its length are padding;
the state is carried through them unchanged, the output there is zero (so
``grad_output`` there is ignored), ``h_n`` is each row's state at its own last
step, and the reverse direction starts at each row's own end (in flipped time
the padding comes first, and the state waits at h0 through it). Padded inputs
then get exactly zero gradient.

Per-step tensors are returned in time order, (T, B, ·), for every layer and
direction: ``h_l{k}{s}`` = dL/dh_t (at a padded step: the gradient of the
state carried through it), and the cell's own (``contract.spec.STEP_KINDS``):
``z_l{k}{s}`` = dL/dz_t (Elman), ``c_l{k}{s}`` = dL/dc_t and
``gate_{i,f,g,o}_l{k}{s}`` (LSTM, LayerNorm-LSTM), ``gate_{r,z,n}_l{k}{s}`` (GRU), ``z_l{k}{s}`` (IndRNN),
``gate_{z,h}`` / ``gate_{f,i,h}`` (minGRU / minLSTM), ``c``, ``n`` and ``gate_{i,f,z,o}`` (sLSTM), each gate's
pre-activation; zero at padded steps (and at zoned-out units) but for the states c and n, carried like h.
"""

from __future__ import annotations

from contract import NonFiniteGradientError, all_finite, first_nonfinite_step
from contract.module_checks import ModuleProblem, check_module_inputs, split_hx, upstream_states
from contract.spec import step_names
from manual.bptt import detached_args
from manual.cells import CELLS
from manual.errstate import numpy_quiet_input
from manual.kernels import kernels


def _masks(p: ModuleProblem):
    """(T, B, 1) with 1 where step t is inside row b's sequence; None when every row has all T steps."""
    if p.lengths is None or min(p.lengths) == p.T:
        return None
    rows = [[[1.0] if t < n else [0.0] for n in p.lengths] for t in range(p.T)]
    return p.xp.asarray(rows, dtype=p.dtype, device=p.device)  # (T, B, 1)


def _kept(p: ModuleProblem, i: int, d: int, m):
    """Where each unit takes its step's new state: the padding mask ``m`` (T, B, 1), times 1 − the zoneout mask of
    layer-and-direction row ``i`` (T, B, H; in the flipped time of the reverse direction). A cell carries its states
    through wherever this is 0, exactly as through a padded step."""
    if p.zoneout_masks is None:
        return m
    keep = 1 - p.zoneout_masks[i, ...]  # (T, B, H)
    keep = keep if d == 0 else p.xp.flip(keep, axis=0)
    return keep if m is None else keep * m


def _time_major(p: ModuleProblem, a):
    """(B, T, ·) → (T, B, ·) when batch_first (a copy), else ``a`` itself."""
    return p.xp.permute_dims(a, (1, 0, 2)) if p.config.batch_first else a


def _weights(sd, layer: int, s: str, cell) -> dict:
    """One layer's and direction's parameters that the cell reads, by their names without the suffix (None where
    absent): the recurrent ones, and the cell's own (its norms', and bias_ih when it normalises the input)."""
    names = ("weight_hh", "bias_hh", "weight_hr", *(n for n, _ in cell.norms),
             *(("bias_ih",) if cell.normalised_input else ()))
    return {n: sd.get(f"{n}_l{layer}{s}") for n in names}


def _forward(p: ModuleProblem, sd, x, hx):
    """Every layer and direction: (output (T, B, P·dirs), h_n, {state: its final value} of every other carried
    state, caches)."""
    xp, c, T, B = p.xp, p.config, p.T, p.B
    k = kernels(xp, c.nonlinearity)
    cell = CELLS[c.mode]
    masks = _masks(p)
    flipped = None if masks is None else xp.flip(masks, axis=0)
    h0s, rest0 = split_hx(c, hx)
    extra = c.cell.carried[1:]
    layer_in, h_n, finals, caches = x, [], {s: [] for s in extra}, {}
    for layer in range(c.num_layers):
        outs = []
        I = layer_in.shape[-1]  # noqa: E741
        for d, s in enumerate(c.suffixes):
            i = layer * c.dirs + d
            xin = layer_in if d == 0 else xp.flip(layer_in, axis=0)  # (T, B, I): reverse runs on flipped time
            m = masks if d == 0 else flipped
            W_ih = sd[f"weight_ih_l{layer}{s}"]
            G = W_ih.shape[0]
            xproj = xp.reshape(xp.reshape(xin, (T * B, I)) @ W_ih.T, (T, B, G))  # x_t W_ihᵀ, every step (T, B, G·H)
            if c.bias and not c.cell.normalised_input:  # (a cell that normalises x_t W_ihᵀ adds it itself)
                xproj = xproj + sd[f"bias_ih_l{layer}{s}"]
            zeros = lambda n: xp.zeros((B, n), dtype=p.dtype, device=p.device)  # noqa: E731
            h0 = zeros(c.out_size) if h0s is None else h0s[i, ...]
            s0 = tuple(zeros(c.hidden_size) if r is None else r[i, ...] for r in rest0)  # c0, n0, m0 …
            kept = _kept(p, i, d, m)
            out, hT, sT, cache = cell.forward(xp, k, c, xproj, h0, s0, _weights(sd, layer, s, c.cell), kept)
            out = out if m is None else out * m  # zero at padded steps (a zoned-out step outputs its carried h)
            bad = first_nonfinite_step(xp, out, backward=False)
            if bad is not None:
                raise NonFiniteGradientError(f"h_l{layer}{s} (forward pass)", bad if d == 0 else T + 1 - bad)
            outs.append(out if d == 0 else xp.flip(out, axis=0))
            h_n.append(hT)
            for name, v in zip(extra, sT or (), strict=True):
                finals[name].append(v)
            caches[(layer, d)] = (xin, m, kept, cache)
        layer_in = outs[0] if c.dirs == 1 else xp.concat(outs, axis=-1)  # (T, B, P·dirs)
    return layer_in, xp.stack(h_n), {name: xp.stack(v) for name, v in finals.items()}, caches


@numpy_quiet_input
def module_forward(config, state_dict, input, hx=None, *, lengths=None, zoneout_masks=None) -> dict:
    """``output`` as torch's module returns it (padded steps zero), ``h_n`` (L·dirs, B, P), and every other
    carried state's final value (L·dirs, B, H): the LSTM's ``c_n``, the sLSTM's ``c_n``, ``n_n``, ``m_n``;
    arguments as :func:`module_gradients`."""
    state_dict, input, hx, zoneout_masks = detached_args(state_dict, input, hx, zoneout_masks)
    p = check_module_inputs(config, state_dict, input, hx, lengths=lengths, zoneout_masks=zoneout_masks,
                            upstream=False)
    out, h_n, finals, _ = _forward(p, state_dict, _time_major(p, input), hx)
    return {"output": _time_major(p, out), "h_n": h_n, **{f"{s}_n": v for s, v in finals.items()}}


@numpy_quiet_input
def module_gradients(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None, lengths=None,
                     grad_cn=None, grad_nn=None, grad_mn=None, zoneout_masks=None) -> dict:
    """Hand-derived BPTT through torch's recurrent modules (nn.RNN, nn.LSTM, nn.GRU) and the cells torch has no
    module for (IndRNN, minGRU, minLSTM, sLSTM, LayerNorm-LSTM), driven by upstream gradients.

    Args:
        config: ``{"mode": "RNN_TANH" | "RNN_RELU" | "LSTM" | "GRU" | "INDRNN" | "MINGRU" | "MINLSTM" | "SLSTM" |
            "LNLSTM",
            "input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional"}`` with torch's
            names and defaults, plus ``proj_size`` (LSTM), ``linear_before_reset`` (GRU; False: the original
            paper's form), ``nonlinearity`` (the IndRNN's: "tanh" or "relu"), ``num_heads`` and ``forget_gate``
            (the sLSTM's: "sigmoid" or "exp"), ``zoneout`` (Elman, LSTM, GRU; with ``zoneout_masks``); each mode's
            row in ``contract.cells``.
        state_dict: exactly torch's module's ``state_dict()`` keys and shapes.
        input: (T, B, input_size), or (B, T, input_size) with batch_first.
        hx: (num_layers·dirs, B, P), or the tuple of the cell's carried states: the LSTM's pair (h0, c0) as torch
            takes it, the sLSTM's (h0, c0, n0, m0) (n0 ≥ 0); None for zeros.
        grad_output: dL/d``output`` (the module's output's shape), or None (zero).
        grad_hn: dL/d``h_n`` (num_layers·dirs, B, P), or None (zero).
        lengths: (B,) integers in 1…T (packed semantics), or None: every row has T steps.
        grad_cn, grad_nn, grad_mn: dL/d``c_n`` (the LSTM's and sLSTM's), dL/d``n_n`` and dL/d``m_n`` (the
            sLSTM's), each (num_layers·dirs, B, H), or None. Not all upstream gradients None.
        zoneout_masks: with config ``zoneout=True`` (Elman, LSTM, GRU), (num_layers·dirs, T, B, H)
            of 0 and 1, time first whatever batch_first: where 1, the unit keeps its h (and c) from the step before,
            h_t = m ⊙ h_{t−1} + (1 − m) ⊙ h̃_t; the masks are an input, as a library's training step draws them.

    Returns:
        dict: one gradient per ``state_dict`` key (same name and shape), ``input``, ``hx`` (dL/dh0), one per
        other carried state (``cx`` = dL/dc0; the sLSTM's ``cx``, ``nx``, ``mx``), and per layer k and direction
        s ("" or "_reverse") the per-step tensors ``h_l{k}{s}`` and the cell's own (``z_l{k}{s}``;
        ``c_l{k}{s}``, ``gate_i_l{k}{s}`` …; ``gate_r_l{k}{s}`` …), (T, B, ·) in time order. In the caller's
        library, dtype and device.
    """
    state_dict, input, hx, grad_output, grad_hn, grad_cn, grad_nn, grad_mn, zoneout_masks = detached_args(
        state_dict, input, hx, grad_output, grad_hn, grad_cn, grad_nn, grad_mn, zoneout_masks)
    p = check_module_inputs(config, state_dict, input, hx, grad_output, grad_hn, lengths, grad_cn=grad_cn,
                            grad_nn=grad_nn, grad_mn=grad_mn, zoneout_masks=zoneout_masks)
    ups = upstream_states(p.config, grad_cn, grad_nn, grad_mn)  # dL/d(c_n, n_n, m_n …) or None each
    xp, c, T, B = p.xp, p.config, p.T, p.B
    sd = state_dict
    k = kernels(xp, c.nonlinearity)
    cell = CELLS[c.mode]
    _, _, _, caches = _forward(p, sd, _time_major(p, input), hx)
    d_out = None if grad_output is None else _time_major(p, grad_output)  # dL/d(layer output) (T, B, P·dirs)
    extra = c.cell.carried[1:]
    grads, dhx, dsx = {}, [None] * (c.num_layers * c.dirs), [None] * (c.num_layers * c.dirs)
    names = {(layer, s): n for layer, s, n in step_names(c)}
    P = c.out_size
    for layer in range(c.num_layers - 1, -1, -1):
        d_in = None  # dL/d(this layer's input), summed over directions                 (T, B, I)
        for d, s in enumerate(c.suffixes):
            i = layer * c.dirs + d
            xin, m, kept, cache = caches[(layer, d)]
            W_ih = sd[f"weight_ih_l{layer}{s}"]
            part = None
            if d_out is not None:
                part = d_out[..., d * P:(d + 1) * P]  # this direction's share of the output          (T, B, P)
                part = part if d == 0 else xp.flip(part, axis=0)
                if m is not None:
                    part = part * m  # output = m ⊙ h: a padded step's grad_output reaches nothing
            dhn = None if grad_hn is None else grad_hn[i, ...]
            dsn = tuple(None if g is None else g[i, ...] for g in ups.values())  # dL/dc_n, dL/dn_n … of this row
            W = _weights(sd, layer, s, c.cell)
            dxproj, dhx[i], dsx[i], dW, steps = cell.backward(xp, k, c, cache, W, part, dhn, dsn, kept)
            if not all_finite(xp, dxproj):
                bad = first_nonfinite_step(xp, dxproj, backward=True)
                raise NonFiniteGradientError(names[(layer, s)]["h"], bad if d == 0 else T + 1 - bad)
            I, G = xin.shape[-1], dxproj.shape[-1]  # noqa: E741
            dxp2 = xp.reshape(dxproj, (T * B, G))  # (T·B, G·H)
            grads[f"weight_ih_l{layer}{s}"] = dxp2.T @ xp.reshape(xin, (T * B, I))  # Σ_t dxproj_tᵀ x_t   (G·H, I)
            if c.bias and not c.cell.normalised_input:  # (a normalising cell gives bias_ih's itself, in dW)
                grads[f"bias_ih_l{layer}{s}"] = xp.sum(dxp2, axis=0)  # Σ_t Σ_b dxproj_t              (G·H,)
            # the cell's recurrent weights that the state_dict holds: weight_hh, bias_hh, weight_hr (none for a
            # cell whose gates read x_t alone), and its own (a norm's gain and bias; bias_ih when it normalises x)
            grads.update({f"{n}_l{layer}{s}": g for n, g in dW.items() if f"{n}_l{layer}{s}" in sd})
            dx = xp.reshape(dxp2 @ W_ih, (T, B, I))  # dL/dx_t = dxproj_t W_ih                            (T, B, I)
            if d == 1:
                dx = xp.flip(dx, axis=0)
                steps = {kind: xp.flip(v, axis=0) for kind, v in steps.items()}  # back to time order
            for kind, v in steps.items():
                grads[names[(layer, s)][kind]] = v
            d_in = dx if d_in is None else d_in + dx
        d_out = d_in
    grads["input"] = _time_major(p, d_out)
    grads["hx"] = xp.stack(dhx)  # (L·dirs, B, P)
    for j, name in enumerate(extra):  # cx, nx, mx: dL/d(the other carried states' initial values) (L·dirs, B, H)
        grads[f"{name}x"] = xp.stack([row[j] for row in dsx])
    for name, g in grads.items():
        if not all_finite(xp, g):
            raise NonFiniteGradientError(name, None)
    order = [*sd.keys(), "input", "hx", *(f"{name}x" for name in extra)]
    order += [n for _, _, ns in step_names(c) for n in ns.values()]
    return {name: grads[name] for name in order}

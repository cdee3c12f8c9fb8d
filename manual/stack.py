"""A cell run over time, directions and layers: torch.nn.RNN's module, and BPTT through it.

One direction of one layer is ``run_forward`` / ``run_backward``: the time
loops, which hold only what is sequential (the cell's step). The reverse
direction is the same loops on the time-flipped sequence. Layer k+1 reads
layer k's outputs (both directions side by side, (T, B, H·dirs)); its input
gradient is what layer k's outputs receive from above.

Variable lengths follow torch's packed sequences (``pack_padded_sequence``
with ``enforce_sorted=False``): a row's steps past its length are padding;
the state is carried through them unchanged, the output there is zero (so
``grad_output`` there is ignored), ``h_n`` is each row's state at its own last
step, and the reverse direction starts at each row's own end (in flipped time
the padding comes first, and the state waits at h0 through it). Padded inputs
then get exactly zero gradient.

Per-step tensors are returned in time order, (T, B, H), for every layer and
direction: ``h_l{k}{s}`` = dL/dh_t (at a padded step: the gradient of the
state carried through it) and ``z_l{k}{s}`` = dL/dz_t (zero at padded steps).
"""

from __future__ import annotations

from array_api_compat import device

from contract import NonFiniteGradientError, all_finite, first_nonfinite_step
from contract.module_checks import ModuleProblem, check_module_inputs
from contract.spec import step_names
from manual.activations import ACTIVATIONS
from manual.cells import CELLS
from manual.errstate import numpy_quiet_input
from manual.kernels import kernels


def _rows(xp, a) -> tuple:
    """Per-step views a[0], a[1], …, made in one call."""
    return xp.unstack(a, axis=0)


def run_forward(xp, k, cell, z, hs, W_hh, masks=None) -> None:
    """One direction's recurrence, in place: z (T, B, H) holds x_t W_ihᵀ + b on entry and z_t on return;
    hs (T+1, B, H) holds h0 in hs[0] on entry and h_t in hs[t+1] on return. ``masks``: (T, B, 1) or None."""
    WhhT = xp.empty(W_hh.shape[::-1], dtype=W_hh.dtype, device=device(W_hh))  # (H, H)
    WhhT[...] = W_hh.T  # a row-major copy: BLAS streams it faster than the transposed view
    zt, ht = _rows(xp, z), _rows(xp, hs)
    mt = _rows(xp, masks) if masks is not None else None
    for t in range(z.shape[0]):
        cell.step(k, zt[t], ht[t], WhhT, ht[t + 1], None if mt is None else mt[t])


def run_backward(xp, k, cell, W_hh, dA, dh, dz, first_direct: int, dhn=None, masks=None):
    """One direction's BPTT, t = T … 1; returns dL/dh0 (B, H).

    ``dA`` (T, B, H): act'(z_t) of every step; ``dh`` (T, B, H): on entry the
    direct terms (what reaches h_t from outside the recurrence) at steps
    t ≥ ``first_direct`` (garbage before), on return the total dL/dh_t;
    ``dz`` (T, B, H) receives dL/dz_t; ``dhn``: dL/dh_T from outside (h_n's gradient).
    """
    T = dh.shape[0]
    dht, dzt, dAt = _rows(xp, dh), _rows(xp, dz), _rows(xp, dA)
    mt = _rows(xp, masks) if masks is not None else None
    for t in range(T - 1, -1, -1):
        m_t = None if mt is None else mt[t]
        if t == T - 1:  # dL/dh_T = direct term + dL/dh_n
            if first_direct > t:
                dht[t][...] = 0 if dhn is None else dhn
            elif dhn is not None:
                dht[t][...] += dhn
        else:  # dL/dh_t = direct term + dL/dz_{t+1} W_hh (through the future)
            cell.into_previous(k, dzt[t + 1], W_hh, dht[t], first=t < first_direct, dh_t=dht[t + 1],
                               m_t=None if mt is None else mt[t + 1])
        cell.step_back(k, dht[t], dAt[t], dzt[t], m_t)  # dL/dz_t = dL/dh_t ⊙ act'(z_t)
    dh0 = dz[0, ...] @ W_hh  # dL/dh0 = dz_1 W_hh                                      (B, H)
    if mt is not None:
        dh0 = dh0 + (1 - mt[0]) * dh[0, ...]
    return dh0


def _masks(p: ModuleProblem):
    """(T, B, 1) with 1 where step t is inside row b's sequence; None when every row has all T steps."""
    if p.lengths is None or min(p.lengths) == p.T:
        return None
    rows = [[[1.0] if t < n else [0.0] for n in p.lengths] for t in range(p.T)]
    return p.xp.asarray(rows, dtype=p.dtype, device=p.device)  # (T, B, 1)


def _time_major(p: ModuleProblem, a):
    """(B, T, ·) → (T, B, ·) when batch_first (a copy), else ``a`` itself."""
    return p.xp.permute_dims(a, (1, 0, 2)) if p.config.batch_first else a


def _forward(p: ModuleProblem, sd, x, hx):
    """Every layer and direction: (output (T, B, H·dirs), h_n, caches)."""
    xp, c, T, B, H = p.xp, p.config, p.T, p.B, p.config.hidden_size
    k = kernels(xp, c.nonlinearity)
    cell = CELLS[c.mode]
    masks = _masks(p)
    flipped = None if masks is None else xp.flip(masks, axis=0)
    layer_in, h_n, caches = x, [], {}
    for layer in range(c.num_layers):
        outs = []
        I = layer_in.shape[-1]  # noqa: E741
        for d, s in enumerate(c.suffixes):
            i = layer * c.dirs + d
            xin = layer_in if d == 0 else xp.flip(layer_in, axis=0)  # (T, B, I): reverse runs on flipped time
            m = masks if d == 0 else flipped
            W_ih, W_hh = sd[f"weight_ih_l{layer}{s}"], sd[f"weight_hh_l{layer}{s}"]
            z = xp.reshape(xp.reshape(xin, (T * B, I)) @ W_ih.T, (T, B, H))  # x_t W_ihᵀ, every step  (T, B, H)
            if c.bias:
                z = z + (sd[f"bias_ih_l{layer}{s}"] + sd[f"bias_hh_l{layer}{s}"])
            hs = xp.empty((T + 1, B, H), dtype=p.dtype, device=p.device)  # (T+1, B, H)
            hs[0, ...] = 0 if hx is None else hx[i, ...]
            run_forward(xp, k, cell, z, hs, W_hh, m)
            bad = first_nonfinite_step(xp, hs[1:, ...], backward=False)
            if bad is not None:
                raise NonFiniteGradientError(f"h_l{layer}{s} (forward pass)", bad if d == 0 else T + 1 - bad)
            out = hs[1:, ...] if m is None else hs[1:, ...] * m  # zero at padded steps          (T, B, H)
            outs.append(out if d == 0 else xp.flip(out, axis=0))
            h_n.append(hs[T, ...])
            caches[(layer, d)] = (xin, z, hs, m)
        layer_in = outs[0] if c.dirs == 1 else xp.concat(outs, axis=-1)  # (T, B, H·dirs)
    return layer_in, xp.stack(h_n), caches


@numpy_quiet_input
def module_forward(config, state_dict, input, hx=None, *, lengths=None) -> dict:
    """``output`` as torch.nn.RNN returns it (padded steps zero) and ``h_n`` (L·dirs, B, H); arguments as
    :func:`module_gradients`."""
    p = check_module_inputs(config, state_dict, input, hx, lengths=lengths, upstream=False)
    out, h_n, _ = _forward(p, state_dict, _time_major(p, input), hx)
    return {"output": _time_major(p, out), "h_n": h_n}


@numpy_quiet_input
def module_gradients(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None, lengths=None) -> dict:
    """Hand-derived BPTT through torch.nn.RNN's module, driven by upstream gradients.

    Args:
        config: ``{"mode": "RNN_TANH" | "RNN_RELU", "input_size", "hidden_size", "num_layers",
            "bias", "batch_first", "bidirectional"}`` (torch.nn.RNN's names and defaults).
        state_dict: exactly ``torch.nn.RNN(**args).state_dict()``'s keys and shapes.
        input: (T, B, input_size), or (B, T, input_size) with batch_first.
        hx: (num_layers·dirs, B, H), or None for zeros.
        grad_output: dL/d``output`` (the module's output's shape), or None (zero).
        grad_hn: dL/d``h_n`` (num_layers·dirs, B, H), or None (zero); not both None.
        lengths: (B,) integers in 1…T (packed semantics), or None: every row has T steps.

    Returns:
        dict: one gradient per ``state_dict`` key (same name and shape),
        ``input`` and ``hx`` (their shapes), and per layer k and direction
        s ("" or "_reverse") ``h_l{k}{s}`` = dL/dh_t and ``z_l{k}{s}`` =
        dL/dz_t, (T, B, H) in time order. In the caller's library, dtype, device.
    """
    p = check_module_inputs(config, state_dict, input, hx, grad_output, grad_hn, lengths)
    xp, c, T, B, H = p.xp, p.config, p.T, p.B, p.config.hidden_size
    sd = state_dict
    k = kernels(xp, c.nonlinearity)
    cell = CELLS[c.mode]
    _, dact = ACTIVATIONS[c.nonlinearity]
    _, _, caches = _forward(p, sd, _time_major(p, input), hx)
    d_out = None if grad_output is None else _time_major(p, grad_output)  # dL/d(layer output) (T, B, H·dirs)
    grads, dhx = {}, [None] * (c.num_layers * c.dirs)
    names = {(layer, s): (h, z) for h, z, layer, s in step_names(c)}
    for layer in range(c.num_layers - 1, -1, -1):
        d_in = None  # dL/d(this layer's input), summed over directions                 (T, B, I)
        for d, s in enumerate(c.suffixes):
            i = layer * c.dirs + d
            xin, z, hs, m = caches[(layer, d)]
            W_ih, W_hh = sd[f"weight_ih_l{layer}{s}"], sd[f"weight_hh_l{layer}{s}"]
            dh = xp.empty((T, B, H), dtype=p.dtype, device=p.device)  # (T, B, H)
            first_direct = T
            if d_out is not None:
                part = d_out[..., d * H:(d + 1) * H]  # this direction's share of the output  (T, B, H)
                dh[...] = part if d == 0 else xp.flip(part, axis=0)
                if m is not None:
                    dh *= m  # output = m ⊙ h: a padded step's grad_output reaches nothing
                first_direct = 0
            dz = xp.empty((T, B, H), dtype=p.dtype, device=p.device)  # (T, B, H)
            dhn = None if grad_hn is None else grad_hn[i, ...]
            dA = dact(z, hs[1:, ...])  # act'(z_t), every step                                    (T, B, H)
            dhx[i] = run_backward(xp, k, cell, W_hh, dA, dh, dz, first_direct, dhn, m)
            if not all_finite(xp, dz):
                bad = first_nonfinite_step(xp, dz, backward=True)
                raise NonFiniteGradientError(names[(layer, s)][1], bad if d == 0 else T + 1 - bad)
            I = xin.shape[-1]  # noqa: E741
            dz2 = xp.reshape(dz, (T * B, H))  # (T·B, H)
            grads[f"weight_ih_l{layer}{s}"] = dz2.T @ xp.reshape(xin, (T * B, I))  # Σ_t dz_tᵀ x_t      (H, I)
            grads[f"weight_hh_l{layer}{s}"] = dz2.T @ xp.reshape(hs[:T, ...], (T * B, H))  # Σ dz_tᵀ h_{t-1} (H, H)
            if c.bias:
                db = xp.sum(dz2, axis=0)  # Σ_t Σ_b dz_t                                          (H,)
                grads[f"bias_ih_l{layer}{s}"], grads[f"bias_hh_l{layer}{s}"] = db, xp.asarray(db, copy=True)
            dx = xp.reshape(dz2 @ W_ih, (T, B, I))  # dL/dx_t = dz_t W_ih                            (T, B, I)
            if d == 1:
                dx, dh, dz = (xp.flip(a, axis=0) for a in (dx, dh, dz))  # back to time order
            h_name, z_name = names[(layer, s)]
            grads[h_name], grads[z_name] = dh, dz
            d_in = dx if d_in is None else d_in + dx
        d_out = d_in
    grads["input"] = _time_major(p, d_out)
    grads["hx"] = xp.stack(dhx)  # (L·dirs, B, H)
    for name, g in grads.items():
        if not all_finite(xp, g):
            raise NonFiniteGradientError(name, None)
    order = [*sd.keys(), "input", "hx"] + [n for h, z, _, _ in step_names(c) for n in (h, z)]
    return {name: grads[name] for name in order}

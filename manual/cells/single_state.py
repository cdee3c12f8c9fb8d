"""What the cells with one state and one pre-activation per unit share (the Elman cell, the IndRNN): one
direction of one layer over the whole sequence, around the cell's own recurrence (``run_forward``,
``run_backward``) and the gradient of its recurrent weight (``recurrent_grad``)."""

from __future__ import annotations

from array_api_compat import device

from manual.activations import ACTIVATIONS


def forward(xp, k, xproj, h0, W: dict, masks, run_forward):
    """(output (T, B, H), h_T, None, cache) from xproj = x_t W_ihᵀ + b_ih (T, B, H) and h0 (B, H)."""
    T, B, H = xproj.shape
    z = xproj + W["bias_hh"] if W["bias_hh"] is not None else xp.asarray(xproj, copy=True)  # (T, B, H)
    hs = xp.empty((T + 1, B, H), dtype=xproj.dtype, device=device(xproj))  # (T+1, B, H)
    hs[0, ...] = h0
    run_forward(xp, k, z, hs, W["weight_hh"], masks)
    out = hs[1:, ...]  # h_t of every step (manual.stack zeroes a padded step's)
    return out, hs[T, ...], None, (z, hs)


def backward(xp, k, config, cache, W: dict, d_out, dhn, masks, run_backward, recurrent_grad):
    """(dL/dxproj (T, B, H), dL/dh0, None, {weight_hh, bias_hh}, {"h": dL/dh_t, "z": dL/dz_t}).

    ``recurrent_grad(dz2, h2)``: the recurrent weight's gradient from dL/dz_t and h_{t-1}, both (T·B, H)."""
    z, hs = cache
    T, B, H = z.shape
    _, dact = ACTIVATIONS[config.nonlinearity]
    dh = xp.empty((T, B, H), dtype=z.dtype, device=device(z))  # (T, B, H)
    first_direct = T
    if d_out is not None:
        dh[...] = d_out
        first_direct = 0
    dz = xp.empty((T, B, H), dtype=z.dtype, device=device(z))  # (T, B, H)
    dA = dact(z, hs[1:, ...])  # act'(z_t), every step                                         (T, B, H)
    dh0 = run_backward(xp, k, W["weight_hh"], dA, dh, dz, first_direct, dhn, masks)
    dz2 = xp.reshape(dz, (T * B, H))  # (T·B, H)
    dW = {"weight_hh": recurrent_grad(xp, dz2, xp.reshape(hs[:T, ...], (T * B, H))),
          "bias_hh": xp.sum(dz2, axis=0)}  # Σ_t Σ_b dz_t                                          (H,)
    return dz, dh0, None, dW, {"h": dh, "z": dz}

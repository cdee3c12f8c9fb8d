"""The model unrolled in torch operations; gradients by torch.autograd."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from reference.model import ACT, from_torch, step_loss, to_torch


def _unrolled(p, params, x, target, h0, untie: bool):
    """Build the graph; return the loss and the tensors whose .grad we read."""
    leaf = {k: v.clone().requires_grad_() for k, v in params.items()}
    x = x.clone().requires_grad_()
    h0 = (torch.zeros(p.B, p.H, dtype=p.dtype, device=x.device) if h0 is None else h0.clone())
    h = h0.requires_grad_()
    steps = {k: [] for k in ("Wxh", "Whh", "bh")} if untie else None
    zs, hs, L = [], [], 0
    for t in range(p.T):
        Wxh, Whh, bh = leaf["Wxh"], leaf["Whh"], leaf["bh"]
        if untie:  # a fresh leaf per step: its .grad is this step's contribution
            Wxh, Whh, bh = (leaf[k].detach().clone().requires_grad_() for k in ("Wxh", "Whh", "bh"))
            for k, v in zip(("Wxh", "Whh", "bh"), (Wxh, Whh, bh), strict=True):
                steps[k].append(v)
        xt = x if p.topology == "one-to-many" else x[t]
        z = h @ Whh.T + bh
        if p.topology != "one-to-many" or t == 0:  # one-to-many: zero input after step 1
            z = z + xt @ Wxh.T
        h = ACT[p.activation](z)
        if z.requires_grad:  # not under no_grad (forward)
            z.retain_grad()
            h.retain_grad()
        zs.append(z)
        hs.append(h)
        if p.topology != "many-to-one" or t == p.T - 1:
            y = target if p.topology == "many-to-one" else target[t]
            L = L + step_loss(p.loss, h @ leaf["Why"].T + leaf["by"], y)
    return L, leaf, x, h0, zs, hs, steps


def gradients(
    params: Mapping,
    x,
    target,
    *,
    h0=None,
    activation: str = "tanh",
    loss: str = "mse",
    topology: str = "many-to-one",
) -> dict:
    """The full gradient set by torch.autograd on the unrolled model.

    Same signature, shapes and return as ``manual.gradients`` (NumPy in,
    NumPy out; torch in, torch out on the same device and dtype).
    """
    p, params, x, target, h0, numpy_in = to_torch(params, x, target, h0, activation, loss, topology)
    with torch.enable_grad():
        L, leaf, xl, h0l, zs, hs, _ = _unrolled(p, params, x, target, h0, untie=False)
        L.backward()
    g = {k: leaf[k].grad for k in leaf}
    g["h0"], g["x"] = h0l.grad, xl.grad
    g["h"] = torch.stack([h.grad for h in hs])  # (T, B, H)
    g["z"] = torch.stack([z.grad for z in zs])  # (T, B, H)
    return from_torch(g, numpy_in)


def per_step_gradients(
    params: Mapping,
    x,
    target,
    *,
    h0=None,
    activation: str = "tanh",
    loss: str = "mse",
    topology: str = "many-to-one",
) -> dict:
    """Each step's contribution to dWxh, dWhh, dbh: (T, H, D), (T, H, H), (T, H).

    Autograd on the model with an untied copy of the recurrent parameters at
    every step; their sum over t is the tied gradient.
    """
    p, params, x, target, h0, numpy_in = to_torch(params, x, target, h0, activation, loss, topology)
    with torch.enable_grad():
        L, _, _, _, _, _, steps = _unrolled(p, params, x, target, h0, untie=True)
        L.backward()
    grads = {}
    for k, leaves in steps.items():
        grads[k] = torch.stack([v.grad if v.grad is not None else torch.zeros_like(v) for v in leaves])
    return from_torch(grads, numpy_in)


def forward(
    params: Mapping,
    x,
    target,
    *,
    h0=None,
    activation: str = "tanh",
    loss: str = "mse",
    topology: str = "many-to-one",
) -> dict:
    """``z``, ``h`` (T, B, H), ``y`` = fy(o) (S, B, O) at the S steps read, and ``loss`` (0-d)."""
    p, params, x, target, h0, numpy_in = to_torch(params, x, target, h0, activation, loss, topology)
    with torch.no_grad():
        L, leaf, _, _, zs, hs, _ = _unrolled(p, params, x, target, h0, untie=False)
        read = hs[-1:] if p.topology == "many-to-one" else hs
        o = torch.stack(read) @ leaf["Why"].T + leaf["by"]  # (S, B, O)
        fy = {"mse": lambda o: o, "cross_entropy": lambda o: torch.softmax(o, -1), "bce": torch.sigmoid}
        out = {"z": torch.stack(zs), "h": torch.stack(hs), "y": fy[p.loss](o), "loss": L}
    return from_torch(out, numpy_in)


"""The model in torch operations: activations, losses, argument conversion."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from contract import Problem, check_inputs

ACT = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "identity": lambda z: z,
}


def step_loss(loss: str, o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One step's loss, reduced like torch's modules (mean)."""
    if loss == "mse":
        return F.mse_loss(o, y)
    if loss == "cross_entropy":
        return F.cross_entropy(o, y.long())
    return F.binary_cross_entropy_with_logits(o, y)


def converter(numpy_in: bool):
    """NumPy → torch (contiguous, no copy where it can), or a torch tensor detached; None stays None."""
    if numpy_in:
        return lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))
    return lambda a: None if a is None else a.detach()


def to_torch(params, x, target, h0, activation, loss, topology):
    """Check the arguments, then hand back torch tensors and whether to return NumPy."""
    p: Problem = check_inputs(params, x, target, h0, activation, loss, topology)
    numpy_in = isinstance(x, np.ndarray)
    t = converter(numpy_in)
    params = {k: t(v) for k, v in params.items()}
    h0 = None if h0 is None else t(h0)
    x = t(x)
    p = dataclasses.replace(p, xp=torch, dtype=x.dtype, device=x.device)  # torch's names
    return p, params, x, t(target), h0, numpy_in


def from_torch(grads: dict, numpy_in: bool) -> dict:
    return {k: (v.detach().cpu().numpy() if numpy_in else v.detach()) for k, v in grads.items()}

"""The model on torch.nn.RNN, torch's production kernel (cuDNN on CUDA)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from contract.errors import BadValue
from reference.model import from_torch, step_loss, to_torch

NN_RNN_ACTIVATIONS = ("tanh", "relu")  # the nonlinearities torch.nn.RNN offers


def nn_rnn_gradients(
    params: Mapping,
    x,
    target,
    *,
    h0=None,
    activation: str = "tanh",
    loss: str = "mse",
    topology: str = "many-to-one",
) -> dict:
    """Gradients ``Wxh Whh bh Why by h0 x`` through ``torch.nn.RNN``.

    Parameters are copied into the module; ``bh`` is split over torch's two
    biases (``bias_ih_l0 + bias_hh_l0 = bh``), so dL/dbh is the gradient of
    either. No per-step ``h``/``z``: nn.RNN does not expose them.
    """
    p, params, x, target, h0, numpy_in = to_torch(params, x, target, h0, activation, loss, topology)
    if activation not in NN_RNN_ACTIVATIONS:
        raise BadValue(
            f"activation must be one of {NN_RNN_ACTIVATIONS} for torch.nn.RNN; got "
            f"{activation!r}. Remedy: use reference.gradients (unrolled autograd) for it."
        )
    dev = x.device
    rnn = torch.nn.RNN(p.D, p.H, nonlinearity=activation, dtype=p.dtype, device=dev)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(params["Wxh"])
        rnn.weight_hh_l0.copy_(params["Whh"])
        rnn.bias_hh_l0.copy_(0.25 * params["bh"])  # any split will do; both sum to bh
        rnn.bias_ih_l0.copy_(params["bh"] - rnn.bias_hh_l0)
    Why = params["Why"].clone().requires_grad_()
    by = params["by"].clone().requires_grad_()
    with torch.enable_grad():
        x = x.clone().requires_grad_()
        if p.topology == "one-to-many":  # x at step 1, zeros after
            zeros = torch.zeros(p.T - 1, p.B, p.D, dtype=p.dtype, device=dev)
            inp = torch.cat([x[None], zeros])  # (T, B, D)
        else:
            inp = x
        h0 = torch.zeros(p.B, p.H, dtype=p.dtype, device=dev) if h0 is None else h0.clone()
        h0.requires_grad_()
        out, _ = rnn(inp, h0[None])  # (T, B, H)
        if p.topology == "many-to-one":
            L = step_loss(p.loss, out[-1] @ Why.T + by, target)
        else:
            L = sum(step_loss(p.loss, out[t] @ Why.T + by, target[t]) for t in range(p.T))
        L.backward()
    g = {"Wxh": rnn.weight_ih_l0.grad, "Whh": rnn.weight_hh_l0.grad, "bh": rnn.bias_ih_l0.grad,
         "Why": Why.grad, "by": by.grad, "h0": h0.grad, "x": x.grad}
    return from_torch(g, numpy_in)

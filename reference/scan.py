"""minGRU and minLSTM as the paper trains them: every gate from x_t at once, then h_t = A_t ⊙ h_{t−1} + B_t for
all t by the log-space parallel scan (log h_t = a*_t + logcumsumexp(log h_0, log B_s − a*_s), a*_t = Σ_{s≤t} log A_s),
under autograd. An independent route to the same gradients as the sequential loop's hand-derived backward."""

from __future__ import annotations

import torch

from contract.errors import BadValue
from contract.module_checks import check_module_inputs
from reference.model import converter, from_torch


def _coefficients(mode: str, a: torch.Tensor, H: int) -> tuple:
    """(A, B) of every step from the pre-activations a (T, B, G·H), in log space: (log A, log B)."""
    g = lambda x: torch.where(x >= 0, x + 0.5, torch.sigmoid(x))  # noqa: E731 - the positive candidate map
    if mode == "MINGRU":
        z, ht = torch.sigmoid(a[..., :H]), g(a[..., H:])
        return torch.log1p(-z), torch.log(z) + torch.log(ht)
    f, i, ht = torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H:2 * H]), g(a[..., 2 * H:])
    return torch.log(f) - torch.log(f + i), torch.log(i) - torch.log(f + i) + torch.log(ht)


def _scan(c, W_ih, b_ih, x, h0):
    """h (T, B, H) by the scan from the layer's input x (T, B, I) and hx (1, B, H)."""
    a = x @ W_ih.T + (b_ih if c.bias else 0)  # (T, B, G·H)
    log_a, log_b = _coefficients(c.mode, a, c.hidden_size)
    a_star = torch.cumsum(log_a, dim=0)  # (T, B, H)
    terms = torch.cat([torch.log(h0[0])[None], log_b - a_star], dim=0)  # (T+1, B, H)
    return torch.exp(a_star + torch.logcumsumexp(terms, dim=0)[1:])


def scan_gradients(config, state_dict, input, hx, *, grad_output=None, grad_hn=None) -> dict:
    """``weight_ih_l0``, ``bias_ih_l0``, ``input``, ``hx`` through the log-space scan: one layer, one direction,
    time-major, every row of full length, hx > 0 (the scan takes log h_0)."""
    p = check_module_inputs(config, state_dict, input, hx, grad_output, grad_hn)
    c = p.config
    if c.mode not in ("MINGRU", "MINLSTM") or c.num_layers != 1 or c.bidirectional or c.batch_first:
        raise BadValue(f"the scan is minGRU's and minLSTM's, one layer, one direction, time-major; got {c}",
                       "config={'mode': 'MINGRU', ...} with num_layers=1, bidirectional=False, batch_first=False")
    t = converter(True)
    with torch.enable_grad():
        leaf = {k: t(v).clone().requires_grad_() for k, v in state_dict.items()}
        x, h0 = t(input).clone().requires_grad_(), t(hx).clone().requires_grad_()
        h = _scan(c, leaf["weight_ih_l0"], leaf.get("bias_ih_l0"), x, h0)  # (T, B, H)
        pairs = [(y, t(g)) for y, g in ((h, grad_output), (h[-1][None], grad_hn)) if g is not None]
        torch.autograd.backward([y for y, _ in pairs], [g for _, g in pairs])
    out = {k: v.grad for k, v in leaf.items()}
    out["input"], out["hx"] = x.grad, h0.grad
    return from_torch(out, True)


def scan_forward(config, state_dict, input, hx):
    """h (T, B, H) by the scan, NumPy in and out (for the forward's proof)."""
    c, t = check_module_inputs(config, state_dict, input, hx, upstream=False).config, converter(True)
    return _scan(c, t(state_dict["weight_ih_l0"]), t(state_dict.get("bias_ih_l0")), t(input), t(hx)).numpy()

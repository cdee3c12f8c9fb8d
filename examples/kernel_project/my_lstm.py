"""A kernel project's LSTM backward, as the checker sees it: one layer, one direction, no projection, no packing.

It stands for your kernel (a CUDA or Triton launch behind the same
signature). Everything it does not support it says so with
``oracle.Unsupported``, so those cases are skipped, not failed.
"""

import numpy as np

import oracle


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_gradients(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None, grad_cn=None,
                   lengths=None):
    """torch.nn.LSTM's BPTT with manual.module_gradients' signature (NumPy arrays in, NumPy arrays out)."""
    for key, ok in (("num_layers", config.get("num_layers", 1) == 1), ("proj_size", not config.get("proj_size")),
                    ("bidirectional", not config.get("bidirectional")), ("lengths", lengths is None)):
        if not ok:
            raise oracle.Unsupported(key)
    x = input.transpose(1, 0, 2) if config.get("batch_first") else input  # (T, B, I)
    T, B, _ = x.shape
    H = config["hidden_size"]
    W, U = state_dict["weight_ih_l0"], state_dict["weight_hh_l0"]  # (4H, I), (4H, H)
    b = state_dict.get("bias_ih_l0", 0) + state_dict.get("bias_hh_l0", 0)  # (4H,)
    h0, c0 = hx if hx is not None else (np.zeros((1, B, H), x.dtype),) * 2
    hs, cs, acts = [h0[0]], [c0[0]], []
    for t in range(T):  # forward, keeping what the backward needs
        a = x[t] @ W.T + hs[-1] @ U.T + b  # (B, 4H), gates i, f, g, o
        i, f, g, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
        cs.append(f * cs[-1] + i * g)
        hs.append(o * np.tanh(cs[-1]))
        acts.append((i, f, g, o))
    zero = np.zeros((B, H), x.dtype)
    gy = grad_output.transpose(1, 0, 2) if grad_output is not None and config.get("batch_first") else grad_output
    dh_next = zero if grad_hn is None else grad_hn[0]
    dc_next = zero if grad_cn is None else grad_cn[0]
    dW, dU, dx = np.zeros_like(W), np.zeros_like(U), np.zeros_like(x)
    db = np.zeros(4 * H, x.dtype)
    steps = {k: np.zeros((T, B, H), x.dtype) for k in ("h", "c", "gate_i", "gate_f", "gate_g", "gate_o")}
    for t in reversed(range(T)):  # backward, one line per equation
        i, f, g, o = acts[t]
        tc = np.tanh(cs[t + 1])
        dh = dh_next + (0 if gy is None else gy[t])
        dc = dc_next + dh * o * (1 - tc**2)
        da = np.concatenate([dc * g * i * (1 - i), dc * cs[t] * f * (1 - f), dc * i * (1 - g**2),
                             dh * tc * o * (1 - o)], axis=1)  # (B, 4H)
        dW += da.T @ x[t]
        dU += da.T @ hs[t]
        db += da.sum(0)
        dx[t] = da @ W
        dh_next, dc_next = da @ U, dc * f
        for k, v in zip(steps, (dh, dc, *np.split(da, 4, axis=1)), strict=True):
            steps[k][t] = v
    out = {"weight_ih_l0": dW, "weight_hh_l0": dU, "input": dx.transpose(1, 0, 2) if config.get("batch_first") else dx,
           "hx": dh_next[None], "cx": dc_next[None], **{f"{k}_l0": v for k, v in steps.items()}}
    if config.get("bias", True):
        out["bias_ih_l0"] = out["bias_hh_l0"] = db
    return out

"""Mistakes in the module's BPTT, as candidates with manual.module_gradients' signature.

``correct`` is an independent NumPy implementation written apart from
manual/ (a plain loop per batch row over its own steps, no masks); each
mutant is it with one mistake people make when they add layers, directions
and variable lengths.
"""

from functools import partial

import numpy as np

ACT = {"RNN_TANH": (np.tanh, lambda z, h: 1 - h**2), "RNN_RELU": (lambda z: np.maximum(z, 0),
                                                                   lambda z, h: (z > 0) * 1.0)}


def module_bptt(config, state_dict, input, hx=None, *, grad_output=None, grad_hn=None, lengths=None, mistake=None):
    mode, L, H = config["mode"], config.get("num_layers", 1), config["hidden_size"]
    bf, bias = config.get("batch_first", False), config.get("bias", True)
    sfx = ("", "_reverse") if config.get("bidirectional", False) else ("",)
    act, dact = ACT[mode]
    x = input.transpose(1, 0, 2) if bf else input
    T, B = x.shape[:2]
    n = list(lengths) if lengths is not None else [T] * B
    hx = np.zeros((L * len(sfx), B, H)) if hx is None else hx
    g_out = np.zeros((T, B, H * len(sfx))) if grad_output is None else (
        grad_output.transpose(1, 0, 2) if bf else grad_output)
    g_hn = np.zeros_like(hx) if grad_hn is None else grad_hn
    W = {k: np.asarray(v) for k, v in state_dict.items()}

    def steps(d, b):  # row b's own steps, in the order direction d runs them
        own = list(range(n[b]))
        reverse = d == 1 and mistake != "reverse_not_reversed"
        return own[::-1] if reverse else own

    layer_in, caches = x, []
    for k in range(L):
        outs = []
        for d, s in enumerate(sfx):
            z, h, prev = (np.zeros((T, B, H)) for _ in range(3))
            for b in range(B):
                state = hx[k * len(sfx) + d, b]
                for t in steps(d, b):
                    prev[t, b] = state
                    z[t, b] = W[f"weight_ih_l{k}{s}"] @ layer_in[t, b] + W[f"weight_hh_l{k}{s}"] @ state
                    if bias:
                        z[t, b] += W[f"bias_ih_l{k}{s}"] + W[f"bias_hh_l{k}{s}"]
                    state = act(z[t, b])
                    h[t, b] = state
            caches.append((k, d, s, layer_in, z, h, prev))
            outs.append(h)
        layer_in = np.concatenate(outs, axis=-1)

    grads, dhx = {}, np.zeros_like(hx)
    d_out = g_out
    for k in range(L - 1, -1, -1):
        d_in = np.zeros_like(caches[k * len(sfx)][3])
        for d, s in enumerate(sfx):
            _, _, _, xin, z, h, prev = caches[k * len(sfx) + d]
            i = k * len(sfx) + d
            dh, dz = np.zeros((T, B, H)), np.zeros((T, B, H))
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                if f"{name}_l{k}{s}" in W:
                    grads[f"{name}_l{k}{s}"] = np.zeros_like(W[f"{name}_l{k}{s}"])
            for b in range(B):
                own = steps(d, b)
                carry = g_hn[i, b].copy()  # dL/dh_n enters at the row's own last step
                if mistake == "hn_at_T" and d == 0 and n[b] < T:
                    carry = np.zeros(H)  # … as if h_n were the state at step T, which this row never reaches
                for t in own[::-1]:
                    dh[t, b] = carry + d_out[t, b, d * H:(d + 1) * H]
                    dz[t, b] = dh[t, b] * dact(z[t, b], h[t, b])
                    grads[f"weight_ih_l{k}{s}"] += np.outer(dz[t, b], xin[t, b])
                    grads[f"weight_hh_l{k}{s}"] += np.outer(dz[t, b], prev[t, b])
                    if bias:
                        grads[f"bias_ih_l{k}{s}"] += dz[t, b]
                        if mistake != "bias_hh_dropped":
                            grads[f"bias_hh_l{k}{s}"] += dz[t, b]
                    d_in[t, b] += W[f"weight_ih_l{k}{s}"].T @ dz[t, b]
                    carry = W[f"weight_hh_l{k}{s}"].T @ dz[t, b]
                dhx[i, b] = carry
                for t in range(n[b], T):  # padded steps: the state carried through them, and its gradient
                    dh[t, b] = g_hn[i, b] if d == 0 else carry
            grads[f"h_l{k}{s}"], grads[f"z_l{k}{s}"] = dh, dz
        d_out = np.zeros_like(d_in) if mistake == "layer_grad_not_flowing" else d_in
    grads["input"] = d_out.transpose(1, 0, 2) if bf else d_out
    grads["hx"] = dhx
    return grads


correct = module_bptt
reverse_not_reversed = partial(module_bptt, mistake="reverse_not_reversed")
hn_at_T = partial(module_bptt, mistake="hn_at_T")
layer_grad_not_flowing = partial(module_bptt, mistake="layer_grad_not_flowing")
bias_hh_dropped = partial(module_bptt, mistake="bias_hh_dropped")

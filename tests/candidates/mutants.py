"""A catalogue of classic BPTT mistakes, as candidates with manual.gradients' signature.

``correct`` is an independent NumPy implementation (plain loops, written
apart from manual/); each mutant is it with one classic mistake. The oracle
must pass the first and fail every other, naming the right tensor and, for
mistakes made inside the time loop, the first time step they show in.
"""

from functools import partial

import numpy as np

ACT = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0),
       "identity": lambda z: z}
DACT = {"tanh": lambda z, h: 1 - h**2, "sigmoid": lambda z, h: h * (1 - h),
        "relu": lambda z, h: (z > 0) * 1.0, "identity": lambda z, h: np.ones_like(z)}


def _dloss(loss, o, y):
    """(dL/do) of one step's mean loss, o (B, O)."""
    B, O = o.shape
    if loss == "mse":
        return 2 * (o - y) / (B * O)
    if loss == "bce":
        return (1 / (1 + np.exp(-o)) - y) / (B * O)
    p = np.exp(o - o.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(B), y] -= 1
    return p / B


def bptt(params, x, target, *, h0=None, activation="tanh", loss="mse", topology="many-to-one", mistake=None):
    Wxh, Whh, bh, Why, by = (np.asarray(params[k]) for k in ("Wxh", "Whh", "bh", "Why", "by"))
    T = target.shape[0] if topology == "one-to-many" else x.shape[0]
    xs = [x if t == 0 else np.zeros_like(x) for t in range(T)] if topology == "one-to-many" else list(x)
    hs = [np.zeros((xs[0].shape[0], Whh.shape[0]), x.dtype) if h0 is None else h0]
    zs = []
    for t in range(T):
        zs.append(xs[t] @ Wxh.T + hs[-1] @ Whh.T + bh)
        hs.append(ACT[activation](zs[-1]))
    reads = [T - 1] if topology == "many-to-one" else list(range(T))
    g = {k: np.zeros_like(v) for k, v in (("Wxh", Wxh), ("Whh", Whh), ("bh", bh), ("Why", Why), ("by", by))}
    direct = [np.zeros_like(hs[0]) for _ in range(T)]
    for t in reads:
        y = target if topology == "many-to-one" else target[t]
        do = _dloss(loss, hs[t + 1] @ Why.T + by, y)
        g["Why"] += do.T @ hs[t + 1]
        g["by"] += do.sum(axis=0)
        if not (mistake == "drop_direct_term" and t < T - 1):
            direct[t] = do @ Why
    dh, dz = [None] * T, [None] * T
    for t in reversed(range(T)):
        dh[t] = direct[t].copy()
        if t < T - 1:
            W = Whh.T if mistake == "Whh_transpose_missing" else Whh
            dh[t] += dz[t + 1] @ W
        s = t + 1 if mistake == "act_prime_of_next_step" and t < T - 1 else t
        dact = DACT["tanh"] if mistake == "tanh_prime_for_any_act" else DACT[activation]
        dz[t] = dh[t] * dact(zs[s], hs[s + 1])
        if mistake == "last_step_only" and t < T - 1:
            continue
        prev = hs[t + 1] if mistake == "h_t_for_h_prev" else hs[t]
        g["Whh"] += (prev.T @ dz[t]) if mistake == "dWhh_transposed" else (dz[t].T @ prev)
        g["Wxh"] += dz[t].T @ xs[t]
        g["bh"] += dz[t].sum(axis=0)
    g["h0"] = np.zeros_like(hs[0]) if mistake == "dh0_left_zero" else dz[0] @ Whh
    g["x"] = dz[0] @ Wxh if topology == "one-to-many" else np.stack([d @ Wxh for d in dz])
    g["h"], g["z"] = np.stack(dh), np.stack(dz)
    return g


correct = bptt
dWhh_transposed = partial(bptt, mistake="dWhh_transposed")
h_t_for_h_prev = partial(bptt, mistake="h_t_for_h_prev")
act_prime_of_next_step = partial(bptt, mistake="act_prime_of_next_step")
drop_direct_term = partial(bptt, mistake="drop_direct_term")
tanh_prime_for_any_act = partial(bptt, mistake="tanh_prime_for_any_act")
Whh_transpose_missing = partial(bptt, mistake="Whh_transpose_missing")
dh0_left_zero = partial(bptt, mistake="dh0_left_zero")
last_step_only = partial(bptt, mistake="last_step_only")


def not_a_dict(*args, **kwargs):
    """A candidate that returns the wrong kind of thing."""
    return [1]

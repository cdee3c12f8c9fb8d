"""Central finite differences of the loss in float64: a check that owes nothing to autograd."""

from __future__ import annotations

import numpy as np

import manual
from contract.cells import CELLS
from oracle.policy import FD_STEP as STEP  # the step of central differences (its reason: oracle.policy)

FD_NAMES = ("Wxh", "Whh", "bh", "Why", "by", "h0", "x")


def fd_gradient(inputs: dict, kwargs: dict, which: str) -> np.ndarray:
    """dL/d(which) by central differences on manual.forward's loss; ``which`` is a param, 'x' or 'h0'."""
    def loss(inp):
        return float(manual.forward(inp["params"], inp["x"], inp["target"], h0=inp["h0"], **kwargs)["loss"])

    in_params = which in inputs["params"]
    base = inputs["params"][which] if in_params else inputs[which]
    return central_differences(base, lambda a: loss({**inputs, "params": {**inputs["params"], which: a}}
                                                    if in_params else {**inputs, which: a}))


def fd_errors(grads: dict, inputs: dict, kwargs: dict) -> dict:
    """name → max |grads[name] − finite differences| / max(|fd|, |L|, 1), for FD_NAMES."""
    if inputs.get("h0") is None:
        B, H = inputs["x"].shape[-2], inputs["params"]["Whh"].shape[0]
        inputs = {**inputs, "h0": np.zeros((B, H))}
    L = abs(float(manual.forward(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"],
                                 **kwargs)["loss"]))
    out = {}
    for name in FD_NAMES:
        fd = fd_gradient(inputs, kwargs, name)
        out[name] = float(np.abs(np.asarray(grads[name]) - fd).max() / max(np.abs(fd).max(), L, 1.0))
    return out


def module_scalar(inputs: dict) -> float:
    """L = Σ grad_output ⊙ output + Σ grad_hn ⊙ h_n on manual.module_forward: the scalar whose gradient
    the module contract's upstream gradients define."""
    out = manual.module_forward(inputs["config"], inputs["state_dict"], inputs["input"], inputs["hx"],
                                lengths=inputs["lengths"], zoneout_masks=inputs.get("zoneout_masks"))
    L = 0.0
    for grad, value in (("grad_output", "output"), ("grad_hn", "h_n"), ("grad_cn", "c_n"), ("grad_nn", "n_n"),
                        ("grad_mn", "m_n")):
        if inputs.get(grad) is not None:
            L += float(np.sum(inputs[grad] * out[value]))
    return L


def module_fd_errors(grads: dict, inputs: dict) -> dict:
    """name → max |grads[name] − central differences| / max(|fd|, |L|, 1), every parameter, input and hx."""
    L = abs(module_scalar(inputs))
    targets = {k: ("state_dict", k) for k in inputs["state_dict"]}
    targets["input"] = (None, "input")
    if isinstance(inputs["hx"], tuple):  # the LSTM's (h0, c0), the sLSTM's (h0, c0, n0, m0)
        carried = CELLS[inputs["config"]["mode"]].carried
        targets.update({f"{st}x": ("hx", j) for j, st in enumerate(carried)})
    else:
        targets["hx"] = (None, "hx")

    def moved(group, key, a):
        if group == "hx":
            pair = list(inputs["hx"])
            pair[key] = a
            return {**inputs, "hx": tuple(pair)}
        return {**inputs, group: {**inputs[group], key: a}} if group else {**inputs, key: a}

    out = {}
    for name, (group, key) in targets.items():
        base = inputs[group][key] if group else inputs[key]
        fd = central_differences(base, lambda a, group=group, key=key: module_scalar(moved(group, key, a)))
        out[name] = float(np.abs(np.asarray(grads[name]) - fd).max() / max(np.abs(fd).max(), L, 1.0))
    return out


def central_differences(base: np.ndarray, loss_at) -> np.ndarray:
    """dL/d(base) entry by entry: (L(base + h e_i) − L(base − h e_i)) / 2h, ``loss_at(a)`` the loss at ``a``."""
    fd = np.zeros_like(base)  # base's shape
    for idx in np.ndindex(base.shape):
        vals = []
        for sign in (1, -1):
            a = base.copy()
            a[idx] += sign * STEP
            vals.append(loss_at(a))
        fd[idx] = (vals[0] - vals[1]) / (2 * STEP)
    return fd


def recurrence_scalar(args: dict, kwargs: dict) -> float:
    """L = Σ grad_o ⊙ o + Σ grad_final_state ⊙ final_state on manual.recurrence_forward (``args``: variant, q,
    k, v, g, beta; ``kwargs``: scale, initial_state, cu_seqlens, use_qk_l2norm, grad_o, grad_final_state)."""
    from manual.recurrence import recurrence_forward

    fwd = {n: a for n, a in kwargs.items() if n not in ("grad_o", "grad_final_state")}
    o, final = recurrence_forward(**args, **fwd)
    return sum(float(np.sum(kwargs[n] * a)) for n, a in (("grad_o", o), ("grad_final_state", final))
               if kwargs.get(n) is not None)


def recurrence_fd_errors(grads: dict, args: dict, kwargs: dict) -> dict:
    """name → max |grads[name] − central differences| / max(|fd|, |L|, 1), for every input in ``grads``."""
    L = abs(recurrence_scalar(args, kwargs))
    out = {}
    for name in grads:
        if name in args and args[name] is not None:
            fd = central_differences(args[name], lambda a, n=name: recurrence_scalar({**args, n: a}, kwargs))
        elif kwargs.get(name) is not None:  # initial_state
            fd = central_differences(kwargs[name], lambda a, n=name: recurrence_scalar(args, {**kwargs, n: a}))
        else:
            continue
        out[name] = float(np.abs(np.asarray(grads[name]) - fd).max() / max(np.abs(fd).max(), L, 1.0))
    return out

"""The float64 truth of a case, and how well the case itself lets it be known.

``truth()`` returns autograd's gradient set in float64 with two companions,
both in units of eps and the shape of each tensor (see oracle.compare):

* ``mag``, the magnitude: the backward pass run on absolute values, with the
  terms of each cancelling factor in place of its result, so rounding errors
  made anywhere in the backward pass are bounded by eps · (a few) · mag;
* ``sens``, the sensitivity: how far each entry moves when every input moves
  by one float64 rounding error, which is how the forward pass's own
  cancellation reaches the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import reference
from oracle.compare import EPS, Report, compare


@dataclass
class Truth:
    grads: dict  # name → float64 array, the gradient set
    sens: dict  # name → sensitivity (per unit of eps)
    mag: dict  # name → magnitude of the backward pass

    def compare(self, got: dict, **kwargs) -> Report:
        return compare(got, self.grads, sens=self.sens, mag=self.mag, **kwargs)


def as_float64(inputs: dict) -> dict:
    """Inputs widened to float64 NumPy (cross-entropy's integer targets stay integer)."""
    def f(a):
        if a is None:
            return None
        a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
        return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a
    return {"params": {k: f(v) for k, v in inputs["params"].items()}, "x": f(inputs["x"]),
            "target": f(inputs["target"]), "h0": f(inputs.get("h0"))}


def _perturbed(inputs: dict, rng: np.random.Generator) -> dict:
    """Every float input times (1 + eps·u), u uniform in [−1, 1]: one rounding error each."""
    def p(a):
        if a is None or not np.issubdtype(a.dtype, np.floating):
            return a
        return a * (1 + EPS["float64"] * rng.uniform(-1, 1, a.shape))
    return {"params": {k: p(v) for k, v in inputs["params"].items()}, "x": p(inputs["x"]),
            "target": p(inputs["target"]), "h0": p(inputs["h0"])}


def _grads(inputs: dict, kwargs: dict) -> dict:
    return reference.gradients(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **kwargs)


# |act'(z)| from the forward values, and the absolute rounding error of act'
# computed from the rounded h (in eps): 2|h|·|h| ≤ 2 for 1 − h², |1 − 2h|·h ≤ 1 for h(1 − h)
ABS_DACT = {
    "tanh": lambda z, h: (1 - h * h) + 2,
    "sigmoid": lambda z, h: h * (1 - h) + 1,
    "relu": lambda z, h: (z > 0).astype(np.float64),
    "identity": lambda z, h: np.ones_like(z),
}


def magnitude(inputs: dict, kwargs: dict) -> dict:
    """The backward pass on absolute values: an element-wise scale for its rounding errors."""
    P, x, target = inputs["params"], inputs["x"], inputs["target"]
    fwd = reference.forward(P, x, target, h0=inputs["h0"], **kwargs)
    z, h, y = fwd["z"], fwd["h"], fwd["y"]  # (T, B, H), (T, B, H), (S, B, O)
    T, B, H = h.shape
    S, O = y.shape[0], y.shape[2]
    h0 = np.zeros((B, H)) if inputs["h0"] is None else inputs["h0"]
    hprev = np.concatenate([h0[None], h[:-1]])  # (T, B, H)
    A = {k: np.abs(v) for k, v in P.items()}
    yt = target if kwargs["topology"] != "many-to-one" else target[None]
    if kwargs["loss"] == "cross_entropy":  # |p| + |onehot|, mean over B
        do = (y + (yt[..., None] == np.arange(O))) / B  # (S, B, O)
    else:  # |fy(o)| + |y|, mean over B·O (mse carries its factor 2)
        do = (2 if kwargs["loss"] == "mse" else 1) * (np.abs(y) + np.abs(yt)) / (B * O)
    dact = ABS_DACT[kwargs["activation"]](z, h)  # (T, B, H)
    dh = np.zeros((T, B, H))
    dh[T - S:] = do @ A["Why"]
    dz = np.zeros((T, B, H))
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            dh[t] += dz[t + 1] @ A["Whh"]
        dz[t] = dh[t] * dact[t]
    hr = h[T - S:]
    mag = {"Why": np.einsum("sbo,sbh->oh", do, np.abs(hr)), "by": do.sum(axis=(0, 1)),
           "Whh": np.einsum("tbi,tbj->ij", dz, np.abs(hprev)), "bh": dz.sum(axis=(0, 1)),
           "h0": dz[0] @ A["Whh"], "h": dh, "z": dz}
    if kwargs["topology"] == "one-to-many":
        mag["Wxh"], mag["x"] = dz[0].T @ np.abs(x), dz[0] @ A["Wxh"]
    else:
        mag["Wxh"], mag["x"] = np.einsum("tbi,tbj->ij", dz, np.abs(x)), dz @ A["Wxh"]
    return mag


def truth(inputs: dict, kwargs: dict, draws: int = 2, seed: int = 0) -> Truth:
    """Autograd's gradient set in float64 on ``inputs``, with its sensitivity and magnitude.

    ``inputs``: ``params``, ``x``, ``target``, ``h0`` (any library or dtype:
    they are widened to float64 first); ``kwargs``: activation, loss, topology.
    """
    inputs = as_float64(inputs)
    want = _grads(inputs, kwargs)
    rng = np.random.default_rng(seed)
    sens = {k: np.zeros_like(v) for k, v in want.items()}
    for _ in range(draws):
        moved = _grads(_perturbed(inputs, rng), kwargs)
        for k in sens:
            sens[k] = np.maximum(sens[k], np.abs(moved[k] - want[k]) / EPS["float64"])
    return Truth(want, sens, magnitude(inputs, kwargs))

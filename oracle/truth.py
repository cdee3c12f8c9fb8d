"""The float64 truth of a case, and how well the case itself lets it be known.

``truth()`` returns autograd's gradient set in float64 with two companions,
each the shape of its tensor (see oracle.compare for how they are used):

* ``amp``, the amplification (≥ 1) of rounding errors by cancellation in the
  backward pass: κ_loss · κ_act. κ_loss = max(|fy(o)| + |y|) / max|fy(o) − y|
  over the loss's gradient dL/do (p − onehot when the softmax is confident,
  o − y when the fit is close): the terms are rounded, not their difference;
  taken per step over the steps s ≥ t, as the scale of ``h`` is. κ_act =
  max|dh_t| / max|dz_t| at step t (act'(z) taken from the rounded h loses
  digits where units saturate: the seed's 1 − h² when h → ±1). Per step for
  ``h``, ``z`` and ``x``; their largest values for the sums over steps.
* ``sens``, the sensitivity: how far each entry moves, per unit of eps, when
  every input moves by one float64 rounding error; this is how the forward
  pass's own cancellation (z_t near 0 from terms of order 1) reaches the
  gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oracle.cases import run
from oracle.compare import EPS, Report, compare, has_time_axis


@dataclass
class Truth:
    grads: dict  # name → float64 array, the gradient set
    sens: dict | None = None  # name → sensitivity (per unit of eps)
    amp: dict | None = None  # name → amplification of rounding errors by cancellation (≥ 1)
    steps: dict | None = None  # name → time order (oracle.compare.time_order); None: the seed model's
    size: tuple[int, int] | None = None  # (T, K) of the bound; None: read off the shapes

    def compare(self, got: dict, **kwargs) -> Report:
        return compare(got, self.grads, sens=self.sens, amp=self.amp, steps=self.steps, size=self.size, **kwargs)


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


def _suffix_max(a: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(a[::-1])[::-1]


def amplification(inputs: dict, kwargs: dict, grads: dict) -> dict:
    """κ_loss · κ_act for every tensor of the gradient set, broadcast to its shape."""
    import reference  # here, not at the top: a worker process imports oracle without torch

    P, target = inputs["params"], inputs["target"]
    y = reference.forward(P, inputs["x"], target, h0=inputs["h0"], **kwargs)["y"]  # fy(o), (S, B, O)
    yt = target if kwargs["topology"] != "many-to-one" else target[None]
    if kwargs["loss"] == "cross_entropy":
        yt = (yt[..., None] == np.arange(y.shape[-1])).astype(np.float64)  # onehot (S, B, O)
    T, S = grads["h"].shape[0], y.shape[0]
    terms, diff = np.zeros(T), np.zeros(T)  # per step t, zero where the loss reads nothing
    terms[T - S:] = (np.abs(y) + np.abs(yt)).reshape(S, -1).max(axis=1)
    diff[T - S:] = np.abs(y - yt).reshape(S, -1).max(axis=1)
    terms, diff = _suffix_max(terms), _suffix_max(diff)  # on the same steps as the scale of h
    k_loss = np.divide(terms, diff, out=np.ones(T), where=diff > 0).clip(min=1.0)  # (T,)
    dh, dz = (np.abs(grads[k]).reshape(T, -1).max(axis=1) for k in ("h", "z"))  # (T,)
    k_act = np.divide(dh, dz, out=np.ones(T), where=dz > 0).clip(min=1.0)  # (T,)
    amp = {}
    for name, g in grads.items():
        per_step = lambda k: k.reshape(-1, *([1] * (g.ndim - 1)))  # noqa: E731, B023
        if name == "h":
            k = per_step(k_loss)
        elif name in ("Why", "by"):  # made from dL/do alone
            k = k_loss.max()
        elif has_time_axis(name, g):  # z, and x with a time axis
            k = per_step(k_loss * k_act)
        else:  # a sum over steps may be made of its most cancelling step alone
            k = k_loss.max() * k_act.max()
        amp[name] = np.broadcast_to(np.asarray(k, dtype=np.float64), g.shape).copy()
    return amp


def finite_truth(want: dict) -> None:
    """NonFiniteGradientError naming the first tensor of a float64 truth that is not finite (the inputs overflow
    even in float64: there is nothing to judge against)."""
    from contract import NonFiniteGradientError

    for name, g in want.items():
        if not np.isfinite(g).all():
            raise NonFiniteGradientError(f"{name} (the float64 truth)", None)


def truth(inputs: dict, kwargs: dict, draws: int = 2, seed: int = 0) -> Truth:
    """Autograd's gradient set in float64 on ``inputs``, with its sensitivity and amplification.

    ``inputs``: ``params``, ``x``, ``target``, ``h0`` (any library or dtype:
    they are widened to float64 first); ``kwargs``: activation, loss, topology.
    """
    import reference  # here, not at the top: a worker process imports oracle without torch

    inputs = as_float64(inputs)
    want = run(reference.gradients, inputs, kwargs)
    finite_truth(want)
    rng = np.random.default_rng(seed)
    sens = {k: np.zeros_like(v) for k, v in want.items()}
    for _ in range(draws):
        moved = run(reference.gradients, _perturbed(inputs, rng), kwargs)
        for k in sens:
            sens[k] = np.maximum(sens[k], np.abs(moved[k] - want[k]) / EPS["float64"])
    return Truth(want, sens, amplification(inputs, kwargs, want))

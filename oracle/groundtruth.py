"""The float64 truth of a case, and how well the case itself lets it be known.

``truth()`` returns autograd's gradient set in float64 with two companions,
each the shape of its tensor (see oracle.compare for how they are used):

* ``amp``, the amplification (≥ 1) of rounding errors by cancellation in the
  backward pass: κ_loss · κ_act. κ_loss = max(|fy(o)| + |y|) / max|fy(o) − y|
  over the loss's gradient dL/do (p − onehot when the softmax is confident,
  o − y when the fit is close): the terms are rounded, not their difference;
  taken per step over the steps s ≥ t, as the scale of ``h`` is; and for
  each batch row alone, weighed by the row's part of the tensor (one
  confident row that makes a gradient alone brings its own κ). κ_act =
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

from oracle.judge import EPS, Report, compare, has_time_axis
from oracle.policy import AMP_CAP, ROW_KAPPA_FACTOR


@dataclass
class Truth:
    grads: dict  # name → float64 array, the gradient set
    sens: dict | None = None  # name → sensitivity (per unit of eps)
    amp: dict | None = None  # name → amplification of rounding errors by cancellation (≥ 1)
    steps: dict | None = None  # name → time order (oracle.judge.time_order); None: the seed model's
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


def seed_run(fn, inputs: dict, kwargs: dict) -> dict:
    """``fn`` with ``manual.gradients``' signature (oracle.cases.seed.run; here, so that the truth needs no case)."""
    return fn(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **kwargs)


def sensitivity(grads_of, inputs: dict, want: dict, map_arrays, draws: int = 2, seed: int = 0) -> dict:
    """name → how far each float64 entry of ``want`` = ``grads_of(inputs)`` moves, per unit of eps, when every
    float input moves by one rounding error (times 1 + eps·u, u uniform in [−1, 1]), the largest over ``draws``
    random draws. ``map_arrays(f, inputs)`` applies ``f`` to every float input (the case's own)."""
    rng = np.random.default_rng(seed)
    sens = {k: np.zeros_like(v) for k, v in want.items()}
    for _ in range(draws):
        moved = grads_of(map_arrays(lambda a: a * (1 + EPS["float64"] * rng.uniform(-1, 1, a.shape)), inputs))
        for k in sens:
            sens[k] = np.maximum(sens[k], np.abs(moved[k] - want[k]) / EPS["float64"])
    return sens


def _suffix_max(a: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(a[::-1])[::-1]


def _rows(inputs: dict, kwargs: dict, grads: dict) -> dict | None:
    """name → (B, *shape): each batch row's part of every gradient. The seed model's rows never meet and each
    step's loss is a mean over them, so row b's part is the gradient set of row b alone, over B; None when the
    parts do not add up to ``grads`` (then no row-wise amplification is taken)."""
    import reference

    B = grads["h"].shape[1]
    if B == 1:
        return None
    x_axis = 0 if kwargs["topology"] == "one-to-many" else 1
    y_axis = 0 if kwargs["topology"] == "many-to-one" else 1
    parts = []
    for b in range(B):
        one = {"params": inputs["params"], "x": np.take(inputs["x"], [b], axis=x_axis),
               "target": np.take(inputs["target"], [b], axis=y_axis),
               "h0": None if inputs["h0"] is None else inputs["h0"][b:b + 1]}
        parts.append(seed_run(reference.gradients, one, kwargs))
    rows = {}
    for name, g in grads.items():
        if name in ("h", "z", "x", "h0"):  # the batch axis: the rows' own entries
            axis = 0 if g.ndim == 2 else 1
            rows[name] = np.moveaxis(g, axis, 0)  # (B, ...)
            continue
        part = np.stack([p[name] / B for p in parts])  # (B, *shape)
        if not np.allclose(part.sum(axis=0), g, rtol=1e-9, atol=1e-12 * float(np.abs(g).max(initial=0.0))):
            return None
        rows[name] = part
    return rows


def amplification(inputs: dict, kwargs: dict, grads: dict) -> dict:
    """κ_loss · κ_act for every tensor of the gradient set, broadcast to its shape."""
    import reference  # here, not at the top: a worker process imports oracle without torch

    P, target = inputs["params"], inputs["target"]
    y = reference.forward(P, inputs["x"], target, h0=inputs["h0"], **kwargs)["y"]  # fy(o), (S, B, O)
    yt = target if kwargs["topology"] != "many-to-one" else target[None]
    if kwargs["loss"] == "cross_entropy":
        yt = (yt[..., None] == np.arange(y.shape[-1])).astype(np.float64)  # onehot (S, B, O)
    T, S, B = grads["h"].shape[0], y.shape[0], y.shape[1]
    terms, diff = np.zeros((T, B)), np.zeros((T, B))  # per step t and row b, zero where the loss reads nothing
    terms[T - S:] = (np.abs(y) + np.abs(yt)).max(axis=2)
    diff[T - S:] = np.abs(y - yt).max(axis=2)
    terms, diff = _suffix_max(terms), _suffix_max(diff)  # on the same steps as the scale of h
    k_loss = np.divide(terms.max(axis=1), diff.max(axis=1), out=np.ones(T),
                       where=diff.max(axis=1) > 0).clip(min=1.0)  # (T,) the rows' largest terms over differences
    k_row = np.divide(terms, diff, out=np.ones((T, B)), where=diff > 0).clip(min=1.0)  # (T, B) each row's own
    dh, dz = (np.abs(grads[k]).reshape(T, -1).max(axis=1) for k in ("h", "z"))  # (T,)
    k_act = np.divide(dh, dz, out=np.ones(T), where=dz > 0).clip(min=1.0)  # (T,)
    # rows are weighed only where one cancels over ROW_KAPPA_FACTOR times the rows together (oracle.policy)
    rows = _rows(inputs, kwargs, grads) if (k_row.max(axis=1) > ROW_KAPPA_FACTOR * k_loss).any() else None
    amp = {}
    with np.errstate(over="ignore"):  # a product of κs may overflow: AMP_CAP (oracle.policy) then holds it
        for name, g in grads.items():
            per_step = lambda k: k.reshape(-1, *([1] * (g.ndim - 1)))  # noqa: E731, B023
            act = 1.0  # h, Why, by: made from dL/do alone (h's act part is z's)
            if name == "h":
                k = per_step(k_loss)
            elif name in ("Why", "by"):
                k = k_loss.max()
            elif has_time_axis(name, g):  # z, and x with a time axis
                k, act = per_step(k_loss * k_act), per_step(k_act)
            else:  # a sum over steps may be made of its most cancelling step alone
                k, act = k_loss.max() * k_act.max(), k_act.max()
            if rows is not None:  # a row that cancels more than the rows together, weighed by its part of the tensor
                k = np.maximum(k, act * _row_weighted(rows[name], k_row, stepped=has_time_axis(name, g)))
            amp[name] = np.minimum(np.broadcast_to(np.asarray(k, dtype=np.float64), g.shape), AMP_CAP)
    return amp


def _row_weighted(part: np.ndarray, k_row: np.ndarray, stepped: bool) -> np.ndarray:
    """max over rows b of κ_b · (row b's largest entry) / (the tensor's largest entry): per step (over the
    steps s ≥ t, as the scale) for a tensor with a time axis; else with each row's κ over all its steps
    (its largest terms over its largest difference, as the rows together are taken)."""
    B = part.shape[0]
    if stepped:  # part (B, T, ...)
        T = part.shape[1]
        m = _suffix_max(np.abs(part).reshape(B, T, -1).max(axis=2).T)  # (T, B)
        top = m.max(axis=1, keepdims=True)  # (T, 1)
        w = np.divide(m, top, out=np.zeros_like(m), where=top > 0)
        return (k_row * w).max(axis=1).reshape(-1, *([1] * (part.ndim - 1)))  # (T, 1, ...), as the tensor (T, B, ...)
    m = np.abs(part).reshape(B, -1).max(axis=1)  # (B,)
    top = m.max()  # a sum over steps: each row's κ over all its steps at once (row t = 0 of the suffix)
    return np.asarray(float((k_row[0] * m).max() / top) if top > 0 else 1.0)


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
    from oracle.cases.seed import Case

    inputs = as_float64(inputs)
    grads_of = lambda i: seed_run(reference.gradients, i, kwargs)  # noqa: E731
    want = grads_of(inputs)
    finite_truth(want)
    sens = sensitivity(grads_of, inputs, want, Case.map_arrays, draws, seed)
    return Truth(want, sens, amplification(inputs, kwargs, want))

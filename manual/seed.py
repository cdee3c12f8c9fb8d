"""The seed notes' two worked examples, written out equation by equation.

No loop: read it beside the notes' equations as the README states them
("The model and the derivation"). The notes use column vectors (``matmul(Wxh, x1)``); here, as in the
rest of the project, rows are batch entries, so Wxh x_t becomes ``x_t @ Wxh.T``
and "⋅ transpose(h1)" becomes ``dz.T @ h1``. The notes' shorthand made precise:

* "dL/dh2 ⋅ 1 − squared(h2) ⋅ transpose(h1)" is (dL/dh2 ⊙ (1 − h2²))ᵀ h1:
  an element-wise product, then an outer product (summed over the batch).
* "dh2/dh1 = 1 − squared(h2) ⋅ Whh" is diag(1 − h2²) Whh, so in vector form
  dL/dh1 = (dL/dh2 ⊙ (1 − h2²)) Whh: the transpose sits on the row vector.
* "dy/dh2 = Why" holds because fy is the identity here (MSE on y).
* BPTT2 writes 1 − h² where it means act'(z) for a general act; the four-step
  function below uses act'(z), which is what the notes' last lines say.

An overflow raises ``NonFiniteGradientError`` naming the first quantity (and
its step) that stopped being finite; NumPy's own warnings are kept quiet.

Both examples are many-to-one with a mean-squared-error loss, L = mean((y − y_true)²).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from array_api_compat import array_namespace

from contract import NonFiniteGradientError, all_finite
from manual.activations import ACTIVATIONS
from manual.errstate import numpy_quiet


def _step(name: str, T: int) -> int | None:
    """The step of a quantity: its key's digit ("h2", "dL/dWhh (t=2)"); T for y, L, dL/dy; None for dL/dWhh."""
    digit = re.search(r"(\d)\)?$", name)
    if digit:
        return int(digit[1])
    return None if name == "dL/dWhh" else T


def _finite(xp, out: dict, T: int) -> dict:
    """The notes' quantities, in the order computed; the first that overflowed raises, naming its step."""
    for name, v in out.items():
        if not all_finite(xp, v):
            raise NonFiniteGradientError(name, _step(name, T))
    return out


@numpy_quiet
def two_step(params: Mapping, x1, x2, h0, y_true) -> dict:
    """BPTT of the notes' first example: two steps, tanh, identity output, MSE.

    Shapes: ``x1``, ``x2`` (B, D); ``h0`` (B, H); ``y_true`` (B, O).
    Returns every quantity the notes name, keyed as they write it.
    """
    xp = array_namespace(x1)
    Wxh, Whh, bh, Why, by = (params[k] for k in ("Wxh", "Whh", "bh", "Why", "by"))
    # forward
    h1 = xp.tanh(x1 @ Wxh.T + h0 @ Whh.T + bh)  # h1 = fh(Wxh x1 + Whh h0 + bh)   (B, H)
    h2 = xp.tanh(x2 @ Wxh.T + h1 @ Whh.T + bh)  # h2 = fh(Wxh x2 + Whh h1 + bh)   (B, H)
    y = h2 @ Why.T + by  # y = fy(Why h2 + by), fy = identity                      (B, O)
    L = xp.mean((y - y_true) ** 2)  # L = L(y, y_true)
    dL_dy = 2 * (y - y_true) / (y.shape[0] * y.shape[1])  # dL/dy for the mean     (B, O)
    # T = 2
    dL_dh2 = dL_dy @ Why  # dL/dh2 = dL/dy ⋅ Why                                   (B, H)
    dL_dWhh_2 = (dL_dh2 * (1 - h2**2)).T @ h1  # dL/dh2 ⋅ 1 − squared(h2) ⋅ transpose(h1)  (H, H)
    # T = 1
    dL_dh1 = (dL_dh2 * (1 - h2**2)) @ Whh  # dL/dh1 = dL/dh2 ⋅ 1 − squared(h2) ⋅ Whh  (B, H)
    dL_dWhh_1 = (dL_dh1 * (1 - h1**2)).T @ h0  # dL/dh1 ⋅ 1 − squared(h1) ⋅ transpose(h0)  (H, H)
    # total gradient with respect to Whh
    dL_dWhh = dL_dWhh_1 + dL_dWhh_2  # (H, H)
    return _finite(xp, {
        "h1": h1, "h2": h2, "y": y, "L": L, "dL/dy": dL_dy,
        "dL/dh2": dL_dh2, "dL/dWhh (t=2)": dL_dWhh_2,
        "dL/dh1": dL_dh1, "dL/dWhh (t=1)": dL_dWhh_1,
        "dL/dWhh": dL_dWhh,
    }, T=2)


@numpy_quiet
def four_step(params: Mapping, x1, x2, x3, x4, h0, y_true, activation: str = "tanh") -> dict:
    """BPTT of the notes' second example (BPTT2): four steps, a general act, MSE.

    Shapes: ``x1`` … ``x4`` (B, D); ``h0`` (B, H); ``y_true`` (B, O).
    """
    xp = array_namespace(x1)
    act, dact = ACTIVATIONS[activation]
    Wxh, Whh, bh, Why, by = (params[k] for k in ("Wxh", "Whh", "bh", "Why", "by"))
    # [Forward propagation]
    z1 = x1 @ Wxh.T + h0 @ Whh.T + bh  # z1 = matmul(Wxh, x1) + matmul(Whh, h0) + bh  (B, H)
    h1 = act(z1)  # h1 = act(z1)                                                     (B, H)
    z2 = x2 @ Wxh.T + h1 @ Whh.T + bh  # (B, H)
    h2 = act(z2)  # (B, H)
    z3 = x3 @ Wxh.T + h2 @ Whh.T + bh  # (B, H)
    h3 = act(z3)  # (B, H)
    z4 = x4 @ Wxh.T + h3 @ Whh.T + bh  # (B, H)
    h4 = act(z4)  # (B, H)
    y = h4 @ Why.T + by  # y = matmul(Why, h4) + by                                   (B, O)
    L = xp.mean((y - y_true) ** 2)
    dL_dy = 2 * (y - y_true) / (y.shape[0] * y.shape[1])  # (B, O)
    # T = 4
    dL_dh4 = dL_dy @ Why  # dL/dh4 = dL/dy ⋅ Why                                     (B, H)
    dL_dWhh_4 = (dL_dh4 * dact(z4, h4)).T @ h3  # dL/dh4 ⋅ act(z4)' ⋅ transpose(h3)   (H, H)
    # T = 3
    dL_dh3 = (dL_dh4 * dact(z4, h4)) @ Whh  # dL/dh3 = dL/dh4 ⋅ act(z4)' ⋅ Whh        (B, H)
    dL_dWhh_3 = (dL_dh3 * dact(z3, h3)).T @ h2  # dL/dh3 ⋅ act(z3)' ⋅ transpose(h2)   (H, H)
    # T = 2
    dL_dh2 = (dL_dh3 * dact(z3, h3)) @ Whh  # dL/dh2 = dL/dh3 ⋅ act(z3)' ⋅ Whh        (B, H)
    dL_dWhh_2 = (dL_dh2 * dact(z2, h2)).T @ h1  # dL/dh2 ⋅ act(z2)' ⋅ transpose(h1)   (H, H)
    # T = 1
    dL_dh1 = (dL_dh2 * dact(z2, h2)) @ Whh  # dL/dh1 = dL/dh2 ⋅ act(z2)' ⋅ Whh        (B, H)
    dL_dWhh_1 = (dL_dh1 * dact(z1, h1)).T @ h0  # dL/dh1 ⋅ act(z1)' ⋅ transpose(h0)   (H, H)
    # total gradient with respect to Whh
    dL_dWhh = dL_dWhh_1 + dL_dWhh_2 + dL_dWhh_3 + dL_dWhh_4  # (H, H)
    return _finite(xp, {
        "z1": z1, "h1": h1, "z2": z2, "h2": h2, "z3": z3, "h3": h3, "z4": z4, "h4": h4,
        "y": y, "L": L, "dL/dy": dL_dy,
        "dL/dh4": dL_dh4, "dL/dWhh (t=4)": dL_dWhh_4,
        "dL/dh3": dL_dh3, "dL/dWhh (t=3)": dL_dWhh_3,
        "dL/dh2": dL_dh2, "dL/dWhh (t=2)": dL_dWhh_2,
        "dL/dh1": dL_dh1, "dL/dWhh (t=1)": dL_dWhh_1,
        "dL/dWhh": dL_dWhh,
    }, T=4)

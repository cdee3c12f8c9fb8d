"""Losses, each with its output function fy and dL/do beside it.

``o`` is the output layer's pre-activation, o_t = h_t Whyᵀ + by, shape
(S, B, O) for the S steps the topology reads. Each step's loss is a mean like
torch's (over B·O elements for mse and bce, over the B rows for cross-entropy);
the sequence's loss is the sum over the S steps. The gradient is taken with
respect to ``o``, so fy's derivative is folded in (softmax + cross-entropy,
sigmoid + BCE give the familiar ``fy(o) − y``).
"""

from array_api_compat import array_namespace, device

from manual.activations import sigmoid


def mse(o, y):
    """fy = identity; L = Σ_s mean_{b,i} (o − y)²."""
    xp = array_namespace(o)
    n = o.shape[-2] * o.shape[-1]  # B·O elements per step
    d = o - y  # (S, B, O)
    return o, xp.sum(d * d) / n, (2 / n) * d


def _log_softmax(o):
    xp = array_namespace(o)
    s = o - xp.max(o, axis=-1, keepdims=True)  # shift: exp never overflows
    return s - xp.log(xp.sum(xp.exp(s), axis=-1, keepdims=True))  # (S, B, O)


def cross_entropy(o, y):
    """fy = softmax; y holds integer classes (S, B); L = Σ_s mean_b −log p[y]."""
    xp = array_namespace(o)
    B, O = o.shape[-2], o.shape[-1]
    onehot = xp.astype(y[..., None] == xp.arange(O, device=device(y)), o.dtype)  # (S, B, O)
    logp = _log_softmax(o)  # (S, B, O)
    p = xp.exp(logp)  # (S, B, O)
    return p, -xp.sum(logp * onehot) / B, (p - onehot) / B


def bce(o, y):
    """fy = sigmoid; L = Σ_s mean_{b,i} −[y log σ(o) + (1 − y) log(1 − σ(o))]."""
    xp = array_namespace(o)
    n = o.shape[-2] * o.shape[-1]
    # max(o, 0) − o·y + log(1 + e^{−|o|}) is the same value without overflow
    value = xp.sum(xp.maximum(o, xp.zeros_like(o)) - o * y + xp.log1p(xp.exp(-xp.abs(o))))
    p = sigmoid(o)  # (S, B, O)
    return p, value / n, (p - y) / n


# name → function returning (y = fy(o), L, dL/do)
LOSSES = {"mse": mse, "cross_entropy": cross_entropy, "bce": bce}

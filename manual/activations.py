"""Hidden activations, each with its derivative beside it.

A derivative takes ``(z, h)`` with ``h = act(z)`` and returns act'(z); it
reads whichever of the two is cheaper, as the seed does for tanh (1 − h²).
"""

from array_api_compat import array_namespace


def tanh(z):
    return array_namespace(z).tanh(z)


def dtanh(z, h):
    # tanh'(z) = 1 − h², the seed's "1 − squared(h)", factored: when tanh
    # saturates (|h| → 1), 1 − h·h loses digits to the rounding of h·h, while
    # 1 − h is exact there (Sterbenz) and (1 − h)(1 + h) rounds only twice.
    return (1 - h) * (1 + h)


def sigmoid(z):
    xp = array_namespace(z)
    e = xp.exp(-xp.abs(z))  # never overflows: exponent ≤ 0
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def dsigmoid(z, h):
    return h * (1 - h)  # σ'(z) = σ(z)(1 − σ(z))


def relu(z):
    xp = array_namespace(z)
    return xp.where(z > 0, z, xp.zeros_like(z))


def drelu(z, h):
    xp = array_namespace(z)
    return xp.astype(z > 0, z.dtype)  # 1 where z > 0, else 0 (0 at z = 0, as torch)


def identity(z):
    return z


def didentity(z, h):
    return array_namespace(z).ones_like(z)


ACTIVATIONS = {
    "tanh": (tanh, dtanh),
    "sigmoid": (sigmoid, dsigmoid),
    "relu": (relu, drelu),
    "identity": (identity, didentity),
}

"""The few in-place operations the time loops are made of.

The BPTT in ``manual.bptt`` is written once against the array-API standard.
Inside its time loops it needs a few things done without allocating:
``c += a @ b``, ``out = a @ b``, ``out = a * b`` (``+``, ``−``) and ``out = act(z)``. The
standard has no ``out=``, so each is given here in three forms, picked once
per call from the array namespace: NumPy's ufuncs with ``out=``, torch's
fused in-place kernels (``addmm_``, ``torch.tanh(out=)``, reached through the
array-API namespace so ``manual`` never imports torch), and a plain array-API
fallback for any other library. Same mathematics, fewer passes over memory:
at small sizes the per-step Python and dispatch overhead is the cost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from array_api_compat import is_numpy_namespace, is_torch_namespace

from manual.activations import ACTIVATIONS


@dataclass(frozen=True)
class Kernels:
    mm_add: Callable  # (c, a, b): c += a @ b
    mm_into: Callable  # (a, b, out): out = a @ b
    mul_into: Callable  # (a, b, out): out = a * b
    add_into: Callable  # (a, b, out): out = a + b
    sub_into: Callable  # (a, b, out): out = a − b
    act_into: Callable  # (z, out): out = act(z)
    sigmoid_into: Callable  # (z, out): out = σ(z), the gates' function (LSTM, GRU)
    tanh_into: Callable  # (z, out): out = tanh(z)
    flush: Callable  # (a): a = 0 where |a| < the dtype's smallest normal, in place (README "Vanishing gradients")


@functools.lru_cache(maxsize=32)
def _tiny(finfo, dtype) -> float:
    """The smallest normal number of float32, float64 (and bfloat16, float32's exponent range); 0 for float16,
    whose subnormals (below 6e-5) hold gradients that matter and cost no CPU time (it computes in float32)."""
    f = finfo(dtype)
    return float(f.tiny) if float(f.max) > 1e38 else 0.0


def _numpy(activation: str) -> Kernels:
    def mm_add(c, a, b):
        c += a @ b

    act = {
        "tanh": lambda z, out: np.tanh(z, out=out),
        "relu": lambda z, out: np.maximum(z, 0, out=out),
        "identity": lambda z, out: np.copyto(out, z),
        "sigmoid": lambda z, out: np.copyto(out, ACTIVATIONS["sigmoid"][0](z)),
    }[activation]
    def sigmoid_into(z, out):  # 1 / (1 + e^{−z}); e^{−z} = inf for z ≪ 0 gives 0, exactly σ's limit
        np.negative(z, out=out)
        np.exp(out, out=out)
        out += 1
        np.reciprocal(out, out=out)

    def flush(a):  # subnormal entries (and −0) become +0: no later operation meets a subnormal operand
        t = _tiny(np.finfo, a.dtype)
        if t:
            np.copyto(a, 0, where=np.abs(a) < t)

    return Kernels(mm_add, lambda a, b, out: np.matmul(a, b, out=out),
                   lambda a, b, out: np.multiply(a, b, out=out), lambda a, b, out: np.add(a, b, out=out),
                   lambda a, b, out: np.subtract(a, b, out=out), act, sigmoid_into,
                   lambda z, out: np.tanh(z, out=out), flush)


def _torch(xp, activation: str) -> Kernels:
    act = {
        "tanh": lambda z, out: xp.tanh(z, out=out),
        "sigmoid": lambda z, out: xp.sigmoid(z, out=out),
        "relu": lambda z, out: xp.clamp(z, min=0, out=out),
        "identity": lambda z, out: out.copy_(z),
    }[activation]
    def flush(a):  # on the CPU only: a GPU computes on subnormals at full speed
        if a.device.type == "cpu":
            t = _tiny(xp.finfo, a.dtype)
            if t:
                a.masked_fill_(a.abs() < t, 0)

    return Kernels(lambda c, a, b: c.addmm_(a, b), lambda a, b, out: xp.mm(a, b, out=out),
                   lambda a, b, out: xp.mul(a, b, out=out), lambda a, b, out: xp.add(a, b, out=out),
                   lambda a, b, out: xp.subtract(a, b, out=out), act, lambda z, out: xp.sigmoid(z, out=out),
                   lambda z, out: xp.tanh(z, out=out), flush)


def _array_api(activation: str) -> Kernels:
    f = ACTIVATIONS[activation][0]

    def mm_add(c, a, b):
        c[...] = c + a @ b

    def mm_into(a, b, out):
        out[...] = a @ b

    def mul_into(a, b, out):
        out[...] = a * b

    def add_into(a, b, out):
        out[...] = a + b

    def sub_into(a, b, out):
        out[...] = a - b

    def act_into(z, out):
        out[...] = f(z)

    def sigmoid_into(z, out):
        out[...] = ACTIVATIONS["sigmoid"][0](z)

    def tanh_into(z, out):
        out[...] = ACTIVATIONS["tanh"][0](z)

    def flush(a):
        return None  # another library: left to its own floating-point mode

    return Kernels(mm_add, mm_into, mul_into, add_into, sub_into, act_into, sigmoid_into, tanh_into, flush)


@functools.lru_cache(maxsize=64)
def kernels(xp, activation: str) -> Kernels:
    """The in-place kernels for arrays of namespace ``xp`` (made once per namespace and activation)."""
    if is_numpy_namespace(xp):
        return _numpy(activation)
    if is_torch_namespace(xp):
        return _torch(xp, activation)
    return _array_api(activation)

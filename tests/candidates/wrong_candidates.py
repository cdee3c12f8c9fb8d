"""Candidates that try to fool the checker, or to end it; each must FAIL with its reason named.

Beside ``mutants.py`` (wrong derivations), these are wrong in the ways
someone else's code is wrong: zeros, low precision, sign flips, the gradient
of another case, inputs changed in place, state kept between calls,
exceptions, exits, aborts, segfaults and hangs. All are module-level
(``functools.partial`` of one) so a worker process can import them.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from functools import partial

import numpy as np

import manual


def right(params, x, target, **kw):
    return manual.gradients(params, x, target, **kw)


def _right_np(params, x, target, **kw):
    return {k: np.asarray(v) for k, v in right(params, x, target, **kw).items()}


# ---------------------------------------------------------------- wrong numbers

def big_endian(params, x, target, **kw):
    """The right answer in big-endian byte order: right, and must read so after the trip from the worker."""
    return {k: v.astype(v.dtype.newbyteorder(">")) for k, v in _right_np(params, x, target, **kw).items()}


def zeros(params, x, target, *, dtype="float64", **kw):
    """Every tensor zero, in ``dtype`` (bfloat16 through torch: NumPy has none)."""
    g = _right_np(params, x, target, **kw)
    if dtype == "bfloat16":
        import torch
        return {k: torch.zeros(v.shape, dtype=torch.bfloat16) for k, v in g.items()}
    return {k: np.zeros(v.shape, dtype=dtype) for k, v in g.items()}


def cast(params, x, target, *, dtype="float16", **kw):
    """The right answer, rounded to ``dtype``."""
    g = _right_np(params, x, target, **kw)
    if dtype == "bfloat16":
        import torch
        return {k: torch.from_numpy(v.astype(np.float32)).to(torch.bfloat16) for k, v in g.items()}
    return {k: v.astype(dtype) for k, v in g.items()}


def only_by_low(params, x, target, *, by_dtype="float16", **kw):
    """Whh 0.5 % wrong, and by alone returned in low precision (once enough to loosen every bound)."""
    g = _right_np(params, x, target, **kw)
    g["Whh"] = g["Whh"] * 1.005
    g["by"] = g["by"].astype(by_dtype)
    return g


def float32_computation(params, x, target, **kw):
    """Computed in float32 and handed back as float64."""
    f = lambda a: a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a  # noqa: E731
    g = right({k: f(v) for k, v in params.items()}, f(x), f(target), **{**kw, "h0": f(kw["h0"])})
    return {k: np.asarray(v).astype(np.float64) for k, v in g.items()}


def scaled(params, x, target, *, name="Whh", factor=1.0, **kw):
    """The right answer with tensor ``name`` alone scaled by ``factor``."""
    g = _right_np(params, x, target, **kw)
    g[name] = g[name] * factor
    return g


def sign_flip(params, x, target, *, name="Whh", **kw):
    return scaled(params, x, target, name=name, factor=-1.0, **kw)


def h0_ignored(params, x, target, **kw):
    """The gradient of another case: the same model started from zeros instead of h0."""
    return _right_np(params, x, target, **{**kw, "h0": None})


# ---------------------------------------------------------------- cheating on the inputs

def zeroes_why_in_place(params, x, target, **kw):
    """Scales params["Why"] by 0 in place: every gradient is then zero, and was once judged so."""
    params["Why"] *= 0
    return _right_np(params, x, target, **kw)


def changes_x(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    x[...] = 0
    return g


def pops_a_param(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    params.pop("by")
    return g


_calls = {"n": 0}


def stateful(params, x, target, **kw):
    """Right on its first call in a process, then off by 1 %."""
    _calls["n"] += 1
    return scaled(params, x, target, name="Wxh", factor=1.0 if _calls["n"] == 1 else 1.01, **kw)


# ---------------------------------------------------------------- wrong kinds of thing

def ragged(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    g["Wxh"] = [[1.0, 2.0], [3.0]]
    return g


def returns_a_list(params, x, target, **kw):
    return list(_right_np(params, x, target, **kw).values())


def transposed_shape(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    g["Wxh"] = g["Wxh"].T.copy()
    return g


def integer_dtype(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    g["bh"] = np.round(g["bh"]).astype(np.int64)
    return g


def holds_an_object(params, x, target, **kw):
    g = _right_np(params, x, target, **kw)
    g["by"] = object()
    return g


# ---------------------------------------------------------------- ending the process, or never returning

def raises(params, x, target, **kw):
    raise RuntimeError("my kernel is broken")


def exits(params, x, target, **kw):
    sys.exit(0)


def hard_exit(params, x, target, **kw):
    os._exit(0)


def aborts(params, x, target, **kw):
    os.abort()


def segfaults(params, x, target, **kw):
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a native kernel's bad pointer would


def hangs(params, x, target, **kw):
    time.sleep(3600)


def keyboard_interrupt(params, x, target, **kw):
    raise KeyboardInterrupt


WRONG = {  # name → (candidate, words the failing report must contain)
    "zeros_float64": (partial(zeros, dtype="float64"), "FAIL (Wxh"),
    "zeros_float32": (partial(zeros, dtype="float32"), "FAIL (Wxh"),
    "zeros_float16": (partial(zeros, dtype="float16"), "FAIL (Wxh"),
    "zeros_bfloat16": (partial(zeros, dtype="bfloat16"), "judged by the case's"),
    "cast_float16": (partial(cast, dtype="float16"), "returned as float16"),
    "cast_bfloat16": (partial(cast, dtype="bfloat16"), "returned as bfloat16"),
    "only_by_float16": (only_by_low, "Whh  FAIL"),
    "sign_flip_Whh": (sign_flip, "Whh  FAIL"),
    "sign_flip_h0": (partial(sign_flip, name="h0"), "h0   FAIL"),
    "h0_ignored": (h0_ignored, "h0   FAIL"),
    "zeroes_why_in_place": (zeroes_why_in_place, 'params["Why"] was modified in place'),
    "changes_x": (changes_x, "x was modified in place"),
    "pops_a_param": (pops_a_param, 'params["by"] was removed'),
    "stateful": (stateful, "call 2 of 2 on the same inputs"),
    "ragged": (ragged, "Wxh: not an array"),
    "returns_a_list": (returns_a_list, "returned list, expected a dict"),
    "transposed_shape": (transposed_shape, "shape (3, 4), expected (4, 3)"),
    "integer_dtype": (integer_dtype, "dtype int64 is not floating"),
    "holds_an_object": (holds_an_object, "by: dtype object is not a number"),
    "raises": (raises, "the candidate raised RuntimeError: my kernel is broken"),
    "exits": (exits, "called sys.exit(0)"),
    "hard_exit": (hard_exit, "exited with status 0"),
    "aborts": (aborts, "SIGABRT"),
    "segfaults": (segfaults, "SIGSEGV"),
    "keyboard_interrupt": (keyboard_interrupt, "raised KeyboardInterrupt"),
}
for _name, (_fn, _) in WRONG.items():  # importable by name, as `bptt check --candidate wrong_candidates:NAME`
    globals()[_name] = _fn


# ---------------------------------------------------------------- attacks on the checker itself

class _Key(str):
    """A str subclass: were it pickled across, unpickling would import this module in the checker."""


def str_subclass_keys(params, x, target, **kw):
    return {_Key(k): np.zeros_like(v) for k, v in _right_np(params, x, target, **kw).items()}


def _reply_pipe():
    import gc
    from multiprocessing.connection import Connection
    return next(c for c in gc.get_objects() if isinstance(c, Connection) and c.writable)


def forges_a_reply(params, x, target, **kw):
    """Writes junk to the worker's reply pipe, framed as a reply."""
    import struct
    os.write(_reply_pipe().fileno(), struct.pack("!Q", 12) + b"not a reply!")
    time.sleep(0.5)
    return _right_np(params, x, target, **kw)


def half_a_reply(params, x, target, **kw):
    """Writes the length of a reply that never comes, then hangs: the checker must not block on it."""
    import struct
    os.write(_reply_pipe().fileno(), struct.pack("!Q", 1000))
    time.sleep(3600)


def forks(params, x, target, **kw):
    """A right candidate whose forked child returns too (it must not answer for the worker)."""
    os.fork()
    return _right_np(params, x, target, **kw)


def leaves_a_child(params, x, target, **kw):
    """Starts a process that would outlive the check; its pid goes to $BPTT_TEST_PIDS."""
    import subprocess
    p = subprocess.Popen(["sleep", "60"])
    with open(os.environ["BPTT_TEST_PIDS"], "a") as f:
        f.write(f"{p.pid}\n")
    return _right_np(params, x, target, **kw)


def meta_tensor(params, x, target, **kw):
    import torch
    g = _right_np(params, x, target, **kw)
    g["Wxh"] = torch.empty(g["Wxh"].shape, device="meta", dtype=torch.float64)
    return g


def extras_and_nones(params, x, target, **kw):
    """Right, with an extra non-numeric entry and h, z given as None (not given)."""
    return {**_right_np(params, x, target, **kw), "note": "v2", "h": None, "z": None}

"""The contract of the matrix-state recurrences (``manual.recurrence_gradients``, ``reference.recurrence``): the
variants' table, the argument names and shapes of the most used public kernel library for this family, and the
input checks that refuse bad input with the argument, the expected and actual value, and a remedy.

Shapes: q, k [B, T, H, K]; v [B, T, HV, V] with HV a multiple of H (value head j reads key head j // (HV/H));
g [B, T, HV] (one decay per head) or [B, T, HV, K] (one per key channel), in log space; beta [B, T, HV] or
[B, T, HV, V] (one per value channel); initial_state [N, HV, K, V]; cu_seqlens [N + 1] (then B = 1 and N
sequences lie along T, positions from cu_seqlens[N] on are padding); o [B, T, HV, V]; final_state [N, HV, K, V].
N is B when unpacked. The decay and β act on the state, so they have the state's HV heads, as the library's
grouped kernels index them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from contract.checks import (
    CAST_REMEDY,
    array_arg,
    name_arg,
    quiet_errors,
    require_finite,
    require_nonempty,
)
from contract.errors import BadType, BadValue
from contract.module_checks import int_list, same_kind

# variant → (decay: None, "head" (e^{g} S) or "key" (diag(e^{g}) S); the delta rule's correction)
VARIANTS = {
    "linear_attention": (None, False),
    "gla_head": ("head", False),
    "gla": ("key", False),
    "delta_rule": (None, True),
    "gated_delta_rule": ("head", True),
    "kda": ("key", True),
}
INPUTS = ("q", "k", "v", "g", "beta", "initial_state")  # every input a gradient may be asked of, in order
L2NORM_EPS = 1e-6  # x / √(Σx² + ε), ε inside the root, as the kernels' use_qk_l2norm_in_kernel


@dataclass(frozen=True)
class RecurrenceProblem:
    """Sizes and settings of one validated call."""

    variant: str
    B: int
    T: int
    H: int  # key heads (q, k)
    HV: int  # value heads (v, the state, o, g, beta)
    K: int
    V: int
    spans: tuple  # ((bos, eos), …): each sequence's positions along T; unpacked: ((0, T),) for all B rows at once
    packed: bool
    scale: float
    beta_per_channel: bool
    use_qk_l2norm: bool
    wrt: tuple  # the inputs whose gradients are asked, in INPUTS' order
    xp: Any
    dtype: Any
    device: Any

    @property
    def decay(self) -> str | None:
        return VARIANTS[self.variant][0]

    @property
    def delta(self) -> bool:
        return VARIANTS[self.variant][1]

    @property
    def N(self) -> int:  # noqa: N802 - the contract's letter
        return len(self.spans) if self.packed else self.B

    @property
    def groups(self) -> int:
        return self.HV // self.H


LAYOUT_REMEDY = "reshape it to the library's layout [B, T, heads, channels]"
STATE_REMEDY = ("one state per sequence, [N, HV, K, V] (N = B, or len(cu_seqlens) − 1 when packed); "
                "s.transpose(-1, -2) if it is [N, HV, V, K]")
GATE_REMEDY = ("a decay per key channel [B, T, HV, K] is variant 'gla' or 'kda's, one per head [B, T, HV] "
               "'gla_head' or 'gated_delta_rule's: pick the variant of your gate")


def _cu_seqlens(cu_seqlens, B: int, T: int) -> tuple | None:
    """((bos, eos), …) from ``cu_seqlens`` (an integer array of any library, or a list of ints)."""
    if cu_seqlens is None:
        return None
    values = int_list("cu_seqlens", cu_seqlens, "[N + 1]", "the sequences' cumulative lengths, starting at 0",
                      "[0, 5, 12]")
    if B != 1:
        raise BadValue(f"cu_seqlens packs the sequences along T, so B must be 1; got B = {B}. Remedy: "
                       "q.reshape(1, B * T, H, K) (and v, g, beta alike) with cu_seqlens [0, T, 2T, …], or "
                       "cu_seqlens=None.")
    if len(values) < 2 or values[0] != 0:
        raise BadValue(f"cu_seqlens must start at 0 and hold at least two entries [0, …, total]; got {values}. "
                       "Remedy: e.g. [0, 5, 12] for sequences of 5 and 7.")
    bad = next((i for i in range(1, len(values)) if values[i] <= values[i - 1]), None)
    if bad is not None:
        raise BadValue(f"cu_seqlens must be strictly increasing (every sequence at least one step); got "
                       f"{values[bad - 1]} then {values[bad]} at entries {bad - 1}, {bad}. Remedy: drop empty "
                       "sequences.")
    if values[-1] > T:
        raise BadValue(f"cu_seqlens must end at most at T = {T}; got {values[-1]}. Remedy: pass the packed "
                       "input whole, or cut cu_seqlens to it (positions past its last entry are padding).")
    return tuple(zip(values[:-1], values[1:], strict=True))


def _scale(scale, K: int) -> float:
    if scale is None:
        return K ** -0.5
    if getattr(scale, "ndim", None) == 0 and getattr(getattr(scale, "dtype", None), "kind", "f") in "fiu":
        scale = float(scale)  # a 0-d NumPy array (a torch 0-d tensor is refused below: it may live on a GPU)
    if not isinstance(scale, numbers.Real) or isinstance(scale, (bool, np.bool_)):
        raise BadType(f"scale must be a real number or None (K^-1/2); got {type(scale).__name__} {scale!r}. "
                      "Remedy: e.g. scale=0.125.")
    if not math.isfinite(scale):
        raise BadValue(f"scale must be finite; got {scale}. Remedy: scale=None for K^-1/2.")
    return float(scale)


def _wrt(wrt, given: tuple) -> tuple:
    if wrt is None:
        return given
    if not isinstance(wrt, (str, list, tuple, set, frozenset)):
        raise BadType(f"wrt must be an input's name or a list of names ({', '.join(given)}), or None; got "
                      f"{type(wrt).__name__} {wrt!r}. Remedy: e.g. wrt=['q', 'k'], or wrt=None for all of them.")
    names = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    for n in names:
        if n not in given:
            raise BadValue(f"wrt names {n!r}, which is not an input given to this call; the inputs given are "
                           f"{', '.join(given)}. Remedy: name only those (wrt=None asks for all of them).")
    if not names:
        raise BadValue(f"wrt is empty: no gradient is asked. Remedy: name some of {', '.join(given)}, or None.")
    return tuple(n for n in INPUTS if n in names)


def _keys_and_values(q, k, v):
    """(``like``: the check of another array against q, (B, T, H, K), (HV, V)) after q, k and v are checked."""
    array_arg("q", q)
    xp, dtype, dev = array_namespace(q), q.dtype, device(q)
    if not xp.isdtype(dtype, "real floating"):
        raise BadType(f"q must have a real floating dtype; got {dtype}. Remedy: {CAST_REMEDY}.")
    if q.ndim != 4:
        raise BadValue(f"q must be 4-D [B, T, H, K]; got shape {tuple(q.shape)}. Remedy: heads apart from the "
                       "key channels, e.g. q.reshape(B, T, H, K).")
    B, T, H, K = (int(n) for n in q.shape)
    for what, n in (("B (batch rows)", B), ("T (time steps)", T), ("H (heads)", H), ("K (key channels)", K)):
        require_nonempty("q", n, what)

    def like(arg, a, shape, meaning, remedy=LAYOUT_REMEDY):
        same_kind(arg, a, "q", q, xp, dtype, dev, shape, meaning, remedy=remedy)

    like("k", k, (B, T, H, K), "[B, T, H, K], as q")
    array_arg("v", v)
    if v.ndim != 4:
        raise BadValue(f"v must be 4-D [B, T, HV, V]; got shape {tuple(v.shape)}. Remedy: heads apart from the "
                       "value channels, e.g. v.reshape(B, T, HV, V).")
    if tuple(v.shape[:2]) != (B, T) or v.shape[2] < 1 or v.shape[2] % H or v.shape[3] < 1:
        raise BadValue(f"v must be [B, T, HV, V] with B, T = {B}, {T} as q's and HV a multiple of q's H = {H}; "
                       f"got shape {tuple(v.shape)}. Remedy: one value head per key head, or a whole group of "
                       "value heads per key head (grouped value heads).")
    HV, V = int(v.shape[2]), int(v.shape[3])
    like("v", v, (B, T, HV, V), "[B, T, HV, V]")
    return like, (B, T, H, K), (HV, V)


def _gate_remedy(arg: str, shape: tuple, B: int, T: int, H: int, HV: int, K: int, V: int) -> str:
    """What to do with a g or β of the wrong shape: spread over the value heads, pick the variant of the gate,
    or reshape."""
    if H != HV and shape[:3] == (B, T, H):
        return (f"{arg} acts on the state, which has HV = {HV} value heads: g.repeat_interleave({HV // H}, dim=2) "
                f"(torch) or numpy.repeat({arg}, {HV // H}, axis=2)")
    if arg == "g" and shape[:3] == (B, T, HV) and len(shape) in (3, 4):
        return GATE_REMEDY
    if arg == "beta" and shape == (B, T, HV, K):
        return f"β per value channel is [B, T, HV, V], one per value channel (V = {V}), not per key channel"
    return LAYOUT_REMEDY


def _gate_and_beta(variant: str, g, beta, like, B, T, H, HV, K, V) -> dict:
    """{"g": g, "beta": beta} as the variant takes them, each checked."""
    decay, delta = VARIANTS[variant]
    gate = {None: None, "head": (B, T, HV), "key": (B, T, HV, K)}[decay]
    named = {}
    for arg, a, shapes, meaning in (
            ("g", g, (gate,) if gate else (), f"the log-space decay, one per {decay} ({variant})"),
            ("beta", beta, ((B, T, HV), (B, T, HV, V)) if delta else (), "one per head or per value channel")):
        if not shapes and a is not None:
            takers = ", ".join(n for n, f in VARIANTS.items() if f[arg == "beta"])
            raise BadValue(f"{arg} must be None for variant {variant!r}, which has no "
                           f"{'decay' if arg == 'g' else 'delta rule'}; got {type(a).__name__}. Remedy: drop it, or "
                           f"pick a variant that takes it ({takers}).")
        if shapes and a is None:
            raise BadValue(f"variant {variant!r} needs {arg} ({meaning}), shape {' or '.join(map(str, shapes))}; "
                           f"got None. Remedy: pass it.")
        if a is not None:
            shape = tuple(getattr(a, "shape", ()))
            like(arg, a, shape if shape in shapes else shapes[0],
                 f"({meaning}{', or ' + str(shapes[1]) if len(shapes) > 1 else ''})",
                 _gate_remedy(arg, shape, B, T, H, HV, K, V))
            named[arg] = a
    return named


def _flag(arg: str, flag) -> bool:
    if not isinstance(flag, (bool, np.bool_)):
        raise BadType(f"{arg} must be True or False; got {flag!r}. Remedy: pass a bool.")
    return bool(flag)


def check_recurrence_inputs(variant, q, k, v, g=None, beta=None, *, scale=None, initial_state=None,
                            cu_seqlens=None, use_qk_l2norm=False, grad_o=None, grad_final_state=None,
                            wrt=None, per_step: bool = True, upstream: bool = True) -> RecurrenceProblem:
    """Check every argument of ``recurrence_gradients`` (``upstream=False``: of the forward pass alone)."""
    name_arg("variant", variant, tuple(VARIANTS))
    like, (B, T, H, K), (HV, V) = _keys_and_values(q, k, v)
    named = {"q": q, "k": k, "v": v, **_gate_and_beta(variant, g, beta, like, B, T, H, HV, K, V)}
    spans = _cu_seqlens(cu_seqlens, B, T)
    N = len(spans) if spans is not None else B
    if initial_state is not None:
        like("initial_state", initial_state, (N, HV, K, V),
             "[N, HV, K, V]: one state per sequence (N = B, or len(cu_seqlens) − 1 when packed)", STATE_REMEDY)
        named["initial_state"] = initial_state
    l2norm, _ = _flag("use_qk_l2norm", use_qk_l2norm), _flag("per_step", per_step)
    if upstream and grad_o is None and grad_final_state is None:
        raise BadValue("grad_o and grad_final_state are both None: there is no loss to differentiate. Remedy: "
                       "pass dL/do [B, T, HV, V] and/or dL/dfinal_state [N, HV, K, V].")
    for arg, a, shape, remedy in (("grad_o", grad_o, (B, T, HV, V), LAYOUT_REMEDY),
                                  ("grad_final_state", grad_final_state, (N, HV, K, V), STATE_REMEDY)):
        if a is not None:
            like(arg, a, shape, "(the shape of what it differentiates)", remedy)
            named[arg] = a
    xp = array_namespace(q)
    with quiet_errors(xp):
        for arg, a in named.items():
            require_finite(arg, xp, a)
    given = tuple(n for n in INPUTS if n in named)
    return RecurrenceProblem(variant, B, T, H, HV, K, V, spans or ((0, T),), spans is not None, _scale(scale, K),
                             beta is not None and beta.ndim == 4, l2norm, _wrt(wrt, given), xp, q.dtype, device(q))


__all__ = ["INPUTS", "L2NORM_EPS", "VARIANTS", "RecurrenceProblem", "check_recurrence_inputs"]

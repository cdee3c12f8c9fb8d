"""Judging a gradient set against the float64 truth, tensor by tensor, by the bound of ``oracle.policy``
(its docstring gives the formula and the reason for each term)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from contract import GRAD_NAMES
from contract.errors import BadType, BadValue
from oracle.policy import COND_FACTOR, EPS, LOW_CAP, LOW_FACTOR, LOW_FLOOR, MAX_TOL, REF_FACTOR, C
from oracle.precision import LOW

TIME_AXIS = ("h", "z")  # always (T, B, H); "x" too when it is (T, B, D)


def has_time_axis(name: str, a) -> bool:
    return name in TIME_AXIS or (name == "x" and a.ndim == 3)


def dtype_name(a) -> str:
    return str(getattr(a, "dtype", a)).rsplit(".", 1)[-1]


def tolerance(dtype: str, T: int, K: int) -> float:
    """The bound on the normalised error for ``dtype`` at T steps, inner size K."""
    if dtype not in EPS:
        raise BadValue(
            f"dtype must be one of {', '.join(EPS)}; got {dtype!r}. Remedy: cast the "
            "gradients to a floating dtype."
        )
    return C[dtype] * EPS[dtype] * math.sqrt(T * max(K, 1))


def sizes(want: dict) -> tuple[int, int]:
    """(T, K) of a gradient set, read off its shapes (T = 1 when no tensor has a time axis)."""
    if "h" in want:
        T = want["h"].shape[0]
    elif "x" in want and want["x"].ndim == 3:
        T = want["x"].shape[0]
    else:
        T = 1
    K = max((max(a.shape[1:] if has_time_axis(k, a) else a.shape, default=1) for k, a in want.items()), default=1)
    return int(T), int(K)


def to_numpy(a) -> np.ndarray:
    """Any array (NumPy, torch on any device, bfloat16 included) as float64 NumPy."""
    if hasattr(a, "detach"):  # torch: no NumPy bfloat16, so widen on the torch side
        a = a.detach().cpu()
        if a.is_floating_point():
            a = a.double()
        return a.numpy()
    return np.asarray(a)


def _label(name: str, idx: tuple, stepped: bool) -> str:
    """``name[t=…, b=…, i=…]`` for a (T, B, I) tensor with a time axis (t 1-based, as the seed numbers h1 … hT);
    ``name[t=…, b=…, head=…, …]`` for a (T, B, heads, …) one (a matrix-state recurrence's); else the index."""
    if stepped and len(idx) == 3:
        return f"{name}[t={idx[0] + 1}, b={idx[1]}, i={idx[2]}]"
    if stepped:
        return f"{name}[t={idx[0] + 1}, b={idx[1]}, head={idx[2]}{''.join(f', {i}' for i in idx[3:])}]"
    return f"{name}[{', '.join(map(str, idx))}]" if idx else name


@dataclass
class TensorReport:
    name: str
    status: str  # "pass", "FAIL", or "not given"
    shape: tuple = ()
    dtype: str = ""
    mismatched: int = 0
    total: int = 0
    first: str = ""  # first mismatch in (t, b, i) order
    backward_first_t: int | None = None  # first wrong step in the order BPTT computes (t = T … 1)
    max_abs: float = 0.0
    max_abs_at: str = ""
    max_rel: float = 0.0
    max_rel_at: str = ""
    normalised: float = 0.0
    tol: float = 0.0
    ref_normalised: float | None = None
    nonfinite: int = 0  # NaN/Inf where the truth is finite
    why: str = ""
    note: str = ""  # e.g. returned in a lower precision than the case

    @property
    def ok(self) -> bool:
        return self.status != "FAIL"

    def line(self, width: int = 4) -> str:
        """This tensor's verdict, its name padded to ``width`` (the report's longest) so that columns align."""
        if self.status in ("not given", "not needed"):
            return f"  {self.name:<{width}} {self.status} (not checked)"
        if self.why:
            return f"  {self.name:<{width}} FAIL  {self.why}"
        s = (f"  {self.name:<{width}} {self.status:<4}  {self.mismatched}/{self.total} mismatched  "
             f"err {self.normalised:.2e} (tol {self.tol:.1e}")
        s += f", autograd {self.ref_normalised:.2e})" if self.ref_normalised is not None else ")"
        if self.mismatched:
            s += f"\n        first mismatch {self.first}"
            if self.backward_first_t is not None:
                s += f"; backward pass first wrong at t={self.backward_first_t}"
            s += (f"\n        max abs err {self.max_abs:.3e} at {self.max_abs_at}; "
                  f"max rel err {self.max_rel:.3e} at {self.max_rel_at}")
        if self.nonfinite:
            s += f"\n        {self.nonfinite} NaN/Inf where the truth is finite"
        if self.note:
            s += f"\n        {self.note}"
        return s


@dataclass
class Report:
    tensors: list[TensorReport] = field(default_factory=list)
    title: str = ""
    notes: list[str] = field(default_factory=list)  # how the candidate's tensors were read (e.g. a layout)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tensors)

    @property
    def failures(self) -> list[TensorReport]:
        return [t for t in self.tensors if not t.ok]

    def __getitem__(self, name: str) -> TensorReport:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"no tensor {name!r} in this report; it holds {', '.join(t.name for t in self.tensors)}")

    @property
    def worst(self) -> float:
        return max((t.normalised for t in self.tensors if t.status != "not given"), default=0.0)

    def __str__(self) -> str:
        head = f"{self.title}: " if self.title else ""
        verdict = "pass" if self.ok else f"FAIL ({', '.join(t.name for t in self.failures)})"
        width = max([4, *(len(t.name) for t in self.tensors)])
        return "\n".join([f"{head}{verdict}", *(f"  note: {n}" for n in self.notes),
                          *(t.line(width) for t in self.tensors)])


TIME_ORDERS = (None, "suffix", "prefix", "all")


def time_order(name: str, a, time="auto") -> str | None:
    """How tensor ``name``'s steps are scaled: None (no time axis), "suffix" (step t by the steps s ≥ t: the
    backward pass of a forward recurrence computes t = T … 1), "prefix" (s ≤ t: a reverse-direction
    recurrence), "all" (every step: both directions mix in it). "auto": the seed model's rule."""
    if time == "auto":
        return "suffix" if has_time_axis(name, a) else None
    if time not in TIME_ORDERS:
        raise BadValue(f"time order of {name} must be one of {TIME_ORDERS}; got {time!r}")
    return time


def _scale(want: np.ndarray, time: str | None, future=None) -> np.ndarray:
    """The scale each element's error is measured on, broadcastable to ``want``."""
    a = np.abs(want)
    if isinstance(future, list):  # a module's hx / cx: row r is step 0 of its layer and direction's h / c
        rows = [max(a[r].max(initial=0.0), float(np.abs(to_numpy(f)).max(initial=0.0))) for r, f in enumerate(future)]
        return np.asarray(rows).reshape((-1,) + (1,) * (a.ndim - 1))
    if future is not None:  # h0 is dL/dh_0, step 0 of h: its scale is the suffix max at step 0
        return np.asarray(max(a.max(initial=0.0), float(np.abs(to_numpy(future)).max(initial=0.0))))
    if time in ("suffix", "prefix"):  # step t's scale: max |truth| over the steps computed before it
        step_max = a.reshape(a.shape[0], -1).max(axis=1)  # (T,)
        acc = np.maximum.accumulate(step_max[::-1])[::-1] if time == "suffix" else np.maximum.accumulate(step_max)
        return acc.reshape((-1,) + (1,) * (a.ndim - 1))
    return np.asarray(a.max(initial=0.0))


def _safe(s: np.ndarray) -> np.ndarray:
    return np.where(s > 0, s, np.finfo(np.float64).tiny)


def allowed_error(want: np.ndarray, scale: np.ndarray, dtype: str, tol: float, *, ref_err: float | None = None,
                  sens=None, amp=None) -> np.ndarray:
    """The largest |got − truth| each element may have: ``BOUND``, the policy's one formula.

    ``want``: the float64 truth; ``scale``: its scale (broadcastable);
    ``dtype``: the case's dtype; ``tol``: C·eps·√(T·K) for it; ``ref_err``:
    autograd's normalised error in that dtype (None in float64, or when
    autograd overflowed: it then vouches for nothing); ``sens``, ``amp``: the
    truth's sensitivity and amplification.
    """
    if dtype in LOW:  # bfloat16, float16: relative to autograd in the dtype (oracle.policy, LOW_FACTOR)
        rel = LOW_FLOOR * EPS[dtype]
        if ref_err is not None and np.isfinite(ref_err):
            rel = max(rel, LOW_FACTOR * ref_err)
        return np.broadcast_to(min(rel, LOW_CAP) * scale, want.shape)
    rel = tol * (1.0 if amp is None else to_numpy(amp))  # C·eps·√(T·K)·amp
    if ref_err is not None and np.isfinite(ref_err):
        rel = np.maximum(rel, REF_FACTOR * ref_err)
    allowed = rel * scale
    if sens is not None:
        allowed = allowed + COND_FACTOR * EPS[dtype] * to_numpy(sens)
    return np.broadcast_to(np.minimum(allowed, MAX_TOL * scale), want.shape)




def bounds(name: str, want, *, dtype: str, tol: float, ref=None, future=None, sens=None,
           amp=None, time="auto") -> tuple[np.ndarray, np.ndarray, float | None]:
    """(allowed |got − truth| per element, scale, autograd's normalised error) of tensor ``name``.

    Everything here comes from the case: its truth ``want``, its dtype, its
    sizes (in ``tol``) and autograd's result ``ref`` on its own inputs.
    """
    want = to_numpy(want).astype(np.float64)
    scale = _safe(_scale(want, time_order(name, want, time), future))
    ref_err = None
    if ref is not None:
        ref_err = float((np.abs(to_numpy(ref).astype(np.float64) - want) / scale).max(initial=0.0))
    return allowed_error(want, scale, dtype, tol, ref_err=ref_err, sens=sens, amp=amp), scale, ref_err


def compare_tensor(name: str, got, want, *, tol: float, dtype: str = "float64", ref=None, future=None, sens=None,
                   amp=None, time="auto") -> TensorReport:
    """Judge one tensor against its float64 truth ``want`` by the bound of ``dtype`` (the case's).

    ``tol``: C·eps·√(T·K) of ``dtype``; ``ref``: autograd's result in the
    case's dtype (reduced precision), from the case's own inputs; ``future``:
    for ``h0``, the truth of ``h``, whose scale continues to step 0;
    ``sens``, ``amp``: the truth's sensitivity and amplification (``oracle.truth``),
    the shape of ``want``; see the module's docstring.
    """
    want = to_numpy(want).astype(np.float64)
    rep = TensorReport(name, "pass", shape=tuple(want.shape), total=int(want.size), tol=tol)
    if got is None:
        rep.status, rep.why = "FAIL", "missing"
        return rep
    rep.dtype = dtype_name(got)
    try:
        g = to_numpy(got)
    except Exception as e:  # noqa: BLE001 - whatever a candidate hands back, the verdict is a report
        rep.status, rep.why = "FAIL", f"not an array ({type(got).__name__}: {e})"
        return rep
    if not np.issubdtype(g.dtype, np.floating):
        rep.status, rep.why = "FAIL", f"dtype {g.dtype} is not floating"
        return rep
    if tuple(g.shape) != tuple(want.shape):
        rep.status, rep.why = "FAIL", f"shape {tuple(g.shape)}, expected {tuple(want.shape)}"
        return rep
    g = g.astype(np.float64)
    order = time_order(name, want, time)
    stepped = order is not None and want.ndim >= 3
    bad_finite = ~np.isfinite(g) & np.isfinite(want)
    d = np.where(bad_finite, np.inf, np.abs(g - want))
    allowed, scale, rep.ref_normalised = bounds(name, want, dtype=dtype, tol=tol, ref=ref, future=future, sens=sens,
                                                amp=amp, time=order)
    rep.normalised = float((d / scale).max(initial=0.0))
    rep.tol = float((allowed / scale).max(initial=0.0))  # the bound in the units of `normalised`
    mism = ~(d <= allowed) | bad_finite  # NaN counts as a mismatch, and so does NaN/Inf where the truth is finite
    rep.mismatched = int(mism.sum())
    rep.nonfinite = int(bad_finite.sum())
    if rep.mismatched:
        rep.status = "FAIL"
        if EPS.get(rep.dtype, 0.0) > EPS[dtype]:
            rep.note = f"returned as {rep.dtype}, judged by the case's {dtype} bound"
        where = np.argwhere(mism)
        rep.first = _label(name, tuple(int(i) for i in where[0]), stepped)
        if stepped:  # a reverse-direction recurrence computes t = 1 … T
            rep.backward_first_t = int(where[:, 0].min() if order == "prefix" else where[:, 0].max()) + 1
        ia = np.unravel_index(int(np.argmax(np.where(np.isnan(d), np.inf, d))), d.shape)
        rep.max_abs, rep.max_abs_at = float(d[ia]), _label(name, tuple(map(int, ia)), stepped)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(want != 0, d / np.abs(want), np.where(d > 0, np.inf, 0.0))
        ir = np.unravel_index(int(np.argmax(np.where(np.isnan(rel), np.inf, rel))), rel.shape)
        rep.max_rel, rep.max_rel_at = float(rel[ir]), _label(name, tuple(map(int, ir)), stepped)
    return rep


def compare(got: dict, want: dict, *, dtype: str = "float64", ref: dict | None = None, sens: dict | None = None,
            amp: dict | None = None, tol: float | None = None, optional: tuple[str, ...] = (),
            title: str = "", steps: dict | None = None, size: tuple[int, int] | None = None,
            skip: tuple[str, ...] = ()) -> Report:
    """Judge the gradient set ``got`` against the float64 truth ``want``.

    ``dtype``: the precision the candidate was asked to compute in (the
    case's dtype); the bound is that dtype's, whatever dtypes ``got`` holds.
    Every name in ``want`` is compared; a name of ``optional`` that ``got``
    lacks is reported "not given" instead of failing; a name of ``skip`` (a
    gradient the case did not ask for) is reported "not needed", never
    judged. ``ref`` is autograd's
    gradient set in ``dtype`` on the same inputs (reduced precision), ``tol``
    overrides C·eps·√(T·K) of :func:`tolerance`; ``sens`` and ``amp`` are the
    truth's sensitivity and amplification (:func:`oracle.groundtruth.truth`), which
    widen the bound where the case itself cancels. See ``BOUND``.
    ``steps``: name → time order (:func:`time_order`) for gradient sets other
    than the seed model's; ``size``: (T, K) for the bound, read off ``want``
    when None.
    """
    if dtype not in EPS:
        raise BadValue(f"dtype must be one of {', '.join(EPS)} (the case's dtype); got {dtype!r}. "
                         "Remedy: pass the dtype the candidate was asked to compute in, e.g. dtype='float32'.")
    if not isinstance(got, Mapping):
        raise BadType(f"got must be a dict name → array (a gradient set); got {type(got).__name__}. "
                        "Remedy: return {'Wxh': ..., 'Whh': ..., ...} as manual.gradients does.")
    if not isinstance(want, Mapping) or not want:
        raise (TypeError if not isinstance(want, Mapping) else ValueError)(
            f"want must be a non-empty dict name → float64 array (the truth); got "
            f"{type(want).__name__ if not isinstance(want, Mapping) else 'an empty one'}. Remedy: pass "
            "oracle.truth(...).grads, or a golden case's truth.")
    for name, w in want.items():
        if not np.isfinite(to_numpy(w)).all():
            raise BadValue(f"want[{name!r}] holds NaN or Inf: a truth must be finite, or every bound built on its "
                             "scale is too. Remedy: pick inputs whose float64 gradients are finite (oracle.truth "
                             "raises NonFiniteGradientError for those that are not).")
    if tol is None:
        tol = tolerance(dtype, *(size or sizes(want)))
    order = [k for k in GRAD_NAMES if k in want] + [k for k in want if k not in GRAD_NAMES]
    report = Report(title=title)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):  # huge values are verdicts
        for name in order:
            if name in skip:
                report.tensors.append(TensorReport(name, "not needed"))
                continue
            _compare_one(report, name, got, want, dtype, tol, ref, sens, amp, optional, steps)
    return report


STEP_OF_STATE = {"hx": "h", "cx": "c", "nx": "n", "mx": "gate_f"}  # a module's initial state → the steps it starts


def _future(name: str, want: dict):
    """What an initial state's gradient continues: the seed's h0 is step 0 of h; a module's hx (cx, nx) row
    k·dirs + d is step 0 of h_l{k} (c_l{k}, n_l{k}), ``_reverse`` for d = 1. Its scale is theirs too. The sLSTM's
    m has no per-step gradient: dL/dm_0 reaches m_0 through f′_1 = e^{log f_1 + m_0 − m_1}, as dL/dlog f_1 does,
    so its scale is the forget gate's (where the stabiliser cancels, autograd's dL/dm_0 is a rounding residue of
    terms that size, and exact zero is as right)."""
    if name == "h0":
        return want.get("h")
    if name in STEP_OF_STATE and name in want:
        dirs = 2 if "h_l0_reverse" in want else 1
        per = [want.get(f"{STEP_OF_STATE[name]}_l{r // dirs}{'_reverse' if r % dirs else ''}")
               for r in range(want[name].shape[0])]
        return per if all(f is not None for f in per) else None
    return None


def _compare_one(report, name, got, want, dtype, tol, ref, sens, amp, optional, steps) -> None:
    """Append tensor ``name``'s verdict to ``report``."""
    if got.get(name) is None and name in optional:
        report.tensors.append(TensorReport(name, "not given"))
        return
    report.tensors.append(
        compare_tensor(name, got.get(name), want[name], tol=tol, dtype=dtype,
                       amp=None if amp is None else amp.get(name),
                       ref=None if ref is None else ref.get(name),
                       future=_future(name, want),
                       sens=None if sens is None else sens.get(name),
                       time="auto" if steps is None else steps.get(name)))

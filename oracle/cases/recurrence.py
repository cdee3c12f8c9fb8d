"""Recurrence cases: the matrix-state recurrences (``manual.recurrence``), named, seeded, deterministic.

A recurrence case's name reads

    recurrence/gated_delta_rule-betav-gv2-l2norm/T17-B3-H2-K16-V33/init-nograd/seqs-packed/up-both/float64

(variant; ``betav`` β per value channel, ``gv<n>`` n value heads per key head, ``l2norm`` q and k normalised
inside, ``scale<n>`` the scale s = n·K^−½ instead of the default K^−½ (so a kernel that ignores ``scale`` is
caught); sizes, B the batch rows or, packed, the sequences; the initial state: ``init-none``, ``init-grad`` or
``init-nograd`` (given, its gradient not asked); ``seqs-batch`` (B rows) or ``seqs-packed`` (one row, B
sequences along T by cu_seqlens: the first of length 1, then the rest of T − ⌊T/16⌋ split evenly, the last
⌊T/16⌋ steps padding); which upstream gradients drive it: ``up-o``, ``up-final`` or ``up-both``; dtype).
The convention (decay first, the delta correction from the decayed state, o after the update) and the L2
norm's ε are recorded in every case's fields, and so in its golden file.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from contract.errors import BadValue
from contract.recurrence import INPUTS, L2NORM_EPS, VARIANTS
from oracle.cases.module import takes
from oracle.cases.seed import Named
from oracle.groundtruth import Truth, finite_truth, sensitivity
from oracle.policy import AMP_CAP
from oracle.precision import LOW, container, round_to

CONVENTION = "decay, then the delta correction from the decayed state; o_t = S_t^T (s q_t) after the update"
INITIALS = ("none", "grad", "nograd")
SEQS = ("batch", "packed")
UPSTREAMS = ("o", "final", "both")
DTYPES = ("float64", "float32")
ALL_DTYPES = (*DTYPES, *LOW)
MAX_GROUPS = 16
MAX_SCALE = 16  # -scale<n>: s = n·K^-1/2
FLOATS = ("q", "k", "v", "g", "beta", "initial_state", "grad_o", "grad_final_state")  # a case's float inputs
STEPPED = ("q", "k", "v", "g", "beta", "S")  # (B, T, …) as the caller has them, (T, B, …) as judged
FORM = ("recurrence/VARIANT[-betav][-gv<int>][-l2norm][-scale<int>]/T<int>-B<int>-H<int>-K<int>-V<int>/"
        "init-none|grad|nograd/"
        "seqs-batch|packed/up-o|final|both/dtype")


@dataclass(frozen=True)
class RecurrenceCase(Named):
    variant: str
    T: int
    B: int  # batch rows, or the packed sequences (then the arrays have one row)
    H: int
    K: int
    V: int
    groups: int = 1  # value heads per key head: HV = H · groups
    beta_per_channel: bool = False
    l2norm: bool = False
    initial: str = "grad"
    packed: bool = False
    upstream: str = "both"
    dtype: str = "float64"
    scale_factor: int = 1  # s = scale_factor · K^-1/2
    eps: float = L2NORM_EPS  # the L2 norm's, recorded
    convention: str = CONVENTION  # recorded

    kind = "recurrence"  # the golden schema's word for this class
    prefix = "recurrence/"

    @property
    def group(self) -> str:
        return self.variant

    @property
    def HV(self) -> int:  # noqa: N802 - the contract's letters
        return self.H * self.groups

    @property
    def scale(self) -> float:
        """s = scale_factor · K^-1/2, passed to the candidate as ``scale``."""
        return self.scale_factor * self.K ** -0.5

    @property
    def rows(self) -> int:
        """The arrays' batch axis: B, or 1 when packed."""
        return 1 if self.packed else self.B

    @property
    def name(self) -> str:
        flags = "".join(f for f, on in (("-betav", self.beta_per_channel), (f"-gv{self.groups}", self.groups > 1),
                                        ("-l2norm", self.l2norm),
                                        (f"-scale{self.scale_factor}", self.scale_factor != 1)) if on)
        return (f"recurrence/{self.variant}{flags}/T{self.T}-B{self.B}-H{self.H}-K{self.K}-V{self.V}/"
                f"init-{self.initial}/seqs-{'packed' if self.packed else 'batch'}/up-{self.upstream}/{self.dtype}")

    @classmethod
    def parse(cls, name: str) -> RecurrenceCase:
        """The case a full name describes (see the module's docstring)."""
        m = re.fullmatch(r"recurrence/(\w+?)((?:-betav|-gv\d+|-l2norm|-scale\d+)*)/T(\d+)-B(\d+)-H(\d+)-K(\d+)-V(\d+)/"
                         r"init-(\w+)/seqs-(\w+)/up-(\w+)/(\w+)", name)
        if not m:
            raise BadValue(f"recurrence case name must read {FORM}; got {name!r}. Remedy: e.g. "
                           "recurrence/gated_delta_rule/T17-B2-H2-K16-V32/init-grad/seqs-batch/up-both/float64")
        variant, flags, T, B, H, K, V, init, seqs, up, dtype = m.groups()
        gv, sc = re.search(r"-gv(\d+)", flags), re.search(r"-scale(\d+)", flags)
        order = "".join(f for f in ("-betav", gv.group(0) if gv else "", "-l2norm", sc.group(0) if sc else "")
                        if f and f in flags)
        if flags != order:
            raise BadValue(f"recurrence case {name!r}: flags must come once each, in the order -betav, -gv<int>, "
                           "-l2norm, -scale<int>. Remedy: reorder them.")
        spec = {"variant": variant, "T": int(T), "B": int(B), "H": int(H), "K": int(K), "V": int(V),
                "groups": int(gv.group(1)) if gv else 1, "beta_per_channel": "-betav" in flags,
                "l2norm": "-l2norm" in flags, "initial": init, "packed": seqs == "packed", "upstream": up,
                "dtype": dtype, "scale_factor": int(sc.group(1)) if sc else 1}
        if seqs not in SEQS:
            raise BadValue(f"recurrence case {name!r}: seqs must be one of {SEQS}; got {seqs!r}. Remedy: pick one.")
        if gv and spec["groups"] < 2 or sc and spec["scale_factor"] < 2:
            raise BadValue(f"recurrence case {name!r}: -gv<n> and -scale<n> take n ≥ 2 (1 is the default, "
                           "unnamed). Remedy: drop -gv1 or -scale1.")
        try:
            return cls.from_spec(spec, 1 << 20)
        except BadValue as e:
            raise BadValue(f"recurrence case {name!r}: {e.why.replace('metadata case.', '')}", e.remedy) from None

    @classmethod
    def from_spec(cls, spec: dict, max_dim: int) -> RecurrenceCase:
        """The case ``spec`` (a name's fields, or a golden file's metadata) describes; ValueError naming the field
        that is wrong."""
        from oracle.cases.seed import spec_choices, spec_int

        spec_choices(spec, {"variant": tuple(VARIANTS), "initial": INITIALS, "upstream": UPSTREAMS,
                            "dtype": ALL_DTYPES})
        dims = {key: spec_int(spec, key, max_dim) for key in ("T", "B", "H", "K", "V")}
        groups, factor = spec.get("groups", 1), spec.get("scale_factor", 1)
        flags = {key: spec.get(key, False) for key in ("beta_per_channel", "l2norm", "packed")}
        if type(groups) is not int or not 1 <= groups <= MAX_GROUPS or not all(isinstance(f, bool)
                                                                              for f in flags.values()):
            raise BadValue(f"case groups {groups!r} (1 … {MAX_GROUPS}) / beta_per_channel, l2norm, packed "
                           f"{tuple(flags.values())!r} (true or false) malformed")
        if type(factor) is not int or not 1 <= factor <= MAX_SCALE:
            raise BadValue(f"case scale_factor {factor!r} malformed: an integer in 1 … {MAX_SCALE}")
        if spec.get("eps", L2NORM_EPS) != L2NORM_EPS or spec.get("convention", CONVENTION) != CONVENTION:
            raise BadValue(f"case eps {spec.get('eps')!r} / convention {spec.get('convention')!r}: this version "
                           f"computes ε = {L2NORM_EPS} and the convention {CONVENTION!r}. Remedy: export the "
                           "case with this version")
        if flags["beta_per_channel"] and not VARIANTS[spec["variant"]][1]:
            raise BadValue(f"case {spec['variant']!r} has no β (only the delta rules do), so no β per value "
                           "channel. Remedy: drop -betav.")
        case = cls(spec["variant"], **dims, groups=groups, **flags, initial=spec["initial"],
                   upstream=spec["upstream"], dtype=spec["dtype"], scale_factor=factor)
        if case.packed and case.T - case.T // 16 < case.B:
            raise BadValue(f"case {case.name}: {case.B} packed sequences of at least one step each need "
                           f"T ≥ {case.B} + ⌊T/16⌋ (the padding). Remedy: fewer sequences or a longer T.")
        return case

    # ------------------------------------------------------------ its inputs

    def cu_seqlens(self) -> list[int] | None:
        """The packed sequences' bounds [0, 1, …, T − ⌊T/16⌋]: the first one step long, the others even."""
        if not self.packed:
            return None
        total, n = self.T - self.T // 16, self.B
        if n == 1:
            return [0, total]
        rest = [(total - 1) // (n - 1)] * (n - 1)
        rest[-1] += (total - 1) - sum(rest)
        return [int(x) for x in np.cumsum([0, 1, *rest])]

    def inputs(self, dtype: str | None = None) -> dict:
        """variant, q, k, v, g, beta, scale, initial_state, cu_seqlens, use_qk_l2norm, grad_o, grad_final_state
        (NumPy, the case's dtype by default; cu_seqlens int64)."""
        rng = np.random.default_rng(self.seed)
        decay, delta = VARIANTS[self.variant]
        R, T, H, HV, K, V = self.rows, self.T, self.H, self.HV, self.K, self.V
        q = rng.normal(size=(R, T, H, K))
        k = rng.normal(size=(R, T, H, K))
        if not self.l2norm:  # ‖k‖ ≤ 1, so that |1 − β‖k‖²| ≤ 1 for β ∈ [0, 2]: the delta rule stays bounded
            k = k / np.linalg.norm(k, axis=-1, keepdims=True) * rng.uniform(0.3, 1.0, (R, T, H, 1))
        v = rng.normal(size=(R, T, HV, V))
        g = -rng.exponential(0.5, (R, T, HV) if decay == "head" else (R, T, HV, K)) if decay else None
        beta = rng.uniform(0.0, 2.0, (R, T, HV, V) if self.beta_per_channel else (R, T, HV)) if delta else None
        h0 = rng.normal(0, 0.5, (self.B, HV, K, V)) if self.initial != "none" else None
        g_o = rng.normal(size=(R, T, HV, V)) if self.upstream in ("o", "both") else None
        g_f = rng.normal(size=(self.B, HV, K, V)) if self.upstream in ("final", "both") else None
        cu = self.cu_seqlens()

        def cast(a):
            return None if a is None else round_to(a, self.dtype).astype(container(dtype or self.dtype))

        return {"variant": self.variant, "q": cast(q), "k": cast(k), "v": cast(v), "g": cast(g), "beta": cast(beta),
                "scale": self.scale, "initial_state": cast(h0), "use_qk_l2norm": self.l2norm,
                "cu_seqlens": None if cu is None else np.asarray(cu, dtype=np.int64), "grad_o": cast(g_o),
                "grad_final_state": cast(g_f)}

    @property
    def wrt(self) -> tuple[str, ...]:
        """The inputs whose gradients this case asks for."""
        decay, delta = VARIANTS[self.variant]
        given = {"q", "k", "v", *(("g",) if decay else ()), *(("beta",) if delta else ()),
                 *(("initial_state",) if self.initial == "grad" else ())}
        return tuple(n for n in INPUTS if n in given)

    # ------------------------------------------------------------ the Case protocol (oracle.cases)

    @staticmethod
    def map_arrays(f, inputs: dict, every: bool = False) -> dict:
        """``inputs`` with ``f`` applied to every float array (and to cu_seqlens when ``every``)."""
        names = (*FLOATS, "cu_seqlens") if every else FLOATS
        return {**inputs, **{n: None if inputs.get(n) is None else f(inputs[n]) for n in names if n in inputs}}

    def cast(self, inputs: dict, dtype: str | None = None) -> dict:
        """Float inputs in ``dtype`` (the case's by default), NumPy (bfloat16's in float32)."""
        return self.map_arrays(lambda a: a.astype(container(dtype or self.dtype)), inputs)

    def in_dtype(self, inputs: dict, device: str = "cpu") -> dict:
        """The inputs as the case's dtype computes on them: NumPy on the CPU, torch tensors of the dtype on
        ``device`` (and for a low precision, which NumPy lacks, always torch)."""
        if device == "cpu" and self.dtype not in LOW:
            return self.cast(inputs)
        import torch

        from oracle.precision import torch_dtype

        return self.map_arrays(lambda a: torch.from_numpy(a).to(device, torch_dtype(self.dtype)), self.cast(inputs))

    def call(self, fn, inputs: dict) -> dict:
        """``fn`` with ``manual.recurrence_gradients``' signature (the library's argument names) on this case's
        inputs; told which gradients are asked for (``wrt``) when it names that parameter."""
        return run_recurrence(fn, inputs, self.wrt if takes(fn, "wrt") else None)

    @property
    def not_needed(self) -> tuple[str, ...]:
        return ("initial_state",) if self.initial == "nograd" else ()

    @property
    def optional(self) -> tuple[str, ...]:
        return ("S",)

    def truth(self, inputs: dict) -> Truth:
        """The float64 truth on ``inputs`` cast to the case's dtype, as judged (time-major)."""
        return recurrence_truth(self.cast(inputs))

    def judged(self, grads: dict) -> dict:
        return time_major(grads)

    def check_layout(self, layout: str) -> str:
        """Its names are the library's in every layout; its files are torch's."""
        from oracle.layouts import check_layout

        check_layout(layout)
        return "torch"

    def grad_shapes(self) -> dict:
        """name → the caller's shape of every gradient of the truth (initial_state whenever one is given)."""
        R, T, H, HV, K, V = self.rows, self.T, self.H, self.HV, self.K, self.V
        decay, delta = VARIANTS[self.variant]
        out = {"q": (R, T, H, K), "k": (R, T, H, K), "v": (R, T, HV, V)}
        if decay:
            out["g"] = (R, T, HV) if decay == "head" else (R, T, HV, K)
        if delta:
            out["beta"] = (R, T, HV, V) if self.beta_per_channel else (R, T, HV)
        if self.initial != "none":
            out["initial_state"] = (self.B, HV, K, V)
        out["S"] = (R, T, HV, K, V)
        return out

    def expected_grads(self, layout: str = "torch") -> dict:
        return {k: [v] for k, v in self.grad_shapes().items()}

    def from_candidate(self, grads: dict, layout: str, notes: list | None = None) -> tuple[dict, dict]:
        """(a candidate's gradients time-major, {name: why} of tensors of a shape other than the caller's)."""
        shapes, bad = self.grad_shapes(), {}
        for name, a in grads.items():
            shape = tuple(getattr(a, "shape", ()))
            if name in shapes and a is not None and shape != shapes[name]:
                bad[name] = f"shape {shape}, expected {shapes[name]} (the library's layout, batch first)"
        return time_major({k: v for k, v in grads.items() if k not in bad}), bad

    def report_in(self, report, layout: str):
        return report

    # ------------------------------------------------------------ its golden file (oracle.files.golden)

    def file_shapes(self) -> dict:
        g = self.grad_shapes()
        R, T, HV, V = self.rows, self.T, self.HV, self.V
        out = {f"inputs.{n}": (g[n], {"F64"}) for n in ("q", "k", "v", "g", "beta", "initial_state") if n in g}
        if self.upstream in ("o", "both"):
            out["inputs.grad_o"] = ((R, T, HV, V), {"F64"})
        if self.upstream in ("final", "both"):
            out["inputs.grad_final_state"] = ((self.B, HV, self.K, V), {"F64"})
        if self.packed:
            out["inputs.cu_seqlens"] = ((self.B + 1,), {"I64"})
        for prefix in ("grads", "sens", "amp"):
            out.update({f"{prefix}.{k}": (v, {"F64"}) for k, v in g.items()})
        return out

    def float_tensors(self, inputs: dict) -> dict:
        return {f"inputs.{n}": inputs[n] for n in FLOATS if inputs.get(n) is not None}

    def file_tensors(self, inputs: dict, truth: Truth) -> dict:
        """Its golden file's tensors; the gradients in the caller's layout (batch first)."""
        tensors = self.float_tensors(inputs)
        if inputs.get("cu_seqlens") is not None:
            tensors["inputs.cu_seqlens"] = np.asarray(inputs["cu_seqlens"], dtype=np.int64)
        amp = truth.amp or {k: np.ones_like(v) for k, v in truth.grads.items()}  # 1: no cancellation
        for prefix, d in (("grads", truth.grads), ("sens", truth.sens), ("amp", amp)):
            tensors.update({f"{prefix}.{k}": v for k, v in time_major(d).items()})  # its own inverse
        return tensors

    def from_tensors(self, t: dict) -> tuple[dict, Truth]:
        inputs = {"variant": self.variant, "scale": self.scale, "use_qk_l2norm": self.l2norm,
                  **{n: t.get(f"inputs.{n}") for n in (*FLOATS, "cu_seqlens")}}
        grads, sens, amp = ({k: t[f"{p}.{k}"] for k in self.grad_shapes()} for p in ("grads", "sens", "amp"))
        return inputs, Truth(time_major(grads), time_major(sens), time_major(amp), STEPS, (self.T, max(self.K, self.V)))

    def check_inputs(self, inputs: dict) -> None:
        """The contract's checks, and the case's own cu_seqlens (a file's are its name's, not any valid ones)."""
        from contract.recurrence import check_recurrence_inputs

        low = self.cast(inputs)
        run_recurrence(check_recurrence_inputs, low, self.wrt)
        cu = inputs.get("cu_seqlens")
        if (cu is None) != (not self.packed) or cu is not None and cu.tolist() != self.cu_seqlens():
            raise BadValue(f"cu_seqlens is {None if cu is None else cu.tolist()}, case {self.name} has "
                           f"{self.cu_seqlens()}")

    def fd_small(self) -> bool:
        from oracle.policy import FD_MAX_PARAMS

        return sum(math.prod(s) for n, s in self.grad_shapes().items() if n != "S") <= FD_MAX_PARAMS and self.T <= 17

    def fd_errors(self, grads: dict, inputs: dict) -> dict:
        from oracle.fd import recurrence_fd_errors

        args = {n: inputs[n] for n in ("variant", "q", "k", "v", "g", "beta")}
        kwargs = {n: inputs[n] for n in ("scale", "initial_state", "cu_seqlens", "use_qk_l2norm", "grad_o",
                                         "grad_final_state")}
        return recurrence_fd_errors({k: v for k, v in time_major(grads).items() if k != "S"}, args, kwargs)

    @property
    def manual_name(self) -> str:
        return "manual.recurrence_gradients"

    def manual(self, inputs: dict) -> dict:
        from manual.recurrence import recurrence_gradients

        return time_major(run_recurrence(recurrence_gradients, inputs, None))

    def autograd(self, inputs: dict) -> dict:
        """Unrolled autograd in the case's dtype (a low precision's in torch), time-major."""
        from reference.recurrence import unrolled_recurrence_gradients

        if self.dtype in LOW and not hasattr(inputs["q"], "detach"):
            inputs = self.in_dtype(inputs)
        return time_major(run_recurrence(unrolled_recurrence_gradients, inputs, None))


STEPS = {**{n: "suffix" for n in STEPPED}, "initial_state": None}  # each sequence computed t = T … 1


def run_recurrence(fn, inputs: dict, wrt) -> dict:
    """``fn`` (manual.recurrence_gradients' signature) on a recurrence case's inputs; ``wrt`` passed when given."""
    more = {} if wrt is None else {"wrt": list(wrt)}
    return fn(inputs["variant"], inputs["q"], inputs["k"], inputs["v"], inputs["g"], inputs["beta"],
              scale=inputs["scale"], initial_state=inputs["initial_state"], cu_seqlens=inputs["cu_seqlens"],
              use_qk_l2norm=inputs["use_qk_l2norm"], grad_o=inputs["grad_o"],
              grad_final_state=inputs["grad_final_state"], **more)


def time_major(grads: dict) -> dict:
    """The stepped gradients (B, T, …) ↔ (T, B, …) (its own inverse); NumPy or torch."""
    def swap(a):
        if a is None or getattr(a, "ndim", 0) < 2:
            return a
        return np.swapaxes(a, 0, 1) if isinstance(a, np.ndarray) else a.transpose(0, 1)
    return {k: swap(v) if k in STEPPED else v for k, v in grads.items()}


def recurrence_truth(inputs: dict, draws: int = 2, seed: int = 0) -> Truth:
    """The float64 truth of a recurrence case (unrolled autograd), time-major, with its sensitivity (which holds
    the conditioning of the L2 norm's backward at a short vector and of a strong decay)."""
    from reference.recurrence import unrolled_recurrence_gradients  # here: importing oracle never imports torch

    as64 = RecurrenceCase.map_arrays(lambda a: a.astype(np.float64), inputs)

    def grads_of(i):
        return time_major({k: v.numpy() for k, v in run_recurrence(unrolled_recurrence_gradients, i, None).items()})

    want = grads_of(as64)
    finite_truth(want)
    sens = sensitivity(grads_of, as64, want, RecurrenceCase.map_arrays, draws, seed)
    amp = norm_amplification(grads_of, as64, want) if as64["use_qk_l2norm"] else None
    T = as64["q"].shape[1]
    return Truth(want, sens, amp, STEPS, (T, max(as64["q"].shape[-1], as64["v"].shape[-1])))


def norm_amplification(grads_of, inputs: dict, want: dict) -> dict:
    """name → the cancellation the L2 norm's backward dx = (dy − x̂ (x̂·dy)) / r computes through, per vector of q
    and k: κ = |dy| / (r |dx|) ≥ 1 (1 elsewhere). Where dy is nearly parallel to x (always at K = 1, where
    dx = ε dy / r³), dx is a small difference of terms of size |dy|: every implementation, autograd's float64
    truth included, rounds it with an error of about eps·|dy| / r, which the bound scales by κ (oracle.policy)."""
    r = {n: np.sqrt(np.sum(inputs[n] ** 2, axis=-1, keepdims=True) + L2NORM_EPS) for n in ("q", "k")}
    before = grads_of({**inputs, "q": inputs["q"] / r["q"], "k": inputs["k"] / r["k"], "use_qk_l2norm": False})
    amp = {n: np.ones_like(a) for n, a in want.items()}
    for n in ("q", "k"):
        dy, dx = np.linalg.norm(before[n], axis=-1), np.linalg.norm(want[n], axis=-1)  # (T, B, H)
        rn = np.swapaxes(r[n][..., 0], 0, 1)  # (T, B, H)
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = np.where(dx > 0, dy / (rn * dx), 1.0)
        amp[n] = np.broadcast_to(np.clip(kappa, 1.0, AMP_CAP)[..., None], want[n].shape).copy()
    return amp


# ------------------------------------------------------------ the built-in matrix

FORMS = tuple((v, per_channel) for v, (_, delta) in VARIANTS.items() for per_channel in ((False, True) if delta
                                                                                        else (False,)))
# (T, K, V): one step, two, odd, one chunk of 64 and one past it, at widths below, at, and one past the blocks
# kernels tile K and V by (16, 32, 64)
SWEEP = ((1, 16, 32), (2, 33, 16), (17, 32, 33), (64, 64, 65), (65, 65, 64))
# each alone, then all at once with an initial state given but not differentiated (T = 20, B = 3, H = 2, K = 8,
# V = 6 unless said): packing (three sequences, one step of padding), packing with no padding (T = 15), one packed
# sequence, grouped value heads, the L2 norm, a scale other than K^-1/2
OPTIONS = ({"packed": True}, {"packed": True, "T": 15}, {"packed": True, "B": 1}, {"groups": 2}, {"l2norm": True},
           {"scale_factor": 2}, {"packed": True, "groups": 2, "l2norm": True, "initial": "nograd", "scale_factor": 2})


def recurrence_matrix(dtype: str = "float64") -> list[RecurrenceCase]:
    """Every variant and β form × initial state (none, differentiated, not) × upstream (o, final, both) at
    T = 17, B = 2, H = 2, K = 4, V = 5; every form at the sizes of SWEEP (B = 1, H = 1; β per value channel
    past 32 channels there), and every variant there again with no initial state (driven through o) and one not
    differentiated (through the final state); every form with each of OPTIONS."""
    out = [RecurrenceCase(v, 17, 2, 2, 4, 5, beta_per_channel=pc, initial=init, upstream=up, dtype=dtype)
           for (v, pc), init, up in itertools.product(FORMS, INITIALS, UPSTREAMS)]
    out += [RecurrenceCase(v, T, 1, 1, K, V, beta_per_channel=pc, dtype=dtype) for v, pc in FORMS for T, K, V in SWEEP]
    out += [RecurrenceCase(v, T, 1, 1, K, V, initial=init, upstream=up, dtype=dtype)
            for v in VARIANTS for T, K, V in SWEEP for init, up in (("none", "o"), ("nograd", "final"))]
    out += [RecurrenceCase(v, beta_per_channel=pc, dtype=dtype, **{**SHAPE, **opt})
            for (v, pc), opt in itertools.product(FORMS, OPTIONS)]
    return out


SHAPE = {"T": 20, "B": 3, "H": 2, "K": 8, "V": 6}  # OPTIONS' cases, unless an option says otherwise


def low_precision_recurrence_cases(dtype: str) -> list[RecurrenceCase]:
    """Every form, plain and with every option at once, T = 20, in a low precision: judged against autograd in
    that dtype."""
    return [RecurrenceCase(v, beta_per_channel=pc, dtype=dtype, **{**SHAPE, **opt})
            for (v, pc), opt in itertools.product(FORMS, ({}, OPTIONS[-1]))]


def all_recurrence_cases(dtypes=ALL_DTYPES) -> list[RecurrenceCase]:
    return [c for dt in dtypes for c in (low_precision_recurrence_cases(dt) if dt in LOW else
                                         recurrence_matrix(dt))]


__all__ = ["CONVENTION", "FORMS", "RecurrenceCase", "all_recurrence_cases", "recurrence_matrix", "recurrence_truth",
           "norm_amplification", "run_recurrence", "time_major"]

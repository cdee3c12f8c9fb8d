"""Module cases: torch.nn.RNN configurations driven by upstream gradients, named, seeded, deterministic.

A module case's name reads

    module/RNN_TANH/L2-bi-bf-nobias/T5-B3-I3-H4/lengths-mixed/up-both/float64

(mode; layers, then ``bi`` when bidirectional, ``bf`` when batch_first,
``nobias`` without biases, ``p<int>`` an LSTM's projection, ``paper`` the
GRU's original form, ``relu`` a cell's other nonlinearity where its row
offers one; sizes; ``lengths-full`` or ``lengths-mixed``;
which upstream gradients drive it: ``up-output``, ``up-hn`` or ``up-both`` (and, for the LSTM, whose h_n comes
with c_n under ``up-hn``, ``up-hnonly``, ``up-cnonly``, ``up-outhn``, ``up-outcn``: every subset);
dtype). Its inputs depend on the name without the dtype, as for the seed
model's cases. Mixed lengths include 1 and T.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from contract.cells import CELLS
from contract.errors import BadValue
from contract.spec import FORGET_GATES, MODES, RNNConfig, config_from, grad_shapes, param_shapes, step_names
from oracle.cases.seed import Named
from oracle.groundtruth import Truth, finite_truth, sensitivity
from oracle.policy import AMP_CAP
from oracle.precision import LOW, container, round_to

UPSTREAMS = ("output", "hn", "both")  # the matrix's; hn drives every other carried state's final value too
# which of output, h_n and c_n each upstream drives; the last four only for a cell with a state c (the LSTM's),
# so that every non-empty subset of its three outputs can drive a case (bptt fuzz draws them)
# (hn and both drive every carried state's final value: the sLSTM's n_n and m_n too)
DRIVES = {"output": {"output"}, "hn": {"hn", "cn", "nn", "mn"}, "both": {"output", "hn", "cn", "nn", "mn"},
          "hnonly": {"hn"}, "cnonly": {"cn"}, "outhn": {"output", "hn"}, "outcn": {"output", "cn"}}
CELL_STATE_UPSTREAMS = ("hnonly", "cnonly", "outhn", "outcn")
LENGTHS = ("full", "mixed")
DTYPES = ("float64", "float32")  # the default matrix's; a name may also carry a low precision (oracle.precision)
ALL_DTYPES = (*DTYPES, *LOW)
ACTS = tuple(dict.fromkeys(a for c in CELLS.values() for a in c.nonlinearities[1:]))  # a name's -<act> flags
ACT_FLAGS = "".join(f"|-{a}" for a in ACTS)
MAX_LAYERS = 16  # layers of a case named or read from a file: a typo is not a hundred thousand layers
MAX_SCALE = 64  # -sat<int>: past it every tanh and sigmoid is flat to the last bit anyway


@dataclass(frozen=True)
class ModuleCase(Named):
    mode: str
    num_layers: int
    bidirectional: bool
    batch_first: bool
    bias: bool
    T: int
    B: int
    I: int  # noqa: E741  input_size
    H: int
    lengths: str = "full"
    upstream: str = "both"
    dtype: str = "float64"
    proj_size: int = 0  # LSTM only
    linear_before_reset: bool = True  # GRU only; False: the original paper's form
    nonlinearity: str = ""  # "" the mode's own; a cell with a choice (contract.cells) may take another
    scale: int = 1  # input and every weight_ih multiplied by it: pre-activations toward saturation
    input_grad: bool = True  # False: dL/dinput not asked for (a kernel may skip it), never judged
    hx_grad: bool = True  # False: dL/dhx (and dL/dcx …) not asked for, never judged
    num_heads: int = 1  # the sLSTM's
    forget_gate: str = "sigmoid"  # the sLSTM's: "sigmoid" or "exp"
    zoneout: bool = False  # zoneout masks drawn with the inputs (a quarter of the units kept at each step)

    kind = "module"  # the golden schema's word for this class; nothing branches on it
    prefix = "module/"  # the start of every name of this class (oracle.cases.parse_case)

    @property
    def drives(self) -> set[str]:
        """Which of the module's outputs (output, hn, cn) have an upstream gradient in this case."""
        return DRIVES[self.upstream]

    @property
    def group(self) -> str:
        """Its group in a run's summary (``oracle.summary``): the cell."""
        return self.mode

    @property
    def config(self) -> RNNConfig:
        return RNNConfig(self.mode, self.I, self.H, self.num_layers, self.bias, self.batch_first, self.bidirectional,
                         self.proj_size, self.linear_before_reset, self.nonlinearity, self.num_heads, self.forget_gate,
                         self.zoneout)

    @property
    def name(self) -> str:
        other = self.nonlinearity and self.nonlinearity != CELLS[self.mode].nonlinearities[0]
        flags = "".join(f"-{f}" for f, on in (("bi", self.bidirectional), ("bf", self.batch_first),
                                              ("nobias", not self.bias), (f"p{self.proj_size}", self.proj_size),
                                              ("paper", not self.linear_before_reset),
                                              (f"nh{self.num_heads}", self.num_heads != 1),
                                              ("fexp", self.forget_gate == "exp"), ("zo", self.zoneout),
                                              (self.nonlinearity, other), (f"sat{self.scale}", self.scale != 1),
                                              ("noinputgrad", not self.input_grad), ("nohxgrad", not self.hx_grad))
                        if on)
        return (f"module/{self.mode}/L{self.num_layers}{flags}/T{self.T}-B{self.B}-I{self.I}-H{self.H}/"
                f"lengths-{self.lengths}/up-{self.upstream}/{self.dtype}")

    @classmethod
    def parse(cls, name: str) -> ModuleCase:
        """The case a full name describes (see the module's docstring)."""
        flag = rf"-bi|-bf|-nobias|-p\d+|-paper|-nh\d+|-fexp|-zo{ACT_FLAGS}|-sat\d+|-noinputgrad|-nohxgrad"
        m = re.fullmatch(rf"module/(\w+)/L(\d+)((?:{flag})*)/"
                         r"T(\d+)-B(\d+)-I(\d+)-H(\d+)/lengths-(\w+)/up-(\w+)/(\w+)", name)
        form = "module/MODE/L<int>[-bi][-bf][-nobias][-p<int>][-paper][-nh<int>][-fexp][-zo][-relu][-sat<int>]" \
               "[-noinputgrad][-nohxgrad]/" \
               "T<int>-B<int>-I<int>-H<int>/" \
               "lengths-full|mixed/up-output|hn|both|hnonly|cnonly|outhn|outcn/dtype"
        if not m:
            raise BadValue(f"module case name must read {form}; got {name!r}. Remedy: e.g. "
                             "module/RNN_TANH/L2-bi/T5-B3-I3-H4/lengths-mixed/up-both/float64")
        mode, L, flags, T, B, I, H, lengths, up, dtype = m.groups()  # noqa: E741
        for what, value, choices in (("mode", mode, MODES), ("lengths", lengths, LENGTHS),
                                     ("upstream", up, tuple(DRIVES)), ("dtype", dtype, ALL_DTYPES)):
            if value not in choices:
                raise BadValue(f"module case {what} must be one of {choices}; got {value!r} in {name!r}. "
                                 "Remedy: pick one of the names listed.")
        sizes = [int(v) for v in (L, T, B, I, H)]
        proj = re.search(r"-p(\d+)", flags)
        P = int(proj.group(1)) if proj else 0
        act = next((a for a in ACTS if f"-{a}" in flags), "")
        sat = re.search(r"-sat(\d+)", flags)
        S = int(sat.group(1)) if sat else 1
        nh = re.search(r"-nh(\d+)", flags)
        NH = int(nh.group(1)) if nh else 1
        if act and (mode not in CELLS or act not in CELLS[mode].nonlinearities[1:]):
            raise BadValue(f"module case {name!r}: -{act} names another nonlinearity than mode {mode!r}'s own, "
                           f"and {mode!r} " + (f"takes {CELLS[mode].nonlinearities[1:]}" if mode in CELLS and
                                               CELLS[mode].nonlinearities[1:] else "has no other") +
                           ". Remedy: drop the flag (a name carries only a nonlinearity that is not the default).")
        order = "".join(f for f in ("-bi", "-bf", "-nobias", f"-p{P}" if P else "", "-paper", f"-nh{NH}" if nh else "",
                                    "-fexp", "-zo", f"-{act}" if act else "",
                                    f"-sat{S}" if sat else "", "-noinputgrad", "-nohxgrad") if f and f in flags)
        if min(sizes) < 1 or flags != order or not 2 <= S <= MAX_SCALE and sat or nh and NH < 2:
            raise BadValue(f"module case name must read {form}; got {name!r} (sizes ≥ 1, flags in that order, "
                           f"-sat from 2 to {MAX_SCALE})")
        if sizes[0] > MAX_LAYERS:  # before anything is built for them
            raise BadValue(f"case {name!r} asks for {sizes[0]} layers, at most {MAX_LAYERS}. Remedy: fewer layers "
                           "(the derivation does not change with depth).")
        case = cls(mode, sizes[0], "-bi" in flags, "-bf" in flags, "-nobias" not in flags, *sizes[1:],
                   lengths=lengths, upstream=up, dtype=dtype, proj_size=P, linear_before_reset="-paper" not in flags,
                   nonlinearity=act, scale=S, input_grad="-noinputgrad" not in flags, hx_grad="-nohxgrad" not in flags,
                   num_heads=NH, forget_gate="exp" if "-fexp" in flags else "sigmoid", zoneout="-zo" in flags)
        try:
            config_from(case.config.as_dict())
            case.check_upstream()
        except (TypeError, ValueError) as e:
            raise BadValue(f"module case {name!r}: {e}") from None
        return case

    def check_upstream(self) -> None:
        """ValueError unless the upstream names outputs the cell has (c_n: a cell with a state c)."""
        if self.upstream in CELL_STATE_UPSTREAMS and not CELLS[self.mode].cell_state:
            raise BadValue(f"up-{self.upstream} drives h_n or c_n alone, and mode {self.mode!r} has no c",
                           "up-output, up-hn or up-both")

    def length_list(self) -> list[int] | None:
        """Each row's length: None (all T) or a mix that holds 1 and T when B allows."""
        if self.lengths == "full":
            return None
        pattern = [1, self.T, (self.T + 1) // 2]
        return [pattern[b % 3] for b in range(self.B)]

    def inputs(self, dtype: str | None = None) -> dict:
        """config, state_dict, input, hx, grad_output, grad_hn, lengths (NumPy, the case's dtype by default)."""
        rng = np.random.default_rng(self.seed)
        c = self.config
        sd = {}
        for k, shape in param_shapes(c).items():  # spectral radius of weight_hh ≈ 0.9
            fan = shape[1] if len(shape) == 2 else self.H
            sd[k] = rng.normal(0, (0.9 if "weight_hh" in k else 1.0) / np.sqrt(fan), shape) if "weight" in k \
                else rng.normal(0, 0.1, shape)
            if k.startswith("ln_") and "weight" in k:  # a norm's gain: near 1, as trained ones are
                sd[k] = 1 + 0.5 * sd[k] * np.sqrt(fan)
        T, B, P = self.T, self.B, c.out_size
        x = rng.normal(0, 1, (B, T, self.I) if self.batch_first else (T, B, self.I)) * self.scale
        sd = {k: v * self.scale if k.startswith("weight_ih") else v for k, v in sd.items()}  # toward saturation
        hx = rng.normal(0, 0.5, (c.num_layers * c.dirs, B, P))
        out_shape = (B, T, P * c.dirs) if self.batch_first else (T, B, P * c.dirs)
        g_out = rng.normal(0, 1, out_shape) if "output" in self.drives else None
        g_hn = rng.normal(0, 1, hx.shape) if "hn" in self.drives else None

        def cast(a):
            return None if a is None else round_to(a, self.dtype).astype(container(dtype or self.dtype))

        out = {"config": c.as_dict(), "state_dict": {k: cast(v) for k, v in sd.items()}, "input": cast(x),
               "hx": cast(hx), "grad_output": cast(g_out), "grad_hn": cast(g_hn), "lengths": self.length_list()}
        states = [out["hx"]]
        for st in c.cell.carried[1:]:  # hx is the tuple (h0, c0, …); dL/dc_n … with dL/dh_n, as the upstream says
            s0 = rng.normal(0, 0.5, (c.num_layers * c.dirs, B, self.H))
            states.append(cast(np.abs(s0) if st in c.cell.nonnegative else s0))
            out[f"grad_{st}n"] = cast(rng.normal(0, 1, s0.shape)) if f"{st}n" in self.drives else None
        if len(states) > 1:
            out["hx"] = tuple(states)
        if self.zoneout:  # drawn last: every other input is the case's without zoneout
            out["zoneout_masks"] = cast((rng.random((c.num_layers * c.dirs, T, B, self.H)) < 0.25).astype(float))
        return out

    # ------------------------------------------------------------ the Case protocol (oracle.cases)

    @staticmethod
    def map_arrays(f, inputs: dict, every: bool = False) -> dict:
        """``inputs`` with ``f`` applied to every float array (a module case has no integer array)."""
        return map_arrays(f, inputs)

    def cast(self, inputs: dict, dtype: str | None = None) -> dict:
        """Float inputs in ``dtype`` (the case's by default), NumPy (bfloat16's in float32, oracle.precision)."""
        return map_arrays(lambda a: a.astype(container(dtype or self.dtype)), inputs)

    def in_dtype(self, inputs: dict, device: str = "cpu") -> dict:
        """The inputs as the case's dtype computes on them: NumPy on the CPU, torch tensors of the dtype on
        ``device`` (and for bfloat16, which NumPy lacks, always torch)."""
        if device == "cpu" and self.dtype not in LOW:
            return self.cast(inputs)
        import torch

        from oracle.precision import torch_dtype

        return map_arrays(lambda a: torch.from_numpy(a).to(device, torch_dtype(self.dtype)), self.cast(inputs))

    def call(self, fn, inputs: dict) -> dict:
        """``fn`` with ``manual.module_gradients``' signature on this case's inputs; told which gradients are
        asked for (``needs_input_grad``) when it names that parameter."""
        return run_module(fn, inputs, {"input": self.input_grad, "hx": self.hx_grad})

    @property
    def not_needed(self) -> tuple[str, ...]:
        """The gradients this case does not ask for: never judged, whatever the candidate returns."""
        initial = ("hx", *(f"{st}x" for st in CELLS[self.mode].carried[1:]))
        return (("input",) if not self.input_grad else ()) + (initial if not self.hx_grad else ())

    def truth(self, inputs: dict) -> Truth:
        """The float64 truth on ``inputs`` cast to the case's dtype, as judged (time-major)."""
        return module_truth(self.cast(inputs))

    def judged(self, grads: dict) -> dict:
        """A gradient set as the truth holds it: ``input`` time-major."""
        return to_time_major(self, grads)

    @property
    def optional(self) -> tuple[str, ...]:
        """The per-step tensors (``h_l0``, gates …): judged when a candidate gives them."""
        return tuple(n for _, _, ns in step_names(self.config) for n in ns.values())

    def check_layout(self, layout: str) -> str:
        """``layout``, when this configuration has a form in it (LayoutError if not: an LSTM with projections has
        no ONNX form)."""
        from oracle.layouts import check_layout

        return check_layout(layout, self.config)

    def expected_grads(self, layout: str = "torch") -> dict:
        """name → the shapes a candidate's gradient may have in ``layout`` (a merged ONNX bias too)."""
        from oracle.layouts import onnx_names

        g = self.grad_shapes()
        if self.check_layout(layout) == "torch":
            return {k: [v] for k, v in g.items()}
        out = {k: [v] for k, v in onnx_names(self.config, g).items()}
        for k, v in out.items():
            if k.startswith("B_l"):
                v.append((v[0][0], v[0][1] // 2))  # merged: one bias per gate row
        return out

    def from_candidate(self, grads: dict, layout: str, notes: list | None = None) -> tuple[dict, dict]:
        """(a candidate's gradient set in torch's names, time-major, {name: why} of tensors to fail by their
        shape): read from ONNX's layout when asked (``notes`` gets how), ``input`` from (B, T, I) when
        batch_first."""
        from oracle.layouts import LayoutError, from_onnx

        if layout == "onnx":
            allowed = self.expected_grads("onnx")
            for name, a in grads.items():  # before from_onnx reorders anything: a stand-in is never materialised
                shape = tuple(getattr(a, "shape", ()))
                if name in allowed and a is not None and shape not in allowed[name]:
                    raise LayoutError(f"{name} has shape {shape}; ONNX's layout needs "
                                      f"{' or '.join(map(str, allowed[name]))}")
            grads = from_onnx(self.config, grads, notes)
            if notes is not None:
                notes.insert(0, "read in ONNX's layout and reported in it: rows and gate letters ONNX's, "
                                "B_l{k}[d] (Wb) its first half, (Rb) its second, per-step tensors in torch's names "
                                "(oracle.layouts)")
        if not self.batch_first or grads.get("input") is None:
            return grads, {}
        caller = (self.B, self.T, self.I)  # (B, T, input_size)
        shape = tuple(getattr(grads["input"], "shape", ()))
        if shape == caller:
            return to_time_major(self, grads), {}
        # reported in the caller's layout, not the judged time-major one
        return grads, {"input": f"shape {shape}, expected {caller} (batch_first: (B, T, input_size))"} if shape else {}

    def report_in(self, report, layout: str):
        """``report`` as a candidate answering in ``layout`` reads it: ONNX's names, rows and gate letters, or
        torch's, with gate letters and each state row's layer and direction."""
        from oracle.layouts import onnx_report, torch_report

        return (onnx_report if layout == "onnx" else torch_report)(self.config, report)

    def grad_shapes(self) -> dict:
        """name → shape of every gradient (``input`` in the caller's layout)."""
        return grad_shapes(self.config, self.T, self.B)

    # ------------------------------------------------------------ its golden file (oracle.files.golden)

    def file_shapes(self) -> dict:
        """name → (shape, allowed safetensors dtypes) of every tensor of its golden file (torch's layout)."""
        g, c = self.grad_shapes(), self.config
        out = {f"state_dict.{k}": (v, {"F64"}) for k, v in param_shapes(c).items()}
        out.update({"inputs.input": (g["input"], {"F64"}), "inputs.hx": (g["hx"], {"F64"})})
        for st in c.cell.carried[1:]:
            out[f"inputs.{st}x"] = (g[f"{st}x"], {"F64"})
        if "output" in self.drives:
            T, B, H2 = self.T, self.B, c.out_size * c.dirs
            out["inputs.grad_output"] = ((B, T, H2) if c.batch_first else (T, B, H2), {"F64"})
        if "hn" in self.drives:
            out["inputs.grad_hn"] = (g["hx"], {"F64"})
        for st in c.cell.carried[1:]:
            if f"{st}n" in self.drives:
                out[f"inputs.grad_{st}n"] = (g[f"{st}x"], {"F64"})
        if self.lengths != "full":
            out["inputs.lengths"] = ((self.B,), {"I64"})
        if self.zoneout:
            out["inputs.zoneout_masks"] = ((c.num_layers * c.dirs, self.T, self.B, self.H), {"F64"})
        for prefix in ("grads", "sens", "amp"):
            out.update({f"{prefix}.{k}": (v, {"F64"}) for k, v in g.items()})
        return out

    def file_tensors(self, inputs: dict, truth: Truth) -> dict:
        """The tensors of its golden file; the gradients in the caller's layout (``input`` batch-first when it
        is: the (B, T) ↔ (T, B) transpose is its own inverse)."""
        tensors = self.float_tensors(inputs)
        if inputs["lengths"] is not None:
            tensors["inputs.lengths"] = np.asarray(inputs["lengths"], dtype=np.int64)
        for prefix, d in (("grads", truth.grads), ("sens", truth.sens), ("amp", truth.amp)):
            tensors.update({f"{prefix}.{k}": v for k, v in to_time_major(self, d).items()})
        return tensors

    def from_tensors(self, t: dict) -> tuple[dict, Truth]:
        """(inputs, truth) from its golden file's tensors (torch's names); the truth time-major, as judged."""
        c = self.config
        lengths = t.get("inputs.lengths")
        inputs = {"config": c.as_dict(), "state_dict": {k: t[f"state_dict.{k}"] for k in param_shapes(c)},
                  "input": t["inputs.input"], "hx": t["inputs.hx"], "grad_output": t.get("inputs.grad_output"),
                  "grad_hn": t.get("inputs.grad_hn"), "lengths": None if lengths is None else lengths.tolist()}
        if c.has_cell_state:  # the LSTM's (h0, c0), and dL/dc_n; the sLSTM's (h0, c0, n0, m0) …
            inputs["hx"] = (t["inputs.hx"], *(t[f"inputs.{st}x"] for st in c.cell.carried[1:]))
            inputs.update({f"grad_{st}n": t.get(f"inputs.grad_{st}n") for st in c.cell.carried[1:]})
        if c.zoneout:
            inputs["zoneout_masks"] = t["inputs.zoneout_masks"]
        grads, sens, amp = ({k: t[f"{p}.{k}"] for k in self.grad_shapes()} for p in ("grads", "sens", "amp"))
        major = lambda d: to_time_major(c, d)  # noqa: E731
        return inputs, Truth(major(grads), major(sens), major(amp), time_orders(c), bound_size(c, self.T, self.B))

    def float_tensors(self, inputs: dict) -> dict:
        """file name → every float input (what must be a number of the case's dtype)."""
        out = {f"state_dict.{k}": v for k, v in inputs["state_dict"].items()}
        hx = inputs["hx"] if isinstance(inputs["hx"], tuple) else (inputs["hx"],)
        carried = RNNConfig(**inputs["config"]).cell.carried
        arrays = {"input": inputs["input"], **{f"{st}x": a for st, a in zip(carried, hx, strict=True)},
                  "grad_output": inputs["grad_output"], "grad_hn": inputs["grad_hn"],
                  **{f"grad_{st}n": inputs.get(f"grad_{st}n") for st in carried[1:]},
                  "zoneout_masks": inputs.get("zoneout_masks")}
        out.update({f"inputs.{k}": v for k, v in arrays.items() if v is not None})
        return out

    def check_inputs(self, inputs: dict) -> None:
        """The module contract's checks (finite, lengths in 1…T, shapes) on ``inputs`` in the case's dtype."""
        from contract.module_checks import check_module_inputs

        low = self.cast(inputs)
        check_module_inputs(low["config"], low["state_dict"], low["input"], low["hx"], low["grad_output"],
                            low["grad_hn"], low["lengths"], **state_upstreams(low))

    @classmethod
    def from_spec(cls, spec: dict, max_dim: int) -> ModuleCase:
        """The case a golden file's metadata describes; ValueError naming the field that is wrong."""
        from oracle.cases.seed import spec_choices, spec_int

        spec_choices(spec, {"mode": MODES, "lengths": LENGTHS, "upstream": tuple(DRIVES), "dtype": ALL_DTYPES})
        for key in ("bidirectional", "batch_first", "bias"):
            if not isinstance(spec.get(key), bool):
                raise BadValue(f"metadata case.{key} is {spec.get(key)!r}, expected true or false")
        dims = {key: spec_int(spec, key, max_dim) for key in ("num_layers", "T", "B", "I", "H")}
        if dims["num_layers"] > MAX_LAYERS:
            raise BadValue(f"metadata case.num_layers is {dims['num_layers']}, more than {MAX_LAYERS}")
        proj, lbr = spec.get("proj_size", 0), spec.get("linear_before_reset", True)
        act = spec.get("nonlinearity", "")  # files written before cells had a choice hold none
        if type(proj) is not int or not isinstance(lbr, bool) or act not in ("", *CELLS[spec["mode"]].nonlinearities):
            raise BadValue(f"metadata case.proj_size {proj!r} / linear_before_reset {lbr!r} / nonlinearity {act!r} "
                           "malformed")
        scale, needs = spec.get("scale", 1), (spec.get("input_grad", True), spec.get("hx_grad", True))
        if type(scale) is not int or not 1 <= scale <= MAX_SCALE or not all(isinstance(b, bool) for b in needs):
            raise BadValue(f"metadata case.scale {scale!r} / input_grad, hx_grad {needs!r} malformed")
        heads, forget = spec.get("num_heads", 1), spec.get("forget_gate", "sigmoid")  # files before the sLSTM: none
        zoneout = spec.get("zoneout", False)
        if type(heads) is not int or not 1 <= heads <= dims["H"] or forget not in FORGET_GATES or \
                not isinstance(zoneout, bool):
            raise BadValue(f"metadata case.num_heads {heads!r} / forget_gate {forget!r} / zoneout {zoneout!r} "
                           "malformed")
        case = cls(spec["mode"], dims["num_layers"], spec["bidirectional"], spec["batch_first"], spec["bias"],
                   dims["T"], dims["B"], dims["I"], dims["H"], lengths=spec["lengths"], upstream=spec["upstream"],
                   dtype=spec["dtype"], proj_size=proj, linear_before_reset=lbr, nonlinearity=act, scale=scale,
                   input_grad=needs[0], hx_grad=needs[1], num_heads=heads, forget_gate=forget, zoneout=zoneout)
        try:
            config_from(case.config.as_dict())
            case.check_upstream()
        except (TypeError, ValueError) as e:
            raise BadValue(f"metadata case is not a valid configuration: {e}") from None
        return case

    def fd_small(self) -> bool:
        from oracle.policy import FD_MAX_PARAMS

        n = sum(math.prod(s) for s in param_shapes(self.config).values()) + 2 * self.T * self.B * self.I
        return n <= FD_MAX_PARAMS and self.T <= 17

    def fd_errors(self, grads: dict, inputs: dict) -> dict:
        from oracle.fd import module_fd_errors

        return module_fd_errors(to_time_major(self, grads), inputs)

    @property
    def manual_name(self) -> str:
        return "manual.module_gradients"

    def manual(self, inputs: dict) -> dict:
        import manual

        return to_time_major(self, run_module(manual.module_gradients, inputs))

    def autograd(self, inputs: dict) -> dict:
        """Unrolled autograd in the case's dtype (the inputs' dtype and device; a low precision's in torch),
        time-major."""
        import reference

        if self.dtype in LOW and not hasattr(inputs["input"], "detach"):
            inputs = self.in_dtype(inputs)
        return to_time_major(self, run_module(reference.unrolled_module_gradients, inputs))


def run_module(fn, inputs: dict, needs: dict | None = None) -> dict:
    """``fn`` (manual.module_gradients' signature) on a module case's inputs (``grad_cn`` … only for a cell that
    carries c …); ``needs``: {"input": bool, "hx": bool}, passed as ``needs_input_grad`` to a function that names
    it."""
    more = state_upstreams(inputs)
    if "zoneout_masks" in more and not takes(fn, "zoneout_masks"):
        from oracle.checker.candidate import Unsupported

        raise Unsupported("zoneout")  # a kernel without the parameter has no zoneout: its case is skipped, not failed
    if needs is not None and takes(fn, "needs_input_grad"):
        more["needs_input_grad"] = dict(needs)
    return fn(inputs["config"], inputs["state_dict"], inputs["input"], inputs["hx"],
              grad_output=inputs["grad_output"], grad_hn=inputs["grad_hn"], lengths=inputs["lengths"], **more)


def takes(fn, name: str) -> bool:
    """Whether ``fn``'s signature names the parameter ``name`` (a ``**kwargs`` does not count: it may forward
    everything to a function that does not)."""
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return False


def time_orders(config: RNNConfig) -> dict:
    """name → time order (oracle.judge.time_order) of a module's gradient set.

    One direction: every per-step tensor and ``input`` is made t = T … 1 (a
    suffix). Bidirectional: the top layer's forward tensors are a suffix, its
    reverse ones a prefix; below it and in ``input`` both directions mix.
    """
    out = {}
    top = config.num_layers - 1
    for layer, s, names in step_names(config):
        if not config.bidirectional:
            order = "suffix"
        elif layer == top:
            order = "prefix" if s else "suffix"
        else:
            order = "all"
        out.update({name: order for name in names.values()})
    out["input"] = "all" if config.bidirectional else "suffix"
    return out


def to_time_major(case_or_config, grads: dict) -> dict:
    """``input`` (B, T, I) → (T, B, I) when batch_first, so every stepped tensor has time first."""
    c = case_or_config.config if hasattr(case_or_config, "config") else case_or_config
    if not c.batch_first or "input" not in grads or grads["input"] is None:
        return grads
    a = grads["input"]
    return {**grads, "input": a.transpose(1, 0, 2) if isinstance(a, np.ndarray) else a.permute(1, 0, 2)}


STATE_UPSTREAMS = ("grad_cn", "grad_nn", "grad_mn")  # dL/d(each carried state's final value) but h's
ARRAYS = ("input", "hx", "grad_output", "grad_hn", *STATE_UPSTREAMS, "zoneout_masks")  # a module case's float
# inputs (hx: a tuple for a cell that carries more than h)


def state_upstreams(inputs: dict) -> dict:
    """The keyword arguments beyond torch's that a module case's inputs hold: grad_cn, grad_nn, grad_mn (the cell's
    states') and zoneout_masks."""
    return {k: inputs[k] for k in (*STATE_UPSTREAMS, "zoneout_masks") if k in inputs}


def map_arrays(f, inputs: dict) -> dict:
    """``inputs`` with ``f`` applied to every float array (state_dict, input, hx or its pair, upstream gradients)."""
    g = lambda a: None if a is None else tuple(g(b) for b in a) if isinstance(a, tuple) else f(a)  # noqa: E731
    return {**inputs, "state_dict": {k: f(v) for k, v in inputs["state_dict"].items()},
            **{k: g(inputs[k]) for k in ARRAYS if k in inputs}}


def rounded_arrays(f, inputs: dict) -> dict:
    """``map_arrays`` but for the zoneout masks: they are 0 and 1 exactly, not rounded numbers, and never move."""
    return {**map_arrays(f, inputs), **{k: inputs[k] for k in ("zoneout_masks",) if k in inputs}}


def module_truth(inputs: dict, draws: int = 2, seed: int = 0) -> Truth:
    """The float64 truth of a module case (unrolled autograd), time-major, with sensitivity and amplification.

    amp: tanh'(z) taken from the rounded h (1 − h²) cancels where units
    saturate; per layer and direction κ_act(t) = max|dL/dh_t| / max|dL/dz_t|
    (≥ 1), per step for its h and z, its largest value for everything else;
    1 under relu, whose derivative is exactly 0 or 1.
    """
    from reference.module import unrolled_module_gradients  # here: importing oracle never imports torch

    c = RNNConfig(**inputs["config"])
    as64 = map_arrays(lambda a: a.astype(np.float64), inputs)
    grads_of = lambda i: to_time_major(c, run_module(unrolled_module_gradients, i))  # noqa: E731
    want = grads_of(as64)
    finite_truth(want)
    sens = sensitivity(grads_of, as64, want, rounded_arrays, draws, seed)
    amp, worst = {}, 1.0
    for _, _, names in step_names(c):
        T = want[names["h"]].shape[0]
        dh = np.abs(want[names["h"]]).reshape(T, -1).max(axis=1)  # (T,)
        k_act = np.ones(T)
        for kind, name in names.items():  # every pre-activation: z, or the gates
            if kind in c.cell.states or c.nonlinearity == "relu":  # relu' is exactly 0 or 1: nothing cancels
                continue
            dpre = np.abs(want[name]).reshape(T, -1).max(axis=1)
            with np.errstate(over="ignore"):  # a subnormal gate gradient (a saturated gate): AMP_CAP holds it
                ratio = np.divide(dh, dpre, out=np.ones(T), where=dpre > 0)
            k_act = np.minimum(np.maximum(k_act, ratio), AMP_CAP)
        for name in names.values():
            amp[name] = np.broadcast_to(k_act[:, None, None], want[name].shape).copy()
        worst = max(worst, float(k_act.max()))
    for name, g in want.items():
        if name not in amp:
            amp[name] = np.full(g.shape, worst)
    T, B = (inputs["input"].shape[1], inputs["input"].shape[0]) if c.batch_first else inputs["input"].shape[:2]
    return Truth(want, sens, amp, steps=time_orders(c), size=bound_size(c, T, B))


def bound_size(config: RNNConfig, T: int, B: int) -> tuple[int, int]:
    """(T, K) of the bound C·eps·√(T·K): a chain of T steps through each of the layers, sums over K terms."""
    return T * config.num_layers, max(config.input_size, config.hidden_size * config.dirs, B)


# (mode, form): every cell and form the module contract covers, from the cells' rows (contract.cells)
VARIANTS = tuple((mode, form) for mode, cell in CELLS.items() for form in cell.forms)


def parity_matrix(mode: str, dtype: str = "float64", **form) -> list:
    """One cell's parity matrix in one form (``form``: proj_size, linear_before_reset, nonlinearity): layers 1…3
    × bidirectional × batch_first × bias × lengths × upstream × B ∈ {1, 3} (288 cases at T = 5, I = 3, H = 4)."""
    return [ModuleCase(mode, L, bi, bf, bias, 5, B, 3, 4, lengths=ln, upstream=up, dtype=dtype, **form)
            for L, bi, bf, bias, ln, up, B in itertools.product((1, 2, 3), (False, True), (False, True),
                                                               (True, False), LENGTHS, UPSTREAMS, (1, 3))]


# (T, H): one layer at the sizes a kernel's tiling and edge cases meet: one step, two, odd and long; one unit,
# a block of 8, one past a block of 32
SWEEP = tuple(itertools.product((1, 2, 17, 64), (1, 8, 33)))


def size_sweep(mode: str, dtype: str = "float64") -> list:
    """One layer, one direction, at every (T, H) of SWEEP, full and mixed lengths, B = 3, I = 5, driven through
    everything: what a one-layer kernel is tested on beyond the parity matrix."""
    return [ModuleCase(mode, 1, False, False, True, T, 3, 5, H, lengths=ln, upstream="both", dtype=dtype)
            for (T, H), ln in itertools.product(SWEEP, LENGTHS)]


def low_precision_cases(dtype: str) -> list:
    """Every cell in every form, one layer (full and mixed lengths) and two bidirectional (mixed), driven through
    everything, in a low precision (``oracle.precision``): judged against autograd in that dtype. H = 4, but 8 for a
    cell with norms: a norm's backward over 4 features in bfloat16 subtracts the mean and the projection onto v̂
    from four numbers known to three digits, and leaves autograd itself 10–15 % off, past LOW_CAP (oracle.policy),
    where a right derivation and a wrong one meet; over 8 it is within the usual few percent."""
    return [ModuleCase(mode, L, bi, False, True, 5, 3, 3, 8 if CELLS[mode].norms else 4, lengths=ln, upstream="both",
                       dtype=dtype, **form)
            for mode, form in VARIANTS for L, bi, ln in ((1, False, "full"), (1, False, "mixed"), (2, True, "mixed"))]


def all_module_cases(dtypes=ALL_DTYPES) -> list[ModuleCase]:
    """The built-in module matrix for ``bptt verify``: every cell in every form, its whole parity matrix when its
    row says so (the Elman cell's, tanh and relu), else the part with B = 3 driven through h_n (and c_n) or
    through everything; and the size sweep of the cells whose row asks for it."""
    out = []
    for dt in dtypes:
        if dt in LOW:
            out += low_precision_cases(dt)
            continue
        for mode, form in VARIANTS:
            cases = parity_matrix(mode, dt, **form)
            if not CELLS[mode].full_matrix:
                cases = [c for c in cases if c.B == 3 and c.upstream in ("hn", "both")]
            out += cases
        out += [c for mode, cell in CELLS.items() if cell.size_sweep for c in size_sweep(mode, dt)]
    return out


__all__ = ["SWEEP", "VARIANTS", "ModuleCase", "all_module_cases", "bound_size", "map_arrays", "module_truth",
           "low_precision_cases", "parity_matrix", "run_module", "size_sweep", "time_orders", "to_time_major"]

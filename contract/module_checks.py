"""Input checks of the module contract (``module_gradients``), shared by manual and reference.

Every failure is a ``TypeError`` or ``ValueError`` naming the argument, the
expected and the actual value, and a remedy, as in ``contract.checks``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device, is_array_api_obj

from contract.checks import CAST_REMEDY, array_arg, plain_array, quiet_errors, require_finite, require_nonempty
from contract.errors import BadType, BadValue
from contract.spec import RNNConfig, config_from, is_int, param_shapes


@dataclass(frozen=True)
class ModuleProblem:
    """One validated call of the module contract: sizes, library, dtype, device."""

    config: RNNConfig
    T: int  # time steps
    B: int  # batch rows
    lengths: tuple[int, ...] | None  # each sequence's length, or None: all T
    xp: Any
    dtype: Any
    device: Any
    zoneout_masks: Any = None  # (num_layers·dirs, T, B, H) of 0 and 1, with config zoneout; else None

    @property
    def output_shape(self) -> tuple[int, int, int]:
        c = self.config
        H2 = c.out_size * c.dirs
        return (self.B, self.T, H2) if c.batch_first else (self.T, self.B, H2)

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """h0's and h_n's: (num_layers·dirs, B, proj_size or hidden_size)."""
        c = self.config
        return (c.num_layers * c.dirs, self.B, c.out_size)

    @property
    def cell_shape(self) -> tuple[int, int, int]:
        """Every carried state's but h, initial and final (the LSTM's c; the sLSTM's c, n, m):
        (num_layers·dirs, B, hidden_size)."""
        c = self.config
        return (c.num_layers * c.dirs, self.B, c.hidden_size)


def int_list(arg: str, a, shape: str, one_per: str, example: str) -> list[int]:
    """``a`` (a 1-D integer array of any library, or a list or tuple of ints) as Python ints, or the TypeError /
    ValueError naming ``arg``: ``shape`` its one axis (``(B,)``), ``one_per`` what each entry is for, ``example``
    a working value (``[5, 3, 1]``)."""
    if is_array_api_obj(a):
        plain_array(arg, a)
        if not array_namespace(a).isdtype(a.dtype, "integral"):
            raise BadType(f"{arg} must hold integers; got dtype {a.dtype}. Remedy: e.g. "
                          f"numpy.asarray({arg}, dtype=numpy.int64) or t.long().")
        if a.ndim != 1:
            raise BadValue(f"{arg} must be 1-D {shape}; got shape {tuple(a.shape)}. Remedy: {one_per}.")
        return [int(v) for v in a.tolist()]
    if isinstance(a, (list, tuple)):
        if not all(is_int(v) for v in a):
            raise BadType(f"{arg} must hold integers; got {a!r}. Remedy: e.g. {example}.")
        return [int(v) for v in a]
    raise BadType(f"{arg} must be a 1-D integer array or a list of ints, or None; got {type(a).__name__} "
                  f"{reprlib.repr(a)}. Remedy: e.g. numpy.array({example}).")


def _lengths(lengths, T: int, B: int) -> tuple[int, ...] | None:
    """``lengths`` as a tuple of Python ints in 1…T (any library; torch wants them on the CPU anyway)."""
    if lengths is None:
        return None
    values = int_list("lengths", lengths, "(B,)", "one length per batch row", "[5, 3, 1]")
    if len(values) != B:
        raise BadValue(f"lengths must have one entry per batch row, B = {B}; got {len(values)}. Remedy: "
                         "pass (B,) lengths.")
    bad = [(b, v) for b, v in enumerate(values) if not 1 <= v <= T]
    if bad:
        b, v = bad[0]
        raise BadValue(f"lengths must lie in [1, T] = [1, {T}]; got {v} at row {b}. Remedy: clip the lengths "
                         "to the padded input's time axis, and drop empty sequences.")
    return tuple(values)


def same_kind(arg: str, a, ref_arg: str, ref, xp, dtype, dev, shape: tuple, meaning: str,
               remedy: str = "reshape or transpose it (torch.nn.RNN's layout)") -> None:
    array_arg(arg, a)
    if array_namespace(a) is not xp:
        raise BadType(f"{arg} is a {type(a).__module__}.{type(a).__name__} but {ref_arg} is a "
                        f"{type(ref).__module__}.{type(ref).__name__}; all arrays must come from one library. "
                        "Remedy: convert them all, e.g. torch.from_numpy(a) or t.cpu().numpy().")
    if device(a) != dev:
        raise BadValue(f"{arg} is on device {device(a)} but {ref_arg} is on {dev}; all arrays must be on one "
                         f"device. Remedy: move it, e.g. a.to({str(dev)!r}).")
    if a.dtype != dtype:
        raise BadType(f"{arg} has dtype {a.dtype} but {ref_arg} has {dtype}; all float inputs must share one "
                        f"dtype. Remedy: {CAST_REMEDY.replace('float64', str(dtype).split('.')[-1])}.")
    if tuple(a.shape) != shape:
        raise BadValue(f"{arg} must have shape {shape} {meaning}; got {tuple(a.shape)}. Remedy: " +
                       ("pass the vector u itself (a diagonal matrix's diagonal: numpy.diag(W))" if "vector u" in
                        meaning else remedy) + ".")


def split_hx(config: RNNConfig, hx) -> tuple:
    """(h0, (the other carried states' initial values, each an array or None)) of ``hx``: for a cell that carries
    more than h, the tuple of them in its row's order (torch's LSTM pair (h0, c0); the sLSTM's (h0, c0, n0, m0)),
    else (hx, ())."""
    carried = config.cell.carried
    if len(carried) == 1:
        return hx, ()
    if hx is None:
        return None, (None,) * (len(carried) - 1)
    names = ", ".join(f"{s}0" for s in carried)
    if not isinstance(hx, (tuple, list)) or len(hx) != len(carried):
        got = f"{type(hx).__name__}" + (f" of {len(hx)}" if isinstance(hx, (tuple, list)) else "")
        raise BadType(f"hx must be the tuple ({names}) for mode {config.mode!r}"
                      + (", as torch.nn.LSTM takes it" if config.mode == "LSTM" else "")
                      + f"; got {got}. Remedy: pass ({names}), or None for zeros.")
    return hx[0], tuple(hx[1:])


def upstream_states(config: RNNConfig, grad_cn=None, grad_nn=None, grad_mn=None) -> dict:
    """{state: dL/d(its final value) or None} of every carried state but h, in the row's order; ValueError when one
    is given for a state the cell lacks."""
    given = {"c": grad_cn, "n": grad_nn, "m": grad_mn}
    extra = config.cell.carried[1:]
    for s, g in given.items():
        if g is not None and s not in extra:
            raise BadValue(f"grad_{s}n is dL/d{s}_n, and mode {config.mode!r} has no state {s}"
                           + (" (no cell state)" if s == "c" else "") + ". Remedy: drop it.")
    return {s: given[s] for s in extra}


def _zoneout(p: ModuleProblem, masks, ref_arg: str, ref, named: dict) -> ModuleProblem:
    """``p`` with the zoneout masks checked (shape, kind, finite later; 0 and 1 only), or the refusal."""
    c, shape = p.config, (p.config.num_layers * p.config.dirs, p.T, p.B, p.config.hidden_size)
    if masks is None and c.zoneout:
        raise BadValue(f"config['zoneout'] is True but zoneout_masks is None: they are an input, one per layer, "
                       f"direction, step, row and unit, shape {shape} (num_layers·dirs, T, B, hidden_size; time first "
                       "whatever batch_first). Remedy: pass them in the inputs' library and dtype, e.g. "
                       "(numpy.random.rand(*shape) < 0.1).astype(dtype) or (torch.rand(shape) < 0.1).to(dtype), or "
                       "zoneout=False.")
    if masks is None:
        return p
    if not c.zoneout:
        raise BadValue("zoneout_masks were given but config['zoneout'] is False. Remedy: set zoneout=True in the "
                       "config, or drop them.")
    same_kind("zoneout_masks", masks, ref_arg, ref, p.xp, p.dtype, p.device, shape,
              "(num_layers·dirs, T, B, hidden_size), time first whatever batch_first",
              "put time first, e.g. masks.transpose(0, 2, 1, 3) (NumPy) or masks.transpose(1, 2) (torch) from "
              "(L·dirs, B, T, H)")
    named["zoneout_masks"] = masks
    return ModuleProblem(c, p.T, p.B, p.lengths, p.xp, p.dtype, p.device, masks)


def _binary(xp, masks) -> None:
    """ValueError unless every entry of the zoneout masks is 0 or 1."""
    bad = ~((masks == 0) | (masks == 1))
    if bool(xp.any(bad)):
        raise BadValue(f"zoneout_masks must hold 0 and 1 only (1: the unit keeps its last h and c at that step); got "
                       f"{int(xp.sum(xp.astype(bad, xp.int64)))} other entries. Remedy: draw them as "
                       "(torch.rand(shape) < p) cast to the dtype; an expected value p is inference's, not a mask.")


def check_module_inputs(config, state_dict, input, hx=None, grad_output=None, grad_hn=None,
                        lengths=None, *, grad_cn=None, grad_nn=None, grad_mn=None, zoneout_masks=None,
                        upstream: bool = True) -> ModuleProblem:
    """Check the arguments of ``module_gradients`` (``upstream=False``: of the forward pass alone)."""
    c = config_from(config)
    shapes = param_shapes(c)
    if not isinstance(state_dict, Mapping):
        raise BadType(f"state_dict must be a mapping like torch.nn.RNN(...).state_dict(); got "
                        f"{type(state_dict).__name__}. Remedy: pass {{'weight_ih_l0': ..., ...}}.")
    missing = [k for k in shapes if k not in state_dict]
    extra = sorted(str(k) for k in state_dict if k not in shapes)
    if missing or extra:
        module = f"torch.nn.{c.cell.torch_module}(**config).state_dict()" if c.cell.torch_module else \
            "contract.spec.param_shapes(config) (torch has no module for this cell)"
        raise BadValue(f"state_dict must have exactly the keys of {module} "
                         f"({', '.join(shapes)}); missing {missing or 'none'}, unexpected {extra or 'none'}. "
                         "Remedy: build it from the same config (num_layers, bias, bidirectional).")
    ref_arg = next(iter(shapes))
    ref = array_arg(f"state_dict[{ref_arg!r}]", state_dict[ref_arg])
    xp, dtype, dev = array_namespace(ref), ref.dtype, device(ref)
    if not xp.isdtype(dtype, "real floating"):
        raise BadType(f"state_dict[{ref_arg!r}] must have a real floating dtype; got {dtype}. "
                        f"Remedy: {CAST_REMEDY}.")
    ref_arg = f"state_dict[{ref_arg!r}]"
    named = {}
    for k, shape in shapes.items():
        arg = f"state_dict[{k!r}]"
        what, remedy = "(torch.nn.RNN's layout)", "reshape or transpose it (torch.nn.RNN's layout)"
        if k.startswith("weight_hh") and c.cell.recurrent == "diagonal":
            what = "(the cell's recurrent vector u: its weight_hh is one number per unit, not a matrix)"
        if k.startswith("weight_hh") and c.cell.recurrent == "heads":
            what = "(the sLSTM's block-diagonal weights: row g·H + k·D + j holds head k's block, D = H / num_heads)"
            remedy = "keep each head's (D, D) block of each gate: W[g·H + k·D + j, k·D + i] of a full (4H, H) matrix"
        same_kind(arg, state_dict[k], ref_arg, ref, xp, dtype, dev, shape, what, remedy)
        named[arg] = state_dict[k]
    array_arg("input", input)
    if input.ndim != 3:
        raise BadValue(f"input must be 3-D, {'(B, T, input_size)' if c.batch_first else '(T, B, input_size)'}; "
                         f"got shape {tuple(input.shape)}. Remedy: add the missing axis, e.g. x[None].")
    T, B = (int(input.shape[1]), int(input.shape[0])) if c.batch_first else (int(input.shape[0]),
                                                                               int(input.shape[1]))
    require_nonempty("input", T, "T (time steps)")
    require_nonempty("input", B, "B (batch rows)")
    layout = "(B, T, input_size)" if c.batch_first else "(T, B, input_size)"
    shape = (B, T, c.input_size) if c.batch_first else (T, B, c.input_size)
    same_kind("input", input, ref_arg, ref, xp, dtype, dev, shape, f"{layout}, batch_first={c.batch_first}")
    named["input"] = input
    p = _zoneout(ModuleProblem(c, T, B, _lengths(lengths, T, B), xp, dtype, dev), zoneout_masks, ref_arg, ref, named)
    h0, rest = split_hx(c, hx)
    extra = c.cell.carried[1:]
    if h0 is not None:
        arg = "hx[0]" if extra else "hx"
        same_kind(arg, h0, ref_arg, ref, xp, dtype, dev, p.state_shape,
                   "(num_layers·dirs, B, proj_size or hidden_size)")
        named[arg] = h0
    for j, (s, a) in enumerate(zip(extra, rest, strict=True), start=1):
        if a is not None:
            same_kind(f"hx[{j}]", a, ref_arg, ref, xp, dtype, dev, p.cell_shape,
                      f"(num_layers·dirs, B, hidden_size), the initial {s}")
            named[f"hx[{j}]"] = a
    ups = upstream_states(c, grad_cn, grad_nn, grad_mn)
    if upstream and grad_output is None and grad_hn is None and all(g is None for g in ups.values()):
        raise BadValue("grad_output and grad_hn are both None: there is no loss to differentiate. Remedy: "
                         "pass dL/doutput (the shape of the output) and/or dL/dh_n"
                         + "".join(f" and/or dL/d{s}_n" for s in extra) + ".")
    if grad_output is not None:
        same_kind("grad_output", grad_output, ref_arg, ref, xp, dtype, dev, p.output_shape,
                   "(the module's output: T or B first as batch_first says, hidden_size·dirs last)")
        named["grad_output"] = grad_output
    if grad_hn is not None:
        same_kind("grad_hn", grad_hn, ref_arg, ref, xp, dtype, dev, p.state_shape,
                   "(num_layers·dirs, B, proj_size or hidden_size), as h_n")
        named["grad_hn"] = grad_hn
    for s, g in ups.items():
        if g is not None:
            same_kind(f"grad_{s}n", g, ref_arg, ref, xp, dtype, dev, p.cell_shape,
                      f"(num_layers·dirs, B, hidden_size), as {s}_n")
            named[f"grad_{s}n"] = g
    with quiet_errors(xp):
        for arg, a in named.items():
            require_finite(arg, xp, a)
        if p.zoneout_masks is not None:
            _binary(xp, p.zoneout_masks)
        for j, s in enumerate(extra, start=1):
            if s in c.cell.nonnegative and rest[j - 1] is not None and bool(xp.any(rest[j - 1] < 0)):
                raise BadValue(f"hx[{j}] (the initial {s}) must be ≥ 0 for mode {c.mode!r}: {s} is a sum of "
                               f"positive terms, and h divides by it; got a minimum of {float(xp.min(rest[j - 1]))}"
                               f". Remedy: pass its absolute value, or zeros.")
    return p

"""A recurrent module's configuration, and the one table of its tensors' names and shapes.

``RNNConfig`` holds what ``torch.nn.RNN``'s constructor takes, by the same
names, plus ``mode`` (torch.nn.RNNBase's spelling, or the project's for a
cell torch lacks) and, for a cell with a choice, ``nonlinearity``; each
mode's facts are its row in ``contract.cells``. Everything that needs the
set of a configuration's parameters or their shapes asks ``param_shapes``,
and everything that names a per-step tensor asks ``step_names``.

Names follow ``torch.nn.RNN(...).state_dict()``: for layer k and direction
suffix s ("" forward, "_reverse" backward in time), ``weight_ih_l{k}{s}``
(G·H, in), ``weight_hh_l{k}{s}`` (G·H, H) (the IndRNN's: (H,), its vector u), ``bias_ih_l{k}{s}`` and
``bias_hh_l{k}{s}`` (G·H,), with G the cell's gate count (1 for the Elman
cell) and in = input_size for layer 0, H·dirs above it. Per step, per layer
and direction, the gradient set holds ``h_l{k}{s}`` = dL/dh_t and
``z_l{k}{s}`` = dL/dz_t, each (T, B, H).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from contract.cells import CELLS, Cell
from contract.errors import BadType, BadValue

MODES = tuple(CELLS)  # config["mode"]: torch.nn.RNNBase's names, then the project's own cells'
NONLINEARITY = {m: c.nonlinearities[0] for m, c in CELLS.items()}  # each mode's default
GATES = {m: c.gates for m, c in CELLS.items()}  # rows of weight_ih per hidden unit
STEP_KINDS = {m: c.step_kinds for m, c in CELLS.items()}  # the per-step tensors; a name is f"{kind}_l{k}{suffix}"
TORCH_MODULE = {m: c.torch_module for m, c in CELLS.items()}  # torch.nn's module, None where torch has none


@dataclass(frozen=True)
class RNNConfig:
    """``torch.nn.RNN``'s constructor arguments, by its names; ``mode`` as ``nn.RNNBase`` has it."""

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    proj_size: int = 0  # LSTM only: h_t = W_hr (o ⊙ tanh(c_t)), P = proj_size < hidden_size
    linear_before_reset: bool = True  # GRU only: torch's form; False is the original paper's (ONNX's default)
    nonlinearity: str = ""  # "" is the mode's own (a cell with one); a cell with a choice takes it here
    num_heads: int = 1  # sLSTM only: weight_hh block-diagonal, one (4D, D) block per head, D = H / num_heads
    forget_gate: str = "sigmoid"  # sLSTM only: f = σ(ã_f), or "exp": f = exp(ã_f)
    zoneout: bool = False  # Elman, LSTM, GRU: h_t (and c_t) keep their last value where the
    # caller's per-step masks (module_gradients' zoneout_masks) say so

    def __post_init__(self):
        if not self.nonlinearity:
            object.__setattr__(self, "nonlinearity", NONLINEARITY[self.mode])

    @property
    def cell(self) -> Cell:
        """This configuration's row of contract.cells."""
        return CELLS[self.mode]

    @property
    def out_size(self) -> int:
        """Features of h_t (and of each direction's output): proj_size when set, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def has_cell_state(self) -> bool:
        """More than h is carried: hx is a tuple (the LSTM's (h0, c0), the sLSTM's (h0, c0, n0, m0))."""
        return self.cell.cell_state

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def layer_input(self, k: int) -> int:
        return self.input_size if k == 0 else self.out_size * self.dirs

    @property
    def has_torch_module(self) -> bool:
        """torch has a module for it (not for the GRU's original-paper form, nor for a cell torch lacks)."""
        return self.cell.torch_module is not None and self.linear_before_reset and not self.zoneout

    def torch_kwargs(self) -> dict:
        """The keyword arguments ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` take for this configuration."""
        out = {"input_size": self.input_size, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
               "bias": self.bias, "batch_first": self.batch_first, "bidirectional": self.bidirectional}
        if self.cell.torch_module == "RNN":
            out["nonlinearity"] = self.nonlinearity
        if "proj_size" in self.cell.options:
            out["proj_size"] = self.proj_size
        return out

    def as_dict(self) -> dict:
        """The configuration as ``manual.module_gradients`` takes it (``nonlinearity`` only where it is not the
        mode's own)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["nonlinearity"] == NONLINEARITY[self.mode]:
            del out["nonlinearity"]
        for name, default in OPTION_DEFAULTS.items():  # an option at its default is left out
            if out[name] == default:
                del out[name]
        return out


def param_shapes(config: RNNConfig) -> dict[str, tuple[int, ...]]:
    """state_dict name → shape, in ``torch.nn.RNN``'s order."""
    G, H = GATES[config.mode], config.hidden_size
    recurrent = {"diagonal": (G * H,), "matrix": (G * H, config.out_size), "heads": (G * H, H // config.num_heads),
                 "none": None}[config.cell.recurrent]
    out = {}
    for k in range(config.num_layers):
        for s in config.suffixes:
            out[f"weight_ih_l{k}{s}"] = (G * H, config.layer_input(k))
            if recurrent:
                out[f"weight_hh_l{k}{s}"] = recurrent
            if config.bias:
                out[f"bias_ih_l{k}{s}"] = (G * H,)
                if recurrent:
                    out[f"bias_hh_l{k}{s}"] = (G * H,)
            if config.proj_size:
                out[f"weight_hr_l{k}{s}"] = (config.proj_size, H)
            for name, size in config.cell.norms:  # the cell's own: the LayerNorm-LSTM's gains and biases
                if config.bias or "bias" not in name:
                    out[f"{name}_l{k}{s}"] = (G * H,) if size == "gates" else (H,)
    return out


def step_names(config: RNNConfig) -> list[tuple[int, str, dict[str, str]]]:
    """(layer, direction suffix, {kind: name}) of every layer and direction; kinds from STEP_KINDS
    (``h`` = dL/dh_t, ``z`` = dL/dz_t, ``c`` = dL/dc_t, ``gate_x`` = dL/d(gate x's pre-activation))."""
    return [(k, s, {kind: f"{kind}_l{k}{s}" for kind in STEP_KINDS[config.mode]})
            for k in range(config.num_layers) for s in config.suffixes]


def step_shape(config: RNNConfig, kind: str, T: int, B: int) -> tuple[int, int, int]:
    return (T, B, config.out_size if kind == "h" else config.hidden_size)


def grad_shapes(config: RNNConfig, T: int, B: int) -> dict[str, tuple[int, ...]]:
    """name → shape of every tensor of a module's gradient set (``input`` as the caller lays it out)."""
    out = dict(param_shapes(config))
    out["input"] = (B, T, config.input_size) if config.batch_first else (T, B, config.input_size)
    out["hx"] = (config.num_layers * config.dirs, B, config.out_size)
    for s in config.cell.carried[1:]:  # dL/d(each other carried state's initial value): cx, nx, mx
        out[f"{s}x"] = (config.num_layers * config.dirs, B, config.hidden_size)
    for _, _, names in step_names(config):
        for kind, name in names.items():
            out[name] = step_shape(config, kind, T, B)
    return out


OPTION_DEFAULTS = {"num_heads": 1, "forget_gate": "sigmoid", "zoneout": False}  # options some cells take
FORGET_GATES = ("sigmoid", "exp")


def is_int(v: object) -> bool:
    """An integer, Python's or NumPy's (numbers.Integral), and not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _positive(name: str, v: object) -> int:
    if not is_int(v) or v < 1:
        raise BadValue(f"config[{name!r}] must be a positive integer; got {v!r}. Remedy: e.g. {name}=4.")
    return int(v)


def _flag(name: str, v: object) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise BadType(f"config[{name!r}] must be True or False; got {type(v).__name__} {v!r}. "
                        f"Remedy: {name}=False.")
    return bool(v)


def config_from(config: Mapping | RNNConfig) -> RNNConfig:
    """An ``RNNConfig`` from a mapping of ``torch.nn.RNN``'s argument names, every value checked."""
    if isinstance(config, RNNConfig):
        return config
    if not isinstance(config, Mapping):
        raise BadType(f"config must be a dict of torch.nn.RNN's arguments; got {type(config).__name__}. "
                        "Remedy: {'mode': 'RNN_TANH', 'input_size': 3, 'hidden_size': 4}.")
    known = {f.name for f in fields(RNNConfig)} | {"nonlinearity", "dropout"}
    unknown = sorted(set(map(str, config)) - known)
    if unknown:
        raise BadValue(f"config has unknown keys {unknown}; it takes {sorted(known)}. Remedy: remove them.")
    mode = config.get("mode")
    if mode not in MODES:
        folded = {m.casefold(): m for m in MODES}
        near = folded.get(str(mode).casefold())
        raise BadValue(f"config['mode'] must be one of {MODES}; got {mode!r}. Remedy: "
                         + (f"did you mean {near!r}? " if near else "") + "'RNN_TANH' is nn.RNN's default.")
    cell = CELLS[mode]
    act = config.get("nonlinearity", cell.nonlinearities[0])
    if act not in cell.nonlinearities:
        raise BadValue(f"config['nonlinearity'] is {act!r} but mode {mode!r} means {cell.nonlinearities[0]!r}. "
                       "Remedy: drop nonlinearity, or set mode to match it." if len(cell.nonlinearities) == 1 else
                       f"config['nonlinearity'] must be one of {cell.nonlinearities} for mode {mode!r}; got "
                       f"{act!r}. Remedy: nonlinearity={cell.nonlinearities[0]!r}.")
    if config.get("dropout", 0) not in (0, 0.0):
        raise BadValue(f"config['dropout'] must be 0 (gradients of a random mask cannot be checked); got "
                         f"{config['dropout']!r}. Remedy: dropout=0.")
    for name in ("input_size", "hidden_size"):
        if name not in config:
            raise BadValue(f"config needs {name!r} (torch.nn.RNN's {name}). Remedy: add it, e.g. {name}=4.")
    H = _positive("hidden_size", config["hidden_size"])
    P = config.get("proj_size", 0)
    if P != 0 and ("proj_size" not in cell.options or not is_int(P) or not 0 < P < H):
        raise BadValue(f"config['proj_size'] must be 0, or for mode 'LSTM' an integer in [1, hidden_size) = "
                         f"[1, {H}); got {P!r} for mode {mode!r}. Remedy: proj_size=0, or a smaller LSTM projection.")
    lbr = _flag("linear_before_reset", config.get("linear_before_reset", True))
    if not lbr and "linear_before_reset" not in cell.options:
        raise BadValue(f"config['linear_before_reset'] is the GRU's; got False for mode {mode!r}. "
                         "Remedy: drop it.")
    if cell.norms and H < 2:
        raise BadValue(f"config['hidden_size'] must be at least 2 for mode {mode!r}: a norm over one unit is constant "
                       f"(v̂ = 0), so h would not depend on c; got {H}. Remedy: hidden_size=2 or more.")
    heads, forget = _slstm_options(config, mode, H)
    zoneout = _flag("zoneout", config.get("zoneout", False))
    if zoneout and "zoneout" not in cell.options:
        takes = [m for m, c in CELLS.items() if "zoneout" in c.options]
        raise BadValue(f"config['zoneout'] is True for mode {mode!r}, which has no zoneout here (modes {takes} do). "
                       "Remedy: drop it.")
    if zoneout and P:
        raise BadValue(f"config['zoneout'] needs proj_size = 0: one mask serves c (hidden_size = {H} units) and h, and "
                       f"a projected h has proj_size = {P}. Remedy: proj_size=0, or zoneout=False.")
    return RNNConfig(mode, _positive("input_size", config["input_size"]), H,
                     _positive("num_layers", config.get("num_layers", 1)),
                     _flag("bias", config.get("bias", True)), _flag("batch_first", config.get("batch_first", False)),
                     _flag("bidirectional", config.get("bidirectional", False)), int(P), lbr, act, heads, forget,
                     zoneout)


def _slstm_options(config: Mapping, mode: str, H: int) -> tuple[int, str]:
    """(num_heads, forget_gate), checked: the sLSTM's options, the defaults for any other cell."""
    heads = _positive("num_heads", config.get("num_heads", 1))
    forget = config.get("forget_gate", "sigmoid")
    if "num_heads" not in CELLS[mode].options and (heads, forget) != (1, "sigmoid"):
        raise BadValue(f"config['num_heads'] and config['forget_gate'] are the sLSTM's; got {heads!r} and "
                       f"{forget!r} for mode {mode!r}. Remedy: drop them, or mode='SLSTM'.")
    if H % heads:
        divisors = [d for d in range(1, H + 1) if H % d == 0]
        raise BadValue(f"config['num_heads'] must divide hidden_size = {H} (each head holds H / num_heads units); "
                       f"got {heads}. Remedy: one of {divisors}.")
    if forget not in FORGET_GATES:
        raise BadValue(f"config['forget_gate'] must be one of {FORGET_GATES}; got {forget!r}. "
                       "Remedy: forget_gate='sigmoid' (σ) or 'exp'.")
    return heads, forget

"""A recurrent module's configuration, and the one table of its tensors' names and shapes.

``RNNConfig`` holds what ``torch.nn.RNN``'s constructor takes, by the same
names, plus ``mode`` as ``torch.nn.RNNBase`` spells it. Everything that needs
a parameter's name or shape asks it (``param_shapes``), and everything that
names a per-step tensor asks ``step_names``: nothing else in the project
spells ``weight_ih_l0`` out.

Names follow ``torch.nn.RNN(...).state_dict()``: for layer k and direction
suffix s ("" forward, "_reverse" backward in time), ``weight_ih_l{k}{s}``
(G·H, in), ``weight_hh_l{k}{s}`` (G·H, H), ``bias_ih_l{k}{s}`` and
``bias_hh_l{k}{s}`` (G·H,), with G the cell's gate count (1 for the Elman
cell) and in = input_size for layer 0, H·dirs above it. Per step, per layer
and direction, the gradient set holds ``h_l{k}{s}`` = dL/dh_t and
``z_l{k}{s}`` = dL/dz_t, each (T, B, H).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

MODES = ("RNN_TANH", "RNN_RELU")  # the Elman cell with tanh or relu, as torch.nn.RNNBase names them
NONLINEARITY = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}
GATES = {"RNN_TANH": 1, "RNN_RELU": 1}


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

    @property
    def nonlinearity(self) -> str:
        return NONLINEARITY[self.mode]

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def layer_input(self, k: int) -> int:
        return self.input_size if k == 0 else self.hidden_size * self.dirs

    def torch_kwargs(self) -> dict:
        """The keyword arguments ``torch.nn.RNN`` takes for this configuration."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "nonlinearity": self.nonlinearity, "bias": self.bias, "batch_first": self.batch_first,
                "bidirectional": self.bidirectional}

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def param_shapes(config: RNNConfig) -> dict[str, tuple[int, ...]]:
    """state_dict name → shape, in ``torch.nn.RNN``'s order."""
    G, H = GATES[config.mode], config.hidden_size
    out = {}
    for k in range(config.num_layers):
        for s in config.suffixes:
            out[f"weight_ih_l{k}{s}"] = (G * H, config.layer_input(k))
            out[f"weight_hh_l{k}{s}"] = (G * H, H)
            if config.bias:
                out[f"bias_ih_l{k}{s}"] = (G * H,)
                out[f"bias_hh_l{k}{s}"] = (G * H,)
    return out


def step_names(config: RNNConfig) -> list[tuple[str, str, int, str]]:
    """(dL/dh name, dL/dz name, layer, direction suffix) of every layer and direction."""
    return [(f"h_l{k}{s}", f"z_l{k}{s}", k, s) for k in range(config.num_layers) for s in config.suffixes]


def grad_shapes(config: RNNConfig, T: int, B: int) -> dict[str, tuple[int, ...]]:
    """name → shape of every tensor of a module's gradient set (``input`` as the caller lays it out)."""
    out = dict(param_shapes(config))
    out["input"] = (B, T, config.input_size) if config.batch_first else (T, B, config.input_size)
    out["hx"] = (config.num_layers * config.dirs, B, config.hidden_size)
    for h, z, _, _ in step_names(config):
        out[h] = out[z] = (T, B, config.hidden_size)
    return out


def _positive(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"config[{name!r}] must be a positive integer; got {v!r}. Remedy: e.g. {name}=4.")
    return v


def _flag(name: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"config[{name!r}] must be True or False; got {type(v).__name__} {v!r}. "
                        f"Remedy: {name}=False.")
    return v


def config_from(config: Mapping | RNNConfig) -> RNNConfig:
    """An ``RNNConfig`` from a mapping of ``torch.nn.RNN``'s argument names, every value checked."""
    if isinstance(config, RNNConfig):
        return config
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict of torch.nn.RNN's arguments; got {type(config).__name__}. "
                        "Remedy: {'mode': 'RNN_TANH', 'input_size': 3, 'hidden_size': 4}.")
    known = {f.name for f in fields(RNNConfig)} | {"nonlinearity", "dropout"}
    unknown = sorted(set(map(str, config)) - known)
    if unknown:
        raise ValueError(f"config has unknown keys {unknown}; it takes {sorted(known)}. Remedy: remove them "
                         "(proj_size is the LSTM's, which this project does not have yet).")
    mode = config.get("mode")
    if mode not in MODES:
        folded = {m.casefold(): m for m in MODES}
        near = folded.get(str(mode).casefold())
        raise ValueError(f"config['mode'] must be one of {MODES}; got {mode!r}. Remedy: "
                         + (f"did you mean {near!r}? " if near else "") + "'RNN_TANH' is nn.RNN's default.")
    if "nonlinearity" in config and config["nonlinearity"] != NONLINEARITY[mode]:
        raise ValueError(f"config['nonlinearity'] is {config['nonlinearity']!r} but mode {mode!r} means "
                         f"{NONLINEARITY[mode]!r}. Remedy: drop nonlinearity, or set mode to match it.")
    if config.get("dropout", 0) not in (0, 0.0):
        raise ValueError(f"config['dropout'] must be 0 (gradients of a random mask cannot be checked); got "
                         f"{config['dropout']!r}. Remedy: dropout=0.")
    for name in ("input_size", "hidden_size"):
        if name not in config:
            raise ValueError(f"config needs {name!r} (torch.nn.RNN's {name}). Remedy: add it, e.g. {name}=4.")
    return RNNConfig(mode, _positive("input_size", config["input_size"]),
                     _positive("hidden_size", config["hidden_size"]),
                     _positive("num_layers", config.get("num_layers", 1)),
                     _flag("bias", config.get("bias", True)), _flag("batch_first", config.get("batch_first", False)),
                     _flag("bidirectional", config.get("bidirectional", False)))

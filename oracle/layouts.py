"""A module's tensors in torch's layout or ONNX's, and the exact way between them.

torch's layout is the project's own (``state_dict`` names; see docs/layouts.md).
ONNX's is that of its RNN, LSTM and GRU operators, one operator per layer, so
every name but ``X`` and ``grad_Y`` carries its layer. ``batch_first`` is
ONNX's ``layout = 1`` attribute, which also puts the batch first in the
states:

| name | shape (``layout = 0``) | shape (``batch_first``, ``layout = 1``) | torch's |
|---|---|---|---|
| ``W_l{k}`` | [dirs, G·H, in] | same | ``weight_ih_l{k}``, ``…_reverse`` stacked |
| ``R_l{k}`` | [dirs, G·H, H] | same | ``weight_hh_l{k}``, ``…_reverse`` stacked |
| ``B_l{k}`` | [dirs, 2·G·H] = [Wb; Rb] | same | ``bias_ih_l{k}`` then ``bias_hh_l{k}`` |
| ``X`` | [T, B, in] | [B, T, in] | ``input`` |
| ``initial_h_l{k}`` / ``initial_c_l{k}`` | [dirs, B, H] | [B, dirs, H] | rows k·dirs … (k+1)·dirs−1 of hx / cx |
| ``grad_Y`` | [T, dirs, B, H] | [B, T, dirs, H] | ``grad_output`` (T, B, dirs·H) |
| ``grad_Y_h_l{k}`` / ``grad_Y_c_l{k}`` | [dirs, B, H] | [B, dirs, H] | rows of ``grad_hn`` / ``grad_cn`` |
| ``sequence_lens`` | [B] | same | ``lengths`` |

Gate blocks (G·H rows, H each) of W, R and B: LSTM i, o, f, c (torch: i, f, g,
o); GRU z, r, h (torch: r, z, n); Elman one block. A gradient set is mapped
the same way (``grads.W_l0`` is dL/dW_l0); its per-step tensors (``h_l0``,
``gate_f_l1_reverse`` …) keep their names and shapes. The GRU's
``linear_before_reset`` is recorded with the case (torch's form is ONNX's
``linear_before_reset = 1``). ONNX's LSTM has no projection: a configuration
with ``proj_size > 0`` has no ONNX form.

A merged bias ``B_l{k}`` of [dirs, G·H] (one bias per gate row, as fused
kernels keep it) is read as the gradient of the summed bias b_ih + b_hh: it is
judged as ``bias_ih`` and as ``bias_hh``, which are equal for every row whose
two biases enter the cell added together, that is all but the rows of the
GRU's n gate in torch's form (there r multiplies b_hn alone, so a merged bias
is a different model and fails there, as it should).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from contract.cells import CELLS
from contract.errors import BadValue
from contract.spec import RNNConfig, config_from

LAYOUTS = ("torch", "onnx")
# ONNX's gate blocks as torch's block indices (each cell's row, contract.cells: LSTM i,o,f,c ← torch i,f,g,o;
# GRU z,r,h ← torch r,z,n); a cell without an ONNX operator has none
ONNX_FROM_TORCH = {m: c.onnx_gates for m, c in CELLS.items() if c.onnx_gates is not None}
STATES = (("hx", "initial_h"), ("cx", "initial_c"), ("grad_hn", "grad_Y_h"), ("grad_cn", "grad_Y_c"))


class LayoutError(BadValue):
    """A configuration or a set of tensors that has no form in the layout asked for."""


def check_layout(layout: object, config: RNNConfig | None = None) -> str:
    """``layout`` if it is one of LAYOUTS and ``config`` has a form in it; ``LayoutError`` if not."""
    if layout not in LAYOUTS:
        raise LayoutError(f"layout must be one of {LAYOUTS}; got {layout!r}. Remedy: --layout torch or onnx.")
    if layout == "onnx" and config is not None and config.mode not in ONNX_FROM_TORCH:
        raise LayoutError(f"ONNX has no operator for mode {config.mode!r}. Remedy: --layout torch for it.")
    if layout == "onnx" and config is not None and config.proj_size:
        raise LayoutError(f"ONNX's LSTM has no projection, and this configuration has proj_size = "
                          f"{config.proj_size}. Remedy: --layout torch for it.")
    if layout == "onnx" and config is not None and config.zoneout:
        raise LayoutError("ONNX's recurrent operators have no zoneout, and this configuration has zoneout = True. "
                          "Remedy: --layout torch for it.")
    return layout


def _rows(config: RNNConfig, order: tuple[int, ...]) -> list[int]:
    """Row indices that put gate blocks (H rows each) in ``order``."""
    H = config.hidden_size
    return [j * H + r for j in order for r in range(H)]


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(order.index(j) for j in range(len(order)))


def _xp(a):
    from array_api_compat import array_namespace

    return array_namespace(a)


def to_onnx(config: RNNConfig | dict, t: dict) -> dict:
    """torch-named NumPy arrays (parameters or their gradients, inputs, upstream gradients) → ONNX's names.

    ``config``: the module's configuration (the dict ``manual.module_gradients`` takes, or an RNNConfig).
    Every array returned is new (never a view of ``t``'s); torch tensors: pass ``t.numpy()``.
    """
    config = config_from(config)
    check_layout("onnx", config)
    rows, dirs, bf = _rows(config, ONNX_FROM_TORCH[config.mode]), config.dirs, config.batch_first
    out = dict(t)
    sfx = config.suffixes
    for k in range(config.num_layers):
        for torch_name, name in (("weight_ih", "W"), ("weight_hh", "R")):
            if f"{torch_name}_l{k}" in out:
                out[f"{name}_l{k}"] = np.stack([np.asarray(out.pop(f"{torch_name}_l{k}{s}"))[rows] for s in sfx])
        if f"bias_ih_l{k}" in out:
            out[f"B_l{k}"] = np.stack([np.concatenate([np.asarray(out.pop(f"bias_ih_l{k}{s}"))[rows],
                                                       np.asarray(out.pop(f"bias_hh_l{k}{s}"))[rows]])
                                       for s in sfx])
        for ours, theirs in STATES:
            if out.get(ours) is not None:
                part = np.asarray(out[ours])[k * dirs:(k + 1) * dirs]  # [dirs, B, H]
                out[f"{theirs}_l{k}"] = (part.transpose(1, 0, 2) if bf else part).copy()
    for ours, _ in STATES:
        out.pop(ours, None)
    if "input" in out:
        out["X"] = np.array(out.pop("input"))
    if "lengths" in out:
        out["sequence_lens"] = out.pop("lengths")
    g = out.pop("grad_output", None)
    if g is not None:  # (T, B, dirs·H) → [T, dirs, B, H]; batch-first (B, T, dirs·H) → [B, T, dirs, H]
        g = np.asarray(g).reshape(*np.shape(g)[:2], dirs, -1)
        out["grad_Y"] = (g if bf else g.transpose(0, 2, 1, 3)).copy()
    return out


def from_onnx(config: RNNConfig | dict, t: dict, notes: list | None = None) -> dict:
    """ONNX-named tensors → torch's names (the inverse of :func:`to_onnx`; NumPy arrays or torch tensors).

    A merged bias [dirs, G·H] is read as both of torch's biases, and ``notes``
    gets a line saying so. A tensor of the wrong shape raises ``LayoutError``.
    """
    config = config_from(config)
    check_layout("onnx", config)
    inv = _rows(config, _inverse(ONNX_FROM_TORCH[config.mode]))
    dirs, GH, bf = config.dirs, len(inv), config.batch_first
    out = dict(t)
    for k in range(config.num_layers):
        for name, torch_name in (("W", "weight_ih"), ("R", "weight_hh")):
            a = out.pop(f"{name}_l{k}", None)
            if a is not None:
                _expect(a, f"{name}_l{k}", (dirs, GH), 3)
                for d, s in enumerate(config.suffixes):
                    out[f"{torch_name}_l{k}{s}"] = a[d][inv]
        b = out.pop(f"B_l{k}", None)
        if b is not None:
            merged = tuple(b.shape) == (dirs, GH)
            if not merged:
                _expect(b, f"B_l{k}", (dirs, 2 * GH), 2)
            elif notes is not None:
                notes.append(f"B_l{k} is a merged bias [dirs, G·H]: judged as the gradient of b_ih + b_hh, that "
                             "is as bias_ih and as bias_hh" + (" (which differ on the n rows of torch's GRU, "
                                                               "where r multiplies b_hn alone)"
                                                               if config.mode == "GRU" and config.linear_before_reset
                                                               else ""))
            for d, s in enumerate(config.suffixes):
                ih, hh = (b[d], b[d]) if merged else (b[d][:GH], b[d][GH:])
                out[f"bias_ih_l{k}{s}"], out[f"bias_hh_l{k}{s}"] = ih[inv], hh[inv]
    for ours, theirs in STATES:
        parts = [out.pop(f"{theirs}_l{k}", None) for k in range(config.num_layers)]
        if all(p is not None for p in parts):
            first = tuple(parts[0].shape)
            for k, p in enumerate(parts):  # [dirs, B, H], batch-first [B, dirs, H]; the same B and H in every layer
                if len(p.shape) != 3 or p.shape[1 if bf else 0] != dirs:
                    raise LayoutError(f"{theirs}_l{k} has shape {tuple(p.shape)}; ONNX's layout needs "
                                      + ("[B, dirs, H] (batch_first, ONNX's layout = 1)" if bf else "[dirs, B, H]")
                                      + f" with dirs = {dirs}. Remedy: one slice per layer, directions stacked "
                                      "on that axis.")
                if tuple(p.shape) != first:
                    raise LayoutError(f"{theirs}_l{k} has shape {tuple(p.shape)} but {theirs}_l0 has {first}; every "
                                      "layer's has the same batch and hidden size. Remedy: give each layer's "
                                      "state gradient its own slice of that shape.")
            xp = _xp(parts[0])
            out[ours] = xp.concat([xp.permute_dims(p, (1, 0, 2)) if bf else p for p in parts], axis=0)
        elif any(p is not None for p in parts):
            raise LayoutError(f"{theirs}_l{{k}} is given for layers {[k for k, p in enumerate(parts) if p is not None]}"
                              f" of {config.num_layers}. Remedy: give it for every layer, or for none.")
    if "X" in out:
        out["input"] = out.pop("X")
    if "sequence_lens" in out:
        out["lengths"] = out.pop("sequence_lens")
    g = out.pop("grad_Y", None)
    if g is not None:
        g = np.asarray(g)
        g = g if bf else g.transpose(0, 2, 1, 3)  # → (T, B, dirs, H) or (B, T, dirs, H)
        out["grad_output"] = g.reshape(*g.shape[:2], -1)
    return out


def onnx_names(config: RNNConfig, shapes: dict) -> dict:
    """torch name → shape, as ONNX name → shape (what :func:`to_onnx` makes of tensors of those shapes)."""
    return {k: v.shape for k, v in to_onnx(config, {k: np.broadcast_to(np.zeros(()), s)
                                                    for k, s in shapes.items()}).items()}


def _expect(a, name: str, lead: tuple, ndim: int, form: str = "") -> None:
    shape = tuple(a.shape)
    if len(shape) != ndim or shape[:len(lead)] != lead:
        raise LayoutError(f"{name} has shape {shape}; ONNX's layout needs {ndim} axes beginning {lead}"
                          + (f", {form}" if form else "") + ". Remedy: stack both directions on the direction "
                          "axis and the gates in ONNX's order (see `oracle.layouts`).")


# ---------------------------------------------------------------- a report in ONNX's names

def _onnx_place(config: RNNConfig, name: str, merged: set = frozenset()) -> tuple[str, Callable] | None:
    """(ONNX name, index map torch → ONNX) of a torch-named gradient, or None for one that keeps its name;
    ``merged``: the layers whose B the candidate gave merged, [dirs, G·H] (no Rb half)."""
    m = re.fullmatch(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?", name)
    H, cell = config.hidden_size, CELLS[config.mode]
    order, letters = ONNX_FROM_TORCH[config.mode], cell.onnx_letters
    if m:
        kind, k, d = m.group(1), int(m.group(2)), int(bool(m.group(3)))
        shift = H * cell.gates if kind == "bias_hh" and k not in merged else 0  # B = [Wb; Rb]

        def move(idx: tuple) -> tuple[tuple, str]:
            block, i = divmod(idx[0], H)
            row = order.index(block) * H + i
            gate = f" (gate {letters[order.index(block)]})" if letters else ""
            return (d, shift + row, *idx[1:]), gate

        onnx = {"weight_ih": "W", "weight_hh": "R", "bias_ih": "B", "bias_hh": "B"}[kind]
        half = "" if k in merged else " (Rb)" if kind == "bias_hh" else " (Wb)" if kind == "bias_ih" else ""
        return f"{onnx}_l{k}[{d}]" + (" as bias_hh" if kind == "bias_hh" and k in merged else
                                      " as bias_ih" if kind == "bias_ih" and k in merged else half), move
    if name in ("hx", "cx"):
        theirs = "initial_h" if name == "hx" else "initial_c"

        def state(idx: tuple) -> tuple[tuple, str]:
            k, d = divmod(idx[0], config.dirs)
            lead = (idx[1], d) if config.batch_first else (d, idx[1])
            return (*lead, *idx[2:]), f" in {theirs}_l{k}"

        return f"{theirs}_l*", state
    if name == "input":
        return "X", lambda idx: (idx, "")
    return None


def _relabel(label: str, old: str, new: str, move: Callable) -> str:
    """``weight_ih_l0[5, 2]`` → ``W_l0[0, 1, 2] (gate o)``; a per-step label (``t=…``) keeps its indices."""
    m = re.fullmatch(rf"{re.escape(old)}\[(.*)\]", label)
    if not m or "=" in m.group(1):
        return label.replace(old, new.split("[")[0], 1) if label.startswith(old) else label
    idx, said = move(tuple(int(v) for v in m.group(1).split(", ")))
    return f"{new.split('[')[0].split(' ')[0]}[{', '.join(map(str, idx))}]{said}"


def onnx_report(config: RNNConfig, report):
    """``report`` (``oracle.judge.Report``, torch's names) in ONNX's names, rows and gate letters: what a
    candidate that answers in ONNX's layout reads."""
    merged = {int(m) for n in report.notes for m in re.findall(r"B_l(\d+) is a merged bias", n)}
    for t in report.tensors:
        place = _onnx_place(config, t.name, merged)
        if place is None:
            continue
        new, move = place
        for attr in ("first", "max_abs_at", "max_rel_at"):
            setattr(t, attr, _relabel(getattr(t, attr), t.name, new, move))
        t.name = new
    return report


def torch_report(config: RNNConfig, report):
    """``report`` (torch's names) with each weight's and bias's row named by its gate (torch's letters: LSTM i, f,
    g, o; GRU r, z, n) and each ``hx``/``cx``/``nx``/``mx`` row by its layer and direction."""
    cell, H = CELLS[config.mode], config.hidden_size
    letters = [k.removeprefix("gate_") for k in cell.step_kinds if k.startswith("gate_")]
    for t in report.tensors:
        if re.fullmatch(r"(weight|bias)_(ih|hh)_l\d+(_reverse)?", t.name) and letters:
            move = lambda idx: (idx, f" (gate {letters[idx[0] // H]})")  # noqa: E731
        elif t.name in ("hx", "cx", "nx", "mx"):
            move = lambda idx: (idx, f" (layer {idx[0] // config.dirs}"  # noqa: E731
                                     f"{', reverse' if idx[0] % config.dirs else ''})")
        else:
            continue
        for attr in ("first", "max_abs_at", "max_rel_at"):
            setattr(t, attr, _relabel(getattr(t, attr), t.name, t.name, move))
    return report
